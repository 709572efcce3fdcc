//! OAuth for the clients: a token store that never loses a rotated refresh
//! token, the refresh on 401, and the authorization flow (discovery,
//! registration, PKCE, a loopback redirect). The flow is the core's sans-IO
//! [`Flow`]; this module runs it over the
//! client's own [`Io`] (its HTTP, its loopback listener,
//! its way of waiting), so the async client runs it without parking a
//! thread, and keeps the tokens in a [`TokenStore`].

use crate::dpop::DpopKey;
use crate::drive::{fetch, HttpLimits, Io};
use crate::loopback::Loopback;
use crate::RefreshError;
use mcp_recovery_core::oauth::{
    self, Authorized, BearerChallenge, Client, ClientAuth, Flow, FlowError, FlowParams, FlowStep,
    OAuthError, ProofRequest, TokenResponse,
};
pub use mcp_recovery_core::oauth::{Enterprise, Grant};
use mcp_recovery_core::{HttpRequest, Token, TransportFailure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// The resource (MCP server) they are for: its canonical URL, what
    /// they are bound to.
    pub resource: String,
    /// The `resource` parameter they were asked with (the protected
    /// resource metadata's, as published), sent again with each refresh;
    /// `resource` when absent (tokens stored before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_indicator: Option<String>,
    /// The loopback redirect URI the client was registered for, when it
    /// registered itself (RFC 7591): the next authorization reuses the
    /// registration on that URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// The scope that registration asked for: a flow asking for more
    /// registers anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_scope: Option<String>,
    /// How the client authenticates at the token endpoint
    /// (`client_secret_basic`, `client_secret_post`, `none`...): the method
    /// it was registered with, for its refreshes and reuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// `DPoP` for a token bound to [`StoredTokens::dpop_key`] (RFC 9449);
    /// absent for a Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The DPoP private key the tokens are bound to (PKCS#8, base64url):
    /// without it they cannot be presented or refreshed. As secret as the
    /// refresh token; never in `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
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
///
/// A store several processes share (a script running `mcpr` in parallel,
/// the workers of one service) implements [`TokenStore::lock`]: a refresh
/// then happens under the lock, after reading the store again, so when
/// the access token expires one process refreshes and the others take its
/// new token, instead of each spending the same rotating refresh token
/// and all but one being sent to log in again.
pub trait TokenStore: Send + Sync {
    /// The stored tokens, if any.
    fn load(&self) -> Option<StoredTokens>;
    /// Replaces them. Must be durable before it returns: a rotated refresh
    /// token exists nowhere else.
    fn save(&self, tokens: &StoredTokens) -> std::io::Result<()>;
    /// Takes the store's refresh lock, waiting at most `wait`; it is held
    /// until the returned guard drops. `Ok(None)`: the store has no lock
    /// (one process; the default).
    fn lock(&self, wait: Duration) -> std::io::Result<Option<StoreLock>> {
        let _ = wait;
        Ok(None)
    }
    /// Saves under `lock` (from [`TokenStore::lock`]): a store whose lock
    /// can expire under its holder (Redis) saves only while `lock` is
    /// still held, so a holder that stalled past it never overwrites its
    /// successor. The default is [`TokenStore::save`].
    fn save_locked(&self, lock: &StoreLock, tokens: &StoredTokens) -> std::io::Result<()> {
        let _ = lock;
        self.save(tokens)
    }
}

/// A held store lock; dropping it releases it.
pub struct StoreLock(Box<dyn std::any::Any + Send + Sync>);

impl StoreLock {
    /// A lock held for as long as `guard` lives.
    pub fn new(guard: impl std::any::Any + Send + Sync) -> Self {
        StoreLock(Box::new(guard))
    }

    /// The guard, for the store that made it (its fencing token).
    pub fn guard<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreLock")
    }
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
///
/// The temporary file has a name of its own for each save (so a path
/// ending in `.tmp` keeps its atomicity) and is created exclusively, which
/// never follows a symlink planted in its place; it is made 0600 on the
/// open file before a byte goes in, whatever the umask or a leftover file.
/// A directory that group or others may write to is refused (on Unix):
/// whoever can rename files there can swap the tokens. A token file that
/// is a symlink is never read.
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    /// A store at `path` (its directory must exist, writable by its owner
    /// only).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore { path: path.into() }
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        }
    }
}

