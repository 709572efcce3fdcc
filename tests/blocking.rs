//! The blocking client against the official Python and TypeScript servers:
//! every operation, session expiry by idle timeout and by restart, a herd
//! of threads across one expiry, a connection cut mid-call, a server that
//! stays down, and a stateless server. No mocks: real servers, real HTTP.
//! The scenarios are shared with the async client (`common/scenarios.rs`).

mod common;

use common::scenarios::*;
use common::Peer;
use mcp_recovery::blocking::Client;
use serde_json::json;
use std::sync::{Arc, Barrier};

#[test]
fn python_sse_all_operations() {
    all_operations::<Client>(PY_SSE);
}

#[test]
fn python_json_all_operations() {
    all_operations::<Client>(PY_JSON);
}

#[test]
fn ts_sse_all_operations() {
    all_operations::<Client>(TS_SSE);
}

#[test]
fn ts_json_all_operations() {
    all_operations::<Client>(TS_JSON);
}

#[test]
fn python_sse_idle_timeout() {
    survives_expiry::<Client>(PY_SSE_IDLE, idle_expiry);
}

#[test]
fn python_json_idle_timeout() {
    survives_expiry::<Client>(PY_JSON_IDLE, idle_expiry);
}

#[test]
fn python_restart() {
    survives_expiry::<Client>(PY_SSE, Peer::restart);
}

#[test]
fn ts_restart() {
    survives_expiry::<Client>(TS_SSE, Peer::restart);
}

#[test]
fn ts_json_restart() {
    survives_expiry::<Client>(TS_JSON, Peer::restart);
}

/// `n` threads released at once, each adding its index and one.
fn threads(c: &Client, n: usize) -> Vec<Result<String, mcp_recovery::blocking::Error>> {
    let start = Arc::new(Barrier::new(n));
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

#[test]
fn python_herd_of_16_across_idle_expiry() {
    herd::<Client>(PY_SSE_IDLE, idle_expiry, 16, threads);
}

#[test]
fn ts_herd_of_16_across_restart() {
    herd::<Client>(TS_SSE, Peer::restart, 16, threads);
}

#[test]
fn python_cut_mid_call_never_runs_twice() {
    cut_mid_call::<Client>(PY_SSE);
}

#[test]
fn ts_cut_mid_call_never_runs_twice() {
    cut_mid_call::<Client>(TS_JSON);
}

#[test]
fn python_down_fails_within_deadline_then_breaker_opens_and_closes() {
    server_down::<Client>(PY_JSON);
}

#[test]
fn ts_down_fails_within_deadline_then_breaker_opens_and_closes() {
    server_down::<Client>(TS_SSE);
}

#[test]
fn python_stateless_never_takes_the_session_path() {
    stateless::<Client>(PY_STATELESS);
}

#[test]
fn ts_stateless_never_takes_the_session_path() {
    stateless::<Client>(TS_STATELESS);
}

#[test]
fn python_restart_then_side_effect_runs_once() {
    restart_then_side_effect::<Client>(PY_SSE);
}

#[test]
fn ts_restart_then_side_effect_runs_once() {
    restart_then_side_effect::<Client>(TS_JSON);
}

#[test]
fn python_server_requests_and_notifications_reach_the_handler() {
    server_requests_and_notifications::<Client>();
}

#[test]
fn cancel_and_call_timeout_end_the_call_and_keep_the_client() {
    cancel_and_timeout::<Client>();
}

#[test]
fn oversize_body_is_a_typed_error_and_the_client_goes_on() {
    oversize_body::<Client>();
}

#[test]
fn bad_configuration_is_a_typed_error() {
    bad_configuration::<Client>();
}

#[test]
fn bearer_token_never_printed() {
    bearer_never_printed::<Client>();
}
