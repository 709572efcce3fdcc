//! The calls: each one's state from first send to its one end, and the
//! recovery each failure leads to (auth path, session path, transport
//! replay, stream resume), at most once per kind and [`MAX_ATTEMPTS`] sends.

use super::auth::insufficient_scope;
use super::exchange::{Exchange, Outcome, Purpose};
use super::handshake::version_refusal;
use super::{later, Action, CallId, Engine, ExchangeId, Phase, Recovery, Timer, MAX_ATTEMPTS};
use super::{SessionGeneration, TokenGeneration};
use crate::cache::Cache;
use crate::classify::{classify, wants_handshake, Class, Failure};
use crate::error::{CallError, ProtocolError};
use crate::http::{FailureKind, TransportFailure};
use crate::jsonrpc::{RequestId, RpcError};
use crate::operation::Operation;
use crate::session::{mutual_stateless, Protocol};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// 2026-07-28: the request's headers do not match its body.
const HEADER_MISMATCH: i64 = -32020;

/// Input requests one round may ask for; more is a hostile server.
const MAX_INPUT_REQUESTS: usize = 32;
use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Used {
    pub(super) auth: bool,
    pub(super) session: bool,
    pub(super) transport: bool,
    /// Re-sent at a revision the server named in a `-32022`.
    pub(super) version: bool,
}

/// A multi-round-trip request (2026-07-28, SEP-2322) between rounds: the
/// server answered "input required"; the application's answers are
/// collected, then the request goes again with them and the server's
/// `requestState`, byte for byte. `Debug` shows neither (answers may be
/// secrets a person typed).
#[derive(Default)]
pub(super) struct Round {
    /// Rounds answered "input required" so far.
    pub(super) number: u8,
    /// The answers, by the server's keys.
    pub(super) responses: Map<String, Value>,
    /// The server's opaque state, if it sent one.
    pub(super) state: Option<String>,
    /// Input requests not answered yet: their ids, by key.
    pub(super) waiting: BTreeMap<String, RequestId>,
}

#[derive(Debug)]
pub(super) enum CallState {
    AwaitReady {
        since: Instant,
        deadline: Instant,
    },
    AwaitRefresh {
        since: Instant,
        deadline: Instant,
    },
    /// Nothing listened when the request was to be sent: waiting for the
    /// server to come back (`down`), until the restart budget ends.
    AwaitServer {
        since: Instant,
        deadline: Instant,
    },
    InFlight {
        exchange: ExchangeId,
        rpc_id: i64,
        generation: SessionGeneration,
    },
    /// The server asked for input (a multi-round-trip request): waiting for
    /// the application's answers ([`Round::waiting`]).
    AwaitInput,
    /// The server asked for a retry with nothing to answer (its state
    /// only): the next round goes out then.
    AwaitRound {
        until: Instant,
    },
    /// The request went out and its event stream broke after an event id:
    /// the stream is resumed then, within the same session.
    Resuming {
        until: Instant,
        last_event_id: String,
        rpc_id: i64,
        generation: SessionGeneration,
    },
}

#[derive(Debug)]
pub(super) struct Call {
    pub(super) op: Operation,
    pub(super) state: CallState,
    pub(super) attempts: u8,
    pub(super) used: Used,
    pub(super) probe: bool,
    /// When its request was first refused (nothing listened), if ever.
    pub(super) refused_since: Option<Instant>,
    /// What the last refusal said (the adapter's words: "connection
    /// refused", a child process's exit), for the error once the restart
    /// budget is spent.
    pub(super) refusal: Option<String>,
    /// The recovery the next send follows, announced as `RetryOnce` when
    /// the request actually goes out.
    pub(super) pending: Option<Recovery>,
    /// Resumes in a row that brought no new event.
    pub(super) resumes: u8,
    /// The multi-round-trip state, once the server asked for input.
    pub(super) round: Option<Round>,
}

impl Call {
    /// This call's deadline and why, if it waits for one.
    pub(super) fn timer(&self, id: CallId) -> Option<(Instant, Timer)> {
        match self.state {
            CallState::AwaitReady { deadline, .. } => Some((deadline, Timer::AwaitReady(id))),
            CallState::AwaitRefresh { deadline, .. } => Some((deadline, Timer::AwaitRefresh(id))),
            CallState::AwaitServer { deadline, .. } => Some((deadline, Timer::AwaitServer(id))),
            CallState::Resuming { until, .. } => Some((until, Timer::ResumeStream(id))),
            CallState::AwaitRound { until } => Some((until, Timer::NextRound(id))),
            CallState::InFlight { .. } | CallState::AwaitInput => None,
        }
    }
}

