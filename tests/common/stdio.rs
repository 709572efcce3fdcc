//! Servers over stdio: the official Python and TypeScript SDK servers run
//! as the client's child process (`--stdio`), killed between calls and
//! mid-call by their pid, as a crash would.

use super::scenarios::{Mcp, Yes};
use super::{peers_dir, python_bin, wait_for};
use mcp_recovery::client::stdio::StdioCommand;
use mcp_recovery::client::{ClientBuilder, Error, ServerHandler};
use mcp_recovery::core::{CallError, Protocol, RpcError};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which SDK's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// `mcp==2.3.0`: speaks 2026-07-28 too.
    Python,
    /// `@modelcontextprotocol/sdk@1.32.2`: the handshake only.
    Ts,
}

/// A state directory of the test's own, and the command that starts the
/// server with it. The server writes its pid (`pid`) and counts its starts
/// (`starts`) there.
pub struct StdioPeer {
    pub sdk: Sdk,
    state: PathBuf,
}

impl StdioPeer {
    pub fn new(sdk: Sdk) -> StdioPeer {
        let state = std::env::temp_dir().join(format!(
            "mcp-recovery-stdio-{}-{}",
            std::process::id(),
            super::NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state dir");
        StdioPeer { sdk, state }
    }

    pub fn command(&self) -> StdioCommand {
        let dir = peers_dir();
        let c = match self.sdk {
            Sdk::Python => StdioCommand::new(python_bin(&dir)).arg(dir.join("python_server.py")),
            Sdk::Ts => {
                assert!(
                    dir.join("node_modules/@modelcontextprotocol/sdk").exists(),
                    "TypeScript peer not installed: run `bash scripts/peers.sh`"
                );
                StdioCommand::new("node").arg(dir.join("ts_server.mjs"))
            }
        };
        c.arg("--stdio").arg("--state").arg(&self.state)
    }

    /// The server's state directory (its counters).
    pub fn state(&self) -> &std::path::Path {
        &self.state
    }

    pub fn builder<C: Mcp>(&self, protocol: Protocol) -> ClientBuilder<C> {
        ClientBuilder::stdio(self.command())
            .protocol(protocol)
            .read_timeout(Duration::from_secs(20))
    }

    pub fn count(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.state.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.state.join("pid"))
            .expect("the server wrote its pid")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// SIGKILLs the running server, as a crash would, and waits until the
    /// client has reaped it (it is then known to be gone).
    pub fn crash(&self) {
        let pid = self.pid();
        // SAFETY: kill(2) on a pid; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_for(Duration::from_secs(10), "the child reaped", || {
            // SAFETY: as above; signal 0 only asks whether it exists.
            unsafe { libc::kill(pid, 0) != 0 }
        });
    }

    /// Whether the last started server has exited (and was reaped).
    pub fn gone(&self) -> bool {
        // SAFETY: signal 0 only asks whether the process exists.
        unsafe { libc::kill(self.pid(), 0) != 0 }
    }
}

impl Drop for StdioPeer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Every kind of operation over stdio, on the wire `protocol` picks.
pub fn all_operations<C: Mcp>(sdk: Sdk, protocol: Protocol, wire: &str) {
    let peer = StdioPeer::new(sdk);
    let c: C = peer.builder(protocol).build().unwrap();
    c.initialize().unwrap();
    assert_eq!(c.protocol_version(), Some(wire));
    let tools = c.all_tools().unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    assert_eq!(
        c.call_tool("add", json!({"a": 2, "b": 40})).unwrap().text(),
        "42"
    );
    assert_eq!(
        c.read_resource("counter://total").unwrap().contents[0]
            .text
            .as_deref(),
        Some("0")
    );
    let prompt = c.get_prompt("greet", Some(json!({"name": "Ada"}))).unwrap();
    assert!(!prompt.messages.is_empty());
    c.ping().unwrap();
    // Progress goes to the call that carries its token.
    super::scenarios::unknown_method_and_progress(&c, true);
    assert_eq!(peer.count("starts"), 1, "one child for all of it");
    c.close().unwrap();
    drop(c);
    // Closed (or dropped): stdin closed, the server exits on its own.
    wait_for(Duration::from_secs(10), "the server to exit", || {
        peer.gone()
    });
}

/// A crash between calls: the next call starts a new child (and, on the
/// handshake wire, initializes it once); every call runs once.
pub fn crash_between_calls<C: Mcp>(sdk: Sdk, protocol: Protocol) {
    let peer = StdioPeer::new(sdk);
    let c: C = peer.builder(protocol).build().unwrap();
    assert_eq!(
        c.call_tool("counter_increment", json!({})).unwrap().text(),
        "1"
    );
    let generation = c.generation();
    peer.crash();
    assert_eq!(
        c.call_tool("counter_increment", json!({})).unwrap().text(),
        "2",
        "the next call runs on a new child, once"
    );
    assert_eq!(peer.count("starts"), 2);
    assert_eq!(peer.count("counter"), 2);
    if protocol == Protocol::Legacy {
        assert_eq!(c.generation(), generation + 1, "one re-initialize");
    }
}

