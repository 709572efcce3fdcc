//! Turns a failed exchange into a class, structurally first, strings last
//! (behaviour contract item 1):
//!
//! 1. a caller cancel never recovers, whatever its message says;
//! 2. 401 is the auth path, unless its body says the session is gone (rmcp
//!    ≤ 0.16 answers an unknown session that way);
//! 3. 404 on a request that carried `Mcp-Session-Id`, unless the body is
//!    JSON-RPC -32601 (unknown method), is an expired session;
//! 4. 400 naming a missing or invalid session while we sent an id is too;
//! 5. last, a JSON-RPC error in an answer is an expired session only when
//!    its whole message, after a known prefix (`Invalid params:`, `MCP
//!    error -32602:`...), is one of a narrow, case-insensitive,
//!    user-extendable allow-list of phrases. Servers echo user input in
//!    their errors (a prompt named "Session not found", a tool's own
//!    "Browser session not found"): a phrase among other words is the
//!    server's answer, never a reason to send the request again.
//!
//! Nothing takes the session path when the request carried no session id, or
//! when the protocol has no sessions (2026-07-28 and later). An error code
//! alone proves nothing: -32001 is also `RequestTimeout` in TypeScript v1.

use crate::http::{FailureKind, TransportFailure};
use crate::jsonrpc::{self, code, RpcError};
use std::borrow::Cow;

/// Phrases that mean "the server no longer knows this session", as real
/// servers phrase it. Matched case-insensitively: as the whole message of a
/// JSON-RPC error answer (after a known prefix), as a substring of an HTTP
/// error body (401, 400) to a request that carried a session id.
pub const DEFAULT_SESSION_PATTERNS: &[&str] = &[
    "invalid or expired session",
    "expired session",
    "session expired",
    "session not found",
    "unknown session",
    "session terminated",
    "no valid session id",
    "unknown mcp-session-id",
    "could not find session",
    "mcp session has been terminated",
];

/// Extra phrases that only count on a `400 Bad Request` to a request that
/// carried a session id: the TypeScript transport answers a restarted
/// server's unknown id with "Server not initialized", Python ≤ 1.25 with
/// "Missing session ID".
const BAD_REQUEST_SESSION_PATTERNS: &[&str] = &[
    "missing session id",
    "invalid session id",
    "mcp-session-id header is required",
    "server not initialized",
];

/// The allow-list of session-expiry messages.
#[derive(Debug, Clone)]
pub struct SessionPatterns {
    lowercase: Vec<String>,
}

