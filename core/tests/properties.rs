//! Property test over random event sequences (behaviour contract item 4):
//! no call sends more than three times, every call ends exactly once, no
//! action names an ended call, and after `handle_timeout(now)` the next
//! deadline is never in the past. The harness asserts the middle two on
//! every action it drains.

mod common;

use common::{Harness, Sent, PY_404, URL};
use mcp_recovery_core::{
    Action, BreakerConfig, CallId, Config, ExchangeId, FailureKind, Input, Method, Operation,
    Token, TokenGeneration, TransportFailure, MAX_ATTEMPTS,
};
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Step {
    Call(u8, bool),
    Respond(usize, Reply),
    Cancel(usize),
    Advance(u64),
    Refresh(RefreshReply),
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Ok,
    AppError,
    Expired404,
    Expired400,
    ExpiredText,
    Unauthorized,
    NotSent,
    AfterSend,
    SseOk,
    SseCut,
    Garbage,
    ServerError,
    CancelledByAdapter,
}

#[derive(Debug, Clone, Copy)]
enum RefreshReply {
    NewToken,
    SameToken,
    Refused,
    Failed,
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        4 => Just(Reply::Ok),
        1 => Just(Reply::AppError),
        2 => Just(Reply::Expired404),
        1 => Just(Reply::Expired400),
        1 => Just(Reply::ExpiredText),
        2 => Just(Reply::Unauthorized),
        1 => Just(Reply::NotSent),
        1 => Just(Reply::AfterSend),
        1 => Just(Reply::SseOk),
        1 => Just(Reply::SseCut),
        1 => Just(Reply::Garbage),
        1 => Just(Reply::ServerError),
        1 => Just(Reply::CancelledByAdapter),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..7, any::<bool>()).prop_map(|(k, i)| Step::Call(k, i)),
        6 => (0usize..8, reply()).prop_map(|(i, r)| Step::Respond(i, r)),
        1 => (0usize..8).prop_map(Step::Cancel),
        1 => (0u64..40).prop_map(Step::Advance),
        1 => prop_oneof![
            Just(RefreshReply::NewToken),
            Just(RefreshReply::SameToken),
            Just(RefreshReply::Refused),
            Just(RefreshReply::Failed),
        ]
        .prop_map(Step::Refresh),
    ]
}

fn op(kind: u8, idempotent: bool) -> Operation {
    let op = match kind {
        0 => Operation::call_tool("counter_increment", json!({})),
        1 => Operation::list_resources(None),
        2 => Operation::read_resource("demo://x"),
        3 => Operation::list_prompts(None),
        4 => Operation::get_prompt("greet", None),
        5 => Operation::list_tools(None),
        _ => Operation::ping(),
    };
    if idempotent {
        op.idempotent(true)
    } else {
        op
    }
}

struct World {
    h: Harness,
    calls: Vec<CallId>,
    /// Calls that must not be replayed: (call, sends when it failed ambiguously).
    frozen: Vec<(CallId, usize)>,
    side_effects: BTreeSet<CallId>,
    /// Requests refused before they were sent: they reached no server.
    refused: BTreeSet<ExchangeId>,
    tokens: u32,
    sessions: u32,
}

impl World {
    fn new() -> Self {
        let config = Config::new(URL).breaker(BreakerConfig::new(3, Duration::from_secs(60)));
        let mut h = Harness::new(config);
        h.engine.set_token(Some(Token::bearer("t0")), h.now);
        World {
            h,
            calls: Vec::new(),
            frozen: Vec::new(),
            side_effects: BTreeSet::new(),
            refused: BTreeSet::new(),
            tokens: 0,
            sessions: 0,
        }
    }

    fn refresh_generation(&self) -> Option<TokenGeneration> {
        self.h.events.iter().rev().find_map(|a| match a {
            Action::Refresh401 { generation, .. } => Some(*generation),
            _ => None,
        })
    }

