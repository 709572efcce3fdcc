//! The behaviour contract, driven in virtual time: session path, replay
//! safety, cancellation, bounds, SSE answers, protocol revisions.

mod common;

use common::{Harness, PY_404, TS_404, URL};
use mcp_recovery_core::{
    Action, BreakerConfig, CallError, Config, Engine, FailureKind, Input, Operation, Protocol,
    Recovery, Timer, TransportFailure,
};
use serde_json::json;
use std::time::Duration;

/// The five operations of the seed fix, plus the two every client uses.
fn operations() -> Vec<Operation> {
    vec![
        Operation::call_tool("echo", json!({"text": "hi"})),
        Operation::list_resources(None),
        Operation::read_resource("demo://greeting"),
        Operation::list_prompts(None),
        Operation::get_prompt("greet", Some(json!({"name": "Ada"}))),
        Operation::list_tools(None),
        Operation::ping(),
    ]
}

// ----- the seed's handler tests, for every operation -----

#[test]
fn session_expiry_reconnects_once_awaits_ready_retries_once_and_returns_the_retry() {
    for op in operations() {
        let method = op.method().to_owned();
        let mut h = Harness::ready();
        let call = h.call(op);
        let first = h.take(&method);
        assert_eq!(first.session_id(), Some("s1"));
        // The reporter's text, as a JSON-RPC error on a 200.
        h.rpc_error(&first, -32602, "Invalid params: Invalid or expired session");
        assert_eq!(h.reconnects(), 1, "{method}");
        assert!(h
            .events
            .iter()
            .any(|a| matches!(a, Action::AwaitReady { call: c, .. } if *c == call)));
        h.handshake("s2");
        let retry = h.take(&method);
        assert_eq!(retry.session_id(), Some("s2"));
        assert!(h.events.iter().any(|a| matches!(
            a,
            Action::RetryOnce { call: c, recovery: Recovery::Session } if *c == call
        )));
        h.result(&retry, json!({"answer": method}));
        assert_eq!(h.ok(call), &json!({"answer": method}));
        assert_eq!(h.refreshes(), 0, "session expiry never refreshes the token");
        assert_eq!(h.sent_count("initialize"), 2);
    }
}

#[test]
fn unrelated_failure_does_not_reconnect() {
    for op in operations() {
        let method = op.method().to_owned();
        let mut h = Harness::ready();
        let call = h.call(op);
        let s = h.take(&method);
        h.rpc_error(&s, -32603, "Tool failed to execute");
        assert!(matches!(h.outcome(call), Ok(Err(e)) if e.message == "Tool failed to execute"));
        assert_eq!(h.reconnects(), 0);
        assert!(h.outbox.is_empty());
    }
}

#[test]
fn no_retry_loop_when_the_retry_fails_too() {
    for op in operations() {
        let method = op.method().to_owned();
        let mut h = Harness::ready();
        let call = h.call(op);
        let s = h.take(&method);
        h.rpc_error(&s, -32602, "Session expired");
        h.handshake("s2");
        let retry = h.take(&method);
        h.rpc_error(&retry, -32602, "Session expired");
        // Said again on a fresh session: that is the server's answer.
        assert!(
            matches!(h.outcome(call), Ok(Err(e)) if e.code == -32602 && e.message == "Session expired")
        );
        assert_eq!(h.reconnects(), 1);
        assert!(h.outbox.is_empty(), "nothing more is sent");
    }
}

#[test]
fn a_session_lost_twice_says_what_the_server_said() {
    for op in operations() {
        let method = op.method().to_owned();
        let mut h = Harness::ready();
        let call = h.call(op);
        let s = h.take(&method);
        h.respond(
            s.exchange,
            404,
            &[("content-type", "application/json")],
            PY_404,
        );
        h.handshake("s2");
        let retry = h.take(&method);
        h.respond(
            retry.exchange,
            404,
            &[("content-type", "application/json")],
            TS_404,
        );
        assert_eq!(
            h.error(call),
            &CallError::SessionLost {
                status: 404,
                code: Some(-32001),
                message: "Session not found".into()
            }
        );
        assert_eq!(h.reconnects(), 1);
        assert!(h.outbox.is_empty(), "nothing more is sent");
    }
}

/// A tool's own error that merely contains a session phrase is its answer:
/// sent once, the session kept (a browser-automation tool's "Browser
/// session not found").
#[test]
fn a_tools_own_session_words_are_its_answer_and_it_runs_once() {
    for message in [
        "Browser session not found",
        "MCP error -32602: Prompt Session not found not found",
        "Error executing tool: session expired while scraping",
    ] {
        let mut h = Harness::ready();
        let call = h.call(Operation::call_tool("browse", json!({})));
        let s = h.take("tools/call");
        h.rpc_error(&s, -32000, message);
        assert!(matches!(h.outcome(call), Ok(Err(e)) if e.message == message));
        assert_eq!(h.sent_count("tools/call"), 1, "{message}: sent once");
        assert_eq!(h.reconnects(), 0, "{message}: the session is kept");
        assert!(h.engine.is_ready());
    }
}