/// What a call's end tells the breaker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The server answered.
    Reachable,
    /// Unreachable or unrecoverable: counts.
    Failure,
    /// Tells nothing (cancel, timeout of a wait, auth).
    Neutral,
}

/// What the server sent when it said the session is gone.
pub(super) struct SessionEvidence {
    status: u16,
    code: Option<i64>,
    message: String,
}

impl Engine {
    /// The calls' deadlines due at `now`: waits that ran out end, cut
    /// streams are resumed, each in call order.
    pub(super) fn calls_timeout(&mut self, now: Instant) {
        let mut expired = self.waiters(|s| match s {
            CallState::AwaitReady { deadline, .. }
            | CallState::AwaitRefresh { deadline, .. }
            | CallState::AwaitServer { deadline, .. } => *deadline <= now,
            CallState::InFlight { .. }
            | CallState::Resuming { .. }
            | CallState::AwaitInput
            | CallState::AwaitRound { .. } => false,
        });
        for id in expired.drain(..) {
            let gated = matches!(self.phase, Phase::Ready) && self.listen_gate.is_some();
            if gated
                && matches!(
                    self.calls.get(&id).map(|c| &c.state),
                    Some(CallState::AwaitReady { .. })
                )
            {
                // The session is ready; only the optional listening
                // stream is late: the call goes rather than fail.
                let gate = self.listen_gate.take();
                self.attempt(id, now);
                self.listen_gate = gate;
                continue;
            }
            let error = match self.calls.get(&id).map(|c| &c.state) {
                Some(CallState::AwaitReady { since, .. }) => CallError::ReconnectTimeout {
                    waited: now.saturating_duration_since(*since),
                },
                Some(CallState::AwaitRefresh { since, .. }) => CallError::RefreshTimeout {
                    waited: now.saturating_duration_since(*since),
                },
                Some(CallState::AwaitServer { since, .. }) => {
                    // One breaker failure per exhausted budget, not per try.
                    let refusal = self.calls.get(&id).and_then(|c| c.refusal.as_deref());
                    let error = super::down::budget_spent(*since, now, refusal);
                    self.end(id, Err(error), Verdict::Failure, now);
                    continue;
                }
                _ => continue,
            };
            self.end(id, Err(error), Verdict::Neutral, now);
        }
        self.scratch = expired;
        let mut due =
            self.waiters(|s| matches!(s, CallState::Resuming { until, .. } if *until <= now));
        for id in due.drain(..) {
            self.resume(id, now);
        }
        self.scratch = due;
        let mut due =
            self.waiters(|s| matches!(s, CallState::AwaitRound { until } if *until <= now));
        for id in due.drain(..) {
            self.attempt(id, now);
        }
        self.scratch = due;
    }

