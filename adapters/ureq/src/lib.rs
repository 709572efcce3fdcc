//! Blocking MCP client over `ureq` 3 that survives expired sessions, refused
//! tokens and cut connections, driven by [`mcp_recovery_core`].
//!
//! The adapter moves bytes and waits; every decision (when to re-initialize,
//! what may be replayed, when to give up) is the core's. One [`Client`] holds
//! one session and is shared by any number of threads (`Clone` is cheap):
//! when the session is lost, the thread that saw it first re-initializes it,
//! the others wait (parked on an event) until it is ready or their deadline
//! passes, and every call is sent at most [`core::MAX_ATTEMPTS`] times.
//!
//! The client is the shared call driver ([`drive`]) run to its end on the
//! calling thread, over this crate's blocking `Io`: ureq for HTTP, a parked
//! thread for waiting, a thread for the listening stream. Its methods, in
//! groups (the async client has the same ones): setting up with
//! [`Client::builder`]; calling with [`Client::call_tool`] and friends
//! (`request`, `list_tools`, `all_tools`, `call_tool_with`,
//! `list_resources`, `read_resource`, `list_prompts`, `get_prompt`,
//! `ping`, `send`), [`Client::initialize`], [`Client::close`],
//! [`Client::authorize`]; looking with `session_id`, `server_info`,
//! `initialize_result`, `protocol_version`, `generation`,
//! `breaker_state`; cancelling with [`Client::cancel_handle`].
//!
//! ```no_run
//! use mcp_recovery_ureq::Client;
//! use serde_json::json;
//!
//! let client = Client::builder("http://127.0.0.1:8000/mcp").build()?;
//! for tool in client.list_tools(None)?.tools {
//!     println!("{}", tool.name);
//! }
//! let sum = client.call_tool("add", json!({"a": 2, "b": 3}))?;
//! println!("{}", sum.text());
//! client.close()?;
//! # Ok::<(), mcp_recovery_ureq::Error>(())
//! ```
//!
//! Transport: HTTP/1.1 with keep-alive, redirects off (a bearer token never
//! follows one), `timeout_per_read` as the idle limit of a response or SSE
//! stream, and a global timeout only at a call's own deadline; responses as
//! JSON or SSE. Or a server as a child process over stdio
//! ([`Client::stdio`]), restarted and re-initialized when it exits.
//! Settings, typed results and errors are shared with the async client
//! (`mcp-recovery-client`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod io;
mod reaper;

pub use mcp_recovery_client::*;

use crate::io::Ureq;
use mcp_recovery_client::__private::block_on;

mcp_recovery_client::client! {
    /// A blocking MCP client with one session, shared by all threads.
    Ureq; ; block_on;
}

impl Client {
    /// Runs the OAuth authorization flow (set up with
    /// [`ClientBuilder::oauth`]): discovery, registration, PKCE; `open` gets
    /// the URL a person's browser must visit, and the code comes back to a
    /// loopback listener. The tokens are stored, and calls waiting for a
    /// token go on with the new one.
    pub fn authorize(&self, open: impl Fn(&str) + Sync) -> Result<(), Error> {
        block_on(self.driver.authorize(open))
    }
}
