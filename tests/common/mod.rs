//! Real MCP servers for the integration tests: the official Python SDK and
//! the official TypeScript SDK, installed pinned by `scripts/peers.sh` (the
//! README's test command runs it). A missing peer fails the test loudly.
#![allow(dead_code)] // each test binary uses its own part of this

#[path = "../support/counting_proxy.rs"]
pub mod counting_proxy;
pub mod scenarios;
pub mod stdio;
pub mod wires;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Which server, in which mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `mcp==2.3.0` MCPServer; `idle` = `session_idle_timeout` seconds.
    Python { mode: Mode, idle: Option<f64> },
    /// `@modelcontextprotocol/sdk@1.32.2` with express.
    Ts { mode: Mode },
    /// The Python peer as a protected resource with its own OAuth server
    /// (`mcp.server.auth`): access tokens live `access_ttl` seconds,
    /// refresh tokens rotate.
    PythonAuth { access_ttl: f64 },
    /// [`Kind::PythonAuth`] with DPoP-bound tokens (`tests/peers/dpop_gate.py`):
    /// proofs checked at the token endpoint and the MCP endpoint, the
    /// server's nonce required and changed every `nonce_every` accepted
    /// requests (0: no nonce).
    PythonDpop { nonce_every: u32 },
    /// [`Kind::PythonAuth`] taking ID-JAGs at its token endpoint (the SDK's
    /// jwt-bearer grant, SEP-990), with an enterprise identity provider of
    /// its own under `/idp` (`tests/peers/enterprise_idp.py`).
    PythonEnterprise,
    /// The Python peer (SSE) keeping its events for resumption: streams
    /// resume with `Last-Event-ID`, and `polled_increment` closes its
    /// response stream before answering.
    PythonResumable,
    /// `@modelcontextprotocol/server@2.4.0` (TypeScript SDK v2): the
    /// 2026-07-28 wire, and the handshake wire too unless `modern_only`.
    Ts2 { modern_only: bool },
    /// The Python peer (JSON) marking listings and reads fresh for
    /// `ttl_ms` (2026-07-28 cache hints) and counting the POSTs it gets.
    PythonCaching { ttl_ms: u64 },
    /// The Python peer (SSE) over HTTPS, its certificate from a CA it
    /// makes at start ([`Peer::ca_pem`]).
    PythonTls,
    /// [`Kind::PythonTls`] answering `Connection: close` to everything (a
    /// new connection, and TLS handshake, per request), through
    /// `benches/clients/tls_peer.py`, which also reports the handshakes,
    /// full and resumed ([`Peer::tls_handshakes`]).
    PythonTlsClose,
}

/// How the server answers POSTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `text/event-stream` responses.
    Sse,
    /// `application/json` responses.
    Json,
    /// No sessions at all.
    Stateless,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Sse => "sse",
            Mode::Json => "json",
            Mode::Stateless => "stateless",
        }
    }
}

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// A running peer; killed when dropped.
pub struct Peer {
    pub kind: Kind,
    pub port: u16,
    state: PathBuf,
    child: Option<Child>,
}