#[test]
fn the_retry_application_error_is_the_answer() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("fails", json!({})));
    let s = h.take("tools/call");
    h.respond(
        s.exchange,
        404,
        &[("content-type", "application/json")],
        PY_404,
    );
    h.handshake("s2");
    let retry = h.take("tools/call");
    // An isError tool result is a result, not a failure.
    let tool_error = json!({"content":[{"type":"text","text":"boom"}],"isError":true});
    h.result(&retry, tool_error.clone());
    assert_eq!(h.ok(call), &tool_error);
}

// ----- structured detection -----

#[test]
fn structured_expiry_signals_take_the_session_path() {
    let cases: [(u16, &str); 6] = [
        (404, PY_404),
        (404, TS_404),
        (404, "session not found"),
        (400, "Bad Request: No valid session ID provided"),
        (401, "Unauthorized: Session not found"),
        (
            400,
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null}"#,
        ),
    ];
    for (status, body) in cases {
        let mut h = Harness::ready();
        let call = h.call(Operation::list_tools(None));
        let s = h.take("tools/list");
        h.respond(s.exchange, status, &[], body);
        assert_eq!(h.reconnects(), 1, "{status} {body}");
        assert_eq!(
            h.refreshes(),
            0,
            "{status} {body}: no refresh on session loss"
        );
        h.handshake("s2");
        let retry = h.take("tools/list");
        h.result(&retry, json!({"tools": []}));
        assert_eq!(h.ok(call), &json!({"tools": []}));
    }
}

#[test]
fn not_found_without_session_id_or_with_method_not_found_is_not_expiry() {
    // A stateless server: no session id, so a 404 is just a 404.
    let mut h = Harness::default();
    let call = h.call(Operation::ping());
    let init = h.take("initialize");
    let body = json!({"jsonrpc":"2.0","id":init.json["id"],"result":{"protocolVersion":"2025-03-26","capabilities":{}}});
    h.respond_json(&init, body);
    let note = h.take("notifications/initialized");
    assert_eq!(note.session_id(), None);
    h.respond(note.exchange, 202, &[], "");
    let s = h.take("ping");
    assert_eq!(s.session_id(), None);
    h.respond(s.exchange, 404, &[], PY_404);
    assert!(matches!(h.error(call), CallError::Http { status: 404, .. }));
    assert_eq!(h.reconnects(), 0);

    let mut h = Harness::ready();
    let call = h.call(Operation::new("custom/thing", None));
    let s = h.take("custom/thing");
    let mnf = json!({"jsonrpc":"2.0","id":s.json["id"],"error":{"code":-32601,"message":"Method not found"}});
    h.respond(s.exchange, 404, &[], &mnf.to_string());
    assert!(matches!(h.outcome(call), Ok(Err(e)) if e.code == -32601));
    assert_eq!(h.reconnects(), 0);
}

#[test]
fn a_session_id_on_an_error_response_is_never_adopted() {
    let mut h = Harness::default();
    let call = h.call(Operation::ping());
    let init = h.take("initialize");
    h.respond(
        init.exchange,
        400,
        &[("mcp-session-id", "throwaway")],
        "Bad Request: Unsupported protocol version",
    );
    assert!(
        matches!(h.error(call), CallError::InitializeFailed(e) if matches!(**e, CallError::Http { status: 400, .. }))
    );
    assert_eq!(h.engine.session().id(), None);
}

