//! Protected resource metadata (RFC 9728) and authorization server
//! metadata (RFC 8414, OpenID discovery).

use super::*;

pub(super) fn json_object(body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OAuthError::Malformed("not a JSON object".into())),
        Err(e) => Err(OAuthError::Malformed(crate::error::sanitize(
            &e.to_string(),
        ))),
    }
}

pub(super) fn string(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

pub(super) fn strings(m: &Map<String, Value>, k: &str) -> Vec<String> {
    m.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Protected resource metadata (RFC 9728).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    /// The resource identifier.
    pub resource: String,
    /// Authorization servers that issue tokens for it.
    pub authorization_servers: Vec<String>,
    /// Scopes it understands.
    pub scopes_supported: Vec<String>,
}

impl ResourceMetadata {
    /// Parses the metadata document.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let m = json_object(body)?;
        let md = ResourceMetadata {
            resource: string(&m, "resource")
                .ok_or_else(|| OAuthError::Malformed("no `resource`".into()))?,
            authorization_servers: strings(&m, "authorization_servers"),
            scopes_supported: strings(&m, "scopes_supported"),
        };
        if md.authorization_servers.is_empty() {
            return Err(OAuthError::Discovery(
                "no authorization server listed".into(),
            ));
        }
        Ok(md)
    }
}

/// Authorization server metadata (RFC 8414 / OpenID discovery).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// Where a person authorizes.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens become tokens.
    pub token_endpoint: String,
    /// Dynamic client registration (RFC 7591), if offered.
    pub registration_endpoint: Option<String>,
    /// PKCE methods; MCP requires `S256`.
    pub code_challenge_methods_supported: Vec<String>,
    /// Client authentication methods at the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Scopes it issues.
    pub scopes_supported: Vec<String>,
    /// Whether an HTTPS URL may serve as client id (client ID metadata
    /// documents).
    pub client_id_metadata_document_supported: bool,
    /// Whether the redirect carries `iss` (RFC 9207).
    pub authorization_response_iss_parameter_supported: bool,
    /// The algorithms it takes DPoP proofs signed with (RFC 9449 §5.1).
    pub dpop_signing_alg_values_supported: Vec<String>,
}

impl ServerMetadata {
    /// Parses the metadata document and checks its endpoints.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let m = json_object(body)?;
        let need =
            |k: &str| string(&m, k).ok_or_else(|| OAuthError::Malformed(format!("no `{k}`")));
        let md = ServerMetadata {
            issuer: need("issuer")?,
            authorization_endpoint: need("authorization_endpoint")?,
            token_endpoint: need("token_endpoint")?,
            registration_endpoint: string(&m, "registration_endpoint"),
            code_challenge_methods_supported: strings(&m, "code_challenge_methods_supported"),
            token_endpoint_auth_methods_supported: strings(
                &m,
                "token_endpoint_auth_methods_supported",
            ),
            scopes_supported: strings(&m, "scopes_supported"),
            client_id_metadata_document_supported: m
                .get("client_id_metadata_document_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            authorization_response_iss_parameter_supported: m
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            dpop_signing_alg_values_supported: strings(&m, "dpop_signing_alg_values_supported"),
        };
        check_endpoint(&md.authorization_endpoint)?;
        check_endpoint(&md.token_endpoint)?;
        if let Some(r) = &md.registration_endpoint {
            check_endpoint(r)?;
        }
        Ok(md)
    }

    /// Refuses a server without PKCE S256 (the MCP specification requires
    /// it; a server that does not list methods is refused too).
    pub fn require_pkce(&self) -> Result<(), OAuthError> {
        if self
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
        {
            Ok(())
        } else {
            Err(OAuthError::NoPkce)
        }
    }
}
