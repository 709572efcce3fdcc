//! The integration scenarios, written once for both clients: the blocking
//! one is called directly, the async one through `smol::block_on`. Both
//! clients return the same types (`mcp-recovery-client`), so a scenario
//! checks the same behaviour on both.

use super::{Kind, Mode, Peer};
use mcp_recovery::client::oauth::{FileTokenStore, OAuthConfig, StoredTokens, TokenStore};
use mcp_recovery::client::{
    Build, CallOptions, CancelHandle, ClientBuilder, Completion, CompletionRef, Error, Prompt,
    PromptList, PromptResult, Resource, ResourceList, ResourceRead, ResourceTemplate,
    ResourceTemplateList, ServerHandler, Tool, ToolList, ToolResult,
};
use mcp_recovery::core::{
    BreakerConfig, BreakerState, CallError, Protocol, ProtocolError, RpcError,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PY_SSE: Kind = Kind::Python {
    mode: Mode::Sse,
    idle: None,
};
pub const PY_JSON: Kind = Kind::Python {
    mode: Mode::Json,
    idle: None,
};
pub const PY_SSE_IDLE: Kind = Kind::Python {
    mode: Mode::Sse,
    idle: Some(0.5),
};
pub const PY_JSON_IDLE: Kind = Kind::Python {
    mode: Mode::Json,
    idle: Some(0.5),
};
pub const PY_STATELESS: Kind = Kind::Python {
    mode: Mode::Stateless,
    idle: None,
};
pub const TS_SSE: Kind = Kind::Ts { mode: Mode::Sse };
pub const TS_JSON: Kind = Kind::Ts { mode: Mode::Json };
pub const TS_STATELESS: Kind = Kind::Ts {
    mode: Mode::Stateless,
};

/// A client as the scenarios use it: blocking calls.
pub trait Mcp: Build + Clone + Send + Sync + std::fmt::Debug + 'static {
    fn initialize(&self) -> Result<(), Error>;
    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, Error>;
    fn list_tools(&self, cursor: Option<&str>) -> Result<ToolList, Error>;
    fn all_tools(&self) -> Result<Vec<Tool>, Error>;
    fn call_tool(&self, name: &str, args: Value) -> Result<ToolResult, Error>;
    fn call_tool_with(
        &self,
        name: &str,
        args: Value,
        opts: CallOptions<'_>,
    ) -> Result<ToolResult, Error>;
    fn list_resources(&self, cursor: Option<&str>) -> Result<ResourceList, Error>;
    fn read_resource(&self, uri: &str) -> Result<ResourceRead, Error>;
    fn list_prompts(&self, cursor: Option<&str>) -> Result<PromptList, Error>;
    fn get_prompt(&self, name: &str, args: Option<Value>) -> Result<PromptResult, Error>;
    fn ping(&self) -> Result<(), Error>;
    fn all_resources(&self) -> Result<Vec<Resource>, Error>;
    fn all_prompts(&self) -> Result<Vec<Prompt>, Error>;
    fn list_resource_templates(&self, cursor: Option<&str>) -> Result<ResourceTemplateList, Error>;
    fn all_resource_templates(&self) -> Result<Vec<ResourceTemplate>, Error>;
    fn complete(&self, r: &CompletionRef, argument: &str, value: &str)
        -> Result<Completion, Error>;
    fn set_log_level(&self, level: &str) -> Result<(), Error>;
    fn subscribe(&self, uri: &str) -> Result<(), Error>;
    fn unsubscribe(&self, uri: &str) -> Result<(), Error>;
    fn close(&self) -> Result<(), Error>;
    fn set_roots(&self, roots: Vec<mcp_recovery::client::Root>) -> Result<(), Error>;
    fn cancel_handle(&self) -> CancelHandle;
    fn session_id(&self) -> Option<String>;
    fn server_info(&self) -> Option<Value>;
    fn protocol_version(&self) -> Option<&'static str>;
    fn generation(&self) -> u64;
    fn breaker_state(&self) -> BreakerState;
    fn authorize(&self, open: fn(&str)) -> Result<(), Error>;
}

/// Implements [`Mcp`] by forwarding, through `$wrap` (nothing for the
/// blocking client, `smol::block_on` for the async one).
macro_rules! forward {
    ($client:ty, $($wrap:ident)::*) => {
        impl Mcp for $client {
            fn initialize(&self) -> Result<(), Error> { $($wrap)::*(<$client>::initialize(self)) }
            fn request(&self, m: &str, p: Option<Value>) -> Result<Value, Error> { $($wrap)::*(<$client>::request(self, m, p)) }
            fn list_tools(&self, c: Option<&str>) -> Result<ToolList, Error> { $($wrap)::*(<$client>::list_tools(self, c)) }
            fn all_tools(&self) -> Result<Vec<Tool>, Error> { $($wrap)::*(<$client>::all_tools(self)) }
            fn call_tool(&self, n: &str, a: Value) -> Result<ToolResult, Error> { $($wrap)::*(<$client>::call_tool(self, n, a)) }
            fn call_tool_with(&self, n: &str, a: Value, o: CallOptions<'_>) -> Result<ToolResult, Error> { $($wrap)::*(<$client>::call_tool_with(self, n, a, o)) }
            fn list_resources(&self, c: Option<&str>) -> Result<ResourceList, Error> { $($wrap)::*(<$client>::list_resources(self, c)) }
            fn read_resource(&self, u: &str) -> Result<ResourceRead, Error> { $($wrap)::*(<$client>::read_resource(self, u)) }
            fn list_prompts(&self, c: Option<&str>) -> Result<PromptList, Error> { $($wrap)::*(<$client>::list_prompts(self, c)) }
            fn get_prompt(&self, n: &str, a: Option<Value>) -> Result<PromptResult, Error> { $($wrap)::*(<$client>::get_prompt(self, n, a)) }
            fn ping(&self) -> Result<(), Error> { $($wrap)::*(<$client>::ping(self)) }
            fn all_resources(&self) -> Result<Vec<Resource>, Error> { $($wrap)::*(<$client>::all_resources(self)) }
            fn all_prompts(&self) -> Result<Vec<Prompt>, Error> { $($wrap)::*(<$client>::all_prompts(self)) }
            fn list_resource_templates(&self, c: Option<&str>) -> Result<ResourceTemplateList, Error> { $($wrap)::*(<$client>::list_resource_templates(self, c)) }
            fn all_resource_templates(&self) -> Result<Vec<ResourceTemplate>, Error> { $($wrap)::*(<$client>::all_resource_templates(self)) }
            fn complete(&self, r: &CompletionRef, a: &str, v: &str) -> Result<Completion, Error> { $($wrap)::*(<$client>::complete(self, r, a, v)) }
            fn set_log_level(&self, l: &str) -> Result<(), Error> { $($wrap)::*(<$client>::set_log_level(self, l)) }
            fn subscribe(&self, u: &str) -> Result<(), Error> { $($wrap)::*(<$client>::subscribe(self, u)) }
            fn unsubscribe(&self, u: &str) -> Result<(), Error> { $($wrap)::*(<$client>::unsubscribe(self, u)) }
            fn close(&self) -> Result<(), Error> { $($wrap)::*(<$client>::close(self)) }
            fn set_roots(&self, r: Vec<mcp_recovery::client::Root>) -> Result<(), Error> { $($wrap)::*(<$client>::set_roots(self, r)) }
            fn cancel_handle(&self) -> CancelHandle { <$client>::cancel_handle(self) }
            fn session_id(&self) -> Option<String> { <$client>::session_id(self) }
            fn server_info(&self) -> Option<Value> { <$client>::server_info(self) }
            fn protocol_version(&self) -> Option<&'static str> { <$client>::protocol_version(self) }
            fn generation(&self) -> u64 { <$client>::generation(self) }
            fn breaker_state(&self) -> BreakerState { <$client>::breaker_state(self) }
            fn authorize(&self, open: fn(&str)) -> Result<(), Error> { $($wrap)::*(<$client>::authorize(self, open)) }
        }
    };
}

/// No wrapping: the blocking client's calls are already blocking.
#[cfg(feature = "ureq")]
fn direct<T>(t: T) -> T {
    t
}

#[cfg(feature = "ureq")]
forward!(mcp_recovery::blocking::Client, direct);
#[cfg(feature = "smol")]
forward!(mcp_recovery::smol::Client, smol::block_on);

/// A client on the handshake wire: these scenarios are about sessions,
/// which only that wire has (the Python peer speaks both; the default,
/// `Protocol::Auto`, would pick the stateless one). Negotiation has its
/// own scenarios (`wires`).
pub fn builder<C: Mcp>(peer: &Peer) -> ClientBuilder<C> {
    ClientBuilder::new(&peer.url())
        .read_timeout(Duration::from_secs(20))
        .protocol(Protocol::Legacy)
}

pub fn client<C: Mcp>(peer: &Peer) -> C {
    builder(peer).build().expect("client")
}

/// The five operations of the seed issue, each checked for its answer.
pub const OPS: [&str; 5] = [
    "tools/list",
    "tools/call",
    "resources/read",
    "prompts/get",
    "ping",
];

pub fn op<C: Mcp>(c: &C, which: &str) {
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
            let text = p.messages[0].content.text().unwrap_or_default().to_owned();
            assert!(text.contains("Ada"), "{text}");
        }
        "ping" => c.ping().unwrap(),
        other => unreachable!("{other}"),
    }
}

