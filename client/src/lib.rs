//! The client surface the `mcp-recovery` adapters share, so the blocking
//! (`mcp-recovery-ureq`) and async (`mcp-recovery-smol`) clients take the
//! same settings, return the same types and fail with the same errors, and
//! the one call driver both of them run.
//!
//! Recovery is decided in [`mcp_recovery_core`]; the [`drive`] module
//! carries its decisions out over an adapter's [`drive::Io`], written once.
//!
//! # Map
//!
//! - **Setting up**: [`ClientBuilder`] (URL, or a child process over
//!   stdio with [`ClientBuilder::stdio`] and [`stdio::StdioCommand`]; headers, [`bearer`](ClientBuilder::bearer)
//!   / [`token_source`](ClientBuilder::token_source) / [`oauth`](ClientBuilder::oauth),
//!   timeouts, [`await_ready`](ClientBuilder::await_ready), [`breaker`](ClientBuilder::breaker),
//!   [`listen`](ClientBuilder::listen), [`handler`](ClientBuilder::handler),
//!   [`on_recovery`](ClientBuilder::on_recovery)); a client type implements
//!   [`Build`].
//! - **Calling** (methods of both clients, declared once): `initialize`,
//!   `request` (any method), `list_tools` / `all_tools`, `call_tool` /
//!   `call_tool_with` ([`CallOptions`]: idempotency, timeout,
//!   [`CancelHandle`], progress), `list_resources`, `read_resource`,
//!   `list_prompts`, `get_prompt`, `ping`, `send` (any typed [`Request`]),
//!   `close`, `authorize`.
//! - **Looking**: `session_id`, `server_info`, `initialize_result`,
//!   `protocol_version`, `generation`, `breaker_state`.
//! - **Results**: the typed MCP results in [`types`] (re-exported here).
//! - **Failing**: [`Error`]; its [`Error::Call`] carries a [`CallError`],
//!   the reason recovery gave up; [`RpcError`] is a server's own answer.
//! - **Tokens and the server's own messages**: [`TokenSource`],
//!   [`StaticToken`], [`oauth`] ([`OAuthConfig`](oauth::OAuthConfig),
//!   token stores), [`ServerHandler`].
//! - **Watching recovery**: [`Action`] (through `on_recovery`),
//!   [`Recovery`], [`BreakerState`].
//! - **Writing an adapter**: [`drive`] ([`Io`](drive::Io),
//!   [`Body`](drive::Body), [`Driver`](drive::Driver)).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod dpop;
pub mod drive;
pub mod loopback;
pub mod oauth;
#[cfg(feature = "redis")]
pub mod redis_store;
mod request;
pub mod stdio;
pub mod types;

pub use mcp_recovery_core as core;
pub use request::Request;
pub use types::*;

/// What a client's user matches on, from the core.
pub use mcp_recovery_core::{
    Action, BreakerConfig, BreakerState, CallError, FailureKind, Protocol, ProtocolError, Recovery,
    RpcError, Token, TokenGeneration,
};

/// What `client_methods!` names from the adapters' side.
#[doc(hidden)]
pub mod __private {
    pub use futures_lite::future::block_on;
    pub use serde_json::Value;
}

