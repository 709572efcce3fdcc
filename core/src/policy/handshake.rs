//! The session's life: idle, negotiating, ready, closed; one negotiation
//! at a time, shared by every call that waits for it.
//!
//! Negotiation (the `Auto` setting) probes `server/discover` at the newest
//! stateless revision. Only a result naming that revision is evidence of a
//! 2026-07-28 server; anything else the server answers (an error status,
//! method not found, a body that is not a discover result) falls back to
//! the `initialize` handshake: a deny list, so an unknown server gets the
//! wire every server spoke until 2026. `-32022` naming a revision both
//! sides speak re-probes once at it; naming only revisions we do not speak
//! is a real incompatibility. A transport failure is never a verdict: it is
//! retried like any handshake step.

use super::auth::insufficient_scope;
use super::calls::{CallState, Verdict};
use super::exchange::{Exchange, Outcome, Purpose};
use super::{later, Action, Engine, ExchangeId, SessionGeneration, Timer};
use crate::error::{CallError, ProtocolError};
use crate::http::FailureKind;
use crate::jsonrpc::RequestId;
use crate::session::SUPPORTED_LEGACY_VERSIONS;
use crate::session::{mutual_stateless, unsupported_version, Protocol, MODERN_VERSION};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// `server/discover` at this stateless revision.
    Discover(&'static str),
    Initialize,
    Initialized,
}

#[derive(Debug)]
pub(super) struct Handshake {
    pub(super) exchange: ExchangeId,
    pub(super) step: Step,
    pub(super) since: Instant,
    pub(super) deadline: Instant,
    pub(super) sends: u8,
    pub(super) auth_retried: bool,
    pub(super) awaiting_refresh: bool,
    /// Its initialize could not be sent (nothing listened): it waits for
    /// the server (`down`), within its deadline.
    pub(super) awaiting_server: bool,
    /// When its initialize was first refused, if it was.
    pub(super) refused_since: Option<Instant>,
    /// Probes sent after a `-32022` (at most one), and whether the
    /// handshake wire was tried: together they end every negotiation.
    pub(super) reprobed: bool,
    pub(super) tried_initialize: bool,
    /// Why the negotiation is at its step, for [`Action::Negotiated`].
    pub(super) why: String,
    /// While probing: when an unanswered probe counts as "not a
    /// 2026-07-28 server" (a server or proxy that never answers an unknown
    /// method must not keep the handshake from being tried).
    pub(super) probe_until: Option<Instant>,
}

#[derive(Debug)]
pub(super) enum Phase {
    Idle,
    Initializing(Handshake),
    Ready,
    Closed,
}

impl Phase {
    /// The handshake's deadline, if initializing.
    pub(super) fn timers(
        &self,
        generation: SessionGeneration,
    ) -> impl Iterator<Item = (Instant, Timer)> {
        match self {
            Phase::Initializing(h) => {
                let at = h.probe_until.map_or(h.deadline, |p| p.min(h.deadline));
                Some((at, Timer::Handshake(generation)))
            }
            _ => None,
        }
        .into_iter()
    }
}

impl Engine {
    /// The handshake's deadline: past it, the handshake is abandoned.
    pub(super) fn handshake_timeout(&mut self, now: Instant) {
        if let Phase::Initializing(h) = &self.phase {
            if h.deadline > now && h.probe_until.is_some_and(|p| p <= now) {
                let exchange = h.exchange;
                self.abort(exchange);
                let waited = self.config.probe_timeout;
                let why = format!(
                    "server/discover unanswered for {:.1} s: not a 2026-07-28 server",
                    waited.as_secs_f64()
                );
                return self.switch_to(Step::Initialize, why, now);
            }
            if h.deadline <= now {
                let (exchange, waited) = (h.exchange, now.saturating_duration_since(h.since));
                self.abort(exchange);
                self.handshake_failed(CallError::ReconnectTimeout { waited }, true, now);
            }
        }
    }

    pub(super) fn start_handshake(&mut self, now: Instant) {
        self.stop_listen();
        self.listen_gate = None;
        let reconnect = self.generation > SessionGeneration::default();
        self.generation = self.generation.next();
        self.session.forget();
        // Another server may answer now (a deploy, a rollback): nothing
        // kept from the last one is trusted.
        self.cache.clear();
        if reconnect {
            self.actions.push_back(Action::SignalReconnect {
                generation: self.generation,
            });
        }
        let step = match self.config.protocol {
            Protocol::Auto => Step::Discover(MODERN_VERSION),
            _ => Step::Initialize,
        };
        let exchange = self.send_step(step);
        self.phase = Phase::Initializing(Handshake {
            exchange,
            step,
            since: now,
            deadline: later(now, self.config.handshake_timeout),
            sends: 1,
            auth_retried: false,
            awaiting_refresh: false,
            awaiting_server: false,
            refused_since: None,
            reprobed: false,
            tried_initialize: step == Step::Initialize,
            probe_until: matches!(step, Step::Discover(_))
                .then(|| later(now, self.config.probe_timeout)),
            why: match step {
                Step::Initialize => "the setting asks for the handshake".into(),
                _ => String::new(),
            },
        });
    }

