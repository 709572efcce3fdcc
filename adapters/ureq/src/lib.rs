//! Blocking MCP client over `ureq` 3 that survives expired sessions, refused
//! tokens and cut connections, driven by [`mcp_recovery_core`].
//!
//! The adapter moves bytes and waits; every decision (when to re-initialize,
//! what may be replayed, when to give up) is the core's. One [`Client`] holds
//! one session and is shared by any number of threads (`Clone` is cheap):
//! when the session is lost, the thread that saw it first re-initializes it,
//! the others wait on a condvar until it is ready or their deadline passes,
//! and every call is sent at most [`core::MAX_ATTEMPTS`] times.
//!
//! ```no_run
//! use mcp_recovery_ureq::Client;
//! use serde_json::json;
//!
//! let client = Client::builder("http://127.0.0.1:8000/mcp").build()?;
//! for tool in client.list_tools(None)?.tools {
//!     println!("{}", tool.name);
//! }
//! let sum = client.call_tool("add", json!({"a": 2, "b": 3}))?;
//! println!("{}", sum.text());
//! client.close()?;
//! # Ok::<(), mcp_recovery_ureq::Error>(())
//! ```
//!
//! Transport: HTTP/1.1 with keep-alive, redirects off (a bearer token never
//! follows one), `timeout_per_read` as the idle limit of a response or SSE
//! stream (never a global timeout on a stream), responses as JSON or SSE.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod drive;
pub mod types;

pub use mcp_recovery_core as core;
pub use types::*;

use crate::drive::{Shared, State, Watch};
use mcp_recovery_core::{
    Action, BreakerConfig, BreakerState, CallError, Config, Engine, Operation, Protocol, RpcError,
    Token,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The core gave up on the call (see [`CallError`] for each reason).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The server answered with a JSON-RPC error.
    #[error("server error {}: {}", .0.code, .0.message)]
    Rpc(RpcError),
    /// The call's own timeout passed; it was cancelled.
    #[error("call timed out")]
    Timeout,
    /// The result did not have the shape MCP gives it.
    #[error("unexpected result: {0}")]
    Decode(String),
    /// The client was set up wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Why a token refresh failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// A person must authorize again (`invalid_grant`, nothing to refresh).
    #[error("re-authorization needed: {0}")]
    NeedsReauth(String),
    /// Anything else (token endpoint down...). Must not contain secrets.
    #[error("{0}")]
    Failed(String),
}

/// Where bearer tokens come from.
pub trait TokenSource: Send + Sync {
    /// The token to start with.
    fn token(&self) -> Option<Token>;
    /// Whether [`TokenSource::refresh`] can produce a new token. When not,
    /// a 401 surfaces [`CallError::Unauthorized`] at once.
    fn can_refresh(&self) -> bool {
        false
    }
    /// Produces a new token after the server refused the one of
    /// `generation`. Called once for all callers that failed on it.
    fn refresh(&self, generation: u64, challenge: Option<&str>) -> Result<Token, RefreshError> {
        let _ = (generation, challenge);
        Err(RefreshError::NeedsReauth("static token".into()))
    }
}

/// A fixed bearer token.
pub struct StaticToken(Token);

impl StaticToken {
    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Self {
        StaticToken(Token::bearer(token))
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> Option<Token> {
        Some(self.0.clone())
    }
}

/// Answers what the server sends on its own: requests (sampling,
/// elicitation, roots...) and notifications (logging, list changed...).
/// Called on the thread that read the message, never under a lock.
/// Progress of a call goes to that call's callback instead.
pub trait ServerHandler: Send + Sync {
    /// A server request. The default refuses with "method not found".
    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        let _ = params;
        Err(RpcError::new(-32601, format!("method not found: {method}")))
    }
    /// A server notification.
    fn notification(&self, method: &str, params: Option<Value>) {
        let _ = (method, params);
    }
}

