//! The optional listening GET stream ([`Config::listen`](super::Config)):
//! what the server sends outside any call, reopened after `Last-Event-ID`.

use super::exchange::{Exchange, Outcome, Purpose, Reader};
use super::{later, Engine, ExchangeId, Phase, Timer};
use std::time::Instant;

/// The listening GET stream ([`Config::listen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Listen {
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

impl Listen {
    /// When the dropped stream is opened again, while the session is ready.
    pub(super) fn timer(&self, ready: bool) -> Option<(Instant, Timer)> {
        match self {
            Listen::Waiting { until, .. } if ready => Some((*until, Timer::Listen)),
            _ => None,
        }
    }
}

impl Engine {
    /// The listening stream answered (or failed, or took too long): the
    /// calls that waited for it go.
    pub(super) fn open_gate(&mut self, now: Instant) {
        if self.listen_gate.take().is_some() && matches!(self.phase, Phase::Ready) {
            self.release_waiters(now);
        }
    }

    /// Opens the dropped listening stream again once its wait is over; lets
    /// the calls go once the gate's wait is.
    pub(super) fn listen_timeout(&mut self, now: Instant) {
        if self.listen_gate.is_some_and(|at| at <= now) {
            self.open_gate(now);
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
    }

    /// Opens the listening stream (after `last_event_id`, when resuming).
    pub(super) fn open_listen(&mut self, last_event_id: Option<String>) {
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

    pub(super) fn stop_listen(&mut self) {
        self.listen_gate = None;
        if let Listen::Open(exchange) = self.listen {
            self.abort(exchange);
        }
        self.listen = Listen::Off;
    }

    /// The listening stream ended: open it again after the server's
    /// `retry:`, unless it has none (405) or keeps failing without news.
    pub(super) fn on_listen_end(
        &mut self,
        exchange: ExchangeId,
        ex: Exchange,
        outcome: Outcome,
        now: Instant,
    ) {
        if self.listen != Listen::Open(exchange) {
            return;
        }
        self.open_gate(now);
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
}