impl Peer {
    /// Starts `kind` on a free loopback port.
    pub fn start(kind: Kind) -> Peer {
        let state = std::env::temp_dir().join(format!(
            "mcp-recovery-peer-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state dir");
        let mut peer = Peer {
            kind,
            port: 0,
            state,
            child: None,
        };
        peer.spawn();
        peer
    }

    fn spawn(&mut self) {
        let dir = peers_dir();
        let mut cmd = match self.kind {
            Kind::PythonCaching { ttl_ms } => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py"))
                    .args(["--mode", "json", "--count-posts"])
                    .args(["--cache-ttl-ms", &ttl_ms.to_string()]);
                c
            }
            Kind::PythonTlsClose => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("../../benches/clients/tls_peer.py"))
                    .arg("--close")
                    .arg(dir.join("python_server.py"))
                    .args(["--mode", "sse", "--tls"]);
                c
            }
            Kind::PythonTls => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py"))
                    .args(["--mode", "sse", "--tls"]);
                c
            }
            Kind::PythonResumable => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py"))
                    .args(["--mode", "sse", "--resumable"]);
                c
            }
            Kind::PythonAuth { access_ttl } => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py"))
                    .args(["--mode", "sse", "--auth"])
                    .args(["--access-ttl", &access_ttl.to_string()]);
                c
            }
            Kind::PythonEnterprise => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py")).args([
                    "--mode",
                    "sse",
                    "--auth",
                    "--enterprise",
                ]);
                c
            }
            Kind::PythonDpop { nonce_every } => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py"))
                    .args(["--mode", "sse", "--auth", "--dpop"])
                    .args(["--dpop-nonce-every", &nonce_every.to_string()]);
                c
            }
            Kind::Python { mode, idle } => {
                let mut c = Command::new(python_bin(&dir));
                c.arg(dir.join("python_server.py"))
                    .args(["--mode", mode.arg()]);
                if let Some(s) = idle {
                    c.args(["--idle-timeout", &s.to_string()]);
                }
                c
            }
            Kind::Ts2 { modern_only } => {
                assert!(
                    dir.join("node_modules/@modelcontextprotocol/server")
                        .exists(),
                    "TypeScript SDK v2 peer not installed: run `bash scripts/peers.sh` \
                     (the README's test command does)"
                );
                let mut c = Command::new("node");
                c.arg(dir.join("ts2_server.mjs"));
                if modern_only {
                    c.arg("--modern-only");
                }
                c
            }
            Kind::Ts { mode } => {
                assert!(
                    dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
                    "TypeScript peer not installed: run `bash scripts/peers.sh` \
                     (the README's test command does)"
                );
                let mut c = Command::new("node");
                c.arg(dir.join("ts_server.mjs"))
                    .args(["--mode", mode.arg()]);
                c
            }
        };
        cmd.arg("--state")
            .arg(&self.state)
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start peer");
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().expect("READY <port>"));
                }
            }
        });
        // The peer prints READY once its socket listens; a second of Python
        // imports is normal, half a minute is a broken install.
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{:?} did not start within 30 s", self.kind));
        self.port = port;
        self.child = Some(child);
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        let scheme = if matches!(self.kind, Kind::PythonTls | Kind::PythonTlsClose) {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}/mcp", self.port)
    }

    /// The CA (PEM) that signed a [`Kind::PythonTls`] peer's certificate.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.state.join("ca.pem")).expect("the peer wrote its CA")
    }

    /// TLS handshakes a [`Kind::PythonTlsClose`] peer completed, and how
    /// many of them resumed an earlier session (its `/tls-stats`, read over
    /// HTTPS trusting its CA; that read's own handshake included).
    pub fn tls_handshakes(&self) -> (u64, u64) {
        let roots = ureq::tls::parse_pem(self.ca_pem().as_bytes())
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder().tls_config(tls).build().into();
        let url = format!("https://127.0.0.1:{}/tls-stats", self.port);
        let body = agent
            .get(&url)
            .call()
            .expect("tls-stats")
            .body_mut()
            .read_to_string()
            .expect("tls-stats body");
        let v: serde_json::Value = serde_json::from_str(&body).expect("tls-stats json");
        (
            v["handshakes"].as_u64().unwrap(),
            v["resumed"].as_u64().unwrap(),
        )
    }

    /// Kills the server (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill + start on the same port: every session is gone.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts it again after [`Peer::kill`], on the same port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// Starts `kind` where the killed server was (same port, same state
    /// directory): a deploy of another release at the same URL.
    pub fn start_as(&mut self, kind: Kind) {
        assert!(self.child.is_none());
        self.kind = kind;
        self.spawn();
    }

    /// A counter file the peer keeps (`set_level`, `subscribe`...).
    pub fn count(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.state.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// `initialize` requests the server handled, across restarts.
    pub fn initializes(&self) -> u64 {
        self.count("initialize")
    }

    /// Runs of the Python peer's `slow` tool that started, across restarts.
    pub fn slow_started(&self) -> u64 {
        self.count("slow_started")
    }

    /// POSTs to /mcp (`Kind::PythonCaching`).
    pub fn posts(&self) -> u64 {
        self.count("posts")
    }

    /// Runs of the Python peer's `deploy` tool to its end, across restarts.
    pub fn deploys(&self) -> u64 {
        self.count("deploys")
    }

    /// Runs of the Python peer's `fail` tool, across restarts.
    pub fn failures(&self) -> u64 {
        self.count("fail")
    }

    /// Executions of `counter_increment`, across restarts.
    pub fn counter(&self) -> u64 {
        self.count("counter")
    }

    /// Runs of the `slow` tool the server stopped before their end
    /// (Python peer: the client cancelled them).
    pub fn cancelled(&self) -> u64 {
        self.count("cancelled")
    }

    /// Waits until the server stopped `n` runs of `slow` early.
    pub fn await_cancelled(&self, n: u64, within: Duration) {
        wait_for(within, "a cancelled run", || self.cancelled() >= n);
    }

    /// GETs carrying `Last-Event-ID` (stream resumptions) the server got.
    pub fn resumes(&self) -> u64 {
        self.count("resume")
    }

    /// 401 answers the MCP endpoint gave to POSTs.
    pub fn unauthorized(&self) -> u64 {
        self.count("unauthorized")
    }

    /// Refresh-token requests the server's token endpoint received.
    pub fn refreshes(&self) -> u64 {
        self.count("refresh")
    }

    /// POSTs to a test hook of the server (`/test/expire-access`...).
    pub fn hook(&self, path: &str) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let status = ureq::post(&url).send_empty().expect("test hook").status();
        assert_eq!(status, 200, "{path}");
    }

    /// Sessions the server holds right now.
    pub fn live_sessions(&self) -> u64 {
        let url = format!("http://127.0.0.1:{}/stats", self.port);
        let body = ureq::get(&url)
            .call()
            .expect("stats")
            .body_mut()
            .read_to_string()
            .expect("stats body");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
        v["sessions"].as_u64().expect("sessions")
    }

    /// Waits until the server has dropped every session (idle timeout).
    pub fn await_no_sessions(&self, within: Duration) {
        wait_for(within, "sessions to expire", || self.live_sessions() == 0);
    }

    /// Waits until `counter_increment` has run `n` times.
    pub fn await_counter(&self, n: u64, within: Duration) {
        wait_for(within, "the counter", || self.counter() >= n);
    }
}

pub fn python_bin(dir: &Path) -> PathBuf {
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "Python peer not installed ({}): run `bash scripts/peers.sh` \
         (the README's test command does)",
        python.display()
    );
    python
}

/// Polls `cond` every 20 ms until it holds; panics after `within`.
pub fn wait_for(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// A Redis server of the test's own (Debian's `redis-server`, installed by
/// `scripts/peers.sh`), on a unix socket in a directory of its own, no
/// persistence; killed when dropped.
pub struct Redis {
    dir: PathBuf,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "mcp-recovery-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("redis dir");
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server not installed: run `bash scripts/peers.sh` (the README's test command does)");
        wait_for(Duration::from_secs(10), "redis-server to listen", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        Redis { dir, child }
    }

    /// The server's URL for the `redis` crate.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    /// Runs `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.dir.join("redis.sock"))
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
