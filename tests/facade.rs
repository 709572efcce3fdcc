//! The facade re-exports one core: the adapters and a direct user of the
//! core share the same types, so an engine built through one path works
//! with the others.

use mcp_recovery::core::{Action, Config, Engine, Operation};
use std::time::Instant;

fn drain_transmits(engine: &mut Engine) -> usize {
    let mut n = 0;
    while let Some(a) = engine.poll_action() {
        n += usize::from(matches!(a, Action::Transmit { .. }));
    }
    n
}

#[test]
fn facade_core_is_the_core() {
    let now = Instant::now();
    let mut engine: mcp_recovery_core::Engine = Engine::new(Config::new("http://127.0.0.1:9/mcp"));
    engine.call(Operation::ping(), now);
    // First call: the engine initializes before anything else.
    assert_eq!(drain_transmits(&mut engine), 1);
    assert!(!engine.is_ready());
}

#[cfg(all(feature = "ureq", feature = "smol"))]
#[test]
fn adapters_share_the_core() {
    fn takes_core(e: &mut mcp_recovery::core::Engine) -> u64 {
        e.generation().get()
    }
    let mut a = mcp_recovery::blocking::core::Engine::new(mcp_recovery::smol::core::Config::new(
        "http://127.0.0.1:9/mcp",
    ));
    assert_eq!(takes_core(&mut a), 0);
}

/// What a user matches on is where the client is: no `core::` path needed
/// to handle a failure or watch recovery.
#[cfg(all(feature = "ureq", feature = "smol"))]
#[test]
fn what_users_match_on_is_beside_each_client() {
    use mcp_recovery::blocking::{Action, CallError, Error, Recovery, RpcError};
    fn describe(e: &Error) -> &'static str {
        match e {
            Error::Call(CallError::SessionLost { .. }) => "session lost",
            Error::Call(CallError::OutcomeUncertain { .. }) => "may have run",
            Error::Rpc(RpcError { code: -32601, .. }) => "no such method",
            _ => "other",
        }
    }
    assert_eq!(
        describe(&Error::Call(CallError::SessionLost {
            status: 404,
            code: None,
            message: String::new()
        })),
        "session lost"
    );
    let retry = Action::RetryOnce {
        call: mcp_recovery::core::Engine::new(mcp_recovery::core::Config::new("http://h/mcp"))
            .call(mcp_recovery::core::Operation::ping(), Instant::now()),
        recovery: Recovery::Session,
    };
    assert!(!retry.is_required(), "RetryOnce only informs");
    let _: mcp_recovery::smol::BreakerConfig = mcp_recovery::blocking::BreakerConfig::default();
    let _: mcp_recovery::smol::Protocol = mcp_recovery::blocking::Protocol::Legacy;
}
