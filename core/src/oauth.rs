//! OAuth 2.1 for MCP, sans-IO: what a 401 says (`WWW-Authenticate`, RFC
//! 6750 / RFC 9728), where to discover the protected resource and its
//! authorization server (RFC 9728, RFC 8414, OpenID discovery, in the MCP
//! specification's order), the token, registration and authorization
//! requests as data, and parsers for their answers. An adapter performs the
//! requests; nothing here touches a socket, a clock or a random source
//! (PKCE verifiers and states come in as arguments).

use crate::http::{HttpRequest, Method, Text};
use crate::token::Token;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme (`Bearer`, `Basic`...), as sent.
    pub scheme: String,
    /// Its `name=value` parameters (names lowercased, quoted values unquoted).
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a Bearer challenge tells a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// `invalid_token`, `insufficient_scope`, `invalid_request`...
    pub error: Option<String>,
    /// The server's explanation.
    pub error_description: Option<String>,
    /// Scopes the request needs (space-separated).
    pub scope: Option<String>,
    /// Where the protected resource metadata is (RFC 9728).
    pub resource_metadata: Option<String>,
}

impl BearerChallenge {
    /// The Bearer challenge of a `WWW-Authenticate` header, if there is one.
    pub fn from_header(header: &str) -> Option<Self> {
        let c = parse_www_authenticate(header)
            .into_iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))?;
        let get = |n: &str| c.param(n).map(str::to_owned);
        Some(BearerChallenge {
            error: get("error"),
            error_description: get("error_description"),
            scope: get("scope"),
            resource_metadata: get("resource_metadata"),
        })
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges (RFC 9110
/// §11.6.1): several challenges separated by commas, parameters as tokens
/// or quoted strings with backslash escapes. Malformed parts are skipped,
/// never a panic.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/=".contains(&c);
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return out;
        }
        // A token: either a new scheme, or a parameter name of the current one.
        let start = i;
        while i < b.len() && is_tchar(b[i]) && b[i] != b'=' {
            i += 1;
        }
        if start == i {
            i += 1; // a stray character
            continue;
        }
        let word = &header[start..i];
        let mut j = i;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        let is_param = j < b.len() && b[j] == b'=' && !out.is_empty() && {
            // `token68` values end in '=' too; a parameter has a value after it.
            let mut k = j + 1;
            while k < b.len() && b[k] == b'=' {
                k += 1;
            }
            k == j + 1
        };
        if !is_param {
            // A new challenge; an optional token68 may follow, which we skip.
            out.push(Challenge {
                scheme: word.to_owned(),
                params: Vec::new(),
            });
            let mut k = i;
            while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                k += 1;
            }
            let t68 = k;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b"-._~+/".contains(&b[k])) {
                k += 1;
            }
            let chars = k > t68;
            while k < b.len() && b[k] == b'=' {
                k += 1;
            }
            while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                k += 1;
            }
            if chars && (k == b.len() || b[k] == b',') {
                i = k;
            }
            continue;
        }
        i = j + 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1; // the closing quote (or the end)
            v
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
            header[s..i].to_owned()
        };
        if let Some(c) = out.last_mut() {
            c.params.push((word.to_ascii_lowercase(), value));
        }
    }
}

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
}

impl OAuthError {
    /// Whether a person must authorize again: the grant or the client is
    /// no longer accepted.
    pub fn needs_reauth(&self) -> bool {
        matches!(self, OAuthError::Server { error, .. }
            if matches!(error.as_str(), "invalid_grant" | "invalid_client" | "unauthorized_client"))
    }
}

/// Percent-encodes for a query or form value (RFC 3986 unreserved kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded query component (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The pairs of a query string.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The parts of an absolute http(s) URL that OAuth reasons about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`, lowercase.
    pub scheme: String,
    /// The host, lowercase, without brackets.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// The path, `/` when empty, without query or fragment.
    pub path: String,
}

impl Url {
    /// Parses an absolute http(s) URL.
    pub fn parse(url: &str) -> Result<Url, OAuthError> {
        let bad = || OAuthError::Endpoint(format!("not an absolute http(s) URL: {url:?}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let path = rest[end..].split(['?', '#']).next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h.split_once(']').ok_or_else(bad)?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => default_port,
        };
        if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }

    /// `scheme://host:port`, the origin a token belongs to.
    pub fn origin(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}", self.scheme, host, self.port)
    }

