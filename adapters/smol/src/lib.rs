//! Async MCP client on `smol` that survives expired sessions, refused
//! tokens and cut connections, driven by [`mcp_recovery_core`]. No tokio
//! runtime anywhere in its tree.
//!
//! The same client as the blocking one (`mcp-recovery-ureq`), as `async fn`s:
//! one [`Client`] holds one session and is shared by any number of tasks
//! (`Clone` is cheap). When the session is lost, the task that saw it first
//! re-initializes it, the others wait on an event (no polling) until it is
//! ready or their deadline passes, and every call is sent at most
//! [`core::MAX_ATTEMPTS`] times. Dropping a call's future cancels the call:
//! the core is told, and a request the server may be running gets
//! `notifications/cancelled`.
//!
//! ```no_run
//! use mcp_recovery_smol::Client;
//! use serde_json::json;
//!
//! smol::block_on(async {
//!     let client = Client::builder("http://127.0.0.1:8000/mcp").build()?;
//!     for tool in client.list_tools(None).await?.tools {
//!         println!("{}", tool.name);
//!     }
//!     let sum = client.call_tool("add", json!({"a": 2, "b": 3})).await?;
//!     println!("{}", sum.text());
//!     client.close().await
//! })?;
//! # Ok::<(), mcp_recovery_smol::Error>(())
//! ```
//!
//! The client is the shared call driver ([`drive`]) awaited on the
//! caller's task, over this crate's `Io`; its methods are the blocking
//! client's, as `async fn`s (see `mcp_recovery_client` for the map).
//!
//! HTTP is hyper 1's connection API over smol's sockets (via `smol-hyper`)
//! and `futures-rustls` with the ring provider set explicitly; see the
//! `http` module for why. Timers are `async-io`'s, set to the core's
//! `poll_timeout()`. A server run as a child process over stdio
//! ([`Client::stdio`]) has blocking threads for its pipes and is awaited
//! through `event-listener` events like everything else.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod http;
mod io;

pub use mcp_recovery_client::*;

use crate::http::Http;
use std::convert::identity;

mcp_recovery_client::client! {
    /// An async MCP client with one session, shared by all tasks.
    Http; async; identity; .await
}

impl Client {
    /// Runs the OAuth authorization flow (set up with
    /// [`ClientBuilder::oauth`]) on this client's own I/O, no thread parked
    /// for it: discovery, registration,
    /// PKCE; `open` gets the URL a person's browser must visit, and the
    /// code comes back to a loopback listener. The tokens are stored, and
    /// calls waiting for a token go on with the new one.
    pub async fn authorize(&self, open: impl Fn(&str) + Send + Sync) -> Result<(), Error> {
        self.driver.authorize(open).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_send<T: Send>(_: &T) {}

    /// Users spawn calls on multi-threaded executors: every call's future
    /// must be `Send`.
    #[test]
    fn call_futures_are_send() {
        let client = Client::builder("http://127.0.0.1:9/mcp").build().unwrap();
        is_send(&client.call_tool("echo", serde_json::json!({})));
        is_send(&client.call_tool_with("echo", serde_json::json!({}), CallOptions::new()));
        is_send(&client.all_tools());
        is_send(&client.initialize());
        is_send(&client.close());
        is_send(&client.authorize(|_| {}));
    }
}
