//! HTTP requests as plain data. The core decides what to send; an adapter
//! (or your own transport) sends it and feeds the response back as
//! [`Input`](crate::Input)s.

use crate::token::Token;
use std::fmt;
use std::sync::Arc;

/// The HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// Every JSON-RPC message goes as a POST.
    Post,
    /// Opens (or resumes) an event stream.
    Get,
    /// Ends the session.
    Delete,
}

impl Method {
    /// The method as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Get => "GET",
            Method::Delete => "DELETE",
        }
    }
}

/// A header name or value. Values built from a [`Token`], and values of
/// user headers named like credentials, print as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub enum Text {
    /// A string known at compile time.
    Static(&'static str),
    /// A shared string (session id, user header, URL part).
    Shared(Arc<str>),
    /// A credential.
    Secret(Token),
}

impl Text {
    /// The text as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Secret(t) => t.header_value(),
        }
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Text::Secret(_) => f.write_str("<redacted>"),
            other => fmt::Debug::fmt(other.as_str(), f),
        }
    }
}

/// Header names whose values are credentials.
pub(crate) fn is_sensitive(name: &str) -> bool {
    ["authorization", "proxy-authorization", "cookie"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// One HTTP request to perform. `Debug` never shows credentials: secret
/// headers are redacted, and the body (a token request's holds a refresh
/// token, a code, a verifier) shows only its length.
#[derive(Clone)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The full URL.
    pub url: Arc<str>,
    /// Headers in the order to send them.
    pub headers: Vec<(Text, Text)>,
    /// The body; empty for GET and DELETE.
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

impl HttpRequest {
    /// The headers as string pairs, ready for any HTTP client.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

/// Finds a header in a response's header list, case-insensitively.
pub(crate) fn find<'a>(headers: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// How a transport failed, as the adapter observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Could not connect (refused, unreachable, DNS, TLS handshake).
    Connect,
    /// The connection broke (reset, EOF before a complete response).
    Reset,
    /// No data within the adapter's I/O timeout.
    Timeout,
    /// The caller cancelled. Never recovers, never counts as a failure,
    /// whatever the message says.
    Cancelled,
    /// Anything else.
    Other,
}

/// A transport failure of one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Whether any byte of the request may have reached the server. `false`
    /// only when the adapter knows nothing was written (connect failed).
    /// When `true` and no response was read, the outcome is ambiguous: the
    /// server may have executed the request.
    pub sent: bool,
    /// A short description for the error surfaced to the caller. Must not
    /// contain credentials.
    pub message: String,
}

impl TransportFailure {
    /// A failure before anything was sent (connect refused, DNS, TLS).
    pub fn not_sent(kind: FailureKind, message: impl Into<String>) -> Self {
        TransportFailure {
            kind,
            sent: false,
            message: message.into(),
        }
    }

    /// A failure after the request may have reached the server.
    pub fn after_send(kind: FailureKind, message: impl Into<String>) -> Self {
        TransportFailure {
            kind,
            sent: true,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let req = HttpRequest {
            method: Method::Post,
            url: "http://127.0.0.1/mcp".into(),
            headers: vec![
                (
                    Text::Static("Authorization"),
                    Text::Secret(Token::bearer("tok-123")),
                ),
                (Text::Static("Mcp-Session-Id"), Text::Shared("abc".into())),
            ],
            body: vec![],
        };
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("tok-123"), "{dbg}");
        assert!(dbg.contains("abc"));
        assert_eq!(req.header("authorization"), Some("Bearer tok-123"));
        assert!(is_sensitive("Cookie") && !is_sensitive("Accept"));
    }
}