#[test]
fn invalid_session_id_from_initialize_is_a_typed_error() {
    let mut h = Harness::default();
    let call = h.call(Operation::ping());
    let init = h.take("initialize");
    let body = json!({"jsonrpc":"2.0","id":init.json["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{}}});
    h.respond(
        init.exchange,
        200,
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", "bad\u{1}id"),
        ],
        &body.to_string(),
    );
    assert!(matches!(h.error(call), CallError::InitializeFailed(e)
        if matches!(**e, CallError::Protocol(mcp_recovery_core::ProtocolError::InvalidSessionId))));
}

// ----- single flight -----

#[test]
fn concurrent_failures_on_one_generation_make_one_reconnect() {
    let mut h = Harness::ready();
    let calls: Vec<_> = (0..8)
        .map(|i| h.call(Operation::call_tool("echo", json!({"i": i}))))
        .collect();
    let sent: Vec<_> = (0..8).map(|_| h.take("tools/call")).collect();
    for s in &sent {
        h.respond(s.exchange, 404, &[], TS_404);
    }
    assert_eq!(h.reconnects(), 1);
    assert_eq!(h.outbox.len(), 1, "one initialize, nothing else");
    h.handshake("s2");
    for _ in 0..8 {
        let r = h.take("tools/call");
        assert_eq!(r.session_id(), Some("s2"));
        h.result(&r, json!({"ok": r.json["params"]["arguments"]["i"]}));
    }
    for (i, c) in calls.iter().enumerate() {
        assert_eq!(h.ok(*c), &json!({"ok": i}));
    }
    assert_eq!(h.sent_count("initialize"), 2);
}

#[test]
fn late_failure_of_an_old_generation_rides_the_new_session() {
    let mut h = Harness::ready();
    let a = h.call(Operation::list_tools(None));
    let b = h.call(Operation::list_prompts(None));
    let sa = h.take("tools/list");
    let sb = h.take("prompts/list");
    h.respond(sa.exchange, 404, &[], PY_404);
    h.handshake("s2");
    let ra = h.take("tools/list");
    h.result(&ra, json!({"tools": []}));
    // b was sent on s1 and its 404 arrives only now.
    h.respond(sb.exchange, 404, &[], PY_404);
    assert_eq!(h.reconnects(), 1, "no teardown of the new session");
    let rb = h.take("prompts/list");
    assert_eq!(rb.session_id(), Some("s2"));
    h.result(&rb, json!({"prompts": []}));
    assert!(h.ok(a).is_object() && h.ok(b).is_object());
    assert_eq!(h.engine.session().id(), Some("s2"));
}

// ----- deadlines and cancellation -----

#[test]
fn await_ready_deadline_surfaces_reconnect_timeout() {
    let mut h = Harness::ready();
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(s.exchange, 404, &[], PY_404);
    let (deadline, why) = h.engine.poll_timeout().expect("a deadline");
    assert_eq!(deadline, h.now + Duration::from_secs(15));
    assert_eq!(why, Timer::AwaitReady(call));
    h.advance(Duration::from_secs(14));
    assert!(!h.ended.contains_key(&call));
    h.advance(Duration::from_secs(1));
    assert_eq!(
        h.error(call),
        &CallError::ReconnectTimeout {
            waited: Duration::from_secs(15)
        }
    );
    // The reconnect goes on and still serves later calls.
    h.handshake("s2");
    assert!(h.engine.is_ready());
    let later = h.call(Operation::ping());
    let p = h.take("ping");
    h.result(&p, json!({}));
    assert!(h.ok(later).is_object());
}

#[test]
fn handshake_that_never_answers_is_abandoned() {
    let mut h = Harness::new(Config::new(URL).await_ready(Duration::from_secs(60)));
    let call = h.call(Operation::ping());
    let _init = h.take("initialize");
    h.advance(Duration::from_secs(30));
    assert!(matches!(h.error(call), CallError::ReconnectTimeout { .. }));
    assert!(h.events.iter().any(|a| matches!(a, Action::Abort { .. })));
    // The next call starts a fresh handshake.
    h.call(Operation::ping());
    h.take("initialize");
}

#[test]
fn cancel_is_immediate_in_every_state_and_never_counts() {
    let config = || Config::new(URL).breaker(BreakerConfig::new(1, Duration::from_secs(60)));
    // During AwaitReady.
    let mut h = Harness::new(config());
    let call = h.call(Operation::ping());
    h.cancel(call);
    assert_eq!(h.error(call), &CallError::Cancelled);
    // During a refresh.
    let mut h = Harness::new(config());
    h.engine
        .set_token(Some(mcp_recovery_core::Token::bearer("t1")), h.now);
    h.engine.connect(h.now);
    h.pump();
    h.handshake("s1");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 401, &[], "");
    assert_eq!(h.refreshes(), 1);
    h.cancel(call);
    assert_eq!(h.error(call), &CallError::Cancelled);
    // During send: the server is told.
    let mut h = Harness::ready_with(config());
    let call = h.call(Operation::call_tool("slow", json!({})));
    let s = h.take("tools/call");
    h.cancel(call);
    assert_eq!(h.error(call), &CallError::Cancelled);
    let note = h.take("notifications/cancelled");
    assert_eq!(note.json["params"]["requestId"], s.json["id"]);
    assert_eq!(note.session_id(), Some("s1"));
    assert!(h
        .events
        .iter()
        .any(|a| matches!(a, Action::Abort { exchange } if *exchange == s.exchange)));
    // A late answer is ignored, and the breaker (threshold 1) is still closed.
    h.result(&s, json!({"late": true}));
    assert_eq!(h.error(call), &CallError::Cancelled);
    let next = h.call(Operation::ping());
    let p = h.take("ping");
    h.result(&p, json!({}));
    assert!(h.ok(next).is_object());
}

#[test]
fn adapter_reported_cancel_never_recovers_whatever_it_says() {
    let mut h = Harness::ready();
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.fail(
        &s,
        TransportFailure::after_send(FailureKind::Cancelled, "Invalid or expired session"),
    );
    assert_eq!(h.error(call), &CallError::Cancelled);
    assert_eq!(h.reconnects(), 0);
    assert!(h.outbox.is_empty());
}

// ----- replay safety -----

#[test]
fn ambiguous_failure_on_a_side_effect_is_outcome_uncertain_and_never_resent() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("counter_increment", json!({})));
    let s = h.take("tools/call");
    h.reset_after_send(&s);
    assert!(
        matches!(h.error(call), CallError::OutcomeUncertain { method, .. } if method == "tools/call")
    );
    assert_eq!(h.sent_count("tools/call"), 1);
}

