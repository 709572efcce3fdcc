//! The auth path (401 → one shared refresh → one retry) and the circuit
//! breaker, in virtual time.

mod common;

use common::{Harness, PY_404, URL};
use mcp_recovery_core::{
    Action, BreakerConfig, BreakerState, CallError, Config, Input, Operation, Token,
    TokenGeneration,
};
use serde_json::json;
use std::time::Duration;

fn ready_with_token(config: Config, token: &str) -> Harness {
    let mut h = Harness::ready_with(config);
    h.engine.set_token(Some(Token::bearer(token)), h.now);
    h
}

// ----- auth path -----

#[test]
fn unauthorized_refreshes_once_for_all_concurrent_calls_and_retries_with_the_new_token() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let calls: Vec<_> = (0..5)
        .map(|_| h.call(Operation::list_tools(None)))
        .collect();
    let sent: Vec<_> = (0..5).map(|_| h.take("tools/list")).collect();
    for s in &sent {
        assert_eq!(s.bearer(), Some("Bearer old"));
        h.respond(
            s.exchange,
            401,
            &[("WWW-Authenticate", r#"Bearer error="invalid_token""#)],
            "",
        );
    }
    assert_eq!(h.refreshes(), 1, "single flight");
    let generation = match h
        .events
        .iter()
        .find(|a| matches!(a, Action::Refresh401 { .. }))
    {
        Some(Action::Refresh401 {
            generation,
            challenge,
        }) => {
            assert_eq!(
                challenge.as_deref(),
                Some(r#"Bearer error="invalid_token""#)
            );
            *generation
        }
        _ => unreachable!(),
    };
    assert!(
        h.outbox.is_empty(),
        "nothing goes out until the refresh answers"
    );
    h.refreshed(generation.get(), "new");
    for _ in 0..5 {
        let r = h.take("tools/list");
        assert_eq!(r.bearer(), Some("Bearer new"));
        assert_eq!(
            r.session_id(),
            Some("s1"),
            "same session: no reconnect on 401"
        );
        h.result(&r, json!({"tools": []}));
    }
    for c in calls {
        assert!(h.ok(c).is_object());
    }
    assert_eq!(h.reconnects(), 0);
}

#[test]
fn unchanged_token_is_not_retried() {
    let mut h = ready_with_token(Config::new(URL), "same");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 401, &[], "");
    h.refreshed(1, "same");
    assert_eq!(h.error(call), &CallError::Unauthorized);
    assert_eq!(h.sent_count("ping"), 1);
}

#[test]
fn refused_refresh_needs_reauth_without_a_loop() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let a = h.call(Operation::ping());
    let b = h.call(Operation::list_tools(None));
    for m in ["ping", "tools/list"] {
        let s = h.take(m);
        h.respond(s.exchange, 401, &[], "");
    }
    h.engine.handle_input(
        Input::RefreshFailed {
            generation: TokenGeneration::new(1),
            needs_reauth: true,
            message: "invalid_grant",
        },
        h.now,
    );
    h.pump();
    for c in [a, b] {
        assert_eq!(
            h.error(c),
            &CallError::NeedsReauth {
                url: URL.to_owned()
            }
        );
    }
    assert_eq!(h.refreshes(), 1);
    assert!(h.outbox.is_empty());
    // The breaker does not treat an auth refusal as an unreachable server.
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
}

#[test]
fn still_unauthorized_after_the_refresh_surfaces() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 401, &[], "");
    h.refreshed(1, "new");
    let r = h.take("ping");
    h.respond(r.exchange, 401, &[], "");
    assert_eq!(h.error(call), &CallError::Unauthorized);
    assert_eq!(h.refreshes(), 1);
}

