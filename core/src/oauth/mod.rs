//! OAuth 2.1 for MCP, sans-IO: what a 401 says (`WWW-Authenticate`, RFC
//! 6750 / RFC 9728), where to discover the protected resource and its
//! authorization server (RFC 9728, RFC 8414, OpenID discovery, in the MCP
//! specification's order), the token, registration and authorization
//! requests as data, and parsers for their answers. An adapter performs the
//! requests; nothing here touches a socket, a clock or a random source
//! (PKCE verifiers and states come in as arguments).
//!
//! Modules by concern: `challenge` (what a 401 or 403 says), `url`
//! (encodings, endpoint policy, discovery URLs), `metadata` (protected
//! resource and authorization server metadata), `requests` (clients, the
//! token, registration and authorization requests, their answers),
//! `dpop` (sender-constrained tokens: proofs as data, nonces), and
//! `flow` (the whole authorization flow as a state machine over those).

mod challenge;
mod dpop;
mod flow;
mod metadata;
mod requests;
mod url;

pub use challenge::*;
pub use dpop::*;
pub use flow::*;
pub use metadata::*;
pub use requests::*;
pub use url::*;

use crate::http::{HttpRequest, Method, Text};
use crate::token::Token;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Why an OAuth step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The server answered with an OAuth error (`invalid_grant`...).
    #[error("{error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Server {
        /// The error code.
        error: String,
        /// Its description, cut.
        description: Option<String>,
    },
    /// The answer was not what the protocol says.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// An endpoint is not acceptable (HTTP to a non-loopback host, another
    /// origin than allowed...).
    #[error("refused endpoint: {0}")]
    Endpoint(String),
    /// The authorization server does not support PKCE with S256.
    #[error("the authorization server does not support PKCE S256")]
    NoPkce,
    /// The redirect did not carry our state, or carried another issuer.
    #[error("authorization redirect rejected: {0}")]
    Redirect(String),
    /// Discovery found nothing usable.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The protected resource metadata names another resource than the
    /// server asked (RFC 9728 §3.3): its authorization servers are not
    /// this server's.
    #[error("protected resource metadata is for {resource}, not {server}")]
    ResourceMismatch {
        /// The `resource` the metadata names (redacted).
        resource: String,
        /// The server's URL (redacted).
        server: String,
    },
    /// The authorization server metadata names another issuer than the
    /// one it was fetched for (RFC 8414 §3.3): a mix-up.
    #[error("authorization server metadata names issuer {got}, fetched for {expected}")]
    IssuerMismatch {
        /// The issuer discovery asked about (redacted).
        expected: String,
        /// The issuer the metadata names (redacted).
        got: String,
    },
}