/// Refuses a directory others may write to.
fn check_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(dir)?.mode();
        // Group- or world-writable, unless sticky and ours alone to
        // rename in (a sticky /tmp still lets the owner of a planted file
        // keep it): refused either way.
        if mode & 0o022 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "token directory {} is writable by group or others (mode {:o}): \
                     use a directory only you can write to",
                    dir.display(),
                    mode & 0o7777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl TokenStore for FileTokenStore {
    /// An exclusive advisory lock (`flock`) on `<token file>.lock` beside
    /// the token file, polled every 20 ms until `wait` ends.
    fn lock(&self, wait: Duration) -> std::io::Result<Option<StoreLock>> {
        check_private_dir(self.dir())?;
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(PathBuf::from(name))?;
        let until = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(StoreLock::new(file))),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("token store locked by another process for {wait:?}"),
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }

    fn load(&self) -> Option<StoredTokens> {
        // A file others could have planted is not taken.
        check_private_dir(self.dir()).ok()?;
        let meta = std::fs::symlink_metadata(&self.path).ok()?;
        if !meta.file_type().is_file() {
            return None;
        }
        let bytes = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save(&self, tokens: &StoredTokens) -> std::io::Result<()> {
        let dir = self.dir();
        check_private_dir(dir)?;
        let body = serde_json::to_vec(tokens).map_err(std::io::Error::other)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tokens".into());
        let (tmp, mut file) = create_temporary(dir, &name)?;
        let written = (|| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(&body)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        // The rename itself must survive a crash too.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// A new file beside the token file, created exclusively (never through a
/// symlink, never an existing file), under a name no other save uses.
fn create_temporary(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for _ in 0..8 {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = dir.join(format!(".{name}.{}.{suffix}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary file name left")))
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
    /// How tokens are granted: a person's authorization in a browser (the
    /// default), or a grant with nobody at hand, run again whenever the
    /// tokens run out: the client credentials grant
    /// ([`OAuthConfig::client_credentials`]), a workload's identity token
    /// ([`OAuthConfig::jwt_bearer`]), enterprise-managed authorization
    /// ([`OAuthConfig::enterprise`]).
    pub grant: Grant,
    /// Sender-constrained tokens (DPoP, RFC 9449, [`OAuthConfig::dpop`]).
    pub dpop: bool,
    /// With the client credentials grant: authenticate with a signed JWT
    /// (`private_key_jwt`) instead of a secret
    /// ([`OAuthConfig::client_credentials_jwt`]).
    pub client_assertion: Option<Arc<oauth::AssertionSigner>>,
}

/// A token source reading a JWT from `path` each time it is asked (a file
/// the platform or an SSO agent rewrites as it rotates), for
/// [`OAuthConfig::jwt_bearer`] or [`Enterprise::new`].
pub fn token_file(
    path: impl Into<PathBuf>,
) -> impl Fn(&str) -> Result<String, String> + Send + Sync + 'static {
    let path = path.into();
    move |_| {
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
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
            grant: Grant::AuthorizationCode,
            dpop: false,
            client_assertion: None,
        }
    }

    /// Binds tokens to a key of this client's (DPoP, RFC 9449): each token
    /// request and each request to the MCP server carries a fresh proof
    /// signed with it (ES256), so a stolen token is useless without the
    /// key. The key is made when the first tokens are asked for and kept
    /// with them in the store; a server's nonce is taken when it asks for
    /// one (each request sent again at most once).
    pub fn dpop(mut self) -> Self {
        self.dpop = true;
        self
    }

    /// Authorizes as a workload with its own identity token (workload
    /// identity federation, RFC 7523's JWT bearer grant, MCP's SEP-1933):
    /// `assertion` gives the token for an audience (the authorization
    /// server's issuer) each time tokens are needed. A refused assertion
    /// surfaces as an error; it is not sent again.
    pub fn jwt_bearer(
        mut self,
        assertion: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        self.grant = Grant::JwtBearer(Arc::new(assertion));
        self
    }

    /// [`OAuthConfig::jwt_bearer`] with the token read from `path` each
    /// time (the file a platform rotates: a Kubernetes projected service
    /// account token, a CI job's OIDC token).
    pub fn jwt_bearer_file(self, path: impl Into<PathBuf>) -> Self {
        self.jwt_bearer(token_file(path))
    }

    /// Enterprise-managed authorization (MCP's SEP-990): the person's ID
    /// token from the enterprise identity provider `idp` is exchanged
    /// there for an ID-JAG, which this pre-registered client (`id`,
    /// `secret`) presents to the MCP server's authorization server. No
    /// browser: the enterprise's single sign-on already happened.
    pub fn enterprise(mut self, idp: Enterprise, id: &str, secret: Option<&str>) -> Self {
        self.client_id = Some(id.to_owned());
        self.client_secret = secret.map(str::to_owned);
        self.grant = Grant::Enterprise(Arc::new(idp));
        self
    }

    /// Authorizes as the pre-registered client `id` itself (the client
    /// credentials grant) with a signed JWT (`private_key_jwt`, RFC 7523)
    /// instead of a secret: ES256 with the P-256 key in
    /// `private_key_pem` (PKCS#8 PEM). Each token request gets a fresh
    /// assertion (60 s of life, a random `jti`) for the authorization
    /// server's issuer.
    pub fn client_credentials_jwt(
        mut self,
        id: &str,
        private_key_pem: &str,
    ) -> Result<Self, AuthError> {
        let der = pem_body(private_key_pem).ok_or(AuthError::Key("not a PEM private key"))?;
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &der,
            &rng,
        )
        .map_err(|_| AuthError::Key("not a PKCS#8 P-256 key"))?;
        let client_id = id.to_owned();
        let sign = move |audience: &str| -> Result<String, String> {
            let now = now_unix();
            let jti = random_token(16).map_err(|e| e.to_string())?;
            let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
            let claims = serde_json::json!({
                "iss": client_id, "sub": client_id, "aud": audience,
                "iat": now, "exp": now + 60, "jti": jti,
            });
            let input = format!(
                "{}.{}",
                oauth::base64(header.to_string().as_bytes(), true),
                oauth::base64(claims.to_string().as_bytes(), true)
            );
            let signature = key
                .sign(&rng, input.as_bytes())
                .map_err(|_| "signing failed".to_owned())?;
            Ok(format!(
                "{input}.{}",
                oauth::base64(signature.as_ref(), true)
            ))
        };
        self.client_id = Some(id.to_owned());
        self.client_secret = None;
        self.grant = Grant::ClientCredentials;
        self.client_assertion = Some(Arc::new(sign));
        Ok(self)
    }

    /// Authorizes as the pre-registered client `id` itself, with the
    /// client credentials grant (its secret goes by HTTP Basic or in the
    /// form, as the authorization server says).
    pub fn client_credentials(mut self, id: &str, secret: &str) -> Self {
        self.client_id = Some(id.to_owned());
        self.client_secret = Some(secret.to_owned());
        self.grant = Grant::ClientCredentials;
        self
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
    /// The loopback listener for the redirect failed.
    #[error("redirect listener: {0}")]
    Listener(std::io::Error),
    /// The client's private key is not one this client can sign with (a
    /// PKCS#8 PEM P-256 key for ES256). Never shows the key.
    #[error("client key: {0}")]
    Key(&'static str),
}

/// OAuth for one MCP server: where its client's tokens come from, their
/// refresh, and its authorization flow.
pub(crate) struct OAuth {
    server_url: String,
    config: OAuthConfig,
    /// The access token last handed to the engine: a refresh asked for
    /// finds another in the store when another process refreshed first.
    handed: Mutex<Option<String>>,
    /// When that token expires (Unix seconds), if known.
    expiry: Mutex<Option<u64>>,
    /// The DPoP key the tokens in use are bound to (with DPoP on).
    dpop: Mutex<Option<Arc<DpopKey>>>,
    /// The client registered earlier was refused (`invalid_client`):
    /// register anew.
    forget_registration: AtomicBool,
}

impl OAuth {
    /// The token store, weakly: clients sharing a store share their
    /// tokens, and so speak for the same principal.
    pub(crate) fn store(&self) -> std::sync::Weak<dyn TokenStore> {
        Arc::downgrade(&self.config.store)
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The DER inside a PEM block (`-----BEGIN ...-----` lines dropped).
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn random_token(bytes: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; bytes];
    // No randomness means no safe PKCE verifier or state: refuse to go on.
    getrandom::fill(&mut buf).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(oauth::base64(&buf, true))
}

impl From<FlowError> for AuthError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::OAuth(e) => AuthError::OAuth(e),
            FlowError::Transport(t) => AuthError::Transport(t),
            other => AuthError::OAuth(OAuthError::Malformed(other.to_string())),
        }
    }
}