/// 8 threads across one crash: one new child, every call answered once.
pub fn herd_across_a_crash<C: Mcp>(sdk: Sdk) {
    let peer = StdioPeer::new(sdk);
    let c: C = peer.builder(Protocol::Legacy).build().unwrap();
    c.call_tool("add", json!({"a": 1, "b": 1})).unwrap();
    peer.crash();
    let results = super::scenarios::threads(&c, 8);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_deref().unwrap(), (i + 1).to_string());
    }
    assert_eq!(peer.count("starts"), 2, "one restart for all 8");
}

/// A crash while a call runs: a side-effecting call is `OutcomeUncertain`
/// (it ran; it is not run again), a read-only one is sent again to the new
/// child and answered.
pub fn crash_mid_call<C: Mcp>() {
    let peer = StdioPeer::new(Sdk::Python);
    let c: C = peer.builder(Protocol::Legacy).build().unwrap();
    c.all_tools().unwrap();
    std::thread::scope(|s| {
        let call = s.spawn(|| c.call_tool("counter_increment", json!({"delay_ms": 10_000})));
        wait_for(Duration::from_secs(10), "the tool to run", || {
            peer.count("counter") == 1
        });
        peer.crash();
        match call.join().unwrap() {
            Err(Error::Call(CallError::OutcomeUncertain { .. })) => {}
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(peer.count("counter"), 1, "never run twice");
    // The next call finds the session gone and starts the next child.
    c.call_tool("add", json!({"a": 1, "b": 1})).unwrap();
    assert_eq!(peer.count("starts"), 2);

    std::thread::scope(|s| {
        let call = s.spawn(|| c.call_tool("slow", json!({"steps": 25})));
        wait_for(Duration::from_secs(10), "the tool to run", || {
            peer.count("slow_started") == 1
        });
        peer.crash();
        let r = call.join().unwrap().expect("read-only: sent again");
        assert_eq!(r.text(), "done after 25 steps");
    });
    assert_eq!(peer.count("slow_started"), 2);
    assert_eq!(peer.count("starts"), 3);
}

/// A server that exits at once: a bounded failure that quotes its stderr,
/// and a program that does not exist is a refused connection.
pub fn broken_server_fails_in_words<C: Mcp>() {
    let dir = peers_dir();
    // No --state: the Python peer's argument parser exits 2 with a usage
    // line on stderr.
    let cmd = StdioCommand::new(python_bin(&dir))
        .arg(dir.join("python_server.py"))
        .arg("--stdio");
    let c: C = ClientBuilder::stdio(cmd)
        .protocol(Protocol::Legacy)
        .build()
        .unwrap();
    let start = Instant::now();
    let e = c.call_tool("echo", json!({"text": "x"})).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("required: --state"), "{text}");
    assert!(start.elapsed() < Duration::from_secs(60), "bounded");

    let c: C = ClientBuilder::stdio(StdioCommand::new("/nonexistent/mcp-server"))
        .build()
        .unwrap();
    match c.ping() {
        Err(Error::Call(CallError::InitializeFailed(e))) => {
            let CallError::Transport { kind, message } = *e else {
                panic!("{e:?}")
            };
            assert_eq!(kind, mcp_recovery::core::FailureKind::Connect);
            assert!(message.contains("could not start"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

/// A server that ignores `SIGTERM` and stays after stdin closes: `close()`
/// and a dropped client each end it anyway (`SIGKILL` after the grace
/// periods), with or without a listening stream holding the I/O.
pub fn stubborn_server_is_ended<C: Mcp>() {
    for (listen, close) in [(false, true), (false, false), (true, false)] {
        let peer = StdioPeer::new(Sdk::Python);
        let cmd = peer
            .command()
            .arg("--stubborn")
            .shutdown_grace(Duration::from_millis(200));
        let c: C = ClientBuilder::stdio(cmd)
            .protocol(Protocol::Legacy)
            .listen(listen)
            .build()
            .unwrap();
        c.call_tool("add", json!({"a": 1, "b": 2})).unwrap();
        if close {
            c.close().unwrap();
            assert!(peer.gone(), "close() waits for the child to go");
        }
        drop(c);
        wait_for(Duration::from_secs(10), "the stubborn server to go", || {
            peer.gone()
        });
    }
}

/// A crash that leaves the server's stdout open (it started a process
/// that holds it): the call still ends as the server's exit, not after
/// the read timeout, and the process it left behind goes too.
pub fn crash_with_stdout_held_open<C: Mcp>() {
    let peer = StdioPeer::new(Sdk::Python);
    let c: C = peer.builder(Protocol::Legacy).build().unwrap();
    match c.call_tool("orphan_then_exit", json!({})) {
        Err(Error::Call(CallError::OutcomeUncertain { message, .. })) => {
            assert!(message.contains("exited"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let orphan: i32 = std::fs::read_to_string(peer.state().join("orphan"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(Duration::from_secs(10), "the orphan to be killed", || {
        // SAFETY: signal 0 only asks whether the process exists; the
        // orphan is no child of ours, so once killed it is gone (reaped
        // by init).
        unsafe { libc::kill(orphan, 0) != 0 }
    });
    // And the next call has a new child.
    assert_eq!(
        c.call_tool("add", json!({"a": 1, "b": 2})).unwrap().text(),
        "3"
    );
}

/// A question a child asks after its call is over, right before it dies,
/// belongs to a session that is over: the next child's calls never carry
/// it to the handler.
pub fn a_dead_childs_question_is_not_asked<C: Mcp>() {
    let peer = StdioPeer::new(Sdk::Python);
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c: C = peer
        .builder(Protocol::Legacy)
        .handler(Counting(asked.clone()))
        .build()
        .unwrap();
    assert_eq!(
        c.call_tool("answer_then_ask", json!({})).unwrap().text(),
        "answered"
    );
    wait_for(Duration::from_secs(10), "the child to exit", || peer.gone());
    assert_eq!(
        c.call_tool("add", json!({"a": 1, "b": 2})).unwrap().text(),
        "3"
    );
    assert_eq!(peer.count("starts"), 2);
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// On the stateless wire a server that exits at start never reads the
/// call: it is not uncertain, it was never sent.
pub fn a_call_the_server_never_read_is_not_uncertain<C: Mcp>() {
    let dir = peers_dir();
    let cmd = StdioCommand::new(python_bin(&dir))
        .arg(dir.join("python_server.py"))
        .arg("--stdio");
    let c: C = ClientBuilder::stdio(cmd)
        .protocol(Protocol::Modern)
        .build()
        .unwrap();
    match c.call_tool("counter_increment", json!({})) {
        Err(Error::Call(CallError::OutcomeUncertain { message, .. })) => {
            panic!("never read, yet uncertain: {message}")
        }
        Err(e) => assert!(e.to_string().contains("required: --state"), "{e}"),
        Ok(r) => panic!("{r:?}"),
    }
}

struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);
impl ServerHandler for Counting {
    fn capabilities(&self) -> Value {
        json!({"elicitation": {"form": {}}})
    }
    fn request(&self, _: &str, _: Option<Value>) -> Result<Value, RpcError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(json!({"action": "decline"}))
    }
}

/// The server asks while a call runs (elicitation on the handshake wire):
/// its request reaches the handler, the answer goes back on stdin.
pub fn server_asks_over_stdio<C: Mcp>() {
    let peer = StdioPeer::new(Sdk::Python);
    let c: C = peer.builder(Protocol::Legacy).handler(Yes).build().unwrap();
    let r = c.call_tool("confirm", json!({"question": "Go?"})).unwrap();
    assert_eq!(r.text(), "accept:True");
}

/// The stdio scenarios, as tests of client `$c`.
#[macro_export]
macro_rules! stdio_tests {
    ($c:ty) => {
        mod stdio {
            use super::common::stdio as s;
            #[allow(unused_imports)]
            use super::*;
            use mcp_recovery::core::Protocol;
            use s::Sdk;

            #[test]
            fn python_all_operations_on_the_stateless_wire() {
                s::all_operations::<$c>(Sdk::Python, Protocol::Auto, "2026-07-28");
            }
            #[test]
            fn python_all_operations_on_the_handshake_wire() {
                s::all_operations::<$c>(Sdk::Python, Protocol::Legacy, "2025-11-25");
            }
            #[test]
            fn ts_all_operations_after_negotiating_down() {
                s::all_operations::<$c>(Sdk::Ts, Protocol::Auto, "2025-11-25");
            }
            #[test]
            fn ts_crash_between_calls() {
                s::crash_between_calls::<$c>(Sdk::Ts, Protocol::Auto);
            }
            #[test]
            fn python_crash_between_calls_stateless() {
                s::crash_between_calls::<$c>(Sdk::Python, Protocol::Auto);
            }
            #[test]
            fn python_crash_between_calls_handshake() {
                s::crash_between_calls::<$c>(Sdk::Python, Protocol::Legacy);
            }
            #[test]
            fn ts_herd_of_8_across_a_crash() {
                s::herd_across_a_crash::<$c>(Sdk::Ts);
            }
            #[test]
            fn python_crash_mid_call_never_runs_twice() {
                s::crash_mid_call::<$c>();
            }
            #[test]
            fn broken_server_fails_in_words() {
                s::broken_server_fails_in_words::<$c>();
            }
            #[test]
            fn stubborn_server_is_ended() {
                s::stubborn_server_is_ended::<$c>();
            }
            #[test]
            fn crash_with_stdout_held_open() {
                s::crash_with_stdout_held_open::<$c>();
            }
            #[test]
            fn a_dead_childs_question_is_not_asked() {
                s::a_dead_childs_question_is_not_asked::<$c>();
            }
            #[test]
            fn a_call_the_server_never_read_is_not_uncertain() {
                s::a_call_the_server_never_read_is_not_uncertain::<$c>();
            }
            #[test]
            fn python_asks_while_a_call_runs() {
                s::server_asks_over_stdio::<$c>();
            }
        }
    };
}
