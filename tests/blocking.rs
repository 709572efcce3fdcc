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

scenario_tests!(Client);

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
