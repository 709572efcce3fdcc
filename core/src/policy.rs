//! The recovery state machine: many calls over one session and one token.
//!
//! Recovery order follows the seed fix, done right: the auth path first (one
//! single-flight refresh keyed on the token generation that failed), the
//! session path second (one single-flight re-initialize keyed on the session
//! generation that failed), replay only when it cannot run anything twice,
//! and every recovery kind at most once per call, at most
//! [`MAX_ATTEMPTS`] sends per call.

use crate::breaker::{Admission, Breaker, BreakerConfig, BreakerState};
use crate::classify::{classify, Class, Context, Failure, SessionPatterns};
use crate::error::{CallError, ProtocolError};
use crate::http::{self, FailureKind, HttpRequest, TransportFailure};
use crate::jsonrpc::{self, Message, RequestId, RpcError};
use crate::operation::Operation;
use crate::session::{Protocol, Session};
use crate::sse::SseParser;
use crate::token::Token;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// `now + d`, saturating: a huge configured duration must not panic. Past
/// the representable range the deadline is a century away, which is never.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// A call never sends its request more than this many times.
pub const MAX_ATTEMPTS: u8 = 3;

/// Error bodies are read up to this size; the rest is dropped unread.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Identifies one call for its whole life, across retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// Identifies one HTTP exchange (one request and its response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeId(u64);

impl fmt::Display for ExchangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exchange#{}", self.0)
    }
}

/// Settings of an [`Engine`]. `Debug` redacts credential headers.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// The MCP endpoint URL.
    pub url: String,
    /// Protocol era (default: handshake-based, sessionful).
    pub protocol: Protocol,
    /// `clientInfo` sent to the server.
    pub client_info: Value,
    /// Client capabilities sent to the server.
    pub capabilities: Value,
    /// Extra headers on every request. Values of `Authorization`, `Cookie`
    /// and `Proxy-Authorization` are treated as secrets.
    pub headers: Vec<(String, String)>,
    /// How long a call waits for a (re-)initialized session before it
    /// surfaces [`CallError::ReconnectTimeout`] (default 15 s).
    pub await_ready: Duration,
    /// How long one initialize handshake may take before the core abandons
    /// it (default 30 s), so a server that never answers cannot wedge the
    /// session.
    pub handshake_timeout: Duration,
    /// How long a call waits for a token refresh (default 30 s).
    pub refresh_timeout: Duration,
    /// After a connect failure (nothing listening: a server restarting, a
    /// pod being replaced) the one retry, of a call or of initialize, waits
    /// this long first, so it is not spent inside the restart (default 1 s).
    pub connect_retry_delay: Duration,
    /// Whether a 401 asks for a refresh ([`Action::Refresh401`]). Turn off
    /// for static tokens: a 401 then surfaces [`CallError::NeedsReauth`].
    pub refresh_on_401: bool,
    /// A token known to expire ([`Engine::set_token_expiry`]) is refreshed
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
            .field("refresh_on_401", &self.refresh_on_401)
            .field("refresh_skew", &self.refresh_skew)
            .field("breaker", &self.breaker)
            .field("max_body_size", &self.max_body_size)
            .field("resume_delay", &self.resume_delay)
            .field("max_resume_delay", &self.max_resume_delay)
            .field("max_resumes", &self.max_resumes)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Config {
            url: url.into(),
            protocol: Protocol::Legacy,
            client_info: json!({"name": "mcp-recovery", "version": env!("CARGO_PKG_VERSION")}),
            capabilities: json!({}),
            headers: Vec::new(),
            await_ready: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(30),
            refresh_timeout: Duration::from_secs(30),
            connect_retry_delay: Duration::from_secs(1),
            refresh_on_401: true,
            refresh_skew: Duration::from_secs(30),
            breaker: BreakerConfig::default(),
            session_patterns: SessionPatterns::default(),
            max_body_size: 16 * 1024 * 1024,
            resume_delay: Duration::from_secs(1),
            max_resume_delay: Duration::from_secs(10),
            max_resumes: 3,
            listen: false,
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

/// Whether a 403's `WWW-Authenticate` asks for more scope (RFC 6750 §3.1).
fn insufficient_scope(challenge: &Option<String>) -> bool {
    challenge
        .as_deref()
        .and_then(crate::oauth::BearerChallenge::from_header)
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

/// Which recovery a retry follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// After a 401 and a token refresh.
    Auth,
    /// After the session expired and was re-initialized.
    Session,
    /// After a transport failure that made replay safe.
    Transport,
}

/// Something for the caller of the core to do or know. Drain with
/// [`Engine::poll_action`] until `None` after every input.
#[derive(Debug)]
#[non_exhaustive]
pub enum Action {
    /// Perform this HTTP request and feed its response back under
    /// `exchange`. `call` is the call it belongs to, if any (initialize,
    /// notifications and replies belong to none). Report every exchange's
    /// end (`End` or `Failed`), fire-and-forget notifications included: the
    /// core keeps an exchange until it hears how it ended or aborts it.
    Transmit {
        /// The exchange to report under.
        exchange: ExchangeId,
        /// The call it serves.
        call: Option<CallId>,
        /// What to send.
        request: HttpRequest,
    },
    /// Open the long-lived GET stream of server messages ([`Config::listen`])
    /// and read it in the background (a thread, a task): it stays open for
    /// as long as the server keeps it. Report it like any exchange; its
    /// messages come out as [`Action::ServerMessage`]s.
    Listen {
        /// The exchange to report under.
        exchange: ExchangeId,
        /// The GET to send.
        request: HttpRequest,
    },
    /// The core no longer wants this exchange's response (its call ended):
    /// stop reading and drop the connection.
    Abort {
        /// The exchange.
        exchange: ExchangeId,
    },
    /// The server refused the token of `generation` (401, or 403
    /// `insufficient_scope`: `challenge` says which), or it is about to
    /// expire (no challenge). Refresh it once, or authorize again with more
    /// scope, and answer with [`Input::TokenRefreshed`] or
    /// [`Input::RefreshFailed`]; concurrent failures on the same token share
    /// this one refresh.
    Refresh401 {
        /// The token generation that failed.
        generation: u64,
        /// The `WWW-Authenticate` header of the 401, if any.
        challenge: Option<String>,
    },
    /// The session is gone: the core dropped its id and sends a new
    /// initialize (session `generation`). Informational; an adapter may drop
    /// pooled connections to a server that just restarted.
    SignalReconnect {
        /// The generation being initialized.
        generation: u64,
    },
    /// The call is parked until the session is ready or `deadline` passes.
    AwaitReady {
        /// The call.
        call: CallId,
        /// When it gives up with [`CallError::ReconnectTimeout`].
        deadline: Instant,
    },
    /// The call is sent again once, after `recovery`.
    RetryOnce {
        /// The call.
        call: CallId,
        /// Why.
        recovery: Recovery,
    },
    /// The session of `generation` is ready.
    SessionReady {
        /// Its generation.
        generation: u64,
    },
    /// The initialize handshake of `generation` failed.
    SessionFailed {
        /// Its generation.
        generation: u64,
        /// Why.
        error: CallError,
    },
    /// The server answered the call: its result, or its JSON-RPC error
    /// (the retry's real answer, application errors included).
    Complete {
        /// The call; it is over.
        call: CallId,
        /// The server's answer.
        result: Result<Value, RpcError>,
    },
    /// The call ended without the server's answer.
    Surface {
        /// The call; it is over.
        call: CallId,
        /// Why.
        error: CallError,
    },
    /// A server notification or request that arrived on a response stream.
    /// Requests need an answer through [`Engine::reply`] (the core answers
    /// `ping` itself).
    ServerMessage {
        /// The call whose stream carried it, if any.
        call: Option<CallId>,
        /// The message.
        message: Message,
    },
}

/// Why [`Engine::poll_timeout`] wants to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timer {
    /// A call's await-ready deadline.
    AwaitReady(CallId),
    /// A call's refresh deadline.
    AwaitRefresh(CallId),
    /// The handshake of this generation is abandoned then.
    Handshake(u64),
    /// The refresh of this token generation may be asked for again then.
    Refresh(u64),
    /// A call's retry after a connect failure goes out then.
    RetryAfterConnectFailure(CallId),
    /// The initialize of this generation is sent again then.
    HandshakeRetry(u64),
    /// A call's broken event stream is resumed (GET with `Last-Event-ID`) then.
    ResumeStream(CallId),
    /// The listening GET stream is opened again then.
    Listen,
}