/// Cancels one call from any thread: the call returns
/// [`CallError::Cancelled`] and, if its request reached the server, the
/// server gets `notifications/cancelled`. A call blocked reading a response
/// notices at its next chunk or when the read timeout passes.
#[derive(Clone)]
pub struct CancelHandle {
    flag: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl CancelHandle {
    /// Cancels the call. Idempotent.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        // Taking the lock orders this with a waiter's check of the flag.
        drop(self.shared.lock());
        self.shared.wake.notify_all();
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.flag)
            .finish()
    }
}

/// Per-call options for [`Client::call_tool_with`].
#[derive(Default)]
#[non_exhaustive]
pub struct CallOptions<'a> {
    /// Replay-safe or not, overriding the tool's annotations.
    pub idempotent: Option<bool>,
    /// Ends the call with [`Error::Timeout`] after this long (overrides the
    /// client's call timeout).
    pub timeout: Option<Duration>,
    /// Lets another thread cancel the call.
    pub cancel: Option<CancelHandle>,
    /// Receives the server's progress notifications for this call.
    pub progress: Option<Box<dyn FnMut(Progress) + 'a>>,
}

impl<'a> CallOptions<'a> {
    /// No options: the client's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Declares the call replay-safe (or not), whatever the tool says.
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = Some(yes);
        self
    }
    /// Gives up (and cancels) after `d`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Lets `handle` cancel the call.
    pub fn cancel(mut self, handle: CancelHandle) -> Self {
        self.cancel = Some(handle);
        self
    }
    /// Asks the server for progress notifications and passes them to `f`.
    pub fn progress(mut self, f: impl FnMut(Progress) + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}

/// Sets up a [`Client`].
#[must_use]
pub struct ClientBuilder {
    config: Config,
    connect_timeout: Duration,
    read_timeout: Duration,
    call_timeout: Option<Duration>,
    tokens: Option<Arc<dyn TokenSource>>,
    handler: Option<Arc<dyn ServerHandler>>,
    observer: Option<Arc<drive::Observer>>,
}

impl ClientBuilder {
    /// Adds a header to every request (not `Authorization`: use a token).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.config = self.config.header(name, value);
        self
    }
    /// Uses a fixed bearer token.
    pub fn bearer(self, token: &str) -> Self {
        self.token_source(StaticToken::bearer(token))
    }
    /// Uses a token source (refreshing ones plug in here).
    pub fn token_source(mut self, source: impl TokenSource + 'static) -> Self {
        self.tokens = Some(Arc::new(source));
        self
    }
    /// TCP connect timeout (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Longest silence while reading a response or an SSE stream
    /// (default 60 s).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }
    /// Default limit on a whole call, recovery included (default none).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = Some(d);
        self
    }
    /// How long a call waits for a lost session to come back (default 15 s).
    pub fn await_ready(mut self, d: Duration) -> Self {
        self.config = self.config.await_ready(d);
        self
    }
    /// Circuit breaker settings.
    pub fn breaker(mut self, b: BreakerConfig) -> Self {
        self.config = self.config.breaker(b);
        self
    }
    /// Largest response body or SSE event (default 16 MiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.config.max_body_size = bytes;
        self
    }
    /// Protocol era (default: the 2025 session protocol).
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.config = self.config.protocol(p);
        self
    }
    /// Any other core setting.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
    /// Who answers server requests and notifications.
    pub fn handler(mut self, h: impl ServerHandler + 'static) -> Self {
        self.handler = Some(Arc::new(h));
        self
    }
    /// Watches the core's recovery actions (`SignalReconnect`,
    /// `AwaitReady`, `RetryOnce`, `SessionReady`, `SessionFailed`), e.g. to
    /// log them. Runs on the thread that took the action, never under a lock.
    pub fn on_recovery(mut self, f: impl Fn(&Action) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Builds the client. Nothing is sent until the first call.
    pub fn build(mut self) -> Result<Client, Error> {
        let url = self.config.url.as_str();
        let parsed: ureq::http::Uri = url
            .parse()
            .map_err(|_| Error::Config(format!("bad URL {url:?}")))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(Error::Config(format!("not an http(s) URL: {url:?}")));
        }
        if self
            .config
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            return Err(Error::Config(
                "set credentials with bearer() or token_source()".into(),
            ));
        }
        self.config.refresh_on_401 = self.tokens.as_ref().is_some_and(|t| t.can_refresh());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(self.connect_timeout))
            .timeout_per_read(Some(self.read_timeout))
            .user_agent(concat!("mcp-recovery/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let await_ready = self.config.await_ready;
        let mut engine = Engine::new(self.config);
        let token = self.tokens.as_ref().and_then(|t| t.token());
        engine.set_token(token, Instant::now());
        let shared = Shared {
            state: Mutex::new(State::new(engine)),
            wake: Default::default(),
            agent,
            read_timeout: self.read_timeout,
            handler: self.handler,
            observer: self.observer,
            tokens: self.tokens,
        };
        Ok(Client {
            shared: Arc::new(shared),
            replay_safe: Arc::new(Mutex::new(HashMap::new())),
            call_timeout: self.call_timeout,
            await_ready,
            progress_tokens: Arc::new(AtomicU64::new(0)),
        })
    }
}

