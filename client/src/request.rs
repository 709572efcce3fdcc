//! Typed requests as values: each client method is one [`Request`] built
//! here and run by the driver, so the blocking and the async client declare
//! their methods once (`client_methods!`) and differ only in how they wait.

use crate::types::CompleteResult;
use crate::{decode, CallOptions, Cursors, Error, Memory};
use crate::{Completion, CompletionRef, Prompt, PromptList, PromptResult, Resource, ResourceList};
use crate::{ResourceRead, ResourceTemplate, ResourceTemplateList, Tool, ToolList, ToolResult};
use mcp_recovery_core::Operation;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One operation with its decoder: what a client method sends and what it
/// turns the answer into. A listing of every page is one request whose
/// decoder asks for the next page.
#[must_use]
pub struct Request<'a, T> {
    pub(crate) first: First,
    pub(crate) opts: CallOptions<'a>,
    pub(crate) then: Then<'a, T>,
}

/// The first operation; a tool call's is built with what the client
/// remembers (replay safety, the next progress token).
pub(crate) enum First {
    Op(Operation),
    Tool { name: String, arguments: Value },
}

/// After an answer: the result, or the next page to ask for.
pub(crate) enum Next<T> {
    Done(T),
    Page(Operation),
}

pub(crate) type Then<'a, T> = Box<dyn FnMut(Value, &Memory) -> Result<Next<T>, Error> + Send + 'a>;

impl<T> std::fmt::Debug for Request<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = match &self.first {
            First::Op(op) => op.method(),
            First::Tool { .. } => "tools/call",
        };
        f.debug_struct("Request")
            .field("method", &method)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Request<'static, T> {
    /// `op`, its result decoded as `T`.
    fn decoded(op: Operation) -> Self {
        Request {
            first: First::Op(op),
            opts: CallOptions::new(),
            then: Box::new(|v, _| decode(v).map(Next::Done)),
        }
    }
}

impl Request<'static, Value> {
    /// Any method, answered as raw JSON. Replay-safe when the method is
    /// read-only by the specification.
    pub fn raw(method: &str, params: Option<Value>) -> Self {
        Request {
            first: First::Op(Operation::new(method.to_owned(), params)),
            opts: CallOptions::new(),
            then: Box::new(|v, _| Ok(Next::Done(v))),
        }
    }
}

impl Request<'static, ()> {
    /// `ping`.
    pub fn ping() -> Self {
        Request {
            first: First::Op(Operation::ping()),
            opts: CallOptions::new(),
            then: Box::new(|_, _| Ok(Next::Done(()))),
        }
    }
}

impl Request<'static, ToolList> {
    /// `tools/list`, one page; the client remembers which tools say they
    /// are read-only or idempotent.
    pub fn list_tools(cursor: Option<&str>) -> Self {
        Request {
            first: First::Op(Operation::list_tools(cursor)),
            opts: CallOptions::new(),
            then: Box::new(|v, memory| {
                let list: ToolList = decode(v)?;
                memory.remember(&list);
                Ok(Next::Done(list))
            }),
        }
    }
}

impl<T: Send + 'static> Request<'static, Vec<T>> {
    /// Every page of a listing: `op` for a cursor, `items` splits a page's
    /// answer into its items and its next cursor. A cursor seen twice ends
    /// the listing, and one past the client's bounds (pages, items) is
    /// [`Error::TooManyPages`].
    fn paged(
        op: fn(Option<&str>) -> Operation,
        mut items: impl FnMut(Value, &Memory) -> Result<(Vec<T>, Option<String>), Error>
            + Send
            + 'static,
    ) -> Self {
        let (mut all, mut seen, mut pages) = (Vec::new(), Cursors::default(), 0);
        Request {
            first: First::Op(op(None)),
            opts: CallOptions::new(),
            then: Box::new(move |v, memory| {
                let (page, cursor) = items(v, memory)?;
                pages += 1;
                all.extend(page);
                let next = seen.next(cursor);
                let limits = memory.limits;
                if all.len() > limits.max_items || (next.is_some() && pages >= limits.max_pages) {
                    let items = all.len();
                    return Err(Error::TooManyPages { pages, items });
                }
                Ok(match next {
                    Some(c) => Next::Page(op(Some(&c))),
                    None => Next::Done(std::mem::take(&mut all)),
                })
            }),
        }
    }
}

impl Request<'static, Vec<Tool>> {
    /// `tools/list`, every page (see [`Error::TooManyPages`] for the
    /// bounds); the client remembers which tools are replay-safe.
    pub fn all_tools() -> Self {
        Self::paged(Operation::list_tools, |v, memory| {
            let page: ToolList = decode(v)?;
            memory.remember(&page);
            Ok((page.tools, page.next_cursor))
        })
    }
}

