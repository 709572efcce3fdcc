//! Tokens in Redis, for a fleet that outgrows one machine: the workers of a
//! service on several hosts sharing one authorization.
//!
//! The refresh protocol is [`TokenStore::lock`]'s, on Redis: the lock is a
//! key set with `SET NX PX` (it expires: a holder killed in the middle of
//! a refresh does not hold it forever) to a random fencing token, and a
//! save made under the lock is a compare-and-set: it lands only while the
//! lock still holds this holder's token, so a holder whose lock expired
//! (a long pause, a partition) can never overwrite the tokens its
//! successor saved. Releasing deletes the lock only if it is still ours.

use crate::oauth::{StoreLock, StoredTokens, TokenStore};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// Sets the tokens if the lock still holds our fencing token.
const SAVE_IF_HELD: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"#;

/// Deletes the lock if it still holds our fencing token.
const RELEASE_IF_HELD: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// A [`TokenStore`] in Redis under one key (`<key>`), with its refresh
/// lock at `<key>:lock`. `Debug` shows the key, never the URL (it may hold
/// a password) nor the tokens.
pub struct RedisTokenStore {
    client: redis::Client,
    key: String,
    lock_key: String,
    lock_ttl: Duration,
}

impl fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTokenStore")
            .field("key", &self.key)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

fn io_error(e: redis::RedisError) -> io::Error {
    io::Error::other(format!("redis: {}", e.category()))
}

impl RedisTokenStore {
    /// A store at `key` of the Redis server at `url` (`redis://host:port/db`,
    /// `redis+unix:///path/redis.sock`). Nothing is sent until first use.
    /// The refresh lock expires after 90 s unless released
    /// ([`RedisTokenStore::lock_ttl`]): well past a refresh, which the
    /// client bounds at 30 s by default.
    pub fn new(url: &str, key: impl Into<String>) -> io::Result<Self> {
        let client = redis::Client::open(url).map_err(io_error)?;
        let key = key.into();
        Ok(RedisTokenStore {
            client,
            lock_key: format!("{key}:lock"),
            key,
            lock_ttl: Duration::from_secs(90),
        })
    }

    /// How long the refresh lock outlives a holder that never releases it
    /// (killed mid-refresh): longer than a refresh takes, short enough
    /// for the others to wait.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    fn connection(&self) -> io::Result<redis::Connection> {
        connect(&self.client)
    }
}

/// A connection whose every read and write is bounded: a Redis that
/// stalls after accepting (a stopped process, a half-open link) costs a
/// typed error after 5 s, never a hang.
fn connect(client: &redis::Client) -> io::Result<redis::Connection> {
    let timeout = Some(Duration::from_secs(5));
    let c = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(io_error)?;
    c.set_read_timeout(timeout).map_err(io_error)?;
    c.set_write_timeout(timeout).map_err(io_error)?;
    Ok(c)
}

/// A held lock: its fencing token, and its release when dropped (if it is
/// still ours).
struct Held {
    client: redis::Client,
    lock_key: String,
    token: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Best effort: if Redis cannot be reached the lock expires.
        if let Ok(mut c) = connect(&self.client) {
            let _: Result<i64, _> = redis::cmd("EVAL")
                .arg(RELEASE_IF_HELD)
                .arg(1)
                .arg(&self.lock_key)
                .arg(&self.token)
                .query(&mut c);
        }
    }
}

impl TokenStore for RedisTokenStore {
    fn load(&self) -> Option<StoredTokens> {
        let mut c = self.connection().ok()?;
        let raw: Option<String> = redis::cmd("GET").arg(&self.key).query(&mut c).ok()?;
        serde_json::from_str(&raw?).ok()
    }

    /// A plain write (no lock held: one process, or a first
    /// authorization).
    fn save(&self, tokens: &StoredTokens) -> io::Result<()> {
        let body = serde_json::to_string(tokens).map_err(io::Error::other)?;
        let mut c = self.connection()?;
        redis::cmd("SET")
            .arg(&self.key)
            .arg(&body)
            .query::<()>(&mut c)
            .map_err(io_error)
    }

    /// Under the lock: lands only while the lock still holds this
    /// holder's own fencing token (a compare-and-set in one script).
    fn save_locked(&self, lock: &StoreLock, tokens: &StoredTokens) -> io::Result<()> {
        let Some(held) = lock.guard::<Held>() else {
            return self.save(tokens);
        };
        let body = serde_json::to_string(tokens).map_err(io::Error::other)?;
        let mut c = self.connection()?;
        let saved: i64 = redis::cmd("EVAL")
            .arg(SAVE_IF_HELD)
            .arg(2)
            .arg(&self.lock_key)
            .arg(&self.key)
            .arg(&held.token)
            .arg(&body)
            .query(&mut c)
            .map_err(io_error)?;
        if saved == 1 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the token store's lock expired before the save: another process owns the tokens now",
            ))
        }
    }

    fn lock(&self, wait: Duration) -> io::Result<Option<StoreLock>> {
        let mut c = self.connection()?;
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let ttl_ms = u64::try_from(self.lock_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let until = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        loop {
            let set: Option<String> = redis::cmd("SET")
                .arg(&self.lock_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query(&mut c)
                .map_err(io_error)?;
            if set.is_some() {
                return Ok(Some(StoreLock::new(Held {
                    client: self.client.clone(),
                    lock_key: self.lock_key.clone(),
                    token,
                })));
            }
            if Instant::now() >= until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("token store locked by another process for {wait:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
