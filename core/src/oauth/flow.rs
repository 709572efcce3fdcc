//! The authorization flow as a state machine: protected resource metadata,
//! authorization server metadata, the client (pre-registered, a metadata
//! document, or registered now), the authorization URL, the redirect, the
//! code exchange. It asks for fetches and for a person to visit a URL, and
//! takes their answers; the caller performs them (any HTTP, any loopback
//! listener) and supplies what the core cannot make: the redirect URI it
//! listens on, and the PKCE verifier, its S256 challenge and the state,
//! from a random source.
//!
//! ```
//! use mcp_recovery_core::oauth::{Flow, FlowParams, FlowStep};
//!
//! let params = FlowParams::new("https://mcp.example.com/mcp", "http://127.0.0.1:8123/callback")
//!     .pkce("a-random-verifier", "its-s256-challenge", "a-random-state");
//! let (mut flow, step) = Flow::start(params);
//! // Discovery starts with the protected resource metadata.
//! let FlowStep::Fetch(request) = step else { unreachable!() };
//! assert!(request.url.contains("/.well-known/oauth-protected-resource"));
//! // The resource has none: the flow tries the next place, then (a
//! // 2025-03-26 server) the server's own origin as authorization server.
//! let step = flow.on_response(404, b"");
//! assert!(matches!(step, FlowStep::Fetch(_)));
//! let FlowStep::Fetch(next) = flow.on_response(404, b"") else { unreachable!() };
//! assert_eq!(&*next.url, "https://mcp.example.com/.well-known/oauth-authorization-server");
//! ```

use super::*;
use crate::http::TransportFailure;

/// Makes a signed assertion (a JWT) for an audience, or says why it
/// cannot: a client assertion, a workload's identity token, a person's ID
/// token. The caller makes it (a key, a clock, a file the platform
/// rotates); the flow asks once it knows the audience.
pub type AssertionSigner = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// How the flow gets its tokens.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Grant {
    /// A person authorizes in a browser: the authorization code grant with
    /// PKCE.
    #[default]
    AuthorizationCode,
    /// The client credentials grant (OAuth 2.1 §4.2, MCP's SEP-1046): the
    /// pre-registered client gets a token for itself; no browser.
    ClientCredentials,
    /// The JWT bearer grant (RFC 7523) with a workload's own identity token
    /// (workload identity federation, SEP-1933), asked for the
    /// authorization server's issuer as audience; no browser. A refused
    /// assertion ends the flow: it is not sent again, nor another grant
    /// tried.
    JwtBearer(Arc<AssertionSigner>),
    /// Enterprise-managed authorization (SEP-990): the person's ID token
    /// from the enterprise identity provider is exchanged there (RFC 8693)
    /// for an ID-JAG naming this authorization server and MCP server,
    /// which the client then presents in the JWT bearer grant; no browser.
    Enterprise(Arc<Enterprise>),
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grant::AuthorizationCode => "AuthorizationCode",
            Grant::ClientCredentials => "ClientCredentials",
            Grant::JwtBearer(_) => "JwtBearer",
            Grant::Enterprise(_) => "Enterprise",
        })
    }
}

impl Grant {
    /// Whether the grant gets tokens with nobody at hand (everything but
    /// the authorization code): the client may run it again whenever the
    /// tokens run out.
    pub fn unattended(&self) -> bool {
        !matches!(self, Grant::AuthorizationCode)
    }
}

/// The enterprise identity provider of [`Grant::Enterprise`].
#[non_exhaustive]
pub struct Enterprise {
    /// The identity provider's token endpoint (RFC 8693 token exchange).
    pub token_endpoint: String,
    /// This client's id at the identity provider.
    pub client_id: String,
    /// Its secret there, if it has one.
    pub client_secret: Option<String>,
    /// The person's ID token from the identity provider's single sign-on,
    /// asked for each exchange (called with the authorization server's
    /// issuer, the ID-JAG's audience): an application refreshes it as its
    /// SSO session goes on.
    pub id_token: Arc<AssertionSigner>,
}

impl Enterprise {
    /// The identity provider at `token_endpoint`, where this client is
    /// `client_id`, with the ID token from `id_token`.
    pub fn new(
        token_endpoint: &str,
        client_id: &str,
        id_token: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        Enterprise {
            token_endpoint: token_endpoint.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: None,
            id_token: Arc::new(id_token),
        }
    }
}