use mcp_recovery_core::{CallEnd, CallId, Config, Dispatcher, Engine, Input, Job, Operation};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
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
    /// A listing went past its bound ([`ClientBuilder::max_pages`],
    /// [`ClientBuilder::max_list_items`]): the server keeps handing out
    /// cursors.
    #[error(
        "listing stopped after {pages} pages and {items} items: the server keeps sending more"
    )]
    TooManyPages {
        /// Pages read.
        pages: usize,
        /// Items read.
        items: usize,
    },
    /// The authorization flow failed.
    #[error("authorization failed: {0}")]
    Auth(#[from] oauth::AuthError),
    /// A tool's result does not match the output schema its listing
    /// declared (or lacks `structuredContent`): the tool ran, its answer
    /// cannot be trusted to have the promised shape.
    #[error("tool `{tool}` answered outside its output schema: {message}")]
    InvalidOutput {
        /// The tool.
        tool: String,
        /// What does not match (the first few problems).
        message: String,
    },
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
    /// a 401 surfaces [`CallError::NeedsReauth`] at once.
    fn can_refresh(&self) -> bool {
        false
    }
    /// How long the current token has left, when known (an OAuth token's
    /// `expires_in`): the client refreshes it shortly before.
    fn expires_in(&self) -> Option<Duration> {
        None
    }
    /// Produces a new token after the server refused the one of
    /// `generation`. Called once for all callers that failed on it (the
    /// async client runs it on a blocking-capable thread).
    fn refresh(
        &self,
        generation: TokenGeneration,
        challenge: Option<&str>,
    ) -> Result<Token, RefreshError> {
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
/// Called while the response that carried the message is being read, never
/// under a lock. Progress of a call goes to that call's callback instead.
///
/// Implement the typed methods ([`ServerHandler::on_request`],
/// [`ServerHandler::on_notification`]) or the raw ones
/// ([`ServerHandler::request`], [`ServerHandler::notification`]), whose
/// defaults hand the message, typed, to the typed ones.
pub trait ServerHandler: Send + Sync {
    /// The client capabilities this handler serves, declared to the
    /// server (`initialize`, and every request's `_meta` on 2026-07-28):
    /// `{"elicitation": {"form": {}}}` for a handler that answers
    /// `elicitation/create`, `{"sampling": {}}`. Merged into the
    /// configured ones (roots given to the builder declare themselves). A
    /// server asks only for what is declared (a 2026-07-28 server refuses
    /// a tool that needs an undeclared one, `-32021`). The default
    /// declares nothing.
    fn capabilities(&self) -> Value {
        Value::Object(serde_json::Map::new())
    }
    /// A server request, typed. The default refuses with "method not
    /// found".
    fn on_request(&self, request: ServerRequest) -> Result<Value, RpcError> {
        let method = match &request {
            ServerRequest::Elicit(_) => "elicitation/create",
            ServerRequest::CreateMessage(_) => "sampling/createMessage",
            ServerRequest::ListRoots => "roots/list",
            ServerRequest::Ping => return Ok(Value::Object(serde_json::Map::new())),
            // A method the client knows, whose params did not parse.
            ServerRequest::Other { method, .. } if method == "elicitation/create" => {
                return Err(RpcError::new(-32602, "invalid elicitation request"));
            }
            ServerRequest::Other { method, .. } => method,
        };
        Err(RpcError::new(-32601, format!("method not found: {method}")))
    }
    /// A server notification, typed. The default ignores it.
    fn on_notification(&self, notification: Notification) {
        let _ = notification;
    }
    /// A server request, raw. The default types it for
    /// [`ServerHandler::on_request`].
    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        self.on_request(ServerRequest::parse(method, params))
    }
    /// A server notification, raw. The default types it for
    /// [`ServerHandler::on_notification`].
    fn notification(&self, method: &str, params: Option<Value>) {
        self.on_notification(Notification::parse(method, params))
    }
}

/// The answer to a server request when no [`ServerHandler`] is set, or the
/// handler's.
/// Answers a server request: `roots/list`, elicitation and sampling by
/// what the builder was given for them, the rest by the handler; `ping`
/// even with no handler.
pub(crate) fn answer(s: &Settings, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
    if let ("roots/list", Some(roots)) = (method, &s.roots) {
        let roots = roots.lock().unwrap_or_else(PoisonError::into_inner);
        return Ok(json!({ "roots": *roots }));
    }
    if let ("elicitation/create", Some(elicit)) = (method, &s.elicit) {
        let request: ElicitRequest = params
            .and_then(|p| serde_json::from_value(p).ok())
            .ok_or_else(|| RpcError::new(-32602, "invalid elicitation request"))?;
        return Ok(elicit(request).to_value());
    }
    if let ("sampling/createMessage", Some(sample)) = (method, &s.sample) {
        return sample(params.ok_or_else(|| RpcError::new(-32602, "no params"))?);
    }
    match (s.handler.as_deref(), method) {
        (Some(h), _) => h.request(method, params),
        (None, "ping") => Ok(json!({})),
        (None, _) => Err(RpcError::new(-32601, format!("method not found: {method}"))),
    }
}

/// Cancels one call from anywhere: the call returns
/// [`CallError::Cancelled`] and, if its request reached the server, the
/// server gets `notifications/cancelled`. Get one from the client's
/// `cancel_handle`.
#[derive(Clone)]
pub struct CancelHandle {
    flag: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl CancelHandle {
    /// A handle that runs `wake` (wakes the waiting call) when cancelled.
    pub(crate) fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        CancelHandle {
            flag: Arc::new(AtomicBool::new(false)),
            wake,
        }
    }

    /// Cancels the call. Idempotent.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        (self.wake)();
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A call's progress callback.
pub type ProgressFn<'a> = dyn FnMut(Progress) + Send + 'a;

/// Per-call options for `call_tool_with`.
#[derive(Default)]
#[non_exhaustive]
pub struct CallOptions<'a> {
    /// Replay-safe or not, overriding the tool's annotations.
    pub idempotent: Option<bool>,
    /// Ends the call with [`Error::Timeout`] after this long (overrides the
    /// client's call timeout).
    pub timeout: Option<Duration>,
    /// Lets another thread or task cancel the call.
    pub cancel: Option<CancelHandle>,
    /// Receives the server's progress notifications for this call.
    pub progress: Option<Box<ProgressFn<'a>>>,
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
    pub fn progress(mut self, f: impl FnMut(Progress) + Send + 'a) -> Self {
        self.progress = Some(Box::new(f));
        self
    }
}

/// Watches the core's recovery steps.
pub type Observer = dyn Fn(&Action) + Send + Sync;

/// How long an idle connection is kept by default (see
/// [`ClientBuilder::pool_idle_timeout`]).
pub const DEFAULT_POOL_IDLE: Duration = Duration::from_secs(4);

/// Everything a client is built from. Filled by [`ClientBuilder`].
#[non_exhaustive]
pub struct Settings {
    /// The core's settings (URL, headers, deadlines, breaker...).
    pub(crate) config: Config,
    /// TCP connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// How long an idle connection is kept for reuse (default 4 s).
    pub pool_idle: Duration,
    /// Longest silence while reading a response or event stream (default 60 s).
    pub read_timeout: Duration,
    /// Default limit on a whole call, recovery included (default 120 s).
    pub(crate) call_timeout: Option<Duration>,
    /// Where tokens come from.
    pub(crate) credentials: Credentials,
    /// Who answers server requests and notifications.
    pub(crate) handler: Option<Arc<dyn ServerHandler>>,
    /// Who watches recovery steps.
    pub(crate) observer: Option<Arc<Observer>>,
    /// How much one `all_*` listing may read.
    pub(crate) limits: Limits,
    /// The server as a child process, instead of a URL.
    pub(crate) stdio: Option<stdio::StdioCommand>,
    /// Tool results checked against their output schemas.
    pub(crate) check_output: bool,
    /// The roots the client answers `roots/list` with, if given.
    pub(crate) roots: Option<Arc<Mutex<Vec<Root>>>>,
    /// Who answers `elicitation/create`, if set apart from the handler.
    pub(crate) elicit: Option<Arc<ElicitFn>>,
    /// Who answers `sampling/createMessage`, if set apart from the handler.
    pub(crate) sample: Option<Arc<SampleFn>>,
    /// The only CA certificates to trust (PEM as given), instead of the
    /// webpki roots.
    pub(crate) tls_roots_pem: Option<String>,
    /// The same, parsed (DER), once the settings are checked.
    tls_roots: Option<Vec<Vec<u8>>>,
}

/// Whom a client's requests speak for: its token source (or its OAuth
/// token store), by identity, and the headers it adds to every request.
/// Two clients with the same principal may share state that an HTTP
/// library keeps per agent and could carry from one request to another
/// (ureq's cookie jar, when a build turns on its `cookies` feature);
/// clients with different principals never do. Keeps no secret: the
/// credential by a weak reference (its allocation, so its address, is
/// never reused while a principal names it), the headers as a digest.
#[derive(Clone)]
pub struct Principal {
    credential: Credential,
    /// SHA-256 of the added headers, names and values.
    headers: [u8; 32],
}

#[derive(Clone)]
enum Credential {
    None,
    Source(std::sync::Weak<dyn TokenSource>),
    Store(std::sync::Weak<dyn oauth::TokenStore>),
}

impl Credential {
    fn address(&self) -> usize {
        match self {
            Credential::None => 0,
            Credential::Source(w) => w.as_ptr().cast::<()>() as usize,
            Credential::Store(w) => w.as_ptr().cast::<()>() as usize,
        }
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        let same = match (&self.credential, &other.credential) {
            (Credential::None, Credential::None) => true,
            (Credential::Source(a), Credential::Source(b)) => a.ptr_eq(b),
            (Credential::Store(a), Credential::Store(b)) => a.ptr_eq(b),
            _ => false,
        };
        same && self.headers == other.headers
    }
}

impl Eq for Principal {}

impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.credential.address().hash(state);
        self.headers.hash(state);
    }
}

