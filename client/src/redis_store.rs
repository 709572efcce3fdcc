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
use std::sync::{Arc, Mutex, PoisonError};
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
    /// The fencing token of the lock this store holds now, if any.
    held: Arc<Mutex<Option<String>>>,
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
    /// The refresh lock expires after 30 s unless released
    /// ([`RedisTokenStore::lock_ttl`]).
    pub fn new(url: &str, key: impl Into<String>) -> io::Result<Self> {
        let client = redis::Client::open(url).map_err(io_error)?;
        let key = key.into();
        Ok(RedisTokenStore {
            client,
            lock_key: format!("{key}:lock"),
            key,
            lock_ttl: Duration::from_secs(30),
            held: Arc::new(Mutex::new(None)),
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
        self.client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(io_error)
    }
}

/// Releases the lock when dropped, if it is still ours.
struct Held {
    client: redis::Client,
    lock_key: String,
    token: String,
    held: Arc<Mutex<Option<String>>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.as_deref() == Some(self.token.as_str()) {
            *held = None;
        }
        drop(held);
        // Best effort: if Redis cannot be reached the lock expires.
        if let Ok(mut c) = self
            .client
            .get_connection_with_timeout(Duration::from_secs(5))
        {
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

    fn save(&self, tokens: &StoredTokens) -> io::Result<()> {
        let body = serde_json::to_string(tokens).map_err(io::Error::other)?;
        let mut c = self.connection()?;
        let fencing = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match fencing {
            // Under the lock: only while it is still ours.
            Some(token) => {
                let saved: i64 = redis::cmd("EVAL")
                    .arg(SAVE_IF_HELD)
                    .arg(2)
                    .arg(&self.lock_key)
                    .arg(&self.key)
                    .arg(&token)
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
            None => redis::cmd("SET")
                .arg(&self.key)
                .arg(&body)
                .query::<()>(&mut c)
                .map_err(io_error),
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
        let until = Instant::now() + wait;
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
                *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(token.clone());
                return Ok(Some(StoreLock::new(Held {
                    client: self.client.clone(),
                    lock_key: self.lock_key.clone(),
                    token,
                    held: self.held.clone(),
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