    fn send_step(&mut self, step: Step) -> ExchangeId {
        let rpc = self.next_rpc_id();
        let id = RequestId::Number(rpc);
        let token = self.auth.token.as_ref();
        let request = match step {
            Step::Discover(version) => self.session.discover(&id, version, token),
            _ => self.session.initialize(&id, token),
        };
        self.transmit(Purpose::Initialize, Some(rpc), false, request)
    }

    /// Moves the negotiation to `step` (another probe, or the handshake),
    /// for the reason `why`.
    fn switch_to(&mut self, step: Step, why: String, now: Instant) {
        let exchange = self.send_step(step);
        let probe_until =
            matches!(step, Step::Discover(_)).then(|| later(now, self.config.probe_timeout));
        if let Some(h) = self.handshake_mut() {
            h.why = why;
            h.probe_until = probe_until;
            h.exchange = exchange;
            h.step = step;
            h.sends = 1;
            h.auth_retried = false;
            h.awaiting_refresh = false;
            h.awaiting_server = false;
            h.tried_initialize |= step == Step::Initialize;
        }
    }

    pub(super) fn handshake_mut(&mut self) -> Option<&mut Handshake> {
        match &mut self.phase {
            Phase::Initializing(h) => Some(h),
            _ => None,
        }
    }

    pub(super) fn on_initialize(
        &mut self,
        exchange: ExchangeId,
        ex: Exchange,
        outcome: Outcome,
        now: Instant,
    ) {
        if self.handshake_mut().map(|h| h.exchange) != Some(exchange) {
            return;
        }
        let step = self.handshake_mut().map_or(Step::Initialize, |h| h.step);
        if let Some(supported) = version_refusal(&outcome) {
            return self.on_version_refused(step, &supported, now);
        }
        match outcome {
            Outcome::Answer(Ok(result)) if matches!(step, Step::Discover(_)) => {
                let Step::Discover(version) = step else {
                    return;
                };
                match self.session.accept_discover(version, result) {
                    Ok(()) => {
                        if let Some(h) = self.handshake_mut() {
                            let named = format!("server/discover names {version}");
                            h.why = if h.why.is_empty() {
                                named
                            } else {
                                format!("{}; then {named}", h.why)
                            };
                        }
                        self.ready(now)
                    }
                    // Not a 2026-07-28 server: the handshake wire.
                    Err(_) => self.switch_to(Step::Initialize, format!("server/discover's answer does not name {version}: not a 2026-07-28 server"), now),
                }
            }
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
            Outcome::Transport(t) if t.kind == FailureKind::Connect && !t.sent => {
                // Nothing listens (a restart in progress): nothing was sent.
                // Wait for the server's scout, within the restart budget
                // and the handshake's deadline; the refused send does not
                // count.
                let refusing = self.down.refusing();
                let budget = self.refused_budget();
                let Some(h) = self.handshake_mut() else {
                    return;
                };
                let since = *h.refused_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= budget {
                    let error = CallError::Transport {
                        kind: t.kind,
                        message: crate::error::sanitize(&t.message),
                    };
                    return self.handshake_failed(error, true, now);
                }
                if refusing {
                    h.sends = h.sends.saturating_sub(1);
                    h.awaiting_server = true;
                } else {
                    self.resend_initialize();
                }
            }
            Outcome::Transport(t)
                if self.handshake_mut().is_some_and(|h| h.sends < 2)
                    && t.kind != FailureKind::Cancelled =>
            {
                // Initialize may be replayed: at worst the server holds one
                // orphan session until its idle timeout.
                self.resend_initialize();
            }
            // Anything else a probe gets is no evidence of a stateless
            // server: the handshake wire.
            // Anything the server answered (a transport failure is no
            // answer: it ends the handshake below, never picks a wire).
            other
                if matches!(step, Step::Discover(_)) && !matches!(other, Outcome::Transport(_)) =>
            {
                let what = match &other {
                    Outcome::Answer(Err(e)) => format!("error {}", e.code),
                    Outcome::Status { status, .. } => format!("HTTP {status}"),
                    _ => "no discover result".into(),
                };
                self.switch_to(
                    Step::Initialize,
                    format!("server/discover answered {what}: not a 2026-07-28 server"),
                    now,
                )
            }
            failed => self.handshake_failed(failed.into_error(), true, now),
        }
    }