/// The handshake and all seven operations, tool annotations, an `isError`
/// result, raw requests, progress, and close.
/// Servers echo the caller's input in their errors: a prompt named
/// "Session not found" and a tool whose own error says "Browser session not
/// found" get the server's answer back, sent once, on the same session.
pub fn servers_own_session_words_are_answers<C: Mcp>(kind: Kind) {
    let peer = Peer::start(kind);
    let c: C = client(&peer);
    c.initialize().unwrap();
    let session = c.session_id();
    for name in ["Session not found", "Invalid or expired session"] {
        match c.get_prompt(name, None) {
            Err(Error::Rpc(e)) => assert!(e.message.contains(name), "{e:?}"),
            other => panic!("prompts/get {name:?}: expected the server's error, got {other:?}"),
        }
    }
    if matches!(kind, Kind::Python { .. }) {
        let message = "Browser session not found";
        match c.call_tool("fail", json!({ "message": message })) {
            Err(Error::Rpc(e)) => assert_eq!(e.message, message),
            other => panic!("expected the tool's own error, got {other:?}"),
        }
        assert_eq!(peer.failures(), 1, "the tool ran once");
    }
    assert_eq!(c.generation(), 1, "no re-initialize");
    assert_eq!(c.session_id(), session, "the same session");
    assert_eq!(peer.initializes(), 1);
    assert_eq!(
        c.call_tool("echo", json!({"text": "still here"}))
            .unwrap()
            .text(),
        "still here"
    );
}

