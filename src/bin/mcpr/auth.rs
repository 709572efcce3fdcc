//! `--oauth`: tokens in a file between runs (the client refreshes them on
//! 401), and, when they cannot be renewed, the authorization flow once:
//! the URL goes to stderr and to a browser, the code comes back to the
//! client's loopback listener, and the command is retried.
//!
//! `MCPR_OAUTH_OPEN=follow` is a testing and automation aid: instead of a
//! browser, mcpr fetches the authorization URL itself (no redirects
//! followed) and delivers the redirect it gets to its own loopback
//! listener. Only useful against an authorization server that approves at
//! once (test servers, the conformance suite): a real one shows a login
//! page, which is not a redirect, and the flow fails with exit code 4.

use crate::args::OAuthArgs;
use crate::exit::{Exit, Failure};
use mcp_recovery::blocking::Client;
use mcp_recovery::client::oauth::{token_file, Enterprise, FileTokenStore, OAuthConfig};
use mcp_recovery::client::redis_store::RedisTokenStore;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The environment variable that picks how the authorization URL is opened.
pub const OPEN_ENV: &str = "MCPR_OAUTH_OPEN";

/// How long `follow` waits for its own redirect: nobody types a password,
/// so a redirect that has not come back in seconds never will, and the
/// default (minutes, for a person) would only delay the failure.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);

/// How the authorization URL reaches an authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opener {
    /// Print it and try the desktop's browser (the default).
    Browser,
    /// Fetch it here and deliver the redirect (tests and automation).
    Follow,
}

impl Opener {
    /// From `MCPR_OAUTH_OPEN` (unset or `browser`, or `follow`).
    pub fn from_env() -> Result<Opener, Failure> {
        match std::env::var(OPEN_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Opener::Browser),
            Ok(v) if v == "browser" => Ok(Opener::Browser),
            Ok(v) if v == "follow" => Ok(Opener::Follow),
            _ => Err(Failure::input(format!(
                "{OPEN_ENV} must be `browser` or `follow`"
            ))),
        }
    }

    /// Sends a person (or, for `Follow`, this process) to `url`. Never
    /// fails: a browser that does not start leaves the printed URL, and a
    /// follow that fails ends in the flow's timeout, reported as exit 4.
    pub fn open(self, url: &str) {
        eprintln!("mcpr: to authorize, open {url}");
        match self {
            Opener::Browser => browser(url),
            Opener::Follow => {
                let url = url.to_owned();
                // The loopback listener only accepts once `open` returns,
                // so the redirect must be delivered from another thread.
                std::thread::spawn(move || {
                    if let Err(why) = follow(&url) {
                        eprintln!("mcpr: {OPEN_ENV}=follow: {why}");
                    }
                });
            }
        }
    }
}

/// Starts the desktop's URL opener without waiting for it; whether it
/// worked cannot be told, and the URL is printed anyway.
fn browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// GETs the authorization URL without following redirects, then GETs the
/// redirect's target if it is a loopback address: what a browser does
/// against a server that approves at once, and nothing more (a redirect
/// elsewhere is not ours to visit).
fn follow(url: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(FOLLOW_TIMEOUT))
        .build()
        .into();
    let answer = agent
        .get(url)
        .call()
        .map_err(|e| format!("authorization endpoint: {e}"))?;
    if !answer.status().is_redirection() {
        return Err(format!(
            "the authorization endpoint answered {} instead of redirecting \
             (it wants a person: unset {OPEN_ENV})",
            answer.status()
        ));
    }
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("the redirect has no Location")?
        .to_owned();
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    if !loopback.iter().any(|p| location.starts_with(p)) {
        return Err("the redirect does not go to the loopback listener".into());
    }
    let back = agent
        .get(&location)
        .call()
        .map_err(|e| format!("loopback redirect: {e}"))?;
    match back.status().as_u16() {
        200 => Ok(()),
        s => Err(format!("the loopback listener answered {s}")),
    }
}

/// The OAuth settings of `--oauth`, with tokens in `--token-file` or the
/// default file for `url`.
pub fn config(url: &str, args: &OAuthArgs, opener: Opener) -> Result<OAuthConfig, Failure> {
    if let Some(redis) = &args.token_redis {
        let key = format!("mcpr:tokens:{}", sanitize(url));
        let store = RedisTokenStore::new(redis, key)
            .map_err(|e| Failure::new(Exit::NeedsReauth, "token store", e.to_string()))?;
        return settings(OAuthConfig::new(store), args, opener);
    }
    let path = match &args.token_file {
        Some(p) => p.clone(),
        None => default_token_file(url)?,
    };
    settings(OAuthConfig::new(FileTokenStore::new(path)), args, opener)
}