/// Answers an elicitation ([`ClientBuilder::elicitation`]).
pub type ElicitFn = dyn Fn(ElicitRequest) -> ElicitResponse + Send + Sync;

/// Answers a sampling request with a `CreateMessageResult`
/// ([`ClientBuilder::sampling`]).
pub type SampleFn = dyn Fn(Value) -> Result<Value, RpcError> + Send + Sync;

/// How much one `all_*` listing may read before it stops with
/// [`Error::TooManyPages`]; and how many tools the client remembers as
/// replay-safe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_pages: usize,
    pub max_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pages: 100,
            max_items: 10_000,
        }
    }
}

/// A call's limit when neither the client nor the call sets one: every wait
/// has a bound, even a server that keeps a call's stream alive forever.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Tools remembered as replay-safe at most; past it, new tools are not
/// remembered (and so not replayed), which errs on the safe side.
const MAX_REMEMBERED_TOOLS: usize = 10_000;

/// Where a client's bearer tokens come from.
#[derive(Clone, Default)]
pub(crate) enum Credentials {
    /// No token.
    #[default]
    None,
    /// The application's token source (its refresh may block).
    Source(Arc<dyn TokenSource>),
    /// OAuth: refreshed, and authorized, by the driver over its own I/O.
    OAuth(Arc<oauth::OAuth>),
}

impl Credentials {
    fn token(&self) -> Option<Token> {
        match self {
            Credentials::None => None,
            Credentials::Source(s) => s.token(),
            Credentials::OAuth(o) => o.token(),
        }
    }

    fn expires_in(&self) -> Option<Duration> {
        match self {
            Credentials::None => None,
            Credentials::Source(s) => s.expires_in(),
            Credentials::OAuth(o) => o.expires_in(),
        }
    }

    fn can_refresh(&self) -> bool {
        match self {
            Credentials::None => false,
            Credentials::Source(s) => s.can_refresh(),
            Credentials::OAuth(_) => true,
        }
    }
}

