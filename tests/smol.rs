//! The async client on smol against the official Python and TypeScript
//! servers: every scenario of the blocking client (shared in
//! `common/scenarios.rs`), a herd of 64 tasks across one expiry, and
//! cancellation by dropping a call's future. No mocks: real servers.

mod common;

use common::scenarios::*;
use common::Peer;
use mcp_recovery::smol::{CallOptions, Client, Error};
use serde_json::json;
use std::time::Duration;

scenario_tests!(Client);
wire_tests!(Client);
stdio_tests!(Client);

/// `n` tasks on smol's executor, started together, each adding its index
/// and one.
fn tasks(c: &Client, n: usize) -> Vec<Result<String, Error>> {
    smol::block_on(async {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let c = c.clone();
                smol::spawn(async move {
                    c.call_tool("add", json!({"a": i, "b": 1}))
                        .await
                        .map(|r| r.text())
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.push(h.await);
        }
        out
    })
}

#[test]
fn python_herd_of_64_tasks_across_idle_expiry() {
    herd::<Client>(PY_SSE_IDLE, idle_expiry, 64, tasks);
}

#[test]
fn ts_herd_of_64_tasks_across_restart() {
    herd::<Client>(TS_SSE, Peer::restart, 64, tasks);
}

/// Dropping a call's future cancels it: the server is told
/// (`notifications/cancelled` stops the tool early, so its progress stops)
/// and the client goes on with the same session.
#[test]
fn dropping_a_call_future_cancels_it() {
    let peer = Peer::start(PY_SSE);
    let c: Client = client(&peer);
    smol::block_on(async {
        c.initialize().await.unwrap();
        let (tx, rx) = async_channel_like();
        let call = {
            let c = c.clone();
            async move {
                let opts = CallOptions::new().progress(move |p| {
                    let _ = tx.try_send(p.progress);
                });
                c.call_tool_with("slow", json!({"steps": 500}), opts).await
            }
        };
        // Run the call until the tool is visibly running, then drop it.
        let first = smol::future::or(async { call.await.map(|_| 0.0).unwrap_or(-1.0) }, async {
            rx.recv().await.unwrap_or(-2.0)
        })
        .await;
        assert_eq!(first, 1.0, "the tool reported progress before the drop");
        // The session is intact and serves the next call at once.
        let r = c.call_tool("echo", json!({"text": "after"})).await.unwrap();
        assert_eq!(r.text(), "after");
        assert_eq!(c.generation(), 1);
    });
    // The server stopped the tool (500 steps would take 10 s): observed
    // through its own count of runs that ended early.
    peer.await_cancelled(1, Duration::from_secs(5));
    assert_eq!(peer.initializes(), 1);
}

/// A one-slot channel from the progress callback to the test.
fn async_channel_like() -> (smol::channel::Sender<f64>, smol::channel::Receiver<f64>) {
    smol::channel::bounded(16)
}

/// The futures are `Send`, so they run on any executor thread.
#[test]
fn call_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let c: Client = Client::builder("http://127.0.0.1:1/mcp").build().unwrap();
    send(&c.call_tool("echo", json!({})));
    send(&c.ping());
    send(&c.initialize());
    send(&c.all_tools());
    send(&c.close());
}