#[test]
fn a_call_that_failed_on_an_already_replaced_token_retries_at_once() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let a = h.call(Operation::ping());
    let b = h.call(Operation::ping());
    let sa = h.take("ping");
    let sb = h.take("ping");
    h.respond(sa.exchange, 401, &[], "");
    h.refreshed(1, "new");
    let ra = h.take("ping");
    h.result(&ra, json!({}));
    // b's 401 (for the old token) arrives after the refresh finished.
    h.respond(sb.exchange, 401, &[], "");
    assert_eq!(h.refreshes(), 1, "no second refresh");
    let rb = h.take("ping");
    assert_eq!(rb.bearer(), Some("Bearer new"));
    h.result(&rb, json!({}));
    assert!(h.ok(a).is_object() && h.ok(b).is_object());
}

#[test]
fn static_token_without_refresh_needs_reauth() {
    let mut config = Config::new(URL);
    config.refresh_on_401 = false;
    let mut h = ready_with_token(config, "static");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 401, &[], "");
    assert!(matches!(h.error(call), CallError::NeedsReauth { .. }));
    assert_eq!(h.refreshes(), 0);
}

#[test]
fn refresh_deadline_surfaces_refresh_timeout_and_a_late_token_is_kept() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 401, &[], "");
    h.advance(Duration::from_secs(30));
    assert!(matches!(h.error(call), CallError::RefreshTimeout { .. }));
    // The token endpoint answers late: a rotated token must not be lost.
    h.refreshed(1, "rotated");
    let next = h.call(Operation::ping());
    let p = h.take("ping");
    assert_eq!(p.bearer(), Some("Bearer rotated"));
    h.result(&p, json!({}));
    assert!(h.ok(next).is_object());
}

#[test]
fn expired_token_during_reconnect_refreshes_then_reinitializes() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(s.exchange, 404, &[], PY_404);
    let init = h.take("initialize");
    h.respond(init.exchange, 401, &[], "");
    assert_eq!(h.refreshes(), 1);
    h.refreshed(1, "new");
    let init2 = h.outbox.front().expect("initialize again");
    assert_eq!(init2.bearer(), Some("Bearer new"));
    h.handshake("s2");
    let r = h.take("tools/list");
    assert_eq!(r.bearer(), Some("Bearer new"));
    assert_eq!(r.session_id(), Some("s2"));
    h.result(&r, json!({"tools": []}));
    assert!(h.ok(call).is_object());
}

#[test]
fn token_is_never_in_debug_output_or_errors() {
    let mut h = ready_with_token(Config::new(URL), "sup3r-s3cret");
    h.call(Operation::ping());
    let s = h.take("ping");
    assert!(!format!("{:?}", s.request).contains("sup3r-s3cret"));
    assert!(!format!("{:?}", h.engine).contains("sup3r-s3cret"));
    h.respond(s.exchange, 401, &[], "");
    for a in &h.events {
        assert!(!format!("{a:?}").contains("sup3r-s3cret"));
    }
    let mut config = Config::new(URL);
    config
        .headers
        .push(("Authorization".into(), "Basic c2VjcmV0LWhlYWRlcg==".into()));
    let e = mcp_recovery_core::Engine::new(config);
    assert!(!format!("{e:?}").contains("c2VjcmV0LWhlYWRlcg"));
}

// ----- circuit breaker -----

fn breaker_harness() -> Harness {
    Harness::ready_with(Config::new(URL).breaker(BreakerConfig::new(3, Duration::from_secs(60))))
}

/// A call whose every attempt is refused before sending, until its
/// restart budget (10 s) is spent.
fn unreachable_call(h: &mut Harness) -> mcp_recovery_core::CallId {
    let c = h.call(Operation::ping());
    refuse_until_ended(h, c);
    c
}

/// Refuses every request (nothing listens) and lets time pass, 100 ms at a
/// time, until `call` ended.
fn refuse_until_ended(h: &mut Harness, call: mcp_recovery_core::CallId) {
    for _ in 0..10_000 {
        while let Some(s) = h.outbox.pop_front() {
            h.refused(&s);
        }
        if h.ended.contains_key(&call) {
            return;
        }
        h.advance(Duration::from_millis(100));
    }
    panic!("{call} never ended");
}