    /// Sends the call now if the session is ready, else parks it.
    pub(super) fn attempt(&mut self, id: CallId, now: Instant) {
        if !matches!(self.phase, Phase::Ready) || self.listen_gate.is_some() {
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
        if self.down.refusing() && !self.scouting {
            // The server refuses connections: wait for the scout's news.
            return self.await_server(id, false, now);
        }
        self.refresh_if_due(now);
        let rpc = self.next_rpc_id();
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if call.round.is_some() && !self.session.is_stateless() {
            // Re-negotiated onto the handshake wire: its server knows
            // nothing of rounds; the request starts over.
            if let Some(c) = self.calls.get_mut(&id) {
                c.round = None;
            }
        }
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let with_round = call.round.as_ref().map(|r| r.params(call.op.params()));
        let (request, sent_session_id) = self.session.request(
            &RequestId::Number(rpc),
            call.op.method(),
            with_round.as_ref().or(call.op.params()),
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

    pub(super) fn retry(&mut self, id: CallId, recovery: Recovery, now: Instant) {
        if let Some(c) = self.calls.get_mut(&id) {
            c.pending = Some(recovery);
        }
        self.attempt(id, now);
    }

    pub(super) fn on_call(&mut self, id: CallId, ex: Exchange, outcome: Outcome, now: Instant) {
        let ctx = ex.ctx;
        // What the server said, for a `SessionLost` or for the caller.
        let mut evidence = SessionEvidence {
            status: ex.status,
            code: None,
            message: String::new(),
        };
        let mut answer = None;
        // Only the HTTP refusal itself says nothing ran: a -32022 that
        // comes as the answer of a stream (after progress, say) or to a
        // resume is the application's, or ambiguous.
        let refused = match &outcome {
            Outcome::Status { status: 400, body } if !ex.resume => Some(body),
            _ => None,
        };
        if let Some(supported) = refused.and_then(|_| version_refusal(&outcome)) {
            if let Some(body) = refused {
                evidence.message = crate::classify::message_of(body).1.into_owned();
            }
            return self.on_call_version_refused(id, ctx.sessionless, &supported, evidence, now);
        }
        let class = match outcome {
            Outcome::Answer(Ok(v)) => {
                let current_token = ex.token_generation == self.auth.generation;
                return self.on_result(id, ctx.sessionless, current_token, v, now);
            }
            Outcome::Answer(Err(e)) => {
                let class = classify(ctx, Failure::Rpc(&e), &self.config.session_patterns);
                evidence.code = Some(e.code);
                evidence.message.clone_from(&e.message);
                answer = Some(e);
                class
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
            Outcome::Status { status, body } => {
                let (code, message) = crate::classify::message_of(&body);
                evidence.status = status;
                evidence.code = code.map(|e| e.code);
                evidence.message = message.into_owned();
                if ctx.sessionless && evidence.code == Some(HEADER_MISMATCH) {
                    // The schema may have changed: a listing kept from
                    // before is not to be trusted for the headers.
                    self.cache
                        .on_notification("notifications/tools/list_changed", None);
                    let message = crate::error::sanitize(&evidence.message);
                    let error = CallError::HeaderMismatch { message };
                    return self.end(id, Err(error), Verdict::Reachable, now);
                }
                if ctx.sessionless
                    && self.config.protocol == Protocol::Auto
                    && wants_handshake(status, &body, &self.config.session_patterns)
                {
                    // A replica on the handshake wire (a rolling deploy, a
                    // rollback): negotiate again, like a lost session.
                    return self.on_session_expired(id, evidence, now);
                }
                classify(
                    ctx,
                    Failure::Status {
                        status,
                        body: &body,
                    },
                    &self.config.session_patterns,
                )
            }
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
            Class::SessionExpired => match answer {
                // The whole message is a session phrase, but this call was
                // already re-sent on a fresh session and got it again: that
                // is what the server has to say, not a session to recover.
                Some(e) if self.spent(id).is_some_and(|(used, _)| used.session) => {
                    self.end(id, Ok(Err(e)), Verdict::Reachable, now)
                }
                _ => self.on_session_expired(id, evidence, now),
            },
            // Handled above; classify returns it only for transport failures.
            Class::Transport { .. } => {}
        }
    }

    /// A result: the call's end, unless the server asks for input first.
    /// `stateless`: the wire the request went on; `current_token`: whether
    /// it went with the token in use now (else its answer belongs to
    /// another authorization and is not cached).
    fn on_result(
        &mut self,
        id: CallId,
        stateless: bool,
        current_token: bool,
        mut result: Value,
        now: Instant,
    ) {
        if stateless {
            // Only these may ask for input (the specification's list).
            let may_ask = self.calls.get(&id).is_some_and(|c| {
                matches!(
                    c.op.method(),
                    "tools/call" | "prompts/get" | "resources/read"
                )
            });
            match result.get("resultType") {
                // Absent: a server from before result types, complete.
                None => {}
                Some(Value::String(t)) if t == "complete" => {}
                Some(Value::String(t)) if t == "input_required" && may_ask => {
                    return self.on_input_required(id, result, now);
                }
                // An extension's type this client did not ask for, or not
                // a string: the specification says invalid.
                Some(other) => {
                    let t = crate::error::sanitize(&other.to_string());
                    let error = CallError::Protocol(ProtocolError::UnknownResultType(t));
                    return self.end(id, Err(error), Verdict::Reachable, now);
                }
            }
            let lists_tools = self
                .calls
                .get(&id)
                .is_some_and(|c| c.op.method() == "tools/list");
            if lists_tools {
                for message in self.session.learn_tools(&mut result) {
                    self.actions.push_back(Action::Warning {
                        call: Some(id),
                        message,
                    });
                }
            }
            // Never a round's answer: it depends on the inputs given.
            let key = self
                .calls
                .get(&id)
                .filter(|c| c.round.is_none() && current_token)
                .and_then(|c| Cache::key(c.op.method(), c.op.params()));
            if let Some(key) = key {
                self.cache.put(key, &result, now);
            }
        }
        self.end(id, Ok(Ok(result)), Verdict::Reachable, now)
    }

    /// "Input required": each input request goes to the application as a
    /// server request; the answers come back through `reply`.
    fn on_input_required(&mut self, id: CallId, result: Value, now: Instant) {
        let max = self.config.max_input_rounds;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        // The server answered: that is all the breaker needs to know, now,
        // not when a person has answered the question (a probe held open
        // that long would keep every other call out).
        if std::mem::take(&mut call.probe) {
            self.breaker.success();
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let round = call.round.get_or_insert_with(Round::default);
        if round.number >= max {
            let error = CallError::Protocol(ProtocolError::TooManyRounds { rounds: max });
            return self.end(id, Err(error), Verdict::Reachable, now);
        }
        round.number += 1;
        round.responses.clear();
        round.waiting.clear();
        // Opaque: echoed exactly as it came, or not at all.
        round.state = result
            .get("requestState")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // A new round is a new request: its own sends and recoveries.
        call.attempts = 0;
        call.used = Used::default();
        call.state = CallState::AwaitInput;
        let number = round.number;
        let requests = result
            .get("inputRequests")
            .and_then(Value::as_object)
            .into_iter()
            .flatten();
        let mut asks = Vec::new();
        let requests: Vec<_> = requests.collect();
        if requests.len() > MAX_INPUT_REQUESTS {
            let error = CallError::Protocol(ProtocolError::TooManyInputRequests {
                max: MAX_INPUT_REQUESTS,
            });
            return self.end(id, Err(error), Verdict::Reachable, now);
        }
        for (key, request) in requests {
            let Some(method) = request.get("method").and_then(Value::as_str) else {
                let error = CallError::Protocol(ProtocolError::BadInputRequest);
                return self.end(id, Err(error), Verdict::Reachable, now);
            };
            let rpc = RequestId::String(format!("{id}/{number}/{key}"));
            round.waiting.insert(key.clone(), rpc.clone());
            asks.push((rpc, method.to_owned(), request.get("params").cloned()));
        }
        if asks.is_empty() {
            // Nothing to ask: the server sheds load. The next round after
            // a pause, 50 ms doubling to 1 s.
            let pause =
                Duration::from_millis(50 << (number - 1).min(5)).min(Duration::from_secs(1));
            if let Some(c) = self.calls.get_mut(&id) {
                c.state = CallState::AwaitRound {
                    until: later(now, pause),
                };
            }
            return;
        }
        for (rpc, method, params) in asks {
            self.inputs.insert(rpc.clone(), id);
            self.actions.push_back(Action::ServerMessage {
                call: Some(id),
                message: crate::jsonrpc::Message::Request {
                    id: rpc,
                    method,
                    params,
                },
            });
        }
    }

    /// The application's answer to an input request of `call`: the next
    /// round goes out once every request of this one has its answer. A
    /// refused input request ends the call.
    pub(super) fn on_input(
        &mut self,
        id: CallId,
        rpc: RequestId,
        result: Result<Value, RpcError>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(round) = call.round.as_mut() else {
            return;
        };
        let Some(key) = round
            .waiting
            .iter()
            .find(|(_, r)| **r == rpc)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        match result {
            Ok(answer) => {
                round.waiting.remove(&key);
                round.responses.insert(key, answer);
                if round.waiting.is_empty() {
                    self.attempt(id, now);
                }
            }
            Err(error) => {
                let key = crate::error::sanitize(&key);
                let error = CallError::InputRefused { key, error };
                self.end(id, Err(error), Verdict::Neutral, now);
            }
        }
    }

    /// `-32022` to a call: the server does not speak the revision the
    /// request was sent at.
    fn on_call_version_refused(
        &mut self,
        id: CallId,
        stateless: bool,
        supported: &[String],
        evidence: SessionEvidence,
        now: Instant,
    ) {
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        let Some((used, attempts)) = self.spent(id) else {
            return;
        };
        let mutual = mutual_stateless(&supported);
        if stateless && mutual.is_some() && !used.version && attempts < MAX_ATTEMPTS {
            // The revision both speak (the one we speak: a replica that
            // answered for another, or a server that wants it said
            // twice): once more.
            if let Some(c) = self.calls.get_mut(&id) {
                c.used.version = true;
            }
            return self.retry(id, Recovery::Version, now);
        }
        let other_wire = if stateless {
            supported
                .iter()
                .any(|v| crate::session::SUPPORTED_LEGACY_VERSIONS.contains(v))
        } else {
            mutual.is_some()
        };
        if other_wire && self.config.protocol == Protocol::Auto {
            // The server moved to the other wire: negotiate again, shared
            // by every caller, like a lost session.
            return self.on_session_expired(id, evidence, now);
        }
        let supported = crate::error::sanitize(&supported.join(", "));
        let error = CallError::Protocol(ProtocolError::NoMutualVersion { supported });
        self.end(id, Err(error), Verdict::Reachable, now)
    }

    pub(super) fn spent(&self, id: CallId) -> Option<(Used, u8)> {
        self.calls.get(&id).map(|c| (c.used, c.attempts))
    }

    pub(super) fn on_unauthorized(
        &mut self,
        id: CallId,
        token_generation: TokenGeneration,
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
        // A DPoP server refused the proof's nonce, not the token (RFC 9449
        // §9); the transport has its new one: once more, no refresh.
        if super::auth::nonce_refusal(&challenge) {
            return self.retry(id, Recovery::Auth, now);
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

    pub(super) fn on_session_expired(
        &mut self,
        id: CallId,
        evidence: SessionEvidence,
        now: Instant,
    ) {
        let Some((used, attempts)) = self.spent(id) else {
            return;
        };
        if used.session || attempts >= MAX_ATTEMPTS {
            let error = CallError::SessionLost {
                status: evidence.status,
                code: evidence.code,
                message: crate::error::sanitize(&evidence.message),
            };
            return self.end(id, Err(error), Verdict::Failure, now);
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

    pub(super) fn on_transport_failure(
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
        if !ambiguous && failure.kind == FailureKind::Connect {
            // Nothing listened: nothing was sent, so anything may go again,
            // once the server is back, within the call's restart budget.
            if let Some(c) = self.calls.get_mut(&id) {
                c.refusal = Some(crate::error::sanitize(&failure.message));
            }
            return self.await_server(id, true, now);
        }
        if call.used.transport || call.attempts >= MAX_ATTEMPTS {
            let error = CallError::Transport {
                kind: failure.kind,
                message: crate::error::sanitize(&failure.message),
            };
            return self.end(id, Err(error), Verdict::Failure, now);
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.used.transport = true;
        self.retry(id, Recovery::Transport, now);
    }

    /// The call's event stream broke after an event id: resume it after the
    /// server's `retry:` (capped), unless resumes keep bringing nothing.
    pub(super) fn on_stream_cut(
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

    /// Sends the GET that resumes a call's stream after its last event.
    pub(super) fn resume(&mut self, id: CallId, now: Instant) {
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

    pub(super) fn cancel(&mut self, id: CallId, now: Instant) {
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
            // On the stateless wire closing the response stream (the
            // `Abort` below) is the cancellation.
            if generation == self.generation {
                let params = json!({"requestId": rpc_id, "reason": "cancelled by the client"});
                self.notify("notifications/cancelled", Some(&params));
            }
        }
        self.end(id, Err(CallError::Cancelled), Verdict::Neutral, now);
    }

    /// Ends a call exactly once: its one `Complete` or `Surface`, the
    /// breaker's verdict, and an `Abort` for a request still in flight.
    pub(super) fn end(
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
            self.scout_gone(exchange, now);
            self.abort(exchange);
        }
        if matches!(call.state, CallState::AwaitServer { .. }) {
            self.nobody_waits();
        }
        if let Some(round) = &call.round {
            for rpc in round.waiting.values() {
                self.inputs.remove(rpc);
            }
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
}

impl std::fmt::Debug for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round")
            .field("number", &self.number)
            .field("answers", &self.responses.len())
            .field("waiting", &self.waiting.len())
            .field("has_state", &self.state.is_some())
            .finish()
    }
}

impl Round {
    /// The request's params for the next round: the caller's, plus the
    /// answers and the server's state.
    pub(super) fn params(&self, params: Option<&Value>) -> Value {
        let mut p = match params {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        p.insert(
            "inputResponses".into(),
            Value::Object(self.responses.clone()),
        );
        match &self.state {
            Some(state) => p.insert("requestState".into(), Value::String(state.clone())),
            None => p.remove("requestState"),
        };
        Value::Object(p)
    }
}
