//! The bearer token as a secret: it can be sent, compared and replaced, but
//! never printed. `Debug` and `Display` show `<redacted>`, so a token cannot
//! leak through logs, errors or panics that format the core's state.

use std::fmt;
use std::sync::Arc;

/// An OAuth access token (or any bearer credential) for the MCP endpoint.
///
/// Cloning is cheap (shared). Equality compares the secret, which is how the
/// core tells whether a refresh produced a new token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    // Kept pre-formatted as the whole header value so a request never
    // formats (and never allocates for) the secret.
    header: Arc<str>,
}

impl Token {
    /// A bearer token; the `Authorization` value becomes `Bearer <token>`.
    pub fn bearer(token: &str) -> Self {
        Token {
            header: format!("Bearer {token}").into(),
        }
    }

    /// A DPoP-bound access token (RFC 9449 §7.1): the `Authorization`
    /// value becomes `DPoP <token>`, and each request needs a proof.
    pub fn dpop(token: &str) -> Self {
        Token {
            header: format!("DPoP {token}").into(),
        }
    }

    /// The access token of a `DPoP` credential, `None` for any other.
    pub fn dpop_token(&self) -> Option<&str> {
        self.header.strip_prefix("DPoP ")
    }

    /// A credential used verbatim as a header value (a user's own
    /// `Authorization` or `Cookie` header).
    pub fn raw(value: &str) -> Self {
        Token {
            header: value.into(),
        }
    }

    /// The `Authorization` header value. The one place the secret leaves.
    pub fn header_value(&self) -> &str {
        &self.header
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let t = Token::bearer("s3cr3t-value");
        assert_eq!(t.header_value(), "Bearer s3cr3t-value");
        assert!(!format!("{t:?} {t} {:#?}", Some(&t)).contains("s3cr3t"));
        assert_eq!(t, Token::bearer("s3cr3t-value"));
        assert_ne!(t, Token::bearer("other"));
    }
}
