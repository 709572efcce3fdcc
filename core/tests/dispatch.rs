//! The dispatcher routes a call's traffic to its own mailbox and the
//! rest to whoever drained it.

use mcp_recovery_core::{
    Action, CallError, Config, Dispatcher, Engine, ExchangeId, Job, Mail, Operation,
};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Instant;

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
    let mut d = Dispatcher::new(Engine::new(Config::new("http://127.0.0.1:1/mcp")), true);
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
    assert!(matches!(d.handshake(), Some(Ok(1))));
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
