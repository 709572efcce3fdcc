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
//! # Map
//!
//! - **[`Engine`]**, one session with one endpoint. Inputs:
//!   [`call`](Engine::call), [`handle_input`](Engine::handle_input) (or
//!   [`handle_response`](Engine::handle_response) for a whole response),
//!   [`handle_timeout`](Engine::handle_timeout), [`set_token`](Engine::set_token),
//!   [`set_token_expiry`](Engine::set_token_expiry), [`reply`](Engine::reply),
//!   [`connect`](Engine::connect), [`close`](Engine::close). Outputs:
//!   [`poll_action`](Engine::poll_action), [`poll_timeout`](Engine::poll_timeout)
//!   (the deadline and its [`Timer`] reason), [`exchange_open`](Engine::exchange_open).
//!   Queries: [`session`](Engine::session), [`generation`](Engine::generation),
//!   [`is_ready`](Engine::is_ready), [`breaker`](Engine::breaker),
//!   [`pending_calls`](Engine::pending_calls), [`last_challenge`](Engine::last_challenge).
//! - **[`Action`]s a transport must carry out**: [`Action::Transmit`],
//!   [`Action::Listen`], [`Action::Refresh401`], the call's one end
//!   ([`Action::Complete`] or [`Action::Surface`]), and the requests among
//!   [`Action::ServerMessage`]s (answer with [`Engine::reply`]). **Actions
//!   that only inform** ([`Action::is_required`] is false): [`Action::Abort`]
//!   (also visible as [`Engine::exchange_open`] turning false),
//!   [`Action::SignalReconnect`], [`Action::AwaitReady`],
//!   [`Action::RetryOnce`], [`Action::SessionReady`], [`Action::SessionFailed`].
//! - **[`Dispatcher`]**: many callers on one engine. Each caller steps its
//!   own call ([`Dispatcher::step`], [`Dispatcher::ready_step`]) and reads
//!   its mailbox ([`Mail`]); what belongs to no call comes out as [`Job`]s
//!   for whoever drained them. The clients' driver is this plus I/O.
//! - **Values**: [`Operation`] (what a call sends, and whether it may be
//!   replayed), [`Config`], [`BreakerConfig`], [`SessionPatterns`],
//!   [`Protocol`], [`Token`], [`HttpRequest`], [`TransportFailure`], the ids
//!   ([`CallId`], [`ExchangeId`], [`SessionGeneration`], [`TokenGeneration`]).
//! - **Errors**: [`CallError`] (why a call ended without the server's
//!   answer), [`ProtocolError`], [`RpcError`] (the server's own answer).
//! - **Stand-alone sans-IO pieces**: [`sse`] (the event-stream parser),
//!   [`classify`] (a failed exchange → its class), [`oauth`] (challenges,
//!   discovery, token requests, and the whole authorization
//!   [`Flow`](oauth::Flow)).
//!
//! The engine recovers what can be recovered without running anything twice:
//! a 401 gets one shared token refresh, an expired session one shared
//! re-initialize, an ambiguous transport failure a replay only for read-only
//! or declared-idempotent operations, a refused connection a wait for the
//! server within a restart budget (nothing was sent); every call sends at
//! most [`MAX_ATTEMPTS`] times, and a circuit breaker fails fast while the
//! server is unreachable. `Instant`s come in as arguments, so tests run in virtual
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

pub mod classify;
pub mod oauth;
pub mod sse;

mod breaker;
mod cache;
mod dispatch;
mod error;
mod http;
mod jsonrpc;
mod operation;
mod param_headers;
mod policy;
mod session;
mod token;

pub use breaker::{BreakerConfig, BreakerState};
pub use classify::SessionPatterns;
pub use dispatch::{CallEnd, Dispatcher, Job, Mail, ReadyStep, Step};
pub use error::{redact_url, sanitize, CallError, ProtocolError};
pub use http::{FailureKind, HttpRequest, Method, Text, TransportFailure};
pub use jsonrpc::{code as error_code, Message, MessageError, RequestId, RpcError};
pub use operation::Operation;
pub use policy::{
    Action, CallId, Config, Engine, ExchangeId, Input, Recovery, SessionGeneration, Timer,
    TokenGeneration, MAX_ATTEMPTS,
};
pub use session::{Protocol, Session, Version, LATEST_LEGACY_VERSION, MODERN_VERSION};
pub use token::Token;