/// What a flow starts from. `Debug` does not show the client secret, the
/// verifier or the state.
#[derive(Clone)]
#[non_exhaustive]
pub struct FlowParams {
    /// The MCP server's URL.
    pub server_url: String,
    /// The last 401 or 403 `WWW-Authenticate`, if at hand: where to look
    /// (`resource_metadata`) and what scope the server asked for.
    pub challenge: Option<String>,
    /// The scope to ask for. Without `step_up`, the challenge's or the
    /// resource's are the fallback; with it, they are added to this one.
    pub scope: Option<String>,
    /// A re-authorization for more scope (a 403 `insufficient_scope`).
    pub step_up: bool,
    /// A pre-registered client id, if any.
    pub client_id: Option<String>,
    /// The pre-registered client's secret, if it has one.
    pub client_secret: Option<String>,
    /// An HTTPS URL of the client's metadata document, used as its id where
    /// the authorization server takes one.
    pub client_metadata_url: Option<String>,
    /// The name a dynamically registered client gets.
    pub client_name: String,
    /// Where the authorization server sends the browser back.
    pub redirect_uri: String,
    /// The PKCE verifier (random, kept secret until the code exchange).
    pub verifier: String,
    /// Its S256 challenge: base64url(sha256(verifier)).
    pub code_challenge: String,
    /// The state the redirect must carry back (random).
    pub state: String,
    /// Signs a client assertion (`private_key_jwt`) for an audience (the
    /// authorization server's issuer): the client authenticates with it
    /// instead of a secret. The caller makes it (it needs a clock, a key
    /// and randomness); the flow asks once it knows the audience.
    pub client_assertion: Option<Arc<AssertionSigner>>,
    /// How tokens are granted: a person's authorization (the default) or
    /// one of the grants with nobody at hand.
    pub grant: Grant,
    /// The client id and secret above were registered dynamically, earlier,
    /// with the authorization server whose token endpoint this is, for
    /// this flow's redirect URI: they are reused there (no new
    /// registration), and ignored in favour of a new one anywhere else (the
    /// resource moved to another authorization server).
    pub registered_for: Option<String>,
    /// The scope that earlier registration asked for: a flow asking for
    /// more (a step-up) registers anew, since the server may hold the
    /// client to it.
    pub registered_scope: Option<String>,
    /// How that registration authenticates at the token endpoint
    /// (`client_secret_basic`, `client_secret_post`, `none`): the method it
    /// registered with, whatever else the server offers now.
    pub registered_auth: Option<String>,
    /// Sender-constrained tokens (DPoP, RFC 9449): every token request
    /// carries a proof from this prover (sent again once with the
    /// server's nonce when it asks for one), so the tokens are bound to
    /// its key.
    pub dpop: Option<Arc<DpopProver>>,
}

impl fmt::Debug for FlowParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowParams")
            .field("server_url", &self.server_url)
            .field("scope", &self.scope)
            .field("step_up", &self.step_up)
            .field("client_id", &self.client_id)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("redirect_uri", &self.redirect_uri)
            .field("grant", &self.grant)
            .field("dpop", &self.dpop.is_some())
            .finish_non_exhaustive()
    }
}

impl FlowParams {
    /// A flow for the server at `server_url`, redirected to `redirect_uri`;
    /// set the PKCE values with [`FlowParams::pkce`].
    pub fn new(server_url: &str, redirect_uri: &str) -> Self {
        FlowParams {
            server_url: server_url.to_owned(),
            challenge: None,
            scope: None,
            step_up: false,
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            client_name: "mcp-recovery".into(),
            redirect_uri: redirect_uri.to_owned(),
            verifier: String::new(),
            code_challenge: String::new(),
            state: String::new(),
            client_assertion: None,
            grant: Grant::AuthorizationCode,
            registered_for: None,
            registered_scope: None,
            registered_auth: None,
            dpop: None,
        }
    }

    /// The PKCE verifier, its S256 challenge, and the state.
    pub fn pkce(mut self, verifier: &str, code_challenge: &str, state: &str) -> Self {
        self.verifier = verifier.to_owned();
        self.code_challenge = code_challenge.to_owned();
        self.state = state.to_owned();
        self
    }
}

/// What the flow needs next.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlowStep {
    /// Send this request (no redirects followed) and answer with
    /// [`Flow::on_response`], or [`Flow::on_failure`] if it failed.
    Fetch(HttpRequest),
    /// A person's browser must visit this URL; answer with the query of
    /// the redirect to the redirect URI ([`Flow::on_redirect`]).
    Open(String),
    /// Authorized.
    Done(Box<Authorized>),
    /// The flow failed; it is over.
    Failed(FlowError),
}

