//! Sans-IO recovery core for MCP Streamable-HTTP clients.
//!
//! An [`Engine`] owns one session with one MCP endpoint and any number of
//! calls in flight. It never touches a socket, a clock or a thread: you feed
//! it what happened and it tells you what to do.
//!
//! * [`Engine::call`] starts a call; [`Engine::handle_input`] takes a
//!   response (head, body chunks, end), a transport failure, a refreshed
//!   token or a cancel; [`Engine::handle_timeout`] takes the passing of time.
//! * After each, drain [`Engine::poll_action`] until `None`: send each
//!   [`Action::Transmit`], refresh the token on [`Action::Refresh401`], and
//!   hand [`Action::Complete`] / [`Action::Surface`] to the caller. Every
//!   call ends with exactly one of those two.
//! * Then ask [`Engine::poll_timeout`] for the next deadline (and why), and
//!   call `handle_timeout` when it passes. Spurious calls are harmless.
//!
//! The engine recovers what can be recovered without running anything twice:
//! a 401 gets one shared token refresh, an expired session one shared
//! re-initialize, an ambiguous transport failure a replay only for read-only
//! or declared-idempotent operations; every call sends at most
//! [`MAX_ATTEMPTS`] times, and a circuit breaker fails fast while the server
//! is unreachable. `Instant`s come in as arguments, so tests run in virtual
//! time.
//!
//! ```
//! use mcp_recovery_core::{Action, Config, Engine, Operation};
//! use serde_json::json;
//! use std::time::Instant;
//!
//! /// One call against a toy server that answers every request at once.
//! /// `now` comes from the caller: the core has no clock.
//! fn one_call(now: Instant) -> serde_json::Value {
//!     let mut engine = Engine::new(Config::new("http://127.0.0.1:8000/mcp"));
//!     let call = engine.call(Operation::call_tool("echo", json!({"text": "hi"})), now);
//!     while let Some(action) = engine.poll_action() {
//!         match action {
//!             Action::Transmit { exchange, request, .. } => {
//!                 let req: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
//!                 let answer = match req["method"].as_str() {
//!                     Some("initialize") => json!({"jsonrpc": "2.0", "id": req["id"],
//!                         "result": {"protocolVersion": "2025-11-25", "capabilities": {}}}),
//!                     Some("notifications/initialized") => {
//!                         engine.handle_response(exchange, 202, &[], b"", now);
//!                         continue;
//!                     }
//!                     _ => json!({"jsonrpc": "2.0", "id": req["id"], "result": {"ok": true}}),
//!                 };
//!                 let headers = [("content-type", "application/json"), ("mcp-session-id", "s1")];
//!                 let body = answer.to_string();
//!                 engine.handle_response(exchange, 200, &headers, body.as_bytes(), now);
//!             }
//!             Action::Complete { call: c, result } if c == call => return result.unwrap(),
//!             _ => {}
//!         }
//!     }
//!     unreachable!("every call ends with Complete or Surface")
//! }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod breaker;
pub mod classify;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod jsonrpc;
pub mod oauth;
pub mod operation;
pub mod policy;
pub mod session;
pub mod sse;
pub mod token;

pub use breaker::{BreakerConfig, BreakerState};
pub use classify::SessionPatterns;
pub use dispatch::{CallEnd, Dispatcher, Job, Mail, ReadyStep, Step};
pub use error::{CallError, ProtocolError};
pub use http::{FailureKind, HttpRequest, Method, TransportFailure};
pub use jsonrpc::{Message, RequestId, RpcError};
pub use operation::Operation;
pub use policy::{
    Action, CallId, Config, Engine, ExchangeId, Input, Recovery, SessionGeneration, Timer,
    TokenGeneration, MAX_ATTEMPTS,
};
pub use session::Protocol;
pub use token::Token;