#[test]
fn opens_after_three_failures_and_fails_fast_with_time_left() {
    let mut h = breaker_harness();
    for _ in 0..3 {
        let c = unreachable_call(&mut h);
        assert!(matches!(h.error(c), CallError::Transport { .. }));
    }
    assert!(matches!(h.engine.breaker(), BreakerState::Open { .. }));
    h.advance(Duration::from_secs(20));
    let c = h.call(Operation::ping());
    assert_eq!(
        h.error(c),
        &CallError::CircuitOpen {
            retry_in: Duration::from_secs(40)
        }
    );
    assert!(h.outbox.is_empty(), "fail fast: nothing sent");
}

#[test]
fn half_open_lets_exactly_one_probe_and_a_failed_probe_rearms() {
    let mut h = breaker_harness();
    for _ in 0..3 {
        unreachable_call(&mut h);
    }
    h.advance(Duration::from_secs(60));
    let probe = h.call(Operation::ping());
    let other = h.call(Operation::ping());
    assert_eq!(
        h.error(other),
        &CallError::CircuitOpen {
            retry_in: Duration::from_secs(1)
        },
        "told to come back once the probe has had time, never in no time"
    );
    let s = h.take("ping");
    assert!(h.outbox.is_empty());
    h.refused(&s);
    refuse_until_ended(&mut h, probe);
    assert!(matches!(h.error(probe), CallError::Transport { .. }));
    assert!(
        matches!(h.engine.breaker(), BreakerState::Open { until } if until == h.now + Duration::from_secs(60))
    );
    // A successful probe closes it.
    h.advance(Duration::from_secs(60));
    let probe = h.call(Operation::ping());
    let s = h.take("ping");
    h.result(&s, json!({}));
    assert!(h.ok(probe).is_object());
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
}

#[test]
fn success_resets_the_count() {
    let mut h = breaker_harness();
    unreachable_call(&mut h);
    unreachable_call(&mut h);
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 2 });
    let c = h.call(Operation::ping());
    let s = h.take("ping");
    h.result(&s, json!({}));
    assert!(h.ok(c).is_object());
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
}

#[test]
fn an_answer_resets_the_count_a_reinitialize_alone_does_not() {
    let mut h = breaker_harness();
    unreachable_call(&mut h);
    unreachable_call(&mut h);
    let c = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 404, &[], PY_404);
    h.handshake("s2");
    // A fresh session proves little: a server behind a load balancer
    // without affinity hands them out and forgets them at once.
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 2 });
    let r = h.take("ping");
    h.result(&r, json!({}));
    assert!(h.ok(c).is_object());
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
}

/// A load balancer without session affinity: every initialize succeeds on
/// one replica, every later request lands on one that never heard of the
/// session. Each call re-initializes once and gives up with `SessionLost`;
/// the breaker counts them and opens at its threshold, instead of every
/// call re-initializing forever.
#[test]
fn session_churn_opens_the_breaker() {
    let mut h = breaker_harness();
    let mut initializes = 0;
    for _ in 0..3 {
        let c = h.call(Operation::ping());
        let s = h.take("ping");
        h.respond(s.exchange, 404, &[], PY_404);
        initializes += 1;
        h.handshake(&format!("s{}", initializes + 1));
        let r = h.take("ping");
        h.respond(r.exchange, 404, &[], PY_404);
        match h.error(c) {
            CallError::SessionLost { status: 404, .. } => {}
            other => panic!("expected SessionLost, got {other:?}"),
        }
        assert!(
            format!("{}", h.error(c)).contains("affinity"),
            "{}",
            h.error(c)
        );
    }
    assert!(matches!(h.engine.breaker(), BreakerState::Open { .. }));
    let c = h.call(Operation::ping());
    assert!(matches!(h.error(c), CallError::CircuitOpen { .. }));
    assert_eq!(h.sent_count("initialize"), initializes + 1);
}

#[test]
fn application_errors_and_tool_errors_do_not_count() {
    let mut h = breaker_harness();
    unreachable_call(&mut h);
    unreachable_call(&mut h);
    for _ in 0..5 {
        let c = h.call(Operation::call_tool("fails", json!({})));
        let s = h.take("tools/call");
        h.result(&s, json!({"content": [], "isError": true}));
        assert!(h.ok(c).is_object());
        let c = h.call(Operation::call_tool("nope", json!({})));
        let s = h.take("tools/call");
        h.rpc_error(&s, -32602, "Unknown tool: nope");
        assert!(matches!(h.outcome(c), Ok(Err(_))));
    }
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
}