impl Settings {
    /// Checks what every adapter needs and fixes up the core config:
    /// an http(s) URL with a host, no credential in plain headers, and a
    /// 401 asks for a refresh only when the token source can refresh.
    pub(crate) fn validate(&mut self) -> Result<(), Error> {
        if let Some(pem) = &self.tls_roots_pem {
            let certs = pem_certificates(pem);
            if certs.is_empty() {
                return Err(Error::Config(
                    "tls_roots_pem: no CERTIFICATE block in the PEM given".into(),
                ));
            }
            self.tls_roots = Some(certs);
        }
        if self.stdio.is_some() {
            return self.validate_stdio();
        }
        let url = self.config.url.as_str();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "not an http(s) URL: {:?}",
                    mcp_recovery_core::redact_url(url)
                ))
            })?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit('@').next().unwrap_or("");
        if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Config(format!(
                "bad URL {:?}",
                mcp_recovery_core::redact_url(url)
            )));
        }
        if authority.contains('@') {
            // One HTTP stack would send it as Basic credentials, another
            // drop it; a credential in a URL also ends up in logs.
            return Err(Error::Config(
                "credentials in the URL (user:password@): use bearer(), header() or OAuth".into(),
            ));
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
        if matches!(self.credentials, Credentials::OAuth(_)) {
            // An OAuth token in cleartext to a host on the network is a
            // token handed to everyone on the path.
            mcp_recovery_core::oauth::check_endpoint(url).map_err(|_| {
                Error::Config(format!(
                    "OAuth tokens go to HTTPS servers or loopback only, not {}",
                    mcp_recovery_core::oauth::Url::parse(url)
                        .map(|u| u.origin())
                        .unwrap_or_else(|_| "this URL".into())
                ))
            })?;
        }
        self.config.refresh_on_401 = self.credentials.can_refresh();
        self.declare_handler();
        Ok(())
    }

    /// A stdio server has no URL, no headers and no bearer token: it takes
    /// credentials from its environment ([`stdio::StdioCommand::env`]).
    fn validate_stdio(&mut self) -> Result<(), Error> {
        if !matches!(self.credentials, Credentials::None) {
            return Err(Error::Config(
                "a stdio server takes its credentials from its environment (StdioCommand::env), not a bearer token".into(),
            ));
        }
        if !self.config.headers.is_empty() {
            return Err(Error::Config("a stdio server has no HTTP headers".into()));
        }
        self.config.refresh_on_401 = false;
        self.declare_handler();
        Ok(())
    }

    /// Whom the client's requests speak for: see [`Principal`].
    pub fn principal(&self) -> Principal {
        use sha2::Digest;
        let credential = match &self.credentials {
            Credentials::None => Credential::None,
            Credentials::Source(s) => Credential::Source(Arc::downgrade(s)),
            Credentials::OAuth(o) => Credential::Store(o.store()),
        };
        let mut digest = sha2::Sha256::new();
        for (name, value) in &self.config.headers {
            // Lengths first: ("ab", "c") and ("a", "bc") differ.
            for part in [name, value] {
                digest.update((part.len() as u64).to_le_bytes());
                digest.update(part.as_bytes());
            }
        }
        Principal {
            credential,
            headers: digest.finalize().into(),
        }
    }

    /// The only CA certificates to trust (DER), when
    /// [`ClientBuilder::tls_roots_pem`] was given: an adapter's TLS
    /// configuration uses these instead of the webpki roots.
    pub fn tls_roots(&self) -> Option<&[Vec<u8>]> {
        self.tls_roots.as_deref()
    }

    /// The link to the child process, for a client of a stdio server (the
    /// driver makes one; adapters never see stdio).
    pub(crate) fn stdio_link(&self) -> Option<stdio::StdioLink> {
        let command = self.stdio.clone()?;
        Some(stdio::StdioLink::new(command, self.config.max_body_size))
    }

    /// What the handler serves is declared, next to what is configured
    /// (a configured entry wins); so are roots given to the builder.
    fn declare_handler(&mut self) {
        if let Value::Object(caps) = &mut self.config.capabilities {
            let declared = [
                (self.roots.is_some(), "roots", json!({"listChanged": true})),
                (self.elicit.is_some(), "elicitation", json!({"form": {}})),
                (self.sample.is_some(), "sampling", json!({})),
            ];
            for (set, name, capability) in declared {
                if set {
                    caps.entry(name).or_insert(capability);
                }
            }
        }
        if let Some(h) = &self.handler {
            if let (Value::Object(declared), Value::Object(caps)) =
                (h.capabilities(), &mut self.config.capabilities)
            {
                for (k, v) in declared {
                    caps.entry(k).or_insert(v);
                }
            }
        }
    }

    /// The token to start with.
    pub(crate) fn initial_token(&self) -> Option<Token> {
        self.credentials.token()
    }

    /// The engine for these settings, with the starting token and its
    /// expiry. The client's identity and capabilities move into it (their
    /// only reader from then on; these settings keep none).
    pub(crate) fn engine(&mut self, now: Instant) -> Engine {
        let client_info = std::mem::take(&mut self.config.client_info);
        let capabilities = std::mem::take(&mut self.config.capabilities);
        let mut config = self.config.clone();
        config.client_info = client_info;
        config.capabilities = capabilities;
        let mut engine = Engine::new(config);
        engine.set_token(self.initial_token(), now);
        engine.set_token_expiry(self.token_expiry(now), now);
        engine
    }

    /// When the token source says its token expires.
    pub(crate) fn token_expiry(&self, now: Instant) -> Option<Instant> {
        let left = self.credentials.expires_in()?;
        now.checked_add(left)
    }

    /// Tells the engine how a refresh of `generation` went, and when the
    /// new token expires.
    pub(crate) fn refreshed(
        &self,
        d: &mut Dispatcher,
        generation: TokenGeneration,
        outcome: &Result<Token, RefreshError>,
        now: Instant,
        jobs: &mut VecDeque<Job>,
    ) {
        refreshed(d, generation, outcome, now, jobs);
        if outcome.is_ok() {
            d.engine_mut().set_token_expiry(self.token_expiry(now), now);
        }
    }

    /// Does the jobs that need no I/O of the adapter's: notifications to
    /// the handler, recovery steps to the observer. Hands back the others
    /// (sends, refreshes, server requests).
    pub(crate) fn local(&self, job: Job) -> Option<Job> {
        match job {
            Job::Notification { method, params } => {
                if let Some(h) = &self.handler {
                    h.notification(&method, params);
                }
                None
            }
            Job::Observe(action) => {
                if let Some(o) = &self.observer {
                    o(&action);
                }
                None
            }
            other => Some(other),
        }
    }
}

/// The DER of every `CERTIFICATE` block of a PEM text (other blocks, a
/// key say, are skipped).
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match (line, &mut body) {
            ("-----BEGIN CERTIFICATE-----", _) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b)) => {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&*b) {
                    certs.push(der);
                }
                body = None;
            }
            (l, Some(b)) => b.push_str(l),
            _ => {}
        }
    }
    certs
}