pub fn all_operations<C: Mcp>(kind: Kind) {
    let peer = Peer::start(kind);
    let c: C = client(&peer);
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
    match c.call_tool("add", json!({"a": "x"})) {
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
    // Progress notifications reach the call's callback (SSE streams them).
    let streamed = matches!(
        kind,
        Kind::Python {
            mode: Mode::Sse,
            ..
        } | Kind::Ts { mode: Mode::Sse }
    );
    unknown_method_and_progress(&c, streamed);

    assert_eq!(peer.initializes(), 1);
    assert_eq!(c.generation(), 1);
    c.close().unwrap();
    match c.ping() {
        Err(Error::Call(CallError::Closed)) => {}
        other => panic!("{other:?}"),
    }
}

/// An unknown method is the server's -32601; a call's progress reaches its
/// callback, every step of it when `streamed`.
pub fn unknown_method_and_progress<C: Mcp>(c: &C, streamed: bool) {
    match c.request("no/such/method", None) {
        Err(Error::Rpc(e)) => assert_eq!(e.code, -32601),
        other => panic!("{other:?}"),
    }
    let seen = Mutex::new(Vec::new());
    let opts = CallOptions::new().progress(|p| seen.lock().unwrap().push(p.progress));
    let r = c.call_tool_with("slow", json!({"steps": 3}), opts).unwrap();
    assert_eq!(r.text(), "done after 3 steps");
    if streamed {
        assert_eq!(*seen.lock().unwrap(), vec![1.0, 2.0, 3.0]);
    }
}

/// Each operation runs on a live session, then again after the server lost
/// it; the second run succeeds after exactly one new initialize.
pub fn survives_expiry<C: Mcp>(kind: Kind, expire: impl Fn(&mut Peer)) {
    let mut peer = Peer::start(kind);
    let c: C = client(&peer);
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

/// Waits (observing the server, not the clock) until it dropped every session.
pub fn idle_expiry(peer: &mut Peer) {
    peer.await_no_sessions(Duration::from_secs(10));
}

/// `n` threads released at once, each adding its index and one.
pub fn threads<C: Mcp>(c: &C, n: usize) -> Vec<Result<String, Error>> {
    let start = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (c, start) = (c.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                c.call_tool("add", json!({"a": i, "b": 1}))
                    .map(|r| r.text())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// `callers` calls at once (`spawn_all` starts them: threads or tasks) on
/// an expired session: all succeed, and the server sees exactly one new
/// initialize.
pub fn herd<C: Mcp>(
    kind: Kind,
    expire: impl Fn(&mut Peer),
    callers: usize,
    spawn_all: impl FnOnce(&C, usize) -> Vec<Result<String, Error>>,
) {
    let mut peer = Peer::start(kind);
    let c: C = client(&peer);
    c.ping().unwrap();
    expire(&mut peer);
    let before = peer.initializes();
    let results = spawn_all(&c, callers);
    assert_eq!(results.len(), callers);
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), (i + 1).to_string());
    }
    assert_eq!(peer.initializes(), before + 1, "exactly one re-initialize");
    assert_eq!(c.generation(), 2);
}

/// The server dies while `counter_increment` runs: the call ends with
/// `OutcomeUncertain` (never replayed), and it ran at most once.
pub fn cut_mid_call<C: Mcp>(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c: C = client(&peer);
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

/// A server that stays down: typed errors within the deadline, then the
/// breaker opens and fails fast, and closes once the server is back.
pub fn server_down<C: Mcp>(kind: Kind) {
    let mut peer = Peer::start(kind);
    let cooldown = Duration::from_secs(2);
    let c: C = ClientBuilder::new(&peer.url())
        .protocol(Protocol::Legacy)
        .await_ready(Duration::from_secs(2))
        .breaker(BreakerConfig::new(3, cooldown))
        .configure(|cfg| {
            cfg.connect_retry_delay = Duration::from_millis(200);
            // A server that stays down: give up on it after 1 s, not the
            // 10 s a restart is given by default.
            cfg.restart_budget = Duration::from_secs(1);
        })
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
        // A hang guard, not a benchmark: one connect retry delay plus the
        // await-ready deadline, with room to spare.
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

/// The server is killed and started again 2.5 s later while 8 callers
/// each call a side-effecting tool: every call waits for it (one scout at a
/// time knocks), then is answered, and the tool ran exactly once per call.
pub fn rides_out_a_restart<C: Mcp>(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c: C = client(&peer);
    c.initialize().unwrap();
    let before = peer.counter();
    peer.kill();
    let results: Vec<Result<ToolResult, Error>> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| c.call_tool("counter_increment", json!({}))))
            .collect();
        std::thread::sleep(Duration::from_millis(2500));
        peer.start_again();
        callers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(peer.counter() - before, 8, "each call ran exactly once");
    assert_eq!(c.generation(), 2, "one new session for all of them");
}

/// A stateless server never takes the session path, even across a restart.
pub fn stateless<C: Mcp>(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c: C = client(&peer);
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

/// After a restart, pooled keep-alive connections are dead. A tool call
/// that is not replay-safe must not be reported uncertain because of a
/// connection the server never read from: it re-initializes and runs once.
pub fn restart_then_side_effect<C: Mcp>(kind: Kind) {
    let mut peer = Peer::start(kind);
    let c: C = client(&peer);
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

struct SharedAnswers(Arc<Answers>);

impl ServerHandler for SharedAnswers {
    fn request(&self, m: &str, p: Option<Value>) -> Result<Value, RpcError> {
        self.0.request(m, p)
    }
    fn notification(&self, m: &str, p: Option<Value>) {
        self.0.notification(m, p)
    }
}

/// An elicitation request and log notifications arrive on the call's
/// stream; the handler answers and the call completes.
pub fn server_requests_and_notifications<C: Mcp>() {
    let peer = Peer::start(PY_SSE);
    let handler = Arc::new(Answers {
        logs: AtomicUsize::new(0),
    });
    // Requests on the call's stream: the handshake wire (on the stateless
    // one this Python tool has no back-channel).
    let c: C = ClientBuilder::new(&peer.url())
        .protocol(Protocol::Legacy)
        .handler(SharedAnswers(handler.clone()))
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

/// A typed handler: what it was told, and how it answers.
struct Typed(Arc<Mutex<Vec<mcp_recovery::client::Notification>>>);

impl ServerHandler for Typed {
    fn capabilities(&self) -> Value {
        json!({"elicitation": {"form": {}}})
    }
    fn on_request(&self, r: mcp_recovery::client::ServerRequest) -> Result<Value, RpcError> {
        use mcp_recovery::client::{ElicitResponse, ServerRequest};
        match r {
            ServerRequest::Elicit(e) if e.message == "Go?" => {
                assert!(e.requested_schema.is_some());
                Ok(ElicitResponse::Accept(json!({"ok": true})).to_value())
            }
            other => panic!("{other:?}"),
        }
    }
    fn on_notification(&self, n: mcp_recovery::client::Notification) {
        self.0.lock().unwrap().push(n);
    }
}

/// Typed server messages against the Python SDK server: an elicitation
/// answered through `on_request`, log messages and `tools/list_changed`
/// through `on_notification` (the remembered output schemas forgotten with
/// it); roots answered by the client itself, changed with `set_roots`
/// (the server is told, and asks again).
pub fn typed_handler_and_roots<C: Mcp>() {
    use mcp_recovery::client::{LogMessage, Notification, Root};
    let peer = Peer::start(PY_SSE);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c: C = builder(&peer)
        .listen(true)
        .roots(vec![Root::new("file:///tmp/a").named("a")])
        .handler(Typed(seen.clone()))
        .build()
        .unwrap();
    assert_eq!(
        c.call_tool("confirm", json!({"question": "Go?"}))
            .unwrap()
            .text(),
        "accept:True"
    );
    c.call_tool("slow", json!({"steps": 2})).unwrap();
    let logs: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|n| match n {
            Notification::Log(LogMessage { level, data, .. }) => {
                Some(format!("{level}: {}", data.as_str().unwrap_or("")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(logs, ["info: step 1 of 2", "info: step 2 of 2"]);

    assert_eq!(
        c.call_tool("roots", json!({})).unwrap().text(),
        "file:///tmp/a"
    );
    c.set_roots(vec![Root::new("file:///tmp/b")]).unwrap();
    super::wait_for(
        Duration::from_secs(10),
        "roots/list_changed at the server",
        || peer.count("roots_changed") == 1,
    );
    assert_eq!(
        c.call_tool("roots", json!({})).unwrap().text(),
        "file:///tmp/b"
    );

    // The listing's output schema holds until the server says its tools
    // changed.
    c.all_tools().unwrap();
    assert!(matches!(
        c.call_tool("mislabeled", json!({})),
        Err(Error::InvalidOutput { .. })
    ));
    let changed = || {
        seen.lock()
            .unwrap()
            .contains(&Notification::ToolsListChanged)
    };
    // The server drops a session message sent before its GET stream is
    // set up: announce until one arrives.
    super::wait_for(Duration::from_secs(10), "tools/list_changed", || {
        c.call_tool("announce", json!({})).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        changed()
    });
    let r = c.call_tool("mislabeled", json!({})).unwrap();
    assert_eq!(r.structured_content, Some(json!({"result": "seven"})));
}

/// Elicitation and sampling answered by closures given to the builder
/// (which declare the capabilities): the Python SDK server's elicitation
/// and sampling requests on the handshake wire, and its input-required
/// round on 2026-07-28, answered by the same closure.
pub fn elicitation_and_sampling_closures<C: Mcp>() {
    use mcp_recovery::client::ElicitResponse;
    let peer = Peer::start(PY_SSE);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let build = |protocol: Protocol| -> C {
        let asked = asked.clone();
        ClientBuilder::new(&peer.url())
            .protocol(protocol)
            .elicitation(move |req| {
                asked.lock().unwrap().push(req.message.clone());
                ElicitResponse::Accept(json!({"ok": true}))
            })
            .sampling(|params| {
                let text = params["messages"][0]["content"]["text"]
                    .as_str()
                    .unwrap_or("");
                Ok(json!({
                    "role": "assistant",
                    "content": {"type": "text", "text": format!("{} chars", text.len())},
                    "model": "closure-model",
                }))
            })
            .call_timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    };
    let c = build(Protocol::Legacy);
    assert_eq!(
        c.call_tool("confirm", json!({"question": "Go?"}))
            .unwrap()
            .text(),
        "accept:True"
    );
    assert_eq!(
        c.call_tool("summarize", json!({"text": "twelve chars"}))
            .unwrap()
            .text(),
        "closure-model: 12 chars"
    );
    let modern = build(Protocol::Auto);
    let r = modern.call_tool("deploy", json!({"env": "prod"})).unwrap();
    assert_eq!(modern.protocol_version(), Some("2026-07-28"));
    assert_eq!(r.text(), "deployed to prod: True (#1)");
    assert_eq!(*asked.lock().unwrap(), ["Go?", "Deploy to prod?"]);
}

/// Answers over SSE keep their connection (the stream's end is read
/// right after the answer), and a server request on a call's stream still
/// arrives on a kept connection: the Python and TypeScript servers behind
/// a proxy that counts connections. (The kept-connection build taken out
/// earlier lost exactly such a request, an elicitation of a TypeScript SDK
/// server; it read the stream's end later, on another thread.)
pub fn kept_connections<C: Mcp>(kind: Kind) {
    let peer = Peer::start(kind);
    let proxy = super::counting_proxy::CountingProxy::to(peer.port);
    let c: C = ClientBuilder::new(&proxy.url())
        .protocol(Protocol::Legacy)
        .read_timeout(Duration::from_secs(20))
        .call_timeout(Duration::from_secs(20))
        .handler(Yes)
        .build()
        .unwrap();
    for i in 0..50 {
        let r = c.call_tool("add", json!({"a": i, "b": 1})).unwrap();
        assert_eq!(r.text(), (i + 1).to_string());
    }
    for _ in 0..5 {
        let r = c.call_tool("confirm", json!({"question": "Go?"})).unwrap();
        assert_eq!(r.text().to_lowercase(), "accept:true", "{kind:?}");
        c.call_tool("add", json!({"a": 1, "b": 1})).unwrap();
    }
    // One connection carries the calls; a call waiting on its stream for
    // the answer to a server request needs a second for that answer.
    assert!(
        proxy.connections() <= 3,
        "{kind:?}: {} connections for 60 calls",
        proxy.connections()
    );
}

/// The conformance scenario `elicitation-sep1034-client-defaults`, made
/// reproducible: a TypeScript SDK server asks through the session (no
/// related request), which goes only on the GET stream and is dropped if
/// that stream is not open yet. A fresh client's first call must not race
/// its own GET: it waits for the stream's answer. Ten fresh sessions, each
/// asking on its very first call (before the fix, about one run in three
/// lost the question and the call timed out).
pub fn asks_on_the_session_stream_at_once<C: Mcp>() {
    let peer = Peer::start(TS_SSE);
    for _ in 0..10 {
        let c: C = ClientBuilder::new(&peer.url())
            .protocol(Protocol::Legacy)
            .listen(true)
            .call_timeout(Duration::from_secs(10))
            .handler(Yes)
            .build()
            .unwrap();
        let r = c.call_tool("confirm_on_session", json!({"question": "Go?"}));
        assert_eq!(r.unwrap().text(), "accept:true");
        c.close().unwrap();
    }
}

/// HTTPS to the Python SDK server with a certificate from a CA of its own:
/// trusted through `tls_roots_pem`, calls work (on a kept connection);
/// without it the webpki roots do not know that CA and nothing is sent; a
/// PEM with no certificate is a configuration error.
pub fn private_ca<C: Mcp>() {
    let peer = Peer::start(Kind::PythonTls);
    let proxy = super::counting_proxy::CountingProxy::to(peer.port);
    // Through the proxy the address is still 127.0.0.1: the certificate
    // names it.
    let url = proxy.url().replace("http://", "https://");
    let c: C = ClientBuilder::new(&url)
        .protocol(Protocol::Legacy)
        .tls_roots_pem(&peer.ca_pem())
        .build()
        .unwrap();
    for i in 0..20 {
        let r = c.call_tool("add", json!({"a": i, "b": 1})).unwrap();
        assert_eq!(r.text(), (i + 1).to_string());
    }
    assert!(
        proxy.connections() <= 2,
        "{} connections",
        proxy.connections()
    );

    let stranger: C = ClientBuilder::new(&peer.url())
        .protocol(Protocol::Legacy)
        .build()
        .unwrap();
    match stranger.ping() {
        Err(Error::Call(CallError::InitializeFailed(e))) => {
            assert!(matches!(*e, CallError::Transport { .. }), "{e:?}")
        }
        other => panic!("{other:?}"),
    }
    let bad = ClientBuilder::<C>::new(&peer.url())
        .tls_roots_pem("not a certificate")
        .build();
    assert!(matches!(bad, Err(Error::Config(_))));
}

/// A server that closes the connection after every answer: each call
/// costs a new TLS handshake, and after the first they resume the
/// session (a TLS 1.3 ticket) instead of a full handshake. The blocking
/// client resumed none before its connections shared one TLS
/// configuration (BENCHMARKS.md §10).
pub fn tls_sessions_resume<C: Mcp>() {
    let peer = Peer::start(Kind::PythonTlsClose);
    let c: C = ClientBuilder::new(&peer.url())
        .protocol(Protocol::Legacy)
        .tls_roots_pem(&peer.ca_pem())
        .build()
        .unwrap();
    for i in 0..10 {
        let r = c.call_tool("add", json!({"a": i, "b": 1})).unwrap();
        assert_eq!(r.text(), (i + 1).to_string());
    }
    let (handshakes, resumed) = peer.tls_handshakes();
    // Ours: one per connection (initialize, initialized, ten calls), the
    // first full; the stats read's own handshake is full too.
    assert!(handshakes >= 12, "{handshakes} handshakes");
    assert!(
        resumed + 2 >= handshakes,
        "{resumed} of {handshakes} handshakes resumed"
    );
}

/// A session with nothing to do holds no connection: the pooled one is
/// closed once idle past the pool's keep (300 ms here; 4 s by default:
/// the smol client's sweeper task, the blocking client's reaper thread),
/// and the next call opens a new one.
pub fn idle_connections_closed<C: Mcp>() {
    let peer = Peer::start(PY_JSON);
    let proxy = super::counting_proxy::CountingProxy::to(peer.port);
    let c: C = ClientBuilder::new(&proxy.url())
        .pool_idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for i in 0..3 {
        let r = c.call_tool("add", json!({"a": i, "b": 1})).unwrap();
        assert_eq!(r.text(), (i + 1).to_string());
    }
    assert!(proxy.open() >= 1, "a connection kept between calls");
    let before = proxy.connections();
    super::wait_for(
        Duration::from_secs(10),
        "the idle connection closed",
        || proxy.open() == 0,
    );
    c.ping().unwrap();
    assert_eq!(
        proxy.connections(),
        before + 1,
        "a new one for the next call"
    );
}

/// Clients with the same settings share their idle connections (an
/// HTTP/1 connection carries no session: each request names its own), so
/// twenty sessions called one after the other take one connection; each
/// is still its own session on the server (the handshake wire, where
/// sessions exist). A client with other settings
/// (here its idle timeout) keeps a pool of its own.
pub fn shared_connections<C: Mcp>() {
    let peer = Peer::start(PY_JSON);
    let proxy = super::counting_proxy::CountingProxy::to(peer.port);
    // A timeout no other test uses: this test's clients alone in the pool.
    let keep = Duration::from_millis(30_007);
    let clients: Vec<C> = (0..20)
        .map(|_| {
            ClientBuilder::new(&proxy.url())
                .protocol(Protocol::Legacy)
                .pool_idle_timeout(keep)
                .build()
                .unwrap()
        })
        .collect();
    for (i, c) in clients.iter().enumerate() {
        let r = c.call_tool("add", json!({"a": i, "b": 1})).unwrap();
        assert_eq!(r.text(), (i + 1).to_string());
    }
    let sessions: std::collections::HashSet<_> =
        clients.iter().map(|c| c.session_id().unwrap()).collect();
    assert_eq!(sessions.len(), 20, "a session each");
    assert_eq!(proxy.connections(), 1, "one connection for all twenty");
    let other: C = ClientBuilder::new(&proxy.url())
        .pool_idle_timeout(keep + Duration::from_millis(1))
        .build()
        .unwrap();
    other.ping().unwrap();
    assert_eq!(proxy.connections(), 2, "other settings, another pool");
}

/// Twenty-four sessions sharing connections, called all at once, then the
/// server restarts (every pooled connection dead, every session gone):
/// each call is answered, each session re-initialized exactly once, no
/// request lost on a connection the server had closed.
pub fn shared_connections_across_a_restart<C: Mcp>() {
    const N: usize = 24;
    let mut peer = Peer::start(PY_JSON);
    let clients: Vec<C> = (0..N)
        .map(|_| {
            ClientBuilder::new(&peer.url())
                .protocol(Protocol::Legacy)
                .build()
                .unwrap()
        })
        .collect();
    let all_at_once = |clients: &[C]| {
        std::thread::scope(|s| {
            let calls: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(i, c)| s.spawn(move || c.call_tool("add", json!({"a": i, "b": 1}))))
                .collect();
            for (i, call) in calls.into_iter().enumerate() {
                assert_eq!(call.join().unwrap().unwrap().text(), (i + 1).to_string());
            }
        })
    };
    all_at_once(&clients);
    peer.restart();
    let before = peer.initializes();
    all_at_once(&clients);
    assert_eq!(
        peer.initializes(),
        before + N as u64,
        "one initialize per session"
    );
    assert!(clients.iter().all(|c| c.generation() == 2));
}

/// Accepts every elicitation.
pub struct Yes;

impl ServerHandler for Yes {
    fn capabilities(&self) -> Value {
        json!({"elicitation": {"form": {}}})
    }
    fn request(&self, method: &str, _: Option<Value>) -> Result<Value, RpcError> {
        assert_eq!(method, "elicitation/create");
        Ok(json!({"action": "accept", "content": {"ok": true}}))
    }
}

/// A cancel handle and a call timeout end the call early; the session
/// stays and the next call works.
pub fn cancel_and_timeout<C: Mcp>() {
    let peer = Peer::start(PY_SSE);
    let c: C = client(&peer);
    c.initialize().unwrap();

    let handle = c.cancel_handle();
    let canceller = handle.clone();
    // Cancel from the first progress notification: the call is running.
    let opts = CallOptions::new()
        .cancel(handle)
        .progress(move |_| canceller.cancel());
    match c.call_tool_with("slow", json!({"steps": 200}), opts) {
        Err(Error::Call(CallError::Cancelled)) => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // 200 steps take 4 s: the server got `notifications/cancelled` and
    // stopped the tool early (its own count says so).
    peer.await_cancelled(1, Duration::from_secs(5));

    let opts = CallOptions::new().timeout(Duration::from_millis(300));
    match c.call_tool_with("counter_increment", json!({"delay_ms": 3000}), opts) {
        Err(Error::Timeout) => {}
        other => panic!("expected Timeout, got {other:?}"),
    }

    // Cancelled from another thread while the server says nothing at all
    // (no progress, no event: a read blocked on a silent socket). The
    // tool answers after 3 s; the call must end as cancelled, not wait
    // for that answer and return it.
    let handle = c.cancel_handle();
    let canceller = handle.clone();
    let cancel_soon = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        canceller.cancel();
    });
    let opts = CallOptions::new().cancel(handle);
    match c.call_tool_with("counter_increment", json!({"delay_ms": 3000}), opts) {
        Err(Error::Call(CallError::Cancelled)) => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
    cancel_soon.join().unwrap();
    op(&c, "tools/call");
    assert_eq!(c.generation(), 1);
}

/// Counts the `notifications/message` (log) notifications it is handed.
struct CountLogs(Arc<AtomicUsize>);

impl ServerHandler for CountLogs {
    fn notification(&self, method: &str, _params: Option<Value>) {
        if method == "notifications/message" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The typed calls beyond the five operations, on the handshake wire:
/// resource templates (a page, every page, read through one), completion
/// of a prompt's and of a template's argument, every page of resources
/// and prompts, log messages reaching the handler, the log level and
/// resource subscriptions (the Python peer serves them through its
/// low-level server; the TypeScript SDK 1.32.2 server declares neither:
/// its answer is the typed refusal).
pub fn typed_extras<C: Mcp>(kind: Kind) {
    let peer = Peer::start(kind);
    let logs = Arc::new(AtomicUsize::new(0));
    let c: C = builder(&peer)
        .handler(CountLogs(logs.clone()))
        .build()
        .unwrap();
    let page = c.list_resource_templates(None).unwrap();
    assert!(page
        .resource_templates
        .iter()
        .any(|t| t.uri_template == "greeting://{name}"));
    let all = c.all_resource_templates().unwrap();
    assert_eq!(all.len(), page.resource_templates.len());
    let read = c.read_resource("greeting://Ada").unwrap();
    assert_eq!(read.contents[0].text.as_deref(), Some("Hello, Ada!"));
    let greet = CompletionRef::Prompt("greet".into());
    assert_eq!(
        c.complete(&greet, "name", "a").unwrap().values,
        ["Ada", "Alan"]
    );
    let template = CompletionRef::Resource("greeting://{name}".into());
    assert_eq!(
        c.complete(&template, "name", "g").unwrap().values,
        ["Grace"]
    );
    assert!(c
        .all_resources()
        .unwrap()
        .iter()
        .any(|r| r.uri == "counter://total"));
    assert!(c.all_prompts().unwrap().iter().any(|p| p.name == "greet"));
    let method_not_found = |r: Result<(), Error>| match r {
        Err(Error::Rpc(e)) => assert_eq!(e.code, -32601, "{e:?}"),
        other => panic!("expected method not found, got {other:?}"),
    };
    if let Kind::Python { .. } = kind {
        c.set_log_level("debug").unwrap();
        c.subscribe("counter://total").unwrap();
        c.unsubscribe("counter://total").unwrap();
        assert_eq!(
            (
                peer.count("set_level"),
                peer.count("subscribe"),
                peer.count("unsubscribe")
            ),
            (1, 1, 1),
            "each reached the server once"
        );
        c.call_tool("slow", json!({"steps": 3})).unwrap();
        assert!(
            logs.load(Ordering::SeqCst) >= 3,
            "the log messages reach the handler"
        );
    } else {
        method_not_found(c.set_log_level("debug"));
        method_not_found(c.subscribe("counter://total"));
    }
}

/// A body over the limit is a typed error; the next call works.
pub fn oversize_body<C: Mcp>() {
    let peer = Peer::start(TS_JSON);
    let c: C = ClientBuilder::new(&peer.url())
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

/// Bad settings are typed errors; a port nobody listens on is a typed
/// connect error, not a panic.
pub fn bad_configuration<C: Mcp>() {
    for url in ["ftp://x/mcp", "not a url"] {
        let r: Result<C, _> = ClientBuilder::new(url).build();
        assert!(matches!(r, Err(Error::Config(_))), "{url}");
    }
    let r: Result<C, _> = ClientBuilder::new("http://127.0.0.1:1/mcp")
        .header("Authorization", "Bearer x")
        .build();
    assert!(matches!(r, Err(Error::Config(_))));
    let c: C = ClientBuilder::new("http://127.0.0.1:1/mcp")
        .configure(|cfg| cfg.connect_retry_delay = Duration::from_millis(10))
        .build()
        .unwrap();
    let err = c.ping().unwrap_err();
    assert!(matches!(err, Error::Call(_)), "{err}");
}

/// The token is sent (the server accepts any) and never printed.
pub fn bearer_never_printed<C: Mcp>() {
    let peer = Peer::start(TS_SSE);
    let c: C = ClientBuilder::new(&peer.url())
        .bearer("s3cr3t-t0ken")
        .build()
        .unwrap();
    op(&c, "tools/call");
    assert!(!format!("{c:?}").contains("s3cr3t"));
}

// ----- event streams the server closes -----

/// The server closes the call's event stream before the answer (SEP-1699
/// polling) after counting the call: the client resumes with a GET carrying
/// `Last-Event-ID`, gets the answer there, and the side effect ran once.
pub fn resumes_a_closed_stream<C: Mcp>() {
    let peer = Peer::start(Kind::PythonResumable);
    let c: C = client(&peer);
    let seen = Mutex::new(Vec::new());
    let opts = CallOptions::new().progress(|p| seen.lock().unwrap().push(p.progress));
    let r = c
        .call_tool_with("polled_increment", json!({}), opts)
        .unwrap();
    assert_eq!(r.text(), "1");
    assert_eq!(peer.counter(), 1, "ran once: resumed, not replayed");
    assert_eq!(peer.resumes(), 1, "one GET with Last-Event-ID");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1.0, 2.0],
        "progress from both streams"
    );
    assert_eq!(c.generation(), 1, "the same session");
    op(&c, "tools/call");
}

/// Counts the notifications that reach the handler, by method.
struct Notes(Arc<Mutex<Vec<String>>>);

impl ServerHandler for Notes {
    fn notification(&self, method: &str, _params: Option<Value>) {
        self.0.lock().unwrap().push(method.to_owned());
    }
}

/// With `listen`, a notification the server sends outside any call
/// (`tools/list_changed`) reaches the handler over the GET stream, and the
/// stream is opened again for the new session after a restart.
pub fn listening_stream_carries_session_messages<C: Mcp>() {
    let mut peer = Peer::start(PY_SSE);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c: C = builder(&peer)
        .listen(true)
        .handler(Notes(seen.clone()))
        .build()
        .unwrap();
    let changed = || {
        let got = seen.lock().unwrap();
        got.iter()
            .filter(|m| *m == "notifications/tools/list_changed")
            .count()
    };
    // The server drops a session message sent before it has set up the
    // GET stream (it keeps none for later), so announce until one arrives.
    let announce = |n: usize, what: &str| {
        super::wait_for(Duration::from_secs(10), what, || {
            assert_eq!(
                c.call_tool("announce", json!({})).unwrap().text(),
                "announced"
            );
            std::thread::sleep(Duration::from_millis(50));
            changed() >= n
        });
    };
    announce(1, "list_changed on the GET stream");
    peer.restart();
    let before = changed();
    announce(before + 1, "list_changed on the new session's GET stream");
    assert_eq!(c.generation(), 2);
}

// ----- OAuth against the Python SDK's own authorization server -----

/// A person's browser, for tests: like a real one it runs beside the
/// client (opening it returns at once), follows the authorization URL (the
/// test server grants at once) to its redirect, and lands on the client's
/// loopback listener.
pub fn browser(url: &str) {
    let url = url.to_owned();
    std::thread::spawn(move || follow_to_loopback(&url));
}

/// What a person's browser does with the authorization URL, on this
/// thread: the server grants at once, the redirect goes to the loopback.
fn follow_to_loopback(url: &str) {
    {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent.get(url).call().expect("authorization endpoint");
        assert_eq!(response.status(), 302, "the server grants at once");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("http://127.0.0.1:"), "{location}");
        let back = agent.get(&location).call().expect("loopback redirect");
        assert_eq!(back.status(), 200);
    }
}

fn oauth_client<C: Mcp>(peer: &Peer, store: FileTokenStore) -> C {
    builder(peer)
        .oauth(OAuthConfig::new(store))
        .build()
        .expect("client")
}

/// A token file in a directory of the test's own, writable by its owner
/// only (the store refuses any other).
fn token_file(peer: &Peer) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-recovery-tokens-{}-{}",
        std::process::id(),
        peer.port
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).expect("token directory");
    dir.join("tokens.json")
}

/// The `redirect_uri` an authorization URL names.
fn redirect_uri(authorization_url: &str) -> String {
    url::Url::parse(authorization_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("redirect_uri")
}

/// A local process reaching the loopback listener first with a forged
/// redirect (another `state`), then the person's browser: the forged one
/// must be ignored, never end the flow.
pub fn forged_then_browser(url: &str) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let redirect = redirect_uri(&url);
        let forged = format!("{redirect}?code=attacker-code&state=forged");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let _ = agent.get(&forged).call().expect("the listener answers");
        browser(&url);
    });
}

/// Local processes (or a browser's speculative pre-connections) connect
/// to the loopback listener first and say nothing, holding their
/// connections open; then the person's browser comes back.
pub fn silent_then_browser(url: &str) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let redirect = redirect_uri(&url);
        let port = url::Url::parse(&redirect).unwrap().port().unwrap();
        let silent: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        // Held open until the browser's redirect was answered.
        follow_to_loopback(&url);
        drop(silent);
    });
}

