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
