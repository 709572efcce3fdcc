//! The recovery state machine: many calls over one session and one token.
//!
//! Recovery order follows the seed fix, done right: the auth path first (one
//! single-flight refresh keyed on the token generation that failed), the
//! session path second (one single-flight re-initialize keyed on the session
//! generation that failed), replay only when it cannot run anything twice,
//! and every recovery kind at most once per call, at most
//! [`MAX_ATTEMPTS`] sends per call.
//!
//! The engine is split by sub-machine, each in its own module with its
//! state and its part of [`Engine::handle_timeout`] / [`Engine::poll_timeout`]:
//! `calls` (each call from first send to its one end), `handshake` (the
//! session), `auth` (the token and its single-flight refresh), `listen`
//! (the listening GET stream) and `exchange` (reading responses).

mod action;
mod auth;
mod calls;
mod config;
mod down;
mod exchange;
mod handshake;
mod listen;

pub use action::{Action, Input, Recovery, Timer};
pub use config::Config;

use crate::breaker::{Admission, Breaker, BreakerState};
use crate::cache::Cache;
use crate::classify::Context;
use crate::error::CallError;
use crate::http::HttpRequest;
use crate::jsonrpc::{RequestId, RpcError};
use crate::operation::Operation;
use crate::session::Session;
use crate::token::Token;
use auth::Auth;
use calls::{Call, CallState, Used, Verdict};
use down::Down;
use exchange::{Exchange, Outcome, Purpose, Reader};
use handshake::Phase;
use listen::Listen;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// `now + d`, saturating: a huge configured duration must not panic. Past
/// the representable range the deadline is a century away, which is never.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// A call never sends its request more than this many times. A request
/// whose connection was refused sent nothing and does not count: it waits
/// for the server within `Config::restart_budget`.
pub const MAX_ATTEMPTS: u8 = 3;

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

/// Counts the sessions an engine has initialized: 0 before the first
/// initialize, one more for each. Recovery is keyed on it, so a late
/// failure of an old session never tears down its successor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionGeneration(u64);

/// Counts the tokens an engine has used: one more for each new token. A
/// refresh is keyed on the generation that failed, so every call that
/// failed on one token shares one refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenGeneration(u64);

