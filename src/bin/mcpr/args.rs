//! The command line, as clap derive types. Values that need more checking
//! than clap gives (headers, JSON arguments) are checked in `main`, so the
//! error message is ours: clap would echo the whole value, and a header
//! value may be a secret.

use clap::{Args, Parser, Subcommand};
use mcp_recovery::core::Protocol;
use std::time::Duration;

/// Shown at the end of `mcpr --help`; the README has the same table.
const EXIT_CODES: &str = "\
Exit codes:
  0  ok
  1  the server answered with an error (JSON-RPC error, a tool result with isError,
     or one outside the output schema the tool declared)
  2  bad input or usage (bad JSON arguments, bad URL, bad header, unknown flag)
  3  session lost and not recovered (lost again after re-initializing, not ready in time,
     initialize rejected or failed on a live server)
  4  needs re-authorization (the server refused the credentials and they could not be renewed)
  5  circuit open (recent calls could not reach the server; failing fast)
  6  outcome uncertain (the connection broke after a non-idempotent call was sent: it may have run)
  7  server unreachable (also when initialize could not connect), transport, HTTP or protocol error
  8  timed out (--timeout) or cancelled
130  interrupted: the first Ctrl-C cancels the running tool call (the server is told,
     the session deleted); a second, or one with no call running, exits at once

Errors are one line on stderr: `mcpr: <class>: <details>`. With --json, a
failed run also prints {\"error\": {...}} on stdout.";

/// A command-line MCP client that recovers expired sessions, restarts and
/// dropped connections (Streamable HTTP, or a server over stdio).
#[derive(Parser)]
#[command(name = "mcpr", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where and how to connect.
    #[command(flatten)]
    pub conn: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every subcommand that talks to a server. Deliberately
/// not `Debug`: it holds the bearer token.
#[derive(Args)]
#[command(next_help_heading = "Connection (every command)")]
pub struct Connection {
    /// The server's MCP endpoint, e.g. http://127.0.0.1:8000/mcp
    #[arg(long, global = true, env = "MCPR_URL", value_name = "URL")]
    pub url: Option<String>,

    /// Run the server as a child process over stdio instead, e.g.
    /// --stdio 'python server.py --flag' (split as a shell would; no
    /// variables or pipes); restarted when it exits
    #[arg(
        long,
        global = true,
        env = "MCPR_STDIO",
        value_name = "COMMAND",
        conflicts_with = "url"
    )]
    pub stdio: Option<String>,

    /// Extra header on every request, `Name: value` (repeatable)
    #[arg(long = "header", global = true, value_name = "K:V")]
    pub headers: Vec<String>,

    /// Bearer token (MCPR_BEARER keeps it out of the process list)
    #[arg(
        long,
        global = true,
        env = "MCPR_BEARER",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub bearer: Option<String>,

    /// Machine output: one JSON document per line on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up on a call after this many seconds, recovery included
    #[arg(long, global = true, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,

    /// Protocol revision: auto (ask server/discover, fall back to the
    /// initialize handshake), legacy (the handshake), modern (2026-07-28,
    /// stateless) or a revision's date
    #[arg(long, global = true, value_name = "REVISION", default_value = "auto",
        value_parser = parse_protocol)]
    pub protocol: Protocol,

    /// Print the revision negotiated and the recovery steps the client
    /// takes (re-initialize, retry) on stderr
    #[arg(long, short, global = true)]
    pub verbose: bool,

    #[command(flatten)]
    pub oauth: OAuthArgs,
}

/// OAuth (authorization code with PKCE): tokens kept in a file between
/// runs, refreshed on 401; when they cannot be renewed, the browser is
/// opened once and the command retried. Not `Debug`: it holds a secret.
#[derive(Args)]
#[command(next_help_heading = "OAuth (every command)")]
pub struct OAuthArgs {
    /// Authorize with OAuth; a browser opens when a person must log in
    #[arg(long, global = true, conflicts_with = "bearer")]
    pub oauth: bool,

    /// A pre-registered OAuth client id (default: register dynamically)
    #[arg(long, global = true, value_name = "ID", requires = "oauth")]
    pub oauth_client_id: Option<String>,

