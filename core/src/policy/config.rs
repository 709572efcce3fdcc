//! The engine's settings.

use crate::breaker::BreakerConfig;
use crate::classify::SessionPatterns;
use crate::http;
use crate::session::Protocol;
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;

/// Settings of an [`Engine`](crate::Engine). `Debug` redacts credential headers.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The MCP endpoint URL.
    pub url: String,
    /// Which revision to speak (default [`Protocol::Auto`]: find out).
    pub protocol: Protocol,
    /// `clientInfo` sent to the server.
    pub client_info: Value,
    /// Client capabilities sent to the server.
    pub capabilities: Value,
    /// Extra headers on every request. Values of `Authorization`, `Cookie`
    /// and `Proxy-Authorization` are treated as secrets.
    pub headers: Vec<(String, String)>,
    /// How long a call waits for a (re-)initialized session before it
    /// surfaces [`CallError::ReconnectTimeout`](crate::CallError::ReconnectTimeout) (default 15 s).
    pub await_ready: Duration,
    /// How long one initialize handshake may take before the core abandons
    /// it (default 30 s), so a server that never answers cannot wedge the
    /// session.
    pub handshake_timeout: Duration,
    /// How long a call waits for a token refresh (default 30 s).
    pub refresh_timeout: Duration,
    /// After a refused connection (nothing listening: a server restarting,
    /// a pod being replaced) one request at a time goes to see whether the
    /// server is back: after 100 ms, then doubling up to this (default 1 s).
    pub connect_retry_delay: Duration,
    /// How long a call waits for a server that refuses connections, from
    /// its first refused request, before it fails (default 10 s; within the
    /// call's own timeout).
    pub restart_budget: Duration,
    /// Whether a 401 asks for a refresh ([`Action::Refresh401`](crate::Action::Refresh401)). Turn off
    /// for static tokens: a 401 then surfaces [`CallError::NeedsReauth`](crate::CallError::NeedsReauth).
    pub refresh_on_401: bool,
    /// A token known to expire ([`Engine::set_token_expiry`](crate::Engine::set_token_expiry)) is refreshed
    /// this long before it does, while calls go on with it (default 30 s).
    pub refresh_skew: Duration,
    /// Circuit breaker settings.
    pub breaker: BreakerConfig,
    /// Messages that mean "session expired".
    pub session_patterns: SessionPatterns,
    /// Largest response body or event accepted (default 16 MiB).
    pub max_body_size: usize,
    /// A call's event stream that ends (or breaks) after an event id but
    /// before the answer is resumed with a GET carrying `Last-Event-ID`,
    /// after the stream's `retry:` or, without one, this long (default 1 s).
    pub resume_delay: Duration,
    /// The longest wait before a resume, whatever `retry:` asks (default 10 s).
    pub max_resume_delay: Duration,
    /// Resumes in a row that bring no new event before the call gives up
    /// as if the stream had simply broken (default 3).
    pub max_resumes: u8,
    /// Whether to keep a GET event stream open for what the server sends
    /// on its own (requests, notifications), resumed like a call's stream
    /// when it drops (default off: it holds a connection, and a thread in
    /// the blocking client).
    pub listen: bool,
    /// With [`Config::listen`], how long a new session's calls wait for the
    /// listening stream's answer before they go anyway (default 1 s): a
    /// server sends what it asks outside any call on that stream only, and
    /// one whose stream is not open yet drops it (the TypeScript SDK does),
    /// so a call sent first could wait for a question that never comes.
    pub listen_wait: Duration,
    /// Rounds of "input required" one call may go through (a
    /// multi-round-trip request, 2026-07-28) before it fails with
    /// [`ProtocolError::TooManyRounds`](crate::ProtocolError::TooManyRounds) (default 8).
    pub max_input_rounds: u8,
    /// Results kept for their `ttlMs` (2026-07-28 listings and reads), so
    /// the same request asked again while fresh costs no round trip
    /// (default 256 entries; 0 turns the cache off).
    pub cache_entries: usize,
    /// How long the `server/discover` probe of [`Protocol::Auto`] may go
    /// unanswered before the handshake is tried instead (default 10 s).
    pub probe_timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if http::is_sensitive(n) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("headers", &headers)
            .field("await_ready", &self.await_ready)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("refresh_timeout", &self.refresh_timeout)
            .field("connect_retry_delay", &self.connect_retry_delay)
            .field("restart_budget", &self.restart_budget)
            .field("refresh_on_401", &self.refresh_on_401)
            .field("refresh_skew", &self.refresh_skew)
            .field("breaker", &self.breaker)
            .field("max_body_size", &self.max_body_size)
            .field("resume_delay", &self.resume_delay)
            .field("max_resume_delay", &self.max_resume_delay)
            .field("max_resumes", &self.max_resumes)
            .field("listen", &self.listen)
            .field("max_input_rounds", &self.max_input_rounds)
            .field("cache_entries", &self.cache_entries)
            .field("probe_timeout", &self.probe_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Config {
            url: url.into(),
            protocol: Protocol::Auto,
            client_info: json!({"name": "mcp-recovery", "version": env!("CARGO_PKG_VERSION")}),
            capabilities: json!({}),
            headers: Vec::new(),
            await_ready: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(30),
            refresh_timeout: Duration::from_secs(30),
            connect_retry_delay: Duration::from_secs(1),
            restart_budget: Duration::from_secs(10),
            refresh_on_401: true,
            refresh_skew: Duration::from_secs(30),
            breaker: BreakerConfig::default(),
            session_patterns: SessionPatterns::default(),
            max_body_size: 16 * 1024 * 1024,
            resume_delay: Duration::from_secs(1),
            max_resume_delay: Duration::from_secs(10),
            max_resumes: 3,
            listen: false,
            listen_wait: Duration::from_secs(1),
            max_input_rounds: 8,
            cache_entries: 256,
            probe_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the await-ready deadline.
    pub fn await_ready(mut self, d: Duration) -> Self {
        self.await_ready = d;
        self
    }

    /// Sets the breaker.
    pub fn breaker(mut self, b: BreakerConfig) -> Self {
        self.breaker = b;
        self
    }

    /// Adds a header sent with every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the protocol era.
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }
}