/// A blocking MCP client with one session, shared by all threads.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Tool name → replay-safe, from the annotations of `tools/list`.
    replay_safe: Arc<Mutex<HashMap<String, bool>>>,
    call_timeout: Option<Duration>,
    await_ready: Duration,
    progress_tokens: Arc<AtomicU64>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("Client")
            .field("url", &st.engine.session().url())
            .field("generation", &st.engine.generation())
            .field("ready", &st.engine.is_ready())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts setting up a client for the MCP endpoint at `url`.
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            config: Config::new(url),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            call_timeout: None,
            tokens: None,
            handler: None,
            observer: None,
        }
    }

    /// Runs the initialize handshake now (it also runs implicitly on the
    /// first call). Waits at most the await-ready deadline for a handshake
    /// another thread started.
    pub fn initialize(&self) -> Result<(), Error> {
        self.shared.initialize(Instant::now() + self.await_ready)
    }

    /// Any request, answered as raw JSON. Replay-safe when the method is
    /// read-only by the specification.
    pub fn request(&self, method: &str, params: Option<Value>) -> Result<Value, Error> {
        self.run(
            Operation::new(method.to_owned(), params),
            CallOptions::default(),
        )
    }

    /// `tools/list`, one page. Remembers which tools say they are
    /// read-only or idempotent, so later calls to them may be replayed.
    pub fn list_tools(&self, cursor: Option<&str>) -> Result<ToolList, Error> {
        let list: ToolList = decode(self.run(Operation::list_tools(cursor), Default::default())?)?;
        let mut safe = self
            .replay_safe
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        safe.extend(list.tools.iter().map(|t| (t.name.clone(), t.replay_safe())));
        Ok(list)
    }

    /// `tools/list`, every page.
    pub fn all_tools(&self) -> Result<Vec<Tool>, Error> {
        paginate(|c| self.list_tools(c).map(|p| (p.tools, p.next_cursor)))
    }

    /// `tools/call`. Not replayed after an ambiguous failure unless the
    /// tool was listed as read-only or idempotent.
    pub fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolResult, Error> {
        self.call_tool_with(name, arguments, CallOptions::default())
    }

    /// `tools/call` with per-call options.
    pub fn call_tool_with(
        &self,
        name: &str,
        arguments: Value,
        opts: CallOptions<'_>,
    ) -> Result<ToolResult, Error> {
        let known = self
            .replay_safe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied();
        let mut params = Map::new();
        params.insert("name".into(), name.into());
        params.insert("arguments".into(), arguments);
        if opts.progress.is_some() {
            let token = self.progress_tokens.fetch_add(1, Ordering::Relaxed);
            params.insert("_meta".into(), json!({ "progressToken": token }));
        }
        let op = Operation::new("tools/call", Some(Value::Object(params)));
        let op = op.idempotent(opts.idempotent.or(known).unwrap_or(false));
        decode(self.run(op, opts)?)
    }

    /// `resources/list`, one page.
    pub fn list_resources(&self, cursor: Option<&str>) -> Result<ResourceList, Error> {
        decode(self.run(Operation::list_resources(cursor), Default::default())?)
    }

    /// `resources/read`.
    pub fn read_resource(&self, uri: &str) -> Result<ResourceRead, Error> {
        decode(self.run(Operation::read_resource(uri), Default::default())?)
    }

    /// `prompts/list`, one page.
    pub fn list_prompts(&self, cursor: Option<&str>) -> Result<PromptList, Error> {
        decode(self.run(Operation::list_prompts(cursor), Default::default())?)
    }

    /// `prompts/get`; `arguments` is a JSON object of strings, if any.
    pub fn get_prompt(&self, name: &str, arguments: Option<Value>) -> Result<PromptResult, Error> {
        decode(self.run(Operation::get_prompt(name, arguments), Default::default())?)
    }

    /// `ping`.
    pub fn ping(&self) -> Result<(), Error> {
        self.run(Operation::ping(), Default::default()).map(drop)
    }

    /// Ends the session: pending calls fail with [`CallError::Closed`], the
    /// server gets a DELETE (a 405 is fine), later calls fail at once.
    pub fn close(&self) -> Result<(), Error> {
        let mut work = Default::default();
        {
            let mut st = self.shared.lock();
            st.engine.close(Instant::now());
            self.shared.pump(&mut st, &mut work);
        }
        self.shared.run(&mut work, &mut Watch::none());
        Ok(())
    }

    /// A handle to cancel a call made with [`CallOptions::cancel`].
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            flag: Arc::new(AtomicBool::new(false)),
            shared: self.shared.clone(),
        }
    }

    /// The session id the server gave, if any.
    pub fn session_id(&self) -> Option<String> {
        self.shared.lock().engine.session().id().map(str::to_owned)
    }

    /// The server's `serverInfo` (name, version...), once initialized.
    pub fn server_info(&self) -> Option<Value> {
        self.initialize_result().map(|r| r["serverInfo"].clone())
    }

    /// The server's whole `InitializeResult` (capabilities, serverInfo,
    /// instructions), once initialized.
    pub fn initialize_result(&self) -> Option<Value> {
        self.shared.lock().engine.session().server().cloned()
    }

    /// The negotiated protocol version, once initialized.
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.shared.lock().engine.session().protocol_version()
    }

    /// How many sessions this client has initialized (1 after the first).
    pub fn generation(&self) -> u64 {
        self.shared.lock().engine.generation()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.lock().engine.breaker()
    }

    fn run(&self, op: Operation, mut opts: CallOptions<'_>) -> Result<Value, Error> {
        let timeout = opts.timeout.or(self.call_timeout);
        let mut watch = Watch {
            call: None,
            cancel: opts.cancel.as_ref().map(|c| &*c.flag),
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            progress: opts
                .progress
                .as_deref_mut()
                .map(|p| p as &mut dyn FnMut(Progress)),
        };
        self.shared.call(op, &mut watch)
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))
}

/// Follows `nextCursor` to the end; a cursor seen twice ends it (a server
/// that loops must not loop us).
fn paginate<T>(
    mut page: impl FnMut(Option<&str>) -> Result<(Vec<T>, Option<String>), Error>,
) -> Result<Vec<T>, Error> {
    let (mut all, mut cursor) = page(None)?;
    let mut seen = std::collections::HashSet::new();
    while let Some(c) = cursor.filter(|c| seen.insert(c.clone())) {
        let (items, next) = page(Some(&c))?;
        all.extend(items);
        cursor = next;
    }
    Ok(all)
}