#[test]
fn ambiguous_failure_on_an_idempotent_operation_is_retried_once() {
    for op in [
        Operation::list_tools(None),
        Operation::read_resource("a://b"),
        Operation::call_tool("lookup", json!({})).idempotent(true),
    ] {
        let method = op.method().to_owned();
        let mut h = Harness::ready();
        let call = h.call(op);
        let s = h.take(&method);
        h.reset_after_send(&s);
        let r = h.take(&method);
        assert_ne!(
            r.json["id"], s.json["id"],
            "a fresh JSON-RPC id per attempt"
        );
        h.reset_after_send(&r);
        assert!(matches!(
            h.error(call),
            CallError::Transport {
                kind: FailureKind::Reset,
                ..
            }
        ));
        assert_eq!(h.sent_count(&method), 2, "{method}: exactly one replay");
    }
}

#[test]
fn failure_before_sending_is_replayed_even_for_side_effects() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("counter_increment", json!({})));
    let s = h.take("tools/call");
    h.refused(&s);
    // Nothing listens: the request goes again, nothing having been sent,
    // once a scout finds the server back: after 100 ms, then 200, 400...
    assert!(h.outbox.is_empty());
    assert_eq!(
        h.engine.poll_timeout(),
        Some((h.now + Duration::from_millis(100), Timer::Scout))
    );
    h.advance(Duration::from_millis(99));
    assert!(h.outbox.is_empty());
    h.advance(Duration::from_millis(1));
    let r = h.take("tools/call");
    h.refused(&r);
    assert_eq!(
        h.engine.poll_timeout(),
        Some((h.now + Duration::from_millis(200), Timer::Scout))
    );
    h.advance(Duration::from_millis(200));
    let r = h.take("tools/call");
    h.result(&r, json!({"count": 1}));
    assert_eq!(h.ok(call), &json!({"count": 1}));
}

/// A restart: while nothing listens, one request at a time goes to see
/// (the scout); the others wait, and all go on at the first answer. Each
/// call gives up only when its restart budget (10 s) is spent, and counts
/// once for the breaker.
#[test]
fn callers_share_one_scout_while_the_server_restarts() {
    let mut h = Harness::ready();
    let calls: Vec<_> = (0..8)
        .map(|_| h.call(Operation::call_tool("counter_increment", json!({}))))
        .collect();
    for _ in 0..8 {
        let s = h.take("tools/call");
        h.refused(&s);
    }
    // 2.5 s of restart: only scouts go out, one at a time.
    let mut scouts = 0;
    while h.now < h.t0 + Duration::from_millis(2500) {
        h.advance(Duration::from_millis(50));
        while let Some(s) = h.outbox.pop_front() {
            assert!(h.outbox.is_empty(), "one scout at a time");
            scouts += 1;
            h.refused(&s);
        }
    }
    assert!(
        (3..=6).contains(&scouts),
        "backing off: {scouts} scouts in 2.5 s"
    );
    assert!(h.ended.is_empty(), "nobody gave up within the budget");
    // Back: the next scout gets an answer, and every caller goes on.
    h.advance(Duration::from_secs(1));
    let first = h.take("tools/call");
    h.result(&first, json!({"n": 0}));
    let mut answered = 1;
    while let Some(s) = h.outbox.pop_front() {
        h.result(&s, json!({"n": answered}));
        answered += 1;
    }
    assert_eq!(answered, 8);
    for c in calls {
        assert!(h.ok(c).is_object());
    }
}

/// A scout that fails for another reason than a refused connection (the
/// adapter could not even build the request) is not a lost scout: the next
/// one goes out after the same wait, and the callers are not stranded.
#[test]
fn a_scout_lost_another_way_is_replaced() {
    let mut h = Harness::ready();
    let a = h.call(Operation::ping());
    let b = h.call(Operation::ping());
    for _ in 0..2 {
        let s = h.take("ping");
        h.refused(&s);
    }
    h.advance(Duration::from_millis(100));
    let scout = h.take("ping");
    assert!(h.outbox.is_empty(), "one scout");
    h.fail(
        &scout,
        TransportFailure::not_sent(FailureKind::Other, "could not build"),
    );
    h.advance(Duration::from_millis(100));
    let next = h.take("ping");
    h.result(&next, json!({}));
    while let Some(s) = h.outbox.pop_front() {
        h.result(&s, json!({}));
    }
    assert!(h.ok(a).is_object());
    assert!(h.ok(b).is_object());
}

