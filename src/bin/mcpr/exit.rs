//! Exit codes, and which failure gets which. Scripts branch on these, so
//! each class means one thing the caller can act on: fix the input, log in
//! again, wait for the breaker, check whether the call ran.

use mcp_recovery::blocking::Error;
use mcp_recovery::core::{CallError, FailureKind};

/// What a run ended with. The numbers are documented in `--help` and the
/// README: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It worked.
    Ok = 0,
    /// The server answered with an error (JSON-RPC error, tool `isError`).
    ServerError = 1,
    /// Bad input or usage.
    BadInput = 2,
    /// The session was lost and not recovered.
    SessionLost = 3,
    /// The credentials were refused and could not be renewed.
    NeedsReauth = 4,
    /// The circuit breaker is open.
    CircuitOpen = 5,
    /// A non-idempotent call may or may not have run.
    OutcomeUncertain = 6,
    /// Unreachable server, transport, HTTP or protocol failure.
    Unreachable = 7,
    /// The call's timeout passed, or it was cancelled.
    Timeout = 8,
    /// Ctrl-C: the running call was cancelled (128 + SIGINT).
    Interrupted = 130,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failure as the CLI reports it: its exit class, a short label that
/// starts the error line, and the details.
pub struct Failure {
    pub exit: Exit,
    pub label: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, label: &'static str, message: impl Into<String>) -> Self {
        Failure {
            exit,
            label,
            message: message.into(),
        }
    }

    /// Bad input from the command line.
    pub fn input(message: impl Into<String>) -> Self {
        Failure::new(Exit::BadInput, "bad input", message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let (exit, label) = classify(&e);
        // Library messages never hold a credential (the core's errors are
        // built that way), so they can be shown; two are reworded so the
        // line does not repeat its label or print a raw `Duration`.
        let message = match &e {
            Error::Rpc(rpc) => format!("JSON-RPC error {}: {}", rpc.code, rpc.message),
            Error::Call(CallError::CircuitOpen { retry_in }) => format!(
                "recent calls could not reach the server; next attempt allowed in {:.1} s",
                retry_in.as_secs_f64()
            ),
            Error::Call(CallError::NeedsReauth { url }) => format!(
                "the server refused the credentials for {url} and they cannot be renewed \
                 (pass a valid --bearer)"
            ),
            _ => e.to_string(),
        };
        // "outcome uncertain: outcome uncertain: ..." says it twice.
        let message = match message.strip_prefix(label) {
            Some(rest) if rest.starts_with(':') => rest[1..].trim_start().to_owned(),
            _ => message,
        };
        Failure::new(exit, label, message)
    }
}

/// The class of a client error.
pub fn classify(e: &Error) -> (Exit, &'static str) {
    match e {
        Error::Call(c) => classify_call(c),
        Error::Rpc(_) => (Exit::ServerError, "server error"),
        Error::Timeout => (Exit::Timeout, "timed out"),
        Error::Decode(_) => (Exit::Unreachable, "protocol error"),
        Error::Config(_) => (Exit::BadInput, "bad input"),
        Error::TooManyPages { .. } => (Exit::ServerError, "server error"),
        Error::InvalidOutput { .. } => (Exit::ServerError, "invalid output"),
        // `Error` is non-exhaustive: a new kind of failure is reported as a
        // generic failure rather than as success or bad input.
        _ => (Exit::Unreachable, "error"),
    }
}