/// Tells the engine how a refresh of `generation` went.
fn refreshed(
    d: &mut Dispatcher,
    generation: TokenGeneration,
    outcome: &Result<Token, RefreshError>,
    now: Instant,
    jobs: &mut VecDeque<Job>,
) {
    let message = outcome.as_ref().err().map(ToString::to_string);
    let input = match outcome {
        Ok(token) => Input::TokenRefreshed { generation, token },
        Err(e) => Input::RefreshFailed {
            generation,
            needs_reauth: matches!(e, RefreshError::NeedsReauth(_)),
            message: message.as_deref().unwrap_or_default(),
        },
    };
    d.feed(input, now, jobs);
}

/// The caller an adapter runs for: its call (none for initialize and
/// close), what it watches, and where its progress goes while its
/// response streams in.
pub(crate) struct Caller<'w, 'p> {
    /// The call, if any.
    pub call: Option<CallId>,
    /// Its cancel handle and deadline.
    pub watch: &'w Watch,
    /// Its progress callback.
    pub progress: Option<&'w mut ProgressFn<'p>>,
}

/// A watch that never gives up, for callers without a call.
const NO_WATCH: Watch = Watch {
    cancel: None,
    deadline: None,
};

impl Caller<'_, '_> {
    /// A caller without a call (initialize, close, a detached task).
    pub fn none() -> Caller<'static, 'static> {
        Caller {
            call: None,
            watch: &NO_WATCH,
            progress: None,
        }
    }

    /// The read timeout for this caller's next read (see
    /// [`Watch::read_timeout`]).
    pub fn read_timeout(&self, configured: Duration) -> Duration {
        self.watch.read_timeout(configured, Instant::now())
    }

    /// Whether this caller's call gave up, so its reads may stop.
    pub fn gave_up(&self) -> bool {
        self.call.is_some() && self.watch.gave_up(Instant::now())
    }

    /// Takes the call's queued progress from `d` (under the lock), for
    /// [`Caller::progress`] after the lock is released.
    pub fn take_progress(&self, d: &mut Dispatcher) -> Vec<Value> {
        self.call.map(|c| d.take_progress(c)).unwrap_or_default()
    }

    /// Hands progress to the callback.
    pub fn progress(&mut self, items: Vec<Value>) {
        if let Some(f) = self.progress.as_mut() {
            items.iter().filter_map(Progress::from_params).for_each(f);
        }
    }
}

/// `wait` after `start`, saturating: the await-ready deadline, and the smol
/// adapter's read deadlines.
pub(crate) fn ready_deadline(start: Instant, wait: Duration) -> Instant {
    start
        .checked_add(wait)
        .or_else(|| start.checked_add(Duration::from_secs(365 * 86400)))
        .unwrap_or(start)
}

/// Builds a client of type `C` (`mcp_recovery_ureq::Client`,
/// `mcp_recovery_smol::Client`).
#[must_use]
pub struct ClientBuilder<C> {
    settings: Settings,
    client: PhantomData<fn() -> C>,
}

/// A client that can be built from [`Settings`].
pub trait Build: Sized {
    /// Builds it.
    fn build(settings: Settings) -> Result<Self, Error>;
}

impl<C: Build> ClientBuilder<C> {
    /// Defaults for the MCP endpoint at `url`.
    pub fn new(url: &str) -> Self {
        ClientBuilder {
            settings: Settings {
                config: Config::new(url),
                connect_timeout: Duration::from_secs(10),
                pool_idle: DEFAULT_POOL_IDLE,
                read_timeout: Duration::from_secs(60),
                call_timeout: Some(DEFAULT_CALL_TIMEOUT),
                credentials: Credentials::None,
                handler: None,
                observer: None,
                limits: Limits::default(),
                stdio: None,
                check_output: true,
                roots: None,
                elicit: None,
                sample: None,
                tls_roots_pem: None,
                tls_roots: None,
            },
            client: PhantomData,
        }
    }

