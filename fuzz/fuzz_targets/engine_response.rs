//! The engine as a client of a hostile server, in virtual time. The input
//! is a script: start calls, answer any open exchange with any status,
//! content type, session header, `WWW-Authenticate` and body (raw bytes,
//! JSON-RPC answers with the request's id, batches, event streams with
//! priming ids, `retry:` and server requests), cut into chunks anywhere and
//! ended cleanly, broken, or left open; fail exchanges; cancel; let time
//! pass; answer refreshes; set tokens; reply to server requests; close.
//! Then every open exchange fails and time runs on until no call is left.
//!
//! Checked all along: no panic; every call ends exactly once and no action
//! names a call after its end; no call sends more than `MAX_ATTEMPTS` POSTs
//! that connected (a refused one reached nothing)
//! (a GET with `Last-Event-ID` is a resume, not a send); a call's only GET
//! is such a resume; a non-idempotent call that failed after its request
//! may have arrived is never sent again; after `handle_timeout(now)` no
//! deadline is in the past; and when the script is over every call ends
//! within a bounded number of rounds and of virtual time, never stuck
//! without an exchange or a timer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_recovery_core::{
    Action, BreakerConfig, CallId, Config, Engine, ExchangeId, FailureKind, Input, Method,
    Operation, Protocol, RequestId, RpcError, Token, TokenGeneration, TransportFailure,
    MAX_ATTEMPTS,
};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The one real instant; everything after it is virtual.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Reads the script; zeros once the input runs out.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn done(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.u8()) % from.len()]
    }
    /// Up to 255 bytes, length first.
    fn bytes(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8()).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }
}

#[derive(Debug)]
struct Open {
    exchange: ExchangeId,
    call: Option<CallId>,
    method: Method,
    /// The JSON-RPC id and method of a POST.
    id: Value,
    rpc_method: String,
}

struct World {
    engine: Engine,
    now: Instant,
    open: Vec<Open>,
    calls: Vec<CallId>,
    idempotent: HashSet<CallId>,
    ended: HashSet<CallId>,
    posts: HashMap<CallId, u8>,
    /// Non-idempotent calls whose request may have run: never sent again.
    frozen: HashSet<CallId>,
    refresh: Option<TokenGeneration>,
    server_requests: Vec<RequestId>,
    tokens: u32,
    /// Some configured duration is zero.
    zero_durations: bool,
}

const KINDS: [FailureKind; 5] = [
    FailureKind::Connect,
    FailureKind::Reset,
    FailureKind::Timeout,
    FailureKind::Cancelled,
    FailureKind::Other,
];

