//! The two wires against real servers, written once for both clients: the
//! Python SDK (`mcp` 2.3.0) speaks both from one endpoint, the TypeScript
//! SDK 1.32.2 only the handshake. The default (`Protocol::Auto`) picks the
//! stateless wire where it can; a multi-round-trip tool and an
//! `x-mcp-header` parameter (which the Python server checks against the
//! body) work on it; one URL moving between a handshake-only and a
//! 2026-07-28 server while callers call is one re-negotiation, every call
//! answered, each run once.

use super::scenarios::{op, Mcp, OPS, PY_JSON, PY_SSE, TS_JSON};
use super::Peer;
use mcp_recovery::client::{ClientBuilder, Error, ServerHandler, ToolResult};
use mcp_recovery::core::{Protocol, RpcError, MODERN_VERSION};
use serde_json::{json, Value};
use std::time::Duration;

/// Answers the `deploy` tool's question: accept (yes) or decline.
struct Confirm {
    accept: bool,
}

impl ServerHandler for Confirm {
    fn capabilities(&self) -> Value {
        json!({"elicitation": {"form": {}}})
    }
    fn request(&self, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
        assert_eq!(method, "elicitation/create");
        let message = params.as_ref().and_then(|p| p["message"].as_str());
        assert!(
            message.is_some_and(|m| m.starts_with("Deploy to ")),
            "{params:?}"
        );
        Ok(if self.accept {
            json!({"action": "accept", "content": {"ok": true}})
        } else {
            json!({"action": "decline"})
        })
    }
}

/// A client whose handler answers elicitation (declared by the handler
/// itself) with `accept` or `decline`.
fn asking<C: Mcp>(peer: &Peer, protocol: Protocol, accept: bool) -> C {
    ClientBuilder::new(&peer.url())
        .protocol(protocol)
        .read_timeout(Duration::from_secs(20))
        .handler(Confirm { accept })
        .build()
        .unwrap()
}

/// The default against the Python server: the stateless wire, every
/// operation, and the tool that asks (an input-required round).
pub fn python_on_the_stateless_wire<C: Mcp>() {
    let peer = Peer::start(PY_JSON);
    let c: C = asking(&peer, Protocol::Auto, true);
    c.initialize().unwrap();
    assert_eq!(c.protocol_version(), Some(MODERN_VERSION));
    assert_eq!(c.session_id(), None);
    for which in OPS {
        op(&c, which);
    }
    assert_eq!(peer.initializes(), 0, "no handshake on this wire");
    // Listed first: that is where the client learns which parameters go
    // in headers. Non-ASCII: the header carries the base64 form, which
    // the server decodes and checks against the body.
    let tools = c.all_tools().unwrap();
    assert!(tools.iter().any(|t| t.name == "deploy"));
    let r = c.call_tool("deploy", json!({"env": "Zürich"})).unwrap();
    assert_eq!(r.text(), "deployed to Zürich: True (#1)");
    assert_eq!(peer.deploys(), 1);

    // Declined: the server ends the call with its own tool error, and
    // nothing is deployed.
    let no: C = asking(&peer, Protocol::Auto, false);
    let r = no.call_tool("deploy", json!({"env": "prod"})).unwrap();
    assert!(r.is_error, "{r:?}");
    assert_eq!(peer.deploys(), 1);

    // Without a handler the input request is refused: a typed error.
    let bare: C = ClientBuilder::new(&peer.url())
        .configure(|c| c.capabilities = json!({"elicitation": {"form": {}}}))
        .build()
        .unwrap();
    match bare.call_tool("deploy", json!({"env": "prod"})) {
        Err(Error::Call(mcp_recovery::core::CallError::InputRefused { .. })) => {}
        other => panic!("expected InputRefused, got {other:?}"),
    }
    assert_eq!(peer.deploys(), 1);
}

/// The same tool on the handshake wire asks on the call's stream.
pub fn python_asks_on_the_handshake_wire<C: Mcp>() {
    let peer = Peer::start(PY_SSE);
    let c: C = asking(&peer, Protocol::Legacy, true);
    let r = c.call_tool("deploy", json!({"env": "prod"})).unwrap();
    assert_eq!(r.text(), "deployed to prod: True (#1)");
    assert!(c.session_id().is_some());
    assert_eq!(c.protocol_version(), Some("2025-11-25"));
}

/// 8 callers of a side-effecting tool, started while nothing listens;
/// `swap` brings the other server up 2.5 s later.
fn callers_across<C: Mcp>(c: &C, swap: impl FnOnce()) -> Vec<Result<ToolResult, Error>> {
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| c.call_tool("counter_increment", json!({}))))
            .collect();
        std::thread::sleep(Duration::from_millis(2500));
        swap();
        callers.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The TypeScript SDK v2 server: the stateless wire, its multi-round tool