    /// Defaults for a server run as a child process, spoken to over its
    /// stdin and stdout ([`stdio`]): started on the first call, restarted
    /// (and re-initialized) when it exits, shut down when the client goes.
    pub fn stdio(command: stdio::StdioCommand) -> Self {
        // The core names its endpoint in messages: the program stands in.
        let name: String = std::path::Path::new(&command.program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .collect();
        let mut b = Self::new(&format!("stdio://{name}"));
        b.settings.stdio = Some(command);
        b
    }
    /// Adds a header to every request (not `Authorization`: use a token).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.settings.config = self.settings.config.header(name, value);
        self
    }
    /// Uses a fixed bearer token.
    pub fn bearer(self, token: &str) -> Self {
        self.token_source(StaticToken::bearer(token))
    }
    /// Uses a token source (refreshing ones plug in here).
    pub fn token_source(mut self, source: impl TokenSource + 'static) -> Self {
        self.settings.credentials = Credentials::Source(Arc::new(source));
        self
    }
    /// Uses OAuth: tokens from `config.store`, refreshed on 401 (one
    /// refresh shared by every caller), and the client's `authorize` runs
    /// the authorization flow when there are none.
    pub fn oauth(mut self, config: oauth::OAuthConfig) -> Self {
        let oauth = oauth::OAuth::new(&self.settings.config.url, config);
        self.settings.credentials = Credentials::OAuth(Arc::new(oauth));
        self
    }
    /// TCP connect timeout (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.settings.connect_timeout = d;
        self
    }
    /// How long a connection with nothing to do is kept for the next
    /// request (default 4 s, just under the 5 s keep-alive of uvicorn and
    /// Node, after which the server closes it anyway). Past it the
    /// connection is closed, and its memory freed: an idle session holds
    /// no connection. Longer suits a server that keeps connections
    /// longer (nginx: 75 s) and is called less often than that.
    ///
    /// Clients with the same settings (this one included) share their
    /// idle connections, per origin: the smol client's among those that
    /// trust the same roots, the blocking client's among those that also
    /// have the same credentials and headers. A process holding
    /// thousands of sessions keeps about as many connections as it has
    /// calls in flight (10 000 idle sessions: 6.8 KiB of RSS each,
    /// BENCHMARKS.md section 9).
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.settings.pool_idle = d;
        self
    }
    /// Longest silence while reading a response or an event stream
    /// (default 60 s).
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.settings.read_timeout = d;
        self
    }
    /// Default limit on a whole call, recovery included (default 120 s;
    /// [`CallOptions::timeout`] sets one call's).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.settings.call_timeout = Some(d);
        self
    }
    /// How long a call waits for a lost session to come back (default 15 s).
    pub fn await_ready(mut self, d: Duration) -> Self {
        self.settings.config = self.settings.config.await_ready(d);
        self
    }
    /// Circuit breaker settings.
    pub fn breaker(mut self, b: BreakerConfig) -> Self {
        self.settings.config = self.settings.config.breaker(b);
        self
    }
    /// Trusts only the CA certificates in `pem` (one or more `CERTIFICATE`
    /// blocks), instead of the webpki roots: a server whose certificate a
    /// private CA signed. A PEM without a certificate is
    /// [`Error::Config`] at build.
    pub fn tls_roots_pem(mut self, pem: &str) -> Self {
        self.settings.tls_roots_pem = Some(pem.to_owned());
        self
    }
    /// Largest response body or SSE event (default 16 MiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.settings.config.max_body_size = bytes;
        self
    }
    /// The most pages one `all_*` listing reads (default 100); past it the
    /// listing stops with [`Error::TooManyPages`].
    pub fn max_pages(mut self, pages: usize) -> Self {
        self.settings.limits.max_pages = pages;
        self
    }
    /// The most items one `all_*` listing collects (default 10 000); past
    /// it the listing stops with [`Error::TooManyPages`].
    pub fn max_list_items(mut self, items: usize) -> Self {
        self.settings.limits.max_items = items;
        self
    }
    /// Whether tool results are checked against the output schema their
    /// listing declared (default on): a result without `structuredContent`
    /// or not matching is [`Error::InvalidOutput`]. Only tools listed
    /// (`list_tools`, `all_tools`) on the current session are checked: the
    /// client sends no listing of its own.
    pub fn check_output(mut self, yes: bool) -> Self {
        self.settings.check_output = yes;
        self
    }
    /// Which revision to speak (default [`Protocol::Auto`]: ask
    /// `server/discover`, fall back to the `initialize` handshake for a
    /// server that does not answer it as a 2026-07-28 server).
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.settings.config = self.settings.config.protocol(p);
        self
    }
    /// Any other core setting.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.settings.config);
        self
    }
    /// Keeps a GET event stream open for what the server sends on its own
    /// (its requests and notifications reach the handler), reopened after
    /// `Last-Event-ID` when it drops. Off by default: it holds a connection
    /// (and, in the blocking client, a thread) for the session's life.
    pub fn listen(mut self, yes: bool) -> Self {
        self.settings.config.listen = yes;
        self
    }
    /// Answers the server's `roots/list` with these (and declares the
    /// `roots` capability); `set_roots` changes them later and tells the
    /// server.
    pub fn roots(mut self, roots: Vec<Root>) -> Self {
        self.settings.roots = Some(Arc::new(Mutex::new(roots)));
        self
    }
    /// Answers the server's `elicitation/create` (form mode) with `f`, and
    /// declares the capability; the handler, if any, gets no elicitation.
    /// On 2026-07-28 the same function answers an input-required round's
    /// elicitations.
    pub fn elicitation(
        mut self,
        f: impl Fn(ElicitRequest) -> ElicitResponse + Send + Sync + 'static,
    ) -> Self {
        self.settings.elicit = Some(Arc::new(f));
        self
    }
    /// Answers the server's `sampling/createMessage` (its params) with a
    /// `CreateMessageResult` from `f`, and declares the capability.
    pub fn sampling(
        mut self,
        f: impl Fn(Value) -> Result<Value, RpcError> + Send + Sync + 'static,
    ) -> Self {
        self.settings.sample = Some(Arc::new(f));
        self
    }
    /// Who answers server requests and notifications.
    pub fn handler(mut self, h: impl ServerHandler + 'static) -> Self {
        self.settings.handler = Some(Arc::new(h));
        self
    }
    /// Watches the core's recovery actions (`SignalReconnect`,
    /// `AwaitReady`, `RetryOnce`, `SessionReady`, `SessionFailed`), e.g. to
    /// log them. Runs outside any lock.
    pub fn on_recovery(mut self, f: impl Fn(&Action) + Send + Sync + 'static) -> Self {
        self.settings.observer = Some(Arc::new(f));
        self
    }
    /// Builds the client. Nothing is sent until the first call.
    pub fn build(self) -> Result<C, Error> {
        C::build(self.settings)
    }
}

/// What a call's driver watches: its cancel handle and its deadline.
pub(crate) struct Watch {
    /// The call's cancel handle, if any.
    pub cancel: Option<CancelHandle>,
    /// When the call gives up with [`Error::Timeout`].
    pub deadline: Option<Instant>,
}

impl Watch {
    /// Whether the caller gave up (cancelled, or past its deadline).
    pub fn gave_up(&self, now: Instant) -> bool {
        self.cancelled() || self.deadline.is_some_and(|d| d <= now)
    }