/// The loopback listener reads its connections side by side: three silent
/// ones held open for longer than the whole redirect wait (3 s here) do
/// not keep the browser's redirect out.
pub fn oauth_listener_not_held_by_silent_connections<C: Mcp>() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 3600.0 });
    let mut config = OAuthConfig::new(mcp_recovery::client::oauth::MemoryTokenStore::default());
    config.redirect_timeout = Duration::from_secs(3);
    let c: C = builder(&peer).oauth(config).build().expect("client");
    c.authorize(silent_then_browser)
        .expect("authorized past the silent connections");
    op(&c, "tools/call");
}

/// A client registered earlier that the server has since forgotten: its
/// authorization endpoint shows the person an error instead of
/// redirecting, so the flow that reused it times out; that flow forgets
/// the registration in the token store, and the next one registers anew
/// and succeeds (no token file to delete by hand).
pub fn oauth_forgotten_registration_is_dropped<C: Mcp>() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 3600.0 });
    let path = token_file(&peer);
    let client = || -> C {
        let mut config = OAuthConfig::new(FileTokenStore::new(&path));
        config.redirect_timeout = Duration::from_secs(2);
        builder(&peer).oauth(config).build().expect("client")
    };
    client().authorize(browser).unwrap();
    assert!(
        stored(&path).redirect_uri.is_some(),
        "the registration kept"
    );
    assert_eq!(peer.count("registrations"), 1);
    peer.hook("/test/forget-clients");
    // The person's browser gets the server's error page: no redirect.
    let shown_an_error = |url: &str| {
        let url = url.to_owned();
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .max_redirects(0)
                .http_status_as_error(false)
                .build()
                .into();
            let status = agent
                .get(&url)
                .call()
                .expect("authorization endpoint")
                .status();
            assert_eq!(status, 400, "an unknown client is refused");
        });
    };
    match client().authorize(shown_an_error) {
        Err(Error::Auth(e)) => assert!(e.to_string().contains("redirect"), "{e}"),
        other => panic!("expected the redirect wait to end, got {other:?}"),
    }
    assert!(
        stored(&path).redirect_uri.is_none(),
        "forgotten in the store"
    );
    assert!(stored(&path).refresh_token.is_some(), "the tokens stay");
    let c = client();
    c.authorize(browser).unwrap();
    assert_eq!(peer.count("registrations"), 2, "registered anew");
    op(&c, "tools/call");
    let _ = std::fs::remove_file(&path);
}

