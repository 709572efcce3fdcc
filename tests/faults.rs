//! The fault matrix: what real servers cannot be made to do on demand,
//! from a controllable test server (`support/fault_server.rs`). Each fault
//! ends the call with a typed error within its deadline, never a panic or
//! a hang, and the same client works again once the fault is gone; the
//! breaker counts transport and protocol failures, never answers. Run
//! against both clients.

#[path = "support/balancer.rs"]
mod balancer;
mod common;
#[path = "support/fault_server.rs"]
mod fault_server;

use balancer::Balancer;
use common::scenarios::{Mcp, PY_JSON};
use common::Peer;
use fault_server::{Fault, FaultServer};
use mcp_recovery::client::oauth::{MemoryTokenStore, OAuthConfig, StoredTokens, TokenStore};
use mcp_recovery::client::{ClientBuilder, Error};
use mcp_recovery::core::oauth::canonical_resource;
use mcp_recovery::core::{BreakerConfig, BreakerState, CallError, Protocol, ProtocolError};
use serde_json::json;
use std::time::{Duration, Instant};

/// Generous: every fault below ends well within it; a hang would not.
const HANG_GUARD: Duration = Duration::from_secs(15);

/// The fault server speaks the handshake wire only.
fn builder<C: Mcp>(server: &FaultServer) -> ClientBuilder<C> {
    ClientBuilder::new(&server.url())
        .protocol(Protocol::Legacy)
        .read_timeout(Duration::from_secs(1))
        .await_ready(Duration::from_secs(3))
        .max_body_size(64 * 1024)
        // The breaker has its own test; here it must not hide the faults.
        .breaker(BreakerConfig::new(1000, Duration::from_secs(60)))
        .configure(|c| c.connect_retry_delay = Duration::from_millis(50))
}

/// A token store holding an expired-looking token and a refresh token for
/// `server`'s token endpoint.
fn stored_tokens(server: &FaultServer) -> MemoryTokenStore {
    let store = MemoryTokenStore::default();
    store
        .save(&StoredTokens {
            access_token: "old-access".into(),
            refresh_token: Some("refresh-1".into()),
            token_endpoint: format!("http://127.0.0.1:{}/token", server.port),
            client_id: "test-client".into(),
            resource: canonical_resource(&server.url()).unwrap(),
            ..StoredTokens::default()
        })
        .unwrap();
    store
}

fn echo<C: Mcp>(c: &C) -> Result<String, Error> {
    c.call_tool("echo", json!({"text": "hi"})).map(|r| r.text())
}

/// Runs `call` under `fault`, checks its error, then shows the client works.
fn fault_then_good<C: Mcp, T: std::fmt::Debug>(
    server: &FaultServer,
    c: &C,
    fault: Fault,
    call: impl Fn(&C) -> Result<T, Error>,
    expected: impl Fn(&Error) -> bool,
) {
    server.set(fault);
    let t = Instant::now();
    let r = call(c);
    assert!(
        t.elapsed() < HANG_GUARD,
        "{fault:?}: took {:?}",
        t.elapsed()
    );
    match &r {
        Err(e) if expected(e) => {}
        other => panic!("{fault:?}: unexpected outcome {other:?}"),
    }
    server.set(Fault::Good);
    assert_eq!(echo(c).unwrap(), "hi", "{fault:?}: the client works again");
}

/// The error behind a failed handshake, or the error itself.
fn unwrap_init(e: &CallError) -> &CallError {
    match e {
        CallError::InitializeFailed(inner) => unwrap_init(inner),
        other => other,
    }
}

fn cause(e: &Error) -> &CallError {
    match e {
        Error::Call(c) => unwrap_init(c),
        other => panic!("not a call error: {other:?}"),
    }
}

fn protocol(e: &Error) -> Option<&ProtocolError> {
    match e {
        Error::Call(CallError::Protocol(p)) => Some(p),
        _ => None,
    }
}

fn uncertain(e: &Error) -> bool {
    matches!(e, Error::Call(CallError::OutcomeUncertain { .. }))
}

fn transport(e: &Error) -> bool {
    matches!(e, Error::Call(CallError::Transport { .. }) | Error::Timeout)
}

