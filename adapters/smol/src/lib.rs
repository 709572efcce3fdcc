//! Async MCP client on `smol`, driven by [`mcp_recovery_core`].
//!
//! Not built yet: this crate is an empty workspace member until the smol
//! adapter lands. Everything it will do is decided by the core; until then,
//! drive [`mcp_recovery_core::Engine`] with a transport of your own (see the
//! core's `tcp_transport` example).
#![deny(missing_docs)]

pub use mcp_recovery_core as core;