/// A call that got an answer and is refused again later (a second restart,
/// a rolling deploy) gets a whole restart budget again.
#[test]
fn an_answer_starts_a_new_restart_budget() {
    let mut h = Harness::ready();
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.refused(&s);
    h.advance(Duration::from_millis(100));
    // Back, but without the session: the call re-initializes...
    let scout = h.take("ping");
    h.respond(scout.exchange, 404, &[], PY_404);
    // ...and, 11 s after its first refusal (more than a budget), the
    // server restarts again.
    h.advance(Duration::from_secs(11));
    let init = h.take("initialize");
    h.refused(&init);
    h.advance(Duration::from_millis(100));
    h.handshake("s2");
    let retry = h.take("ping");
    h.refused(&retry);
    assert!(
        !h.ended.contains_key(&call),
        "a new budget, not one spent 15 s ago"
    );
    h.advance(Duration::from_millis(100));
    let retry = h.take("ping");
    h.result(&retry, json!({}));
    assert!(h.ok(call).is_object());
}

#[test]
fn a_call_gives_up_when_its_restart_budget_is_spent() {
    let mut h = Harness::ready();
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.refused(&s);
    for _ in 0..200 {
        h.advance(Duration::from_millis(100));
        while let Some(s) = h.outbox.pop_front() {
            h.refused(&s);
        }
        if h.ended.contains_key(&call) {
            break;
        }
    }
    assert!(matches!(
        h.error(call),
        CallError::Transport {
            kind: FailureKind::Connect,
            ..
        }
    ));
    assert_eq!(h.now - h.t0, Duration::from_secs(10), "the budget, no more");
    assert!(matches!(
        h.engine.breaker(),
        mcp_recovery_core::BreakerState::Closed { failures: 1 }
    ));
}

/// Takes the GET that resumes a stream, checking what it resumes after.
fn take_resume(h: &mut Harness, after: &str) -> common::Sent {
    let s = h.outbox.pop_front().expect("expected a resuming GET");
    assert_eq!(s.request.method, mcp_recovery_core::Method::Get);
    assert_eq!(s.request.header("last-event-id"), Some(after));
    assert_eq!(s.request.header("accept"), Some("text/event-stream"));
    assert!(s.request.header("mcp-session-id").is_some());
    s
}

#[test]
fn stream_ending_before_the_answer_resumes_after_its_last_event() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("counter_increment", json!({})));
    let s = h.take("tools/call");
    let id = s.json["id"].clone();
    // Python's priming event (id, empty data, retry), then the server
    // closes the stream (SEP-1699 polling) before the answer.
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        "id: e1\r\nretry: 250\r\ndata: \r\n\r\n",
    );
    assert!(h.outbox.is_empty(), "the resume waits the server's retry");
    assert!(matches!(h.engine.poll_timeout(), Some((_, Timer::ResumeStream(c))) if c == call));
    h.advance(Duration::from_millis(250));
    let g = take_resume(&mut h, "e1");
    let answer = json!({"jsonrpc":"2.0","id":id,"result":{"content":[]}});
    h.respond(
        g.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &format!("id: e2\ndata: {answer}\n\n"),
    );
    h.ok(call); // the resumed stream's answer completes the call
    let posts = h.sent.iter().filter(|x| x.method() == "tools/call").count();
    assert_eq!(posts, 1, "resuming never sends the request again");
}

#[test]
fn a_refused_or_empty_resume_is_ambiguous_and_never_replays_a_side_effect() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("counter_increment", json!({})));
    let s = h.take("tools/call");
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        "id: 1\ndata: \n\n",
    );
    h.advance(Duration::from_secs(1));
    let g = take_resume(&mut h, "1");
    // A server without resumption answers the GET with 405.
    h.respond(g.exchange, 405, &[], "");
    assert!(matches!(h.error(call), CallError::OutcomeUncertain { .. }));
    assert_eq!(
        h.sent.iter().filter(|x| x.method() == "tools/call").count(),
        1
    );

    // Resumes that bring nothing new stop after `max_resumes` in a row.
    let call = h.call(Operation::call_tool("counter_increment", json!({})));
    let s = h.take("tools/call");
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        "id: 7\ndata: \n\n",
    );
    for _ in 0..3 {
        h.advance(Duration::from_secs(1));
        let g = take_resume(&mut h, "7");
        h.respond(
            g.exchange,
            200,
            &[("content-type", "text/event-stream")],
            "",
        );
    }
    assert!(matches!(h.error(call), CallError::OutcomeUncertain { .. }));
    assert!(h.outbox.is_empty());
}

#[test]
fn a_read_only_call_whose_resume_fails_is_replayed() {
    let mut h = Harness::ready();
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        "id: 1\ndata: \n\n",
    );
    h.advance(Duration::from_secs(1));
    let g = take_resume(&mut h, "1");
    h.respond(g.exchange, 405, &[], "");
    let again = h.take("tools/list");
    h.result(&again, json!({"tools": []}));
    h.ok(call);
}

// ----- bounds -----

