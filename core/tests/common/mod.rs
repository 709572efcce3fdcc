//! Test harness: an [`Engine`] in virtual time, with every action it emits
//! recorded, and helpers to answer its requests the way real servers do
//! (bodies copied from what the Python and TypeScript SDKs send).
#![allow(dead_code)] // each test binary uses a different subset

use mcp_recovery_core::{
    Action, CallError, CallId, Config, Engine, ExchangeId, FailureKind, HttpRequest, Input,
    Protocol, RpcError, Token, TokenGeneration, TransportFailure,
};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

pub const URL: &str = "http://127.0.0.1:8000/mcp";
pub const PY_404: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#;
pub const TS_404: &str =
    r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#;

/// One request the engine asked us to send.
#[derive(Debug, Clone)]
pub struct Sent {
    pub exchange: ExchangeId,
    pub call: Option<CallId>,
    pub request: HttpRequest,
    pub json: Value,
}

impl Sent {
    pub fn method(&self) -> &str {
        self.json["method"].as_str().unwrap_or("")
    }
    pub fn session_id(&self) -> Option<&str> {
        self.request.header("mcp-session-id")
    }
    pub fn bearer(&self) -> Option<&str> {
        self.request.header("authorization")
    }
}

pub type Outcome = Result<Result<Value, RpcError>, CallError>;

pub struct Harness {
    pub engine: Engine,
    pub t0: Instant,
    pub now: Instant,
    /// Requests not answered yet, oldest first.
    pub outbox: VecDeque<Sent>,
    /// Listening GET streams opened ([`Action::Listen`]).
    pub listens: VecDeque<Sent>,
    /// Every request ever sent.
    pub sent: Vec<Sent>,
    /// Every action except transmits, in order.
    pub events: Vec<Action>,
    /// How each call ended; a second end would be a bug and panics.
    pub ended: BTreeMap<CallId, Outcome>,
}

/// `config` on the handshake wire unless it asks for another: most tests
/// are about sessions; negotiation has its own (`Harness::negotiating`).
pub fn handshake_wire(mut config: Config) -> Config {
    if config.protocol == Protocol::Auto {
        config.protocol = Protocol::Legacy;
    }
    config
}

impl Harness {
    pub fn new(config: Config) -> Self {
        Self::negotiating(handshake_wire(config))
    }

    /// An engine with `config` as it is (`Protocol::Auto` probes first).
    pub fn negotiating(config: Config) -> Self {
        #[allow(clippy::disallowed_methods)] // the one real instant: virtual time starts here
        let t0 = Instant::now();
        Harness {
            engine: Engine::new(config),
            t0,
            now: t0,
            outbox: VecDeque::new(),
            listens: VecDeque::new(),
            sent: Vec::new(),
            events: Vec::new(),
            ended: BTreeMap::new(),
        }
    }

    pub fn default() -> Self {
        Self::new(Config::new(URL))
    }

    /// A harness whose session `s1` is already up.
    pub fn ready() -> Self {
        Self::ready_with(Config::new(URL))
    }

    /// Like [`Harness::ready`], with `config`.
    pub fn ready_with(config: Config) -> Self {
        let mut h = Self::new(config);
        h.engine.connect(h.now);
        h.pump();
        h.handshake("s1");
        h
    }

