//! OAuth for the clients: a token store that never loses a rotated refresh
//! token, the refresh on 401, and the authorization flow (discovery,
//! registration, PKCE, a loopback redirect). Every request is built and
//! every answer parsed by the core's sans-IO `oauth` module; the adapter
//! supplies the HTTP as a [`Fetch`].

use crate::{RefreshError, TokenSource};
use mcp_recovery_core::oauth::{
    self, AuthorizationRequest, BearerChallenge, Client, ClientAuth, OAuthError, ResourceMetadata,
    ServerMetadata, TokenResponse,
};
use mcp_recovery_core::{HttpRequest, Token, TokenGeneration, TransportFailure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An HTTP response read whole.
pub struct Fetched {
    /// The status.
    pub status: u16,
    /// The headers (names lowercase).
    pub headers: Vec<(String, String)>,
    /// The body, up to the adapter's limit.
    pub body: Vec<u8>,
}

impl Fetched {
    /// The value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Performs one request without following redirects (a credential never
/// follows one). Supplied by the adapter.
pub trait Fetch: Send + Sync {
    /// Sends `request`, reads the whole answer.
    fn fetch(&self, request: &HttpRequest) -> Result<Fetched, TransportFailure>;
}

/// What is stored between runs: the tokens, and what is needed to refresh
/// them without discovery. `Debug` shows no secret.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if any.
    pub refresh_token: Option<String>,
    /// When the access token expires (seconds since the Unix epoch).
    pub expires_at: Option<u64>,
    /// The scopes granted.
    pub scope: Option<String>,
    /// The token endpoint that issued them.
    pub token_endpoint: String,
    /// The client they were issued to.
    pub client_id: String,
    /// That client's secret, if it has one.
    pub client_secret: Option<String>,
    /// The resource (MCP server) they are for.
    pub resource: String,
}

impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Where tokens live between runs.
pub trait TokenStore: Send + Sync {
    /// The stored tokens, if any.
    fn load(&self) -> Option<StoredTokens>;
    /// Replaces them. Must be durable before it returns: a rotated refresh
    /// token exists nowhere else.
    fn save(&self, tokens: &StoredTokens) -> std::io::Result<()>;
}

/// Tokens in memory (lost with the process).
#[derive(Default)]
pub struct MemoryTokenStore(Mutex<Option<StoredTokens>>);

impl TokenStore for MemoryTokenStore {
    fn load(&self) -> Option<StoredTokens> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn save(&self, tokens: &StoredTokens) -> std::io::Result<()> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(tokens.clone());
        Ok(())
    }
}

/// Tokens in a JSON file, readable by the owner only (0600), replaced
/// atomically (write to a temporary file, sync, rename), so a crash right
/// after a refresh leaves the old file or the new one, never half of one.
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A store at `path` (its directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore { path: path.into() }
    }
}