/// An event from the outside world. Responses come in pieces, as they
/// arrive: `Head`, then `Body` chunks, then `End` (or `Failed` at any point).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Input<'a> {
    /// Status and headers of an exchange's response.
    Head {
        /// The exchange.
        exchange: ExchangeId,
        /// The HTTP status.
        status: u16,
        /// The headers (names compared case-insensitively).
        headers: &'a [(&'a str, &'a str)],
    },
    /// A chunk of the body.
    Body {
        /// The exchange.
        exchange: ExchangeId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The body ended cleanly.
    End {
        /// The exchange.
        exchange: ExchangeId,
    },
    /// The exchange failed in transport.
    Failed {
        /// The exchange.
        exchange: ExchangeId,
        /// How.
        failure: &'a TransportFailure,
    },
    /// The refresh asked for by [`Action::Refresh401`] produced `token`.
    TokenRefreshed {
        /// The generation from the action.
        generation: u64,
        /// The new token.
        token: &'a Token,
    },
    /// The refresh failed.
    RefreshFailed {
        /// The generation from the action.
        generation: u64,
        /// `true` when the grant was refused (`invalid_grant`) or there is
        /// no refresh token: a person must authorize again.
        needs_reauth: bool,
        /// A description (no credentials).
        message: &'a str,
    },
    /// The caller gave up on a call. Works in every state.
    Cancel {
        /// The call.
        call: CallId,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Used {
    auth: bool,
    session: bool,
    transport: bool,
}

#[derive(Debug)]
enum CallState {
    AwaitReady {
        since: Instant,
        deadline: Instant,
    },
    AwaitRefresh {
        since: Instant,
        deadline: Instant,
    },
    /// Waiting out `connect_retry_delay` before the one transport retry.
    Backoff {
        until: Instant,
    },
    InFlight {
        exchange: ExchangeId,
        rpc_id: i64,
        generation: u64,
    },
    /// The request went out and its event stream broke after an event id:
    /// the stream is resumed then, within the same session.
    Resuming {
        until: Instant,
        last_event_id: String,
        rpc_id: i64,
        generation: u64,
    },
}

#[derive(Debug)]
struct Call {
    op: Operation,
    state: CallState,
    attempts: u8,
    used: Used,
    probe: bool,
    /// The recovery the next send follows, announced as `RetryOnce` when
    /// the request actually goes out.
    pending: Option<Recovery>,
    /// Resumes in a row that brought no new event.
    resumes: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Initialize,
    Initialized,
}

#[derive(Debug)]
struct Handshake {
    exchange: ExchangeId,
    step: Step,
    since: Instant,
    deadline: Instant,
    sends: u8,
    auth_retried: bool,
    awaiting_refresh: bool,
    /// The replay of initialize after a connect failure goes out then.
    retry_at: Option<Instant>,
}

#[derive(Debug)]
enum Phase {
    Idle,
    Initializing(Handshake),
    Ready,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Call(CallId),
    Initialize,
    Initialized,
    /// Fire and forget: cancellations, replies, DELETE.
    Notify,
    /// The long-lived GET stream of server messages.
    Listen,
}

/// The listening GET stream ([`Config::listen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listen {
    Off,
    Open(ExchangeId),
    /// Dropped: opened again then, after `last_event_id`.
    Waiting {
        until: Instant,
        last_event_id: Option<String>,
    },
    /// The server has no GET stream (405): not asked again this session.
    Unsupported,
}

#[derive(Debug)]
enum Reader {
    AwaitHead,
    Json(Vec<u8>),
    Sse(Box<SseParser>),
    Error(Vec<u8>),
}

#[derive(Debug)]
struct Exchange {
    purpose: Purpose,
    rpc_id: Option<i64>,
    ctx: Context,
    token_generation: u64,
    status: u16,
    session_header: Option<String>,
    challenge: Option<String>,
    reader: Reader,
    /// A GET resuming a call's stream: whatever goes wrong with it, the
    /// request itself may have run.
    resume: bool,
    /// The event id the resumed stream follows.
    resume_from: Option<String>,
}

/// How an exchange ended.
enum Outcome {
    Answer(Result<Value, RpcError>),
    Accepted,
    Status {
        status: u16,
        body: Vec<u8>,
    },
    Transport(TransportFailure),
    Protocol(ProtocolError),
    /// A call's event stream ended or broke after event `last_event_id`,
    /// before the answer: it can be resumed.
    StreamCut {
        last_event_id: String,
        retry: Option<Duration>,
        failure: TransportFailure,
    },
}

impl Outcome {
    /// The error a failed handshake step reports.
    fn into_error(self) -> CallError {
        match self {
            Outcome::Answer(Err(e)) => CallError::InitializeRejected(e),
            Outcome::Answer(Ok(_)) | Outcome::Accepted => {
                CallError::Protocol(ProtocolError::NoResponse)
            }
            Outcome::Status { status, body } => CallError::Http {
                status,
                message: crate::error::sanitize(&String::from_utf8_lossy(
                    &body[..body.len().min(4096)],
                )),
            },
            Outcome::Transport(t) => CallError::Transport {
                kind: t.kind,
                message: crate::error::sanitize(&t.message),
            },
            Outcome::Protocol(p) => CallError::Protocol(p),
            Outcome::StreamCut { failure: t, .. } => CallError::Transport {
                kind: t.kind,
                message: crate::error::sanitize(&t.message),
            },
        }
    }
}

/// What a call's end tells the breaker.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The server answered.
    Reachable,
    /// Unreachable or unrecoverable: counts.
    Failure,
    /// Tells nothing (cancel, timeout of a wait, auth).
    Neutral,
}

#[derive(Debug)]
struct Auth {
    token: Option<Token>,
    generation: u64,
    flight: Option<Instant>,
    /// When to refresh the current token ahead of its expiry, if known.
    expires: Option<Instant>,
}

