//! The dispatcher routes a call's traffic to its own mailbox and the
//! rest to whoever drained it; these tests drive it as the adapters'
//! callers do (step, send, wait), in virtual time, several callers at once.

mod common;

use mcp_recovery_core::{
    Action, CallEnd, CallError, CallId, Config, Dispatcher, Engine, ExchangeId, HttpRequest, Input,
    Job, Mail, Operation, Step,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

fn answer(d: &mut Dispatcher, exchange: ExchangeId, body: Value, now: Instant) {
    let headers = [
        ("content-type", "application/json"),
        ("mcp-session-id", "s"),
    ];
    let bytes = body.to_string();
    d.engine_mut()
        .handle_response(exchange, 200, &headers, bytes.as_bytes(), now);
}

fn next_send(jobs: &mut VecDeque<Job>) -> Option<ExchangeId> {
    let i = jobs.iter().position(|j| matches!(j, Job::Send { .. }))?;
    match jobs.remove(i) {
        Some(Job::Send { exchange, .. }) => Some(exchange),
        _ => None,
    }
}

#[test]
fn call_traffic_goes_to_its_mailbox_the_rest_to_jobs() {
    #[allow(clippy::disallowed_methods)] // the one real instant
    let now = Instant::now();
    let mut d = Dispatcher::new(
        Engine::new(common::handshake_wire(Config::new(
            "http://127.0.0.1:1/mcp",
        ))),
        true,
    );
    let mut jobs = VecDeque::new();
    let call = d.call(Operation::ping(), now, &mut jobs);
    // Nothing to send for the call until the session is up: initialize
    // is a job for whoever drained it.
    assert!(d.next_mail(call).is_none());
    let exchange = next_send(&mut jobs).expect("initialize");
    let init =
        json!({"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{}}});
    answer(&mut d, exchange, init, now);
    d.pump(&mut jobs);
    let exchange = next_send(&mut jobs).expect("initialized");
    d.engine_mut().handle_response(exchange, 202, &[], b"", now);
    assert!(d.pump(&mut jobs), "the waiting call is woken");
    assert!(matches!(d.handshake(), Some(Ok(g)) if *g == 1));
    assert!(jobs
        .iter()
        .any(|j| matches!(j, Job::Observe(Action::SessionReady { .. }))));
    let Some(Mail::Send { exchange, request }) = d.next_mail(call) else {
        panic!("the call's request")
    };
    assert!(String::from_utf8_lossy(&request.body).contains("ping"));
    let progress =
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}});
    let done = json!({"jsonrpc":"2.0","id":2,"result":{}});
    let sse = format!("data: {progress}\n\ndata: {done}\n\n");
    d.engine_mut().handle_response(
        exchange,
        200,
        &[("content-type", "text/event-stream")],
        sse.as_bytes(),
        now,
    );
    d.pump(&mut jobs);
    assert!(matches!(d.next_mail(call), Some(Mail::Progress(p)) if p["progress"] == 1));
    assert!(matches!(d.next_mail(call), Some(Mail::End(Ok(Ok(_))))));
    // The mailbox is gone; asking again is harmless.
    assert!(matches!(
        d.next_mail(call),
        Some(Mail::End(Err(CallError::Closed)))
    ));
}

/// Many callers on one session, in virtual time: what the adapters' callers
/// do, step by step, with the dispatcher deciding everything.
struct Room {
    d: Dispatcher,
    jobs: VecDeque<Job>,
    t0: Instant,
    now: Instant,
}

impl Room {
    fn ready() -> Room {
        #[allow(clippy::disallowed_methods)] // the one real instant
        let t0 = Instant::now();
        let mut r = Room {
            d: Dispatcher::new(
                Engine::new(common::handshake_wire(Config::new(
                    "http://127.0.0.1:1/mcp",
                ))),
                false,
            ),
            jobs: VecDeque::new(),
            t0,
            now: t0,
        };
        r.d.connect(r.now, &mut r.jobs);
        r.handshake("s1");
        r
    }

    /// Answers the pending initialize and initialized with session `id`.
    fn handshake(&mut self, id: &str) {
        let init = self.take_job().expect("initialize");
        self.answer_initialize(init, id);
    }