#[test]
fn a_server_that_stays_down_opens_the_breaker_through_failed_reconnects() {
    let mut h = breaker_harness();
    // The server restarted and stays down: the session is gone, and from
    // then on nothing listens. A call comes every second.
    let first = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 404, &[], PY_404);
    let mut calls = vec![first];
    for _ in 0..300 {
        while let Some(s) = h.outbox.pop_front() {
            h.refused(&s);
        }
        if matches!(h.engine.breaker(), BreakerState::Open { .. }) {
            break;
        }
        h.advance(Duration::from_secs(1));
        calls.push(h.call(Operation::ping()));
    }
    // Each handshake waited out its deadline (30 s) for the server, and
    // each failed handshake counted once: three opened the breaker.
    assert!(matches!(h.engine.breaker(), BreakerState::Open { .. }));
    assert_eq!(h.reconnects(), 3);
    let c = h.call(Operation::ping());
    assert!(matches!(h.error(c), CallError::CircuitOpen { .. }));
    for c in &calls {
        match h.outcome(*c) {
            Err(
                CallError::ReconnectTimeout { .. }
                | CallError::InitializeFailed(_)
                | CallError::CircuitOpen { .. },
            ) => {}
            other => panic!("{c}: {other:?}"),
        }
    }
    // Cooldown over, server back: the probe re-initializes and closes it.
    h.advance(Duration::from_secs(60));
    let probe = h.call(Operation::ping());
    h.handshake("s9");
    let p = h.take("ping");
    h.result(&p, json!({}));
    assert!(h.ok(probe).is_object());
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
}

#[test]
fn zero_threshold_disables_the_breaker() {
    let mut h = Harness::ready_with(
        Config::new(URL).breaker(BreakerConfig::new(0, Duration::from_secs(60))),
    );
    for _ in 0..10 {
        unreachable_call(&mut h);
    }
    assert_eq!(h.engine.breaker(), BreakerState::Closed { failures: 0 });
    let c = h.call(Operation::ping());
    let s = h.take("ping");
    h.result(&s, json!({}));
    assert!(h.ok(c).is_object());
}

#[test]
fn cancelled_probe_lets_the_next_call_probe() {
    let mut h = breaker_harness();
    for _ in 0..3 {
        unreachable_call(&mut h);
    }
    h.advance(Duration::from_secs(60));
    let probe = h.call(Operation::ping());
    let _ = h.take("ping");
    h.cancel(probe);
    let _ = h.take("notifications/cancelled");
    let next = h.call(Operation::ping());
    let s = h.take("ping");
    h.result(&s, json!({}));
    assert!(h.ok(next).is_object());
}

#[test]
fn a_token_set_by_the_user_wakes_calls_waiting_for_a_refresh() {
    let mut h = ready_with_token(Config::new(URL), "old");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 401, &[], "");
    // The person logged in again while the refresh was pending.
    h.engine.set_token(Some(Token::bearer("fresh")), h.now);
    h.pump();
    let r = h.take("ping");
    assert_eq!(r.bearer(), Some("Bearer fresh"));
    h.result(&r, json!({}));
    assert!(h.ok(call).is_object());
    // The stale refresh answer changes nothing.
    h.refreshed(1, "late");
    let next = h.call(Operation::ping());
    assert_eq!(h.take("ping").bearer(), Some("Bearer fresh"));
    assert!(!h.ended.contains_key(&next));
}