/// The sans-IO MCP client: feed it inputs, drain its actions, honour its
/// timer. See the [crate docs](crate) for the loop.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    session: Session,
    phase: Phase,
    generation: u64,
    auth: Auth,
    breaker: Breaker,
    calls: HashMap<CallId, Call>,
    exchanges: HashMap<ExchangeId, Exchange>,
    actions: VecDeque<Action>,
    scratch: Vec<CallId>,
    listen: Listen,
    /// The last 401/403 `WWW-Authenticate`, for an authorization flow the
    /// application starts itself.
    last_challenge: Option<String>,
    /// Listening-stream openings in a row that brought no message.
    listen_failures: u8,
    next_call: u64,
    next_exchange: u64,
    next_rpc: i64,
}

impl Engine {
    /// A new engine. Nothing is sent until the first call or
    /// [`Engine::connect`].
    pub fn new(config: Config) -> Self {
        let session = Session::new(
            &config.url,
            config.protocol,
            config.client_info.clone(),
            config.capabilities.clone(),
            &config.headers,
        );
        // A modern (2026-07-28) server has no handshake: ready from the start.
        let phase = match config.protocol {
            Protocol::Modern => Phase::Ready,
            Protocol::Legacy => Phase::Idle,
        };
        Engine {
            breaker: Breaker::new(config.breaker),
            config,
            session,
            phase,
            generation: 0,
            auth: Auth {
                token: None,
                generation: 0,
                flight: None,
                expires: None,
            },
            calls: HashMap::new(),
            exchanges: HashMap::new(),
            actions: VecDeque::new(),
            scratch: Vec::new(),
            listen: Listen::Off,
            last_challenge: None,
            listen_failures: 0,
            next_call: 0,
            next_exchange: 0,
            next_rpc: 0,
        }
    }

    /// Sets the bearer token (or removes it). A new token starts a new
    /// token generation, and calls waiting for a refresh retry with it.
    pub fn set_token(&mut self, token: Option<Token>, now: Instant) {
        if token == self.auth.token {
            return;
        }
        self.auth.token = token;
        self.auth.generation += 1;
        self.auth.flight = None;
        self.auth.expires = None;
        self.wake_refresh_waiters(now);
    }