fn stored(path: &std::path::Path) -> StoredTokens {
    FileTokenStore::new(path).load().expect("stored tokens")
}

/// No tokens: the call says a person must authorize, and never loops. The
/// authorization flow (discovery, dynamic registration, PKCE, loopback
/// redirect) stores tokens; then an access token that expires mid-session
/// costs one refresh and keeps the session, and the store holds the
/// rotated refresh token. A revoked refresh token ends in `NeedsReauth`.
pub fn oauth_flow_refresh_and_reauth<C: Mcp>() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 3600.0 });
    let path = token_file(&peer);
    let c: C = oauth_client(&peer, FileTokenStore::new(&path));
    match c.ping() {
        Err(Error::Call(CallError::NeedsReauth { url })) => assert_eq!(url, peer.url()),
        other => panic!("expected NeedsReauth, got {other:?}"),
    }
    assert_eq!(
        peer.refreshes(),
        0,
        "nothing to refresh: no refresh request"
    );

    // A forged redirect reaches the listener first: ignored.
    c.authorize(forged_then_browser).unwrap();
    let first = stored(&path);
    assert!(first.refresh_token.is_some());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "tokens readable by their owner only");
    }
    op(&c, "tools/call");
    let session = c.session_id();
    let generation = c.generation();

    // The access token expires while the session lives on.
    peer.hook("/test/expire-access");
    op(&c, "tools/call");
    assert_eq!(peer.refreshes(), 1, "one refresh");
    assert_eq!(
        c.session_id(),
        session,
        "the same session: no re-initialize"
    );
    assert_eq!(c.generation(), generation);
    let second = stored(&path);
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "rotated and kept"
    );
    assert_ne!(second.access_token, first.access_token);

    // A client started later (another process) takes the stored tokens.
    let again: C = oauth_client(&peer, FileTokenStore::new(&path));
    op(&again, "ping");

    // Refresh token revoked: a person must authorize again, with no loop.
    peer.hook("/test/revoke-refresh");
    peer.hook("/test/expire-access");
    match c.ping() {
        Err(e @ Error::Call(CallError::NeedsReauth { .. })) => {
            let text = format!("{e} {e:?} {c:?}");
            for secret in [&second.access_token, second.refresh_token.as_ref().unwrap()] {
                assert!(!text.contains(secret.as_str()), "a token leaked: {text}");
            }
        }
        other => panic!("expected NeedsReauth, got {other:?}"),
    }
    assert_eq!(peer.refreshes(), 2, "one refused refresh, no retry loop");
    let _ = std::fs::remove_file(&path);
}

