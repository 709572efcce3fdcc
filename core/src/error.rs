//! What a call can end with when it does not get the server's answer.

use crate::http::FailureKind;
use crate::jsonrpc::{MessageError, RpcError};
use crate::sse::SseError;
use std::time::Duration;

/// Why a call ended without the server's answer. Surfaced through
/// [`Action::Surface`](crate::Action::Surface).
///
/// Messages quoted from servers are cut to a bounded length; no variant ever
/// holds a credential.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The caller cancelled. Never recovered, never counted by the breaker.
    #[error("call cancelled")]
    Cancelled,
    /// The breaker is open: recent calls could not reach the server.
    #[error("circuit open after repeated failures; next attempt allowed in {retry_in:?}")]
    CircuitOpen {
        /// Time until the breaker lets a probe through.
        retry_in: Duration,
    },
    /// The session was not (re-)initialized within the await-ready deadline.
    /// The reconnect itself may still be going on.
    #[error("session not ready within {waited:?}")]
    ReconnectTimeout {
        /// How long the call waited.
        waited: Duration,
    },
    /// The token refresh did not finish within its deadline.
    #[error("token refresh not finished within {waited:?}")]
    RefreshTimeout {
        /// How long the call waited.
        waited: Duration,
    },
    /// The server wants a new authorization: the refresh was refused
    /// (`invalid_grant`), or there is nothing to refresh. A person has to
    /// log in again.
    #[error("re-authorization needed for {url}")]
    NeedsReauth {
        /// The MCP endpoint that refused the credentials.
        url: String,
    },
    /// The refresh failed for another reason (token endpoint unreachable...).
    #[error("token refresh failed: {message}")]
    RefreshFailed {
        /// What the token source reported.
        message: String,
    },
    /// Still 401 after one refresh, or the refresh returned the same token.
    #[error("unauthorized (HTTP 401) and the token could not be renewed")]
    Unauthorized,
    /// The session was lost again after one reconnect on this call; what
    /// the server last said.
    #[error("session lost again after re-initializing (a fresh session forgotten at once: replicas without session affinity?): HTTP {status}{}{}",
        .code.map(|c| format!(", code {c}")).unwrap_or_default(),
        if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    SessionLost {
        /// The HTTP status of the last rejection (200 for a JSON-RPC error
        /// in an answer).
        status: u16,
        /// Its JSON-RPC error code, if it had one.
        code: Option<i64>,
        /// Its message, cut and cleaned.
        message: String,
    },
    /// The transport failed after the request was sent and the operation is
    /// not safe to replay: it may or may not have run on the server.
    #[error("outcome uncertain: `{method}` may have run on the server ({message})")]
    OutcomeUncertain {
        /// The JSON-RPC method of the call.
        method: String,
        /// The transport failure.
        message: String,
    },
    /// The transport failed and the one retry allowed did not help, or
    /// (`Connect`) nothing listened within the restart budget.
    #[error("transport failure ({kind:?}): {message}")]
    Transport {
        /// What went wrong.
        kind: FailureKind,
        /// The adapter's description.
        message: String,
    },
    /// The server answered with an HTTP error status the core does not
    /// recover from.
    #[error("HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The server's message (JSON-RPC error message or body text, cut).
        message: String,
    },
    /// The server's answer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The initialize handshake this call waited for failed.
    #[error("session initialize failed: {0}")]
    InitializeFailed(Box<CallError>),
    /// The server answered initialize with a JSON-RPC error.
    #[error("server rejected initialize: {0}")]
    InitializeRejected(RpcError),
    /// The application refused an input request of a multi-round-trip
    /// request (its handler failed, or none handles the method): the
    /// request is not sent again without the input.
    #[error("input request `{key}` refused: {error}")]
    InputRefused {
        /// The server's key for the input request.
        key: String,
        /// The handler's error.
        error: RpcError,
    },
    /// 2026-07-28: the server found the request's headers at odds with its
    /// body (`-32020`), before running anything: for a `tools/call`, the
    /// tool's `x-mcp-header` parameters are not known yet (list the tools,
    /// then call again; the clients do).
    #[error("headers do not match the body (-32020): {message}")]
    HeaderMismatch {
        /// The server's message, cut and cleaned.
        message: String,
    },
    /// The URL answers, but not as an MCP endpoint: its `initialize` got a
    /// 404 or 405 that is no JSON-RPC answer (a wrong path: MCP servers
    /// usually answer at `/mcp`), or a web page.
    #[error("not an MCP endpoint: HTTP {status} to initialize ({message}); is the URL's path right (often /mcp)?")]
    NotMcpEndpoint {
        /// The HTTP status.
        status: u16,
        /// What the server sent, cut and cleaned.
        message: String,
    },
    /// The engine was closed.
    #[error("client closed")]
    Closed,
}