    /// Whether the host is a loopback address (or `localhost`).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host.starts_with("127.")
            || self.host == "::1"
            || self.host.ends_with(".localhost")
    }
}

/// Whether two URLs share an origin (scheme, host, port).
pub fn same_origin(a: &str, b: &str) -> bool {
    matches!((Url::parse(a), Url::parse(b)), (Ok(a), Ok(b)) if a.origin() == b.origin())
}

/// Refuses an authorization or token endpoint a credential must not go
/// to: anything but HTTPS, except on loopback.
pub fn check_endpoint(url: &str) -> Result<(), OAuthError> {
    let u = Url::parse(url)?;
    if u.scheme == "https" || u.is_loopback() {
        Ok(())
    } else {
        Err(OAuthError::Endpoint(format!(
            "{} must use HTTPS",
            u.origin()
        )))
    }
}

/// The canonical resource identifier of an MCP server (RFC 8707): the URL
/// without fragment or query, scheme and host lowercase, no trailing slash
/// on an empty path.
pub fn canonical_resource(server_url: &str) -> Result<String, OAuthError> {
    let u = Url::parse(server_url)?;
    let default = matches!((u.scheme.as_str(), u.port), ("http", 80) | ("https", 443));
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let authority = if default {
        host
    } else {
        format!("{host}:{}", u.port)
    };
    let path = if u.path == "/" { "" } else { u.path.as_str() };
    Ok(format!("{}://{}{}", u.scheme, authority, path))
}

fn origin_and_path(url: &str) -> Result<(String, String), OAuthError> {
    let u = Url::parse(url)?;
    let canonical = canonical_resource(url)?;
    let origin =
        canonical[..canonical.len() - if u.path == "/" { 0 } else { u.path.len() }].to_owned();
    let path = if u.path == "/" {
        String::new()
    } else {
        u.path.trim_end_matches('/').to_owned()
    };
    Ok((origin, path))
}

/// Where to look for the protected resource metadata of `server_url`, in
/// order: the `resource_metadata` of the 401, then the path-specific
/// well-known URI, then the root one (RFC 9728 §3, MCP 2025-11-25).
pub fn protected_resource_metadata_urls(
    server_url: &str,
    resource_metadata: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let (origin, path) = origin_and_path(server_url)?;
    let mut urls: Vec<String> = resource_metadata.map(str::to_owned).into_iter().collect();
    if !path.is_empty() {
        urls.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    urls.dedup();
    Ok(urls)
}

/// Where to look for an authorization server's metadata, in the MCP
/// specification's order: OAuth (RFC 8414) then OpenID, path-inserted
/// forms first for an issuer with a path.
pub fn authorization_server_metadata_urls(issuer: &str) -> Result<Vec<String>, OAuthError> {
    let (origin, path) = origin_and_path(issuer)?;
    Ok(if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    })
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OAuthError::Malformed("not a JSON object".into())),
        Err(e) => Err(OAuthError::Malformed(crate::error::sanitize(
            &e.to_string(),
        ))),
    }
}

fn string(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn strings(m: &Map<String, Value>, k: &str) -> Vec<String> {
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

/// How the client authenticates at the token endpoint.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client: `client_id` in the body.
    None,
    /// HTTP Basic with the client secret (`client_secret_basic`).
    Basic(Token),
    /// The secret in the body (`client_secret_post`).
    Post(Token),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "None",
            ClientAuth::Basic(_) => "Basic(<redacted>)",
            ClientAuth::Post(_) => "Post(<redacted>)",
        })
    }
}

/// A registered (or pre-configured) OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client id.
    pub id: String,
    /// How it authenticates.
    pub auth: ClientAuth,
}

impl Client {
    /// A client secret and the server's supported methods → the method to
    /// use: basic unless only post is offered.
    pub fn with_secret(id: &str, secret: Option<&str>, methods: &[String]) -> Client {
        let auth = match secret {
            None => ClientAuth::None,
            Some(s)
                if methods.iter().any(|m| m == "client_secret_post")
                    && !methods.iter().any(|m| m == "client_secret_basic") =>
            {
                ClientAuth::Post(Token::raw(s))
            }
            Some(s) => ClientAuth::Basic(Token::raw(s)),
        };
        Client {
            id: id.to_owned(),
            auth,
        }
    }
}

