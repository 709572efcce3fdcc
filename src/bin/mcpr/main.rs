//! `mcpr`: a command-line MCP client on the recovering blocking client,
//! and `mcpr demo`, a scripted tour of the recoveries against an embedded
//! demo server. `mcpr --help` lists the exit codes.
#![forbid(unsafe_code)]

mod activity;
mod args;
mod auth;
mod commands;
mod conformance;
mod demo;
mod exit;
mod interrupt;
mod render;

use args::{Cli, Command, Connection, Repeat};
use auth::Opener;
use clap::Parser;
use commands::Job;
use exit::{Exit, Failure};
use mcp_recovery::blocking::stdio::StdioCommand;
use mcp_recovery::blocking::{Client, CompletionRef};
use mcp_recovery::core::{Action, Recovery};
use serde_json::Value;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    // Usage errors exit with clap's status 2, our "bad input".
    let cli = Cli::parse_from(url_first(std::env::args_os().collect()));
    interrupt::install();
    let exit = match cli.command {
        Command::Demo => demo::run(),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "mcpr", &mut script);
            // A reader that stops early (`| head`) is not an error.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Exit::Ok
        }
        Command::Conformance { server } => conformance::run(&server),
        Command::Login => match login(&cli.conn) {
            Ok(exit) => exit,
            Err(f) => {
                commands::report(&f, cli.conn.json, "");
                f.exit
            }
        },
        command => match prepare(&cli.conn, command) {
            Ok((client, job, repeat, opener)) => {
                let reauth = opener.map(|o| {
                    let client = &client;
                    move || auth::authorize(client, o)
                });
                let reauth = reauth
                    .as_ref()
                    .map(|f| f as &dyn Fn() -> Result<(), Failure>);
                let exit = commands::run(&client, &job, repeat, cli.conn.json, reauth);
                // Ends the session on the server (DELETE); nothing to report
                // if that fails: the result is already out.
                let _ = client.close();
                exit
            }
            Err(f) => {
                commands::report(&f, cli.conn.json, "");
                f.exit
            }
        },
    };
    ExitCode::from(exit.code())
}

/// Checks the input and builds the client, before anything is sent: bad
/// input never reaches the server.
fn prepare(
    conn: &Connection,
    command: Command,
) -> Result<(Client, Job, Repeat, Option<Opener>), Failure> {
    let once = Repeat {
        repeat: 1,
        interval: 0,
    };
    let (job, repeat) = match command {
        Command::Tools => (Job::Tools, once),
        Command::Resources => (Job::Resources, once),
        Command::Prompts => (Job::Prompts, once),
        Command::Read { uri } => (Job::Read { uri }, once),
        Command::Ping { repeat } => (Job::Ping, repeat),
        Command::Call { name, args, repeat } => {
            let args = arguments(&args, true)?.unwrap_or_else(|| Value::Object(Default::default()));
            (Job::Call { name, args }, repeat)
        }
        Command::Prompt { name, args } => {
            let args = arguments(&args, false)?;
            (Job::Prompt { name, args }, once)
        }
        Command::Templates => (Job::Templates, once),
        Command::Complete {
            reference,
            argument,
            value,
        } => {
            let reference = match reference.split_once(':') {
                Some(("prompt", name)) => CompletionRef::Prompt(name.to_owned()),
                Some(("resource", uri)) => CompletionRef::Resource(uri.to_owned()),
                _ => {
                    return Err(Failure::input(
                        "complete: REF is prompt:NAME or resource:URI-TEMPLATE",
                    ))
                }
            };
            let job = Job::Complete {
                reference,
                argument,
                value,
            };
            (job, once)
        }
        Command::LogLevel { level } => (Job::LogLevel { level }, once),
        Command::Subscribe { uri } => (Job::Subscribe { uri }, once),
        Command::Rpc { method, params } => {
            let params = match params.as_deref() {
                Some(p) => arguments(&[p.to_owned()], true)?,
                None => None,
            };
            (Job::Rpc { method, params }, once)
        }
        Command::Demo
        | Command::Login
        | Command::Conformance { .. }
        | Command::Completions { .. } => {
            unreachable!("handled by main")
        }
    };
    let subscribing = matches!(job, Job::Subscribe { .. });
    let (client, opener) = client(conn, subscribing.then_some(conn.json))?;
    Ok((client, job, repeat, opener))
}

