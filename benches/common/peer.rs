//! Starts the real-server peers of `tests/peers` for the benchmarks (the
//! same programs and `READY <port>` convention as `tests/common`). They are
//! installed by `bash scripts/peers.sh` (which `scripts/bench.sh` runs).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn python() -> PathBuf {
    root().join("tests/peers/.venv/bin/python")
}

/// True when `scripts/peers.sh` has installed both peers.
pub fn installed() -> bool {
    python().exists()
        && root()
            .join("tests/peers/node_modules/@modelcontextprotocol/sdk")
            .exists()
}

pub struct Peer {
    program: PathBuf,
    args: Vec<String>,
    state: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// Serves HTTPS (`--tls`): its CA is `ca.pem` in the state directory.
    tls: bool,
}

impl Peer {
    /// The official Python SDK peer (`--mode`, optional `--idle-timeout`).
    pub fn python(mode: &str, idle: Option<f64>) -> Peer {
        let mut args = vec![
            root()
                .join("tests/peers/python_server.py")
                .display()
                .to_string(),
            "--mode".into(),
            mode.into(),
        ];
        if let Some(s) = idle {
            args.extend(["--idle-timeout".into(), s.to_string()]);
        }
        Peer::start(python(), args)
    }

    /// The same Python peer with TCP_NODELAY on its connections (through
    /// `benches/clients/nodelay_peer.py`; see there why it matters).
    pub fn python_nodelay(mode: &str, idle: Option<f64>) -> Peer {
        let mut p = Peer::python(mode, idle);
        p.args.insert(
            0,
            root()
                .join("benches/clients/nodelay_peer.py")
                .display()
                .to_string(),
        );
        p.restart();
        p
    }

    /// The Python peer (SSE) over HTTPS, its certificate from a CA it makes
    /// at start ([`Peer::ca_file`]), through `benches/clients/tls_peer.py`:
    /// it serves `/tls-stats` (handshakes so far) and, with `close`,
    /// answers every request with `Connection: close` (see there why).
    pub fn python_tls(close: bool) -> Peer {
        let mut args = vec![root()
            .join("benches/clients/tls_peer.py")
            .display()
            .to_string()];
        if close {
            args.push("--close".into());
        }
        args.extend([
            root()
                .join("tests/peers/python_server.py")
                .display()
                .to_string(),
            "--mode".into(),
            "sse".into(),
            "--tls".into(),
        ]);
        let mut p = Peer::start(python(), args);
        p.tls = true;
        p
    }

    /// The file holding the CA (PEM) that signed a TLS peer's certificate;
    /// the peer writes it before it says READY.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "not a TLS peer");
        self.state.join("ca.pem")
    }

    /// The CA of [`Peer::ca_file`], as PEM text.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_file()).expect("the peer wrote its CA")
    }

    /// The official TypeScript SDK peer.
    pub fn ts(mode: &str) -> Peer {
        let args = vec![
            root()
                .join("tests/peers/ts_server.mjs")
                .display()
                .to_string(),
            "--mode".into(),
            mode.into(),
        ];
        Peer::start(PathBuf::from("node"), args)
    }

    /// The same server started again with `extra` arguments.
    pub fn with(mut self, extra: &[&str]) -> Peer {
        self.args.extend(extra.iter().map(|s| s.to_string()));
        self.restart();
        self
    }

    /// A counter file of the peer (`initialize`, `posts` with
    /// `--count-posts`), across restarts.
    pub fn count(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.state.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn start(program: PathBuf, args: Vec<String>) -> Peer {
        assert!(
            installed(),
            "peers not installed: run `bash scripts/peers.sh` (scripts/bench.sh does)"
        );
        let state = std::env::temp_dir().join(format!(
            "mcp-recovery-bench-{}-{}",
            std::process::id(),
            next_id()
        ));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state dir");
        let mut p = Peer {
            program,
            args,
            state,
            port: 0,
            child: None,
            tls: false,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .arg("--state")
            .arg(&self.state)
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().expect("READY <port>"));
                }
            }
        });
        self.port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("peer did not start within 30 s");
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        self.url_at(self.port)
    }

    /// The MCP endpoint reached through `port` (a proxy in front of it).
    pub fn url_at(&self, port: u16) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}/mcp")
    }

    pub fn stats_url(&self) -> String {
        format!("http://127.0.0.1:{}/stats", self.port)
    }

    /// Kill (SIGKILL) and start again on the same port: every session is gone.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// `initialize` requests the server handled, across restarts.
    pub fn initializes(&self) -> u64 {
        std::fs::read_to_string(self.state.join("initialize"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sessions the server holds right now.
    pub fn sessions(&self) -> u64 {
        let body = ureq::get(&self.stats_url())
            .call()
            .expect("stats")
            .body_mut()
            .read_to_string()
            .expect("stats body");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
        v["sessions"].as_u64().expect("sessions")
    }

    /// Waits (20 ms polls, 30 s at most) until the server dropped every
    /// session (idle timeout).
    pub fn await_no_sessions(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        while self.sessions() != 0 {
            assert!(Instant::now() < until, "sessions did not expire in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Median of a slice (sorted copy).
pub fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}
