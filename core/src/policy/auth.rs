//! The token: its generation, one refresh in flight for every call that
//! failed on it (single flight, keyed on the generation that failed), and
//! the refresh ahead of a known expiry.

use super::calls::{CallState, Verdict};
use super::{later, Action, CallId, Engine, Recovery, Timer, TokenGeneration};
use crate::error::CallError;
use crate::token::Token;
use std::time::Instant;

/// Whether a 403's `WWW-Authenticate` asks for more scope (RFC 6750 §3.1).
pub(super) fn insufficient_scope(challenge: &Option<String>) -> bool {
    challenge
        .as_deref()
        .and_then(crate::oauth::BearerChallenge::from_header)
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

/// Whether a 401's `WWW-Authenticate` is a DPoP server asking for its
/// nonce in the proof (`use_dpop_nonce`, RFC 9449 §9): the token is fine.
pub(super) fn nonce_refusal(challenge: &Option<String>) -> bool {
    challenge.as_deref().is_some_and(|c| {
        crate::oauth::parse_www_authenticate(c)
            .iter()
            .any(|c| c.param("error") == Some("use_dpop_nonce"))
    })
}

#[derive(Debug)]
pub(super) struct Auth {
    pub(super) token: Option<Token>,
    pub(super) generation: TokenGeneration,
    pub(super) flight: Option<Instant>,
    /// When to refresh the current token ahead of its expiry, if known.
    pub(super) expires: Option<Instant>,
}

impl Auth {
    /// The refresh in flight's deadline, if any.
    pub(super) fn timer(&self) -> Option<(Instant, Timer)> {
        self.flight.map(|d| (d, Timer::Refresh(self.generation)))
    }
}

impl Engine {
    /// A refresh that did not answer in time may be asked for again; a
    /// late answer is still taken (a rotated token must not be lost).
    pub(super) fn auth_timeout(&mut self, now: Instant) {
        if self.auth.flight.is_some_and(|d| d <= now) {
            self.auth.flight = None;
        }
    }

    /// Asks for one refresh of `token_generation` unless one is under way.
    /// Returns `true` when the token already changed: retry at once.
    pub(super) fn request_refresh(
        &mut self,
        token_generation: TokenGeneration,
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
    pub(super) fn refresh_if_due(&mut self, now: Instant) {
        let due = self.auth.expires.is_some_and(|at| at <= now);
        if due && self.config.refresh_on_401 && self.auth.flight.is_none() {
            // Once: a refresh that fails is not asked for again on every
            // call; a 401 will ask when the token is really refused.
            self.auth.expires = None;
            let _ = self.request_refresh(self.auth.generation, None, now);
        }
    }

    pub(super) fn on_token_refreshed(
        &mut self,
        generation: TokenGeneration,
        token: &Token,
        now: Instant,
    ) {
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
        self.auth.generation = self.auth.generation.next();
        self.auth.expires = None;
        self.wake_refresh_waiters(now);
    }

    pub(super) fn on_refresh_failed(
        &mut self,
        generation: TokenGeneration,
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

    pub(super) fn refresh_waiters(&mut self) -> Vec<CallId> {
        self.waiters(|s| matches!(s, CallState::AwaitRefresh { .. }))
    }

    pub(super) fn wake_refresh_waiters(&mut self, now: Instant) {
        if self.handshake_mut().is_some_and(|h| h.awaiting_refresh) {
            self.resend_initialize();
        }
        let mut waiting = self.refresh_waiters();
        for id in waiting.drain(..) {
            self.retry(id, Recovery::Auth, now);
        }
        self.scratch = waiting;
    }

    pub(super) fn fail_refresh_waiters(&mut self, error: CallError, now: Instant) {
        if self.handshake_mut().is_some_and(|h| h.awaiting_refresh) {
            self.handshake_failed(error.clone(), false, now);
        }
        let mut waiting = self.refresh_waiters();
        for id in waiting.drain(..) {
            self.end(id, Err(error.clone()), Verdict::Neutral, now);
        }
        self.scratch = waiting;
    }
}