impl Request<'static, Vec<Resource>> {
    /// `resources/list`, every page.
    pub fn all_resources() -> Self {
        Self::paged(Operation::list_resources, |v, _| {
            let page: ResourceList = decode(v)?;
            Ok((page.resources, page.next_cursor))
        })
    }
}

impl Request<'static, Vec<Prompt>> {
    /// `prompts/list`, every page.
    pub fn all_prompts() -> Self {
        Self::paged(Operation::list_prompts, |v, _| {
            let page: PromptList = decode(v)?;
            Ok((page.prompts, page.next_cursor))
        })
    }
}

fn list_resource_templates(cursor: Option<&str>) -> Operation {
    let params = cursor.map(|c| serde_json::json!({ "cursor": c }));
    Operation::new("resources/templates/list", params)
}

impl Request<'static, ResourceTemplateList> {
    /// `resources/templates/list`, one page.
    pub fn list_resource_templates(cursor: Option<&str>) -> Self {
        Self::decoded(list_resource_templates(cursor))
    }
}

impl Request<'static, Vec<ResourceTemplate>> {
    /// `resources/templates/list`, every page.
    pub fn all_resource_templates() -> Self {
        Self::paged(list_resource_templates, |v, _| {
            let page: ResourceTemplateList = decode(v)?;
            Ok((page.resource_templates, page.next_cursor))
        })
    }
}

impl Request<'static, Completion> {
    /// `completion/complete`: values for `argument` of a prompt or a
    /// resource template, given what it holds so far (`value`).
    pub fn complete(reference: &CompletionRef, argument: &str, value: &str) -> Self {
        let params = serde_json::json!({
            "ref": reference.to_value(),
            "argument": {"name": argument, "value": value},
        });
        Request {
            first: First::Op(Operation::new("completion/complete", Some(params))),
            opts: CallOptions::new(),
            then: Box::new(|v, _| decode::<CompleteResult>(v).map(|r| Next::Done(r.completion))),
        }
    }
}

impl Request<'static, ()> {
    /// `logging/setLevel` (the handshake wire): the server's log messages
    /// at `level` and above come as `notifications/message`.
    pub fn set_log_level(level: &str) -> Self {
        Self::unit("logging/setLevel", serde_json::json!({ "level": level }))
    }

    /// `resources/subscribe` (the handshake wire): updates of `uri` come as
    /// `notifications/resources/updated`.
    pub fn subscribe(uri: &str) -> Self {
        Self::unit("resources/subscribe", serde_json::json!({ "uri": uri }))
    }

    /// `resources/unsubscribe`.
    pub fn unsubscribe(uri: &str) -> Self {
        Self::unit("resources/unsubscribe", serde_json::json!({ "uri": uri }))
    }

    /// A method whose result says nothing; replayed as its method allows
    /// (these three only set state: sending one twice changes nothing).
    fn unit(method: &'static str, params: Value) -> Self {
        Request {
            first: First::Op(Operation::new(method, Some(params)).idempotent(true)),
            opts: CallOptions::new(),
            then: Box::new(|_, _| Ok(Next::Done(()))),
        }
    }
}

impl<'a> Request<'a, ToolResult> {
    /// `tools/call` with per-call options. Not replayed after an ambiguous
    /// failure unless the options or the tool's listed annotations say it
    /// is read-only or idempotent.
    pub fn call_tool(name: &str, arguments: Value, opts: CallOptions<'a>) -> Self {
        let tool = name.to_owned();
        Request {
            first: First::Tool {
                name: name.to_owned(),
                arguments,
            },
            opts,
            then: Box::new(move |v, memory| {
                let result: ToolResult = decode(v)?;
                memory.check_output(&tool, &result)?;
                Ok(Next::Done(result))
            }),
        }
    }
}

impl Request<'static, ResourceList> {
    /// `resources/list`, one page.
    pub fn list_resources(cursor: Option<&str>) -> Self {
        Self::decoded(Operation::list_resources(cursor))
    }
}

impl Request<'static, ResourceRead> {
    /// `resources/read`.
    pub fn read_resource(uri: &str) -> Self {
        Self::decoded(Operation::read_resource(uri))
    }
}

impl Request<'static, PromptList> {
    /// `prompts/list`, one page.
    pub fn list_prompts(cursor: Option<&str>) -> Self {
        Self::decoded(Operation::list_prompts(cursor))
    }
}

impl Request<'static, PromptResult> {
    /// `prompts/get`; `arguments` is a JSON object of strings, if any.
    pub fn get_prompt(name: &str, arguments: Option<Value>) -> Self {
        Self::decoded(Operation::get_prompt(name, arguments))
    }
}