impl OAuth {
    /// OAuth for the MCP server at `server_url`.
    pub fn new(server_url: &str, config: OAuthConfig) -> Self {
        OAuth {
            server_url: server_url.to_owned(),
            config,
            handed: Mutex::new(None),
            expiry: Mutex::new(None),
            dpop: Mutex::new(None),
            forget_registration: AtomicBool::new(false),
        }
    }

    /// The DPoP key for new tokens: the one in use, else a new one. `None`
    /// without DPoP.
    fn dpop_key(&self) -> Result<Option<Arc<DpopKey>>, AuthError> {
        if !self.config.dpop {
            return Ok(None);
        }
        let mut held = self.dpop.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_none() {
            *held = Some(Arc::new(DpopKey::generate().map_err(AuthError::Random)?));
        }
        Ok(held.clone())
    }

    /// Takes the key `stored` tokens are bound to as the one in use (a new
    /// process, another process's refresh). Tokens bound to no key leave
    /// the key in use as it is.
    fn adopt_key(&self, stored: &StoredTokens) -> Option<Arc<DpopKey>> {
        let mut held = self.dpop.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b64) = &stored.dpop_key {
            if held.as_ref().is_none_or(|k| &k.stored() != b64) {
                // An unreadable key leaves the tokens unusable: the next
                // 401 ends in a new authorization, with a new key.
                *held = DpopKey::from_stored(b64).ok().map(Arc::new);
            }
        }
        held.clone()
    }

    /// `request` to the MCP server with a fresh DPoP proof, when it
    /// presents a DPoP-bound token; `None` otherwise (sent as it is).
    pub(crate) fn prove(&self, request: &HttpRequest) -> Option<HttpRequest> {
        let token = request.header("authorization")?.strip_prefix("DPoP ")?;
        let key = self
            .dpop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let nonce = key.nonce();
        let mut what = ProofRequest::new(request.method.as_str(), &request.url);
        what.nonce = nonce.as_deref();
        what.access_token = Some(token);
        // Without a proof the server answers 401, which ends in a refresh
        // or a new authorization: a failed signature is no worse.
        let proof = key.prove(&what).ok()?;
        Some(oauth::with_proof(request.clone(), proof))
    }

    /// What the MCP server's answer says about DPoP: its next nonce is
    /// kept; `true` when it refused the request for want of that nonce
    /// (send it again, once, with a new proof).
    pub(crate) fn dpop_answer(&self, status: u16, headers: &http::HeaderMap) -> bool {
        let Some(key) = self
            .dpop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        else {
            return false;
        };
        // Only with DPoP on: the header list is not built for every answer.
        let headers: Vec<_> = crate::drive::strings(headers).collect();
        if let Some(n) = oauth::offered_nonce(&headers) {
            key.set_nonce(n);
        }
        oauth::nonce_challenge(status, &headers, b"").is_some()
    }

    /// Runs the whole authorization flow over `io` and stores the tokens:
    /// discovery from `challenge` (a 401's `WWW-Authenticate`, if at hand)
    /// or the well-known URIs, registration, PKCE, then `open` is called
    /// with the URL a person's browser must visit; the code comes back to a
    /// loopback listener. With `step_up`, the scope asked for adds what the
    /// challenge (or else the resource) names to what the stored token has.
    /// Returns the access token.
    pub async fn authorize<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        challenge: Option<&str>,
        open: &(dyn Fn(&str) + Sync),
        step_up: bool,
    ) -> Result<Token, AuthError> {
        self.authorize_under(io, limits, challenge, open, step_up, None)
            .await
    }

    /// [`OAuth::authorize`], saving under the store's `lock` when one is
    /// held (released once saved, or once the flow failed).
    async fn authorize_under<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        challenge: Option<&str>,
        open: &(dyn Fn(&str) + Sync),
        step_up: bool,
        mut lock: Option<StoreLock>,
    ) -> Result<Token, AuthError> {
        let outcome = self
            .run_flow(io, limits, challenge, open, step_up, &mut lock)
            .await;
        release(io, lock).await;
        outcome
    }

    async fn run_flow<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        challenge: Option<&str>,
        open: &(dyn Fn(&str) + Sync),
        step_up: bool,
        lock: &mut Option<StoreLock>,
    ) -> Result<Token, AuthError> {
        // A client this one registered earlier is used again (not one more
        // registration per authorization), on the redirect URI it was
        // registered for, when that port is free.
        let attended = !self.config.grant.unattended();
        let earlier = match attended
            && self.config.client_id.is_none()
            && !self.forget_registration.load(Ordering::Relaxed)
        {
            true => self.load(io).await.filter(|t| !t.client_id.is_empty()),
            false => None,
        };
        let reuse = earlier.and_then(|t| {
            let port = registered_port(t.redirect_uri.as_deref()?)?;
            Some((Loopback::bind(port).ok()?, t))
        });
        // A grant with nobody at hand sends nobody anywhere: no listener.
        let (listener, reused) = match (attended, reuse) {
            (false, _) => (None, None),
            (true, Some((bound, earlier))) => (Some(bound), Some(earlier)),
            (true, None) => (
                Some(Loopback::bind(self.config.redirect_port).map_err(AuthError::Listener)?),
                None,
            ),
        };
        let redirect_uri = match &listener {
            Some((_, port)) => format!("http://127.0.0.1:{port}/callback"),
            None => "http://127.0.0.1/unused".to_owned(),
        };
        let verifier = random_token(32)?;
        let code_challenge = oauth::base64(&Sha256::digest(verifier.as_bytes()), true);
        let state = random_token(16)?;
        let mut params = FlowParams::new(&self.server_url, &redirect_uri).pkce(
            &verifier,
            &code_challenge,
            &state,
        );
        params.challenge = challenge.map(str::to_owned);
        params.step_up = step_up;
        params.scope = match step_up {
            true => self.load(io).await.and_then(|t| t.scope),
            false => None,
        }
        .or(self.config.scope.clone());
        params.client_id.clone_from(&self.config.client_id);
        params.client_secret.clone_from(&self.config.client_secret);
        if let Some(earlier) = &reused {
            params.client_id = Some(earlier.client_id.clone());
            params.client_secret.clone_from(&earlier.client_secret);
            params.registered_for = Some(earlier.token_endpoint.clone());
            params
                .registered_scope
                .clone_from(&earlier.registered_scope);
            params.registered_auth.clone_from(&earlier.auth_method);
        }
        params
            .client_metadata_url
            .clone_from(&self.config.client_metadata_url);
        params.client_name.clone_from(&self.config.client_name);
        params.grant = self.config.grant.clone();
        params
            .client_assertion
            .clone_from(&self.config.client_assertion);
        let key = self.dpop_key()?;
        if let Some(key) = key.clone() {
            params.dpop = Some(Arc::new(move |r: &ProofRequest<'_>| key.prove(r)));
        }
        let outcome = self
            .drive_flow(
                io,
                limits,
                params,
                key,
                listener,
                &state,
                &redirect_uri,
                open,
                lock,
            )
            .await;
        // The client registered earlier no longer works (the server forgot
        // it, or refuses it, or the person never came back through it):
        // the next flow registers a new one, in this process and the next.
        if reused.is_some() && outcome.as_ref().is_err_and(registration_failed) {
            self.forget_registration(io, limits.whole).await;
        }
        outcome
    }

    /// Runs the flow to its end: its fetches, the person's visit, the
    /// tokens saved (under `lock` when held).
    #[allow(clippy::too_many_arguments)]
    async fn drive_flow<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        params: FlowParams,
        key: Option<Arc<DpopKey>>,
        listener: Option<(Loopback, u16)>,
        state: &str,
        redirect_uri: &str,
        open: &(dyn Fn(&str) + Sync),
        lock: &mut Option<StoreLock>,
    ) -> Result<Token, AuthError> {
        let (mut flow, mut step) = Flow::start(params);
        loop {
            step = match step {
                FlowStep::Fetch(request) => match fetch(io, &request, limits).await {
                    Ok((status, headers, body)) => {
                        let headers: Vec<_> = crate::drive::strings(&headers).collect();
                        flow.on_answer(status, &headers, &body)
                    }
                    Err(failure) => flow.on_failure(failure),
                },
                FlowStep::Open(url) => {
                    let Some((listener, _)) = &listener else {
                        return Err(OAuthError::Malformed("no redirect expected".into()).into());
                    };
                    open(&url);
                    let query = self.redirect(io, listener, state).await?;
                    flow.on_redirect(&query)
                }
                FlowStep::Done(done) => {
                    let registered = done.registered.then(|| redirect_uri.to_owned());
                    return self
                        .store_authorized(io, *done, key, registered, lock.take())
                        .await;
                }
                FlowStep::Failed(e) => return Err(e.into()),
                _ => return Err(OAuthError::Malformed("unknown flow step".into()).into()),
            };
        }
    }

    /// Stores what a finished flow got (the client, its secret, the
    /// resource and the parameter it was asked with) and returns the
    /// access token.
    async fn store_authorized<I: Io>(
        &self,
        io: &I,
        done: Authorized,
        key: Option<Arc<DpopKey>>,
        redirect_uri: Option<String>,
        lock: Option<StoreLock>,
    ) -> Result<Token, AuthError> {
        let secret = match &done.client.auth {
            ClientAuth::Basic(s) | ClientAuth::Post(s) => Some(s.header_value().to_owned()),
            _ => None,
        };
        let stored = StoredTokens {
            access_token: String::new(),
            refresh_token: None,
            expires_at: None,
            scope: done.scope,
            token_endpoint: done.token_endpoint,
            client_id: done.client.id,
            client_secret: secret,
            resource: done.resource,
            resource_indicator: Some(done.resource_indicator),
            registered_scope: redirect_uri.as_ref().and(done.registered_scope),
            redirect_uri,
            auth_method: Some(auth_method(&done.client.auth).to_owned()),
            token_type: None,
            // Kept whenever the tokens were asked for with a proof: a
            // server may bind only the refresh token (RFC 9449 §5), which
            // then needs a proof of this key at every refresh.
            dpop_key: key.map(|k| k.stored()),
        };
        self.save_under(io, stored, &done.tokens, lock).await
    }

    /// A grant with nobody at hand: discovery, then the token endpoint
    /// (the same flow, with nobody to send anywhere).
    async fn unattended<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        challenge: Option<&str>,
    ) -> Result<Token, AuthError> {
        let step_up = challenge.is_some_and(insufficient);
        self.authorize(io, limits, challenge, &|_| {}, step_up)
            .await
    }

    /// Waits for the browser's GET of the redirect URI on `listener`, at
    /// most the redirect timeout; other requests (a favicon...) get a 404,
    /// and a redirect without our `state` (any local process or web page
    /// can reach a loopback port) is ignored: the wait goes on for the
    /// real one instead of ending the flow.
    async fn redirect<I: Io>(
        &self,
        io: &I,
        listener: &Loopback,
        state: &str,
    ) -> Result<String, AuthError> {
        let timeout = self.config.redirect_timeout;
        let until = Instant::now()
            .checked_add(timeout)
            .ok_or(AuthError::Timeout(timeout))?;
        loop {
            let head = listener
                .serve_one(io, until, oauth::redirect_reply)
                .await
                .map_err(AuthError::Listener)?
                .ok_or(AuthError::Timeout(timeout))?;
            if let Some(query) = oauth::redirect_query(&head) {
                let ours = oauth::parse_query(&query)
                    .iter()
                    .any(|(k, v)| k == "state" && v == state);
                if ours {
                    return Ok(query);
                }
            }
        }
    }

    /// Forgets the client registered earlier, here and in the store, so the
    /// next flow registers anew. The tokens stay.
    async fn forget_registration<I: Io>(&self, io: &I, wait: Duration) {
        self.forget_registration.store(true, Ordering::Relaxed);
        let store = self.config.store.clone();
        let Ok(canonical) = oauth::canonical_resource(&self.server_url) else {
            return;
        };
        // Under the store's lock, read again: a rotated refresh token
        // another process saved meanwhile is never written over. A store
        // that cannot do it now leaves the flag for this process.
        let _ = io
            .blocking(move || -> std::io::Result<()> {
                let lock = store.lock(wait)?;
                let Some(mut stored) = store.load().filter(|t| t.resource == canonical) else {
                    return Ok(());
                };
                stored.redirect_uri = None;
                stored.registered_scope = None;
                match &lock {
                    Some(l) => store.save_locked(l, &stored),
                    None => store.save(&stored),
                }
            })
            .await;
    }

    /// This server's stored tokens, read off the caller's path (a store
    /// may block).
    async fn load<I: Io>(&self, io: &I) -> Option<StoredTokens> {
        let store = self.config.store.clone();
        self.ours(io.blocking(move || store.load()).await)
    }

    /// Stores a token answer over `base` (a rotated refresh token replaces
    /// the old one; an answer without one keeps it) and returns the access
    /// token. Saved before anyone uses the new tokens, under the store's
    /// lock when one is held (released once the save is done).
    async fn save_under<I: Io>(
        &self,
        io: &I,
        mut base: StoredTokens,
        answer: &TokenResponse,
        lock: Option<StoreLock>,
    ) -> Result<Token, AuthError> {
        let access = &answer.access_token;
        base.token_type = access.dpop_token().map(|_| "DPoP".to_owned());
        base.access_token = match access.dpop_token() {
            Some(t) => t.to_owned(),
            None => {
                let v = access.header_value();
                v.strip_prefix("Bearer ").unwrap_or(v).to_owned()
            }
        };
        if let Some(r) = &answer.refresh_token {
            base.refresh_token = Some(r.header_value().to_owned());
        }
        base.expires_at = answer.expires_in.map(|s| now_unix().saturating_add(s));
        if answer.scope.is_some() {
            base.scope = answer.scope.clone();
        }
        let store = self.config.store.clone();
        let (access, expires_at) = (base.access_token.clone(), base.expires_at);
        let saved_key = StoredTokens {
            dpop_key: base.dpop_key.clone(),
            ..StoredTokens::default()
        };
        io.blocking(move || {
            let saved = match &lock {
                Some(l) => store.save_locked(l, &base),
                None => store.save(&base),
            };
            drop(lock);
            saved
        })
        .await?;
        self.hand(&access);
        *self.expiry.lock().unwrap_or_else(PoisonError::into_inner) = expires_at;
        self.adopt_key(&saved_key);
        Ok(answer.access_token.clone())
    }

    /// Refreshes the stored tokens once. `invalid_grant` and friends (or
    /// nothing to refresh) mean a person must authorize again.
    async fn refresh_now<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        challenge: Option<&str>,
    ) -> Result<Token, RefreshError> {
        // Processes sharing the store refresh one at a time: under the
        // lock, the store read again tells whether another one already did.
        let store = self.config.store.clone();
        let wait = limits.whole;
        let mut guard = io
            .blocking(move || store.lock(wait))
            .await
            .map_err(|e| RefreshError::Failed(format!("token store: {e}")))?;
        let outcome = self.refresh_locked(io, limits, &mut guard).await;
        // A grant with nobody at hand runs under the same lock: one process
        // gets the tokens, the others find them in the store (the
        // `refreshed elsewhere` path) instead of each asking for its own.
        let outcome = match outcome {
            Err(RefreshError::NeedsReauth(_)) if self.config.grant.unattended() => self
                .authorize_under(io, limits, challenge, &|_| {}, false, guard.take())
                .await
                .map_err(grant_failed),
            other => other,
        };
        release(io, guard).await;
        outcome
    }

    /// [`OAuth::refresh_now`] under the store's lock: the tokens another
    /// process just got, else a refresh. A save takes the lock from
    /// `guard` (and releases it).
    async fn refresh_locked<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        guard: &mut Option<StoreLock>,
    ) -> Result<Token, RefreshError> {
        let stored = self
            .load(io)
            .await
            .ok_or_else(|| RefreshError::NeedsReauth("no stored tokens for this server".into()))?;
        let handed = self
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Tokens this client never handed, still fresh: another process
        // (or another client of this one) got them meanwhile.
        let refreshed_elsewhere = !stored.access_token.is_empty()
            && handed.as_deref() != Some(stored.access_token.as_str())
            && stored.expires_at.is_none_or(|at| at > now_unix() + 5);
        if refreshed_elsewhere {
            self.hand(&stored.access_token);
            *self.expiry.lock().unwrap_or_else(PoisonError::into_inner) = stored.expires_at;
            self.adopt_key(&stored);
            return Ok(presented(&stored));
        }
        let refresh = stored
            .refresh_token
            .as_deref()
            .ok_or_else(|| RefreshError::NeedsReauth("no refresh token".into()))?;
        // The method the client authenticates with, as registered.
        let methods: Vec<String> = stored.auth_method.iter().cloned().collect();
        let client =
            Client::with_secret(&stored.client_id, stored.client_secret.as_deref(), &methods);
        let request = oauth::refresh_request(
            &stored.token_endpoint,
            &client,
            &Token::raw(refresh),
            Some(
                stored
                    .resource_indicator
                    .as_deref()
                    .unwrap_or(&stored.resource),
            ),
            None,
        );
        // Tokens bound to a key are refreshed with a proof of it.
        let key = match stored.dpop_key {
            Some(_) => self.adopt_key(&stored),
            None => None,
        };
        let answer = Self::token_request(io, request, key.as_deref(), limits).await;
        let (status, body) =
            answer.map_err(|e| RefreshError::Failed(AuthError::Transport(e).to_string()))?;
        match oauth::parse_token_response(status, &body) {
            // Saved under the lock, which is released right after, off the
            // caller's path: the next process finds the new tokens.
            Ok(tokens) => self
                .save_under(io, stored, &tokens, guard.take())
                .await
                .map_err(|e| RefreshError::Failed(e.to_string())),
            Err(e) => Err(match e.needs_reauth() {
                true => RefreshError::NeedsReauth(e.to_string()),
                false => RefreshError::Failed(e.to_string()),
            }),
        }
    }

    /// The refresh the engine asks for after a 401 (or before expiry), or
    /// a step-up after a 403 `insufficient_scope`: a refresh first; where a
    /// person is needed, the authorization flow through the configured
    /// opener, if any.
    pub async fn refresh<I: Io>(
        &self,
        io: &I,
        limits: HttpLimits,
        challenge: Option<&str>,
    ) -> Result<Token, RefreshError> {
        let step_up = challenge.is_some_and(insufficient);
        let outcome = if step_up {
            Err(RefreshError::NeedsReauth(
                "the token lacks a scope the server requires".into(),
            ))
        } else {
            self.refresh_now(io, limits, challenge).await
        };
        if self.config.grant.unattended() {
            // No person involved: the refresh ran the grant again when the
            // tokens ran out; a step-up asks for one with more scope.
            return match outcome {
                Err(RefreshError::NeedsReauth(_)) if step_up => self
                    .unattended(io, limits, challenge)
                    .await
                    .map_err(grant_failed),
                other => other,
            };
        }
        match (outcome, &self.config.opener) {
            (Err(RefreshError::NeedsReauth(_)), Some(open)) => self
                .authorize(io, limits, challenge, open.as_ref(), step_up)
                .await
                .map_err(|e| RefreshError::NeedsReauth(e.to_string())),
            (outcome, _) => outcome,
        }
    }

    /// A token request sent outside the flow (a refresh): with a proof of
    /// `key` when the tokens are bound to one, sent once more with the
    /// server's nonce when it asks for one.
    async fn token_request<I: Io>(
        io: &I,
        request: HttpRequest,
        key: Option<&DpopKey>,
        limits: HttpLimits,
    ) -> Result<(u16, Vec<u8>), TransportFailure> {
        let Some(key) = key else {
            return fetch(io, &request, limits).await.map(|(s, _, b)| (s, b));
        };
        let prove = |nonce: Option<&str>| {
            let mut what = ProofRequest::new(request.method.as_str(), &request.url);
            what.nonce = nonce;
            match key.prove(&what) {
                Ok(proof) => oauth::with_proof(request.clone(), proof),
                // Sent without: the server's refusal says what went wrong.
                Err(_) => request.clone(),
            }
        };
        let (status, headers, body) = fetch(io, &prove(None), limits).await?;
        let headers: Vec<_> = crate::drive::strings(&headers).collect();
        match oauth::nonce_challenge(status, &headers, &body) {
            Some(nonce) => fetch(io, &prove(Some(&nonce)), limits)
                .await
                .map(|(s, _, b)| (s, b)),
            None => Ok((status, body)),
        }
    }

    fn token_for_this_server(&self) -> Option<StoredTokens> {
        self.ours(self.config.store.load())
            .filter(|t| !t.access_token.is_empty())
    }

    /// `stored` if it is this server's. Tokens are for the resource they
    /// were issued to: never sent to, refreshed for or scoped from
    /// another server, even one sharing the store.
    fn ours(&self, stored: Option<StoredTokens>) -> Option<StoredTokens> {
        let resource = oauth::canonical_resource(&self.server_url).ok()?;
        stored.filter(|t| t.resource == resource)
    }

    /// The stored access token, if it is for this server.
    pub fn token(&self) -> Option<Token> {
        let t = self.token_for_this_server()?;
        self.hand(&t.access_token);
        *self.expiry.lock().unwrap_or_else(PoisonError::into_inner) = t.expires_at;
        self.adopt_key(&t);
        Some(presented(&t))
    }

    /// Remembers the access token the engine now uses.
    fn hand(&self, access: &str) {
        *self.handed.lock().unwrap_or_else(PoisonError::into_inner) = Some(access.to_owned());
    }

    /// How long the access token in use has left, when known: kept from
    /// when it was read or saved, so asking never touches the store (the
    /// client asks under its own lock, and a store may block).
    pub fn expires_in(&self) -> Option<Duration> {
        let at = (*self.expiry.lock().unwrap_or_else(PoisonError::into_inner))?;
        Some(Duration::from_secs(at.saturating_sub(now_unix())))
    }
}

