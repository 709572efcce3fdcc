//! Blocking MCP client over `ureq` 3 that survives expired sessions, refused
//! tokens and cut connections, driven by [`mcp_recovery_core`].
//!
//! The adapter moves bytes and waits; every decision (when to re-initialize,
//! what may be replayed, when to give up) is the core's. One [`Client`] holds
//! one session and is shared by any number of threads (`Clone` is cheap):
//! when the session is lost, the thread that saw it first re-initializes it,
//! the others wait on a condvar until it is ready or their deadline passes,
//! and every call is sent at most [`core::MAX_ATTEMPTS`] times.
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
//! stream (never a global timeout on a stream), responses as JSON or SSE.
//! Settings, typed results and errors are shared with the async client
//! (`mcp-recovery-client`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod drive;

pub use mcp_recovery_client::*;

use crate::drive::Shared;
use mcp_recovery_core::{BreakerState, Dispatcher, Operation};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Sets up a blocking [`Client`].
pub type Builder = ClientBuilder<Client>;

/// A blocking MCP client with one session, shared by all threads.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Build for Client {
    fn build(mut s: Settings) -> Result<Client, Error> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(s.connect_timeout))
            .timeout_per_read(Some(s.read_timeout))
            .user_agent(concat!("mcp-recovery/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let oauth = s.install_oauth(Arc::new(drive::UreqFetch(agent.clone())));
        s.validate()?;
        let engine = s.engine(Instant::now());
        Ok(Client {
            shared: Shared::new(
                Dispatcher::new(engine, s.observer.is_some()),
                agent,
                s,
                oauth,
            ),
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
    /// another thread started.
    pub fn initialize(&self) -> Result<(), Error> {
        self.shared.initialize()
    }

    /// Any request, answered as raw JSON. Replay-safe when the method is
    /// read-only by the specification.
    pub fn request(&self, method: &str, params: Option<Value>) -> Result<Value, Error> {
        self.run(
            Operation::new(method.to_owned(), params),
            CallOptions::new(),
        )
    }

    /// `tools/list`, one page. Remembers which tools say they are
    /// read-only or idempotent, so later calls to them may be replayed.
    pub fn list_tools(&self, cursor: Option<&str>) -> Result<ToolList, Error> {
        let list: ToolList = decode(self.run(Operation::list_tools(cursor), CallOptions::new())?)?;
        self.shared.memory.remember(&list);
        Ok(list)
    }

    /// `tools/list`, every page.
    pub fn all_tools(&self) -> Result<Vec<Tool>, Error> {
        let (mut all, mut seen) = (Vec::new(), Cursors::default());
        let mut cursor = None;
        loop {
            let page = self.list_tools(cursor.as_deref())?;
            all.extend(page.tools);
            cursor = seen.next(page.next_cursor);
            if cursor.is_none() {
                return Ok(all);
            }
        }
    }

    /// `tools/call`. Not replayed after an ambiguous failure unless the
    /// tool was listed as read-only or idempotent.
    pub fn call_tool(&self, name: &str, arguments: Value) -> Result<ToolResult, Error> {
        self.call_tool_with(name, arguments, CallOptions::new())
    }

    /// `tools/call` with per-call options.
    pub fn call_tool_with(
        &self,
        name: &str,
        arguments: Value,
        opts: CallOptions<'_>,
    ) -> Result<ToolResult, Error> {
        let op = self.shared.memory.tools_call(name, arguments, &opts);
        decode(self.run(op, opts)?)
    }

    /// `resources/list`, one page.
    pub fn list_resources(&self, cursor: Option<&str>) -> Result<ResourceList, Error> {
        decode(self.run(Operation::list_resources(cursor), CallOptions::new())?)
    }

    /// `resources/read`.
    pub fn read_resource(&self, uri: &str) -> Result<ResourceRead, Error> {
        decode(self.run(Operation::read_resource(uri), CallOptions::new())?)
    }

    /// `prompts/list`, one page.
    pub fn list_prompts(&self, cursor: Option<&str>) -> Result<PromptList, Error> {
        decode(self.run(Operation::list_prompts(cursor), CallOptions::new())?)
    }

    /// `prompts/get`; `arguments` is a JSON object of strings, if any.
    pub fn get_prompt(&self, name: &str, arguments: Option<Value>) -> Result<PromptResult, Error> {
        decode(self.run(Operation::get_prompt(name, arguments), CallOptions::new())?)
    }

    /// `ping`.
    pub fn ping(&self) -> Result<(), Error> {
        self.run(Operation::ping(), CallOptions::new()).map(drop)
    }

    /// Ends the session: pending calls fail with
    /// [`CallError`](core::CallError)`::Closed`, the server gets a DELETE (a
    /// 405 is fine), later calls fail at once.
    pub fn close(&self) -> Result<(), Error> {
        self.shared.close();
        Ok(())
    }

    /// Runs the OAuth authorization flow (set up with
    /// [`ClientBuilder::oauth`]): discovery, registration, PKCE; `open` gets
    /// the URL a person's browser must visit, and the code comes back to a
    /// loopback listener. The tokens are stored, and calls waiting for a
    /// token go on with the new one.
    pub fn authorize(&self, open: impl Fn(&str)) -> Result<(), Error> {
        let oauth = self.shared.oauth.as_ref().ok_or_else(|| {
            Error::Config("authorize needs OAuth: set it with ClientBuilder::oauth".into())
        })?;
        // The last 401/403 says where to look and what scope to ask for.
        let challenge = self
            .shared
            .lock()
            .engine()
            .last_challenge()
            .map(str::to_owned);
        let token = oauth.authorize(challenge.as_deref(), &open)?;
        self.shared.set_token(token);
        Ok(())
    }

    /// A handle to cancel a call made with [`CallOptions::cancel`].
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

    /// The server's whole `InitializeResult` (capabilities, serverInfo,
    /// instructions), once initialized.
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

    fn run(&self, op: Operation, mut opts: CallOptions<'_>) -> Result<Value, Error> {
        let watch = Memory::watch(&opts, self.shared.settings.call_timeout, Instant::now());
        let progress = opts.progress.as_deref_mut();
        self.shared.call(op, &watch, progress)
    }
}
