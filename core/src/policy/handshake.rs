//! The session's life: idle, initializing (initialize, then
//! `notifications/initialized`), ready, closed; one handshake at a time,
//! shared by every call that waits for it.

use super::auth::insufficient_scope;
use super::calls::{CallState, Verdict};
use super::exchange::{Exchange, Outcome, Purpose};
use super::{later, Action, Engine, ExchangeId, SessionGeneration, Timer};
use crate::error::CallError;
use crate::http::FailureKind;
use crate::jsonrpc::RequestId;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
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
            Phase::Initializing(h) => Some((h.deadline, Timer::Handshake(generation))),
            _ => None,
        }
        .into_iter()
    }
}

impl Engine {
    /// The handshake's deadline: past it, the handshake is abandoned.
    pub(super) fn handshake_timeout(&mut self, now: Instant) {
        if let Phase::Initializing(h) = &self.phase {
            if h.deadline <= now {
                let (exchange, waited) = (h.exchange, now.saturating_duration_since(h.since));
                self.abort(exchange);
                self.handshake_failed(CallError::ReconnectTimeout { waited }, true, now);
            }
        }
    }

    pub(super) fn start_handshake(&mut self, now: Instant) {
        self.stop_listen();
        let reconnect = self.generation > SessionGeneration::default();
        self.generation = self.generation.next();
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
            awaiting_server: false,
            refused_since: None,
        });
    }

    pub(super) fn send_initialize(&mut self) -> ExchangeId {
        let rpc = self.next_rpc_id();
        let request = self
            .session
            .initialize(&RequestId::Number(rpc), self.auth.token.as_ref());
        self.transmit(Purpose::Initialize, Some(rpc), false, request)
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
            failed => self.handshake_failed(failed.into_error(), true, now),
        }
    }

    pub(super) fn resend_initialize(&mut self) {
        let exchange = self.send_initialize();
        if let Some(h) = self.handshake_mut() {
            h.exchange = exchange;
            h.step = Step::Initialize;
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
        self.phase = Phase::Ready;
        // No breaker reset here: only an answered call resets it. A server
        // that hands out sessions and forgets them at once (replicas
        // without session affinity) must still open it.
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