/// Why a flow failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// An OAuth step failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// A request could not be completed.
    #[error("transport: {}", .0.message)]
    Transport(TransportFailure),
}

/// The outcome of a flow: the tokens, and what refreshing them needs.
#[derive(Debug)]
#[non_exhaustive]
pub struct Authorized {
    /// The token endpoint's answer.
    pub tokens: TokenResponse,
    /// The scope asked for.
    pub scope: Option<String>,
    /// The token endpoint, for refreshes.
    pub token_endpoint: String,
    /// The client the tokens were issued to.
    pub client: Client,
    /// The canonical resource (the MCP server) they are for: what stored
    /// tokens are bound to.
    pub resource: String,
    /// The `resource` parameter the tokens were asked with: the protected
    /// resource metadata's own `resource`, exactly as published (RFC 8707),
    /// to be sent again with every refresh.
    pub resource_indicator: String,
    /// Whether the client was registered dynamically (now, or reused from
    /// an earlier registration): it can be reused for the next flow to the
    /// same authorization server with the same redirect URI.
    pub registered: bool,
    /// The scope the registration asked for (what a reuse may ask).
    pub registered_scope: Option<String>,
}

#[derive(Debug)]
enum Stage {
    /// Trying the protected resource metadata URLs in order.
    Resource {
        urls: Vec<String>,
        next: usize,
    },
    /// Trying the authorization server metadata URLs in order.
    Server {
        prm: ResourceMetadata,
        urls: Vec<String>,
        next: usize,
    },
    /// Registering a client (RFC 7591).
    Register {
        asm: Box<ServerMetadata>,
        scope: Option<String>,
    },
    /// Waiting for the browser to come back.
    Redirect {
        asm: Box<ServerMetadata>,
        client: Client,
        scope: Option<String>,
    },
    /// Exchanging the person's ID token for an ID-JAG at the enterprise
    /// identity provider.
    Exchange {
        asm: Box<ServerMetadata>,
        client: Client,
        scope: Option<String>,
    },
    /// At the token endpoint (the code, a grant with nobody at hand).
    Token {
        asm: Box<ServerMetadata>,
        client: Client,
        scope: Option<String>,
        /// The request, for sending again with a DPoP nonce.
        request: HttpRequest,
        /// Whether it was already sent again so.
        nonce_tried: bool,
    },
    Over,
}

/// One authorization flow. Every input returns the next step; a flow that
/// is over answers every input with [`FlowStep::Failed`].
#[derive(Debug)]
pub struct Flow {
    params: FlowParams,
    bearer: BearerChallenge,
    /// The canonical resource of the server.
    resource: String,
    /// The `resource` parameter: the metadata's, once it is checked.
    indicator: String,
    /// No protected resource metadata: the 2025-03-26 fallback to the
    /// server's origin as its authorization server.
    legacy: bool,
    /// Whether every discovery URL tried so far answered 404: only then
    /// is there "no metadata" (a 5xx, a reset or a broken document is a
    /// server in trouble, never a reason to send credentials elsewhere).
    only_404: bool,
    stage: Stage,
    /// The last discovery failure, reported when every URL failed.
    last: OAuthError,
    /// Whether the client is a dynamically registered one, and the scope
    /// it was registered for.
    registered: bool,
    registered_scope: Option<String>,
}

impl Flow {
    /// Starts a flow: its first step is a discovery fetch.
    pub fn start(params: FlowParams) -> (Flow, FlowStep) {
        let bearer = params
            .challenge
            .as_deref()
            .and_then(BearerChallenge::from_header)
            .unwrap_or_default();
        let mut flow = Flow {
            bearer,
            resource: String::new(),
            indicator: String::new(),
            legacy: false,
            only_404: true,
            stage: Stage::Over,
            last: OAuthError::Discovery("nothing to try".into()),
            registered: false,
            registered_scope: None,
            params,
        };
        let first = canonical_resource(&flow.params.server_url).and_then(|resource| {
            // Discovery URLs go under the same endpoint policy as the
            // others: a `resource_metadata` over plain HTTP to another host
            // is not followed.
            let mut urls = protected_resource_metadata_urls(
                &flow.params.server_url,
                flow.bearer.resource_metadata.as_deref(),
            )?;
            let refused = urls.iter().find_map(|u| check_endpoint(u).err());
            urls.retain(|u| check_endpoint(u).is_ok());
            match (urls.is_empty(), refused) {
                (true, Some(e)) => Err(e),
                _ => Ok((resource, urls)),
            }
        });
        let step = match first {
            Ok((resource, urls)) => {
                flow.indicator = resource.clone();
                flow.resource = resource;
                flow.stage = Stage::Resource { urls, next: 0 };
                flow.discover()
            }
            Err(e) => flow.fail(e.into()),
        };
        (flow, step)
    }