impl OAuthError {
    /// Whether a person must authorize again: the grant or the client is
    /// no longer accepted.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, OAuthError::Server { error, .. }
            if matches!(error.as_str(), "invalid_grant" | "invalid_client" | "unauthorized_client"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_authenticate_several_challenges_and_quoting() {
        let h = r#"Basic realm="x", Bearer error="insufficient_scope", scope="files:read files:write", resource_metadata="https://a.example/.well-known/oauth-protected-resource/mcp", error_description="needs \"more\", sorry""#;
        let cs = parse_www_authenticate(h);
        assert_eq!(cs.len(), 2, "{cs:?}");
        assert_eq!(cs[0].param("realm"), Some("x"));
        let b = BearerChallenge::from_header(h).unwrap();
        assert_eq!(b.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(b.scope.as_deref(), Some("files:read files:write"));
        assert_eq!(
            b.resource_metadata.as_deref(),
            Some("https://a.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            b.error_description.as_deref(),
            Some(r#"needs "more", sorry"#)
        );
        // Token params, a token68 scheme, a bare scheme, garbage.
        let cs = parse_www_authenticate("Bearer error=invalid_token, Negotiate abc==, Bearer");
        assert_eq!(cs.len(), 3, "{cs:?}");
        assert_eq!(cs[0].param("error"), Some("invalid_token"));
        for junk in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer =",
            "Bearer a=\"unterminated",
            "é=ü",
        ] {
            let _ = parse_www_authenticate(junk);
        }
        assert_eq!(BearerChallenge::from_header("Basic realm=x"), None);
    }

    #[test]
    fn discovery_order() {
        assert_eq!(
            protected_resource_metadata_urls("https://Api.Example/v1/mcp", None).unwrap(),
            vec![
                "https://api.example/.well-known/oauth-protected-resource/v1/mcp",
                "https://api.example/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            protected_resource_metadata_urls(
                "http://127.0.0.1:8000/",
                Some("http://127.0.0.1:8000/prm")
            )
            .unwrap(),
            vec![
                "http://127.0.0.1:8000/prm",
                "http://127.0.0.1:8000/.well-known/oauth-protected-resource"
            ]
        );
        assert_eq!(
            authorization_server_metadata_urls("https://auth.example/tenant1").unwrap(),
            vec![
                "https://auth.example/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example/.well-known/openid-configuration/tenant1",
                "https://auth.example/tenant1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            authorization_server_metadata_urls("https://auth.example").unwrap(),
            vec![
                "https://auth.example/.well-known/oauth-authorization-server",
                "https://auth.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            canonical_resource("HTTPS://Mcp.Example:443/mcp#x").unwrap(),
            "https://mcp.example/mcp"
        );
        assert_eq!(
            canonical_resource("http://127.0.0.1:8000/").unwrap(),
            "http://127.0.0.1:8000"
        );
    }

    #[test]
    fn origins_and_endpoints() {
        assert!(same_origin(
            "https://a.example/mcp",
            "https://a.example:443/token"
        ));
        assert!(!same_origin(
            "https://a.example/mcp",
            "http://a.example/mcp"
        ));
        assert!(!same_origin(
            "https://a.example/mcp",
            "https://b.example/mcp"
        ));
        assert!(check_endpoint("http://127.0.0.1:9/token").is_ok());
        assert!(check_endpoint("http://localhost/token").is_ok());
        assert!(check_endpoint("http://auth.example/token").is_err());
        assert!(check_endpoint("https://auth.example/token").is_ok());
        assert!(Url::parse("ftp://x").is_err());
        assert_eq!(
            Url::parse("http://[::1]:8080/a").unwrap().origin(),
            "http://[::1]:8080"
        );
    }

    #[test]
    fn token_responses() {
        let ok = br#"{"access_token":"at-1","token_type":"bearer","expires_in":"60","refresh_token":"rt-2","scope":"a"}"#;
        let t = parse_token_response(200, ok).unwrap();
        assert_eq!(t.access_token.header_value(), "Bearer at-1");
        assert_eq!(
            t.refresh_token.as_ref().map(Token::header_value),
            Some("rt-2")
        );
        assert_eq!(t.expires_in, Some(60));
        assert!(!format!("{t:?}").contains("at-1"));
        let no_rotation = br#"{"access_token":"at-1","token_type":"Bearer"}"#;
        assert_eq!(
            parse_token_response(200, no_rotation)
                .unwrap()
                .refresh_token,
            None
        );
        let refused = br#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#;
        let e = parse_token_response(400, refused).unwrap_err();
        assert!(e.needs_reauth(), "{e}");
        let e = parse_token_response(500, b"<html>oops</html>").unwrap_err();
        assert!(!e.needs_reauth());
        assert!(parse_token_response(200, br#"{"access_token":"x","token_type":"mac"}"#).is_err());
        assert!(parse_token_response(200, b"[]").is_err());
    }

    #[test]
    fn requests_as_data() {
        let client = Client::with_secret("c 1", Some("s3cret"), &["client_secret_basic".into()]);
        let r = refresh_request(
            "https://as.example/token",
            &client,
            &Token::raw("rt/1"),
            Some("https://mcp.example/mcp"),
            None,
        );
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(body, "grant_type=refresh_token&refresh_token=rt%2F1&resource=https%3A%2F%2Fmcp.example%2Fmcp&client_id=c%201");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Basic {}", base64(b"c%201:s3cret", false)).as_str())
        );
        assert!(!format!("{r:?}").contains("s3cret"));
        let public = Client::with_secret("pub", None, &[]);
        let r = refresh_request(
            "https://as.example/token",
            &public,
            &Token::raw("rt"),
            None,
            Some("a b"),
        );
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "grant_type=refresh_token&refresh_token=rt&scope=a%20b&client_id=pub"
        );
        let url = AuthorizationRequest {
            endpoint: "https://as.example/authorize",
            client_id: "pub",
            redirect_uri: "http://127.0.0.1:5000/callback",
            code_challenge: "abc",
            state: "st",
            scope: Some("mcp"),
            resource: Some("https://mcp.example/mcp"),
        }
        .url();
        assert!(url.starts_with("https://as.example/authorize?response_type=code&client_id=pub&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback"));
        assert!(url.contains("code_challenge_method=S256"));
        assert_eq!(
            parse_redirect(
                "code=xyz&state=st&iss=https%3A%2F%2Fas.example",
                "st",
                "https://as.example",
                true
            )
            .unwrap(),
            "xyz"
        );
        assert!(parse_redirect("code=xyz&state=other", "st", "i", false).is_err());
        assert!(parse_redirect("code=xyz&state=st&iss=evil", "st", "i", false).is_err());
        assert!(parse_redirect("code=xyz&state=st", "st", "i", true).is_err());
        assert!(parse_redirect("error=access_denied&state=st", "st", "i", false).is_err());
    }

    #[test]
    fn encodings() {
        assert_eq!(base64(b"", true), "");
        assert_eq!(base64(b"f", false), "Zg==");
        assert_eq!(base64(b"fo", false), "Zm8=");
        assert_eq!(base64(b"foo", false), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff], true), "-_8");
        assert_eq!(percent_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(percent_decode(&percent_encode("ü &=/")), "ü &=/");
        assert_eq!(
            parse_query("?a=1&b=x%3Dy&&c"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x=y".into()),
                ("c".into(), String::new())
            ]
        );
    }

    #[test]
    fn metadata() {
        let prm = br#"{"resource":"http://127.0.0.1:1/mcp","authorization_servers":["http://127.0.0.1:1"],"scopes_supported":["mcp"]}"#;
        let md = ResourceMetadata::parse(prm).unwrap();
        assert_eq!(md.authorization_servers, vec!["http://127.0.0.1:1"]);
        assert!(
            ResourceMetadata::parse(br#"{"resource":"x","authorization_servers":[]}"#).is_err()
        );
        let asm = br#"{"issuer":"http://127.0.0.1:1","authorization_endpoint":"http://127.0.0.1:1/authorize","token_endpoint":"http://127.0.0.1:1/token","code_challenge_methods_supported":["S256"]}"#;
        let md = ServerMetadata::parse(asm).unwrap();
        assert!(md.require_pkce().is_ok());
        let insecure = br#"{"issuer":"http://as.example","authorization_endpoint":"http://as.example/authorize","token_endpoint":"http://as.example/token"}"#;
        assert!(matches!(
            ServerMetadata::parse(insecure),
            Err(OAuthError::Endpoint(_))
        ));
        let no_pkce = br#"{"issuer":"https://as.example","authorization_endpoint":"https://as.example/a","token_endpoint":"https://as.example/t"}"#;
        assert_eq!(
            ServerMetadata::parse(no_pkce).unwrap().require_pkce(),
            Err(OAuthError::NoPkce)
        );
    }
}