/// DPoP against a server that binds its tokens (the Python SDK's OAuth
/// server behind `tests/peers/dpop_gate.py`, changing its nonce every 3
/// requests): the tokens come bound to a key kept in the token file, every
/// request carries a proof the server accepts (a stale nonce costs one
/// resend, never a failed call), an expired token is refreshed with a
/// proof of the same key, and a client started later presents the stored
/// tokens with the stored key. Never a bound token as Bearer.
pub fn oauth_dpop_lifecycle<C: Mcp>() {
    let peer = Peer::start(Kind::PythonDpop { nonce_every: 3 });
    let path = token_file(&peer);
    let dpop_client = || -> C {
        builder(&peer)
            .oauth(OAuthConfig::new(FileTokenStore::new(&path)).dpop())
            .build()
            .expect("client")
    };
    let c = dpop_client();
    assert!(matches!(
        c.ping(),
        Err(Error::Call(CallError::NeedsReauth { .. }))
    ));
    c.authorize(browser).unwrap();
    let first = stored(&path);
    assert_eq!(first.token_type.as_deref(), Some("DPoP"));
    let key = first
        .dpop_key
        .clone()
        .expect("the key kept with its tokens");
    for _ in 0..6 {
        op(&c, "tools/call");
    }
    assert!(
        peer.count("dpop_nonce_challenges") >= 2,
        "the nonce changed under the client"
    );

    // Expired: one refresh, with a proof of the key the refresh token is
    // bound to (the server refuses any other).
    peer.hook("/test/expire-access");
    op(&c, "tools/call");
    assert_eq!(peer.refreshes(), 1);
    let second = stored(&path);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.dpop_key.as_deref(), Some(key.as_str()), "same key");

    // Another process: the stored tokens, presented with the stored key.
    let later = dpop_client();
    op(&later, "tools/call");
    op(&later, "ping");
    assert_eq!(peer.refreshes(), 1, "no refresh needed");

    assert_eq!(peer.count("dpop_refused"), 0, "every proof accepted");
    assert_eq!(peer.count("bearer_presented"), 0);
    let text = format!("{c:?} {later:?} {second:?}");
    for secret in [&key, &second.access_token] {
        assert!(!text.contains(secret.as_str()), "a secret leaked: {text}");
    }
    let _ = std::fs::remove_file(&path);
}

