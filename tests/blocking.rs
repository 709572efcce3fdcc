//! The blocking client against the official Python and TypeScript servers:
//! every operation, session expiry by idle timeout and by restart, a herd
//! of threads across one expiry, a connection cut mid-call, a server that
//! stays down, and a stateless server. No mocks: real servers, real HTTP.
//! The scenarios are shared with the async client (`common/scenarios.rs`).

mod common;

use common::scenarios::*;
use common::Peer;
use mcp_recovery::blocking::Client;

scenario_tests!(Client);
wire_tests!(Client);
stdio_tests!(Client);

#[test]
fn python_herd_of_16_across_idle_expiry() {
    herd::<Client>(PY_SSE_IDLE, idle_expiry, 16, threads::<Client>);
}

#[test]
fn ts_herd_of_16_across_restart() {
    herd::<Client>(TS_SSE, Peer::restart, 16, threads::<Client>);
}

/// The blocking client's clients share an agent (its pool and, when a
/// build turns on ureq's `cookies` feature, its cookie jar) only when
/// they speak for the same principal: two bearer tokens, two agents;
/// two clients adding the same headers and no token, one.
#[test]
fn clients_of_different_principals_never_share_an_agent() {
    use common::scenarios::PY_JSON;
    use mcp_recovery::core::Protocol;
    let peer = Peer::start(PY_JSON);
    let proxy = common::counting_proxy::CountingProxy::to(peer.port);
    let build = |f: &dyn Fn(
        mcp_recovery::blocking::ClientBuilder<Client>,
    ) -> mcp_recovery::blocking::ClientBuilder<Client>| {
        f(Client::builder(&proxy.url()).protocol(Protocol::Legacy))
            .build()
            .unwrap()
    };
    let alice = build(&|b| b.bearer("alice"));
    let bob = build(&|b| b.bearer("bob"));
    alice.ping().unwrap();
    bob.ping().unwrap();
    assert_eq!(proxy.connections(), 2, "a connection per token");
    let tenant = |b: mcp_recovery::blocking::ClientBuilder<Client>| b.header("x-tenant", "t1");
    let (one, two) = (build(&tenant), build(&tenant));
    one.ping().unwrap();
    two.ping().unwrap();
    assert_eq!(
        proxy.connections(),
        3,
        "one connection for the same principal"
    );
}