pub fn fault_matrix<C: Mcp>() {
    let server = FaultServer::start();
    let c: C = builder(&server).build().unwrap();
    c.initialize().unwrap();

    fault_then_good(&server, &c, Fault::GarbageJson, echo, |e| {
        matches!(protocol(e), Some(ProtocolError::Body(_)))
    });
    fault_then_good(&server, &c, Fault::WrongContentType, echo, |e| {
        matches!(protocol(e), Some(ProtocolError::UnexpectedContentType(_)))
    });
    // A stream cut before any event id cannot be resumed: ambiguous. The
    // side effect is not replayed; a read-only call is, once.
    fault_then_good(&server, &c, Fault::SseCutMidEvent, echo, uncertain);
    fault_then_good(&server, &c, Fault::SseCutMidEvent, |c| c.ping(), transport);
    fault_then_good(&server, &c, Fault::Oversize, echo, |e| {
        matches!(
            protocol(e),
            Some(ProtocolError::TooLarge { limit }) if *limit == 64 * 1024
        )
    });
    // One byte every 100 ms never trips a per-read timeout: the head has
    // a deadline of its own.
    fault_then_good(&server, &c, Fault::Slowloris, echo, |e| {
        uncertain(e) || transport(e)
    });
    fault_then_good(&server, &c, Fault::ResetAfter200, echo, uncertain);
    fault_then_good(&server, &c, Fault::ResetAfter200, |c| c.ping(), transport);

    // A server that forgets every session, even the one it just made: one
    // re-initialize, then the call gives up (its handshake's own
    // `initialized` got the 404), no loop.
    let before = server.initializes.load(std::sync::atomic::Ordering::SeqCst);
    fault_then_good(
        &server,
        &c,
        Fault::Always404,
        |c| c.ping(),
        |e| {
            matches!(
                cause(e),
                CallError::SessionLost { .. } | CallError::Http { status: 404, .. }
            )
        },
    );
    let after = server.initializes.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        after - before,
        2,
        "one re-initialize for the call, one for the good call after"
    );
}

/// Faults of the handshake and of credentials, each on a fresh client.
pub fn handshake_and_credential_faults<C: Mcp>() {
    let server = FaultServer::start();

    // A static token refused: a person must act; no refresh, no loop.
    let c: C = builder(&server).bearer("static").build().unwrap();
    fault_then_good(
        &server,
        &c,
        Fault::Always401,
        |c| c.ping(),
        |e| matches!(e, Error::Call(CallError::NeedsReauth { .. })),
    );

    // A token endpoint that answers 500 with an HTML page: a typed refresh
    // failure, not NeedsReauth (the grant may still be good), one request.
    let store = stored_tokens(&server);
    let c: C = builder(&server)
        .oauth(OAuthConfig::new(store))
        .build()
        .unwrap();
    server.set(Fault::TokenEndpoint500);
    match c.ping() {
        Err(Error::Call(e)) => match unwrap_init(&e) {
            CallError::RefreshFailed { message } => {
                assert!(!message.contains("refresh-1"), "{message}")
            }
            other => panic!("expected RefreshFailed, got {other:?}"),
        },
        other => panic!("expected RefreshFailed, got {other:?}"),
    }
    assert_eq!(
        server
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A redirect to another origin is not followed: the bearer token never
    // reaches it (nothing reaches it at all), and the call ends typed.
    let elsewhere = FaultServer::start();
    server.set(Fault::Good);
    let c: C = builder(&server).bearer("s3cret-bearer").build().unwrap();
    c.ping().unwrap();
    server.set(Fault::RedirectTo(elsewhere.port));
    match c.call_tool("echo", json!({"text": "hi"})) {
        Err(e @ Error::Call(CallError::Http { status: 307, .. })) => {
            assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}")
        }
        other => panic!("expected HTTP 307, got {other:?}"),
    }
    assert_eq!(
        elsewhere.requests(),
        (0, 0),
        "nothing went to the other origin"
    );
    server.set(Fault::Good);

    // A session id with a control character is refused, never adopted.
    let c: C = builder(&server).build().unwrap();
    fault_then_good(
        &server,
        &c,
        Fault::SessionIdControlChars,
        |c| c.ping(),
        |e| matches!(e, Error::Call(_)),
    );
    assert!(c.session_id().unwrap().starts_with("good-"));

    // A session id on an error answer is never adopted.
    let c: C = builder(&server).build().unwrap();
    server.set(Fault::SessionIdOnError);
    assert!(c.ping().is_err(), "the first initialize was refused");
    c.ping().unwrap();
    assert!(
        c.session_id().unwrap().starts_with("good-"),
        "{:?}",
        c.session_id()
    );
}