/// `args` applied to `config`.
pub fn settings(
    mut config: OAuthConfig,
    args: &OAuthArgs,
    opener: Opener,
) -> Result<OAuthConfig, Failure> {
    config.client_name = "mcpr".into();
    match (&args.oauth_client_id, &args.oauth_client_secret) {
        (Some(id), Some(secret)) if args.oauth_client_credentials => {
            config = config.client_credentials(id, secret);
        }
        (Some(id), secret) => config = config.client(id, secret.as_deref()),
        _ => {}
    }
    if let Some(scope) = &args.oauth_scope {
        config = config.scope(scope);
    }
    if let (Some(path), Some(id)) = (&args.oauth_client_key, &args.oauth_client_id) {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| Failure::input(format!("cannot read {}: {e}", path.display())))?;
        config = config
            .client_credentials_jwt(id, &pem)
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    }
    if args.oauth_dpop {
        config = config.dpop();
    }
    if let Some(path) = &args.oauth_jwt_bearer_file {
        config = config.jwt_bearer_file(path);
    }
    if let (Some(path), Some(url), Some(idp_id), Some(id)) = (
        &args.oauth_id_token_file,
        &args.oauth_idp_token_url,
        &args.oauth_idp_client_id,
        &args.oauth_client_id,
    ) {
        let idp = Enterprise::new(url, idp_id, token_file(path));
        config = config.enterprise(idp, id, args.oauth_client_secret.as_deref());
    }
    if opener == Opener::Follow {
        config.redirect_timeout = FOLLOW_TIMEOUT;
    }
    Ok(config)
}

/// `$XDG_CONFIG_HOME/mcpr/tokens-<host_port_path>.json` (or under
/// `~/.config`), its directory created readable by the owner only: it
/// holds refresh tokens.
pub fn default_token_file(url: &str) -> Result<PathBuf, Failure> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Path::new(&home).join(".config"),
            None => {
                return Err(Failure::input(
                    "no HOME or XDG_CONFIG_HOME for the token file: pass --token-file",
                ))
            }
        },
    };
    let dir = base.join("mcpr");
    create_private_dir(&dir).map_err(|e| {
        Failure::new(
            Exit::NeedsReauth,
            "token store",
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    Ok(dir.join(format!("tokens-{}.json", sanitize(url))))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// One file name per server, and never the same name for two servers:
/// the canonical resource (scheme, host, port, path; userinfo, query and
/// fragment left out: they may carry secrets and do not name another
/// server) with everything but ASCII letters, digits and `.` written as
/// `_XX` (its hex). `http://h/mcp` and `https://h/mcp` get two files (a
/// token issued over HTTPS is never sent in cleartext), and so do
/// `h:8443/x` and `h/8443/x`.
pub fn sanitize(url: &str) -> String {
    let canonical = mcp_recovery::core::oauth::canonical_resource(url)
        .unwrap_or_else(|_| url.split(['?', '#']).next().unwrap_or("").to_owned());
    let mut name = String::with_capacity(canonical.len() * 2);
    for b in canonical.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' {
            name.push(b as char);
        } else {
            name.push_str(&format!("_{b:02X}"));
        }
    }
    if name.is_empty() {
        "default".into()
    } else {
        name
    }
}

/// Runs the authorization flow on `client`; any failure is exit 4, the
/// class that says a person must log in.
pub fn authorize(client: &Client, opener: Opener) -> Result<(), Failure> {
    client
        .authorize(|url| opener.open(url))
        .map_err(|e| Failure::new(Exit::NeedsReauth, "authorization failed", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_names_are_one_per_server_and_hold_no_secret() {
        assert_eq!(
            sanitize("http://127.0.0.1:8000/mcp"),
            "http_3A_2F_2F127.0.0.1_3A8000_2Fmcp"
        );
        let with_secrets = sanitize("https://user:pw@example.com/a/mcp?token=s3cr3t#x");
        assert_eq!(with_secrets, "https_3A_2F_2Fexample.com_2Fa_2Fmcp");
        // Never the same file for two servers.
        let names = [
            "http://h/mcp",
            "https://h/mcp",
            "http://h:8443/x",
            "http://h/8443/x",
            "http://h_3A8443/x",
            "http://[::1]:9/",
        ]
        .map(sanitize);
        for (i, a) in names.iter().enumerate() {
            assert!(!a.contains('/') && !a.contains(':'), "{a}");
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(!sanitize("http://h/../../etc").contains('/'));
    }
}