/// A GET for a metadata document.
pub fn metadata_request(url: &str) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url: Arc::from(url),
        headers: vec![
            (Text::Static("Accept"), Text::Static("application/json")),
            (
                Text::Static("MCP-Protocol-Version"),
                Text::Static(crate::session::LATEST_LEGACY_VERSION),
            ),
        ],
        body: Vec::new(),
    }
}

fn token_request(endpoint: &str, client: &Client, pairs: Vec<(&str, &str)>) -> HttpRequest {
    let mut headers = vec![
        (
            Text::Static("Content-Type"),
            Text::Static("application/x-www-form-urlencoded"),
        ),
        (Text::Static("Accept"), Text::Static("application/json")),
    ];
    let mut pairs: Vec<(&str, &str)> = pairs;
    match &client.auth {
        ClientAuth::None => pairs.push(("client_id", &client.id)),
        ClientAuth::Post(s) => {
            pairs.push(("client_id", &client.id));
            pairs.push(("client_secret", s.header_value()));
        }
        ClientAuth::Basic(s) => {
            // RFC 6749 §2.3.1: both parts form-encoded before base64.
            let pair = format!(
                "{}:{}",
                percent_encode(&client.id),
                percent_encode(s.header_value())
            );
            let value = format!("Basic {}", base64(pair.as_bytes(), false));
            headers.push((
                Text::Static("Authorization"),
                Text::Secret(Token::raw(&value)),
            ));
        }
    }
    let body = form(&pairs);
    HttpRequest {
        method: Method::Post,
        url: Arc::from(endpoint),
        headers,
        body: body.into_bytes(),
    }
}

/// The refresh request (RFC 6749 §6), with the `resource` indicator (RFC
/// 8707) and the scope when given.
pub fn refresh_request(
    token_endpoint: &str,
    client: &Client,
    refresh_token: &Token,
    resource: Option<&str>,
    scope: Option<&str>,
) -> HttpRequest {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.header_value()),
    ];
    if let Some(r) = resource {
        pairs.push(("resource", r));
    }
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    token_request(token_endpoint, client, pairs)
}

/// The authorization-code exchange with the PKCE verifier.
pub fn code_request(
    token_endpoint: &str,
    client: &Client,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
    resource: Option<&str>,
) -> HttpRequest {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", redirect_uri),
    ];
    if let Some(r) = resource {
        pairs.push(("resource", r));
    }
    token_request(token_endpoint, client, pairs)
}

/// Dynamic client registration (RFC 7591) of a public client for
/// `redirect_uri`.
pub fn registration_request(
    endpoint: &str,
    client_name: &str,
    redirect_uri: &str,
    scope: Option<&str>,
) -> HttpRequest {
    let mut m = Map::new();
    m.insert("client_name".into(), client_name.into());
    m.insert("redirect_uris".into(), Value::from(vec![redirect_uri]));
    m.insert(
        "grant_types".into(),
        Value::from(vec!["authorization_code", "refresh_token"]),
    );
    m.insert("response_types".into(), Value::from(vec!["code"]));
    m.insert("token_endpoint_auth_method".into(), "none".into());
    if let Some(s) = scope {
        m.insert("scope".into(), s.into());
    }
    HttpRequest {
        method: Method::Post,
        url: Arc::from(endpoint),
        headers: vec![
            (
                Text::Static("Content-Type"),
                Text::Static("application/json"),
            ),
            (Text::Static("Accept"), Text::Static("application/json")),
        ],
        body: Value::Object(m).to_string().into_bytes(),
    }
}

/// Parses a registration answer into a client.
pub fn parse_registration(status: u16, body: &[u8]) -> Result<Client, OAuthError> {
    let m = json_object(body)?;
    if !(200..300).contains(&status) {
        return Err(server_error(&m, status));
    }
    let id =
        string(&m, "client_id").ok_or_else(|| OAuthError::Malformed("no `client_id`".into()))?;
    let methods = string(&m, "token_endpoint_auth_method")
        .into_iter()
        .collect::<Vec<_>>();
    Ok(Client::with_secret(
        &id,
        string(&m, "client_secret").as_deref(),
        &methods,
    ))
}

