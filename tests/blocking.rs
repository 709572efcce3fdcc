//! The blocking client against the official Python and TypeScript servers:
//! every operation, session expiry by idle timeout and by restart, a herd
//! of threads across one expiry, a connection cut mid-call, a server that
//! stays down, and a stateless server. No mocks: real servers, real HTTP.

mod common;

use common::{Kind, Mode, Peer};
use mcp_recovery::blocking::{CallOptions, Client, Error, ServerHandler};
use mcp_recovery::core::{BreakerConfig, BreakerState, CallError, ProtocolError, RpcError};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

const PY_SSE: Kind = Kind::Python {
    mode: Mode::Sse,
    idle: None,
};
const PY_JSON: Kind = Kind::Python {
    mode: Mode::Json,
    idle: None,
};
const TS_SSE: Kind = Kind::Ts { mode: Mode::Sse };
const TS_JSON: Kind = Kind::Ts { mode: Mode::Json };

fn client(peer: &Peer) -> Client {
    Client::builder(&peer.url())
        .read_timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The five operations of the seed issue, each checked for its answer.
const OPS: [&str; 5] = [
    "tools/list",
    "tools/call",
    "resources/read",
    "prompts/get",
    "ping",
];

fn op(c: &Client, which: &str) {
    match which {
        "tools/list" => {
            let names: Vec<String> = c
                .list_tools(None)
                .unwrap()
                .tools
                .into_iter()
                .map(|t| t.name)
                .collect();
            assert!(names.contains(&"echo".to_string()), "{names:?}");
        }
        "tools/call" => assert_eq!(
            c.call_tool("echo", json!({"text": "hi"})).unwrap().text(),
            "hi"
        ),
        "resources/read" => {
            let r = c.read_resource("counter://total").unwrap();
            assert_eq!(r.contents[0].uri, "counter://total");
        }
        "prompts/get" => {
            let p = c.get_prompt("greet", Some(json!({"name": "Ada"}))).unwrap();
            let text = p.messages[0].content.text.clone().unwrap_or_default();
            assert!(text.contains("Ada"), "{text}");
        }
        "ping" => c.ping().unwrap(),
        other => unreachable!("{other}"),
    }
}

// ----- every operation, SSE and JSON, both servers -----

fn all_operations(kind: Kind) {
    let peer = Peer::start(kind);
    let c = client(&peer);
    c.initialize().unwrap();
    assert!(c.session_id().is_some());
    assert!(c.protocol_version().is_some());
    assert!(c.server_info().unwrap()["name"]
        .as_str()
        .unwrap()
        .ends_with("-peer"));

    let tools = c.all_tools().unwrap();
    let by_name = |n: &str| tools.iter().find(|t| t.name == n).unwrap();
    assert!(by_name("echo").replay_safe());
    assert!(!by_name("counter_increment").replay_safe());
    assert!(by_name("add").input_schema["properties"]["a"].is_object());

    assert_eq!(
        c.call_tool("add", json!({"a": 2, "b": 40})).unwrap().text(),
        "42"
    );
    let bad = c.call_tool("add", json!({"a": "x"}));
    match bad {
        Ok(r) => assert!(r.is_error, "a tool error is a result with isError"),
        Err(Error::Rpc(e)) => assert!(e.code < 0),
        Err(e) => panic!("{e}"),
    }
    let resources = c.list_resources(None).unwrap().resources;
    assert!(resources.iter().any(|r| r.uri == "counter://total"));
    assert_eq!(
        c.read_resource("counter://total").unwrap().contents[0]
            .text
            .as_deref(),
        Some("0")
    );
    let prompts = c.list_prompts(None).unwrap().prompts;
    let greet = prompts.iter().find(|p| p.name == "greet").unwrap();
    assert!(greet
        .arguments
        .iter()
        .any(|a| a.name == "name" && a.required));
    op(&c, "prompts/get");
    c.ping().unwrap();
    let raw = c.request("tools/list", None).unwrap();
    assert!(raw["tools"].is_array());
    match c.request("no/such/method", None) {
        Err(Error::Rpc(e)) => assert_eq!(e.code, -32601),
        other => panic!("{other:?}"),
    }

    // Progress notifications reach the call's callback (SSE streams them).
    let seen = Mutex::new(Vec::new());
    let opts = CallOptions::new().progress(|p| seen.lock().unwrap().push(p.progress));
    let r = c.call_tool_with("slow", json!({"steps": 3}), opts).unwrap();
    assert_eq!(r.text(), "done after 3 steps");
    if matches!(
        kind,
        Kind::Python {
            mode: Mode::Sse,
            ..
        } | Kind::Ts { mode: Mode::Sse }
    ) {
        assert_eq!(*seen.lock().unwrap(), vec![1.0, 2.0, 3.0]);
    }

    assert_eq!(peer.initializes(), 1);
    assert_eq!(c.generation(), 1);
    c.close().unwrap();
    match c.ping() {
        Err(Error::Call(CallError::Closed)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn python_sse_all_operations() {
    all_operations(PY_SSE);
}

#[test]
fn python_json_all_operations() {
    all_operations(PY_JSON);
}

#[test]
fn ts_sse_all_operations() {
    all_operations(TS_SSE);
}

#[test]
fn ts_json_all_operations() {
    all_operations(TS_JSON);
}

// ----- session expiry -----

/// Each operation runs on a live session, then again after the server lost
/// it; the second run succeeds after exactly one new initialize.
fn survives_expiry(kind: Kind, expire: impl Fn(&mut Peer)) {
    let mut peer = Peer::start(kind);
    let c = client(&peer);
    for (i, which) in OPS.iter().enumerate() {
        op(&c, which);
        let before = peer.initializes();
        let session = c.session_id();
        expire(&mut peer);
        op(&c, which);
        assert_eq!(peer.initializes(), before + 1, "{which}: one re-initialize");
        assert_eq!(c.generation(), i as u64 + 2, "{which}");
        assert_ne!(c.session_id(), session, "{which}: a new session");
    }
}

fn idle_expiry(peer: &mut Peer) {
    peer.await_no_sessions(Duration::from_secs(10));
}

#[test]
fn python_sse_idle_timeout() {
    let kind = Kind::Python {
        mode: Mode::Sse,
        idle: Some(0.5),
    };
    survives_expiry(kind, idle_expiry);
}

#[test]
fn python_json_idle_timeout() {
    let kind = Kind::Python {
        mode: Mode::Json,
        idle: Some(0.5),
    };
    survives_expiry(kind, idle_expiry);
}

#[test]
fn python_restart() {
    survives_expiry(PY_SSE, Peer::restart);
}

#[test]
fn ts_restart() {
    survives_expiry(TS_SSE, Peer::restart);
}

#[test]
fn ts_json_restart() {
    survives_expiry(TS_JSON, Peer::restart);
}

// ----- the herd -----

/// 16 threads call at once on an expired session: all succeed, and the
/// server sees exactly one new initialize.
fn herd(kind: Kind, expire: impl Fn(&mut Peer)) {
    let mut peer = Peer::start(kind);
    let c = client(&peer);
    c.ping().unwrap();
    expire(&mut peer);
    let before = peer.initializes();
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (c, start) = (c.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                c.call_tool("add", json!({"a": i, "b": 1}))
                    .map(|r| r.text())
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap().unwrap(), (i + 1).to_string());
    }
    assert_eq!(peer.initializes(), before + 1, "exactly one re-initialize");
    assert_eq!(c.generation(), 2);
}

#[test]
fn python_herd_of_16_across_idle_expiry() {
    let kind = Kind::Python {
        mode: Mode::Sse,
        idle: Some(0.5),
    };
    herd(kind, idle_expiry);
}

#[test]
fn ts_herd_of_16_across_restart() {
    herd(TS_SSE, Peer::restart);
}

// ----- a connection cut mid-call -----

/// The server dies while `counter_increment` runs: the call ends with
/// `OutcomeUncertain` (never replayed), and it ran at most once.
fn cut_mid_call(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c = client(&peer);
    c.initialize().unwrap();
    let caller = {
        let c = c.clone();
        std::thread::spawn(move || c.call_tool("counter_increment", json!({"delay_ms": 5000})))
    };
    peer.await_counter(1, Duration::from_secs(10));
    peer.kill();
    match caller.join().unwrap() {
        Err(Error::Call(CallError::OutcomeUncertain { method, .. })) => {
            assert_eq!(method, "tools/call")
        }
        Ok(r) => assert_eq!(r.text(), "1"),
        Err(e) => panic!("expected OutcomeUncertain, got {e}"),
    }
    peer.start_again();
    assert_eq!(peer.counter(), 1, "ran exactly once: never replayed");
    // The client is still good: the next call re-initializes and works.
    let total = c.call_tool("counter_get", json!({})).unwrap().text();
    assert_eq!(total, "1");
}

#[test]
fn python_cut_mid_call_never_runs_twice() {
    cut_mid_call(PY_SSE);
}

#[test]
fn ts_cut_mid_call_never_runs_twice() {
    cut_mid_call(TS_JSON);
}

// ----- a server that stays down -----

fn server_down(kind: Kind) {
    let mut peer = Peer::start(kind);
    let cooldown = Duration::from_secs(2);
    let c = Client::builder(&peer.url())
        .await_ready(Duration::from_secs(2))
        .breaker(BreakerConfig::new(3, cooldown))
        .configure(|cfg| cfg.connect_retry_delay = Duration::from_millis(200))
        .build()
        .unwrap();
    c.ping().unwrap();
    peer.kill();
    for _ in 0..3 {
        let t = Instant::now();
        match c.ping() {
            Err(Error::Call(
                CallError::Transport { .. }
                | CallError::ReconnectTimeout { .. }
                | CallError::InitializeFailed(_),
            )) => {}
            other => panic!("expected a typed connect failure, got {other:?}"),
        }
        // Bound: one connect retry delay plus the await-ready deadline.
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t.elapsed()
        );
    }
    assert!(
        matches!(c.breaker_state(), BreakerState::Open { .. }),
        "{:?}",
        c.breaker_state()
    );
    let retry_in = match c.ping() {
        Err(Error::Call(CallError::CircuitOpen { retry_in })) => retry_in,
        other => panic!("expected CircuitOpen, got {other:?}"),
    };
    assert!(retry_in <= cooldown);
    peer.start_again();
    // The breaker's own figure says when a probe is allowed; wait that out.
    std::thread::sleep(retry_in + Duration::from_millis(50));
    op(&c, "tools/call");
    assert!(matches!(
        c.breaker_state(),
        BreakerState::Closed { failures: 0 }
    ));
}

#[test]
fn python_down_fails_within_deadline_then_breaker_opens_and_closes() {
    server_down(PY_JSON);
}

#[test]
fn ts_down_fails_within_deadline_then_breaker_opens_and_closes() {
    server_down(TS_SSE);
}

// ----- stateless servers -----

fn stateless(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c = client(&peer);
    for which in OPS {
        op(&c, which);
    }
    assert_eq!(c.session_id(), None);
    peer.restart();
    for which in OPS {
        op(&c, which);
    }
    assert_eq!(c.generation(), 1, "no session, so no session recovery");
    assert_eq!(peer.initializes(), 1);
}

#[test]
fn python_stateless_never_takes_the_session_path() {
    stateless(Kind::Python {
        mode: Mode::Stateless,
        idle: None,
    });
}

#[test]
fn ts_stateless_never_takes_the_session_path() {
    stateless(Kind::Ts {
        mode: Mode::Stateless,
    });
}

// ----- server requests, cancellation, limits -----

struct Answers {
    logs: AtomicUsize,
}

impl ServerHandler for Answers {
    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        assert_eq!(method, "elicitation/create");
        assert!(params.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("Proceed"));
        Ok(json!({"action": "accept", "content": {"ok": true}}))
    }
    fn notification(&self, method: &str, _params: Option<Value>) {
        if method == "notifications/message" {
            self.logs.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn python_server_requests_and_notifications_reach_the_handler() {
    let peer = Peer::start(PY_SSE);
    let handler = Arc::new(Answers {
        logs: AtomicUsize::new(0),
    });
    struct Shared(Arc<Answers>);
    impl ServerHandler for Shared {
        fn request(&self, m: &str, p: Option<Value>) -> Result<Value, RpcError> {
            self.0.request(m, p)
        }
        fn notification(&self, m: &str, p: Option<Value>) {
            self.0.notification(m, p)
        }
    }
    let c = Client::builder(&peer.url())
        .handler(Shared(handler.clone()))
        .configure(|cfg| cfg.capabilities = json!({"elicitation": {}}))
        .build()
        .unwrap();
    let r = c
        .call_tool("confirm", json!({"question": "Proceed?"}))
        .unwrap();
    assert_eq!(r.text(), "accept:True");
    c.call_tool("slow", json!({"steps": 2})).unwrap();
    assert_eq!(handler.logs.load(Ordering::SeqCst), 2);
}

#[test]
fn cancel_and_call_timeout_end_the_call_and_keep_the_client() {
    let peer = Peer::start(PY_SSE);
    let c = client(&peer);
    c.initialize().unwrap();

    let handle = c.cancel_handle();
    let canceller = handle.clone();
    // Cancel from the first progress notification: the call is running.
    let opts = CallOptions::new()
        .cancel(handle)
        .progress(move |_| canceller.cancel());
    let t = Instant::now();
    match c.call_tool_with("slow", json!({"steps": 200}), opts) {
        Err(Error::Call(CallError::Cancelled)) => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "200 steps take 4 s; cancel ended it early"
    );

    let opts = CallOptions::new().timeout(Duration::from_millis(300));
    match c.call_tool_with("counter_increment", json!({"delay_ms": 3000}), opts) {
        Err(Error::Timeout) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }
    op(&c, "tools/call");
    assert_eq!(c.generation(), 1);
}

#[test]
fn oversize_body_is_a_typed_error_and_the_client_goes_on() {
    let peer = Peer::start(TS_JSON);
    let c = Client::builder(&peer.url())
        .max_body_size(2048)
        .build()
        .unwrap();
    c.ping().unwrap();
    match c.call_tool("echo", json!({"text": "x".repeat(4096)})) {
        Err(Error::Call(CallError::Protocol(ProtocolError::TooLarge { limit }))) => {
            assert_eq!(limit, 2048)
        }
        other => panic!("expected a body-size protocol error, got {other:?}"),
    }
    op(&c, "tools/call");
}

#[test]
fn bad_configuration_is_a_typed_error() {
    assert!(matches!(
        Client::builder("ftp://x/mcp").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::builder("not a url").build(),
        Err(Error::Config(_))
    ));
    let r = Client::builder("http://127.0.0.1:1/mcp")
        .header("Authorization", "Bearer x")
        .build();
    assert!(matches!(r, Err(Error::Config(_))));
    // Nothing listens on port 1: a typed connect error, not a panic.
    let c = Client::builder("http://127.0.0.1:1/mcp")
        .configure(|cfg| cfg.connect_retry_delay = Duration::from_millis(10))
        .build()
        .unwrap();
    let err = c.ping().unwrap_err();
    assert!(matches!(err, Error::Call(_)), "{err}");
}

#[test]
fn bearer_token_never_printed() {
    let peer = Peer::start(TS_SSE);
    let c = Client::builder(&peer.url())
        .bearer("s3cr3t-t0ken")
        .build()
        .unwrap();
    op(&c, "tools/call");
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

/// After a restart, pooled keep-alive connections are dead. A tool call
/// that is not replay-safe must not be reported uncertain because of a
/// connection the server never read from: it re-initializes and runs once.
fn restart_then_side_effect(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c = client(&peer);
    assert_eq!(
        c.call_tool("counter_increment", json!({})).unwrap().text(),
        "1"
    );
    peer.restart();
    assert_eq!(
        c.call_tool("counter_increment", json!({})).unwrap().text(),
        "2"
    );
    assert_eq!(peer.counter(), 2);
    assert_eq!(c.generation(), 2);
}

#[test]
fn python_restart_then_side_effect_runs_once() {
    restart_then_side_effect(PY_SSE);
}

#[test]
fn ts_restart_then_side_effect_runs_once() {
    restart_then_side_effect(TS_JSON);
}