#[test]
fn a_token_about_to_expire_is_refreshed_while_calls_go_on_with_it() {
    let mut h = ready_with_token(Config::new(URL), "t1");
    h.engine
        .set_token_expiry(Some(h.now + Duration::from_secs(90)), h.now);
    // A minute before the 30 s skew: nothing to do.
    let first = h.call(Operation::ping());
    let s = h.take("ping");
    assert_eq!(s.bearer(), Some("Bearer t1"));
    h.result(&s, json!({}));
    h.ok(first);
    assert_eq!(h.refreshes(), 0);
    // Within the skew: one refresh is asked for, and the call does not
    // wait for it.
    h.advance(Duration::from_secs(61));
    let second = h.call(Operation::ping());
    assert_eq!(h.refreshes(), 1);
    let s = h.take("ping");
    assert_eq!(s.bearer(), Some("Bearer t1"), "sent at once, current token");
    let third = h.call(Operation::ping());
    assert_eq!(h.refreshes(), 1, "asked once, not per call");
    h.refreshed(1, "t2");
    h.result(&s, json!({}));
    h.ok(second);
    let s = h.take("ping");
    h.result(&s, json!({}));
    h.ok(third);
    let fourth = h.call(Operation::ping());
    let s = h.take("ping");
    assert_eq!(s.bearer(), Some("Bearer t2"));
    h.result(&s, json!({}));
    h.ok(fourth);
    assert_eq!(
        h.refreshes(),
        1,
        "the new token's expiry is unknown until set"
    );

    // A token with 10 s left and a 30 s skew is refreshed after 5 s, not
    // at once: never before half its remaining life.
    h.engine
        .set_token_expiry(Some(h.now + Duration::from_secs(10)), h.now);
    let early = h.call(Operation::ping());
    let s = h.take("ping");
    h.result(&s, json!({}));
    h.ok(early);
    assert_eq!(h.refreshes(), 1);
    h.advance(Duration::from_secs(5));
    let due = h.call(Operation::ping());
    assert_eq!(h.refreshes(), 2);
    let s = h.take("ping");
    h.result(&s, json!({}));
    h.ok(due);
}

#[test]
fn forbidden_for_want_of_scope_takes_the_auth_path_once_and_other_403s_do_not() {
    let mut h = ready_with_token(Config::new(URL), "narrow");
    let call = h.call(Operation::ping());
    let s = h.take("ping");
    let challenge = r#"Bearer error="insufficient_scope", scope="mcp admin""#;
    h.respond(s.exchange, 403, &[("www-authenticate", challenge)], "");
    assert!(h.events.iter().any(|a| matches!(a,
        Action::Refresh401 { challenge: Some(c), .. } if c == challenge)));
    h.refreshed(1, "wide");
    let s = h.take("ping");
    assert_eq!(s.bearer(), Some("Bearer wide"));
    // Still too narrow: no second step-up for the same call.
    h.respond(s.exchange, 403, &[("www-authenticate", challenge)], "");
    assert!(matches!(h.error(call), CallError::Unauthorized));
    assert_eq!(h.refreshes(), 1);

    let plain = h.call(Operation::ping());
    let s = h.take("ping");
    h.respond(s.exchange, 403, &[], "forbidden");
    assert!(matches!(
        h.error(plain),
        CallError::Http { status: 403, .. }
    ));
    assert_eq!(h.refreshes(), 1);
}

#[test]
fn a_dpop_nonce_refusal_is_retried_once_without_a_refresh() {
    let mut h = ready_with_token(Config::new(URL), "bound");
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    let nonce = [("WWW-Authenticate", r#"DPoP error="use_dpop_nonce""#)];
    h.respond(s.exchange, 401, &nonce, "");
    // The token is fine: the same request again, no refresh asked for.
    let again = h.take("tools/list");
    assert_eq!(h.refreshes(), 0);
    h.result(&again, json!({"tools": []}));
    assert_eq!(h.ok(call), &json!({"tools": []}));
    // Refused so twice in a row: the call ends, no loop, still no refresh.
    let call = h.call(Operation::list_tools(None));
    let s = h.take("tools/list");
    h.respond(s.exchange, 401, &nonce, "");
    let again = h.take("tools/list");
    h.respond(again.exchange, 401, &nonce, "");
    assert!(matches!(h.error(call), CallError::Unauthorized));
    assert_eq!(h.refreshes(), 0);
    assert!(h.outbox.is_empty());
}
