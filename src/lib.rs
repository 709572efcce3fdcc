//! MCP Streamable-HTTP clients that survive expired tokens, forgotten
//! sessions and dropped streams, without running a tool call twice.
//!
//! This facade re-exports the sans-IO core as [`core`] and, behind the
//! features `ureq` and `smol`, the blocking and async adapters. See the
//! README for the recovery contract.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use mcp_recovery_core as core;

/// What both clients share: settings, typed results, errors, options.
pub use mcp_recovery_client as client;

/// The blocking client over `ureq` (feature `ureq`).
#[cfg(feature = "ureq")]
pub use mcp_recovery_ureq as blocking;

/// The async client on `smol` (feature `smol`).
#[cfg(feature = "smol")]
pub use mcp_recovery_smol as smol;

/// The README's code, compiled as a doctest so it cannot rot (it uses the
/// clients, hence the features).
#[cfg(all(doctest, feature = "ureq", feature = "smol"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