    /// `-32022`: the server does not speak the revision asked for, and
    /// names those it does.
    fn on_version_refused(&mut self, step: Step, supported: &[String], now: Instant) {
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        let (reprobed, tried_initialize) = self
            .handshake_mut()
            .map_or((true, true), |h| (h.reprobed, h.tried_initialize));
        let auto = self.config.protocol == Protocol::Auto;
        let stateless_ok = auto || self.session.protocol().fixed_stateless().is_some();
        if let Some(version) = mutual_stateless(&supported).filter(|_| stateless_ok && !reprobed) {
            // One re-probe at a revision both speak, even the one just
            // asked for (a replica that answered for another).
            if let Some(h) = self.handshake_mut() {
                h.reprobed = true;
            }
            let why = format!("-32022 names {version}");
            return self.switch_to(Step::Discover(version), why, now);
        }
        let speaks_handshake = supported
            .iter()
            .any(|v| SUPPORTED_LEGACY_VERSIONS.contains(v));
        if matches!(step, Step::Discover(_)) && !tried_initialize && speaks_handshake {
            let why = format!("-32022 names only {}", supported.join(", "));
            return self.switch_to(Step::Initialize, crate::error::sanitize(&why), now);
        }
        let supported = crate::error::sanitize(&supported.join(", "));
        let error = CallError::Protocol(ProtocolError::NoMutualVersion { supported });
        self.handshake_failed(error, true, now)
    }

    pub(super) fn resend_initialize(&mut self) {
        let step = self.handshake_mut().map_or(Step::Initialize, |h| h.step);
        let exchange = self.send_step(step);
        if let Some(h) = self.handshake_mut() {
            h.exchange = exchange;
            h.sends += 1;
            h.awaiting_refresh = false;
            h.awaiting_server = false;
        }
    }

    pub(super) fn on_initialized(&mut self, exchange: ExchangeId, outcome: Outcome, now: Instant) {
        match self.handshake_mut() {
            Some(h) if h.exchange == exchange && h.step == Step::Initialized => {}
            _ => return,
        }
        match outcome {
            Outcome::Accepted | Outcome::Answer(_) => self.ready(now),
            failed => self.handshake_failed(failed.into_error(), true, now),
        }
    }

    pub(super) fn ready(&mut self, now: Instant) {
        if let Phase::Initializing(h) = &mut self.phase {
            let mut reason = std::mem::take(&mut h.why);
            if reason.is_empty() {
                reason = "the server answered initialize".into();
            }
            if let Some(version) = self.session.protocol_version() {
                self.actions.push_back(Action::Negotiated {
                    generation: self.generation,
                    version,
                    stateless: self.session.is_stateless(),
                    reason,
                });
            }
        }
        self.phase = Phase::Ready;
        // No breaker reset here: only an answered call resets it. A server
        // that hands out sessions and forgets them at once (replicas
        // without session affinity) must still open it.
        self.actions.push_back(Action::SessionReady {
            generation: self.generation,
        });
        if self.config.listen && !self.session.is_stateless() {
            self.listen_failures = 0;
            self.open_listen(None);
            // The calls go once the stream answered (`open_gate`): a
            // question the server asks outside a call goes only there.
            self.listen_gate = Some(later(now, self.config.listen_wait));
            return;
        }
        self.release_waiters(now);
    }

    /// Sends every call that waited for the session.
    pub(super) fn release_waiters(&mut self, now: Instant) {
        let mut waiting = self.waiters(|s| matches!(s, CallState::AwaitReady { .. }));
        for id in waiting.drain(..) {
            self.attempt(id, now);
        }
        self.scratch = waiting;
    }

    pub(super) fn handshake_failed(&mut self, error: CallError, counts: bool, now: Instant) {
        if let Phase::Initializing(h) = &self.phase {
            let exchange = h.exchange;
            self.scout_gone(exchange, now);
        }
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
}

/// The revisions a `-32022` answer names, whether it came as a JSON-RPC
/// error in a 200 or in an error status's body.
pub(super) fn version_refusal(outcome: &Outcome) -> Option<Vec<String>> {
    let owned;
    let e = match outcome {
        Outcome::Answer(Err(e)) => e,
        Outcome::Status { body, .. } => {
            owned = crate::classify::message_of(body).0?;
            &owned
        }
        _ => return None,
    };
    unsupported_version(e).map(|v| v.into_iter().map(str::to_owned).collect())
}