#[test]
fn every_recovery_once_and_never_more_than_three_attempts() {
    let mut h = Harness::ready();
    h.engine
        .set_token(Some(mcp_recovery_core::Token::bearer("t1")), h.now);
    let call = h.call(Operation::list_tools(None));
    let s1 = h.take("tools/list");
    h.respond(s1.exchange, 401, &[], "");
    h.refreshed(1, "t2");
    let s2 = h.take("tools/list");
    assert_eq!(s2.bearer(), Some("Bearer t2"));
    h.respond(s2.exchange, 404, &[], PY_404);
    h.handshake("s2");
    let s3 = h.take("tools/list");
    h.reset_after_send(&s3);
    // Transport recovery is still unused, but three attempts are spent.
    assert!(matches!(h.error(call), CallError::Transport { .. }));
    assert_eq!(h.sent_count("tools/list"), 3);
}

// ----- responses as event streams -----

#[test]
fn answer_inside_an_event_stream_with_notifications_first() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("long", json!({})));
    let s = h.take("tools/call");
    let id = s.json["id"].clone();
    // Python sends CRLF and a priming event with empty data.
    let stream = format!(
        "id: p0\r\ndata: \r\n\r\n\
         event: message\r\nid: 1\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1,\"total\":2}}}}\r\n\r\n\
         event: message\r\nid: 2\r\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"done\":true}}}}\r\n\r\n"
    );
    h.engine.handle_input(
        Input::Head {
            exchange: s.exchange,
            status: 200,
            headers: &[("Content-Type", "text/event-stream")],
        },
        h.now,
    );
    // Fed in awkward chunks, as a socket would.
    for chunk in stream.as_bytes().chunks(7) {
        h.engine.handle_input(
            Input::Body {
                exchange: s.exchange,
                bytes: chunk,
            },
            h.now,
        );
    }
    h.pump();
    assert_eq!(h.ok(call), &json!({"done": true}));
    assert!(
        !h.engine.exchange_open(s.exchange),
        "the adapter may stop reading"
    );
    assert!(h.events.iter().any(|a| matches!(
        a,
        Action::ServerMessage { call: Some(c), message: mcp_recovery_core::Message::Notification { method, .. } }
            if *c == call && method == "notifications/progress"
    )));
}

#[test]
fn server_ping_on_a_stream_is_answered_by_the_core() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("long", json!({})));
    let s = h.take("tools/call");
    let stream = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"ping\"}}\n\n\
         data: {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{}}}}\n\n",
        s.json["id"]
    );
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &stream,
    );
    let pong = h.outbox.pop_front().expect("a reply");
    assert_eq!(pong.json, json!({"jsonrpc":"2.0","id":"srv-1","result":{}}));
    assert!(h.ok(call).is_object());
}

#[test]
fn garbage_and_oversize_bodies_are_typed_errors() {
    use mcp_recovery_core::ProtocolError;
    let mut h = Harness::ready();
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(
        s.exchange,
        200,
        &[("content-type", "application/json")],
        "<html>oops",
    );
    assert!(matches!(
        h.error(call),
        CallError::Protocol(ProtocolError::Body(_))
    ));

    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(s.exchange, 200, &[("content-type", "text/html")], "<html>");
    assert!(matches!(
        h.error(call),
        CallError::Protocol(ProtocolError::UnexpectedContentType(_))
    ));

    let mut config = Config::new(URL);
    config.max_body_size = 1024;
    let mut h = Harness::ready_with(config);
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2048));
    h.respond(
        s.exchange,
        200,
        &[("content-type", "application/json")],
        &big,
    );
    assert_eq!(
        h.error(call),
        &CallError::Protocol(ProtocolError::TooLarge { limit: 1024 })
    );
}

// ----- revisions -----

#[test]
fn modern_protocol_has_no_handshake_and_404_is_method_not_found() {
    let mut h = Harness::new(Config::new(URL).protocol(Protocol::Modern));
    let call = h.call(Operation::new("custom/thing", None));
    let s = h.take("custom/thing");
    assert_eq!(s.request.header("mcp-protocol-version"), Some("2026-07-28"));
    let mnf = json!({"jsonrpc":"2.0","id":s.json["id"],"error":{"code":-32601,"message":"Method not found"}});
    h.respond(s.exchange, 404, &[], &mnf.to_string());
    assert!(matches!(h.outcome(call), Ok(Err(e)) if e.code == -32601));
    // Even a plain 404 or "session expired" text never takes the session path.
    // (2026-07-28 has no `ping`: it asks `server/discover`.)
    let call = h.call(Operation::ping());
    let s = h.take("server/discover");
    h.rpc_error(&s, -32000, "Session expired");
    assert!(matches!(h.outcome(call), Ok(Err(_))));
    assert_eq!(h.sent_count("initialize"), 0);
    assert_eq!(h.reconnects(), 0);
}