    /// The answer to the last [`FlowStep::Fetch`]: its status and body.
    /// Headers matter only with DPoP: see [`Flow::on_answer`].
    pub fn on_response(&mut self, status: u16, body: &[u8]) -> FlowStep {
        self.on_answer(status, &[], body)
    }

    /// The answer to the last [`FlowStep::Fetch`]: its status, headers and
    /// body. With DPoP, a token endpoint's `use_dpop_nonce` (its nonce in
    /// a header) gets the token request sent once more with that nonce.
    pub fn on_answer(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> FlowStep {
        // A nonce to prove with, when the tokens are to be bound and the
        // server asked for one.
        let nonce = self
            .params
            .dpop
            .as_ref()
            .and_then(|_| nonce_challenge(status, headers, body));
        match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Resource { urls, next } => {
                self.only_404 &= status == 404;
                match Self::found(&urls, next, status, body, ResourceMetadata::parse) {
                    Ok(prm) => self.find_server(prm),
                    Err(e) => {
                        self.last = e;
                        self.stage = Stage::Resource { urls, next };
                        self.discover()
                    }
                }
            }
            Stage::Server { prm, urls, next } => {
                self.only_404 &= status == 404;
                match Self::found(&urls, next, status, body, ServerMetadata::parse) {
                    Ok(asm) => {
                        let expected = prm.authorization_servers.first().map_or("", String::as_str);
                        if !same_identifier(&asm.issuer, expected) {
                            // RFC 8414 §3.3: never another server's
                            // endpoints, whatever else it says.
                            return self.fail(
                                OAuthError::IssuerMismatch {
                                    expected: crate::error::redact_url(expected),
                                    got: crate::error::redact_url(&asm.issuer),
                                }
                                .into(),
                            );
                        }
                        self.choose_client(prm, asm)
                    }
                    Err(e) => {
                        self.last = e;
                        self.stage = Stage::Server { prm, urls, next };
                        self.discover()
                    }
                }
            }
            Stage::Register { asm, scope } => match parse_registration(status, body) {
                Ok(client) => {
                    self.registered = true;
                    self.send_to_browser(asm, client, scope)
                }
                Err(e) => self.fail(e.into()),
            },
            Stage::Exchange { asm, client, scope } => match parse_id_jag_response(status, body) {
                Ok(id_jag) => {
                    let request = jwt_bearer_request(
                        &asm.token_endpoint,
                        &client,
                        id_jag.header_value(),
                        Some(&self.indicator),
                        scope.as_deref(),
                    );
                    self.token(asm, client, scope, request)
                }
                Err(e) => self.fail(e.into()),
            },
            Stage::Token {
                asm,
                client,
                scope,
                request,
                nonce_tried: false,
            } if nonce.is_some() => match self.prove(request.clone(), nonce.as_deref()) {
                Ok(again) => {
                    self.stage = Stage::Token {
                        asm,
                        client,
                        scope,
                        request,
                        nonce_tried: true,
                    };
                    FlowStep::Fetch(again)
                }
                Err(e) => self.fail(e.into()),
            },
            Stage::Token {
                asm, client, scope, ..
            } => match parse_token_response(status, body) {
                Ok(tokens) => {
                    self.stage = Stage::Over;
                    FlowStep::Done(Box::new(Authorized {
                        tokens,
                        scope,
                        token_endpoint: asm.token_endpoint,
                        client,
                        resource: std::mem::take(&mut self.resource),
                        resource_indicator: std::mem::take(&mut self.indicator),
                        registered: self.registered,
                        registered_scope: self.registered_scope.take(),
                    }))
                }
                Err(e) => self.fail(e.into()),
            },
            // A fetch answer while waiting for the browser: out of order.
            Stage::Redirect { .. } => {
                self.fail(OAuthError::Malformed("no fetch was asked for".into()).into())
            }
            Stage::Over => self.over(),
        }
    }

