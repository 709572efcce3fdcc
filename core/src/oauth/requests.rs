//! Clients, the token, registration and authorization requests as data,
//! and parsers for their answers.

use super::*;

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
    /// A signed JWT assertion (`private_key_jwt`, RFC 7523), made for one
    /// token request.
    Assertion(Token),
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "None",
            ClientAuth::Basic(_) => "Basic(<redacted>)",
            ClientAuth::Post(_) => "Post(<redacted>)",
            ClientAuth::Assertion(_) => "Assertion(<redacted>)",
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

pub(super) fn token_request(
    endpoint: &str,
    client: &Client,
    pairs: Vec<(&str, &str)>,
) -> HttpRequest {
    let mut headers = vec![
        (
            Text::Static("Content-Type"),
            Text::Static("application/x-www-form-urlencoded"),
        ),
        (Text::Static("Accept"), Text::Static("application/json")),
    ];
    let mut pairs: Vec<(&str, &str)> = pairs;
    match &client.auth {
        // No client at all (a workload proving itself with its assertion
        // alone): nothing to name.
        ClientAuth::None if client.id.is_empty() => {}
        ClientAuth::None => pairs.push(("client_id", &client.id)),
        ClientAuth::Assertion(jwt) => {
            pairs.push(("client_id", &client.id));
            pairs.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            pairs.push(("client_assertion", jwt.header_value()));
        }
        ClientAuth::Post(s) => {
            pairs.push(("client_id", &client.id));
            pairs.push(("client_secret", s.header_value()));
        }
        ClientAuth::Basic(s) => {
            // The id in the body too (RFC 6749 §3.2.1 allows it): some
            // servers (the Python SDK's) require it whatever the method.
            pairs.push(("client_id", &client.id));
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
    let pairs = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.header_value()),
    ];
    grant_request(token_endpoint, client, pairs, resource, scope)
}

/// A token request for a grant: its own `pairs`, then the `resource`
/// indicator (RFC 8707) and the scope when given.
fn grant_request<'a>(
    token_endpoint: &str,
    client: &Client,
    mut pairs: Vec<(&'a str, &'a str)>,
    resource: Option<&'a str>,
    scope: Option<&'a str>,
) -> HttpRequest {
    if let Some(r) = resource {
        pairs.push(("resource", r));
    }
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    token_request(token_endpoint, client, pairs)
}

/// The client credentials grant (OAuth 2.1 §4.2, MCP's SEP-1046): a
/// service with no person at hand gets a token for itself.
pub fn client_credentials_request(
    token_endpoint: &str,
    client: &Client,
    resource: Option<&str>,
    scope: Option<&str>,
) -> HttpRequest {
    let pairs = vec![("grant_type", "client_credentials")];
    grant_request(token_endpoint, client, pairs, resource, scope)
}

/// The grant type of a JWT bearer assertion (RFC 7523 §2.1).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The token type of an identity assertion JWT authorization grant (an
/// ID-JAG, MCP's enterprise-managed authorization).
pub const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// The JWT bearer grant (RFC 7523 §2.1): a signed assertion becomes a
/// token. A workload's identity token (workload identity federation, MCP's
/// SEP-1933), or an ID-JAG from the enterprise's identity provider.
pub fn jwt_bearer_request(
    token_endpoint: &str,
    client: &Client,
    assertion: &str,
    resource: Option<&str>,
    scope: Option<&str>,
) -> HttpRequest {
    let pairs = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    grant_request(token_endpoint, client, pairs, resource, scope)
}

/// Token exchange (RFC 8693) at the enterprise's identity provider: the
/// person's ID token becomes an ID-JAG for the authorization server
/// `audience` (its issuer) and the MCP server `resource`.
pub fn id_jag_request(
    idp_token_endpoint: &str,
    idp_client: &Client,
    id_token: &str,
    audience: &str,
    resource: &str,
    scope: Option<&str>,
) -> HttpRequest {
    let mut pairs = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("requested_token_type", ID_JAG),
        ("audience", audience),
        ("resource", resource),
        ("subject_token", id_token),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token",
        ),
    ];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    token_request(idp_token_endpoint, idp_client, pairs)
}

/// A token endpoint's answer as a JSON object: its OAuth error when it
/// gives one (or failed), else the object.
fn token_endpoint_answer(status: u16, body: &[u8]) -> Result<Map<String, Value>, OAuthError> {
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
    Ok(m)
}

/// The identity provider's answer to [`id_jag_request`]: the ID-JAG (RFC
/// 8693 §2.2.1; its `token_type` is `N_A`, it is no access token).
pub fn parse_id_jag_response(status: u16, body: &[u8]) -> Result<Token, OAuthError> {
    let m = token_endpoint_answer(status, body)?;
    match string(&m, "issued_token_type") {
        Some(t) if t == ID_JAG => {}
        other => {
            return Err(OAuthError::Malformed(format!(
                "the identity provider issued {:?}, not an ID-JAG",
                other.map(|t| crate::error::sanitize(&t))
            )))
        }
    }
    string(&m, "access_token")
        .filter(|t| !t.is_empty())
        .map(|t| Token::raw(&t))
        .ok_or_else(|| OAuthError::Malformed("no `access_token`".into()))
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
    // OpenID Connect Registration §2, SEP-837: a client on the user's
    // machine redirecting to a loopback listener is a native one.
    m.insert("application_type".into(), "native".into());
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

pub(super) fn server_error(m: &Map<String, Value>, status: u16) -> OAuthError {
    match string(m, "error") {
        Some(error) => OAuthError::Server {
            error: crate::error::sanitize(&error),
            description: string(m, "error_description").map(|d| crate::error::sanitize(&d)),
        },
        None => OAuthError::Malformed(format!("HTTP {status} without an OAuth error")),
    }
}

/// Parses a token endpoint's answer (RFC 6749 §5). `Bearer` tokens, and
/// `DPoP` tokens (RFC 9449 §5), which become [`Token::dpop`] credentials.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<TokenResponse, OAuthError> {
    let m = token_endpoint_answer(status, body)?;
    let access = string(&m, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::Malformed("no `access_token`".into()))?;
    let access_token = match string(&m, "token_type") {
        Some(t) if t.eq_ignore_ascii_case("bearer") => Token::bearer(&access),
        Some(t) if t.eq_ignore_ascii_case("dpop") => Token::dpop(&access),
        other => {
            return Err(OAuthError::Malformed(format!(
                "token type {:?} is neither Bearer nor DPoP",
                other.map(|t| crate::error::sanitize(&t))
            )))
        }
    };
    Ok(TokenResponse {
        access_token,
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
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    if url_safe {
        URL_SAFE_NO_PAD.encode(bytes)
    } else {
        STANDARD.encode(bytes)
    }
}