impl TokenStore for FileTokenStore {
    fn load(&self) -> Option<StoredTokens> {
        let bytes = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, tokens: &StoredTokens) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(&serde_json::to_vec(tokens).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a crash too.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// How to authorize against one MCP server.
#[non_exhaustive]
pub struct OAuthConfig {
    /// A pre-registered client id; without one, the client registers
    /// itself (client ID metadata document when offered, else RFC 7591).
    pub client_id: Option<String>,
    /// The pre-registered client's secret, if it has one.
    pub client_secret: Option<String>,
    /// An HTTPS URL of this client's metadata document, used as client id
    /// where the server supports that.
    pub client_metadata_url: Option<String>,
    /// The name to register under.
    pub client_name: String,
    /// Scopes to ask for; default: what the 401 or the resource says.
    pub scope: Option<String>,
    /// Loopback port for the redirect (0: any free port).
    pub redirect_port: u16,
    /// How long the flow waits for the browser to come back (default 5 min).
    pub redirect_timeout: Duration,
    /// Where tokens live.
    pub store: Arc<dyn TokenStore>,
    /// Shows a person the authorization URL when the client must authorize
    /// on its own: a 403 `insufficient_scope` (step-up) or a refresh the
    /// server refused. Without one, those calls end in `NeedsReauth` and
    /// the application calls the client's `authorize`.
    pub opener: Option<Arc<Opener>>,
}

/// Shows a person an authorization URL (opens a browser, prints it...). It
/// should return at once; the flow waits for the redirect.
pub type Opener = dyn Fn(&str) + Send + Sync;

impl OAuthConfig {
    /// Defaults, with tokens in `store`.
    pub fn new(store: impl TokenStore + 'static) -> Self {
        OAuthConfig {
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            client_name: "mcp-recovery".into(),
            scope: None,
            redirect_port: 0,
            redirect_timeout: Duration::from_secs(300),
            store: Arc::new(store),
            opener: None,
        }
    }

    /// Lets the client authorize on its own (step-up, refused refresh),
    /// showing the URL with `open`.
    pub fn opener(mut self, open: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.opener = Some(Arc::new(open));
        self
    }

    /// Uses a pre-registered client.
    pub fn client(mut self, id: &str, secret: Option<&str>) -> Self {
        self.client_id = Some(id.to_owned());
        self.client_secret = secret.map(str::to_owned);
        self
    }

    /// Asks for these scopes.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }
}

/// Why authorization failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// An OAuth step failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// A request could not be sent.
    #[error("transport: {}", .0.message)]
    Transport(TransportFailure),
    /// The token store failed.
    #[error("token store: {0}")]
    Store(#[from] std::io::Error),
    /// The operating system gave no random bytes for PKCE and the state.
    #[error("no randomness available: {0}")]
    Random(String),
    /// The browser did not come back in time.
    #[error("no authorization redirect within {0:?}")]
    Timeout(Duration),
}

/// OAuth for one MCP server: the refreshing [`TokenSource`] of a client and
/// its authorization flow.
pub struct OAuth {
    server_url: String,
    config: OAuthConfig,
    fetch: Arc<dyn Fetch>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_token(bytes: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; bytes];
    // No randomness means no safe PKCE verifier or state: refuse to go on.
    getrandom::fill(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(oauth::base64(&buf, true))
}

impl OAuth {
    /// OAuth for the MCP server at `server_url`, over `fetch`.
    pub fn new(server_url: &str, config: OAuthConfig, fetch: Arc<dyn Fetch>) -> Self {
        OAuth {
            server_url: server_url.to_owned(),
            config,
            fetch,
        }
    }

    fn fetch(&self, request: &HttpRequest) -> Result<Fetched, AuthError> {
        self.fetch.fetch(request).map_err(AuthError::Transport)
    }

    /// The first metadata document of `urls` that parses.
    fn discover<T>(
        &self,
        urls: &[String],
        parse: impl Fn(&[u8]) -> Result<T, OAuthError>,
    ) -> Result<T, AuthError> {
        let mut last = OAuthError::Discovery("nothing to try".into());
        for url in urls {
            match self.fetch(&oauth::metadata_request(url)) {
                Ok(r) if r.status == 200 => match parse(&r.body) {
                    Ok(md) => return Ok(md),
                    Err(e) => last = e,
                },
                Ok(r) => last = OAuthError::Discovery(format!("{url}: HTTP {}", r.status)),
                Err(AuthError::Transport(t)) => {
                    last = OAuthError::Discovery(format!("{url}: {}", t.message))
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.into())
    }

    /// Runs the whole authorization flow and stores the tokens: discovery
    /// from `challenge` (a 401's `WWW-Authenticate`, if at hand) or the
    /// well-known URIs, registration, PKCE, then `open` is called with the
    /// URL a person's browser must visit; the code comes back to a loopback
    /// listener. Returns the access token.
    pub fn authorize(
        &self,
        challenge: Option<&str>,
        open: &dyn Fn(&str),
    ) -> Result<Token, AuthError> {
        self.authorize_with(challenge, open, false)
    }

    /// The flow; with `step_up`, the scope asked for adds what the
    /// challenge (or else the resource) names to what the stored token has.
    fn authorize_with(
        &self,
        challenge: Option<&str>,
        open: &dyn Fn(&str),
        step_up: bool,
    ) -> Result<Token, AuthError> {
        let bearer = challenge
            .and_then(BearerChallenge::from_header)
            .unwrap_or_default();
        let resource = oauth::canonical_resource(&self.server_url)?;
        let prm_urls = oauth::protected_resource_metadata_urls(
            &self.server_url,
            bearer.resource_metadata.as_deref(),
        )?;
        let prm = self.discover(&prm_urls, ResourceMetadata::parse)?;
        let issuer = &prm.authorization_servers[0];
        let asm = self.discover(
            &oauth::authorization_server_metadata_urls(issuer)?,
            ServerMetadata::parse,
        )?;
        asm.require_pkce()?;
        // Scope: what was asked for, else what the 401 said, else what the
        // resource lists.
        let resource_scopes =
            (!prm.scopes_supported.is_empty()).then(|| prm.scopes_supported.join(" "));
        let scope = if step_up {
            let had = self.config.store.load().and_then(|t| t.scope);
            let had = had.or(self.config.scope.clone());
            union(had.as_deref(), bearer.scope.or(resource_scopes).as_deref())
        } else {
            self.config
                .scope
                .clone()
                .or(bearer.scope)
                .or(resource_scopes)
        };

        let listener = TcpListener::bind(("127.0.0.1", self.config.redirect_port))?;
        let redirect_uri = format!(
            "http://127.0.0.1:{}/callback",
            listener.local_addr()?.port()
        );
        let client = self.client(&asm, &redirect_uri, scope.as_deref())?;

        let verifier = random_token(32)?;
        let challenge = oauth::base64(&Sha256::digest(verifier.as_bytes()), true);
        let state = random_token(16)?;
        let url = AuthorizationRequest {
            endpoint: &asm.authorization_endpoint,
            client_id: &client.id,
            redirect_uri: &redirect_uri,
            code_challenge: &challenge,
            state: &state,
            scope: scope.as_deref(),
            resource: Some(&resource),
        }
        .url();
        open(&url);
        let query = await_redirect(&listener, self.config.redirect_timeout)?;
        let code = oauth::parse_redirect(
            &query,
            &state,
            &asm.issuer,
            asm.authorization_response_iss_parameter_supported,
        )?;
        let request = oauth::code_request(
            &asm.token_endpoint,
            &client,
            &code,
            &verifier,
            &redirect_uri,
            Some(&resource),
        );
        let answer = self.fetch(&request)?;
        let tokens = oauth::parse_token_response(answer.status, &answer.body)?;
        let secret = match &client.auth {
            ClientAuth::Basic(s) | ClientAuth::Post(s) => Some(s.header_value().to_owned()),
            _ => None,
        };
        let stored = StoredTokens {
            access_token: String::new(),
            refresh_token: None,
            expires_at: None,
            scope,
            token_endpoint: asm.token_endpoint.clone(),
            client_id: client.id.clone(),
            client_secret: secret,
            resource,
        };
        self.save(stored, &tokens)
    }

    /// The client to authorize as: pre-registered, a metadata document URL
    /// where the server takes one, or registered now.
    fn client(
        &self,
        asm: &ServerMetadata,
        redirect_uri: &str,
        scope: Option<&str>,
    ) -> Result<Client, AuthError> {
        let methods = &asm.token_endpoint_auth_methods_supported;
        if let Some(id) = &self.config.client_id {
            return Ok(Client::with_secret(
                id,
                self.config.client_secret.as_deref(),
                methods,
            ));
        }
        if let (Some(url), true) = (
            &self.config.client_metadata_url,
            asm.client_id_metadata_document_supported,
        ) {
            return Ok(Client::with_secret(url, None, methods));
        }
        let endpoint = asm.registration_endpoint.as_deref().ok_or_else(|| {
            OAuthError::Discovery("no client id and no registration endpoint".into())
        })?;
        let request =
            oauth::registration_request(endpoint, &self.config.client_name, redirect_uri, scope);
        let answer = self.fetch(&request)?;
        Ok(oauth::parse_registration(answer.status, &answer.body)?)
    }

    /// Stores a token answer over `base` (a rotated refresh token replaces
    /// the old one; an answer without one keeps it) and returns the access
    /// token. Saved before anyone uses the new tokens.
    fn save(&self, mut base: StoredTokens, answer: &TokenResponse) -> Result<Token, AuthError> {
        let access = answer.access_token.header_value();
        base.access_token = access.strip_prefix("Bearer ").unwrap_or(access).to_owned();
        if let Some(r) = &answer.refresh_token {
            base.refresh_token = Some(r.header_value().to_owned());
        }
        base.expires_at = answer.expires_in.map(|s| now_unix().saturating_add(s));
        if answer.scope.is_some() {
            base.scope = answer.scope.clone();
        }
        self.config.store.save(&base)?;
        Ok(answer.access_token.clone())
    }

    /// Refreshes the stored tokens once. `invalid_grant` and friends (or
    /// nothing to refresh) mean a person must authorize again.
    pub fn refresh_now(&self) -> Result<Token, RefreshError> {
        let stored = self
            .config
            .store
            .load()
            .ok_or_else(|| RefreshError::NeedsReauth("no stored tokens".into()))?;
        let refresh = stored
            .refresh_token
            .as_deref()
            .ok_or_else(|| RefreshError::NeedsReauth("no refresh token".into()))?;
        let client = Client::with_secret(&stored.client_id, stored.client_secret.as_deref(), &[]);
        let request = oauth::refresh_request(
            &stored.token_endpoint,
            &client,
            &Token::raw(refresh),
            Some(&stored.resource),
            None,
        );
        let answer = self
            .fetch(&request)
            .map_err(|e| RefreshError::Failed(e.to_string()))?;
        match oauth::parse_token_response(answer.status, &answer.body) {
            Ok(tokens) => self
                .save(stored, &tokens)
                .map_err(|e| RefreshError::Failed(e.to_string())),
            Err(e) if e.needs_reauth() => Err(RefreshError::NeedsReauth(e.to_string())),
            Err(e) => Err(RefreshError::Failed(e.to_string())),
        }
    }

    /// Whether the stored access token expires within `skew` (or already did).
    pub fn expires_within(&self, skew: Duration) -> bool {
        let at = self.config.store.load().and_then(|t| t.expires_at);
        at.is_some_and(|at| at <= now_unix().saturating_add(skew.as_secs()))
    }

    /// A 403 `insufficient_scope`'s `WWW-Authenticate`: the scopes to ask
    /// for on re-authorization (step-up), if it is one.
    pub fn step_up_scope(challenge: &str) -> Option<String> {
        let b = BearerChallenge::from_header(challenge)?;
        (b.error.as_deref() == Some("insufficient_scope")).then_some(b.scope?)
    }

    fn token_for_this_server(&self) -> Option<StoredTokens> {
        // Tokens are for the resource they were issued to: never sent to
        // another server, even one sharing the store.
        let resource = oauth::canonical_resource(&self.server_url).ok()?;
        self.config
            .store
            .load()
            .filter(|t| t.resource == resource && !t.access_token.is_empty())
    }
}

impl TokenSource for OAuth {
    fn token(&self) -> Option<Token> {
        self.token_for_this_server()
            .map(|t| Token::bearer(&t.access_token))
    }

    fn can_refresh(&self) -> bool {
        true
    }

    fn expires_in(&self) -> Option<Duration> {
        let at = self.token_for_this_server()?.expires_at?;
        Some(Duration::from_secs(at.saturating_sub(now_unix())))
    }

    fn refresh(
        &self,
        _generation: TokenGeneration,
        challenge: Option<&str>,
    ) -> Result<Token, RefreshError> {
        let step_up = challenge.is_some_and(insufficient);
        let outcome = if step_up {
            Err(RefreshError::NeedsReauth(
                "the token lacks a scope the server requires".into(),
            ))
        } else {
            self.refresh_now()
        };
        match (outcome, &self.config.opener) {
            (Err(RefreshError::NeedsReauth(_)), Some(open)) => self
                .authorize_with(challenge, open.as_ref(), step_up)
                .map_err(|e| RefreshError::NeedsReauth(e.to_string())),
            (outcome, _) => outcome,
        }
    }
}

/// Whether a challenge is a 403 `insufficient_scope` (with or without the
/// `scope` the server needs).
fn insufficient(challenge: &str) -> bool {
    BearerChallenge::from_header(challenge)
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

/// Space-separated scopes of `a` and `b`, each once, in order.
fn union(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for s in a.into_iter().chain(b).flat_map(str::split_whitespace) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

/// Waits for the browser's GET on the loopback listener and answers it.
fn await_redirect(listener: &TcpListener, timeout: Duration) -> Result<String, AuthError> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(query) = read_callback(stream)? {
                    return Ok(query);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(AuthError::Timeout(timeout));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads one request; the query of `GET /callback?...`, or `None` for
/// anything else (a favicon request...).
fn read_callback(mut stream: TcpStream) -> Result<Option<String>, AuthError> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let target = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    let query = target
        .strip_prefix("/callback")
        .map(|rest| rest.trim_start_matches('?').to_owned());
    let body: &[u8] = match query {
        Some(_) => b"Authorization received. You can close this window.",
        None => b"Not found",
    };
    let status = if query.is_some() {
        "200 OK"
    } else {
        "404 Not Found"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_recovery_core::FailureKind;

    /// A token endpoint that answers each request with the next canned
    /// answer, and remembers the bodies it got.
    struct Canned {
        answers: Mutex<Vec<(u16, &'static str)>>,
        bodies: Mutex<Vec<String>>,
    }

    impl Fetch for Canned {
        fn fetch(&self, request: &HttpRequest) -> Result<Fetched, TransportFailure> {
            self.bodies
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request.body).into_owned());
            let (status, body) = self.answers.lock().unwrap().pop().ok_or_else(|| {
                TransportFailure::not_sent(FailureKind::Connect, "no more answers")
            })?;
            Ok(Fetched {
                status,
                headers: vec![],
                body: body.as_bytes().to_vec(),
            })
        }
    }

    fn oauth(answers: Vec<(u16, &'static str)>) -> (OAuth, Arc<MemoryTokenStore>, Arc<Canned>) {
        let store = Arc::new(MemoryTokenStore::default());
        store
            .save(&StoredTokens {
                access_token: "a1".into(),
                refresh_token: Some("r1".into()),
                token_endpoint: "http://127.0.0.1:9/token".into(),
                client_id: "c".into(),
                resource: "http://127.0.0.1:9/mcp".into(),
                ..StoredTokens::default()
            })
            .unwrap();
        let fetch = Arc::new(Canned {
            answers: Mutex::new(answers),
            bodies: Mutex::new(vec![]),
        });
        let mut config = OAuthConfig::new(MemoryTokenStore::default());
        config.store = store.clone();
        let o = OAuth::new("http://127.0.0.1:9/mcp", config, fetch.clone());
        (o, store, fetch)
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let (o, store, fetch) = oauth(vec![(
            200,
            r#"{"access_token":"a2","token_type":"Bearer","expires_in":60}"#,
        )]);
        assert_eq!(o.token().unwrap().header_value(), "Bearer a1");
        let t = o.refresh(TokenGeneration::new(1), None).unwrap();
        assert_eq!(t.header_value(), "Bearer a2");
        let kept = store.load().unwrap();
        assert_eq!(kept.access_token, "a2");
        assert_eq!(kept.refresh_token.as_deref(), Some("r1"));
        assert!(kept.expires_at.is_some());
        let body = fetch.bodies.lock().unwrap()[0].clone();
        assert!(
            body.contains("grant_type=refresh_token&refresh_token=r1"),
            "{body}"
        );
        assert!(
            body.contains("resource=http%3A%2F%2F127.0.0.1%3A9%2Fmcp"),
            "{body}"
        );
    }

    #[test]
    fn a_refused_grant_needs_reauth_and_a_broken_endpoint_does_not() {
        let (o, _, _) = oauth(vec![(400, r#"{"error":"invalid_grant"}"#)]);
        assert!(matches!(
            o.refresh(TokenGeneration::new(1), None),
            Err(RefreshError::NeedsReauth(_))
        ));
        let (o, store, _) = oauth(vec![(502, "<html>bad gateway</html>")]);
        match o.refresh(TokenGeneration::new(1), None) {
            Err(RefreshError::Failed(m)) => assert!(!m.contains("r1"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.load().unwrap().refresh_token.as_deref(), Some("r1"));
    }

    #[test]
    fn tokens_are_only_for_the_server_they_were_issued_for() {
        let (o, store, _) = oauth(vec![]);
        let mut other = store.load().unwrap();
        other.resource = "https://elsewhere.example/mcp".into();
        store.save(&other).unwrap();
        assert!(o.token().is_none());
        assert!(!format!("{other:?}").contains("a1"));
    }

    #[test]
    fn scopes_union_once_each() {
        assert_eq!(union(Some("a b"), Some("b c")).as_deref(), Some("a b c"));
        assert_eq!(union(None, None), None);
        assert!(insufficient(r#"Bearer error="insufficient_scope""#));
        assert!(!insufficient(r#"Bearer error="invalid_token""#));
    }
}