/// The class of a core error.
pub fn classify_call(e: &CallError) -> (Exit, &'static str) {
    const LOST: &str = "session lost and not recovered";
    const REAUTH: &str = "needs re-authorization";
    match e {
        CallError::SessionLost { .. } | CallError::ReconnectTimeout { .. } => {
            (Exit::SessionLost, LOST)
        }
        CallError::InitializeRejected(_) => (Exit::SessionLost, LOST),
        // A handshake that failed because the server is down, the token was
        // refused, the breaker is open or the call timed out is classed by
        // that cause: it tells the caller what to do. Any other failed
        // handshake (an HTTP error, a broken answer, the new session lost
        // at once) means no usable session could be had.
        CallError::InitializeFailed(inner) => match **inner {
            CallError::Transport { .. }
            | CallError::NeedsReauth { .. }
            | CallError::Unauthorized
            | CallError::RefreshFailed { .. }
            | CallError::RefreshTimeout { .. }
            | CallError::CircuitOpen { .. }
            | CallError::Cancelled
            | CallError::InitializeFailed(_)
            | CallError::NotMcpEndpoint { .. } => classify_call(inner),
            _ => (Exit::SessionLost, "session not established"),
        },
        CallError::NeedsReauth { .. }
        | CallError::Unauthorized
        | CallError::RefreshFailed { .. }
        | CallError::RefreshTimeout { .. } => (Exit::NeedsReauth, REAUTH),
        CallError::CircuitOpen { .. } => (Exit::CircuitOpen, "circuit open"),
        CallError::OutcomeUncertain { .. } => (Exit::OutcomeUncertain, "outcome uncertain"),
        CallError::Cancelled => (Exit::Timeout, "cancelled"),
        CallError::Transport {
            kind: FailureKind::Connect,
            ..
        } => (Exit::Unreachable, "server unreachable"),
        CallError::Transport { .. } => (Exit::Unreachable, "transport error"),
        CallError::Http { .. } => (Exit::Unreachable, "HTTP error"),
        CallError::Protocol(_) => (Exit::Unreachable, "protocol error"),
        // Not a lost session: the wrong URL.
        CallError::NotMcpEndpoint { .. } => (Exit::Unreachable, "wrong URL"),
        // The server answered: it asked for input that was not given, or
        // refused the headers.
        CallError::InputRefused { .. } => (Exit::ServerError, "input refused"),
        CallError::HeaderMismatch { .. } => (Exit::ServerError, "server error"),
        _ => (Exit::Unreachable, "error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_recovery::core::RpcError;
    use std::time::Duration;

    #[test]
    fn a_message_does_not_repeat_its_label() {
        let e = Error::Call(CallError::OutcomeUncertain {
            method: "tools/call".into(),
            message: "reset".into(),
        });
        let f = Failure::from(e);
        assert_eq!(f.label, "outcome uncertain");
        assert!(!f.message.starts_with("outcome uncertain"), "{}", f.message);
        assert!(
            f.message.contains("`tools/call` may have run"),
            "{}",
            f.message
        );
        let f = Failure::from(Error::TooManyPages {
            pages: 100,
            items: 5,
        });
        assert_eq!(f.exit.code(), 1);
    }

    #[test]
    fn every_class_has_its_code() {
        let code = |e: Error| classify(&e).0.code();
        assert_eq!(code(Error::Rpc(RpcError::new(-32601, "no"))), 1);
        assert_eq!(code(Error::Config("bad URL".into())), 2);
        assert_eq!(
            code(
                CallError::SessionLost {
                    status: 404,
                    code: None,
                    message: String::new()
                }
                .into()
            ),
            3
        );
        assert_eq!(
            code(
                CallError::ReconnectTimeout {
                    waited: Duration::ZERO
                }
                .into()
            ),
            3
        );
        assert_eq!(code(CallError::Unauthorized.into()), 4);
        assert_eq!(
            code(
                CallError::CircuitOpen {
                    retry_in: Duration::ZERO
                }
                .into()
            ),
            5
        );
        let uncertain = CallError::OutcomeUncertain {
            method: "tools/call".into(),
            message: "reset".into(),
        };
        assert_eq!(code(uncertain.into()), 6);
        let refused = CallError::Transport {
            kind: FailureKind::Connect,
            message: "refused".into(),
        };
        assert_eq!(code(refused.clone().into()), 7);
        assert_eq!(
            code(CallError::InitializeFailed(Box::new(refused)).into()),
            7
        );
        assert_eq!(
            code(CallError::InitializeFailed(Box::new(CallError::Unauthorized)).into()),
            4
        );
        let gone = CallError::Http {
            status: 404,
            message: "Session not found".into(),
        };
        assert_eq!(code(CallError::InitializeFailed(Box::new(gone)).into()), 3);
        assert_eq!(code(Error::Timeout), 8);
        assert_eq!(code(CallError::Cancelled.into()), 8);
    }
}