    /// Tells the engine when the current token expires (an OAuth token's
    /// `expires_in`). Shortly before (`refresh_skew`), the next call asks
    /// for a refresh ([`Action::Refresh401`] without a challenge) and goes
    /// out with the current token meanwhile, so no call waits for it and
    /// none needs a 401 to get there. A new token forgets the expiry: set
    /// it again after each refresh.
    ///
    /// A token is never refreshed before half its remaining life has
    /// passed, whatever the skew, so a short-lived token is not refreshed
    /// on every call.
    pub fn set_token_expiry(&mut self, expires_at: Option<Instant>, now: Instant) {
        self.auth.expires = expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let early = self.config.refresh_skew.min(left / 2);
            // Stored as the moment to refresh: `expires - skew`.
            at.checked_sub(early).unwrap_or(at)
        });
    }

    /// The `WWW-Authenticate` of the last 401 or 403, if any: where an
    /// authorization flow starts (its `resource_metadata`, its `scope`).
    pub fn last_challenge(&self) -> Option<&str> {
        self.last_challenge.as_deref()
    }

    /// The session (id, negotiated version, server info).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The current session generation (0 before the first initialize).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the session is ready for calls.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The breaker's state.
    pub fn breaker(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Calls that have not ended.
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// Starts the initialize handshake now instead of on the first call.
    pub fn connect(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Idle) {
            self.start_handshake(now);
        }
    }

    /// Starts a call. Its end comes as exactly one [`Action::Complete`] or
    /// [`Action::Surface`] for the returned id.
    pub fn call(&mut self, op: Operation, now: Instant) -> CallId {
        self.next_call += 1;
        let id = CallId(self.next_call);
        if matches!(self.phase, Phase::Closed) {
            self.actions.push_back(Action::Surface {
                call: id,
                error: CallError::Closed,
            });
            return id;
        }
        let probe = match self.breaker.admit(now) {
            Admission::Pass => false,
            Admission::Probe => true,
            Admission::Reject { retry_in } => {
                self.actions.push_back(Action::Surface {
                    call: id,
                    error: CallError::CircuitOpen { retry_in },
                });
                return id;
            }
        };
        self.calls.insert(
            id,
            Call {
                op,
                // Replaced by `attempt` before anyone looks.
                state: CallState::AwaitReady {
                    since: now,
                    deadline: now,
                },
                attempts: 0,
                used: Used::default(),
                probe,
                pending: None,
                resumes: 0,
            },
        );
        self.attempt(id, now);
        id
    }

    /// Answers a server's request that came as [`Action::ServerMessage`].
    pub fn reply(&mut self, id: RequestId, result: Result<Value, RpcError>) {
        if !matches!(self.phase, Phase::Ready) {
            return;
        }
        let request = self
            .session
            .response(&id, &result, self.auth.token.as_ref());
        self.transmit(Purpose::Notify, None, false, request);
    }

    /// Ends the session: every pending call surfaces [`CallError::Closed`],
    /// and the server gets a DELETE if there is a session to end (a 405
    /// answer is fine). Later calls surface `Closed` at once.
    pub fn close(&mut self, now: Instant) {
        self.stop_listen();
        let mut ids = self.waiters(|_| true);
        for id in ids.drain(..) {
            self.end(id, Err(CallError::Closed), Verdict::Neutral, now);
        }
        self.scratch = ids;
        if let Phase::Initializing(h) = &self.phase {
            let exchange = h.exchange;
            self.abort(exchange);
        }
        if matches!(self.phase, Phase::Ready) {
            if let Some(request) = self.session.delete(self.auth.token.as_ref()) {
                self.transmit(Purpose::Notify, None, false, request);
            }
        }
        self.phase = Phase::Closed;
    }

    /// Feeds one input. Unknown or ended exchanges and calls are ignored:
    /// late answers are normal in a concurrent world.
    pub fn handle_input(&mut self, input: Input<'_>, now: Instant) {
        match input {
            Input::Head {
                exchange,
                status,
                headers,
            } => self.on_head(exchange, status, headers, now),
            Input::Body { exchange, bytes } => self.on_body(exchange, bytes, now),
            Input::End { exchange } => self.on_end(exchange, now),
            Input::Failed { exchange, failure } => {
                self.resolve(exchange, Outcome::Transport(failure.clone()), now)
            }
            Input::TokenRefreshed { generation, token } => {
                self.on_token_refreshed(generation, token, now)
            }
            Input::RefreshFailed {
                generation,
                needs_reauth,
                message,
            } => self.on_refresh_failed(generation, needs_reauth, message, now),
            Input::Cancel { call } => self.cancel(call, now),
        }
    }

    /// Feeds a whole response at once: head, body, end.
    pub fn handle_response(
        &mut self,
        exchange: ExchangeId,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        now: Instant,
    ) {
        self.handle_input(
            Input::Head {
                exchange,
                status,
                headers,
            },
            now,
        );
        if !body.is_empty() {
            self.handle_input(
                Input::Body {
                    exchange,
                    bytes: body,
                },
                now,
            );
        }
        self.handle_input(Input::End { exchange }, now);
    }

    /// Whether the core still wants input for `exchange`. An adapter may
    /// stop reading a stream once this turns false.
    pub fn exchange_open(&self, exchange: ExchangeId) -> bool {
        self.exchanges.contains_key(&exchange)
    }

    /// Handles every deadline at or before `now`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = self.waiters(|s| match s {
            CallState::AwaitReady { deadline, .. } | CallState::AwaitRefresh { deadline, .. } => {
                *deadline <= now
            }
            CallState::Backoff { .. } | CallState::InFlight { .. } | CallState::Resuming { .. } => {
                false
            }
        });
        for id in expired.drain(..) {
            let error = match self.calls.get(&id).map(|c| &c.state) {
                Some(CallState::AwaitReady { since, .. }) => CallError::ReconnectTimeout {
                    waited: now.saturating_duration_since(*since),
                },
                Some(CallState::AwaitRefresh { since, .. }) => CallError::RefreshTimeout {
                    waited: now.saturating_duration_since(*since),
                },
                _ => continue,
            };
            self.end(id, Err(error), Verdict::Neutral, now);
        }
        let mut due = self.waiters(|s| matches!(s, CallState::Backoff { until } if *until <= now));
        for id in due.drain(..) {
            self.attempt(id, now);
        }
        due.extend(self.calls.iter().filter_map(|(id, c)| match c.state {
            CallState::Resuming { until, .. } if until <= now => Some(*id),
            _ => None,
        }));
        due.sort_unstable();
        for id in due.drain(..) {
            self.resume(id, now);
        }
        self.scratch = due;
        if let Some(h) = self.handshake_mut() {
            if h.retry_at.is_some_and(|t| t <= now) {
                h.retry_at = None;
                self.resend_initialize();
            }
        }
        if let Phase::Initializing(h) = &self.phase {
            if h.deadline <= now {
                let (exchange, waited) = (h.exchange, now.saturating_duration_since(h.since));
                self.abort(exchange);
                self.handshake_failed(CallError::ReconnectTimeout { waited }, true, now);
            }
        }
        if let Listen::Waiting {
            until,
            last_event_id,
        } = &self.listen
        {
            if *until <= now && matches!(self.phase, Phase::Ready) {
                let last = last_event_id.clone();
                self.open_listen(last);
            }
        }
        if self.auth.flight.is_some_and(|d| d <= now) {
            // A late answer is still taken (a rotated token must not be
            // lost); a new 401 may now ask again.
            self.auth.flight = None;
        }
    }

    /// The next deadline and why, if any. Call after every input and action
    /// drain; sleep until then and call [`Engine::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        let calls = self.calls.iter().filter_map(|(id, c)| match c.state {
            CallState::AwaitReady { deadline, .. } => Some((deadline, Timer::AwaitReady(*id))),
            CallState::AwaitRefresh { deadline, .. } => Some((deadline, Timer::AwaitRefresh(*id))),
            CallState::Backoff { until } => Some((until, Timer::RetryAfterConnectFailure(*id))),
            CallState::Resuming { until, .. } => Some((until, Timer::ResumeStream(*id))),
            CallState::InFlight { .. } => None,
        });
        let (handshake, handshake_retry) = match &self.phase {
            Phase::Initializing(h) => (
                Some((h.deadline, Timer::Handshake(self.generation))),
                h.retry_at
                    .map(|t| (t, Timer::HandshakeRetry(self.generation))),
            ),
            _ => (None, None),
        };
        let refresh = self
            .auth
            .flight
            .map(|d| (d, Timer::Refresh(self.auth.generation)));
        let listen = match (&self.listen, &self.phase) {
            (Listen::Waiting { until, .. }, Phase::Ready) => Some((*until, Timer::Listen)),
            _ => None,
        };
        calls
            .chain(handshake)
            .chain(handshake_retry)
            .chain(refresh)
            .chain(listen)
            .min_by_key(|(deadline, _)| *deadline)
    }

    /// The next action, if any. Drain until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ----- sending -----

    fn transmit(
        &mut self,
        purpose: Purpose,
        rpc_id: Option<i64>,
        sent_session_id: bool,
        request: HttpRequest,
    ) -> ExchangeId {
        self.next_exchange += 1;
        let id = ExchangeId(self.next_exchange);
        self.exchanges.insert(
            id,
            Exchange {
                purpose,
                rpc_id,
                ctx: Context {
                    sent_session_id,
                    sessionless: self.session.protocol() == Protocol::Modern,
                },
                token_generation: self.auth.generation,
                status: 0,
                session_header: None,
                challenge: None,
                reader: Reader::AwaitHead,
                resume: false,
                resume_from: None,
            },
        );
        let call = match purpose {
            Purpose::Call(c) => Some(c),
            _ => None,
        };
        self.actions.push_back(match purpose {
            Purpose::Listen => Action::Listen {
                exchange: id,
                request,
            },
            _ => Action::Transmit {
                exchange: id,
                call,
                request,
            },
        });
        id
    }

    fn abort(&mut self, exchange: ExchangeId) {
        if self.exchanges.remove(&exchange).is_some() {
            self.actions.push_back(Action::Abort { exchange });
        }
    }

    fn next_rpc_id(&mut self) -> i64 {
        self.next_rpc += 1;
        self.next_rpc
    }

    /// Sends the call now if the session is ready, else parks it.
    fn attempt(&mut self, id: CallId, now: Instant) {
        if !matches!(self.phase, Phase::Ready) {
            if matches!(self.phase, Phase::Idle) {
                self.start_handshake(now);
            }
            let deadline = later(now, self.config.await_ready);
            if let Some(c) = self.calls.get_mut(&id) {
                c.state = CallState::AwaitReady {
                    since: now,
                    deadline,
                };
                self.actions
                    .push_back(Action::AwaitReady { call: id, deadline });
            }
            return;
        }
        self.refresh_if_due(now);
        let rpc = self.next_rpc_id();
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let (request, sent_session_id) = self.session.request(
            &RequestId::Number(rpc),
            call.op.method(),
            call.op.params(),
            self.auth.token.as_ref(),
        );
        let exchange = self.transmit(Purpose::Call(id), Some(rpc), sent_session_id, request);
        let generation = self.generation;
        if let Some(c) = self.calls.get_mut(&id) {
            if let Some(recovery) = c.pending.take() {
                self.actions
                    .push_back(Action::RetryOnce { call: id, recovery });
            }
            c.attempts += 1;
            c.state = CallState::InFlight {
                exchange,
                rpc_id: rpc,
                generation,
            };
        }
    }

    fn retry(&mut self, id: CallId, recovery: Recovery, now: Instant) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.pending = Some(recovery);
        }
        self.attempt(id, now);
    }

    // ----- the handshake -----

    fn start_handshake(&mut self, now: Instant) {
        self.stop_listen();
        let reconnect = self.generation > 0;
        self.generation += 1;
        self.session.forget();
        if reconnect {
            self.actions.push_back(Action::SignalReconnect {
                generation: self.generation,
            });
        }
        let exchange = self.send_initialize();
        self.phase = Phase::Initializing(Handshake {
            exchange,
            step: Step::Initialize,
            since: now,
            deadline: later(now, self.config.handshake_timeout),
            sends: 1,
            auth_retried: false,
            awaiting_refresh: false,
            retry_at: None,
        });
    }

    fn send_initialize(&mut self) -> ExchangeId {
        let rpc = self.next_rpc_id();
        let request = self
            .session
            .initialize(&RequestId::Number(rpc), self.auth.token.as_ref());
        self.transmit(Purpose::Initialize, Some(rpc), false, request)
    }

    fn handshake_mut(&mut self) -> Option<&mut Handshake> {
        match &mut self.phase {
            Phase::Initializing(h) => Some(h),
            _ => None,
        }
    }

    fn on_initialize(
        &mut self,
        exchange: ExchangeId,
        ex: Exchange,
        outcome: Outcome,
        now: Instant,
    ) {
        if self.handshake_mut().map(|h| h.exchange) != Some(exchange) {
            return;
        }
        match outcome {
            Outcome::Answer(Ok(result)) => {
                match self
                    .session
                    .accept_initialize(ex.session_header.as_deref(), result)
                {
                    Ok(()) => {
                        let request = self.session.initialized(self.auth.token.as_ref());
                        let sent = self.session.id().is_some();
                        let ex = self.transmit(Purpose::Initialized, None, sent, request);
                        if let Some(h) = self.handshake_mut() {
                            h.exchange = ex;
                            h.step = Step::Initialized;
                        }
                    }
                    Err(p) => self.handshake_failed(CallError::Protocol(p), true, now),
                }
            }
            Outcome::Status { status, .. }
                if status == 401 || (status == 403 && insufficient_scope(&ex.challenge)) =>
            {
                let retried = self.handshake_mut().is_some_and(|h| h.auth_retried);
                if retried || !self.config.refresh_on_401 {
                    let url = self.config.url.clone();
                    self.handshake_failed(CallError::NeedsReauth { url }, false, now);
                    return;
                }
                if let Some(h) = self.handshake_mut() {
                    h.auth_retried = true;
                    h.awaiting_refresh = true;
                }
                if self.request_refresh(ex.token_generation, ex.challenge, now) {
                    self.resend_initialize();
                }
            }
            Outcome::Transport(t)
                if self.handshake_mut().is_some_and(|h| h.sends < 2)
                    && t.kind != FailureKind::Cancelled =>
            {
                // Initialize may be replayed: at worst the server holds one
                // orphan session until its idle timeout. Nothing listening
                // means a restart in progress: give it a moment first.
                let delay = self.config.connect_retry_delay;
                match self.handshake_mut() {
                    Some(h) if t.kind == FailureKind::Connect && !delay.is_zero() => {
                        h.retry_at = Some(later(now, delay));
                    }
                    _ => self.resend_initialize(),
                }
            }
            failed => self.handshake_failed(failed.into_error(), true, now),
        }
    }

    fn resend_initialize(&mut self) {
        let exchange = self.send_initialize();
        if let Some(h) = self.handshake_mut() {
            h.exchange = exchange;
            h.step = Step::Initialize;
            h.sends += 1;
            h.awaiting_refresh = false;
        }
    }

    fn on_initialized(&mut self, exchange: ExchangeId, outcome: Outcome, now: Instant) {
        match self.handshake_mut() {
            Some(h) if h.exchange == exchange && h.step == Step::Initialized => {}
            _ => return,
        }
        match outcome {
            Outcome::Accepted | Outcome::Answer(_) => self.ready(now),
            failed => self.handshake_failed(failed.into_error(), true, now),
        }
    }

    fn ready(&mut self, now: Instant) {
        self.phase = Phase::Ready;
        self.breaker.success();
        self.actions.push_back(Action::SessionReady {
            generation: self.generation,
        });
        if self.config.listen {
            self.listen_failures = 0;
            self.open_listen(None);
        }
        let mut waiting = self.waiters(|s| matches!(s, CallState::AwaitReady { .. }));
        for id in waiting.drain(..) {
            self.attempt(id, now);
        }
        self.scratch = waiting;
    }

    fn handshake_failed(&mut self, error: CallError, counts: bool, now: Instant) {
        self.phase = Phase::Idle;
        if counts {
            // One failure for the handshake, not one per waiting call.
            self.breaker.failure(now);
        }
        self.actions.push_back(Action::SessionFailed {
            generation: self.generation,
            error: error.clone(),
        });
        let mut waiting = self.waiters(|s| matches!(s, CallState::AwaitReady { .. }));
        for id in waiting.drain(..) {
            let e = match (&error, self.calls.get(&id).map(|c| &c.state)) {
                (CallError::ReconnectTimeout { .. }, Some(CallState::AwaitReady { since, .. })) => {
                    CallError::ReconnectTimeout {
                        waited: now.saturating_duration_since(*since),
                    }
                }
                (CallError::NeedsReauth { .. }, _) => error.clone(),
                _ => CallError::InitializeFailed(Box::new(error.clone())),
            };
            self.end(id, Err(e), Verdict::Neutral, now);
        }
        self.scratch = waiting;
    }

    // ----- the auth path -----

    /// Asks for one refresh of `token_generation` unless one is under way.
    /// Returns `true` when the token already changed: retry at once.
    fn request_refresh(
        &mut self,
        token_generation: u64,
        challenge: Option<String>,
        now: Instant,
    ) -> bool {
        if self.auth.generation > token_generation {
            return true;
        }
        if self.auth.flight.is_none() {
            self.auth.flight = Some(later(now, self.config.refresh_timeout));
            self.actions.push_back(Action::Refresh401 {
                generation: self.auth.generation,
                challenge,
            });
        }
        false
    }

    /// Asks for a refresh once the token is about to expire.
    fn refresh_if_due(&mut self, now: Instant) {
        let due = self.auth.expires.is_some_and(|at| at <= now);
        if due && self.config.refresh_on_401 && self.auth.flight.is_none() {
            // Once: a refresh that fails is not asked for again on every
            // call; a 401 will ask when the token is really refused.
            self.auth.expires = None;
            let _ = self.request_refresh(self.auth.generation, None, now);
        }
    }

    fn on_token_refreshed(&mut self, generation: u64, token: &Token, now: Instant) {
        if generation != self.auth.generation {
            return;
        }
        self.auth.flight = None;
        if self.auth.token.as_ref() == Some(token) {
            // Retrying with the token that was just refused would loop.
            self.fail_refresh_waiters(CallError::Unauthorized, now);
            return;
        }
        self.auth.token = Some(token.clone());
        self.auth.generation += 1;
        self.auth.expires = None;
        self.wake_refresh_waiters(now);
    }

    fn on_refresh_failed(
        &mut self,
        generation: u64,
        needs_reauth: bool,
        message: &str,
        now: Instant,
    ) {
        if generation != self.auth.generation {
            return;
        }
        self.auth.flight = None;
        let error = if needs_reauth {
            CallError::NeedsReauth {
                url: self.config.url.clone(),
            }
        } else {
            CallError::RefreshFailed {
                message: crate::error::sanitize(message),
            }
        };
        self.fail_refresh_waiters(error, now);
    }

    /// The calls in a state, in id order, collected into the reusable
    /// scratch buffer (give it back with `self.scratch = ...`).
    fn waiters(&mut self, which: impl Fn(&CallState) -> bool) -> Vec<CallId> {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend(
            self.calls
                .iter()
                .filter(|(_, c)| which(&c.state))
                .map(|(id, _)| *id),
        );
        ids.sort_unstable();
        ids
    }

    fn refresh_waiters(&mut self) -> Vec<CallId> {
        self.waiters(|s| matches!(s, CallState::AwaitRefresh { .. }))
    }

    fn wake_refresh_waiters(&mut self, now: Instant) {
        if self.handshake_mut().is_some_and(|h| h.awaiting_refresh) {
            self.resend_initialize();
        }
        let mut waiting = self.refresh_waiters();
        for id in waiting.drain(..) {
            self.retry(id, Recovery::Auth, now);
        }
        self.scratch = waiting;
    }

    fn fail_refresh_waiters(&mut self, error: CallError, now: Instant) {
        if self.handshake_mut().is_some_and(|h| h.awaiting_refresh) {
            self.handshake_failed(error.clone(), false, now);
        }
        let mut waiting = self.refresh_waiters();
        for id in waiting.drain(..) {
            self.end(id, Err(error.clone()), Verdict::Neutral, now);
        }
        self.scratch = waiting;
    }

    // ----- a call's outcome -----

    fn on_call(&mut self, id: CallId, ex: Exchange, outcome: Outcome, now: Instant) {
        let ctx = ex.ctx;
        let class = match outcome {
            Outcome::Answer(Ok(v)) => return self.end(id, Ok(Ok(v)), Verdict::Reachable, now),
            Outcome::Answer(Err(e)) => {
                classify(ctx, Failure::Rpc(&e), &self.config.session_patterns)
            }
            // A resume the server refused (405: no resumption; 404: the
            // session is gone) cannot tell whether the request ran.
            // 403 insufficient_scope: the token is good but too narrow. The
            // auth path asks for a better one (a step-up authorization),
            // once per call like any refresh.
            Outcome::Status { status: 403, .. }
                if !ex.resume && insufficient_scope(&ex.challenge) =>
            {
                return self.on_unauthorized(id, ex.token_generation, ex.challenge, now);
            }
            Outcome::Status { status, .. } if ex.resume => {
                let message = format!("resume refused: HTTP {status}");
                let failure = TransportFailure::after_send(FailureKind::Other, message);
                return self.on_transport_failure(id, true, failure, now);
            }
            Outcome::Status { status, body } => classify(
                ctx,
                Failure::Status {
                    status,
                    body: &body,
                },
                &self.config.session_patterns,
            ),
            Outcome::Transport(t) => {
                let class = classify(ctx, Failure::Transport(&t), &self.config.session_patterns);
                if let Class::Transport { ambiguous } = class {
                    return self.on_transport_failure(id, ambiguous, t, now);
                }
                class
            }
            Outcome::Protocol(p) if ex.resume => {
                let failure = TransportFailure::after_send(FailureKind::Other, p.to_string());
                return self.on_transport_failure(id, true, failure, now);
            }
            Outcome::Protocol(p) => {
                return self.end(id, Err(CallError::Protocol(p)), Verdict::Failure, now)
            }
            Outcome::StreamCut {
                last_event_id,
                retry,
                failure,
            } => return self.on_stream_cut(id, last_event_id, retry, failure, now),

            Outcome::Accepted if ex.resume => {
                let failure =
                    TransportFailure::after_send(FailureKind::Other, "resume got no stream");
                return self.on_transport_failure(id, true, failure, now);
            }
            Outcome::Accepted => {
                return self.end(
                    id,
                    Err(CallError::Protocol(ProtocolError::NoResponse)),
                    Verdict::Failure,
                    now,
                )
            }
        };
        if ex.resume && !matches!(class, Class::Application(_) | Class::Cancelled) {
            // A resumed stream that says the session or the token is gone
            // cannot tell whether the request ran: never replay blindly.
            let failure = TransportFailure::after_send(FailureKind::Other, "resume failed");
            return self.on_transport_failure(id, true, failure, now);
        }
        match class {
            Class::Cancelled => self.end(id, Err(CallError::Cancelled), Verdict::Neutral, now),
            Class::Application(e) => self.end(id, Ok(Err(e)), Verdict::Reachable, now),
            Class::Http { status, message } => {
                let verdict = if status >= 500 {
                    Verdict::Failure
                } else {
                    Verdict::Neutral
                };
                self.end(id, Err(CallError::Http { status, message }), verdict, now)
            }
            Class::Auth => self.on_unauthorized(id, ex.token_generation, ex.challenge, now),
            Class::SessionExpired => self.on_session_expired(id, now),
            // Handled above; classify returns it only for transport failures.
            Class::Transport { .. } => {}
        }
    }

    fn spent(&self, id: CallId) -> Option<(Used, u8)> {
        self.calls.get(&id).map(|c| (c.used, c.attempts))
    }

    fn on_unauthorized(
        &mut self,
        id: CallId,
        token_generation: u64,
        challenge: Option<String>,
        now: Instant,
    ) {
        let Some((used, attempts)) = self.spent(id) else {
            return;
        };
        if !self.config.refresh_on_401 {
            let url = self.config.url.clone();
            return self.end(
                id,
                Err(CallError::NeedsReauth { url }),
                Verdict::Neutral,
                now,
            );
        }
        if used.auth || attempts >= MAX_ATTEMPTS {
            return self.end(id, Err(CallError::Unauthorized), Verdict::Neutral, now);
        }
        if let Some(c) = self.calls.get_mut(&id) {
            c.used.auth = true;
        }
        if self.request_refresh(token_generation, challenge, now) {
            self.retry(id, Recovery::Auth, now);
        } else if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::AwaitRefresh {
                since: now,
                deadline: later(now, self.config.refresh_timeout),
            };
        }
    }

    fn on_session_expired(&mut self, id: CallId, now: Instant) {
        let Some((used, attempts)) = self.spent(id) else {
            return;
        };
        if used.session || attempts >= MAX_ATTEMPTS {
            return self.end(id, Err(CallError::SessionLost), Verdict::Failure, now);
        }
        let failed_on = match self.calls.get(&id).map(|c| &c.state) {
            Some(CallState::InFlight { generation, .. }) => *generation,
            _ => self.generation,
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.used.session = true;
        }
        // Single flight, keyed on the generation that failed: only a
        // failure of the current, ready session starts a reconnect. A late
        // failure of an older generation retries on the new one.
        match self.phase {
            Phase::Closed => return self.end(id, Err(CallError::Closed), Verdict::Neutral, now),
            Phase::Ready if failed_on == self.generation => self.start_handshake(now),
            // Already re-initialized (a late failure of an older
            // generation) or re-initializing: just ride along.
            _ => {}
        }
        self.retry(id, Recovery::Session, now);
    }

    fn on_transport_failure(
        &mut self,
        id: CallId,
        ambiguous: bool,
        failure: TransportFailure,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if ambiguous && !call.op.is_idempotent() {
            // It may have run: replaying could run it twice.
            let error = CallError::OutcomeUncertain {
                method: call.op.method().to_owned(),
                message: crate::error::sanitize(&failure.message),
            };
            return self.end(id, Err(error), Verdict::Failure, now);
        }
        if call.used.transport || call.attempts >= MAX_ATTEMPTS {
            let error = CallError::Transport {
                kind: failure.kind,
                message: crate::error::sanitize(&failure.message),
            };
            return self.end(id, Err(error), Verdict::Failure, now);
        }
        let delay = self.config.connect_retry_delay;
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.used.transport = true;
        if failure.kind == FailureKind::Connect && !delay.is_zero() {
            // Nothing listens right now (a restart, a pod being replaced):
            // the one retry waits a moment instead of failing the same way.
            c.pending = Some(Recovery::Transport);
            c.state = CallState::Backoff {
                until: later(now, delay),
            };
        } else {
            self.retry(id, Recovery::Transport, now);
        }
    }

    /// The call's event stream broke after an event id: resume it after the
    /// server's `retry:` (capped), unless resumes keep bringing nothing.
    fn on_stream_cut(
        &mut self,
        id: CallId,
        last_event_id: String,
        retry: Option<Duration>,
        failure: TransportFailure,
        now: Instant,
    ) {
        let max = self.config.max_resumes;
        let delay = retry
            .unwrap_or(self.config.resume_delay)
            .min(self.config.max_resume_delay);
        let session_alive = matches!(self.phase, Phase::Ready);
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let CallState::InFlight {
            rpc_id, generation, ..
        } = c.state
        else {
            return;
        };
        if c.resumes >= max || !session_alive || generation != self.generation {
            return self.on_transport_failure(id, true, failure, now);
        }
        c.resumes += 1;
        c.state = CallState::Resuming {
            until: later(now, delay),
            last_event_id,
            rpc_id,
            generation,
        };
    }

    /// Opens the listening stream (after `last_event_id`, when resuming).
    fn open_listen(&mut self, last_event_id: Option<String>) {
        let request = self
            .session
            .listen(last_event_id.as_deref(), self.auth.token.as_ref());
        let sent = self.session.id().is_some();
        let exchange = self.transmit(Purpose::Listen, None, sent, request);
        if let Some(ex) = self.exchanges.get_mut(&exchange) {
            ex.resume_from = last_event_id;
        }
        self.listen = Listen::Open(exchange);
    }

    fn stop_listen(&mut self) {
        if let Listen::Open(exchange) = self.listen {
            self.abort(exchange);
        }
        self.listen = Listen::Off;
    }

    /// The listening stream ended: open it again after the server's
    /// `retry:`, unless it has none (405) or keeps failing without news.
    fn on_listen_end(
        &mut self,
        exchange: ExchangeId,
        ex: Exchange,
        outcome: Outcome,
        now: Instant,
    ) {
        if self.listen != Listen::Open(exchange) {
            return;
        }
        if matches!(outcome, Outcome::Status { status: 405, .. }) {
            self.listen = Listen::Unsupported;
            return;
        }
        self.listen_failures = self.listen_failures.saturating_add(1);
        if self.listen_failures > self.config.max_resumes || !matches!(self.phase, Phase::Ready) {
            self.listen = Listen::Off;
            return;
        }
        let (seen, retry) = match &ex.reader {
            Reader::Sse(p) => (
                Some(p.last_event_id())
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned),
                p.retry(),
            ),
            _ => (None, None),
        };
        let delay = retry
            .unwrap_or(self.config.resume_delay)
            .min(self.config.max_resume_delay);
        self.listen = Listen::Waiting {
            until: later(now, delay),
            last_event_id: seen.or(ex.resume_from),
        };
    }

    /// Sends the GET that resumes a call's stream after its last event.
    fn resume(&mut self, id: CallId, now: Instant) {
        let Some(CallState::Resuming {
            last_event_id,
            rpc_id,
            generation,
            ..
        }) = self.calls.get(&id).map(|c| &c.state)
        else {
            return;
        };
        let (last_event_id, rpc_id, generation) = (last_event_id.clone(), *rpc_id, *generation);
        if !matches!(self.phase, Phase::Ready) || generation != self.generation {
            // The session it belongs to is gone: the request may have run.
            let failure =
                TransportFailure::after_send(FailureKind::Reset, "session lost while resuming");
            return self.on_transport_failure(id, true, failure, now);
        }
        let request = self
            .session
            .resume(&last_event_id, self.auth.token.as_ref());
        let sent = self.session.id().is_some();
        let exchange = self.transmit(Purpose::Call(id), Some(rpc_id), sent, request);
        if let Some(ex) = self.exchanges.get_mut(&exchange) {
            ex.resume = true;
            ex.resume_from = Some(last_event_id);
        }
        if let Some(c) = self.calls.get_mut(&id) {
            c.state = CallState::InFlight {
                exchange,
                rpc_id,
                generation,
            };
        }
    }

    fn cancel(&mut self, id: CallId, now: Instant) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if let CallState::InFlight {
            rpc_id, generation, ..
        }
        | CallState::Resuming {
            rpc_id, generation, ..
        } = call.state
        {
            // The server may be working on it: tell it to stop. Only within
            // the session the request went to.
            if matches!(self.phase, Phase::Ready) && generation == self.generation {
                let params = json!({"requestId": rpc_id, "reason": "cancelled by the client"});
                let request = self.session.notification(
                    "notifications/cancelled",
                    Some(&params),
                    self.auth.token.as_ref(),
                );
                let sent = self.session.id().is_some();
                self.transmit(Purpose::Notify, None, sent, request);
            }
        }
        self.end(id, Err(CallError::Cancelled), Verdict::Neutral, now);
    }

    /// Ends a call exactly once: its one `Complete` or `Surface`, the
    /// breaker's verdict, and an `Abort` for a request still in flight.
    fn end(
        &mut self,
        id: CallId,
        result: Result<Result<Value, RpcError>, CallError>,
        verdict: Verdict,
        now: Instant,
    ) {
        let Some(call) = self.calls.remove(&id) else {
            return;
        };
        if let CallState::InFlight { exchange, .. } = call.state {
            // Still in the table means still unanswered: tell the adapter.
            self.abort(exchange);
        }
        match (verdict, call.probe) {
            (Verdict::Reachable, _) => self.breaker.success(),
            (Verdict::Failure, _) => self.breaker.failure(now),
            (Verdict::Neutral, true) => self.breaker.release_probe(),
            (Verdict::Neutral, false) => {}
        }
        self.actions.push_back(match result {
            Ok(result) => Action::Complete { call: id, result },
            Err(error) => Action::Surface { call: id, error },
        });
    }

    // ----- reading responses -----

    fn on_head(
        &mut self,
        exchange: ExchangeId,
        status: u16,
        headers: &[(&str, &str)],
        now: Instant,
    ) {
        let max = self.config.max_body_size;
        let Some(ex) = self.exchanges.get_mut(&exchange) else {
            return;
        };
        if !matches!(ex.reader, Reader::AwaitHead) {
            return;
        }
        ex.status = status;
        if !(200..300).contains(&status) {
            if status == 401 || status == 403 {
                ex.challenge = http::find(headers, "www-authenticate").map(str::to_owned);
                if ex.challenge.is_some() {
                    self.last_challenge.clone_from(&ex.challenge);
                }
            }
            ex.reader = Reader::Error(Vec::new());
            return;
        }
        if ex.purpose == Purpose::Initialize {
            // Only a successful initialize may name the session.
            ex.session_header = http::find(headers, "mcp-session-id").map(str::to_owned);
        }
        if matches!(ex.purpose, Purpose::Notify | Purpose::Initialized) {
            return self.resolve(exchange, Outcome::Accepted, now);
        }
        if status == 202 || status == 204 {
            return self.resolve(exchange, Outcome::Accepted, now);
        }
        let content_type = http::find(headers, "content-type")
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("application/json");
        if content_type.eq_ignore_ascii_case("text/event-stream") {
            ex.reader = Reader::Sse(Box::new(SseParser::with_max_event_size(max)));
        } else if content_type.eq_ignore_ascii_case("application/json") {
            ex.reader = Reader::Json(Vec::new());
        } else {
            let ct = crate::error::sanitize(content_type);
            self.resolve(
                exchange,
                Outcome::Protocol(ProtocolError::UnexpectedContentType(ct)),
                now,
            );
        }
    }

    fn on_body(&mut self, exchange: ExchangeId, bytes: &[u8], now: Instant) {
        let max = self.config.max_body_size;
        let Some(ex) = self.exchanges.get_mut(&exchange) else {
            return;
        };
        match &mut ex.reader {
            Reader::Json(buf) => {
                if buf.len() + bytes.len() > max {
                    let outcome = Outcome::Protocol(ProtocolError::TooLarge { limit: max });
                    return self.resolve(exchange, outcome, now);
                }
                buf.extend_from_slice(bytes);
            }
            Reader::Error(buf) => {
                let room = MAX_ERROR_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Reader::Sse(parser) => {
                if let Err(e) = parser.feed(bytes) {
                    return self.resolve(exchange, Outcome::Protocol(e.into()), now);
                }
                self.drain_events(exchange, now);
            }
            Reader::AwaitHead => {}
        }
    }

    fn drain_events(&mut self, exchange: ExchangeId, now: Instant) {
        loop {
            let Some(ex) = self.exchanges.get_mut(&exchange) else {
                return;
            };
            let Reader::Sse(parser) = &mut ex.reader else {
                return;
            };
            let Some(event) = parser.poll_event() else {
                return;
            };
            // Only `message` events carry JSON-RPC.
            if event.event != "message" {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(&event.data)
                .map_err(|e| jsonrpc::MessageError::Json(e.to_string()))
                .and_then(Message::from_value);
            match parsed {
                Ok(message) => {
                    // News on the stream: a later cut may be resumed again.
                    match self.exchanges.get(&exchange).map(|e| e.purpose) {
                        Some(Purpose::Call(id)) => {
                            if let Some(c) = self.calls.get_mut(&id) {
                                c.resumes = 0;
                            }
                        }
                        Some(Purpose::Listen) => self.listen_failures = 0,
                        _ => {}
                    }
                    self.on_message(exchange, message, now)
                }
                Err(e) => return self.resolve(exchange, Outcome::Protocol(e.into()), now),
            }
        }
    }

    /// One message from a response: ours ends the exchange, others go to
    /// the caller (or, for `ping`, are answered here).
    fn on_message(&mut self, exchange: ExchangeId, message: Message, now: Instant) {
        let Some(ex) = self.exchanges.get(&exchange) else {
            return;
        };
        match message {
            Message::Response { id, result } => {
                let ours = match (&id, ex.rpc_id) {
                    (Some(RequestId::Number(n)), Some(mine)) => *n == mine,
                    // `"id": null` errors answer what the server could not read.
                    (None, Some(_)) => result.is_err(),
                    _ => false,
                };
                if ours {
                    self.resolve(exchange, Outcome::Answer(result), now);
                }
            }
            Message::Request { id, method, .. } if method == "ping" => {
                self.reply(id, Ok(json!({})));
            }
            other => {
                let call = match ex.purpose {
                    Purpose::Call(c) => Some(c),
                    _ => None,
                };
                self.actions.push_back(Action::ServerMessage {
                    call,
                    message: other,
                });
            }
        }
    }

    fn on_end(&mut self, exchange: ExchangeId, now: Instant) {
        enum Ended {
            Early,
            Error(u16, Vec<u8>),
            Json(Vec<u8>),
            Sse,
        }
        let Some(ex) = self.exchanges.get_mut(&exchange) else {
            return;
        };
        let ended = match &mut ex.reader {
            Reader::AwaitHead => Ended::Early,
            Reader::Error(body) => Ended::Error(ex.status, std::mem::take(body)),
            Reader::Json(body) => Ended::Json(std::mem::take(body)),
            Reader::Sse(parser) => {
                parser.finish();
                Ended::Sse
            }
        };
        let outcome = match ended {
            Ended::Early => Outcome::Transport(TransportFailure::after_send(
                FailureKind::Reset,
                "response ended before its head",
            )),
            Ended::Error(status, body) => Outcome::Status { status, body },
            Ended::Json(body) => match jsonrpc::parse_body(&body) {
                Ok(messages) => {
                    for m in messages {
                        self.on_message(exchange, m, now);
                    }
                    Outcome::Protocol(ProtocolError::NoResponse)
                }
                Err(e) => Outcome::Protocol(e.into()),
            },
            Ended::Sse => {
                self.drain_events(exchange, now);
                // The stream closed before our answer: the request may have
                // run. (Resuming with Last-Event-ID is the SSE layer's job.)
                Outcome::Transport(TransportFailure::after_send(
                    FailureKind::Reset,
                    "event stream ended before the response",
                ))
            }
        };
        // A no-op when a message above already resolved it.
        self.resolve(exchange, outcome, now);
    }

    /// An exchange has its outcome: it leaves the table (so it resolves
    /// once, and later input for it is ignored) and goes to its sender.
    fn resolve(&mut self, exchange: ExchangeId, outcome: Outcome, now: Instant) {
        let Some(ex) = self.exchanges.remove(&exchange) else {
            return;
        };
        // A call's stream that broke after an event id can be resumed.
        let outcome = match (outcome, ex.purpose) {
            (Outcome::Transport(failure), Purpose::Call(_))
                if failure.kind != FailureKind::Cancelled =>
            {
                let (seen, retry) = match &ex.reader {
                    Reader::Sse(p) => (
                        Some(p.last_event_id()).filter(|id| !id.is_empty()),
                        p.retry(),
                    ),
                    _ => (None, None),
                };
                match seen.map(str::to_owned).or_else(|| ex.resume_from.clone()) {
                    Some(last_event_id) => Outcome::StreamCut {
                        last_event_id,
                        retry,
                        failure,
                    },
                    None => Outcome::Transport(failure),
                }
            }
            (outcome, _) => outcome,
        };
        match ex.purpose {
            Purpose::Call(id) => {
                let current = matches!(
                    self.calls.get(&id).map(|c| &c.state),
                    Some(CallState::InFlight { exchange: e, .. }) if *e == exchange
                );
                if current {
                    self.on_call(id, ex, outcome, now);
                }
            }
            Purpose::Initialize => self.on_initialize(exchange, ex, outcome, now),
            Purpose::Initialized => self.on_initialized(exchange, outcome, now),
            Purpose::Notify => {}
            Purpose::Listen => self.on_listen_end(exchange, ex, outcome, now),
        }
    }
}