/// Enterprise-managed authorization against the Python SDK's
/// authorization server (its jwt-bearer grant for ID-JAGs) and an identity
/// provider (`tests/peers/enterprise_idp.py`): no browser; the first call
/// exchanges the person's ID token for an ID-JAG and presents it; once the
/// access token expires (no refresh token is issued) the next call does
/// it again with the ID token the SSO renewed meanwhile (read from its
/// file each time). An ID token the identity provider refuses: a typed
/// error, one attempt, no loop.
pub fn oauth_enterprise_managed<C: Mcp>() {
    use mcp_recovery::client::oauth::{token_file as read_each_time, Enterprise, MemoryTokenStore};
    let peer = Peer::start(Kind::PythonEnterprise);
    let id_token = token_file(&peer).with_file_name("id_token");
    let sso = || {
        let url = format!("http://127.0.0.1:{}/test/id-token", peer.port);
        let token = ureq::get(&url)
            .call()
            .expect("id token")
            .body_mut()
            .read_to_string()
            .expect("id token body");
        std::fs::write(&id_token, token).expect("write the ID token");
    };
    sso();
    let idp = Enterprise::new(
        &format!("http://127.0.0.1:{}/idp/token", peer.port),
        "idp-client",
        read_each_time(&id_token),
    );
    let oauth = OAuthConfig::new(MemoryTokenStore::default()).enterprise(
        idp,
        "enterprise-client",
        Some("enterprise-secret"),
    );
    let c: C = builder(&peer).oauth(oauth).build().expect("client");
    op(&c, "tools/call");
    assert_eq!(
        (peer.count("token_exchanges"), peer.count("id_jag_grants")),
        (1, 1)
    );

    // The SSO renewed the ID token; the access token expires.
    sso();
    peer.hook("/test/expire-access");
    op(&c, "tools/call");
    assert_eq!(
        (peer.count("token_exchanges"), peer.count("id_jag_grants")),
        (2, 2)
    );
    assert_eq!(peer.refreshes(), 0, "no refresh token to spend");
    assert_eq!(peer.count("id_jag_refused"), 0);

    // The person's session ended: the identity provider refuses.
    std::fs::write(&id_token, "not.an.idtoken").unwrap();
    peer.hook("/test/expire-access");
    match c.ping() {
        Err(Error::Call(CallError::NeedsReauth { .. })) => {}
        other => panic!("expected NeedsReauth, got {other:?}"),
    }
    assert_eq!(peer.count("token_exchanges"), 2, "refused, not retried");
    let _ = std::fs::remove_file(&id_token);
}

/// 16 callers fail on the same expired token at once: exactly one
/// refresh request reaches the server (a rotating refresh token is spent
/// once), and all 16 succeed with the new token.
pub fn oauth_herd_shares_one_refresh<C: Mcp>() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 3600.0 });
    let path = token_file(&peer);
    let c: C = oauth_client(&peer, FileTokenStore::new(&path));
    c.authorize(browser).unwrap();
    op(&c, "ping");
    peer.hook("/test/expire-access");
    for (i, r) in threads(&c, 16).into_iter().enumerate() {
        assert_eq!(r.unwrap(), (i + 1).to_string());
    }
    assert_eq!(peer.refreshes(), 1, "exactly one refresh for 16 callers");
    let _ = std::fs::remove_file(&path);
}

/// A token about to expire is refreshed before any call is refused: the
/// server issues 2-second tokens, the client refreshes after half of that
/// (its 30 s skew is capped at half the life left), and calls made
/// meanwhile never see a 401.
pub fn oauth_refreshes_before_expiry<C: Mcp>() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 2.0 });
    let path = token_file(&peer);
    let c: C = oauth_client(&peer, FileTokenStore::new(&path));
    c.authorize(browser).unwrap();
    let before = stored(&path);
    // Calls go on until the refresh shows at the server (bounded).
    super::wait_for(Duration::from_secs(10), "a refresh ahead of expiry", || {
        op(&c, "ping");
        std::thread::sleep(Duration::from_millis(50));
        peer.refreshes() >= 1
    });
    op(&c, "tools/call");
    assert_eq!(peer.unauthorized(), 0, "no call was refused");
    assert_ne!(stored(&path).access_token, before.access_token);
    let _ = std::fs::remove_file(&path);
}

/// A token without a scope the server requires gets 403
/// `insufficient_scope`: with an opener the client authorizes again with
/// the wider scope (step-up) and retries once; without one the call ends
/// in `NeedsReauth`, with no loop.
pub fn oauth_step_up_on_insufficient_scope<C: Mcp>() {
    let peer = Peer::start(Kind::PythonAuth { access_ttl: 600.0 });
    let path = token_file(&peer);
    let narrow = || OAuthConfig::new(FileTokenStore::new(&path)).scope("extra");
    let c: C = builder(&peer).oauth(narrow()).build().unwrap();
    c.authorize(browser).unwrap();
    assert_eq!(stored(&path).scope.as_deref(), Some("extra"));
    match c.ping() {
        Err(Error::Call(CallError::NeedsReauth { .. })) => {}
        other => panic!("expected NeedsReauth without an opener, got {other:?}"),
    }
    let c: C = builder(&peer)
        .oauth(narrow().opener(browser))
        .build()
        .unwrap();
    op(&c, "tools/call");
    let scope = stored(&path).scope.unwrap_or_default();
    assert!(scope.split(' ').any(|s| s == "mcp"), "{scope}");
    assert!(scope.split(' ').any(|s| s == "extra"), "{scope}");
    let _ = std::fs::remove_file(&path);
}

/// The scenarios both clients run, as `#[test]`s for client type `$c`.
/// A tool result with a block of every kind, from the real SDK servers:
/// each typed, and back to JSON as it came.
pub fn typed_content<C: Mcp>(kind: Kind) {
    use mcp_recovery::client::Content;
    let peer = Peer::start(kind);
    let c: C = client(&peer);
    let r = c.call_tool("gallery", json!({})).unwrap();
    assert_eq!(r.content.len(), 5, "{r:?}");
    assert_eq!(r.content[0].text(), Some("a picture"));
    assert!(
        matches!(&r.content[1], Content::Image(b) if b.mime_type == "image/png" && b.data == "iVBORw0KGgo=")
    );
    assert!(matches!(&r.content[2], Content::Audio(b) if b.mime_type == "audio/wav"));
    assert!(
        matches!(&r.content[3], Content::ResourceLink(l) if l.uri == "counter://total" && l.name == "counter")
    );
    assert!(
        matches!(&r.content[4], Content::Resource(e) if e.resource.text.as_deref() == Some("Hello, Ada!"))
    );
    assert_eq!(r.text(), "a picture");
    assert_eq!(r.content[4].to_value()["resource"]["uri"], "greeting://Ada");
}