    /// The last [`FlowStep::Fetch`] failed in transport. A discovery URL
    /// that cannot be reached is skipped; any other failure ends the flow.
    pub fn on_failure(&mut self, failure: TransportFailure) -> FlowStep {
        match &self.stage {
            Stage::Resource { urls, next } | Stage::Server { urls, next, .. } => {
                self.only_404 = false;
                let url = urls.get(next.wrapping_sub(1)).map_or("", String::as_str);
                self.last = OAuthError::Discovery(format!("{url}: {}", failure.message));
                self.discover()
            }
            Stage::Over => self.over(),
            _ => self.fail(FlowError::Transport(failure)),
        }
    }

    /// The query of the browser's redirect to the redirect URI, after a
    /// [`FlowStep::Open`]: the code, checked against the state and the
    /// issuer (RFC 9207).
    pub fn on_redirect(&mut self, query: &str) -> FlowStep {
        match std::mem::replace(&mut self.stage, Stage::Over) {
            Stage::Redirect { asm, client, scope } => {
                let code = parse_redirect(
                    query,
                    &self.params.state,
                    &asm.issuer,
                    asm.authorization_response_iss_parameter_supported,
                );
                match code {
                    Ok(code) => {
                        let request = code_request(
                            &asm.token_endpoint,
                            &client,
                            &code,
                            &self.params.verifier,
                            &self.params.redirect_uri,
                            Some(&self.indicator),
                        );
                        self.token(asm, client, scope, request)
                    }
                    Err(e) => self.fail(e.into()),
                }
            }
            Stage::Over => self.over(),
            _ => self.fail(OAuthError::Redirect("not waiting for a redirect".into()).into()),
        }
    }

    /// The metadata at `urls[next - 1]`, if its answer parses.
    fn found<T>(
        urls: &[String],
        next: usize,
        status: u16,
        body: &[u8],
        parse: impl Fn(&[u8]) -> Result<T, OAuthError>,
    ) -> Result<T, OAuthError> {
        let url = urls.get(next.wrapping_sub(1)).map_or("", String::as_str);
        match status {
            200 => parse(body),
            _ => Err(OAuthError::Discovery(format!("{url}: HTTP {status}"))),
        }
    }

    /// The next discovery fetch, or, once every URL was tried, the
    /// 2025-03-26 fallback, or the failure.
    fn discover(&mut self) -> FlowStep {
        let exhausted = match &mut self.stage {
            Stage::Resource { urls, next } | Stage::Server { urls, next, .. } => {
                match urls.get(*next) {
                    Some(url) => {
                        *next += 1;
                        return FlowStep::Fetch(metadata_request(url));
                    }
                    None => std::mem::replace(&mut self.stage, Stage::Over),
                }
            }
            _ => return self.over(),
        };
        match exhausted {
            // No protected resource metadata (a 2025-03-26 server): the
            // server's own origin is its authorization server.
            Stage::Resource { .. } if !self.legacy && self.only_404 => self.legacy_server(),
            // Nor authorization server metadata there: the 2025-03-26
            // default endpoints of that origin.
            Stage::Server { prm, .. } if self.legacy && self.only_404 => {
                match self.default_endpoints() {
                    Ok(asm) => self.choose_client(prm, asm),
                    Err(e) => self.fail(e.into()),
                }
            }
            _ => {
                let last = self.last.clone();
                self.fail(last.into())
            }
        }
    }

    /// The MCP server's origin, as an issuer.
    fn origin(&self) -> Result<String, OAuthError> {
        origin_and_path(&self.params.server_url).map(|(origin, _)| origin)
    }

    /// MCP 2025-03-26: a server without protected resource metadata is its
    /// own authorization server; its metadata is looked for at its origin.
    fn legacy_server(&mut self) -> FlowStep {
        let urls = self
            .origin()
            .and_then(|o| check_endpoint(&o).map(|()| o))
            .and_then(|o| Ok((authorization_server_metadata_urls(&o)?, o)));
        match urls {
            Ok((urls, origin)) => {
                self.legacy = true;
                let prm = ResourceMetadata {
                    resource: self.resource.clone(),
                    authorization_servers: vec![origin],
                    scopes_supported: Vec::new(),
                };
                self.stage = Stage::Server { prm, urls, next: 0 };
                self.discover()
            }
            Err(e) => self.fail(e.into()),
        }
    }

