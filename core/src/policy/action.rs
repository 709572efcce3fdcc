//! What goes in ([`Input`]) and what comes out ([`Action`], [`Timer`]).

use super::{CallId, ExchangeId, SessionGeneration, TokenGeneration};
use crate::error::CallError;
use crate::http::{HttpRequest, TransportFailure};
use crate::jsonrpc::{Message, RpcError};
use crate::token::Token;
use serde_json::Value;
use std::time::Instant;

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
    /// After a `-32022`, at the revision the server named.
    Version,
}

/// Something for the caller of the core to do or know: some must be
/// carried out, others only inform ([`Action::is_required`]). Drain with
/// [`Engine::poll_action`](crate::Engine::poll_action) until `None` after every input.
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
    /// Open the long-lived GET stream of server messages ([`Config::listen`](crate::Config::listen))
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
        generation: TokenGeneration,
        /// The `WWW-Authenticate` header of the 401, if any.
        challenge: Option<String>,
    },
    /// The session is gone: the core dropped its id and sends a new
    /// initialize (session `generation`). Informational; an adapter may drop
    /// pooled connections to a server that just restarted.
    SignalReconnect {
        /// The generation being initialized.
        generation: SessionGeneration,
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
    /// The revision and wire of session `generation` are settled, and why
    /// (just before its [`Action::SessionReady`]).
    Negotiated {
        /// The session generation.
        generation: SessionGeneration,
        /// The revision.
        version: &'static str,
        /// Whether it is the stateless (2026-07-28) wire.
        stateless: bool,
        /// Why: what the server answered.
        reason: String,
    },
    /// The session of `generation` is ready.
    SessionReady {
        /// Its generation.
        generation: SessionGeneration,
    },
    /// The initialize handshake of `generation` failed.
    SessionFailed {
        /// Its generation.
        generation: SessionGeneration,
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
    /// Something the application should know that is not an error: a
    /// tool left out of a listing because its `x-mcp-header`
    /// declarations are invalid.
    Warning {
        /// The call it concerns, if any.
        call: Option<CallId>,
        /// What happened (server text cut and cleaned).
        message: String,
    },
    /// A server notification or request that arrived on a response stream.
    /// On the stateless wire the input requests of a multi-round-trip
    /// request come this way too: answer them through
    /// [`Engine::reply`](crate::Engine::reply) like any server request.
    /// Requests need an answer through [`Engine::reply`](crate::Engine::reply) (the core answers
    /// `ping` itself).
    ServerMessage {
        /// The call whose stream carried it, if any.
        call: Option<CallId>,
        /// The message.
        message: Message,
    },
}

impl Action {
    /// Whether a transport must act on this action for the engine to make
    /// progress: send the request, open the stream, refresh the token,
    /// hand the call its end, answer the server's request. The others
    /// (`Abort`, `SignalReconnect`, `AwaitReady`, `RetryOnce`,
    /// `SessionReady`, `SessionFailed`, server notifications) only inform:
    /// dropping them loses a log line, never a call.
    pub fn is_required(&self) -> bool {
        match self {
            Action::Transmit { .. }
            | Action::Listen { .. }
            | Action::Refresh401 { .. }
            | Action::Complete { .. }
            | Action::Surface { .. } => true,
            Action::ServerMessage { message, .. } => matches!(message, Message::Request { .. }),
            Action::Abort { .. }
            | Action::SignalReconnect { .. }
            | Action::AwaitReady { .. }
            | Action::RetryOnce { .. }
            | Action::SessionReady { .. }
            | Action::SessionFailed { .. }
            | Action::Negotiated { .. }
            | Action::Warning { .. } => false,
        }
    }
}

/// Why [`Engine::poll_timeout`](crate::Engine::poll_timeout) wants to be woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timer {
    /// A call's await-ready deadline.
    AwaitReady(CallId),
    /// A call's refresh deadline.
    AwaitRefresh(CallId),
    /// The handshake of this generation is abandoned then.
    Handshake(SessionGeneration),
    /// The refresh of this token generation may be asked for again then.
    Refresh(TokenGeneration),
    /// A call waiting for a server that refuses connections gives up then
    /// (its restart budget).
    AwaitServer(CallId),
    /// The next request goes to see whether a server that refused
    /// connections is back.
    Scout,
    /// A call's broken event stream is resumed (GET with `Last-Event-ID`) then.
    ResumeStream(CallId),
    /// A multi-round-trip call whose server asked for nothing but a retry
    /// (state only: load shedding) goes again then.
    NextRound(CallId),
    /// The listening GET stream is opened again then.
    Listen,
    /// A new session's calls stop waiting for the listening stream then.
    ListenGate,
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
        generation: TokenGeneration,
        /// The new token.
        token: &'a Token,
    },
    /// The refresh failed.
    RefreshFailed {
        /// The generation from the action.
        generation: TokenGeneration,
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