#[test]
fn older_revisions_are_accepted_and_echoed() {
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut h = Harness::default();
        let call = h.call(Operation::ping());
        let init = h.take("initialize");
        let body = json!({"jsonrpc":"2.0","id":init.json["id"],"result":{"protocolVersion":version,"capabilities":{}}});
        h.respond(
            init.exchange,
            200,
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", "x"),
            ],
            &body.to_string(),
        );
        let note = h.take("notifications/initialized");
        h.respond(note.exchange, 202, &[], "");
        let p = h.take("ping");
        assert_eq!(p.request.header("MCP-Protocol-Version"), Some(version));
        h.result(&p, json!({}));
        assert!(h.ok(call).is_object());
    }
}

// ----- close -----

#[test]
fn close_deletes_the_session_and_ends_pending_calls() {
    let mut h = Harness::ready();
    let call = h.call(Operation::ping());
    let _ = h.take("ping");
    h.engine.close(h.now);
    h.pump();
    assert_eq!(h.error(call), &CallError::Closed);
    let del = h.take_delete();
    assert_eq!(del.session_id(), Some("s1"));
    h.respond(del.exchange, 405, &[], "");
    let after = h.call(Operation::ping());
    assert_eq!(h.error(after), &CallError::Closed);
}

#[test]
fn engine_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<Action>();
}

#[test]
fn server_requests_on_a_stream_reach_the_caller_and_replies_go_in_the_session() {
    let mut h = Harness::ready();
    let call = h.call(Operation::call_tool("asks", json!({})));
    let s = h.take("tools/call");
    let stream = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"roots/list\"}}\n\n\
         data: {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"ok\":1}}}}\n\n",
        s.json["id"]
    );
    h.respond(
        s.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &stream,
    );
    let asked = h.events.iter().find_map(|a| match a {
        Action::ServerMessage {
            call: Some(c),
            message: mcp_recovery_core::Message::Request { id, method, .. },
        } if *c == call => Some((id.clone(), method.clone())),
        _ => None,
    });
    let (id, method) = asked.expect("the server's request reaches the caller");
    assert_eq!(method, "roots/list");
    let now = h.now;
    h.engine.reply(id, Ok(json!({"roots": []})), now);
    h.pump();
    let r = h.outbox.pop_front().expect("the reply");
    assert_eq!(
        r.json,
        json!({"jsonrpc":"2.0","id":7,"result":{"roots":[]}})
    );
    assert_eq!(r.session_id(), Some("s1"));
    h.respond(r.exchange, 202, &[], "");
    assert_eq!(h.ok(call), &json!({"ok": 1}));
}

#[test]
fn time_going_backwards_or_huge_durations_never_panic() {
    // Threads of an adapter may read the clock before taking the lock, so
    // `now` can arrive slightly out of order.
    let mut config = Config::new(URL).breaker(BreakerConfig::new(1, Duration::MAX));
    config.await_ready = Duration::MAX;
    config.handshake_timeout = Duration::MAX;
    config.refresh_timeout = Duration::MAX;
    let mut h = Harness::new(config);
    h.now += Duration::from_secs(100);
    let call = h.call(Operation::ping());
    let init = h.take("initialize");
    h.now -= Duration::from_secs(50);
    h.engine.handle_timeout(h.now);
    h.pump();
    h.refused(&init);
    h.advance(Duration::from_millis(100));
    let init = h.take("initialize");
    h.reset_after_send(&init);
    let init = h.take("initialize");
    h.reset_after_send(&init);
    assert!(matches!(h.error(call), CallError::InitializeFailed(_)));
    let rejected = h.call(Operation::ping());
    assert!(matches!(h.error(rejected), CallError::CircuitOpen { .. }));
    h.advance(Duration::from_secs(1));
    if let Some((deadline, _)) = h.engine.poll_timeout() {
        assert!(deadline > h.now);
    }
}

#[test]
fn handshake_timeout_with_waiters_from_the_future_does_not_panic() {
    let mut h = Harness::new(Config::new(URL).await_ready(Duration::from_secs(60)));
    let first = h.call(Operation::ping());
    let _init = h.take("initialize");
    // A second caller read a later clock.
    h.now += Duration::from_secs(40);
    let second = h.call(Operation::ping());
    h.now -= Duration::from_secs(10);
    h.advance(Duration::ZERO); // 30 s after the handshake started: abandoned
    assert!(matches!(h.error(first), CallError::ReconnectTimeout { .. }));
    assert_eq!(
        h.error(second),
        &CallError::ReconnectTimeout {
            waited: Duration::ZERO
        }
    );
}

#[test]
fn initialize_answered_as_an_event_stream_like_python_does() {
    let mut h = Harness::default();
    let call = h.call(Operation::ping());
    let init = h.take("initialize");
    let stream = format!(
        "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{{}},\"serverInfo\":{{\"name\":\"py\",\"version\":\"2.3.0\"}}}}}}\r\n\r\n",
        init.json["id"]
    );
    h.respond(
        init.exchange,
        200,
        &[
            ("content-type", "text/event-stream"),
            ("mcp-session-id", "0f6c1d2e"),
        ],
        &stream,
    );
    let note = h.take("notifications/initialized");
    assert_eq!(note.session_id(), Some("0f6c1d2e"));
    assert_eq!(
        note.request.header("mcp-protocol-version"),
        Some("2025-06-18")
    );
    h.respond(note.exchange, 202, &[], "");
    let p = h.take("ping");
    h.result(&p, json!({}));
    assert!(h.ok(call).is_object());
    assert_eq!(
        h.engine.session().server().unwrap()["serverInfo"]["name"],
        "py"
    );
}