    /// MCP 2025-03-26's default endpoints when the origin publishes no
    /// metadata: `/authorize`, `/token`, `/register` (PKCE S256 required
    /// by that revision).
    fn default_endpoints(&self) -> Result<ServerMetadata, OAuthError> {
        let origin = self.origin()?;
        let md = ServerMetadata {
            issuer: origin.clone(),
            authorization_endpoint: format!("{origin}/authorize"),
            token_endpoint: format!("{origin}/token"),
            registration_endpoint: Some(format!("{origin}/register")),
            code_challenge_methods_supported: vec!["S256".into()],
            ..ServerMetadata::default()
        };
        check_endpoint(&md.authorization_endpoint)?;
        check_endpoint(&md.token_endpoint)?;
        Ok(md)
    }

    fn find_server(&mut self, prm: ResourceMetadata) -> FlowStep {
        // RFC 9728 §3.3: the metadata must be this server's. The MCP
        // server may sit under the resource it names (`https://h` for
        // `https://h/mcp`), never beside or above another one.
        if !resource_covers(&prm.resource, &self.params.server_url) {
            let e = OAuthError::ResourceMismatch {
                resource: crate::error::redact_url(&prm.resource),
                server: crate::error::redact_url(&self.params.server_url),
            };
            return self.fail(e.into());
        }
        self.indicator = prm.resource.clone();
        let urls = match prm.authorization_servers.first() {
            Some(issuer) => {
                check_endpoint(issuer).and_then(|()| authorization_server_metadata_urls(issuer))
            }
            None => Err(OAuthError::Discovery("no authorization server".into())),
        };
        match urls {
            Ok(urls) => {
                self.last = OAuthError::Discovery("nothing to try".into());
                self.stage = Stage::Server { prm, urls, next: 0 };
                self.discover()
            }
            Err(e) => self.fail(e.into()),
        }
    }

    /// The scope to ask for, then the client: pre-registered, a metadata
    /// document where the server takes one, or registered now.
    fn choose_client(&mut self, prm: ResourceMetadata, asm: ServerMetadata) -> FlowStep {
        if let Err(e) = self.dpop_usable(&asm) {
            return self.fail(e.into());
        }
        if self.params.grant.unattended() {
            return self.unattended(prm, asm);
        }
        if let Err(e) = asm.require_pkce() {
            return self.fail(e.into());
        }
        let resource_scopes =
            (!prm.scopes_supported.is_empty()).then(|| prm.scopes_supported.join(" "));
        let offered = self.bearer.scope.clone().or(resource_scopes);
        let scope = if self.params.step_up {
            union(self.params.scope.as_deref(), offered.as_deref())
        } else {
            self.params.scope.clone().or(offered)
        };
        let asm = Box::new(asm);
        let methods = &asm.token_endpoint_auth_methods_supported;
        // A registration is only good at the server it was made with.
        // A registration is only good at the server it was made with, and
        // for the scope it asked for.
        let registered_here = self.params.registered_for.as_deref().map(|at| {
            at == asm.token_endpoint
                && within(scope.as_deref(), self.params.registered_scope.as_deref())
        });
        if let (Some(id), None | Some(true)) = (&self.params.client_id, registered_here) {
            let registered: Vec<String> = self.params.registered_auth.iter().cloned().collect();
            let methods = match registered_here {
                Some(true) if !registered.is_empty() => &registered,
                _ => methods,
            };
            let client = Client::with_secret(id, self.params.client_secret.as_deref(), methods);
            self.registered = registered_here.is_some();
            self.registered_scope
                .clone_from(&self.params.registered_scope);
            return self.send_to_browser(asm, client, scope);
        }
        if let (Some(url), true) = (
            &self.params.client_metadata_url,
            asm.client_id_metadata_document_supported,
        ) {
            let client = Client::with_secret(url, None, methods);
            return self.send_to_browser(asm, client, scope);
        }
        let Some(endpoint) = asm.registration_endpoint.as_deref() else {
            let e = OAuthError::Discovery("no client id and no registration endpoint".into());
            return self.fail(e.into());
        };
        let request = registration_request(
            endpoint,
            &self.params.client_name,
            &self.params.redirect_uri,
            scope.as_deref(),
        );
        self.registered_scope.clone_from(&scope);
        self.stage = Stage::Register { asm, scope };
        FlowStep::Fetch(request)
    }

