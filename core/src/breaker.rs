//! Circuit breaker (behaviour contract item 7). It counts only "the server
//! could not be reached or could not be recovered": transport failures, 5xx,
//! broken protocol, failed re-initializes. An `isError` tool result or a
//! JSON-RPC application error proves the server is up and resets nothing
//! but counts nothing either.

use std::time::{Duration, Instant};

/// What a caller refused while the half-open probe is out is told to wait
/// (at most the cooldown): the probe's end is not known in advance.
pub const PROBE_WAIT: Duration = Duration::from_secs(1);

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive counted failures that open the breaker (default 3).
    /// Zero disables the breaker.
    pub threshold: u32,
    /// How long it stays open before one probe is let through (default 60 s).
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 3,
            cooldown: Duration::from_secs(60),
        }
    }
}

impl BreakerConfig {
    /// Settings with the given threshold and cooldown.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        BreakerConfig {
            threshold,
            cooldown,
        }
    }
}

/// The breaker's state, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive counted failures so far.
    Closed {
        /// Consecutive counted failures.
        failures: u32,
    },
    /// Calls fail fast until `until`.
    Open {
        /// When one probe will be let through.
        until: Instant,
    },
    /// One probe call is deciding whether the server is back.
    HalfOpen {
        /// Whether the probe is under way (further calls fail fast).
        probing: bool,
    },
}

/// What the breaker says to a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead.
    Pass,
    /// Go ahead as the one probe; report its end with `success`/`failure`,
    /// or `release` if it ended without telling anything.
    Probe,
    /// Fail fast; a probe is allowed in `retry_in`.
    Reject {
        /// Time left until a probe is let through.
        retry_in: Duration,
    },
}

/// A consecutive-failure circuit breaker with a single half-open probe.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Asks whether a new call may go out at `now`. While the half-open
    /// probe is out, others are told to retry in [`PROBE_WAIT`] (or the
    /// cooldown, if shorter).
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Pass,
            BreakerState::Open { until } if now < until => Admission::Reject {
                retry_in: until.saturating_duration_since(now),
            },
            BreakerState::Open { .. } | BreakerState::HalfOpen { probing: false } => {
                self.state = BreakerState::HalfOpen { probing: true };
                Admission::Probe
            }
            // The probe decides; until it does, nobody else goes. Its end
            // is not known in advance: come back in a second (or the
            // cooldown, if shorter), never "in no time", which would spin.
            BreakerState::HalfOpen { probing: true } => Admission::Reject {
                retry_in: PROBE_WAIT.min(self.config.cooldown),
            },
        }
    }

    /// The server answered (any answer, application errors included), or a
    /// session was (re-)initialized: it is reachable.
    pub fn success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// A counted failure at `now`.
    pub fn failure(&mut self, now: Instant) {
        if self.config.threshold == 0 {
            return;
        }
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.config.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            // Threshold reached, or the probe failed: (re-)arm.
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => BreakerState::Open {
                until: crate::policy::later(now, self.config.cooldown),
            },
            // Stragglers that started before it opened do not extend it.
            open @ BreakerState::Open { .. } => open,
        };
    }

    /// The probe ended without telling whether the server is reachable
    /// (cancelled, needs re-auth): let the next call probe.
    pub fn release_probe(&mut self) {
        if self.state == (BreakerState::HalfOpen { probing: true }) {
            self.state = BreakerState::HalfOpen { probing: false };
        }
    }
}