    fn answer(&mut self, s: Sent, r: Reply) {
        if let Some(c) = s.call {
            if self.side_effects.contains(&c) && matches!(r, Reply::AfterSend | Reply::SseCut) {
                let sends = self
                    .h
                    .sent
                    .iter()
                    .filter(|x| {
                        x.call == Some(c)
                            && x.request.method == Method::Post
                            && !self.refused.contains(&x.exchange)
                    })
                    .count();
                self.frozen.push((c, sends));
            }
        }
        let h = &mut self.h;
        let id = s.json["id"].clone();
        let is_init = s.method() == "initialize";
        let ok_body = if is_init {
            json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{}}})
        } else {
            json!({"jsonrpc":"2.0","id":id,"result":{"ok":true}})
        };
        self.sessions += 1;
        let sid = format!("s{}", self.sessions);
        let json_ct = [
            ("content-type", "application/json"),
            ("mcp-session-id", sid.as_str()),
        ];
        match r {
            Reply::Ok if s.json.get("id").is_none() => h.respond(s.exchange, 202, &[], ""),
            Reply::Ok => h.respond(s.exchange, 200, &json_ct, &ok_body.to_string()),
            Reply::AppError => h.rpc_error(&s, -32603, "Tool failed to execute"),
            Reply::Expired404 => h.respond(s.exchange, 404, &[], PY_404),
            Reply::Expired400 => h.respond(
                s.exchange,
                400,
                &[],
                "Bad Request: No valid session ID provided",
            ),
            Reply::ExpiredText => h.rpc_error(&s, -32602, "Invalid or expired session"),
            Reply::Unauthorized => h.respond(s.exchange, 401, &[], ""),
            Reply::NotSent => {
                self.refused.insert(s.exchange);
                h.refused(&s)
            }
            Reply::AfterSend => h.reset_after_send(&s),
            Reply::SseOk => {
                let body = format!("id: 0\r\ndata: \r\n\r\ndata: {ok_body}\r\n\r\n");
                h.respond(
                    s.exchange,
                    200,
                    &[
                        ("content-type", "text/event-stream"),
                        ("mcp-session-id", sid.as_str()),
                    ],
                    &body,
                )
            }
            Reply::SseCut => h.respond(
                s.exchange,
                200,
                &[("content-type", "text/event-stream")],
                "id: 0\ndata: \n\ndata: {\"jsonrpc\"",
            ),
            Reply::Garbage => h.respond(
                s.exchange,
                200,
                &[("content-type", "application/json")],
                "{]",
            ),
            Reply::ServerError => h.respond(s.exchange, 503, &[], "upstream down"),
            Reply::CancelledByAdapter => h.fail(
                &s,
                TransportFailure::after_send(FailureKind::Cancelled, "session expired"),
            ),
        }
    }

    fn refresh(&mut self, r: RefreshReply) {
        let Some(generation) = self.refresh_generation() else {
            return;
        };
        let now = self.h.now;
        match r {
            RefreshReply::NewToken | RefreshReply::SameToken => {
                if matches!(r, RefreshReply::NewToken) {
                    self.tokens += 1;
                }
                let t = Token::bearer(&format!("t{}", self.tokens));
                self.h.engine.handle_input(
                    Input::TokenRefreshed {
                        generation,
                        token: &t,
                    },
                    now,
                );
            }
            RefreshReply::Refused | RefreshReply::Failed => self.h.engine.handle_input(
                Input::RefreshFailed {
                    generation,
                    needs_reauth: matches!(r, RefreshReply::Refused),
                    message: "no",
                },
                now,
            ),
        }
        self.h.pump();
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Call(k, i) => {
                let c = self.h.call(op(k, i));
                if k == 0 && !i {
                    self.side_effects.insert(c);
                }
                self.calls.push(c);
            }
            Step::Respond(i, r) => {
                if !self.h.outbox.is_empty() {
                    let i = i % self.h.outbox.len();
                    let s = self.h.outbox.remove(i).unwrap();
                    self.answer(s, r);
                }
            }
            Step::Cancel(i) => {
                if !self.calls.is_empty() {
                    let c = self.calls[i % self.calls.len()];
                    self.h.cancel(c);
                }
            }
            Step::Advance(secs) => {
                self.h.advance(Duration::from_secs(secs));
                if let Some((deadline, why)) = self.h.engine.poll_timeout() {
                    assert!(deadline > self.h.now, "{why:?} due in the past");
                }
            }
            Step::Refresh(r) => self.refresh(r),
        }
    }

    /// Answers everything well and lets time pass until no call is left.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.h.engine.pending_calls() == 0 {
                return;
            }
            if let Some(s) = self.h.outbox.pop_front() {
                self.answer(s, Reply::Ok);
            } else if self.refresh_generation().is_some() && self.h.engine.poll_timeout().is_some()
            {
                self.refresh(RefreshReply::NewToken);
                self.h.advance(Duration::from_secs(31));
            } else {
                self.h.advance(Duration::from_secs(61));
            }
        }
        panic!(
            "calls never ended: {} pending",
            self.h.engine.pending_calls()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn bounded_and_every_call_ends_exactly_once(steps in prop::collection::vec(step(), 1..80)) {
        let mut w = World::new();
        for s in steps {
            w.apply(s);
        }
        w.settle();
        for c in &w.calls {
            prop_assert!(w.h.ended.contains_key(c), "{c} never ended");
            // POSTs that reached a server; refused ones reached nothing.
            let sends = w.h.sent.iter().filter(|s| s.call == Some(*c) && s.request.method == Method::Post && !w.refused.contains(&s.exchange)).count();
            prop_assert!(sends <= MAX_ATTEMPTS as usize, "{c} sent {sends} times");
        }
        prop_assert_eq!(w.h.ended.len(), w.calls.len());
        // Never a double execution: a side effect that may have run is not sent again.
        for (c, sends) in &w.frozen {
            let now = w.h.sent.iter().filter(|s| s.call == Some(*c) && s.request.method == Method::Post && !w.refused.contains(&s.exchange)).count();
            prop_assert_eq!(now, *sends, "{} replayed after an ambiguous failure", c);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever a server sends back (any status, content type, bytes, cut
    /// anywhere), the engine neither panics nor leaves the call hanging.
    #[test]
    fn hostile_answers_end_the_call_without_panic(
        status in prop_oneof![Just(200u16), Just(202), Just(400), Just(401), Just(404), Just(500), 100u16..600],
        content_type in prop_oneof![
            Just("application/json"), Just("text/event-stream"), Just("text/html"),
            Just("application/json; charset=utf-8"), Just(""),
        ],
        session_header in prop_oneof![Just(None), Just(Some("ok-id")), Just(Some("bad id\u{7f}"))],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            Just(b"data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\n".to_vec()),
            Just(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32600,\"message\":\"Session not found\"}}".to_vec()),
            Just(b"\xEF\xBB\xBFid:\0\r\nretry: 99999999999999999999\r\ndata: [\r\n\r\n".to_vec()),
        ],
        cut in 1usize..64,
        during_handshake in any::<bool>(),
    ) {
        let mut h = if during_handshake { Harness::default() } else { Harness::ready() };
        let call = h.call(Operation::call_tool("x", json!({})));
        // Answer whatever is pending (initialize or the call) with the junk,
        // then everything else well, until the call ends.
        for round in 0..20 {
            if h.ended.contains_key(&call) {
                break;
            }
            let Some(s) = h.outbox.pop_front() else {
                h.advance(Duration::from_secs(61));
                continue;
            };
            if round == 0 {
                let mut headers = vec![("content-type", content_type)];
                if let Some(id) = session_header {
                    headers.push(("mcp-session-id", id));
                }
                h.engine.handle_input(Input::Head { exchange: s.exchange, status, headers: &headers }, h.now);
                for chunk in body.chunks(cut) {
                    h.engine.handle_input(Input::Body { exchange: s.exchange, bytes: chunk }, h.now);
                }
                h.engine.handle_input(Input::End { exchange: s.exchange }, h.now);
                h.pump();
            } else if s.json.get("id").is_none() {
                h.respond(s.exchange, 202, &[], "");
            } else {
                let ok = json!({"jsonrpc":"2.0","id":s.json["id"],
                    "result":{"protocolVersion":"2025-11-25","capabilities":{}}});
                h.respond(s.exchange, 200, &[("content-type", "application/json"), ("mcp-session-id", "s9")], &ok.to_string());
            }
        }
        prop_assert!(h.ended.contains_key(&call), "the call never ended");
        prop_assert!(h.sent.iter().filter(|s| s.call == Some(call) && s.request.method == Method::Post).count() <= MAX_ATTEMPTS as usize);
    }
}

/// Words with no label in them (no colon): what a tool or a prompt might
/// put around a session phrase it echoes.
fn words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-zA-Z0-9]{1,8}", 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A JSON-RPC error whose message merely contains a session phrase
    /// (other words before or after it) is the server's answer: the call is
    /// sent once, never again, and the session is kept.
    #[test]
    fn a_phrase_among_words_never_causes_a_second_send(
        before in words(),
        after in words(),
        phrase in prop::sample::select(mcp_recovery_core::classify::DEFAULT_SESSION_PATTERNS.to_vec()),
        code in prop::sample::select(vec![-32602i64, -32600, -32603, -32000, -32001]),
    ) {
        prop_assume!(!before.is_empty() || !after.is_empty());
        let message = before
            .iter()
            .map(String::as_str)
            .chain([phrase])
            .chain(after.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let mut h = Harness::ready();
        let call = h.call(Operation::call_tool("t", json!({})));
        let s = h.take("tools/call");
        h.rpc_error(&s, code, &message);
        prop_assert!(matches!(h.outcome(call), Ok(Err(e)) if e.message == message));
        prop_assert_eq!(h.sent_count("tools/call"), 1);
        prop_assert_eq!(h.reconnects(), 0);
        prop_assert!(h.outbox.is_empty());
    }
}