impl Default for SessionPatterns {
    fn default() -> Self {
        SessionPatterns {
            lowercase: DEFAULT_SESSION_PATTERNS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl SessionPatterns {
    /// Adds a phrase your server uses. Empty phrases are ignored: they would
    /// match everything.
    pub fn add(&mut self, phrase: &str) {
        let p = phrase.trim().to_ascii_lowercase();
        if !p.is_empty() && !self.lowercase.contains(&p) {
            self.lowercase.push(p);
        }
    }

    /// Whether `message` contains a phrase (for HTTP error bodies, which
    /// the transport writes, not the application).
    pub fn matches(&self, message: &str) -> bool {
        self.lowercase
            .iter()
            .any(|p| contains_ignore_ascii_case(message, p))
    }

    /// Whether `message` is, as a whole, a phrase: after the prefixes
    /// servers put in front ([`strip_prefixes`]), without surrounding
    /// spaces and a final `.` or `!`, optionally followed by `: <id>` (one
    /// word of letters, digits, `-` and `_`: "Unknown session: 3f2a"). For
    /// JSON-RPC error answers, whose messages may echo the caller's input.
    pub fn is_session_message(&self, message: &str) -> bool {
        let core = strip_prefixes(message).trim_end_matches(['.', '!']).trim();
        let core = match core.rsplit_once(':') {
            Some((head, id)) if is_id(id.trim()) => head.trim_end(),
            _ => core,
        };
        self.lowercase.iter().any(|p| core.eq_ignore_ascii_case(p))
    }
}

/// Labels servers put before an error's message: `MCP error -32602: `
/// (TypeScript SDK), `Invalid params: ` (the seed's server), `Bad Request: `
/// (TypeScript examples), `Unauthorized: ` (rmcp), `Error: `.
const MESSAGE_PREFIXES: &[&str] = &[
    "invalid params:",
    "invalid request:",
    "bad request:",
    "unauthorized:",
    "not found:",
    "error:",
];

/// `message` without the labels servers put in front of it, any number
/// of them, in any order (`MCP error -32602: Invalid params: ...`).
pub fn strip_prefixes(message: &str) -> &str {
    let mut rest = message.trim();
    loop {
        let before = rest.len();
        if let Some(after) = strip_ascii_prefix(rest, "mcp error") {
            // `MCP error -32602:`: the code, then the colon.
            let after = after.trim_start();
            let after = after.strip_prefix('-').unwrap_or(after);
            let after = after.trim_start_matches(|c: char| c.is_ascii_digit());
            if let Some(after) = after.strip_prefix(':') {
                rest = after.trim_start();
            }
        }
        for p in MESSAGE_PREFIXES {
            if let Some(after) = strip_ascii_prefix(rest, p) {
                rest = after.trim_start();
            }
        }
        if rest.len() == before {
            return rest;
        }
    }
}

/// A session id as servers print it: one word of ASCII letters, digits,
/// `-` and `_`.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn strip_ascii_prefix<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Case-insensitive substring search without allocating; `needle` is lowercase.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    !n.is_empty()
        && h.len() >= n.len()
        && h.windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// Whether a request sent on the stateless (2026-07-28) wire was answered
/// by a server that wants the handshake (a replica of a rolling deploy, a
/// rollback): a 400 from the transport, not the application (no JSON-RPC
/// body, or an error with `"id": null`: the request never reached a
/// handler), whose message asks for a session (TypeScript 1.32.2: "Bad
/// Request: No valid session ID provided"). An application's own 400 (its
/// error carries our request's id) that mentions a session is its answer,
/// never a reason to send the request again.
pub(crate) fn wants_handshake(status: u16, body: &[u8], patterns: &SessionPatterns) -> bool {
    if status != 400 || !jsonrpc::is_transport_rejection(body) {
        return false;
    }
    let (_, message) = message_of(body);
    patterns.matches(&message)
        || BAD_REQUEST_SESSION_PATTERNS
            .iter()
            .any(|p| contains_ignore_ascii_case(&message, p))
}

/// What the core knows about the exchange that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The request carried an `Mcp-Session-Id` header.
    pub sent_session_id: bool,
    /// The protocol in use has no sessions (2026-07-28 and later).
    pub sessionless: bool,
}

impl Context {
    fn session_possible(self) -> bool {
        self.sent_session_id && !self.sessionless
    }
}

/// A failed exchange, as observed.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// An HTTP error status and (a bounded prefix of) its body.
    Status {
        /// The status code (not 2xx).
        status: u16,
        /// The body, or its first bytes.
        body: &'a [u8],
    },
    /// A JSON-RPC error answer inside a successful HTTP response.
    Rpc(&'a RpcError),
    /// The transport failed.
    Transport(&'a TransportFailure),
}

/// What kind of failure it is, which decides the recovery.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Class {
    /// The caller cancelled.
    Cancelled,
    /// The credentials were rejected: refresh the token.
    Auth,
    /// The server forgot the session: re-initialize.
    SessionExpired,
    /// The transport failed. `ambiguous` when the request may have reached
    /// the server.
    Transport {
        /// The server may have executed the request.
        ambiguous: bool,
    },
    /// An HTTP error status the core does not recover from.
    Http {
        /// The status.
        status: u16,
        /// The server's message, cut and cleaned.
        message: String,
    },
    /// The server's answer: a JSON-RPC error to hand back as the result.
    Application(RpcError),
}

impl Class {
    /// Whether the circuit breaker counts this as "server unreachable".
    /// Application errors and 4xx answers prove the server is up.
    pub fn counts_as_unreachable(&self) -> bool {
        match self {
            Class::Transport { .. } => true,
            Class::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

pub(crate) fn message_of(body: &[u8]) -> (Option<RpcError>, Cow<'_, str>) {
    match jsonrpc::error_of_body(body) {
        Some(e) => {
            let m = Cow::Owned(e.message.clone());
            (Some(e), m)
        }
        // A web page says nothing a person can read on one line.
        None if is_html(body) => (
            None,
            Cow::Owned(format!("an HTML page ({} bytes)", body.len())),
        ),
        None => (None, String::from_utf8_lossy(&body[..body.len().min(4096)])),
    }
}

/// Whether a body is a web page (what a web server that is not MCP sends).
pub(crate) fn is_html(body: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(64)]).to_ascii_lowercase();
    let head = head.trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

/// Classifies one failed exchange.
pub fn classify(ctx: Context, failure: Failure<'_>, patterns: &SessionPatterns) -> Class {
    match failure {
        Failure::Transport(t) if t.kind == FailureKind::Cancelled => Class::Cancelled,
        Failure::Transport(t) => Class::Transport { ambiguous: t.sent },
        Failure::Rpc(e) => {
            if ctx.session_possible() && patterns.is_session_message(&e.message) {
                Class::SessionExpired
            } else {
                Class::Application(e.clone())
            }
        }
        Failure::Status { status, body } => {
            let (rpc, message) = message_of(body);
            let session = ctx.session_possible();
            let expired = match status {
                401 => session && patterns.matches(&message),
                404 => session && rpc.as_ref().map(|e| e.code) != Some(code::METHOD_NOT_FOUND),
                400 => {
                    session
                        && (patterns.matches(&message)
                            || BAD_REQUEST_SESSION_PATTERNS
                                .iter()
                                .any(|p| contains_ignore_ascii_case(&message, p)))
                }
                _ => false,
            };
            if expired {
                return Class::SessionExpired;
            }
            match (status, rpc) {
                (401, _) => Class::Auth,
                // The server read the request and answered it: an unknown
                // method, or (2026-07-28) an unsupported protocol version.
                (404 | 400, Some(e))
                    if e.code == code::METHOD_NOT_FOUND
                        || e.code == code::UNSUPPORTED_PROTOCOL_VERSION =>
                {
                    Class::Application(e)
                }
                _ => Class::Http {
                    status,
                    message: crate::error::sanitize(&message),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Context = Context {
        sent_session_id: true,
        sessionless: false,
    };
    const NO_ID: Context = Context {
        sent_session_id: false,
        sessionless: false,
    };
    const MODERN: Context = Context {
        sent_session_id: true,
        sessionless: true,
    };

    fn rpc(msg: &str) -> Class {
        classify(
            SESSION,
            Failure::Rpc(&RpcError::new(-32602, msg)),
            &SessionPatterns::default(),
        )
    }

    fn status(ctx: Context, status: u16, body: &str) -> Class {
        classify(
            ctx,
            Failure::Status {
                status,
                body: body.as_bytes(),
            },
            &SessionPatterns::default(),
        )
    }

    // The seed's unit tests, in spirit.
    #[test]
    fn detects_invalid_or_expired_session() {
        assert_eq!(rpc("Invalid or expired session"), Class::SessionExpired);
        assert_eq!(
            rpc("Invalid params: Invalid or expired session"),
            Class::SessionExpired
        );
    }

    #[test]
    fn detects_expired_session_variants() {
        assert_eq!(rpc("Session expired"), Class::SessionExpired);
        assert_eq!(rpc("expired session: abc"), Class::SessionExpired);
    }

    #[test]
    fn detects_session_not_found() {
        assert_eq!(rpc("session not found"), Class::SessionExpired);
        assert_eq!(rpc("Unknown session: abc123"), Class::SessionExpired);
    }

    #[test]
    fn case_insensitive() {
        assert_eq!(rpc("SESSION NOT FOUND"), Class::SessionExpired);
        assert_eq!(rpc("InVaLiD oR eXpIrEd SeSsIoN"), Class::SessionExpired);
    }

    /// Servers echo the caller's input: a phrase among other words is the
    /// server's answer (issue: a prompt named "Session not found", a
    /// browser tool's "Browser session not found").
    #[test]
    fn a_phrase_among_other_words_is_the_servers_answer() {
        for m in [
            "MCP error -32602: Prompt Session not found not found",
            "Prompt Session not found not found",
            "Unknown prompt: Session not found",
            "Resource session not found/x not found",
            "Browser session not found",
            "Error executing tool x: session expired while scraping",
            "The session expired. Log in to the site again.",
            "Tool Unknown session: abc not found",
            "Unknown session: two words",
        ] {
            assert!(matches!(rpc(m), Class::Application(_)), "{m:?}");
        }
        // The whole message, after a known label, is a phrase: expired.
        for m in [
            "MCP error -32001: Session not found",
            "Invalid params: Invalid or expired session.",
            "Bad Request: session expired",
            "  Unknown session: 3f2a-9b_c  ",
            "mcp error -32600: invalid request: SESSION NOT FOUND!",
        ] {
            assert_eq!(rpc(m), Class::SessionExpired, "{m:?}");
        }
    }

    #[test]
    fn rejects_unrelated_errors() {
        for m in [
            "Tool failed to execute",
            "Connection refused",
            "401 Unauthorized",
            "",
        ] {
            assert!(matches!(rpc(m), Class::Application(_)), "{m:?}");
        }
    }

    #[test]
    fn rejects_cancel_even_with_session_text() {
        let t = TransportFailure::after_send(FailureKind::Cancelled, "Invalid or expired session");
        assert_eq!(
            classify(SESSION, Failure::Transport(&t), &SessionPatterns::default()),
            Class::Cancelled
        );
    }

    #[test]
    fn rejects_empty_message() {
        assert!(matches!(rpc(""), Class::Application(_)));
        assert!(matches!(status(SESSION, 400, ""), Class::Http { .. }));
        assert_eq!(status(SESSION, 401, ""), Class::Auth);
    }

    // Structured detection, with the bodies real servers send.
    #[test]
    fn not_found_with_session_id_is_expiry() {
        let python =
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#;
        let ts =
            r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;
        for body in [python, ts, "session not found", ""] {
            assert_eq!(status(SESSION, 404, body), Class::SessionExpired, "{body}");
        }
    }

    #[test]
    fn bad_request_naming_the_session_is_expiry() {
        assert_eq!(
            status(SESSION, 400, "Bad Request: No valid session ID provided"),
            Class::SessionExpired
        );
        let ts = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}"#;
        assert_eq!(status(SESSION, 400, ts), Class::SessionExpired);
        assert!(matches!(
            status(SESSION, 400, "Bad Request: invalid JSON"),
            Class::Http { status: 400, .. }
        ));
    }

    #[test]
    fn unauthorized_session_not_found_is_session_path() {
        assert_eq!(
            status(SESSION, 401, "Unauthorized: Session not found"),
            Class::SessionExpired
        );
        assert_eq!(status(SESSION, 401, "invalid_token"), Class::Auth);
        assert_eq!(
            status(NO_ID, 401, "Unauthorized: Session not found"),
            Class::Auth
        );
    }

    #[test]
    fn not_found_without_session_or_with_method_not_found_is_not_expiry() {
        assert!(matches!(
            status(NO_ID, 404, "session not found"),
            Class::Http { status: 404, .. }
        ));
        let mnf =
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"Method not found"}}"#;
        assert!(matches!(status(SESSION, 404, mnf), Class::Application(e) if e.code == -32601));
    }

    #[test]
    fn sessionless_protocol_never_takes_session_path() {
        assert!(matches!(status(MODERN, 404, ""), Class::Http { .. }));
        assert!(matches!(
            classify(
                MODERN,
                Failure::Rpc(&RpcError::new(1, "session expired")),
                &SessionPatterns::default()
            ),
            Class::Application(_)
        ));
        let unsupported = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"Unsupported protocol version"}}"#;
        assert!(
            matches!(status(MODERN, 400, unsupported), Class::Application(e) if e.code == -32022)
        );
    }

    #[test]
    fn no_session_id_sent_never_matches_strings() {
        let c = classify(
            NO_ID,
            Failure::Rpc(&RpcError::new(1, "Session expired")),
            &SessionPatterns::default(),
        );
        assert!(matches!(c, Class::Application(_)));
    }

    #[test]
    fn user_patterns_extend_the_list() {
        let mut p = SessionPatterns::default();
        p.add("Sitzung abgelaufen");
        p.add("   ");
        let c = classify(
            SESSION,
            Failure::Rpc(&RpcError::new(1, "Error: SITZUNG ABGELAUFEN")),
            &p,
        );
        assert_eq!(c, Class::SessionExpired);
        assert!(!p.matches("anything else"));
    }

    #[test]
    fn transport_classes() {
        let before = TransportFailure::not_sent(FailureKind::Connect, "refused");
        let after = TransportFailure::after_send(FailureKind::Reset, "reset");
        let p = SessionPatterns::default();
        assert_eq!(
            classify(SESSION, Failure::Transport(&before), &p),
            Class::Transport { ambiguous: false }
        );
        assert_eq!(
            classify(SESSION, Failure::Transport(&after), &p),
            Class::Transport { ambiguous: true }
        );
        assert!(Class::Transport { ambiguous: true }.counts_as_unreachable());
        assert!(status(SESSION, 503, "busy").counts_as_unreachable());
        assert!(!status(SESSION, 403, "no").counts_as_unreachable());
        assert!(!Class::Application(RpcError::new(1, "x")).counts_as_unreachable());
    }
}