/// The server's answer broke the MCP or HTTP contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The body is not JSON-RPC.
    #[error("{0}")]
    Body(#[from] MessageError),
    /// A 2xx answer with a content type that is neither JSON nor an event stream.
    #[error("unexpected content type {0:?}")]
    UnexpectedContentType(String),
    /// The response ended without an answer to our request.
    #[error("response ended without an answer to the request")]
    NoResponse,
    /// The body exceeded the configured size limit.
    #[error("response body exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The event stream was malformed.
    #[error("event stream: {0}")]
    Sse(#[from] SseError),
    /// The server's `Mcp-Session-Id` is not visible ASCII (0x21-0x7E).
    #[error("server sent an invalid Mcp-Session-Id")]
    InvalidSessionId,
    /// The server negotiated a protocol version this client does not speak.
    #[error("server chose unsupported protocol version {0:?}")]
    UnsupportedProtocolVersion(String),
    /// The initialize result is not an `InitializeResult`.
    #[error("malformed initialize result")]
    BadInitializeResult,
    /// The `server/discover` result does not name the revision asked about.
    #[error("malformed server/discover result")]
    BadDiscoverResult,
    /// The server speaks no revision this client speaks (`-32022` naming
    /// only others).
    #[error("no protocol revision in common: the server speaks {supported}")]
    NoMutualVersion {
        /// The revisions the server named, comma-separated (cut).
        supported: String,
    },
    /// A result whose `resultType` this client does not know (2026-07-28:
    /// treated as invalid).
    #[error("unknown resultType {0}")]
    UnknownResultType(String),
    /// An "input required" result asking for more input requests than one
    /// round may.
    #[error("the server asked for more than {max} inputs at once")]
    TooManyInputRequests {
        /// The bound.
        max: usize,
    },
    /// An "input required" result whose input request names no method.
    #[error("malformed input request")]
    BadInputRequest,
    /// The server kept asking for input past the bound on rounds of a
    /// multi-round-trip request.
    #[error("the server asked for input more than {rounds} times")]
    TooManyRounds {
        /// The bound.
        rounds: u8,
    },
}

/// Cuts a server-provided message to a bounded length and drops control
/// characters, so a hostile body cannot flood logs or forge log lines.
pub fn sanitize(msg: &str) -> String {
    const MAX: usize = 512;
    let mut out = String::with_capacity(msg.len().min(MAX));
    for c in msg.chars() {
        if out.len() + c.len_utf8() > MAX {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// A URL fit for a message: no userinfo (`user:pass@`), no query (`?key=`),
/// no fragment, cut and cleaned like any server text.
pub fn redact_url(raw: &str) -> String {
    let redacted = match url::Url::parse(raw) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        // Not a URL: keep what cannot be a credential.
        Err(_) => {
            let no_query = raw.split(['?', '#']).next().unwrap_or("");
            match (no_query.find("://"), no_query.rfind('@')) {
                (Some(i), Some(at)) if at > i => {
                    format!("{}…@{}", &no_query[..i + 3], &no_query[at + 1..])
                }
                _ => no_query.to_owned(),
            }
        }
    };
    sanitize(&redacted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_lose_userinfo_and_query() {
        assert_eq!(
            redact_url("https://user:pa55@host.example:8443/mcp?key=s3cret#f"),
            "https://host.example:8443/mcp?…"
        );
        assert_eq!(redact_url("ht!tp://u:p@x/y?k=v"), "ht!tp://…@x/y");
        assert_eq!(
            redact_url("http://127.0.0.1:9/mcp"),
            "http://127.0.0.1:9/mcp"
        );
    }

    #[test]
    fn sanitize_bounds_and_strips() {
        assert_eq!(sanitize("a\r\nb"), "a  b");
        let long = "x".repeat(10_000);
        assert!(sanitize(&long).len() <= 512 + '…'.len_utf8());
    }
}