/// Whether a flow's failure says the client it reused is no good: refused
/// by the token endpoint, or no redirect ever came back through it (an
/// authorization server that no longer knows a client shows the person
/// an error instead of redirecting).
fn registration_failed(e: &AuthError) -> bool {
    match e {
        AuthError::OAuth(OAuthError::Server { error, .. }) => {
            matches!(error.as_str(), "invalid_client" | "unauthorized_client")
        }
        AuthError::Timeout(_) => true,
        _ => false,
    }
}

/// The token endpoint method of a client's authentication.
fn auth_method(auth: &ClientAuth) -> &'static str {
    match auth {
        ClientAuth::Basic(_) => "client_secret_basic",
        ClientAuth::Post(_) => "client_secret_post",
        ClientAuth::Assertion(_) => "private_key_jwt",
        _ => "none",
    }
}

/// A failed grant with nobody at hand: refused (a person, or new
/// credentials, must step in), or failed on the way.
fn grant_failed(e: AuthError) -> RefreshError {
    match e {
        AuthError::OAuth(o) if o.needs_reauth() => RefreshError::NeedsReauth(o.to_string()),
        other => RefreshError::Failed(other.to_string()),
    }
}

/// Releases a store lock, if held. Releasing may talk to the store (Redis):
/// off the caller's path.
async fn release<I: Io>(io: &I, lock: Option<StoreLock>) {
    if let Some(l) = lock {
        io.blocking(move || drop(l)).await;
    }
}