/// (its `requestState` signed by the SDK), its `Mcp-Param-Env` check.
pub fn ts2_on_the_stateless_wire<C: Mcp>() {
    let peer = Peer::start(TS2);
    let c: C = asking(&peer, Protocol::Auto, true);
    c.initialize().unwrap();
    assert_eq!(c.protocol_version(), Some(MODERN_VERSION));
    assert_eq!(
        c.call_tool("echo", json!({"text": "hi"})).unwrap().text(),
        "hi"
    );
    c.ping().unwrap();
    let r = c.call_tool("deploy", json!({"env": "prod"})).unwrap();
    assert_eq!(r.text(), "deployed to prod: true (#1)");
    assert_eq!(peer.deploys(), 1);
    let no: C = asking(&peer, Protocol::Auto, false);
    assert!(
        no.call_tool("deploy", json!({"env": "prod"}))
            .unwrap()
            .is_error
    );
    assert_eq!(peer.deploys(), 1);
}

const TS2: super::Kind = super::Kind::Ts2 { modern_only: false };
/// The TypeScript SDK v2 server refusing the handshake wire (`-32022`).
pub const TS2_MODERN_ONLY: super::Kind = super::Kind::Ts2 { modern_only: true };

/// One URL, a handshake-only release (TypeScript SDK 1.32.2) replaced by
/// `modern`, a server on the 2026-07-28 wire, and back (a deploy, a
/// rollback), while callers call: every call answered, each run once, one
/// re-negotiation per move.
pub fn moves_between_wires<C: Mcp>(modern: super::Kind) {
    let mut peer = Peer::start(TS_JSON);
    let c: C = ClientBuilder::new(&peer.url())
        .read_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    c.initialize().unwrap();
    assert_eq!(
        c.protocol_version(),
        Some("2025-11-25"),
        "TypeScript 1.32.2: the handshake"
    );
    assert!(c.session_id().is_some());
    let before = peer.counter();

    peer.kill();
    let results = callers_across(&c, || peer.start_as(modern));
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(peer.counter() - before, 8, "each call ran exactly once");
    assert_eq!(c.protocol_version(), Some(MODERN_VERSION));
    assert_eq!(c.session_id(), None);
    assert_eq!(c.generation(), 2, "one re-negotiation for all callers");

    let before = peer.counter();
    let inits = peer.initializes();
    peer.kill();
    let results = callers_across(&c, || peer.start_as(TS_JSON));
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(peer.counter() - before, 8, "each call ran exactly once");
    assert_eq!(c.protocol_version(), Some("2025-11-25"));
    assert!(c.session_id().is_some());
    assert_eq!(
        peer.initializes() - inits,
        1,
        "one handshake for all callers"
    );
    assert_eq!(c.generation(), 3);
}

/// Listings and reads the server marks fresh are asked once while fresh;
/// tool calls always go.
pub fn fresh_results_cost_no_round_trip<C: Mcp>() {
    let peer = Peer::start(super::Kind::PythonCaching { ttl_ms: 60_000 });
    let c: C = ClientBuilder::new(&peer.url()).build().unwrap();
    c.initialize().unwrap();
    let after_discover = peer.posts();
    for _ in 0..5 {
        assert!(c
            .list_tools(None)
            .unwrap()
            .tools
            .iter()
            .any(|t| t.name == "echo"));
        assert_eq!(
            c.read_resource("counter://total").unwrap().contents.len(),
            1
        );
        assert_eq!(
            c.call_tool("echo", json!({"text": "x"})).unwrap().text(),
            "x"
        );
    }
    // One listing, one read, five calls.
    assert_eq!(peer.posts() - after_discover, 7);
}

/// Emits one `#[test]` per wire scenario for client type `$c`.
#[macro_export]
macro_rules! wire_tests {
    ($c:ty) => {
        #[test]
        fn python_on_the_stateless_wire_by_default() {
            common::wires::python_on_the_stateless_wire::<$c>();
        }
        #[test]
        fn python_asks_on_the_call_stream_on_the_handshake_wire() {
            common::wires::python_asks_on_the_handshake_wire::<$c>();
        }
        #[test]
        fn fresh_results_cost_no_round_trip() {
            common::wires::fresh_results_cost_no_round_trip::<$c>();
        }
        #[test]
        fn ts2_on_the_stateless_wire() {
            common::wires::ts2_on_the_stateless_wire::<$c>();
        }
        #[test]
        fn one_url_moves_between_a_handshake_server_and_a_dual_python_server() {
            common::wires::moves_between_wires::<$c>(common::scenarios::PY_JSON);
        }
        #[test]
        fn one_url_moves_between_a_handshake_server_and_a_2026_only_server() {
            common::wires::moves_between_wires::<$c>(common::wires::TS2_MODERN_ONLY);
        }
    };
}