    pub fn pump(&mut self) {
        while let Some(a) = self.engine.poll_action() {
            let about = match &a {
                Action::Transmit { call, .. } => *call,
                Action::AwaitReady { call, .. } | Action::RetryOnce { call, .. } => Some(*call),
                Action::ServerMessage { call, .. } => *call,
                _ => None,
            };
            if let Some(c) = about {
                assert!(!self.ended.contains_key(&c), "action for ended {c}: {a:?}");
            }
            match a {
                Action::Transmit {
                    exchange,
                    call,
                    request,
                } => {
                    let json = if request.body.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&request.body).expect("we send JSON")
                    };
                    let s = Sent {
                        exchange,
                        call,
                        request,
                        json,
                    };
                    self.sent.push(s.clone());
                    self.outbox.push_back(s);
                }
                Action::Listen { exchange, request } => self.listens.push_back(Sent {
                    exchange,
                    call: None,
                    request,
                    json: Value::Null,
                }),
                Action::Complete { call, result } => {
                    assert!(
                        self.ended.insert(call, Ok(result)).is_none(),
                        "{call} ended twice"
                    );
                }
                Action::Surface { call, error } => {
                    assert!(
                        self.ended.insert(call, Err(error.clone())).is_none(),
                        "{call} ended twice"
                    );
                    self.events.push(Action::Surface { call, error });
                }
                Action::Abort { exchange } => {
                    self.outbox.retain(|s| s.exchange != exchange);
                    self.events.push(Action::Abort { exchange });
                }
                other => self.events.push(other),
            }
        }
    }

    pub fn call(&mut self, op: mcp_recovery_core::Operation) -> CallId {
        let id = self.engine.call(op, self.now);
        self.pump();
        id
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(self.now);
        self.pump();
    }

    /// Takes the oldest unanswered request; it must have `method`.
    pub fn take(&mut self, method: &str) -> Sent {
        let s = self
            .outbox
            .pop_front()
            .unwrap_or_else(|| panic!("expected a {method} request, none pending"));
        assert_eq!(s.method(), method, "unexpected request {:?}", s.json);
        s
    }

    pub fn take_delete(&mut self) -> Sent {
        let s = self.outbox.pop_front().expect("expected a DELETE");
        assert_eq!(s.request.method, mcp_recovery_core::Method::Delete);
        s
    }

    pub fn respond(
        &mut self,
        exchange: ExchangeId,
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) {
        self.engine
            .handle_response(exchange, status, headers, body.as_bytes(), self.now);
        self.pump();
    }

    pub fn respond_json(&mut self, s: &Sent, body: Value) {
        self.respond(
            s.exchange,
            200,
            &[("Content-Type", "application/json")],
            &body.to_string(),
        );
    }

    pub fn result(&mut self, s: &Sent, result: Value) {
        let body = json!({"jsonrpc":"2.0","id":s.json["id"],"result":result});
        self.respond_json(s, body);
    }

    pub fn rpc_error(&mut self, s: &Sent, code: i64, message: &str) {
        let body =
            json!({"jsonrpc":"2.0","id":s.json["id"],"error":{"code":code,"message":message}});
        self.respond_json(s, body);
    }

    pub fn fail(&mut self, s: &Sent, failure: TransportFailure) {
        self.engine.handle_input(
            Input::Failed {
                exchange: s.exchange,
                failure: &failure,
            },
            self.now,
        );
        self.pump();
    }

    pub fn reset_after_send(&mut self, s: &Sent) {
        self.fail(
            s,
            TransportFailure::after_send(FailureKind::Reset, "connection reset"),
        );
    }

    pub fn refused(&mut self, s: &Sent) {
        self.fail(
            s,
            TransportFailure::not_sent(FailureKind::Connect, "connection refused"),
        );
    }

    /// Connection refused, then the engine's connect-retry delay passes.
    pub fn refused_then_wait(&mut self, s: &Sent) {
        self.refused(s);
        self.advance(Duration::from_secs(1));
    }

    /// Answers the pending initialize and initialized with session `id`.
    pub fn handshake(&mut self, id: &str) {
        let init = self.take("initialize");
        assert_eq!(
            init.session_id(),
            None,
            "initialize must not carry a session id"
        );
        let body = json!({"jsonrpc":"2.0","id":init.json["id"],
            "result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},
                      "serverInfo":{"name":"test","version":"1"}}});
        self.respond(
            init.exchange,
            200,
            &[("content-type", "application/json"), ("mcp-session-id", id)],
            &body.to_string(),
        );
        let note = self.take("notifications/initialized");
        assert_eq!(note.session_id(), Some(id));
        self.respond(note.exchange, 202, &[], "");
    }

    pub fn cancel(&mut self, call: CallId) {
        self.engine.handle_input(Input::Cancel { call }, self.now);
        self.pump();
    }

    pub fn refreshed(&mut self, generation: u64, token: &str) {
        self.engine.handle_input(
            Input::TokenRefreshed {
                generation: TokenGeneration::new(generation),
                token: &Token::bearer(token),
            },
            self.now,
        );
        self.pump();
    }

    pub fn outcome(&self, call: CallId) -> &Outcome {
        self.ended
            .get(&call)
            .unwrap_or_else(|| panic!("{call} has not ended"))
    }

    pub fn ok(&self, call: CallId) -> &Value {
        match self.outcome(call) {
            Ok(Ok(v)) => v,
            other => panic!("{call}: expected success, got {other:?}"),
        }
    }

    pub fn error(&self, call: CallId) -> &CallError {
        match self.outcome(call) {
            Err(e) => e,
            other => panic!("{call}: expected an error, got {other:?}"),
        }
    }

    pub fn count(&self, pred: impl Fn(&Action) -> bool) -> usize {
        self.events.iter().filter(|a| pred(a)).count()
    }

    pub fn reconnects(&self) -> usize {
        self.count(|a| matches!(a, Action::SignalReconnect { .. }))
    }

    pub fn refreshes(&self) -> usize {
        self.count(|a| matches!(a, Action::Refresh401 { .. }))
    }

    pub fn sent_count(&self, method: &str) -> usize {
        self.sent.iter().filter(|s| s.method() == method).count()
    }

    pub fn secs(&self, s: u64) -> Instant {
        self.t0 + Duration::from_secs(s)
    }
}