/// The port of a loopback redirect URI this client registered
/// (`http://127.0.0.1:PORT/callback`), if it is one.
fn registered_port(redirect_uri: &str) -> Option<u16> {
    redirect_uri
        .strip_prefix("http://127.0.0.1:")?
        .strip_suffix("/callback")?
        .parse()
        .ok()
        .filter(|p| *p != 0)
}

/// The credential stored tokens are presented as: `DPoP` or `Bearer`.
fn presented(t: &StoredTokens) -> Token {
    match t.token_type.as_deref() {
        Some("DPoP") => Token::dpop(&t.access_token),
        _ => Token::bearer(&t.access_token),
    }
}

/// Whether a challenge is a 403 `insufficient_scope` (with or without the
/// `scope` the server needs).
fn insufficient(challenge: &str) -> bool {
    BearerChallenge::from_header(challenge)
        .is_some_and(|b| b.error.as_deref() == Some("insufficient_scope"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drive::{Body, Exchange, Response};
    use futures_lite::future::block_on;
    use mcp_recovery_core::oauth::union;
    use mcp_recovery_core::FailureKind;
    use std::future::Future;

    /// A directory of the test's own, 0700.
    fn private_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mcp-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir).unwrap();
        dir
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn sample() -> StoredTokens {
        StoredTokens {
            access_token: "at".into(),
            refresh_token: Some("rt-secret".into()),
            resource: "http://127.0.0.1:9/mcp".into(),
            ..StoredTokens::default()
        }
    }

    #[test]
    fn a_planted_symlink_or_leftover_never_decides_where_tokens_go() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = private_dir("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("tokens.json");
        // The old fixed temporary names, planted as symlinks to the victim.
        for planted in ["tokens.tmp", "tokens.json.tmp", ".tokens.json.tmp"] {
            symlink(&victim, dir.join(planted)).unwrap();
        }
        // A leftover world-readable token file.
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let store = FileTokenStore::new(&path);
        store.save(&sample()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            store.load().unwrap().refresh_token.as_deref(),
            Some("rt-secret")
        );
        // No temporary left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".tmp") && !n.starts_with("tokens") && n != ".tokens.json.tmp")
            .collect();
        assert!(left.is_empty(), "{left:?}");

        // A token path ending in .tmp stays atomic and works.
        let odd = FileTokenStore::new(dir.join("tokens.tmp.d.tmp"));
        odd.save(&sample()).unwrap();
        assert!(odd.load().is_some());

        // A token file that is a symlink is never read.
        let link = dir.join("link.json");
        symlink(&path, &link).unwrap();
        assert!(FileTokenStore::new(&link).load().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_client_assertion_is_an_es256_jwt_the_public_key_verifies() {
        use ring::signature::{EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let public = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            oauth::base64(pkcs8.as_ref(), false)
        );
        let config = OAuthConfig::new(MemoryTokenStore::default())
            .client_credentials_jwt("svc", &pem)
            .unwrap();
        assert!(config.grant.unattended() && config.client_secret.is_none());
        let sign = config.client_assertion.clone().unwrap();
        let jwt = sign("https://as.example").unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("svc"), Some("svc"))
        );
        assert_eq!(claims["aud"], "https://as.example");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &decode(parts[2]),
            )
            .expect("the signature verifies");
        // Each assertion is new (its jti).
        assert_ne!(sign("https://as.example").unwrap(), jwt);
        // Not a key: a typed error that shows nothing of it.
        let e = OAuthConfig::new(MemoryTokenStore::default())
            .client_credentials_jwt(
                "svc",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            )
            .err()
            .unwrap();
        assert!(matches!(e, AuthError::Key(_)), "{e}");
    }

    #[test]
    fn a_token_file_is_read_again_each_time_it_is_asked() {
        let dir = private_dir("token-file");
        let path = dir.join("token");
        let source = token_file(&path);
        let e = source("aud").unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::write(&path, "first.jwt.sig\n").unwrap();
        assert_eq!(source("aud").unwrap(), "first.jwt.sig");
        // The platform rotates it: the next grant sends the new one.
        std::fs::write(&path, "second.jwt.sig").unwrap();
        assert_eq!(source("aud").unwrap(), "second.jwt.sig");
        let config = OAuthConfig::new(MemoryTokenStore::default()).jwt_bearer_file(&path);
        assert!(matches!(config.grant, Grant::JwtBearer(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir("shared");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let store = FileTokenStore::new(dir.join("tokens.json"));
        let e = store.save(&sample()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert!(!e.to_string().contains("rt-secret"));
        assert!(!dir.join("tokens.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A token endpoint that answers each request with the next canned
    /// answer, and remembers the bodies it got.
    #[derive(Clone, Default)]
    struct Canned {
        answers: Arc<Mutex<Vec<(u16, &'static str)>>>,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    /// A body read in one chunk.
    struct Whole {
        body: Vec<u8>,
        read: bool,
    }

    impl Body for Whole {
        async fn chunk(&mut self, _: Duration) -> Result<Option<&[u8]>, TransportFailure> {
            let first = !std::mem::replace(&mut self.read, true);
            Ok(first.then_some(&self.body[..]))
        }
    }

    impl Io for Canned {
        type Body = Whole;

        fn new(_: &crate::Settings) -> Self {
            Canned::default()
        }

        async fn send(&self, x: &Exchange<'_>) -> Result<Response<Whole>, TransportFailure> {
            self.bodies
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&x.request.body).into_owned());
            let (status, body) = self.answers.lock().unwrap().pop().ok_or_else(|| {
                TransportFailure::not_sent(FailureKind::Connect, "no more answers")
            })?;
            Ok(Response {
                status,
                headers: Default::default(),
                body: Whole {
                    body: body.as_bytes().to_vec(),
                    read: false,
                },
            })
        }

        async fn wait(&self, _: event_listener::EventListener, _: Option<Instant>) {}

        fn blocking<R: Send + 'static>(
            &self,
            f: impl FnOnce() -> R + Send + 'static,
        ) -> impl Future<Output = R> + Send {
            std::future::ready(f())
        }

        fn spawn(&self, _: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
            Err("no".into())
        }
    }

    fn oauth(answers: Vec<(u16, &'static str)>) -> (OAuth, Arc<MemoryTokenStore>, Canned) {
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
        let io = Canned::default();
        *io.answers.lock().unwrap() = answers;
        let mut config = OAuthConfig::new(MemoryTokenStore::default());
        config.store = store.clone();
        let o = OAuth::new("http://127.0.0.1:9/mcp", config);
        (o, store, io)
    }

    /// A refresh after a 401 on the stored token, which the client handed
    /// to its engine when it was built.
    fn refresh(o: &OAuth, io: &Canned) -> Result<Token, RefreshError> {
        o.token();
        block_on(o.refresh(io, HttpLimits::new(Duration::from_secs(1)), None))
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let (o, store, io) = oauth(vec![(
            200,
            r#"{"access_token":"a2","token_type":"Bearer","expires_in":60}"#,
        )]);
        assert_eq!(o.token().unwrap().header_value(), "Bearer a1");
        let t = refresh(&o, &io).unwrap();
        assert_eq!(t.header_value(), "Bearer a2");
        let kept = store.load().unwrap();
        assert_eq!(kept.access_token, "a2");
        assert_eq!(kept.refresh_token.as_deref(), Some("r1"));
        assert!(kept.expires_at.is_some());
        let body = io.bodies.lock().unwrap()[0].clone();
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
    fn tokens_another_process_stored_meanwhile_are_taken_without_a_request() {
        // Built with an empty store (nothing handed); another process then
        // saved tokens: the 401 on "no token" takes them, sends nothing.
        let (o, store, io) = oauth(vec![]);
        let tokens = store.load().unwrap();
        store.save(&StoredTokens::default()).unwrap();
        assert!(o.token().is_none());
        store.save(&tokens).unwrap();
        let t = block_on(o.refresh(&io, HttpLimits::new(Duration::from_secs(1)), None)).unwrap();
        assert_eq!(t.header_value(), "Bearer a1");
        assert!(io.bodies.lock().unwrap().is_empty(), "no request");
    }

    #[test]
    fn a_refused_grant_needs_reauth_and_a_broken_endpoint_does_not() {
        let (o, _, io) = oauth(vec![(400, r#"{"error":"invalid_grant"}"#)]);
        assert!(matches!(
            refresh(&o, &io),
            Err(RefreshError::NeedsReauth(_))
        ));
        let (o, store, io) = oauth(vec![(502, "<html>bad gateway</html>")]);
        match refresh(&o, &io) {
            Err(RefreshError::Failed(m)) => assert!(!m.contains("r1"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.load().unwrap().refresh_token.as_deref(), Some("r1"));
        // An endpoint that cannot be reached: a failure, not a re-auth.
        let (o, _, io) = oauth(vec![]);
        assert!(matches!(refresh(&o, &io), Err(RefreshError::Failed(_))));
    }

    #[test]
    fn tokens_are_only_for_the_server_they_were_issued_for() {
        // Server B's client sharing a store that holds server A's tokens:
        // it neither sends them, nor refreshes them at A's token endpoint
        // (which would hand A's new token to B), nor takes their scope.
        let (o, store, io) = oauth(vec![(
            200,
            r#"{"access_token":"stolen","token_type":"Bearer"}"#,
        )]);
        let mut other = store.load().unwrap();
        other.resource = "https://elsewhere.example/mcp".into();
        store.save(&other).unwrap();
        assert!(o.token().is_none());
        assert!(o.expires_in().is_none());
        assert!(!format!("{other:?}").contains("a1"));
        match refresh(&o, &io) {
            Err(RefreshError::NeedsReauth(m)) => assert!(m.contains("this server"), "{m}"),
            other => panic!("expected NeedsReauth, got {other:?}"),
        }
        assert!(
            io.bodies.lock().unwrap().is_empty(),
            "nothing sent to A's token endpoint"
        );
        assert_eq!(store.load().unwrap().access_token, other.access_token);
    }

    #[test]
    fn scopes_union_once_each() {
        assert_eq!(union(Some("a b"), Some("b c")).as_deref(), Some("a b c"));
        assert_eq!(union(None, None), None);
        assert!(insufficient(r#"Bearer error="insufficient_scope""#));
        assert!(!insufficient(r#"Bearer error="invalid_token""#));
    }
}