    /// A grant with nobody at hand: the client credentials grant (the
    /// pre-registered client asks for a token of its own), a workload's
    /// JWT bearer assertion, or the enterprise identity provider's ID-JAG.
    fn unattended(&mut self, prm: ResourceMetadata, asm: ServerMetadata) -> FlowStep {
        let id = match (&self.params.client_id, &self.params.grant) {
            (Some(id), _) => id.clone(),
            // A workload may be known by its assertion alone.
            (None, Grant::JwtBearer(_)) => String::new(),
            (None, _) => {
                let e = OAuthError::Discovery("this grant needs a pre-registered client id".into());
                return self.fail(e.into());
            }
        };
        let offered =
            self.bearer.scope.clone().or_else(|| {
                (!prm.scopes_supported.is_empty()).then(|| prm.scopes_supported.join(" "))
            });
        // A step-up adds what the server asked for to what is configured.
        let scope = if self.params.step_up {
            union(self.params.scope.as_deref(), offered.as_deref())
        } else {
            self.params.scope.clone().or(offered)
        };
        let methods = &asm.token_endpoint_auth_methods_supported;
        let client = match &self.params.client_assertion {
            Some(sign) => match sign(&asm.issuer) {
                Ok(jwt) => Client {
                    id: id.clone(),
                    auth: ClientAuth::Assertion(Token::raw(&jwt)),
                },
                Err(why) => {
                    let e = OAuthError::Malformed(format!("client assertion: {why}"));
                    return self.fail(e.into());
                }
            },
            None => Client::with_secret(&id, self.params.client_secret.as_deref(), methods),
        };
        let asm = Box::new(asm);
        let request = match self.params.grant.clone() {
            Grant::JwtBearer(assertion) => match assertion(&asm.issuer).and_then(|jwt| {
                // The workload's token is a bearer credential wherever its
                // audience accepts it: only to the server it names.
                match jwt_audiences(&jwt)
                    .iter()
                    .any(|a| same_identifier(a, &asm.issuer))
                {
                    true => Ok(jwt),
                    false => Err(format!(
                        "its audience is not the authorization server {}",
                        crate::error::redact_url(&asm.issuer)
                    )),
                }
            }) {
                Ok(jwt) => jwt_bearer_request(
                    &asm.token_endpoint,
                    &client,
                    &jwt,
                    Some(&self.indicator),
                    scope.as_deref(),
                ),
                Err(why) => {
                    let e = OAuthError::Malformed(format!("workload assertion: {why}"));
                    return self.fail(e.into());
                }
            },
            Grant::Enterprise(idp) => return self.exchange(&idp, asm, client, scope),
            _ => client_credentials_request(
                &asm.token_endpoint,
                &client,
                Some(&self.indicator),
                scope.as_deref(),
            ),
        };
        self.token(asm, client, scope, request)
    }

    /// Enterprise-managed authorization, first leg: the person's ID token
    /// for an ID-JAG at the identity provider (its endpoint under the same
    /// policy as every other).
    fn exchange(
        &mut self,
        idp: &Enterprise,
        asm: Box<ServerMetadata>,
        client: Client,
        scope: Option<String>,
    ) -> FlowStep {
        if let Err(e) = check_endpoint(&idp.token_endpoint) {
            return self.fail(e.into());
        }
        let id_token = match (idp.id_token)(&asm.issuer) {
            Ok(t) => t,
            Err(why) => {
                let e = OAuthError::Malformed(format!("ID token: {why}"));
                return self.fail(e.into());
            }
        };
        let idp_client = Client::with_secret(&idp.client_id, idp.client_secret.as_deref(), &[]);
        let request = id_jag_request(
            &idp.token_endpoint,
            &idp_client,
            &id_token,
            &asm.issuer,
            &self.indicator,
            scope.as_deref(),
        );
        self.stage = Stage::Exchange { asm, client, scope };
        FlowStep::Fetch(request)
    }

    /// Sends `request` to the token endpoint (with a DPoP proof when the
    /// tokens are to be bound) and waits for its answer.
    fn token(
        &mut self,
        asm: Box<ServerMetadata>,
        client: Client,
        scope: Option<String>,
        request: HttpRequest,
    ) -> FlowStep {
        match self.prove(request.clone(), None) {
            Ok(sent) => {
                self.stage = Stage::Token {
                    asm,
                    client,
                    scope,
                    request,
                    nonce_tried: false,
                };
                FlowStep::Fetch(sent)
            }
            Err(e) => self.fail(e.into()),
        }
    }

    /// `request` with a DPoP proof when DPoP is on (with `nonce` when the
    /// server gave one); as it is otherwise.
    fn prove(&self, request: HttpRequest, nonce: Option<&str>) -> Result<HttpRequest, OAuthError> {
        let Some(prover) = &self.params.dpop else {
            return Ok(request);
        };
        let mut what = ProofRequest::new(request.method.as_str(), &request.url);
        what.nonce = nonce;
        let proof =
            prover(&what).map_err(|why| OAuthError::Malformed(format!("DPoP proof: {why}")))?;
        Ok(with_proof(request, proof))
    }