/// Everything the authorization URL carries.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    /// The authorization endpoint.
    pub endpoint: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// Where the code comes back.
    pub redirect_uri: &'a str,
    /// `BASE64URL(SHA256(verifier))`.
    pub code_challenge: &'a str,
    /// An unguessable value checked on the way back.
    pub state: &'a str,
    /// The scopes asked for.
    pub scope: Option<&'a str>,
    /// The resource indicator.
    pub resource: Option<&'a str>,
}

impl AuthorizationRequest<'_> {
    /// The URL a person's browser opens.
    pub fn url(&self) -> String {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", "S256"),
            ("state", self.state),
        ];
        if let Some(s) = self.scope {
            pairs.push(("scope", s));
        }
        if let Some(r) = self.resource {
            pairs.push(("resource", r));
        }
        let sep = if self.endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}", self.endpoint, form(&pairs))
    }
}

/// Reads the redirect's query: the code, once `state` matches and `iss`
/// (when present, or when the server promised it) is the issuer.
pub fn parse_redirect(
    query: &str,
    state: &str,
    issuer: &str,
    iss_required: bool,
) -> Result<String, OAuthError> {
    let q = parse_query(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("state") != Some(state) {
        return Err(OAuthError::Redirect("state mismatch".into()));
    }
    match get("iss") {
        Some(iss) if iss != issuer => {
            return Err(OAuthError::Redirect(format!(
                "issuer {iss:?} is not {issuer:?}"
            )))
        }
        None if iss_required => return Err(OAuthError::Redirect("no `iss`".into())),
        _ => {}
    }
    if let Some(error) = get("error") {
        return Err(OAuthError::Server {
            error: crate::error::sanitize(error),
            description: get("error_description").map(crate::error::sanitize),
        });
    }
    get("code")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| OAuthError::Redirect("no code".into()))
}

/// A token endpoint's answer. `Debug` never shows the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: Token,
    /// A new refresh token, when the server rotated it (keep the old one
    /// when absent).
    pub refresh_token: Option<Token>,
    /// Seconds the access token lives, if said.
    pub expires_in: Option<u64>,
    /// The scopes granted, if said.
    pub scope: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn server_error(m: &Map<String, Value>, status: u16) -> OAuthError {
    match string(m, "error") {
        Some(error) => OAuthError::Server {
            error: crate::error::sanitize(&error),
            description: string(m, "error_description").map(|d| crate::error::sanitize(&d)),
        },
        None => OAuthError::Malformed(format!("HTTP {status} without an OAuth error")),
    }
}

/// Parses a token endpoint's answer (RFC 6749 §5). Only `Bearer` tokens
/// are accepted.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, OAuthError> {
    let m = match json_object(body) {
        Ok(m) => m,
        Err(_) if !(200..300).contains(&status) => {
            return Err(OAuthError::Malformed(format!("HTTP {status}, not JSON")))
        }
        Err(e) => return Err(e),
    };
    if !(200..300).contains(&status) || m.contains_key("error") {
        return Err(server_error(&m, status));
    }
    let access = string(&m, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::Malformed("no `access_token`".into()))?;
    match string(&m, "token_type") {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        other => {
            return Err(OAuthError::Malformed(format!(
                "token type {:?} is not Bearer",
                other.map(|t| crate::error::sanitize(&t))
            )))
        }
    }
    Ok(TokenResponse {
        access_token: Token::bearer(&access),
        refresh_token: string(&m, "refresh_token")
            .filter(|t| !t.is_empty())
            .map(|t| Token::raw(&t)),
        expires_in: m.get("expires_in").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }),
        scope: string(&m, "scope"),
    })
}

/// Base64 (RFC 4648), URL-safe without padding for PKCE, standard with
/// padding for HTTP Basic.
pub fn base64(bytes: &[u8], url_safe: bool) -> String {
    let table: &[u8; 64] = if url_safe {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = match chunk.len() {
            1 => (chunk[0] as u32) << 16,
            2 => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8,
            _ => (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32,
        };
        for i in 0..=chunk.len() {
            out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url_safe {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
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
        assert_eq!(body, "grant_type=refresh_token&refresh_token=rt%2F1&resource=https%3A%2F%2Fmcp.example%2Fmcp");
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