    /// Answers `init` (taken from the jobs) and the initialized after it.
    fn answer_initialize(&mut self, (exchange, request): (ExchangeId, HttpRequest), id: &str) {
        assert!(String::from_utf8_lossy(&request.body).contains("\"initialize\""));
        let init = json!({"jsonrpc":"2.0","id":rpc_id(&request),
            "result":{"protocolVersion":"2025-11-25","capabilities":{}}});
        self.respond(exchange, 200, &[("mcp-session-id", id)], &init.to_string());
        let (exchange, _) = self.take_job().expect("initialized");
        self.respond(exchange, 202, &[], "");
    }

    /// The oldest send among the jobs (removed).
    fn take_job(&mut self) -> Option<(ExchangeId, HttpRequest)> {
        let i = self
            .jobs
            .iter()
            .position(|j| matches!(j, Job::Send { .. }))?;
        match self.jobs.remove(i) {
            Some(Job::Send { exchange, request }) => Some((exchange, request)),
            _ => None,
        }
    }

    fn respond(&mut self, exchange: ExchangeId, status: u16, headers: &[(&str, &str)], body: &str) {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.d
            .engine_mut()
            .handle_response(exchange, status, &all, body.as_bytes(), self.now);
        self.d.pump(&mut self.jobs);
    }

    fn feed(&mut self, input: Input<'_>) {
        self.d.feed(input, self.now, &mut self.jobs);
    }

    fn step(&mut self, call: CallId, gave_up: bool) -> Step {
        self.d.step(call, gave_up, None, self.now, &mut self.jobs)
    }

    /// The request the caller of `call` must send next.
    fn send_of(&mut self, call: CallId) -> (ExchangeId, HttpRequest) {
        match self.step(call, false) {
            Step::Mail(Mail::Send { exchange, request }) => (exchange, request),
            other => panic!("{call}: expected a send, got {other:?}"),
        }
    }

    fn end_of(&mut self, call: CallId) -> CallEnd {
        loop {
            match self.step(call, false) {
                Step::Mail(Mail::End(end)) => return end,
                Step::Mail(Mail::Progress(_)) | Step::Again => {}
                other => panic!("{call}: expected its end, got {other:?}"),
            }
        }
    }
}

fn rpc_id(request: &HttpRequest) -> Value {
    serde_json::from_slice::<Value>(&request.body).expect("JSON")["id"].clone()
}

fn answer_of(request: &HttpRequest, result: Value) -> String {
    json!({"jsonrpc":"2.0","id":rpc_id(request),"result":result}).to_string()
}

const PY_404: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#;

#[test]
fn eight_callers_across_one_expiry_share_one_reinitialize() {
    let mut r = Room::ready();
    let calls: Vec<CallId> = (0..8)
        .map(|i| {
            let op = Operation::call_tool("echo", json!({ "i": i }));
            r.d.call(op, r.now, &mut r.jobs)
        })
        .collect();
    let sends: Vec<_> = calls.iter().map(|c| r.send_of(*c)).collect();
    assert!(r.jobs.is_empty(), "nothing but the calls' own sends");
    // The server forgot the session: every call's request gets its 404,
    // the first one in reverse order of sending.
    for (exchange, request) in sends.iter().rev() {
        assert_eq!(request.header("mcp-session-id"), Some("s1"));
        r.respond(*exchange, 404, &[], PY_404);
    }
    // One re-initialize for all eight, done by whoever drains the job; the
    // callers wait until the await-ready deadline at the latest.
    let init = r.take_job().expect("the re-initialize");
    assert!(
        r.jobs.is_empty(),
        "one initialize for eight failures: {:?}",
        r.jobs
    );
    let deadline = r.t0 + Duration::from_secs(15);
    for c in &calls {
        assert!(matches!(r.step(*c, false), Step::Wait(Some(at)) if at == deadline));
    }
    r.answer_initialize(init, "s2");
    assert_eq!(r.d.engine().generation(), 2);
    // Each caller retries once, on the new session, and gets its answer.
    for (i, c) in calls.iter().enumerate() {
        let (exchange, request) = r.send_of(*c);
        assert_eq!(request.header("mcp-session-id"), Some("s2"));
        let body = answer_of(&request, json!({ "n": i }));
        r.respond(exchange, 200, &[], &body);
    }
    for (i, c) in calls.iter().enumerate() {
        assert!(matches!(r.end_of(*c), Ok(Ok(v)) if v["n"] == i));
    }
    assert!(r.jobs.is_empty());
}