#[test]
fn the_listening_stream_reopens_after_its_last_event_and_stops_on_405() {
    let mut config = Config::new(URL);
    config.listen = true;
    let mut h = Harness::ready_with(config);
    let l = h
        .listens
        .pop_front()
        .expect("a GET stream once the session is ready");
    assert_eq!(l.request.method, mcp_recovery_core::Method::Get);
    assert_eq!(l.request.header("accept"), Some("text/event-stream"));
    assert!(l.request.header("mcp-session-id").is_some());
    assert_eq!(l.request.header("last-event-id"), None);
    let note = json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"});
    h.respond(
        l.exchange,
        200,
        &[("content-type", "text/event-stream")],
        &format!("id: 5\nretry: 300\ndata: {note}\n\n"),
    );
    assert!(h.events.iter().any(|a| matches!(a,
        Action::ServerMessage { call: None, message: mcp_recovery_core::Message::Notification { method, .. } }
            if method == "notifications/tools/list_changed")));
    assert!(
        h.listens.is_empty(),
        "reopened after the server's retry, not at once"
    );
    assert!(matches!(h.engine.poll_timeout(), Some((_, Timer::Listen))));
    h.advance(Duration::from_millis(300));
    let l = h.listens.pop_front().expect("reopened");
    assert_eq!(l.request.header("last-event-id"), Some("5"));
    // A server without a GET stream: never asked again in this session.
    h.respond(l.exchange, 405, &[], "");
    h.advance(Duration::from_secs(60));
    assert!(h.listens.is_empty());
    assert_eq!(h.engine.poll_timeout(), None);
}

/// With a listening stream, a new session's calls wait for that stream's
/// answer: a server sends what it asks outside any call only there, and
/// drops it while the stream is not open (the TypeScript SDK does), so a
/// call sent first could wait forever for its question. Bounded by
/// `listen_wait`.
#[test]
fn with_a_listening_stream_calls_wait_for_its_answer_within_listen_wait() {
    let mut config = Config::new(URL);
    config.listen = true;
    let mut h = Harness::ready_with(config.clone());
    let l = h.listens.pop_front().expect("the GET");
    let call = h.call(Operation::new("tools/list", None));
    assert!(h.outbox.is_empty(), "held until the GET answers");
    assert!(matches!(
        h.engine.poll_timeout(),
        Some((_, Timer::ListenGate | Timer::AwaitReady(_)))
    ));
    h.engine.handle_input(
        Input::Head {
            exchange: l.exchange,
            status: 200,
            headers: &[("content-type", "text/event-stream")],
        },
        h.now,
    );
    h.pump();
    let list = h.take("tools/list");
    h.result(&list, json!({"tools": []}));
    assert!(h.ok(call).is_object());

    // A GET that never answers holds the calls `listen_wait` at most.
    let mut h = Harness::ready_with(config);
    let _silent = h.listens.pop_front().expect("the GET");
    let call = h.call(Operation::new("tools/list", None));
    assert!(h.outbox.is_empty());
    h.advance(Duration::from_millis(999));
    assert!(h.outbox.is_empty());
    h.advance(Duration::from_millis(1));
    let list = h.take("tools/list");
    h.result(&list, json!({"tools": []}));
    assert!(h.ok(call).is_object());
}

/// A listening stream that never answers does not fail calls on a ready
/// session: a call whose await-ready deadline comes before `listen_wait`
/// goes then instead of failing with `ReconnectTimeout`.
#[test]
fn a_late_listening_stream_never_fails_a_call() {
    let mut config = Config::new(URL);
    config.listen = true;
    config.await_ready = Duration::from_millis(500);
    let mut h = Harness::ready_with(config);
    let _silent = h.listens.pop_front().expect("the GET");
    let call = h.call(Operation::new("tools/list", None));
    assert!(h.outbox.is_empty());
    h.advance(Duration::from_millis(600));
    let list = h.take("tools/list");
    h.result(&list, json!({"tools": []}));
    assert!(h.ok(call).is_object());
}

#[test]
fn spare_capacity_released_while_idle_changes_nothing() {
    // Released between calls (what a client does once idle), and again
    // with a call under way (nothing of it may go): every call completes.
    let mut h = Harness::ready();
    for i in 0..3 {
        h.engine.release_spare();
        let call = h.call(Operation::ping());
        let s = h.take("ping");
        h.engine.release_spare();
        h.result(&s, json!({"n": i}));
        assert_eq!(h.ok(call), &json!({"n": i}));
    }
    assert_eq!(h.sent_count("initialize"), 1, "the same session throughout");
}