macro_rules! generation {
    ($name:ident) => {
        impl $name {
            /// The generation numbered `n`. An input naming a generation
            /// the engine is not at (a late or made-up answer) is ignored.
            pub fn new(n: u64) -> Self {
                $name(n)
            }

            /// The count itself.
            pub fn get(self) -> u64 {
                self.0
            }

            fn next(self) -> Self {
                $name(self.0 + 1)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl PartialEq<u64> for $name {
            fn eq(&self, other: &u64) -> bool {
                self.0 == *other
            }
        }
    };
}

generation!(SessionGeneration);
generation!(TokenGeneration);

/// The sans-IO MCP client: feed it inputs, drain its actions, honour its
/// timer. See the [crate docs](crate) for the loop.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    session: Session,
    phase: Phase,
    generation: SessionGeneration,
    auth: Auth,
    breaker: Breaker,
    calls: BTreeMap<CallId, Call>,
    exchanges: BTreeMap<ExchangeId, Exchange>,
    actions: VecDeque<Action>,
    scratch: Vec<CallId>,
    listen: Listen,
    /// Whether the server refuses connections, and its scout.
    down: Down,
    /// Set while the scout's call is attempted, so it is sent.
    scouting: bool,
    /// Whether the server ever answered: only a server that was there can
    /// be restarting; one that never was fails fast.
    reached: bool,
    /// The last 401/403 `WWW-Authenticate`, for an authorization flow the
    /// application starts itself.
    last_challenge: Option<String>,
    /// Fresh 2026-07-28 results, by request.
    cache: Cache,
    /// Input requests of multi-round-trip calls waiting for the
    /// application's answer: which call each belongs to.
    inputs: BTreeMap<RequestId, CallId>,
    /// Listening-stream openings in a row that brought no message.
    listen_failures: u8,
    /// A new session's calls wait until the listening stream answered, or
    /// until then ([`Config::listen_wait`]).
    listen_gate: Option<Instant>,
    next_call: u64,
    next_exchange: u64,
    next_rpc: i64,
}

impl Engine {
    /// A new engine. Nothing is sent until the first call or
    /// [`Engine::connect`].
    pub fn new(mut config: Config) -> Self {
        // The session is their one reader: moved there, not copied (a
        // process may hold thousands of engines).
        let session = Session::new(
            &config.url,
            config.protocol,
            std::mem::take(&mut config.client_info),
            std::mem::take(&mut config.capabilities),
            &config.headers,
        );
        // Fixed to the stateless wire: no handshake, ready from the start.
        let phase = if session.is_stateless() {
            Phase::Ready
        } else {
            Phase::Idle
        };
        let cache = Cache::new(config.cache_entries);
        Engine {
            breaker: Breaker::new(config.breaker),
            config,
            session,
            phase,
            generation: SessionGeneration::default(),
            auth: Auth {
                token: None,
                generation: TokenGeneration::default(),
                flight: None,
                expires: None,
            },
            calls: BTreeMap::new(),
            exchanges: BTreeMap::new(),
            actions: VecDeque::new(),
            scratch: Vec::new(),
            listen: Listen::Off,
            down: Down::Up,
            scouting: false,
            reached: false,
            last_challenge: None,
            inputs: BTreeMap::new(),
            cache,
            listen_failures: 0,
            listen_gate: None,
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
        // Cached results belong to the authorization that got them.
        self.cache.clear();
        self.auth.generation = self.auth.generation.next();
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

    /// Gives back the capacity the engine keeps for reuse (its tables of
    /// calls and exchanges, its action queue) where they are empty: the
    /// next call allocates them again. For a session gone idle: the
    /// clients call it once their idle connections are closed. Changes no
    /// state.
    pub fn release_spare(&mut self) {
        if self.calls.is_empty() {
            self.calls = BTreeMap::new();
        }
        if self.exchanges.is_empty() {
            self.exchanges = BTreeMap::new();
        }
        if self.inputs.is_empty() {
            self.inputs = BTreeMap::new();
        }
        if self.actions.is_empty() {
            self.actions = VecDeque::new();
        }
        self.scratch = Vec::new();
    }

    /// The current session generation (0 before the first initialize).
    pub fn generation(&self) -> SessionGeneration {
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
        // Only the stateless wire fills the cache: on the handshake wire
        // no key is built (it serializes the params) for every call.
        let fresh = self
            .session
            .is_stateless()
            .then(|| Cache::key(op.method(), op.params()))
            .flatten()
            .and_then(|key| self.cache.get(&key, now));
        if let Some(result) = fresh {
            // Answered within its `ttlMs`: no round trip.
            self.actions.push_back(Action::Complete {
                call: id,
                result: Ok(result),
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
                refused_since: None,
                refusal: None,
                pending: None,
                resumes: 0,
                round: None,
            },
        );
        self.attempt(id, now);
        id
    }

    /// Answers a server's request that came as [`Action::ServerMessage`]:
    /// on the handshake wire a POST of the response, on the stateless wire
    /// (an input request of a multi-round-trip call) the call's next round
    /// once all its input requests are answered.
    pub fn reply(&mut self, id: RequestId, result: Result<Value, RpcError>, now: Instant) {
        if let Some(call) = self.inputs.remove(&id) {
            return self.on_input(call, id, result, now);
        }
        // The stateless wire has no requests from the server but input
        // requests: an answer to anything else (late, made up) goes nowhere.
        if !matches!(self.phase, Phase::Ready) || self.session.is_stateless() {
            return;
        }
        let request = self
            .session
            .response(&id, &result, self.auth.token.as_ref());
        self.transmit(Purpose::Notify, None, false, request);
    }

    /// Sends a notification of the client's own (say
    /// `notifications/roots/list_changed`) in the ready session. Returns
    /// `false`, sending nothing, when there is no such session (none yet,
    /// re-initializing, closed, or the stateless wire, which has no
    /// client notifications of this kind): the next session learns the
    /// state at its start anyway.
    pub fn notify(&mut self, method: &str, params: Option<&Value>) -> bool {
        if !matches!(self.phase, Phase::Ready) || self.session.is_stateless() {
            return false;
        }
        let request = self
            .session
            .notification(method, params, self.auth.token.as_ref());
        let sent = self.session.id().is_some();
        self.transmit(Purpose::Notify, None, sent, request);
        true
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

    /// Handles every deadline at or before `now`, each sub-machine its
    /// own: the calls, the handshake, the listening stream, the refresh.
    /// Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.calls_timeout(now);
        self.down_timeout(now);
        self.handshake_timeout(now);
        self.listen_timeout(now);
        self.auth_timeout(now);
    }

    /// The next deadline and why, if any. Call after every input and action
    /// drain; sleep until then and call [`Engine::handle_timeout`]. Ties go
    /// to the first of: the calls (oldest first), the handshake, the next
    /// scout of a server that refuses connections, the refresh, the
    /// listening stream.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(Instant, Timer)> {
        self.calls
            .iter()
            .filter_map(|(id, c)| c.timer(*id))
            .chain(self.phase.timers(self.generation))
            .chain(self.down.timer())
            .chain(self.auth.timer())
            .chain(self.listen.timer(self.is_ready()))
            .chain(self.listen_gate.map(|at| (at, Timer::ListenGate)))
            .min_by_key(|(deadline, _)| *deadline)
    }

    /// The next action, if any. Drain until `None` after every input.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

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
                    sessionless: self.session.is_stateless(),
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
        ids
    }
}