/// Transport and protocol failures count toward the breaker; answers (a
/// JSON-RPC error) never do.
pub fn breaker_counts_failures_not_answers<C: Mcp>() {
    let server = FaultServer::start();
    let c: C = ClientBuilder::new(&server.url())
        .breaker(BreakerConfig::new(3, Duration::from_secs(60)))
        .build()
        .unwrap();
    for _ in 0..5 {
        match c.request("no/such/method", None) {
            Err(Error::Rpc(e)) => assert_eq!(e.code, -32601),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        c.breaker_state(),
        BreakerState::Closed { failures: 0 }
    ));
    server.set(Fault::GarbageJson);
    for _ in 0..3 {
        assert!(echo(&c).is_err());
    }
    server.set(Fault::Good);
    match echo(&c) {
        Err(Error::Call(CallError::CircuitOpen { retry_in })) => {
            assert!(retry_in <= Duration::from_secs(60))
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
}

/// A server that keeps an answered event stream open (the spec says it
/// SHOULD close it) must not hold the call up: the answer is the end of the
/// call, and what is left of the stream is read off the caller's path.
/// A server that hands out a fresh cursor with every page of 500 tools:
/// `all_tools` stops at its bound with a typed error instead of growing
/// without end, and the client goes on.
fn endless_pagination_is_bounded<C: Mcp>() {
    let server = FaultServer::start();
    let big = 1 << 20; // a page is about 560 KB
    let c: C = builder(&server)
        .max_body_size(big)
        .max_pages(20)
        .build()
        .unwrap();
    server.set(Fault::EndlessPages);
    match c.all_tools() {
        Err(Error::TooManyPages { pages, items }) => {
            assert_eq!(pages, 20);
            assert_eq!(items, 20 * 500);
        }
        other => panic!("expected TooManyPages, got {other:?}"),
    }
    // The item bound alone stops it too (the default 10 000 items is 20 pages).
    let c: C = builder(&server)
        .max_body_size(big)
        .max_pages(1000)
        .build()
        .unwrap();
    match c.all_tools() {
        Err(Error::TooManyPages { pages, items }) => {
            assert_eq!(pages, 21);
            assert_eq!(items, 21 * 500);
        }
        other => panic!("expected TooManyPages, got {other:?}"),
    }
    server.set(Fault::Good);
    assert_eq!(echo(&c).unwrap(), "hi");
}

/// Waits nobody bounds but the call: an initialize answered with nothing
/// but SSE comments, an error body that never ends, a token endpoint that
/// trickles. Each ends with a typed error close to its deadline.
fn every_wait_is_bounded<C: Mcp>() {
    let server = FaultServer::start();
    let margin = Duration::from_millis(1500);

    // The handshake's stream only keeps itself alive: the call's own
    // deadline (2 s) ends it, though every read gets bytes in time.
    let c: C = builder(&server)
        .call_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    server.set(Fault::InitializeComments);
    let start = Instant::now();
    match c.ping() {
        Err(Error::Timeout) | Err(Error::Call(_)) => {}
        other => panic!("expected a typed error, got {other:?}"),
    }
    let took = start.elapsed();
    eprintln!("initialize answered with comments only, call timeout 2 s: ended after {took:?}");
    assert!(took < Duration::from_secs(2) + margin, "{took:?}");

    // An error body that goes on: read up to what explains it, no further.
    server.set(Fault::Good);
    let c: C = builder(&server).build().unwrap();
    c.ping().unwrap();
    server.set(Fault::Endless500);
    let start = Instant::now();
    match c.ping() {
        Err(Error::Call(CallError::Http { status: 500, .. })) => {}
        other => panic!("expected HTTP 500, got {other:?}"),
    }
    eprintln!("endless 500 body: ended after {:?}", start.elapsed());
    assert!(start.elapsed() < margin, "{:?}", start.elapsed());
    server.set(Fault::Good);
    c.ping().unwrap();

    // A token endpoint trickling one byte every 200 ms: the refresh ends at
    // its own timeout (1 s here), not when the trickle does.
    let store = stored_tokens(&server);
    let c: C = builder(&server)
        .oauth(OAuthConfig::new(store))
        .configure(|c| c.refresh_timeout = Duration::from_secs(1))
        .build()
        .unwrap();
    server.set(Fault::TokenTrickle);
    let start = Instant::now();
    match c.ping() {
        Err(Error::Call(e)) => assert!(
            matches!(
                unwrap_init(&e),
                CallError::RefreshFailed { .. } | CallError::RefreshTimeout { .. }
            ),
            "{e:?}"
        ),
        other => panic!("expected a failed refresh, got {other:?}"),
    }
    let took = start.elapsed();
    eprintln!("token endpoint trickling, refresh timeout 1 s: ended after {took:?}");
    assert!(took < Duration::from_secs(1) + margin, "{took:?}");
    server.set(Fault::Good);
}

/// Two real Python servers behind a balancer without session affinity:
/// every session is made on one and asked for on the other. Each call
/// re-initializes once and ends with `SessionLost` naming the likely cause;
/// the breaker counts them (a fresh session no longer resets it) and opens,
/// so calls fail fast instead of re-initializing forever. On the stateless
/// wire (the default against these servers) there is no session to lose:
/// the same balancer is harmless.
fn session_churn_opens_the_breaker<C: Mcp>() {
    let made = Peer::start(PY_JSON);
    let other = Peer::start(PY_JSON);
    let lb = Balancer::split(made.port, other.port);
    let c: C = ClientBuilder::new(&lb.url())
        .protocol(Protocol::Legacy)
        .read_timeout(Duration::from_secs(10))
        .breaker(BreakerConfig::new(3, Duration::from_secs(60)))
        .build()
        .unwrap();
    for call in 0..3 {
        match c.ping() {
            Err(Error::Call(e @ CallError::SessionLost { status: 404, .. })) => {
                assert!(e.to_string().contains("affinity"), "{e}")
            }
            other => panic!("call {call}: expected SessionLost, got {other:?}"),
        }
    }
    match c.ping() {
        Err(Error::Call(CallError::CircuitOpen { .. })) => {}
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert!(matches!(c.breaker_state(), BreakerState::Open { .. }));
    // One initialize for the first session, then one per failed call.
    assert_eq!(made.initializes(), 4);
    assert_eq!(other.initializes(), 0);

    let stateless: C = ClientBuilder::new(&lb.url()).build().unwrap();
    for _ in 0..4 {
        assert_eq!(echo(&stateless).unwrap(), "hi");
    }
    assert_eq!(stateless.protocol_version(), Some("2026-07-28"));
    assert_eq!(
        stateless.breaker_state(),
        BreakerState::Closed { failures: 0 }
    );
}

fn held_open_stream_does_not_hold_the_call<C: Mcp>() {
    let server = FaultServer::start();
    // A long read timeout: waiting for the stream's end would show.
    let c: C = builder(&server)
        .read_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(echo(&c).unwrap(), "hi");
    server.set(Fault::SseHeldOpen);
    for held in 1..=2 {
        assert_eq!(echo(&c).unwrap(), "hi");
        assert_eq!(
            server.held_open(),
            held,
            "the call returned while the server held its stream open"
        );
    }
    server.release();
    server.set(Fault::Good);
    assert_eq!(echo(&c).unwrap(), "hi");
}

macro_rules! fault_tests {
    ($name:ident, $c:ty) => {
        mod $name {
            use super::*;
            #[test]
            fn each_fault_is_typed_within_its_deadline_and_the_client_goes_on() {
                fault_matrix::<$c>();
            }
            #[test]
            fn session_churn_behind_a_balancer_opens_the_breaker() {
                session_churn_opens_the_breaker::<$c>();
            }
            #[test]
            fn every_wait_is_bounded_by_its_deadline() {
                every_wait_is_bounded::<$c>();
            }
            #[test]
            fn endless_pagination_stops_at_its_bound() {
                endless_pagination_is_bounded::<$c>();
            }
            #[test]
            fn handshake_and_credential_faults_are_typed() {
                handshake_and_credential_faults::<$c>();
            }
            #[test]
            fn a_stream_held_open_after_the_answer_does_not_hold_the_call() {
                held_open_stream_does_not_hold_the_call::<$c>();
            }
            #[test]
            fn the_breaker_counts_failures_not_answers() {
                breaker_counts_failures_not_answers::<$c>();
            }
        }
    };
}

fault_tests!(blocking, mcp_recovery::blocking::Client);
fault_tests!(smol_client, mcp_recovery::smol::Client);