impl World {
    fn alive(&self, call: CallId) {
        assert!(self.calls.contains(&call), "{call} was never started");
        assert!(
            !self.ended.contains(&call),
            "an action names {call} after its end"
        );
    }

    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Transmit {
                    exchange,
                    call,
                    request,
                } => {
                    let json: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
                    if let Some(c) = call {
                        self.alive(c);
                        match request.method {
                            Method::Post => {
                                assert!(
                                    !self.frozen.contains(&c),
                                    "{c} replayed after an ambiguous failure"
                                );
                                let n = self.posts.entry(c).or_default();
                                *n += 1;
                                assert!(*n <= MAX_ATTEMPTS, "{c} sent {n} times");
                            }
                            Method::Get => assert!(
                                request.header("last-event-id").is_some(),
                                "a call's GET that is not a resume"
                            ),
                            other => panic!("a call sent {other:?}"),
                        }
                    }
                    self.open.push(Open {
                        exchange,
                        call,
                        method: request.method,
                        id: json.get("id").cloned().unwrap_or(Value::Null),
                        rpc_method: json["method"].as_str().unwrap_or("").to_owned(),
                    });
                }
                Action::Abort { exchange } => self.open.retain(|o| o.exchange != exchange),
                Action::Refresh401 { generation, .. } => self.refresh = Some(generation),
                Action::AwaitReady { call, .. } | Action::RetryOnce { call, .. } => {
                    self.alive(call)
                }
                Action::Complete { call, .. } | Action::Surface { call, .. } => {
                    self.alive(call);
                    self.ended.insert(call);
                }
                Action::ServerMessage { call, message } => {
                    if let Some(c) = call {
                        self.alive(c);
                    }
                    if let mcp_recovery_core::Message::Request { id, .. } = message {
                        self.server_requests.push(id);
                    }
                }
                _ => {}
            }
        }
    }

    fn input(&mut self, input: Input<'_>) {
        self.engine.handle_input(input, self.now);
        self.drain();
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.engine.handle_timeout(self.now);
        self.drain();
        if let Some((deadline, why)) = self.engine.poll_timeout() {
            // A zero duration may park a call until `now` itself (the next
            // `handle_timeout` ends it); otherwise nothing is due already.
            assert!(deadline >= self.now, "{why:?} due in the past");
            assert!(
                deadline > self.now || self.zero_durations,
                "{why:?} due at once"
            );
        }
    }

    /// Whether failing `o` now may leave its call's request executed.
    fn ambiguous_for(&self, o: &Open, sent: bool, kind: FailureKind) -> bool {
        let Some(c) = o.call else { return false };
        sent && kind != FailureKind::Cancelled
            && o.method == Method::Post
            && !self.idempotent.contains(&c)
            && self.engine.exchange_open(o.exchange)
    }

    fn fail(&mut self, i: usize, kind: FailureKind, sent: bool) {
        let o = self.open.remove(i);
        if self.ambiguous_for(&o, sent, kind) {
            self.frozen.insert(o.call.unwrap());
        }
        if let (Some(c), Method::Post, false, FailureKind::Connect) = (o.call, o.method, sent, kind) {
            // Never sent: a POST that reached no server does not count
            // (a server that refuses connections is waited for).
            if let Some(n) = self.posts.get_mut(&c) {
                *n = n.saturating_sub(1);
            }
        }
        let failure = TransportFailure {
            kind,
            sent,
            message: "fuzz".into(),
        };
        self.input(Input::Failed {
            exchange: o.exchange,
            failure: &failure,
        });
    }

    fn respond(&mut self, i: usize, s: &mut Script<'_>) {
        let status = match s.u8() % 16 {
            0..=5 => 200,
            6 => 202,
            7 => 204,
            8 => 400,
            9 => 401,
            10 => 404,
            11 => 405,
            12 => 500,
            13 => 503,
            _ => s.u16(),
        };
        let content_type = match s.u8() % 8 {
            0 | 1 => Some("application/json".to_owned()),
            2 | 3 => Some("text/event-stream".to_owned()),
            4 => Some("application/json; charset=utf-8".to_owned()),
            5 => Some(" Text/Event-Stream ;x".to_owned()),
            6 => None,
            _ => Some(s.text()),
        };
        let session = match s.u8() % 4 {
            0 => None,
            1 => Some("s1".to_owned()),
            2 => Some("s2".to_owned()),
            _ => Some(s.text()),
        };
        let challenge = (s.u8() % 4 == 0).then(|| s.text());
        let o = &self.open[i];
        let (exchange, id) = (o.exchange, o.id.clone());
        let answer = |s: &mut Script<'_>| -> Value {
            let id = if s.u8() % 8 == 0 {
                Value::Null
            } else {
                id.clone()
            };
            if s.u8() % 3 == 0 {
                let code = s.pick(&[-32600i64, -32601, -32602, -32603, -32001, -32022, 0, 1]);
                let message = match s.u8() % 4 {
                    0 => "Session not found".to_owned(),
                    1 => "Invalid or expired session".to_owned(),
                    2 => "Tool failed".to_owned(),
                    _ => s.text(),
                };
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            } else if o.rpc_method == "initialize" {
                let v = s.pick(&["2025-11-25", "2025-06-18", "2024-11-05", "1999-01-01", ""]);
                json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": v, "capabilities": {}}})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "result": {"ok": true}})
            }
        };
        let notification = json!({"jsonrpc": "2.0", "method": "notifications/progress",
            "params": {"progress": 1}});
        let body: Vec<u8> = match s.u8() % 6 {
            0 => s.bytes().to_vec(),
            1 | 2 => answer(s).to_string().into_bytes(),
            3 => json!([notification, answer(s)]).to_string().into_bytes(),
            _ => {
                let eol = s.pick(&["\n", "\r\n", "\r"]);
                let mut out = String::new();
                let events = 1 + s.u8() % 4;
                for n in 0..events {
                    match s.u8() % 8 {
                        0 => out.push_str(&format!("id: {n}{eol}data: {eol}{eol}")),
                        1 => out.push_str(&format!("retry: {}{eol}", s.u16())),
                        2 => out.push_str(&format!("data: {notification}{eol}{eol}")),
                        3 => {
                            let m = s.pick(&["ping", "sampling/createMessage", "roots/list"]);
                            let r =
                                json!({"jsonrpc": "2.0", "id": 1000 + u32::from(n), "method": m});
                            out.push_str(&format!("id: r{n}{eol}data: {r}{eol}{eol}"));
                        }
                        4 => out.push_str(&String::from_utf8_lossy(s.bytes())),
                        5 => out.push_str(&format!("event: other{eol}data: x{eol}{eol}")),
                        _ => out.push_str(&format!("id: a{n}{eol}data: {}{eol}{eol}", answer(s))),
                    }
                }
                out.into_bytes()
            }
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = &content_type {
            headers.push(("Content-Type", ct));
        }
        if let Some(sid) = &session {
            headers.push(("mcp-session-id", sid));
        }
        if let Some(c) = &challenge {
            headers.push(("WWW-Authenticate", c));
        }
        self.input(Input::Head {
            exchange,
            status,
            headers: &headers,
        });
        let mut rest = &body[..];
        while !rest.is_empty() {
            let n = usize::from(s.u8()).max(1).min(rest.len());
            let (chunk, tail) = rest.split_at(if s.done() { rest.len() } else { n });
            self.input(Input::Body {
                exchange,
                bytes: chunk,
            });
            rest = tail;
        }
        match s.u8() % 8 {
            0 => {
                let (kind, sent) = (s.pick(&KINDS), s.u8() % 2 == 0);
                self.fail(i, kind, sent);
            }
            1 => {} // left open: more may come, or the end
            _ => {
                self.open.remove(i);
                self.input(Input::End { exchange });
            }
        }
    }

    fn step(&mut self, s: &mut Script<'_>) {
        match s.u8() % 16 {
            0 | 1 => {
                if self.calls.len() < 8 {
                    let kind = s.u8();
                    let op = match kind % 4 {
                        0 => Operation::call_tool("counter_increment", json!({})),
                        1 => Operation::list_tools(None),
                        2 => Operation::read_resource("demo://x"),
                        _ => Operation::call_tool("lookup", json!({})).idempotent(true),
                    };
                    let idempotent = op.is_idempotent();
                    let c = self.engine.call(op, self.now);
                    self.calls.push(c);
                    if idempotent {
                        self.idempotent.insert(c);
                    }
                    self.drain();
                }
            }
            2..=7 if !self.open.is_empty() => {
                let i = usize::from(s.u8()) % self.open.len();
                self.respond(i, s);
            }
            8 if !self.open.is_empty() => {
                let i = usize::from(s.u8()) % self.open.len();
                let (kind, sent) = (s.pick(&KINDS), s.u8() % 2 == 0);
                self.fail(i, kind, sent);
            }
            9 if !self.calls.is_empty() => {
                let c = self.calls[usize::from(s.u8()) % self.calls.len()];
                self.input(Input::Cancel { call: c });
            }
            10 => {
                let ms = u64::from(s.u16()) * s.pick(&[1u64, 10, 1000]);
                self.advance(Duration::from_millis(ms));
            }
            11 => {
                if let Some(g) = self.refresh {
                    // Now and then a stale generation, as a late answer.
                    let stale = u64::from(s.u8() % 4 == 0);
                    let generation = TokenGeneration::new(g.get().wrapping_sub(stale));
                    match s.u8() % 4 {
                        0 => {
                            self.tokens += 1;
                            let t = Token::bearer(&format!("t{}", self.tokens));
                            self.input(Input::TokenRefreshed {
                                generation,
                                token: &t,
                            });
                        }
                        1 => {
                            let t = Token::bearer(&format!("t{}", self.tokens));
                            self.input(Input::TokenRefreshed {
                                generation,
                                token: &t,
                            });
                        }
                        k => self.input(Input::RefreshFailed {
                            generation,
                            needs_reauth: k == 2,
                            message: "no",
                        }),
                    }
                }
            }
            12 if !self.server_requests.is_empty() => {
                let id = self.server_requests.remove(0);
                let result = if s.u8() % 2 == 0 {
                    Ok(json!({}))
                } else {
                    Err(RpcError::new(-32601, "no"))
                };
                self.engine.reply(id, result);
                self.drain();
            }
            13 => {
                self.tokens += 1;
                let t = (s.u8() % 4 != 0).then(|| Token::bearer(&format!("t{}", self.tokens)));
                self.engine.set_token(t, self.now);
                self.drain();
            }
            14 if s.u8() % 8 == 0 => {
                self.engine.close(self.now);
                self.drain();
            }
            _ => {
                self.engine.connect(self.now);
                self.drain();
            }
        }
    }

    /// Everything open fails, time runs on: every call must end soon.
    fn settle(&mut self) {
        let start = self.now;
        for _ in 0..1000 {
            if self.engine.pending_calls() == 0 {
                break;
            }
            if !self.open.is_empty() {
                self.fail(0, FailureKind::Reset, true);
            } else if let Some((deadline, _)) = self.engine.poll_timeout() {
                let d = deadline.saturating_duration_since(self.now);
                self.advance(d);
            } else {
                panic!(
                    "{} calls stuck with no exchange and no timer",
                    self.engine.pending_calls()
                );
            }
        }
        assert_eq!(self.engine.pending_calls(), 0, "calls never ended");
        assert!(
            self.now - start <= Duration::from_secs(3600),
            "settling took {:?} of virtual time",
            self.now - start
        );
        for c in &self.calls {
            assert!(self.ended.contains(c), "{c} never ended");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let flags = s.u8();
    let mut config = Config::new("http://127.0.0.1:8000/mcp");
    if flags & 1 != 0 {
        config = config.protocol(Protocol::Modern);
    }
    config.refresh_on_401 = flags & 2 == 0;
    let durations = [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_secs(1),
        Duration::from_secs(15),
        Duration::from_secs(60),
    ];
    config.await_ready = s.pick(&durations);
    config.handshake_timeout = s.pick(&durations);
    config.refresh_timeout = s.pick(&durations);
    config.connect_retry_delay = s.pick(&durations);
    config.resume_delay = s.pick(&durations);
    config.max_resume_delay = s.pick(&durations);
    config.max_resumes = s.u8() % 5;
    config.max_body_size = s.pick(&[16 * 1024 * 1024, 64, 0]);
    config = config.breaker(BreakerConfig::new(
        u32::from(s.u8() % 6),
        s.pick(&durations),
    ));
    let zero_durations = [
        config.await_ready,
        config.handshake_timeout,
        config.refresh_timeout,
        config.connect_retry_delay,
        config.resume_delay,
        config.max_resume_delay,
        config.breaker.cooldown,
    ]
    .contains(&Duration::ZERO);
    let mut world = World {
        engine: Engine::new(config),
        now: base(),
        open: Vec::new(),
        calls: Vec::new(),
        idempotent: HashSet::new(),
        ended: HashSet::new(),
        posts: HashMap::new(),
        frozen: HashSet::new(),
        refresh: None,
        server_requests: Vec::new(),
        tokens: 0,
        zero_durations,
    };
    if flags & 4 != 0 {
        world.engine.set_token(Some(Token::bearer("t0")), world.now);
    }
    let mut steps = 0;
    while !s.done() && steps < 200 {
        world.step(&mut s);
        steps += 1;
    }
    world.settle();
});