    /// That client's secret (MCPR_OAUTH_CLIENT_SECRET keeps it out of `ps`)
    #[arg(
        long,
        global = true,
        env = "MCPR_OAUTH_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        requires = "oauth_client_id"
    )]
    pub oauth_client_secret: Option<String>,

    /// Scopes to ask for (default: what the server says)
    #[arg(long, global = true, value_name = "SCOPES", requires = "oauth")]
    pub oauth_scope: Option<String>,

    /// Authorize as the client itself (the client credentials grant: a
    /// service with no person at hand); needs --oauth-client-id and
    /// MCPR_OAUTH_CLIENT_SECRET; no browser
    #[arg(long, global = true, requires = "oauth_client_secret")]
    pub oauth_client_credentials: bool,

    /// Authorize as the client itself (the client credentials grant) with
    /// a signed JWT instead of a secret: the P-256 private key (PKCS#8
    /// PEM) in PATH signs an ES256 assertion per token request
    /// (private_key_jwt); needs --oauth-client-id; no browser
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        requires = "oauth_client_id",
        conflicts_with_all = ["oauth_client_credentials", "oauth_client_secret"]
    )]
    pub oauth_client_key: Option<std::path::PathBuf>,

    /// Bind the tokens to a key of this client's (DPoP, RFC 9449): a
    /// stolen token is useless without the key, kept with the tokens
    #[arg(long, global = true, requires = "oauth")]
    pub oauth_dpop: bool,

    /// Authorize as a workload with the identity token in PATH, read each
    /// time tokens are needed (workload identity federation: a Kubernetes
    /// service account token, a CI job's OIDC token); no browser
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        requires = "oauth",
        conflicts_with_all = ["oauth_client_credentials", "oauth_id_token_file"]
    )]
    pub oauth_jwt_bearer_file: Option<std::path::PathBuf>,

    /// Enterprise-managed authorization: the ID token in PATH (from the
    /// enterprise's single sign-on) is exchanged at --oauth-idp-token-url
    /// for a grant this client presents; needs --oauth-client-id; no browser
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        requires_all = ["oauth_client_id", "oauth_idp_token_url", "oauth_idp_client_id"],
        conflicts_with = "oauth_client_credentials"
    )]
    pub oauth_id_token_file: Option<std::path::PathBuf>,

    /// The enterprise identity provider's token endpoint
    #[arg(
        long,
        global = true,
        value_name = "URL",
        requires = "oauth_id_token_file"
    )]
    pub oauth_idp_token_url: Option<String>,

    /// This client's id at the enterprise identity provider
    #[arg(
        long,
        global = true,
        value_name = "ID",
        requires = "oauth_id_token_file"
    )]
    pub oauth_idp_client_id: Option<String>,

    /// Where the tokens live (default:
    /// $XDG_CONFIG_HOME/mcpr/tokens-SERVER.json, or ~/.config/mcpr/...)
    #[arg(long, global = true, value_name = "PATH", requires = "oauth")]
    pub token_file: Option<std::path::PathBuf>,

    /// Keep the tokens in Redis instead (redis://host:port/db or
    /// redis+unix:///path), shared with processes on other machines; one
    /// key per server. MCPR_TOKEN_REDIS keeps a password out of the
    /// process list
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "MCPR_TOKEN_REDIS",
        hide_env_values = true,
        requires = "oauth",
        conflicts_with = "token_file"
    )]
    pub token_redis: Option<String>,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// List the server's tools (every page)
    Tools,
    /// Call a tool
    Call {
        /// The tool's name
        name: String,
        /// Its arguments: a JSON object, `-` to read one from stdin, or
        /// key=value pairs (a value that parses as JSON is taken as JSON:
        /// n=3 on=true; any other is a string: text=hello). Default {}
        #[arg(value_name = "ARGS")]
        args: Vec<String>,
        #[command(flatten)]
        repeat: Repeat,
    },
    /// List the server's resources (every page)
    Resources,
    /// Read a resource
    Read {
        /// The resource's URI
        uri: String,
    },
    /// List the server's prompts (every page)
    Prompts,
    /// Get a prompt
    Prompt {
        /// The prompt's name
        name: String,
        /// Its arguments: a JSON object of strings, `-` to read one from
        /// stdin, or key=value pairs (values are strings)
        #[arg(value_name = "ARGS")]
        args: Vec<String>,
    },
    /// List the server's resource templates (every page)
    Templates,
    /// Complete an argument of a prompt or a resource template
    Complete {
        /// What to complete: prompt:NAME or resource:URI-TEMPLATE
        #[arg(value_name = "REF")]
        reference: String,
        /// The argument's name
        argument: String,
        /// What is typed so far
        #[arg(default_value = "")]
        value: String,
    },
    /// Set the level of the log messages the server sends
    LogLevel {
        /// debug, info, notice, warning, error, critical, alert or emergency
        level: String,
    },
    /// Subscribe to a resource and print its updates until Ctrl-C
    Subscribe {
        /// The resource's URI
        uri: String,
    },
    /// Send any request and print its result as JSON
    Rpc {
        /// The method, e.g. tools/list
        method: String,
        /// Its params: a JSON object, or `-` to read one from stdin
        #[arg(value_name = "JSON-PARAMS")]
        params: Option<String>,
    },
    /// Print a shell completion script: mcpr completions bash > ~/.local/share/bash-completion/completions/mcpr
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Check that the server answers
    Ping {
        #[command(flatten)]
        repeat: Repeat,
    },
    /// Authorize with OAuth now (with --oauth) and store the tokens
    Login,
    /// Run a scripted recovery demo against an embedded DEMO server (no server needed)
    Demo,
    /// The client command of the MCP conformance suite (scripts/conformance.sh):
    /// runs the scenario named by MCP_CONFORMANCE_SCENARIO against SERVER-URL
    #[command(hide = true)]
    Conformance {
        /// The scenario's server, appended by the conformance runner
        #[arg(value_name = "SERVER-URL")]
        server: String,
    },
}

/// Running one command several times in one process: one client, one
/// session, one circuit breaker, so recovery and the breaker show.
#[derive(Args, Clone, Copy)]
pub struct Repeat {
    /// Run it N times; the exit code is the last run's
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,

    /// Pause between runs, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub interval: u64,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::parse(s).map_err(|_| {
        format!("{s:?}: expected auto, legacy, modern or a revision this client speaks (2024-11-05 ... 2026-07-28)")
    })
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("not a number of seconds: {s:?}"))?;
    match Duration::try_from_secs_f64(secs) {
        // A call cannot be given no time at all: that is a typo, not a wish.
        Ok(d) if d.is_zero() => Err(format!("must be more than 0 seconds: {s:?}")),
        Ok(d) => Ok(d),
        Err(_) => Err(format!("not a usable duration: {s:?}")),
    }
}