/// A client type over an [`Io`](crate::drive::Io): the struct, its
/// [`Build`](crate::Build), and its methods (see `client_methods!`).
#[doc(hidden)]
#[macro_export]
macro_rules! client {
    ($(#[$doc:meta])* $io:ty; $($methods:tt)*) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct Client {
            driver: std::sync::Arc<$crate::drive::Handle<$io>>,
        }

        /// Sets up a [`Client`].
        pub type Builder = $crate::ClientBuilder<Client>;

        impl $crate::Build for Client {
            fn build(settings: $crate::Settings) -> Result<Client, $crate::Error> {
                $crate::drive::Driver::new(settings).map(|driver| Client {
                    driver: std::sync::Arc::new($crate::drive::Handle::new(driver)),
                })
            }
        }

        impl Client {
            $crate::client_methods!($($methods)*);
        }
    };
}

/// The client methods, declared once for both clients. `$wrap` runs a
/// driver future the client's way (`block_on`, or nothing for async), and
/// `$($await)*` follows it (`.await`, or nothing).
#[doc(hidden)]
#[macro_export]
macro_rules! client_methods {
    ($($async:ident)?; $wrap:path; $($await:tt)*) => {
        /// Starts setting up a client for the MCP endpoint at `url`.
        pub fn builder(url: &str) -> $crate::ClientBuilder<Self> {
            $crate::ClientBuilder::new(url)
        }

        /// Replaces the roots the client answers `roots/list` with (given
        /// first to [`ClientBuilder::roots`]($crate::ClientBuilder::roots))
        /// and sends `notifications/roots/list_changed`.
        pub $($async)? fn set_roots(&self, roots: Vec<$crate::Root>) -> Result<(), $crate::Error> {
            $wrap(self.driver.set_roots(roots)) $($await)*
        }

        /// Sends a notification of the client's own in the ready session
        /// (nothing when there is none: the next session starts afresh).
        pub $($async)? fn notify(&self, method: &str, params: Option<$crate::__private::Value>) {
            $wrap(self.driver.notify(method, params)) $($await)*
        }

        /// Starts setting up a client for a server run as a child process
        /// over stdio ([`StdioCommand`]($crate::stdio::StdioCommand)).
        pub fn stdio(command: $crate::stdio::StdioCommand) -> $crate::ClientBuilder<Self> {
            $crate::ClientBuilder::stdio(command)
        }

        /// Runs the initialize handshake now (it also runs implicitly on
        /// the first call). Waits at most the await-ready deadline for a
        /// handshake another caller started.
        pub $($async)? fn initialize(&self) -> Result<(), $crate::Error> {
            $wrap(self.driver.initialize()) $($await)*
        }

        /// Runs a typed [`Request`]($crate::Request): what every method
        /// below does.
        pub $($async)? fn send<T>(&self, request: $crate::Request<'_, T>) -> Result<T, $crate::Error> {
            $wrap(self.driver.send(request)) $($await)*
        }

        /// Any request, answered as raw JSON. Replay-safe when the method
        /// is read-only by the specification.
        pub $($async)? fn request(
            &self,
            method: &str,
            params: Option<$crate::__private::Value>,
        ) -> Result<$crate::__private::Value, $crate::Error> {
            self.send($crate::Request::raw(method, params)) $($await)*
        }

        /// `tools/list`, one page. Remembers which tools say they are
        /// read-only or idempotent, so later calls to them may be replayed.
        pub $($async)? fn list_tools(&self, cursor: Option<&str>) -> Result<$crate::ToolList, $crate::Error> {
            self.send($crate::Request::list_tools(cursor)) $($await)*
        }

        /// `tools/list`, every page.
        pub $($async)? fn all_tools(&self) -> Result<Vec<$crate::Tool>, $crate::Error> {
            self.send($crate::Request::all_tools()) $($await)*
        }

        /// `tools/call`. Not replayed after an ambiguous failure unless the
        /// tool was listed as read-only or idempotent.
        pub $($async)? fn call_tool(
            &self,
            name: &str,
            arguments: $crate::__private::Value,
        ) -> Result<$crate::ToolResult, $crate::Error> {
            self.call_tool_with(name, arguments, $crate::CallOptions::new()) $($await)*
        }

        /// `tools/call` with per-call options.
        pub $($async)? fn call_tool_with(
            &self,
            name: &str,
            arguments: $crate::__private::Value,
            opts: $crate::CallOptions<'_>,
        ) -> Result<$crate::ToolResult, $crate::Error> {
            self.send($crate::Request::call_tool(name, arguments, opts)) $($await)*
        }

        /// `resources/list`, one page.
        pub $($async)? fn list_resources(
            &self,
            cursor: Option<&str>,
        ) -> Result<$crate::ResourceList, $crate::Error> {
            self.send($crate::Request::list_resources(cursor)) $($await)*
        }

        /// `resources/read`.
        pub $($async)? fn read_resource(&self, uri: &str) -> Result<$crate::ResourceRead, $crate::Error> {
            self.send($crate::Request::read_resource(uri)) $($await)*
        }

        /// `prompts/list`, one page.
        pub $($async)? fn list_prompts(&self, cursor: Option<&str>) -> Result<$crate::PromptList, $crate::Error> {
            self.send($crate::Request::list_prompts(cursor)) $($await)*
        }

        /// `prompts/get`; `arguments` is a JSON object of strings, if any.
        pub $($async)? fn get_prompt(
            &self,
            name: &str,
            arguments: Option<$crate::__private::Value>,
        ) -> Result<$crate::PromptResult, $crate::Error> {
            self.send($crate::Request::get_prompt(name, arguments)) $($await)*
        }

        /// `resources/list`, every page.
        pub $($async)? fn all_resources(&self) -> Result<Vec<$crate::Resource>, $crate::Error> {
            self.send($crate::Request::all_resources()) $($await)*
        }

        /// `prompts/list`, every page.
        pub $($async)? fn all_prompts(&self) -> Result<Vec<$crate::Prompt>, $crate::Error> {
            self.send($crate::Request::all_prompts()) $($await)*
        }

        /// `resources/templates/list`, one page.
        pub $($async)? fn list_resource_templates(
            &self,
            cursor: Option<&str>,
        ) -> Result<$crate::ResourceTemplateList, $crate::Error> {
            self.send($crate::Request::list_resource_templates(cursor)) $($await)*
        }

        /// `resources/templates/list`, every page.
        pub $($async)? fn all_resource_templates(
            &self,
        ) -> Result<Vec<$crate::ResourceTemplate>, $crate::Error> {
            self.send($crate::Request::all_resource_templates()) $($await)*
        }

        /// `completion/complete`: values for `argument` of a prompt or a
        /// resource template, given what it holds so far.
        pub $($async)? fn complete(
            &self,
            reference: &$crate::CompletionRef,
            argument: &str,
            value: &str,
        ) -> Result<$crate::Completion, $crate::Error> {
            self.send($crate::Request::complete(reference, argument, value)) $($await)*
        }

        /// `logging/setLevel` (handshake wire): log messages at `level`
        /// and above arrive at the handler as `notifications/message`.
        pub $($async)? fn set_log_level(&self, level: &str) -> Result<(), $crate::Error> {
            self.send($crate::Request::set_log_level(level)) $($await)*
        }

        /// `resources/subscribe` (handshake wire): updates arrive at the
        /// handler as `notifications/resources/updated`.
        pub $($async)? fn subscribe(&self, uri: &str) -> Result<(), $crate::Error> {
            self.send($crate::Request::subscribe(uri)) $($await)*
        }

        /// `resources/unsubscribe`.
        pub $($async)? fn unsubscribe(&self, uri: &str) -> Result<(), $crate::Error> {
            self.send($crate::Request::unsubscribe(uri)) $($await)*
        }

        /// `ping`.
        pub $($async)? fn ping(&self) -> Result<(), $crate::Error> {
            self.send($crate::Request::ping()) $($await)*
        }

        /// Ends the session: pending calls fail with
        /// [`CallError`]($crate::core::CallError)`::Closed`, the server gets
        /// a DELETE (a 405 is fine), later calls fail at once.
        pub $($async)? fn close(&self) -> Result<(), $crate::Error> {
            $wrap(self.driver.close()) $($await)*
        }

        /// A handle to cancel a call made with
        /// [`CallOptions::cancel`]($crate::CallOptions::cancel).
        pub fn cancel_handle(&self) -> $crate::CancelHandle {
            self.driver.cancel_handle()
        }

        /// The session id the server gave, if any.
        pub fn session_id(&self) -> Option<String> {
            self.driver.session_id()
        }

        /// The server's `serverInfo` (name, version...), once initialized.
        pub fn server_info(&self) -> Option<$crate::__private::Value> {
            self.initialize_result().map(|r| r["serverInfo"].clone())
        }

        /// The server's whole `InitializeResult` (capabilities, serverInfo,
        /// instructions), once initialized.
        pub fn initialize_result(&self) -> Option<$crate::__private::Value> {
            self.driver.initialize_result()
        }

        /// The negotiated protocol version, once initialized.
        pub fn protocol_version(&self) -> Option<&'static str> {
            self.driver.protocol_version()
        }

        /// How many sessions this client has initialized (1 after the first).
        pub fn generation(&self) -> u64 {
            self.driver.generation()
        }

        /// The circuit breaker's state.
        pub fn breaker_state(&self) -> $crate::core::BreakerState {
            self.driver.breaker_state()
        }
    };
}
