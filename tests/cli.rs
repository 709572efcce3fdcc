//! `mcpr` run as a process (the built binary, plain `std::process`) against
//! the real Python SDK peer: every subcommand, `--json` parsed, and the exit
//! code of each failure class that a real server can honestly produce.
//! Plus `mcpr demo`, the README's first command.

#[path = "support/balancer.rs"]
mod balancer;
mod common;

use balancer::Balancer;
use common::{wait_for, Kind, Mode, Peer, Redis};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const PY: Kind = Kind::Python {
    mode: Mode::Sse,
    idle: None,
};

/// What one `mcpr` run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().expect("mcpr ended by a signal"),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts the exit code, showing the output when it is wrong.
    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Each stdout line as JSON (`--json` prints one document per line).
    fn json(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn json_one(&self) -> Value {
        let mut all = self.json();
        assert_eq!(all.len(), 1, "{}", self.stdout);
        all.remove(0)
    }
}

/// `mcpr` with a clean environment (no URL or token from the user's).
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mcpr"));
    c.args(args)
        .env_remove("MCPR_URL")
        .env_remove("MCPR_BEARER")
        .env_remove("MCPR_STDIO")
        .stdin(Stdio::null());
    c
}

fn mcpr(args: &[&str]) -> Run {
    Run::from(command(args).output().expect("run mcpr"))
}

/// `mcpr --url <peer> ARGS...`
fn at(url: &str, args: &[&str]) -> Run {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    mcpr(&all)
}