    /// DPoP needs an authorization server that takes ES256 proofs, when it
    /// lists the algorithms it takes (one that lists none may still bind
    /// the token, or ignore the proof and issue a Bearer token).
    fn dpop_usable(&self, asm: &ServerMetadata) -> Result<(), OAuthError> {
        let algs = &asm.dpop_signing_alg_values_supported;
        if self.params.dpop.is_none() || algs.is_empty() || algs.iter().any(|a| a == "ES256") {
            return Ok(());
        }
        Err(OAuthError::Discovery(format!(
            "the authorization server takes DPoP proofs signed with {}, not ES256",
            crate::error::sanitize(&algs.join(", "))
        )))
    }

    fn send_to_browser(
        &mut self,
        asm: Box<ServerMetadata>,
        client: Client,
        scope: Option<String>,
    ) -> FlowStep {
        let url = AuthorizationRequest {
            endpoint: &asm.authorization_endpoint,
            client_id: &client.id,
            redirect_uri: &self.params.redirect_uri,
            code_challenge: &self.params.code_challenge,
            state: &self.params.state,
            scope: scope.as_deref(),
            resource: Some(&self.indicator),
        }
        .url();
        self.stage = Stage::Redirect { asm, client, scope };
        FlowStep::Open(url)
    }

    fn fail(&mut self, e: FlowError) -> FlowStep {
        self.stage = Stage::Over;
        FlowStep::Failed(e)
    }

    fn over(&mut self) -> FlowStep {
        self.fail(OAuthError::Malformed("the flow is over".into()).into())
    }
}

/// The `aud` of a compact JWT's claims (a string or an array), read without
/// checking its signature (the token is ours to send, not to trust); none
/// for anything that is not a JWT.
fn jwt_audiences(jwt: &str) -> Vec<String> {
    use base64::Engine as _;
    let claims = jwt
        .split('.')
        .nth(1)
        .and_then(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
        })
        .and_then(|c| serde_json::from_slice::<Value>(&c).ok());
    match claims.as_ref().and_then(|c| c.get("aud")) {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether every scope of `asked` is in `granted` (nothing asked: yes;
/// something asked of a registration that named none: no).
fn within(asked: Option<&str>, granted: Option<&str>) -> bool {
    let granted: Vec<&str> = granted.unwrap_or("").split_whitespace().collect();
    asked
        .unwrap_or("")
        .split_whitespace()
        .all(|s| granted.contains(&s))
}

/// Space-separated scopes of `a` and `b`, each once, in order.
pub fn union(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for s in a.into_iter().chain(b).flat_map(str::split_whitespace) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// The query of a request head to the loopback redirect URI
/// (`GET /callback?...`), or `None` for anything else (a favicon...).
pub fn redirect_query(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    let target = head
        .lines()
        .next()?
        .strip_prefix("GET ")?
        .split(' ')
        .next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path == "/callback").then(|| query.to_owned())
}

/// What the loopback listener answers to a request head.
pub fn redirect_reply(head: &[u8]) -> Vec<u8> {
    let (status, body) = match redirect_query(head) {
        Some(_) => (
            "200 OK",
            "Authorization received. You can close this window.",
        ),
        None => ("404 Not Found", "Not found"),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The most of a request head the loopback listener reads.
pub const MAX_REDIRECT_HEAD: usize = 16 * 1024;

/// Whether the loopback listener has read enough of a request head: up to
/// its blank line, or up to [`MAX_REDIRECT_HEAD`].
pub fn redirect_head_done(head: &[u8]) -> bool {
    head.len() >= MAX_REDIRECT_HEAD || head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Whether `resource` (protected resource metadata's) covers the MCP
/// server at `server_url`: same scheme, host and port, and the server's
/// path at or under the resource's, on a segment boundary.
pub fn resource_covers(resource: &str, server_url: &str) -> bool {
    let (Ok(r), Ok(s)) = (Url::parse(resource), Url::parse(server_url)) else {
        return false;
    };
    if r.origin() != s.origin() {
        return false;
    }
    let rp = r.path.trim_end_matches('/');
    let sp = s.path.trim_end_matches('/');
    rp.is_empty()
        || sp == rp
        || sp
            .strip_prefix(rp)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether two issuer identifiers are the same: exactly, but for one
/// trailing `/` (a pathless issuer serialized either way).
fn same_identifier(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}
