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
    // One store shared by two holders (two clients of one process, or two
    // processes: the fencing token is each holder's own, never the store's).
    let store = RedisTokenStore::new(&redis.url(), "t")
        .unwrap()
        .lock_ttl(Duration::from_millis(200));
    let other = RedisTokenStore::new(&redis.url(), "t").unwrap();
    assert!(store.load().is_none());

    let stale = store.lock(Duration::from_secs(1)).unwrap().expect("a lock");
    // While it is held, nobody else gets it.
    let e = other.lock(Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    // The holder stalls past its lock's life; the next holder takes over
    // (through the same store) and saves.
    std::thread::sleep(Duration::from_millis(300));
    let fresh = store.lock(Duration::from_secs(1)).unwrap().expect("a lock");
    store.save_locked(&fresh, &tokens("new")).unwrap();
    // The stalled holder's save is refused, while the successor holds the
    // lock and after it released it: it would lose the new tokens.
    let e = store.save_locked(&stale, &tokens("old")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    drop(fresh);
    assert_eq!(redis.cli(&["EXISTS", "t:lock"]), "0");
    assert!(store.save_locked(&stale, &tokens("old")).is_err());
    assert_eq!(other.load().unwrap().access_token, "new");
    // Releasing an expired lock leaves a successor's alone.
    let third = other.lock(Duration::from_secs(1)).unwrap().expect("a lock");
    drop(stale);
    assert_eq!(redis.cli(&["EXISTS", "t:lock"]), "1");
    drop(third);
    // Without a lock, a save is a plain write; Debug shows no secret.
    store.save(&tokens("later")).unwrap();
    assert_eq!(other.load().unwrap().access_token, "later");
    let shown = format!("{store:?}");
    assert!(
        !shown.contains("later") && !shown.contains("redis.sock"),
        "{shown}"
    );
}
