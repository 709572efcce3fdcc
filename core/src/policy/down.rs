//! A server that refuses connections (a restart, a pod being replaced):
//! nothing was sent, so anything may be tried again. One request at a time
//! goes to find out whether it is back (the scout), after 100 ms, then
//! doubling up to `connect_retry_delay` (1 s); the other callers wait for
//! it, each within its restart budget (`restart_budget`, 10 s), instead of
//! all hammering a server that is starting. The first answer of any kind
//! shows the server back, and every waiting caller goes on at once.

use super::calls::{CallState, Verdict};
use super::{later, Engine, ExchangeId, Phase, Timer};
use crate::error::CallError;
use crate::http::FailureKind;
use std::time::{Duration, Instant};

/// The first wait after a refused connection.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Down {
    /// Connections are made (as far as we know).
    Up,
    /// The last connection was refused.
    Refusing {
        /// The wait before the next scout.
        delay: Duration,
        /// When the next scout goes out, if none is out.
        scout_at: Option<Instant>,
        /// The scout's exchange, while it is out.
        scout: Option<ExchangeId>,
    },
}

impl Down {
    /// When the next scout goes out.
    pub(super) fn timer(&self) -> Option<(Instant, Timer)> {
        match self {
            Down::Refusing {
                scout_at: Some(at), ..
            } => Some((*at, Timer::Scout)),
            _ => None,
        }
    }

    pub(super) fn refusing(&self) -> bool {
        matches!(self, Down::Refusing { .. })
    }
}

impl Engine {
    /// `exchange` could not be sent: nothing listens.
    pub(super) fn on_refused(&mut self, exchange: ExchangeId, now: Instant) {
        let max = self.config.connect_retry_delay;
        match &mut self.down {
            Down::Up => {
                let delay = FIRST_BACKOFF.min(max);
                self.down = Down::Refusing {
                    delay,
                    scout_at: Some(later(now, delay)),
                    scout: None,
                };
            }
            Down::Refusing {
                delay,
                scout_at,
                scout,
            } => {
                if *scout == Some(exchange) {
                    *delay = delay.saturating_mul(2).min(max);
                    *scout = None;
                }
                if scout.is_none() && scout_at.is_none() {
                    *scout_at = Some(later(now, *delay));
                }
            }
        }
    }

    /// The scout's exchange ended without an answer either way (its call
    /// was cancelled): the next one goes out after the same wait.
    pub(super) fn scout_gone(&mut self, exchange: ExchangeId, now: Instant) {
        if let Down::Refusing {
            delay,
            scout_at,
            scout,
        } = &mut self.down
        {
            if *scout == Some(exchange) {
                *scout = None;
                *scout_at = Some(later(now, *delay));
            }
        }
    }

    /// How long one waits for a server that refuses connections: the
    /// restart budget for a server that answered before (a restart), the
    /// connect retry delay for one that never did (nothing there, a wrong
    /// port: no reason to wait).
    pub(super) fn refused_budget(&self) -> Duration {
        if self.reached {
            self.config.restart_budget
        } else {
            self.config.connect_retry_delay
        }
    }

    /// The server answered something: it is back, and everyone who waited
    /// for it goes on.
    pub(super) fn on_reachable(&mut self, now: Instant) {
        self.reached = true;
        if !self.down.refusing() {
            return;
        }
        self.down = Down::Up;
        if self.handshake_mut().is_some_and(|h| h.awaiting_server) {
            self.resend_initialize();
        }
        let mut waiting = self.waiters(|s| matches!(s, CallState::AwaitServer { .. }));
        for id in waiting.drain(..) {
            self.attempt(id, now);
        }
        self.scratch = waiting;
    }

    /// The scout's time: the handshake's initialize goes out if it waits
    /// for the server, else the oldest waiting call's request.
    pub(super) fn down_timeout(&mut self, now: Instant) {
        let Down::Refusing {
            scout_at: Some(at), ..
        } = &self.down
        else {
            return;
        };
        if *at > now {
            return;
        }
        if self.handshake_mut().is_some_and(|h| h.awaiting_server) {
            self.resend_initialize();
            let exchange = self.handshake_mut().map(|h| h.exchange);
            return self.sent_scout(exchange);
        }
        let waiting = self.waiters(|s| matches!(s, CallState::AwaitServer { .. }));
        let first = waiting.first().copied();
        self.scratch = waiting;
        match first {
            Some(id) => {
                self.scouting = true;
                self.attempt(id, now);
                self.scouting = false;
                match self.calls.get(&id).map(|c| &c.state) {
                    Some(CallState::InFlight { exchange, .. }) => {
                        let exchange = *exchange;
                        self.sent_scout(Some(exchange))
                    }
                    // It went to wait for the session instead (a handshake
                    // is under way): the next scout goes after the same wait.
                    _ => self.reschedule_scout(now),
                }
            }
            // Nobody waits: the next request finds out for itself.
            None => self.down = Down::Up,
        }
    }

    /// Nobody waits for the server any more (every waiting call ended):
    /// forget that it refused, so the next request goes out and finds out.
    pub(super) fn nobody_waits(&mut self) {
        let Down::Refusing { scout: None, .. } = self.down else {
            return;
        };
        let waiting = self
            .calls
            .values()
            .any(|c| matches!(c.state, CallState::AwaitServer { .. }))
            || self.handshake_mut().is_some_and(|h| h.awaiting_server);
        if !waiting {
            self.down = Down::Up;
        }
    }

    fn reschedule_scout(&mut self, now: Instant) {
        if let Down::Refusing {
            delay,
            scout_at,
            scout: None,
        } = &mut self.down
        {
            *scout_at = Some(later(now, *delay));
        }
    }

    fn sent_scout(&mut self, exchange: Option<ExchangeId>) {
        if let Down::Refusing {
            scout_at, scout, ..
        } = &mut self.down
        {
            *scout_at = None;
            *scout = exchange;
        }
    }

    /// A call waits for the server, within its restart budget from its
    /// first refusal: `refused`, its own request could not be sent (and so
    /// does not count as an attempt); else it was about to be sent while
    /// the server refuses connections.
    pub(super) fn await_server(&mut self, id: crate::CallId, refused: bool, now: Instant) {
        let budget = self.refused_budget();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if refused {
            c.attempts = c.attempts.saturating_sub(1);
        }
        let since = *c.refused_since.get_or_insert(now);
        let deadline = later(since, budget);
        if deadline <= now {
            let error = budget_spent(since, now, c.refusal.as_deref());
            return self.end(id, Err(error), Verdict::Failure, now);
        }
        if c.pending.is_none() {
            c.pending = Some(super::Recovery::Transport);
        }
        c.state = CallState::AwaitServer { since, deadline };
        if !self.down.refusing() && !matches!(self.phase, Phase::Closed) {
            // The server answered meanwhile: go on now.
            self.attempt(id, now);
        }
    }
}

/// A call's restart budget is spent: nothing listened since `since`; the
/// last refusal's own words, when known, say why.
pub(super) fn budget_spent(since: Instant, now: Instant, refusal: Option<&str>) -> CallError {
    let waited = now.saturating_duration_since(since).as_secs_f64();
    let mut message = format!("nothing listened for {waited:.1} s (the restart budget)");
    if let Some(r) = refusal {
        message.push_str("; last: ");
        message.push_str(r);
    }
    CallError::Transport {
        kind: FailureKind::Connect,
        message,
    }
}
