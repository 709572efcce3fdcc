//! The shared token store against a real Redis server (Debian's
//! `redis-server`, started by the test on a unix socket of its own): the
//! lock and its fencing token. The many-process refresh over it is in
//! `tests/cli.rs`.

mod common;

use common::Redis;
use mcp_recovery::client::oauth::{StoredTokens, TokenStore};
use mcp_recovery::client::redis_store::RedisTokenStore;
use std::time::Duration;

fn tokens(access: &str) -> StoredTokens {
    StoredTokens {
        access_token: access.into(),
        refresh_token: Some(format!("refresh-of-{access}")),
        resource: "https://mcp.example/mcp".into(),
        ..StoredTokens::default()
    }
}

#[test]
fn a_holder_whose_lock_expired_cannot_overwrite_its_successor() {
    let redis = Redis::start();
    let slow = RedisTokenStore::new(&redis.url(), "t")
        .unwrap()
        .lock_ttl(Duration::from_millis(200));
    let next = RedisTokenStore::new(&redis.url(), "t").unwrap();
    assert!(slow.load().is_none());

    let stale = slow.lock(Duration::from_secs(1)).unwrap().expect("a lock");
    // While it is held, nobody else gets it.
    let e = next.lock(Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    // The holder stalls past its lock's life; the next process takes over
    // and saves.
    std::thread::sleep(Duration::from_millis(300));
    let fresh = next.lock(Duration::from_secs(1)).unwrap().expect("a lock");
    next.save(&tokens("new")).unwrap();
    // The stalled holder's save is refused: it would lose the new tokens.
    let e = slow.save(&tokens("old")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(next.load().unwrap().access_token, "new");
    // Releasing an expired lock leaves the successor's alone.
    drop(stale);
    assert_eq!(redis.cli(&["EXISTS", "t:lock"]), "1");
    drop(fresh);
    assert_eq!(redis.cli(&["EXISTS", "t:lock"]), "0");
    // Without a lock, a save is a plain write; Debug shows no secret.
    slow.save(&tokens("later")).unwrap();
    assert_eq!(next.load().unwrap().access_token, "later");
    let shown = format!("{slow:?}");
    assert!(
        !shown.contains("later") && !shown.contains("redis.sock"),
        "{shown}"
    );
}
