//! The 2026-07-28 result cache: listings and reads carry `ttlMs` (how long
//! the result stays fresh) and `cacheScope`; a request asked again while
//! its answer is fresh is answered from here, without a round trip. Keyed
//! by method and parameters (the cursor, the URI); a `list_changed`
//! notification drops that listing; a new token drops everything (a
//! `private` result belongs to one authorization). Bounded: the oldest
//! entry goes first.

use crate::policy::later;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Results that may carry cache hints (the specification's list).
const CACHEABLE: &[&str] = &[
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// No hint is trusted for longer than a day.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// The most bytes of results kept (their JSON length), whatever the
/// number of entries.
const MAX_BYTES: usize = 8 * 1024 * 1024;

struct Entry {
    value: Value,
    fresh_until: Instant,
    /// Insertion order, for eviction.
    seq: u64,
    /// The result's JSON length.
    bytes: usize,
}

#[derive(Default)]
pub(crate) struct Cache {
    entries: BTreeMap<String, Entry>,
    capacity: usize,
    seq: u64,
    bytes: usize,
}

/// Counts only: cached results may be private to a user.
impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.entries.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            ..Cache::default()
        }
    }

    /// The key of a request whose answer may be cached, if it may.
    pub(crate) fn key(method: &str, params: Option<&Value>) -> Option<String> {
        if !CACHEABLE.contains(&method) {
            return None;
        }
        let params = match params {
            Some(Value::Object(m)) => {
                let mut m = m.clone();
                // Not part of what is asked (and per-request anyway).
                m.remove("_meta");
                Value::Object(m)
            }
            _ => Value::Null,
        };
        Some(format!("{method} {params}"))
    }

    /// The fresh answer to `key`, if there is one.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<Value> {
        let e = self.entries.get(key)?;
        (now < e.fresh_until).then(|| e.value.clone())
    }

    /// Keeps `result` for as long as its `ttlMs` says (nothing without a
    /// positive one).
    pub(crate) fn put(&mut self, key: String, result: &Value, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let ttl = result
            .get("ttlMs")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or_default()
            .min(MAX_TTL);
        self.remove(&key);
        if ttl.is_zero() {
            return;
        }
        let bytes = serde_json::to_vec(result).map_or(usize::MAX, |v| v.len());
        if bytes > MAX_BYTES / 4 {
            // One result may not push out everything else.
            return;
        }
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| now >= e.fresh_until)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.remove(&k);
        }
        while self.entries.len() >= self.capacity || self.bytes + bytes > MAX_BYTES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.remove(&k),
                None => break,
            };
        }
        self.seq += 1;
        self.bytes += bytes;
        self.entries.insert(
            key,
            Entry {
                value: result.clone(),
                fresh_until: later(now, ttl),
                seq: self.seq,
                bytes,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.bytes;
        }
    }

    /// A notification: a `list_changed` drops that listing (every page), a
    /// `resources/updated` the reads of that resource.
    pub(crate) fn on_notification(&mut self, method: &str, params: Option<&Value>) {
        let dropped: &[&str] = match method {
            "notifications/tools/list_changed" => &["tools/list"],
            "notifications/prompts/list_changed" => &["prompts/list"],
            "notifications/resources/list_changed" => {
                &["resources/list", "resources/templates/list"]
            }
            "notifications/resources/updated" => {
                if let Some(key) = Cache::key("resources/read", Some(&uri_only(params))) {
                    self.remove(&key);
                }
                return;
            }
            _ => return,
        };
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| dropped.contains(&k.split(' ').next().unwrap_or("")))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// Everything goes (a new token: another authorization's results).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

fn uri_only(params: Option<&Value>) -> Value {
    let uri = params.and_then(|p| p.get("uri")).cloned();
    serde_json::json!({ "uri": uri })
}