    /// Whether the cancel handle fired (as opposed to the deadline).
    pub fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled)
    }

    /// The read timeout for an exchange of this call: the client's, cut to
    /// the time the call has left, so a silent server cannot hold it past
    /// its deadline.
    pub fn read_timeout(&self, configured: Duration, now: Instant) -> Duration {
        match self.deadline {
            Some(d) => {
                let left = d.saturating_duration_since(now);
                configured.min(left.max(Duration::from_millis(1)))
            }
            None => configured,
        }
    }

    /// The call's result: a cancel caused by the deadline reads as
    /// [`Error::Timeout`].
    pub fn finish(&self, end: CallEnd) -> Result<Value, Error> {
        match end {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Rpc(e)),
            Err(CallError::Cancelled) if !self.cancelled() && self.deadline.is_some() => {
                Err(Error::Timeout)
            }
            Err(e) => Err(Error::Call(e)),
        }
    }
}

/// What the clients remember between calls, apart from the session: what
/// each listed tool said of itself (replay safety, output schema), and the
/// next progress token.
#[derive(Default)]
pub(crate) struct Memory {
    tools: Mutex<HashMap<String, Known>>,
    /// The session generation of the answer being decoded.
    generation: AtomicU64,
    /// Results are checked against output schemas (on by default).
    pub check_output: bool,
    progress_tokens: AtomicU64,
    /// The bounds of `all_*` listings.
    pub limits: Limits,
}

/// What a listing said about one tool.
struct Known {
    replay_safe: bool,
    output_schema: Option<Value>,
    /// The session generation of the listing: a schema is only believed
    /// for results of the same session (the URL may have moved to another
    /// server since).
    generation: u64,
    /// The schema compiled, at the tool's first call (most listed tools
    /// are never called): `Some(None)` when it does not compile.
    validator: Option<Option<Arc<jsonschema::Validator>>>,
}

impl Memory {
    /// Remembers the annotations and output schemas of a `tools/list` page.
    pub fn remember(&self, list: &ToolList) {
        let mut tools = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
        for t in &list.tools {
            if tools.len() >= MAX_REMEMBERED_TOOLS && !tools.contains_key(&t.name) {
                continue;
            }
            let generation = self.generation.load(Ordering::Acquire);
            let same_schema = tools
                .get(&t.name)
                .is_some_and(|k| k.output_schema == t.output_schema);
            let validator = if same_schema {
                tools.get_mut(&t.name).and_then(|k| k.validator.take())
            } else {
                None
            };
            tools.insert(
                t.name.clone(),
                Known {
                    replay_safe: t.replay_safe(),
                    output_schema: t.output_schema.clone(),
                    generation,
                    validator,
                },
            );
        }
    }

    /// Forgets what tool listings said (the server's tools changed).
    pub fn forget_tools(&self) {
        self.tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The session generation the next answers belong to.
    pub fn at_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Release);
    }

    /// Checks a tool's result against the output schema its listing
    /// declared: a result that is not an error must carry
    /// `structuredContent`, and it must match. A tool not listed on this
    /// session is not checked (its schema is unknown).
    pub fn check_output(&self, name: &str, result: &ToolResult) -> Result<(), Error> {
        if result.is_error || !self.check_output {
            return Ok(());
        }
        let validator = {
            let mut tools = self.tools.lock().unwrap_or_else(PoisonError::into_inner);
            let generation = self.generation.load(Ordering::Acquire);
            let Some(known) = tools.get_mut(name).filter(|k| k.generation == generation) else {
                return Ok(());
            };
            let Some(schema) = &known.output_schema else {
                return Ok(());
            };
            known
                .validator
                .get_or_insert_with(|| jsonschema::validator_for(schema).ok().map(Arc::new))
                .clone()
        };
        let invalid = |message: String| Error::InvalidOutput {
            tool: name.to_owned(),
            message: mcp_recovery_core::sanitize(&message),
        };
        // A schema this client cannot compile (a remote `$ref`, which it
        // never fetches; a dialect it does not know) checks nothing: the
        // tool has run, and its answer is not refused for our limits.
        let Some(validator) = validator else {
            return Ok(());
        };
        let Some(structured) = &result.structured_content else {
            return Err(invalid(
                "no structuredContent, though the tool declares an output schema".into(),
            ));
        };
        let problems: Vec<String> = validator
            .iter_errors(structured)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("at {at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(invalid(problems.join("; ")))
        }
    }

    /// The `tools/call` operation: replay-safe when the caller says so, or
    /// else when the tool's annotations did; with a progress token when the
    /// caller wants progress.
    pub fn tools_call(&self, name: &str, arguments: Value, opts: &CallOptions<'_>) -> Operation {
        let known = self
            .tools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|k| k.replay_safe);
        let mut params = Map::new();
        params.insert("name".into(), name.into());
        params.insert("arguments".into(), arguments);
        if opts.progress.is_some() {
            let token = self.progress_tokens.fetch_add(1, Ordering::Relaxed);
            params.insert("_meta".into(), json!({ "progressToken": token }));
        }
        Operation::new("tools/call", Some(Value::Object(params)))
            .idempotent(opts.idempotent.or(known).unwrap_or(false))
    }

    /// The watch for a call with `opts`, given the client's default timeout.
    pub fn watch(opts: &CallOptions<'_>, call_timeout: Option<Duration>, now: Instant) -> Watch {
        Watch {
            cancel: opts.cancel.clone(),
            deadline: opts
                .timeout
                .or(call_timeout)
                .and_then(|t| now.checked_add(t)),
        }
    }
}

/// Decodes a result into its MCP type.
pub(crate) fn decode<T: DeserializeOwned>(v: Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))
}