/// Results are checked against the output schema the tool declared: the
/// Python SDK derives one from every tool's return type, the TypeScript
/// tool declares its own, and a Python tool that answers a string where it
/// declared an integer is refused (it ran once; nothing is resent). Only
/// schemas listed on the session are applied.
pub fn output_schemas<C: Mcp>() {
    let py = Peer::start(PY_SSE);
    let c: C = client(&py);
    // Not listed yet: the schema is unknown, nothing is checked.
    let r = c.call_tool("mislabeled", json!({})).unwrap();
    assert_eq!(r.structured_content, Some(json!({"result": "seven"})));
    let tools = c.all_tools().unwrap();
    let add = tools.iter().find(|t| t.name == "add").unwrap();
    let schema = add.output_schema.as_ref().unwrap();
    assert_eq!(schema["properties"]["result"]["type"], "integer");
    match c.call_tool("mislabeled", json!({})) {
        Err(Error::InvalidOutput { tool, message }) => {
            assert_eq!(tool, "mislabeled");
            assert!(message.contains("/result"), "{message}");
            assert!(message.contains("integer"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(py.count("mislabeled"), 2, "run once each, never resent");
    let r = c.call_tool("add", json!({"a": 2, "b": 3})).unwrap();
    assert_eq!(r.structured_content, Some(json!({"result": 5})));
    // Off: nothing checked.
    let lenient: C = builder(&py).check_output(false).build().unwrap();
    lenient.all_tools().unwrap();
    let r = lenient.call_tool("mislabeled", json!({})).unwrap();
    assert_eq!(r.structured_content, Some(json!({"result": "seven"})));

    let ts = Peer::start(TS_JSON);
    let c: C = client(&ts);
    c.all_tools().unwrap();
    let r = c
        .call_tool("add_structured", json!({"a": 2, "b": 3}))
        .unwrap();
    assert_eq!(r.structured_content, Some(json!({"sum": 5})));
}

#[macro_export]
macro_rules! scenario_tests {
    ($c:ty) => {
        #[test]
        fn https_with_a_private_ca() {
            private_ca::<$c>();
        }
        #[test]
        fn idle_connections_are_closed_then_reopened() {
            idle_connections_closed::<$c>();
        }
        #[test]
        fn clients_with_the_same_settings_share_connections() {
            shared_connections::<$c>();
        }
        #[test]
        fn sessions_sharing_connections_recover_from_a_restart_together() {
            shared_connections_across_a_restart::<$c>();
        }
        #[test]
        fn tls_sessions_resume_on_new_connections() {
            tls_sessions_resume::<$c>();
        }
        #[test]
        fn ts_asks_on_the_session_stream_right_after_initialize() {
            asks_on_the_session_stream_at_once::<$c>();
        }
        #[test]
        fn connections_are_kept_across_event_stream_answers() {
            kept_connections::<$c>(PY_SSE);
            kept_connections::<$c>(TS_SSE);
        }
        #[test]
        fn elicitation_and_sampling_by_closures_on_both_wires() {
            elicitation_and_sampling_closures::<$c>();
        }
        #[test]
        fn typed_handler_roots_and_list_changed() {
            typed_handler_and_roots::<$c>();
        }
        #[test]
        fn content_of_every_kind_is_typed() {
            typed_content::<$c>(PY_JSON);
            typed_content::<$c>(TS_JSON);
        }
        #[test]
        fn results_are_checked_against_output_schemas() {
            output_schemas::<$c>();
        }
        #[test]
        fn python_listening_stream_carries_session_notifications() {
            listening_stream_carries_session_messages::<$c>();
        }
        #[test]
        fn oauth_403_insufficient_scope_steps_up_once() {
            oauth_step_up_on_insufficient_scope::<$c>();
        }
        #[test]
        fn oauth_token_refreshed_ahead_of_expiry() {
            oauth_refreshes_before_expiry::<$c>();
        }
        #[test]
        fn python_closed_stream_resumes_with_last_event_id() {
            resumes_a_closed_stream::<$c>();
        }
        #[test]
        fn oauth_flow_then_one_refresh_keeps_the_session_and_revocation_needs_reauth() {
            oauth_flow_refresh_and_reauth::<$c>();
        }
        #[test]
        fn oauth_dpop_bound_tokens_refresh_nonces_and_a_later_process() {
            oauth_dpop_lifecycle::<$c>();
        }
        #[test]
        fn oauth_enterprise_id_token_to_id_jag_to_token_against_the_python_sdk() {
            oauth_enterprise_managed::<$c>();
        }
        #[test]
        fn oauth_redirect_listener_is_not_held_by_silent_connections() {
            oauth_listener_not_held_by_silent_connections::<$c>();
        }
        #[test]
        fn oauth_a_registration_the_server_forgot_is_dropped() {
            oauth_forgotten_registration_is_dropped::<$c>();
        }
        #[test]
        fn oauth_16_callers_on_an_expired_token_share_one_refresh() {
            oauth_herd_shares_one_refresh::<$c>();
        }
        #[test]
        fn python_servers_own_session_words_are_answers() {
            servers_own_session_words_are_answers::<$c>(PY_SSE);
        }
        #[test]
        fn ts_servers_own_session_words_are_answers() {
            servers_own_session_words_are_answers::<$c>(TS_JSON);
        }
        #[test]
        fn python_rides_out_a_restart() {
            rides_out_a_restart::<$c>(PY_SSE);
        }
        #[test]
        fn ts_rides_out_a_restart() {
            rides_out_a_restart::<$c>(TS_SSE);
        }
        #[test]
        fn python_sse_all_operations() {
            all_operations::<$c>(PY_SSE);
        }
        #[test]
        fn python_json_all_operations() {
            all_operations::<$c>(PY_JSON);
        }
        #[test]
        fn ts_sse_all_operations() {
            all_operations::<$c>(TS_SSE);
        }
        #[test]
        fn ts_json_all_operations() {
            all_operations::<$c>(TS_JSON);
        }
        #[test]
        fn python_sse_idle_timeout() {
            survives_expiry::<$c>(PY_SSE_IDLE, idle_expiry);
        }
        #[test]
        fn python_json_idle_timeout() {
            survives_expiry::<$c>(PY_JSON_IDLE, idle_expiry);
        }
        #[test]
        fn python_restart() {
            survives_expiry::<$c>(PY_SSE, Peer::restart);
        }
        #[test]
        fn ts_restart() {
            survives_expiry::<$c>(TS_SSE, Peer::restart);
        }
        #[test]
        fn ts_json_restart() {
            survives_expiry::<$c>(TS_JSON, Peer::restart);
        }
        #[test]
        fn python_cut_mid_call_never_runs_twice() {
            cut_mid_call::<$c>(PY_SSE);
        }
        #[test]
        fn ts_cut_mid_call_never_runs_twice() {
            cut_mid_call::<$c>(TS_JSON);
        }
        #[test]
        fn python_down_fails_within_deadline_then_breaker_opens_and_closes() {
            server_down::<$c>(PY_JSON);
        }
        #[test]
        fn ts_down_fails_within_deadline_then_breaker_opens_and_closes() {
            server_down::<$c>(TS_SSE);
        }
        #[test]
        fn python_stateless_never_takes_the_session_path() {
            stateless::<$c>(PY_STATELESS);
        }
        #[test]
        fn ts_stateless_never_takes_the_session_path() {
            stateless::<$c>(TS_STATELESS);
        }
        #[test]
        fn python_restart_then_side_effect_runs_once() {
            restart_then_side_effect::<$c>(PY_SSE);
        }
        #[test]
        fn ts_restart_then_side_effect_runs_once() {
            restart_then_side_effect::<$c>(TS_JSON);
        }
        #[test]
        fn python_server_requests_and_notifications_reach_the_handler() {
            server_requests_and_notifications::<$c>();
        }
        #[test]
        fn cancel_and_call_timeout_end_the_call_and_keep_the_client() {
            cancel_and_timeout::<$c>();
        }
        #[test]
        fn oversize_body_is_a_typed_error_and_the_client_goes_on() {
            oversize_body::<$c>();
        }
        #[test]
        fn bad_configuration_is_a_typed_error() {
            bad_configuration::<$c>();
        }
        #[test]
        fn python_typed_extras() {
            typed_extras::<$c>(PY_SSE);
        }
        #[test]
        fn ts_typed_extras() {
            typed_extras::<$c>(TS_SSE);
        }
        #[test]
        fn bearer_token_never_printed() {
            bearer_never_printed::<$c>();
        }
    };
}