#[test]
fn a_caller_cancelled_while_another_drains_its_stream() {
    let mut r = Room::ready();
    let a =
        r.d.call(Operation::call_tool("slow", json!({})), r.now, &mut r.jobs);
    let b =
        r.d.call(Operation::call_tool("echo", json!({})), r.now, &mut r.jobs);
    let (ea, ra) = r.send_of(a);
    let (eb, rb) = r.send_of(b);
    // B's answer streams in: a head, then its progress.
    let sse = [("content-type", "text/event-stream")];
    r.feed(Input::Head {
        exchange: eb,
        status: 200,
        headers: &sse,
    });
    let progress = json!({"jsonrpc":"2.0","method":"notifications/progress",
        "params":{"progressToken":0,"progress":1}});
    let chunk = format!("id: 1\ndata: {progress}\n\n");
    r.feed(Input::Body {
        exchange: eb,
        bytes: chunk.as_bytes(),
    });
    // Meanwhile A's caller gives up: the dispatcher tells the engine once,
    // A's end is Cancelled, and the server is told to stop A only.
    assert!(matches!(r.step(a, true), Step::Again));
    assert!(matches!(
        r.step(a, true),
        Step::Mail(Mail::End(Err(CallError::Cancelled)))
    ));
    let (_, note) = r.take_job().expect("notifications/cancelled");
    let note: Value = serde_json::from_slice(&note.body).unwrap();
    assert_eq!(note["method"], "notifications/cancelled");
    assert_eq!(note["params"]["requestId"], rpc_id(&ra));
    assert!(
        !r.d.engine().exchange_open(ea),
        "A's response is not wanted"
    );
    // A's late answer is ignored; B's stream goes on to B's answer.
    r.respond(ea, 200, &[], &answer_of(&ra, json!({"late": true})));
    assert!(r.d.engine().exchange_open(eb));
    assert!(matches!(r.step(b, false), Step::Mail(Mail::Progress(p)) if p["progress"] == 1));
    let done = format!("id: 2\ndata: {}\n\n", answer_of(&rb, json!({"b": true})));
    r.feed(Input::Body {
        exchange: eb,
        bytes: done.as_bytes(),
    });
    assert!(
        !r.d.engine().exchange_open(eb),
        "B's answer is in: stop reading"
    );
    assert!(matches!(r.end_of(b), Ok(Ok(v)) if v["b"] == true));
    assert!(r.jobs.is_empty(), "nothing more to send: {:?}", r.jobs);
    assert_eq!(r.d.engine().pending_calls(), 0);
}

#[test]
fn a_waiting_caller_ends_at_its_deadline_in_virtual_time() {
    #[allow(clippy::disallowed_methods)] // the one real instant
    let t0 = Instant::now();
    let mut d = Dispatcher::new(
        Engine::new(common::handshake_wire(Config::new(
            "http://127.0.0.1:1/mcp",
        ))),
        false,
    );
    let mut jobs = VecDeque::new();
    let call = d.call(Operation::ping(), t0, &mut jobs);
    // Its caller sends the initialize, which the server never answers.
    assert!(matches!(jobs.pop_front(), Some(Job::Send { .. })));
    // Waiting for the session: until the await-ready deadline (15 s), not
    // the handshake's own (30 s).
    let at = t0 + Duration::from_secs(15);
    assert!(matches!(d.step(call, false, None, t0, &mut jobs), Step::Wait(Some(t)) if t == at));
    // A wake-up before then changes nothing.
    let early = t0 + Duration::from_secs(3);
    assert!(matches!(d.step(call, false, None, early, &mut jobs), Step::Wait(Some(t)) if t == at));
    // At the deadline the call ends, with how long it waited.
    assert!(matches!(
        d.step(call, false, None, at, &mut jobs),
        Step::Again
    ));
    match d.step(call, false, None, at, &mut jobs) {
        Step::Mail(Mail::End(Err(CallError::ReconnectTimeout { waited }))) => {
            assert_eq!(waited, Duration::from_secs(15))
        }
        other => panic!("expected ReconnectTimeout, got {other:?}"),
    }
    // The caller's own deadline comes first when it is earlier.
    let call = d.call(Operation::ping(), at, &mut jobs);
    let mine = at + Duration::from_secs(2);
    assert!(
        matches!(d.step(call, false, Some(mine), at, &mut jobs), Step::Wait(Some(t)) if t == mine)
    );
}