/// Tells whether a pagination cursor is new; a cursor seen twice ends the
/// listing, so a server that loops cannot loop us.
#[derive(Default)]
pub(crate) struct Cursors(HashSet<String>);

impl Cursors {
    /// The cursor to ask for next, if any.
    pub fn next(&mut self, cursor: Option<String>) -> Option<String> {
        cursor.filter(|c| self.0.insert(c.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dummy;
    impl Build for Dummy {
        fn build(mut s: Settings) -> Result<Self, Error> {
            s.validate().map(|_| Dummy)
        }
    }

    /// Clients speak for the same principal only with the same
    /// credential (one token source, one OAuth store) and the same added
    /// headers; nothing of either is printed or kept in the clear.
    #[test]
    fn principals_are_the_credential_and_the_headers() {
        let p = |b: ClientBuilder<Dummy>| b.settings.principal();
        let url = "http://127.0.0.1:1/mcp";
        let b = || ClientBuilder::<Dummy>::new(url);
        assert!(p(b()) == p(b()));
        assert!(p(b().header("x-tenant", "a")) == p(b().header("x-tenant", "a")));
        assert!(p(b().header("x-tenant", "a")) != p(b().header("x-tenant", "b")));
        assert!(p(b().header("x-ab", "c")) != p(b().header("x-a", "bc")));
        // Two builders with the same token: two sources, two principals.
        assert!(p(b().bearer("t")) != p(b().bearer("t")));
        assert!(p(b().bearer("t")) != p(b()));
        let store: Arc<dyn oauth::TokenStore> = Arc::new(oauth::MemoryTokenStore::default());
        let on = |store: &Arc<dyn oauth::TokenStore>| {
            let mut config = oauth::OAuthConfig::new(oauth::MemoryTokenStore::default());
            config.store = store.clone();
            config
        };
        let (one, two) = (p(b().oauth(on(&store))), p(b().oauth(on(&store))));
        assert!(one == two, "one store, one principal");
        let other = p(b().oauth(oauth::OAuthConfig::new(oauth::MemoryTokenStore::default())));
        assert!(one != other);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        for url in [
            "ftp://x/mcp",
            "not a url",
            "http:///mcp",
            "http://a b/mcp",
            "",
        ] {
            let r = ClientBuilder::<Dummy>::new(url).build();
            assert!(matches!(r, Err(Error::Config(_))), "{url}");
        }
        let r = ClientBuilder::<Dummy>::new("http://127.0.0.1:1/mcp")
            .header("Authorization", "Bearer x")
            .build();
        assert!(matches!(r, Err(Error::Config(_))));
        assert!(ClientBuilder::<Dummy>::new("https://h.example/mcp")
            .build()
            .is_ok());
        // Credentials never ride in the URL, and a refused URL is never
        // echoed with them.
        for url in [
            "https://user:s3cret@h.example/mcp",
            "https://h.example/mcp?key=s3cret x",
        ] {
            match ClientBuilder::<Dummy>::new(url).build() {
                Err(Error::Config(m)) => assert!(!m.contains("s3cret"), "{m}"),
                other => panic!("{url}: {:?}", other.err()),
            }
        }
        // OAuth tokens never go in cleartext to a host on the network.
        let oauth = || crate::oauth::OAuthConfig::new(crate::oauth::MemoryTokenStore::default());
        for (url, ok) in [
            ("http://mcp.example/mcp", false),
            ("http://127.attacker.example/mcp", false),
            ("https://mcp.example/mcp", true),
            ("http://127.0.0.1:9/mcp", true),
            ("http://localhost:9/mcp", true),
        ] {
            let r = ClientBuilder::<Dummy>::new(url).oauth(oauth()).build();
            match r {
                Err(Error::Config(m)) if !ok => assert!(m.contains("HTTPS"), "{m}"),
                Ok(_) if ok => {}
                other => panic!("{url}: {:?}", other.err()),
            }
        }
    }

    #[test]
    fn a_schema_that_does_not_compile_checks_nothing() {
        let m = Memory {
            check_output: true,
            ..Memory::default()
        };
        let list: ToolList = serde_json::from_value(json!({"tools": [
            {"name": "remote", "inputSchema": {}, "outputSchema": {"$ref": "https://schemas.example/x.json"}},
            {"name": "local", "inputSchema": {}, "outputSchema": {"type": "object", "required": ["n"]}},
        ]}))
        .unwrap();
        m.remember(&list);
        let result: ToolResult =
            serde_json::from_value(json!({"content": [], "structuredContent": {"m": 1}})).unwrap();
        assert!(
            m.check_output("remote", &result).is_ok(),
            "never fetched, not refused"
        );
        assert!(matches!(
            m.check_output("local", &result),
            Err(Error::InvalidOutput { .. })
        ));
    }

    #[test]
    fn looping_cursors_end() {
        let mut c = Cursors::default();
        assert_eq!(c.next(Some("a".into())), Some("a".into()));
        assert_eq!(c.next(Some("a".into())), None);
        assert_eq!(c.next(None), None);
    }

    #[test]
    fn deadline_cancel_reads_as_timeout() {
        let now = Instant::now();
        let w = Memory::watch(
            &CallOptions::new().timeout(Duration::from_secs(1)),
            None,
            now,
        );
        assert!(matches!(
            w.finish(Err(CallError::Cancelled)),
            Err(Error::Timeout)
        ));
        let handle = CancelHandle::new(Arc::new(|| {}));
        handle.cancel();
        let w = Memory::watch(&CallOptions::new().cancel(handle), None, now);
        assert!(w.gave_up(now));
        assert!(matches!(
            w.finish(Err(CallError::Cancelled)),
            Err(Error::Call(CallError::Cancelled))
        ));
    }
}