#[test]
fn every_subcommand_against_the_python_peer() {
    let peer = Peer::start(PY);
    let url = peer.url();

    let tools = at(&url, &["tools"]).expect(0);
    assert!(tools.stdout.starts_with("NAME"), "{}", tools.stdout);
    let echo_row = tools.stdout.lines().find(|l| l.starts_with("echo "));
    assert!(
        echo_row.is_some_and(|l| l.contains("read-only")),
        "{}",
        tools.stdout
    );
    let tools = at(&url, &["--json", "tools"]).expect(0).json_one();
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo") && names.contains(&"counter_increment"));

    let call = at(&url, &["call", "echo", r#"{"text": "hi there"}"#]).expect(0);
    assert_eq!(call.stdout, "hi there\n");
    let call = at(&url, &["--json", "call", "add", r#"{"a": 2, "b": 40}"#]).expect(0);
    let call = call.json_one();
    assert_eq!(call["content"][0]["text"], "42");
    assert_eq!(call["isError"], false);

    // stderr is not a terminal here: progress comes as plain lines.
    let slow = at(&url, &["call", "slow", r#"{"steps": 3}"#]).expect(0);
    assert_eq!(slow.stdout, "done after 3 steps\n");
    for line in [
        "progress 1/3 step 1",
        "progress 2/3 step 2",
        "progress 3/3 step 3",
    ] {
        assert!(slow.stderr.lines().any(|l| l == line), "{}", slow.stderr);
    }

    let resources = at(&url, &["resources"]).expect(0);
    assert!(
        resources.stdout.contains("counter://total"),
        "{}",
        resources.stdout
    );
    let resources = at(&url, &["--json", "resources"]).expect(0).json_one();
    assert_eq!(resources["resources"][0]["uri"], "counter://total");

    assert_eq!(
        at(&url, &["read", "counter://total"]).expect(0).stdout,
        "0\n"
    );
    let read = at(&url, &["--json", "read", "counter://total"]).expect(0);
    assert_eq!(read.json_one()["contents"][0]["text"], "0");

    let prompts = at(&url, &["prompts"]).expect(0);
    let greet = prompts.stdout.lines().find(|l| l.starts_with("greet "));
    assert!(
        greet.is_some_and(|l| l.contains("name*")),
        "{}",
        prompts.stdout
    );
    let prompts = at(&url, &["--json", "prompts"]).expect(0).json_one();
    assert_eq!(prompts["prompts"][0]["name"], "greet");

    let prompt = at(&url, &["prompt", "greet", r#"{"name": "Ada"}"#]).expect(0);
    assert!(
        prompt.stdout.contains("user: Say hello to Ada."),
        "{}",
        prompt.stdout
    );
    let prompt = at(&url, &["--json", "prompt", "greet", r#"{"name": "Ada"}"#]).expect(0);
    assert_eq!(prompt.json_one()["messages"][0]["role"], "user");

    let ping = at(&url, &["ping"]).expect(0);
    assert!(ping.stdout.starts_with("ok ("), "{}", ping.stdout);
    // --repeat: one process, one client, one negotiation for all runs.
    // This server speaks 2026-07-28, which the default picks: no
    // handshake at all; asked for the handshake wire, one session.
    let before = peer.initializes();
    let pings = at(&url, &["--json", "ping", "--repeat", "3"])
        .expect(0)
        .json();
    assert_eq!(pings.len(), 3);
    assert!(pings.iter().all(|p| p["ok"] == true), "{pings:?}");
    assert_eq!(
        peer.initializes(),
        before,
        "the stateless wire has no handshake"
    );
    let legacy = ["--protocol", "legacy", "--json", "ping", "--repeat", "3"];
    let pings = at(&url, &legacy).expect(0).json();
    assert!(pings.iter().all(|p| p["ok"] == true), "{pings:?}");
    assert_eq!(peer.initializes(), before + 1, "one session for three runs");

    // Exit 1: the server answered, with an error.
    let tool_error = at(&url, &["call", "add", r#"{"a": "x"}"#]).expect(1);
    assert!(
        tool_error.stderr.contains("tool error"),
        "{}",
        tool_error.stderr
    );
    let rpc_error = at(&url, &["--json", "prompt", "no_such_prompt"]).expect(1);
    assert!(
        rpc_error.stderr.starts_with("mcpr: server error: "),
        "{}",
        rpc_error.stderr
    );
    assert_eq!(rpc_error.json_one()["error"]["exit_code"], 1);

    // Exit 8: the call's own timeout.
    let args = [
        "--timeout",
        "0.3",
        "call",
        "counter_increment",
        r#"{"delay_ms": 5000}"#,
    ];
    let slow = at(&url, &args).expect(8);
    assert!(
        slow.stderr.starts_with("mcpr: timed out"),
        "{}",
        slow.stderr
    );
}

#[test]
fn bad_input_exits_2_and_sends_nothing() {
    // A listener that no one should connect to.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    // A client key that is no P-256 key (its text must never be echoed),
    // and one that is not there.
    let key = std::env::temp_dir().join(format!("mcpr-bad-key-{}.pem", std::process::id()));
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nsecret-value\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let key = key.to_str().unwrap();
    let oauth_key: &[&str] = &[
        "--url",
        &url,
        "--oauth",
        "--oauth-client-id",
        "svc",
        "--oauth-client-key",
        key,
        "ping",
    ];
    let no_key: &[&str] = &[
        "--url",
        &url,
        "--oauth",
        "--oauth-client-id",
        "svc",
        "--oauth-client-key",
        "/nonexistent/key.pem",
        "ping",
    ];
    let cases: &[&[&str]] = &[
        oauth_key,
        no_key,
        &["--url", &url, "call", "echo", "{not json"],
        &["--url", &url, "call", "echo", "[1, 2]"],
        &["--url", &url, "prompt", "greet", "\"Ada\""],
        &["--url", &url, "--header", "X-Key=secret-value", "ping"],
        &["--url", &url, "--header", "Authorization: Bearer x", "ping"],
        &["--url", &url, "ping", "--repeat", "0"],
        &["--url", &url, "--timeout", "0", "ping"],
        &["--url", &url, "no-such-command"],
        &["--url", "not a url", "ping"],
        &["--url", "ftp://127.0.0.1/mcp", "ping"],
        &["ping"],
    ];
    for args in cases {
        let run = mcpr(args).expect(2);
        assert!(!run.stderr.contains("secret-value"), "{}", run.stderr);
        // Ours are one line; clap's usage errors are its own format.
        if run.stderr.starts_with("mcpr: ") {
            assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
            assert!(
                run.stderr.starts_with("mcpr: bad input: "),
                "{}",
                run.stderr
            );
        }
    }
    let _ = std::fs::remove_file(key);
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("bad input reached the server: {other:?}"),
    }
}

#[test]
fn server_down_is_unreachable_then_the_breaker_opens() {
    let mut peer = Peer::start(PY);
    let url = peer.url();
    peer.kill();
    let run = at(&url, &["ping"]).expect(7);
    assert!(
        run.stderr.starts_with("mcpr: server unreachable: "),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);

    // Four runs in one process: three counted failures open the breaker
    // (threshold 3), and the fourth fails fast without touching the network.
    let args = [
        "--json",
        "call",
        "echo",
        r#"{"text": "x"}"#,
        "--repeat",
        "4",
    ];
    let run = at(&url, &args).expect(5);
    let codes: Vec<u64> = run
        .json()
        .iter()
        .map(|l| l["error"]["exit_code"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(codes, [7, 7, 7, 5], "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("mcpr: run 4/4: circuit open: "),
        "{}",
        run.stderr
    );
}

#[test]
fn killed_mid_call_is_outcome_uncertain_and_ran_once() {
    let mut peer = Peer::start(PY);
    let url = peer.url();
    let args = [
        "--url",
        url.as_str(),
        "call",
        "counter_increment",
        r#"{"delay_ms": 10000}"#,
    ];
    let child = command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcpr");
    let child = KillOnDrop(Some(child));
    // The tool has run (the counter moved) and is waiting: cut it now.
    peer.await_counter(1, Duration::from_secs(20));
    peer.kill();
    let run = Run::from(child.wait()).expect(6);
    assert!(
        run.stderr.starts_with("mcpr: outcome uncertain: "),
        "{}",
        run.stderr
    );
    peer.start_again();
    assert_eq!(peer.counter(), 1, "ran once, never replayed");
    assert_eq!(at(&url, &["call", "counter_get"]).expect(0).stdout, "1\n");
}

#[test]
fn refused_token_needs_reauth_and_is_never_printed() {
    let peer = BearerPeer::start("the-right-token");
    let url = peer.url();
    for args in [
        &["--bearer", "s3cr3t", "ping"][..],
        &[
            "--bearer",
            "s3cr3t",
            "--json",
            "-v",
            "call",
            "echo",
            r#"{"text": "x"}"#,
        ],
        &["ping"],
    ] {
        let run = at(&url, args).expect(4);
        let last = run.stderr.lines().last().unwrap_or("");
        assert!(
            last.starts_with("mcpr: needs re-authorization: "),
            "{}",
            run.stderr
        );
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("s3cr3t"), "the token was printed: {all}");
    }
    // The same token from the environment.
    let run = Run::from(
        command(&["--url", &url, "ping"])
            .env("MCPR_BEARER", "s3cr3t")
            .output()
            .expect("run mcpr"),
    );
    let run = run.expect(4);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("s3cr3t"));
    at(&url, &["--bearer", "the-right-token", "ping"]).expect(0);
}

/// `mcpr --oauth` with `$XDG_CONFIG_HOME` in a scratch directory and
/// `MCPR_OAUTH_OPEN=follow` in place of a browser.
fn oauth(config: &Path, url: &str, open: &str, args: &[&str]) -> Run {
    let mut all = vec!["--url", url, "--oauth"];
    all.extend_from_slice(args);
    Run::from(
        command(&all)
            .env("XDG_CONFIG_HOME", config)
            .env("MCPR_OAUTH_OPEN", open)
            .env_remove("MCPR_OAUTH_CLIENT_SECRET")
            .output()
            .expect("run mcpr"),
    )
}

/// Against the Python SDK's own authorization server: the first command
/// finds no tokens, runs the authorization flow (dynamic registration,
/// PKCE, the redirect delivered to the loopback listener) and is retried;
/// the tokens land in `$XDG_CONFIG_HOME/mcpr/tokens-<canonical URL, escaped>.json`
/// (0600, directory 0700). Later runs use them without a flow; an expired
/// access token costs one refresh; a revoked refresh token one more flow.
/// No token is ever printed.
#[test]
fn oauth_authorizes_once_stores_refreshes_and_reauthorizes() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 3600.0 });
    let url = peer.url();
    let config = std::env::temp_dir().join(format!("mcpr-cli-oauth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&config);
    let file = config.join("mcpr").join(format!(
        "tokens-http_3A_2F_2F127.0.0.1_3A{}_2Fmcp.json",
        peer.port
    ));
    const FLOW: &str = "to authorize, open ";

    let run = oauth(
        &config,
        &url,
        "follow",
        &["call", "echo", r#"{"text": "hi"}"#],
    )
    .expect(0);
    assert_eq!(run.stdout, "hi\n");
    assert!(run.stderr.contains(FLOW), "{}", run.stderr);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600, "tokens readable by their owner only");
        assert_eq!(mode(&config.join("mcpr")), 0o700);
    }
    let tokens: Value = serde_json::from_slice(&std::fs::read(&file).expect("token file"))
        .expect("token file is JSON");
    let secrets =
        |t: &Value| ["access_token", "refresh_token"].map(|k| t[k].as_str().expect(k).to_owned());
    let first = secrets(&tokens);

    // Stored tokens: no flow (and no browser: `browser` mode would open one).
    let run = oauth(&config, &url, "browser", &["--json", "tools"]).expect(0);
    assert!(!run.stderr.contains(FLOW), "{}", run.stderr);
    assert!(run.json_one()["tools"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));

    // Expired access token: one refresh, no flow.
    peer.hook("/test/expire-access");
    let run = oauth(&config, &url, "browser", &["ping"]).expect(0);
    assert!(!run.stderr.contains(FLOW), "{}", run.stderr);
    assert_eq!(peer.refreshes(), 1);

    // Refresh token revoked: the flow once more, then the command.
    peer.hook("/test/revoke-refresh");
    peer.hook("/test/expire-access");
    let run = oauth(
        &config,
        &url,
        "follow",
        &["call", "echo", r#"{"text": "again"}"#],
    )
    .expect(0);
    assert_eq!(run.stdout, "again\n");
    assert!(run.stderr.contains(FLOW), "{}", run.stderr);
    assert_eq!(peer.refreshes(), 2, "one refused refresh, then the flow");
    // The second flow used the client registered by the first (on its
    // redirect URI): one registration in all.
    assert_eq!(peer.count("registrations"), 1);
    let again: Value = serde_json::from_slice(&std::fs::read(&file).expect("token file"))
        .expect("token file is JSON");
    assert_eq!(again["client_id"], tokens["client_id"]);

    // `login` with a token file of one's own.
    let own = config.join("own.json");
    let run = oauth(
        &config,
        &url,
        "follow",
        &["--token-file", own.to_str().unwrap(), "login"],
    )
    .expect(0);
    assert_eq!(run.stdout, "authorized\n");
    let last: Value =
        serde_json::from_slice(&std::fs::read(&own).expect("own token file")).expect("JSON");
    for secret in first.iter().chain(secrets(&last).iter()) {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains(secret.as_str()), "a token was printed");
    }
    let _ = std::fs::remove_dir_all(&config);
}

/// `--oauth-dpop` against a server that binds its tokens (the Python SDK's
/// OAuth server behind `tests/peers/dpop_gate.py`, a new nonce every 2
/// requests): the first run authorizes and stores the tokens with their
/// key; later runs (other processes) present them with that key, and an
/// expired token is refreshed with a proof of it. The server accepted
/// every proof and never saw a bound token as Bearer.
#[test]
fn oauth_dpop_tokens_and_their_key_serve_later_processes() {
    let peer = Peer::start(Kind::PythonDpop { nonce_every: 2 });
    let url = peer.url();
    let config = std::env::temp_dir().join(format!("mcpr-cli-dpop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&config);
    let dpop = |args: &[&str]| {
        let mut all = vec!["--oauth-dpop"];
        all.extend_from_slice(args);
        oauth(&config, &url, "follow", &all)
    };
    let run = dpop(&["call", "echo", r#"{"text": "bound"}"#]).expect(0);
    assert_eq!(run.stdout, "bound\n");
    let file = config.join("mcpr").join(format!(
        "tokens-http_3A_2F_2F127.0.0.1_3A{}_2Fmcp.json",
        peer.port
    ));
    let tokens: Value = serde_json::from_slice(&std::fs::read(&file).expect("token file"))
        .expect("token file is JSON");
    assert_eq!(tokens["token_type"], "DPoP");
    let key = tokens["dpop_key"]
        .as_str()
        .expect("the key beside the tokens");
    dpop(&["ping"]).expect(0);
    peer.hook("/test/expire-access");
    let run = dpop(&["--json", "tools"]).expect(0);
    assert_eq!(peer.refreshes(), 1);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains(key));
    assert_eq!(peer.count("dpop_refused"), 0);
    assert_eq!(peer.count("bearer_presented"), 0);
    assert!(peer.count("dpop_nonce_challenges") > 0);
    let _ = std::fs::remove_dir_all(&config);
}

/// A server that refuses the token and offers no OAuth metadata: the
/// authorization flow cannot start, exit 4, with one line saying so.
#[test]
fn oauth_that_cannot_authorize_exits_4() {
    let peer = BearerPeer::start("the-right-token");
    let config = std::env::temp_dir().join(format!("mcpr-cli-oauth-fail-{}", std::process::id()));
    let run = oauth(&config, &peer.url(), "follow", &["ping"]).expect(4);
    let last = run.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("mcpr: authorization failed: "),
        "{}",
        run.stderr
    );
    oauth(&config, &peer.url(), "follow", &["login"]).expect(4);
    // `login` is for --oauth only; a bad opener is bad input.
    at(&peer.url(), &["login"]).expect(2);
    oauth(&config, &peer.url(), "firefox", &["ping"]).expect(2);
    let _ = std::fs::remove_dir_all(&config);
}

/// Every session forgotten as soon as it is made: two real Python servers
/// behind a balancer without session affinity (`support/balancer.rs`), the
/// handshake answered by one, the call asked of the other, which never
/// heard of the session. The client re-initializes once, loses that
/// session too, and gives up: exit 3, saying what the server said.
/// (An idle timeout far below a round trip made this likely, not certain:
/// a client quick enough between its requests kept the session.)
/// Sessions only exist on the handshake wire, so that is asked for (on the
/// default, this server speaks the stateless one).
#[test]
fn a_server_that_forgets_every_session_at_once_is_exit_3() {
    let made = Peer::start(PY);
    let other = Peer::start(PY);
    let lb = Balancer::split(made.port, other.port);
    let args = ["--protocol", "legacy", "call", "echo", r#"{"text": "x"}"#];
    let run = at(&lb.url(), &args).expect(3);
    assert!(
        run.stderr
            .starts_with("mcpr: session lost and not recovered: "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Session not found"), "{}", run.stderr);
}

/// Ctrl-C during a tool call: the call is cancelled (the server stops the
/// tool: it sees `notifications/cancelled`), the session is deleted, exit
/// 130.
#[test]
fn ctrl_c_cancels_the_running_call_and_exits_130() {
    let peer = Peer::start(PY);
    let child = command(&["--url", &peer.url(), "call", "slow", r#"{"steps": 500}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcpr");
    // Interrupted while the tool runs on the server.
    wait_for(Duration::from_secs(20), "the tool to start", || {
        peer.slow_started() == 1
    });
    // SAFETY: signalling our own child, whose pid we hold.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("mcpr ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    peer.await_cancelled(1, Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "the session deleted", || {
        peer.live_sessions() == 0
    });
}

#[test]
fn demo_recovers_everything_and_exits_0() {
    let run = mcpr(&["demo"]).expect(0);
    let out = &run.stdout;
    assert!(
        out.contains("summary: 4/4 scenarios went as expected"),
        "{out}"
    );
    for seen in [
        "server: 404 Session not found",
        "client: SignalReconnect",
        "client: SessionReady",
        "client: RetryOnce",
        "server: restarting",
        "the server saw exactly 1 new initialize",
        "OutcomeUncertain",
        "it ran exactly once",
    ] {
        assert!(out.contains(seen), "missing {seen:?} in\n{out}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let help = mcpr(&["--help"]).expect(0).stdout;
    assert!(help.contains("Exit codes:"), "{help}");
    for code in 0..=8 {
        assert!(
            help.lines().any(|l| l.starts_with(&format!("  {code}  "))),
            "exit code {code} missing from --help:\n{help}"
        );
    }
}

/// A child process killed if the test fails before it ends.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn wait(mut self) -> Output {
        let child = self.0.take().expect("child");
        child.wait_with_output().expect("wait for mcpr")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The Python peer with `--require-bearer` (the shared harness has no
/// switch for it). Killed when dropped.
struct BearerPeer {
    child: KillOnDrop,
    port: u16,
    state: PathBuf,
}

impl BearerPeer {
    fn start(token: &str) -> BearerPeer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let python = dir.join(".venv/bin/python");
        assert!(
            python.exists(),
            "Python peer not installed ({}): run `bash scripts/peers.sh` \
             (the README's test command does)",
            python.display()
        );
        // One directory per peer: two tests in this binary run at once, and
        // one removing a shared directory broke the other's counters.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let state =
            std::env::temp_dir().join(format!("mcpr-cli-bearer-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&state).expect("state dir");
        let mut child = Command::new(python)
            .arg(dir.join("python_server.py"))
            .args(["--port", "0", "--require-bearer", token, "--state"])
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python peer");
        let stdout = child.stdout.take().expect("peer stdout");
        let child = KillOnDrop(Some(child));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().expect("READY <port>"));
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the Python peer did not start within 30 s");
        BearerPeer { child, port, state }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }
}

impl Drop for BearerPeer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Eight processes share one token store (a script running `mcpr` in
/// parallel) when the access token has expired, four calls each: the
/// Python SDK's authorization server rotates refresh tokens, so only one
/// refresh can win. Under the store's lock one process refreshes and the
/// others take its token: exactly one refresh grant, no new authorization,
/// 32 of 32 calls answered. `store` adds the store's flags.
fn processes_refresh_once(store: &[&str], before_start: impl FnOnce()) {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 3600.0 });
    let url = peer.url();
    let config = std::env::temp_dir().join(format!(
        "mcpr-cli-shared-{}-{}",
        std::process::id(),
        peer.port
    ));
    let _ = std::fs::remove_dir_all(&config);
    const FLOW: &str = "to authorize, open ";
    let mut first = store.to_vec();
    first.push("ping");
    oauth(&config, &url, "follow", &first).expect(0);
    peer.hook("/test/expire-access");
    let before = peer.refreshes();
    before_start();
    let answered = eight_processes(&config, Some("follow"), |i| {
        let mut args = vec!["--url".to_owned(), url.clone(), "--oauth".to_owned()];
        args.extend(store.iter().map(|s| s.to_string()));
        args.extend(["call", "echo"].map(String::from));
        args.push(format!(r#"{{"text": "p{i}"}}"#));
        args.extend(["--repeat", "4"].map(String::from));
        args
    })
    .into_iter()
    .enumerate()
    .map(|(i, (stdout, stderr))| {
        assert!(
            !stderr.contains(FLOW),
            "process {i} authorized again: {stderr}"
        );
        answered_by(&stdout, &format!("p{i}"))
    })
    .sum::<usize>();
    assert_eq!(answered, 32);
    assert_eq!(peer.refreshes() - before, 1, "one refresh grant for all");
    let _ = std::fs::remove_dir_all(&config);
}

/// Starts eight `mcpr` processes at once (`args(i)` for the i-th), with
/// `$XDG_CONFIG_HOME` at `config` and `MCPR_OAUTH_OPEN` at `open`; each must
/// exit 0. Their stdout and stderr, in order.
fn eight_processes(
    config: &Path,
    open: Option<&str>,
    args: impl Fn(usize) -> Vec<String>,
) -> Vec<(String, String)> {
    let children: Vec<Child> = (0..8)
        .map(|i| {
            let args = args(i);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut c = command(&args);
            c.env("XDG_CONFIG_HOME", config);
            if let Some(o) = open {
                c.env("MCPR_OAUTH_OPEN", o);
            }
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start mcpr")
        })
        .collect();
    children
        .into_iter()
        .enumerate()
        .map(|(i, child)| {
            let out = child.wait_with_output().expect("mcpr ends");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(0), "process {i}: {stderr}");
            (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
        })
        .collect()
}

/// The `--repeat` lines of `stdout` that answered `text`.
fn answered_by(stdout: &str, text: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.ends_with(&format!(": {text}")))
        .count()
}

#[test]
fn processes_sharing_a_token_file_refresh_once() {
    processes_refresh_once(&[], || {});
}

/// The same on a Redis store (what processes on several machines share),
/// with the refresh lock left behind by a holder killed in the middle of
/// its refresh: it expires, one process takes over, no call fails and no
/// token is lost.
#[test]
fn processes_sharing_a_redis_store_refresh_once_past_a_dead_holder() {
    let redis = Redis::start();
    let url = redis.url();
    processes_refresh_once(&["--token-redis", &url], || {
        // What a killed holder leaves: its lock, for 1.5 s more.
        let keys = redis.cli(&["KEYS", "mcpr:tokens:*"]);
        let key = keys.lines().next().expect("the stored tokens").to_owned();
        assert_eq!(
            redis.cli(&[
                "SET",
                &format!("{key}:lock"),
                "killed-holder",
                "NX",
                "PX",
                "1500"
            ]),
            "OK"
        );
    });
    // No lock left behind by the processes themselves.
    assert_eq!(redis.cli(&["KEYS", "*:lock"]), "");
}

/// A grant with nobody at hand is single-flight across processes too:
/// eight `mcpr` processes sharing a token file, started at once with no
/// tokens, authorize by enterprise-managed authorization (the Python SDK's
/// jwt-bearer grant for ID-JAGs, an identity provider of the test's own).
/// Under the store's lock one process exchanges the ID token and gets
/// the access token; the others find it in the file: exactly one token
/// exchange and one grant, 32 of 32 calls answered. Once it expires, the
/// same again: one more of each.
#[test]
fn processes_sharing_a_token_file_run_an_unattended_grant_once() {
    let peer = Peer::start(Kind::PythonEnterprise);
    let url = peer.url();
    let config = std::env::temp_dir().join(format!(
        "mcpr-cli-enterprise-{}-{}",
        std::process::id(),
        peer.port
    ));
    let _ = std::fs::remove_dir_all(&config);
    std::fs::create_dir_all(&config).unwrap();
    let id_token = config.join("id_token");
    let sso = ureq::get(&format!("http://127.0.0.1:{}/test/id-token", peer.port))
        .call()
        .expect("id token")
        .body_mut()
        .read_to_string()
        .expect("id token body");
    std::fs::write(&id_token, sso).unwrap();
    let idp = format!("http://127.0.0.1:{}/idp/token", peer.port);
    let id_token = id_token.to_str().unwrap().to_owned();
    let wave = || {
        let outputs = eight_processes(&config, None, |i| {
            [
                "--url",
                &url,
                "--oauth",
                "--oauth-client-id",
                "enterprise-client",
                "--oauth-client-secret",
                "enterprise-secret",
                "--oauth-id-token-file",
                &id_token,
                "--oauth-idp-token-url",
                &idp,
                "--oauth-idp-client-id",
                "idp-client",
                "call",
                "echo",
                &format!(r#"{{"text": "e{i}"}}"#),
                "--repeat",
                "4",
            ]
            .map(String::from)
            .to_vec()
        });
        let mut answered = 0;
        for (i, (stdout, stderr)) in outputs.into_iter().enumerate() {
            assert!(!stderr.contains("enterprise-secret"), "{stderr}");
            answered += answered_by(&stdout, &format!("e{i}"));
        }
        assert_eq!(answered, 32);
    };
    wave();
    assert_eq!(
        (peer.count("token_exchanges"), peer.count("id_jag_grants")),
        (1, 1),
        "one grant for all eight"
    );
    peer.hook("/test/expire-access");
    wave();
    assert_eq!(
        (peer.count("token_exchanges"), peer.count("id_jag_grants")),
        (2, 2),
        "one more once it expired"
    );
    let _ = std::fs::remove_dir_all(&config);
}

/// A URL without its `/mcp` path answers 404 to everything: that is the
/// wrong URL (exit 7, said so), not a lost session. The URL may come first,
/// as the MCP Inspector takes it; `-v` says what it tried in words.
#[test]
fn a_wrong_path_says_so_and_the_url_may_come_first() {
    let peer = Peer::start(PY);
    let wrong = format!("http://127.0.0.1:{}/not-mcp", peer.port);
    let run = mcpr(&[&wrong, "-v", "tools"]).expect(7);
    assert!(run.stderr.contains("not an MCP endpoint"), "{}", run.stderr);
    assert!(run.stderr.contains("often /mcp"), "{}", run.stderr);
    assert!(run.stderr.contains("mcpr: wrong URL: "), "{}", run.stderr);
    assert!(!run.stderr.contains("session lost"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("session not established"),
        "{}",
        run.stderr
    );
    // The right URL, first.
    let run = mcpr(&[&peer.url(), "-v", "call", "echo", r#"{"text": "hi"}"#]).expect(0);
    assert_eq!(run.stdout, "hi\n");
    assert!(run.stderr.contains("speaking 2026-07-28"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("waiting for the new session"),
        "{}",
        run.stderr
    );
}

#[test]
fn stdio_server_as_a_child_process() {
    let peer = common::stdio::StdioPeer::new(common::stdio::Sdk::Python);
    let python = common::python_bin(&common::peers_dir());
    let line = format!(
        "{} {} --stdio --state {}",
        python.display(),
        common::peers_dir().join("python_server.py").display(),
        peer.state().display()
    );
    let r = mcpr(&[
        "--stdio",
        &line,
        "--json",
        "call",
        "add",
        r#"{"a": 2, "b": 3}"#,
    ])
    .expect(0);
    assert_eq!(r.json_one()["content"][0]["text"], "5");
    let r = mcpr(&["--stdio", &line, "tools"]).expect(0);
    assert!(r.stdout.contains("counter_increment"), "{}", r.stdout);
    assert_eq!(peer.count("starts"), 2, "one child per run");
    // Credentials for a stdio server live in its environment.
    let r = mcpr(&["--stdio", &line, "--bearer", "x", "tools"]).expect(2);
    assert!(r.stderr.contains("environment"), "{}", r.stderr);
    // A server that exits at once: its own words, exit 7.
    let bad = format!(
        "{} {} --stdio",
        python.display(),
        common::peers_dir().join("python_server.py").display()
    );
    let r = mcpr(&["--stdio", &bad, "tools"]).expect(7);
    assert!(r.stderr.contains("required: --state"), "{}", r.stderr);
}

#[test]
fn arguments_as_pairs_or_stdin_and_the_rest_of_the_protocol() {
    let peer = Peer::start(PY);
    let url = peer.url();
    // The tools table names each parameter, its type, whether required.
    let tools = at(&url, &["tools"]).expect(0);
    assert!(
        tools.stdout.contains("a: integer*, b: integer*"),
        "{}",
        tools.stdout
    );
    // key=value, typed as JSON when they parse.
    assert_eq!(
        at(&url, &["call", "add", "a=2", "b=40"]).expect(0).stdout,
        "42\n"
    );
    assert_eq!(
        at(&url, &["call", "echo", "text=hello world"])
            .expect(0)
            .stdout,
        "hello world\n"
    );
    // `-`: a JSON object on stdin.
    let mut child = command(&["--url", &url, "call", "echo", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mcpr");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), br#"{"text": "piped"}"#).unwrap();
    drop(child.stdin.take());
    let out = Run::from(child.wait_with_output().unwrap()).expect(0);
    assert_eq!(out.stdout, "piped\n");
    // Bad pairs are bad input, nothing sent.
    at(&url, &["call", "add", "a"]).expect(2);
    at(&url, &["call", "add", "a=1", "a=2"]).expect(2);
    // Prompt arguments as pairs are strings.
    let p = at(&url, &["prompt", "greet", "name=42"]).expect(0);
    assert!(p.stdout.contains("Say hello to 42"), "{}", p.stdout);

    let t = at(&url, &["--json", "templates"]).expect(0).json_one();
    assert_eq!(
        t["resourceTemplates"][0]["uriTemplate"],
        "greeting://{name}"
    );
    let c = at(
        &url,
        &[
            "--protocol",
            "legacy",
            "complete",
            "prompt:greet",
            "name",
            "A",
        ],
    )
    .expect(0);
    assert_eq!(c.stdout, "Ada\nAlan\n");
    at(&url, &["complete", "greet", "name"]).expect(2);
    at(&url, &["--protocol", "legacy", "log-level", "debug"]).expect(0);
    assert_eq!(peer.count("set_level"), 1);
    let r = at(&url, &["rpc", "tools/list"]).expect(0).json_one();
    assert!(r["tools"].is_array());
    at(&url, &["rpc", "no/such/method"]).expect(1);
    let bash = mcpr(&["completions", "bash"]).expect(0);
    assert!(bash.stdout.contains("mcpr"), "{}", bash.stdout);

    // subscribe prints the update the server sends, until Ctrl-C.
    let mut child = command(&[
        "--url",
        &url,
        "--protocol",
        "legacy",
        "--json",
        "subscribe",
        "counter://total",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start mcpr");
    let pid = child.id() as i32;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).expect("an update");
    assert_eq!(line.trim(), r#"{"updated":"counter://total"}"#);
    assert_eq!(peer.count("subscribe"), 1);
    // SAFETY: signalling our own child, whose pid we hold.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(peer.count("unsubscribe"), 1);
}