/// `mcpr --oauth login`: the authorization flow, whatever the stored tokens.
fn login(conn: &Connection) -> Result<Exit, Failure> {
    let (client, opener) = client(conn, None)?;
    let opener = opener.ok_or_else(|| Failure::input("login needs --oauth"))?;
    auth::authorize(&client, opener)?;
    if conn.json {
        println!("{}", serde_json::json!({"ok": true}));
    } else {
        println!("authorized");
    }
    Ok(Exit::Ok)
}

/// Arguments as given: nothing; one JSON object (or `-`: one read from
/// stdin); or `key=value` pairs, whose values are JSON when they parse as
/// JSON and `typed` (tool arguments), strings otherwise.
fn arguments(args: &[String], typed: bool) -> Result<Option<Value>, Failure> {
    let object = |text: &str| -> Result<Option<Value>, Failure> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| Failure::input(format!("arguments are not JSON: {e}")))?;
        if !v.is_object() {
            return Err(Failure::input(
                "arguments must be a JSON object, like '{\"text\": \"hi\"}', or key=value pairs",
            ));
        }
        Ok(Some(v))
    };
    match args {
        [] => Ok(None),
        [dash] if dash == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), 16 << 20),
                &mut text,
            )
            .map_err(|e| Failure::input(format!("reading the arguments from stdin: {e}")))?;
            object(&text)
        }
        [one] if one.trim_start().starts_with('{') => object(one),
        pairs => {
            let mut map = serde_json::Map::new();
            for pair in pairs {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(Failure::input(format!(
                        "{:?}: expected key=value, a JSON object or -",
                        render::cell(pair, 40)
                    )));
                };
                let value = match serde_json::from_str::<Value>(value) {
                    Ok(v) if typed => v,
                    _ => Value::String(value.to_owned()),
                };
                if map.insert(key.to_owned(), value).is_some() {
                    return Err(Failure::input(format!("{key}= given twice")));
                }
            }
            Ok(Some(Value::Object(map)))
        }
    }
}

/// The client, and with `--oauth` how the authorization URL will be opened.
fn client(conn: &Connection, updates: Option<bool>) -> Result<(Client, Option<Opener>), Failure> {
    let (client, opener) = builder(conn)?;
    // `subscribe`: the server's updates come on the listening stream, and
    // are printed as they come (as JSON lines with --json).
    let client = match updates {
        Some(json) => client.listen(true).handler(commands::Updates { json }),
        None => client,
    };
    Ok((client.build()?, opener))
}

/// The client's builder for `conn`, and with `--oauth` how the
/// authorization URL will be opened.
fn builder(
    conn: &Connection,
) -> Result<(mcp_recovery::blocking::Builder, Option<Opener>), Failure> {
    if let Some(line) = &conn.stdio {
        if conn.oauth.oauth || conn.bearer.is_some() || !conn.headers.is_empty() {
            return Err(Failure::input(
                "--stdio: a server on stdio takes no --oauth, --bearer or --header (set its credentials in its environment)",
            ));
        }
        let mut builder = Client::stdio(StdioCommand::parse(line)?)
            .protocol(conn.protocol)
            .read_timeout(Duration::from_secs(60));
        if let Some(t) = conn.timeout {
            builder = builder.call_timeout(t);
        }
        if conn.verbose {
            builder = builder.on_recovery(log_recovery);
        }
        return Ok((builder, None));
    }
    let url = conn.url.as_deref().ok_or_else(|| {
        Failure::input("--url URL (or --stdio COMMAND) is required (or set MCPR_URL)")
    })?;
    let mut builder = Client::builder(url)
        .protocol(conn.protocol)
        .read_timeout(Duration::from_secs(60));
    for h in &conn.headers {
        let (name, value) = header(h)?;
        builder = builder.header(name, value);
    }
    if let Some(token) = &conn.bearer {
        builder = builder.bearer(token);
    }
    if let Some(t) = conn.timeout {
        builder = builder.call_timeout(t);
    }
    let mut opener = None;
    if conn.oauth.oauth {
        let o = Opener::from_env()?;
        builder = builder.oauth(auth::config(url, &conn.oauth, o)?);
        opener = Some(o);
    }
    if conn.verbose {
        builder = builder.on_recovery(log_recovery);
    }
    Ok((builder, opener))
}

