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
//! HTTP is hyper 1's connection API over smol's sockets (via `smol-hyper`)
//! and `futures-rustls` with the ring provider set explicitly; see the
//! `http` module for why. Timers are `async-io`'s, set to the core's
//! `poll_timeout()`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod drive;
mod http;

pub use mcp_recovery_client::*;

use crate::drive::Shared;
use mcp_recovery_core::{BreakerState, Operation};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Sets up an async [`Client`].
pub type Builder = ClientBuilder<Client>;

/// An async MCP client with one session, shared by all tasks.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Build for Client {
    fn build(s: Settings) -> Result<Client, Error> {
        Ok(Client {
            shared: Arc::new(Shared::new(s)?),
        })
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.shared.lock();
        let engine = st.engine();
        f.debug_struct("Client")
            .field("url", &engine.session().url())
            .field("generation", &engine.generation())
            .field("ready", &engine.is_ready())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts setting up a client for the MCP endpoint at `url`.
    pub fn builder(url: &str) -> Builder {
        ClientBuilder::new(url)
    }

    /// Runs the initialize handshake now (it also runs implicitly on the
    /// first call). Waits at most the await-ready deadline for a handshake
    /// another task started.
    pub async fn initialize(&self) -> Result<(), Error> {
        self.shared.initialize().await
    }

    /// Any request, answered as raw JSON. Replay-safe when the method is
    /// read-only by the specification.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, Error> {
        let op = Operation::new(method.to_owned(), params);
        self.run(op, CallOptions::new()).await
    }

    /// `tools/list`, one page. Remembers which tools say they are
    /// read-only or idempotent, so later calls to them may be replayed.
    pub async fn list_tools(&self, cursor: Option<&str>) -> Result<ToolList, Error> {
        let op = Operation::list_tools(cursor);
        let list: ToolList = decode(self.run(op, CallOptions::new()).await?)?;
        self.shared.memory.remember(&list);
        Ok(list)
    }

    /// `tools/list`, every page.
    pub async fn all_tools(&self) -> Result<Vec<Tool>, Error> {
        let (mut all, mut seen) = (Vec::new(), Cursors::default());
        let mut cursor = None;
        loop {
            let page = self.list_tools(cursor.as_deref()).await?;
            all.extend(page.tools);
            cursor = seen.next(page.next_cursor);
            if cursor.is_none() {
                return Ok(all);
            }
        }
    }

    /// `tools/call`. Not replayed after an ambiguous failure unless the
    /// tool was listed as read-only or idempotent.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolResult, Error> {
        self.call_tool_with(name, arguments, CallOptions::new())
            .await
    }

    /// `tools/call` with per-call options.
    pub async fn call_tool_with(
        &self,
        name: &str,
        arguments: Value,
        opts: CallOptions<'_>,
    ) -> Result<ToolResult, Error> {
        let op = self.shared.memory.tools_call(name, arguments, &opts);
        decode(self.run(op, opts).await?)
    }

    /// `resources/list`, one page.
    pub async fn list_resources(&self, cursor: Option<&str>) -> Result<ResourceList, Error> {
        let op = Operation::list_resources(cursor);
        decode(self.run(op, CallOptions::new()).await?)
    }

    /// `resources/read`.
    pub async fn read_resource(&self, uri: &str) -> Result<ResourceRead, Error> {
        decode(
            self.run(Operation::read_resource(uri), CallOptions::new())
                .await?,
        )
    }

    /// `prompts/list`, one page.
    pub async fn list_prompts(&self, cursor: Option<&str>) -> Result<PromptList, Error> {
        let op = Operation::list_prompts(cursor);
        decode(self.run(op, CallOptions::new()).await?)
    }

    /// `prompts/get`; `arguments` is a JSON object of strings, if any.
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: Option<Value>,
    ) -> Result<PromptResult, Error> {
        let op = Operation::get_prompt(name, arguments);
        decode(self.run(op, CallOptions::new()).await?)
    }

    /// `ping`.
    pub async fn ping(&self) -> Result<(), Error> {
        self.run(Operation::ping(), CallOptions::new())
            .await
            .map(drop)
    }

    /// Ends the session: pending calls fail with
    /// [`CallError`](core::CallError)`::Closed`, the server gets a DELETE (a
    /// 405 is fine), later calls fail at once.
    pub async fn close(&self) -> Result<(), Error> {
        self.shared.close().await;
        Ok(())
    }

    /// Runs the OAuth authorization flow (set up with
    /// [`ClientBuilder::oauth`]) off the executor: discovery, registration,
    /// PKCE; `open` gets the URL a person's browser must visit, and the
    /// code comes back to a loopback listener. The tokens are stored, and
    /// calls waiting for a token go on with the new one.
    pub async fn authorize(&self, open: impl Fn(&str) + Send + 'static) -> Result<(), Error> {
        let oauth = self.shared.oauth.clone().ok_or_else(|| {
            Error::Config("authorize needs OAuth: set it with ClientBuilder::oauth".into())
        })?;
        // The last 401/403 says where to look and what scope to ask for.
        let challenge = self
            .shared
            .lock()
            .engine()
            .last_challenge()
            .map(str::to_owned);
        let token = smol::unblock(move || oauth.authorize(challenge.as_deref(), &open)).await?;
        self.shared.set_token(token).await;
        Ok(())
    }

    /// A handle to cancel a call made with [`CallOptions::cancel`] (dropping
    /// the call's future cancels it too).
    pub fn cancel_handle(&self) -> CancelHandle {
        let shared = self.shared.clone();
        CancelHandle::new(Arc::new(move || shared.wake_all()))
    }

    /// The session id the server gave, if any.
    pub fn session_id(&self) -> Option<String> {
        self.shared
            .lock()
            .engine()
            .session()
            .id()
            .map(str::to_owned)
    }

    /// The server's `serverInfo` (name, version...), once initialized.
    pub fn server_info(&self) -> Option<Value> {
        self.initialize_result().map(|r| r["serverInfo"].clone())
    }

    /// The server's whole `InitializeResult`, once initialized.
    pub fn initialize_result(&self) -> Option<Value> {
        self.shared.lock().engine().session().server().cloned()
    }

    /// The negotiated protocol version, once initialized.
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.shared.lock().engine().session().protocol_version()
    }

    /// How many sessions this client has initialized (1 after the first).
    pub fn generation(&self) -> u64 {
        self.shared.lock().engine().generation()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.lock().engine().breaker()
    }

    async fn run(&self, op: Operation, mut opts: CallOptions<'_>) -> Result<Value, Error> {
        let watch = Memory::watch(&opts, self.shared.settings.call_timeout, Instant::now());
        let progress = opts.progress.as_deref_mut();
        self.shared.call(op, &watch, progress).await
    }
}