/// `Name: value`. Errors name the header, never its value: header values
/// are often API keys.
fn header(h: &str) -> Result<(&str, &str), Failure> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| Failure::input("--header wants `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(Failure::input("--header: not a valid header name"));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Failure::input(format!(
            "--header {name}: control characters in the value"
        )));
    }
    if name.eq_ignore_ascii_case("authorization") {
        return Err(Failure::input("use --bearer for the Authorization header"));
    }
    Ok((name, value))
}

/// `mcpr URL COMMAND ...` (the MCP Inspector's order) is
/// `mcpr --url URL COMMAND ...`: a first argument that is an http(s) URL
/// is the server's.
fn url_first(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let is_url = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| a.starts_with("http://") || a.starts_with("https://"));
    if is_url {
        args.insert(1, "--url".into());
    }
    args
}

/// Whether a session was ready once: a wait for a session after that is a
/// reconnect worth a line, the first connect is not.
static HAD_SESSION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--verbose`: what the client decided, as it happens, in words.
fn log_recovery(action: &Action) {
    use std::sync::atomic::Ordering;
    match action {
        Action::SignalReconnect { generation } => {
            eprintln!("mcpr: session lost: re-initializing (session #{generation})")
        }
        Action::Negotiated {
            version,
            stateless,
            reason,
            ..
        } => {
            let wire = if *stateless { "stateless" } else { "handshake" };
            eprintln!("mcpr: speaking {version} ({wire} wire): {reason}")
        }
        Action::SessionReady { generation } => {
            HAD_SESSION.store(true, Ordering::Relaxed);
            eprintln!("mcpr: session #{generation} ready")
        }
        Action::Warning { message, .. } => eprintln!("mcpr: warning: {message}"),
        Action::SessionFailed { generation, error } => {
            eprintln!("mcpr: session #{generation} failed: {error}")
        }
        Action::AwaitReady { .. } if HAD_SESSION.load(Ordering::Relaxed) => {
            eprintln!("mcpr: waiting for the new session")
        }
        Action::RetryOnce { recovery, .. } => {
            let after = match recovery {
                Recovery::Auth => "a new token",
                Recovery::Session => "a new session",
                Recovery::Transport => "a connection failure",
                Recovery::Version => "the server named its protocol revision",
                _ => "a recovery",
            };
            eprintln!("mcpr: sending the call again after {after}")
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked_without_echoing_values() {
        assert_eq!(header("X-Trace: abc").ok(), Some(("X-Trace", "abc")));
        let e = header("X-Key=s3cr3t").err().map(|f| f.message);
        assert!(e.is_some_and(|m| !m.contains("s3cr3t")));
        assert!(header("Authorization: Bearer x").is_err());
        assert!(header("Bad Name: x").is_err());
    }

    #[test]
    fn arguments_are_an_object_or_pairs() {
        let args = |a: &[&str], typed| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            arguments(&a, typed)
        };
        assert!(args(&["{\"a\": 1}"], true).is_ok());
        assert!(args(&["{oops"], true).is_err());
        assert!(matches!(args(&[], true), Ok(None)));
        let typed = args(&["n=3", "on=true", "s=hi", "q=\"3\"", "e="], true)
            .ok()
            .flatten();
        assert_eq!(
            typed,
            Some(serde_json::json!({"n": 3, "on": true, "s": "hi", "q": "3", "e": ""}))
        );
        let strings = args(&["n=3"], false).ok().flatten();
        assert_eq!(strings, Some(serde_json::json!({"n": "3"})));
        assert!(args(&["[1]"], true).is_err(), "not key=value");
        assert!(args(&["a=1", "a=2"], true).is_err());
    }
}
