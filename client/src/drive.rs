//! The call driver, written once for every adapter.
//!
//! Everything between "a caller wants this operation" and "here is its
//! typed answer" lives here, as `async` code generic over an [`Io`]: the
//! [`Dispatcher`] (the core's sans-IO router) decides, this module carries
//! its decisions out — runs the jobs a caller drained, feeds each exchange
//! to the engine as it arrives, hands progress to the call's callback and
//! server messages to the handler, waits for the next deadline. An adapter
//! supplies only what differs between a thread and a task: sending a
//! request and reading its body, waiting on an [`EventListener`] until a
//! deadline, running user code that may block, and starting the listening
//! stream's reader. The blocking client runs these futures to completion
//! on the caller's thread (its [`Io`] blocks inside `poll`), the smol
//! client awaits them.
//!
//! There is no background task of ours: whoever drained a job does it, so
//! the caller whose request found the session gone performs the
//! re-initialize while the others wait.

use crate::request::{First, Next, Request};
use crate::stdio::StdioLink;
use crate::{answer, ready_deadline, Caller, Credentials, Error, Memory, ProgressFn};
use crate::{CancelHandle, Watch};
use crate::{RefreshError, Settings};
use event_listener::{Event, EventListener};
use http::HeaderMap;
use mcp_recovery_core::{
    BreakerState, CallId, Dispatcher, ExchangeId, FailureKind, HttpRequest, Input, Job, Mail,
    Operation, ReadyStep, Step, Token, TokenGeneration, TransportFailure,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What an adapter supplies: bytes and waiting. Every decision is the
/// driver's (and, below it, the core's).
pub trait Io: Clone + Send + Sync + 'static {
    /// A response being read.
    type Body: Body;

    /// The I/O for a client with these settings (connect timeout...).
    fn new(settings: &Settings) -> Self;

    /// Sends the request and returns once the response head is in, or the
    /// failure (sorted into "never reached the server" and "may have").
    /// `exchange.read_timeout` bounds the wait for the head and each read;
    /// `exchange.deadline`, when set, is the call's own end, which no read
    /// may outlast.
    fn send(
        &self,
        exchange: &Exchange<'_>,
    ) -> impl Future<Output = Result<Response<Self::Body>, TransportFailure>> + Send;

    /// Waits until `listener` fires or, at the latest, `until`.
    fn wait(
        &self,
        listener: EventListener,
        until: Option<Instant>,
    ) -> impl Future<Output = ()> + Send;

    /// Runs user code that may block (a token source, a server handler):
    /// inline on a blocking caller's thread, on a blocking pool in async.
    fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = R> + Send;

    /// Runs `task` on its own (a thread, a detached task): the listening
    /// stream's reader, and what a dropped call's cancel sends.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<(), String>;

    /// Calls `hook` whenever this client has had no exchange out for the
    /// pool's idle timeout (the session has had nothing to do for a
    /// while; its connections, which other clients may share, are closed
    /// or kept by the pool), so the client can give back memory it keeps
    /// for reuse. The default never calls it.
    fn on_idle(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        let _ = hook;
    }
}

/// Values shared by key for as long as someone holds them: what an
/// adapter's clients with the same settings share (a connection pool, an
/// HTTP agent). A `static` table; an entry goes with its last holder (the
/// table forgets dead entries as it grows, so building a client stays
/// O(1) however many keys there are).
pub struct Shared<K, T> {
    table: Mutex<Table<K, T>>,
}

struct Table<K, T> {
    /// `None` until the first use (a `static` cannot build a map).
    entries: Option<std::collections::HashMap<K, std::sync::Weak<T>>>,
    /// The size after the last pass that forgot dead entries.
    kept: usize,
}

impl<K: std::hash::Hash + Eq, T> Shared<K, T> {
    /// An empty table.
    pub const fn new() -> Self {
        Shared {
            table: Mutex::new(Table {
                entries: None,
                kept: 0,
            }),
        }
    }

    /// The value for `key` if someone holds one, else `make`'s, kept for
    /// the next with the same key. `make` runs under the table's lock: it
    /// must not use this table.
    pub fn get_or(&self, key: K, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = table.kept;
        let entries = table.entries.get_or_insert_with(Default::default);
        if let Some(value) = entries.get(&key).and_then(std::sync::Weak::upgrade) {
            return value;
        }
        let value = make();
        entries.insert(key, Arc::downgrade(&value));
        if entries.len() > 2 * kept + 16 {
            entries.retain(|_, value| value.strong_count() > 0);
            table.kept = entries.len();
        }
        value
    }
}

impl<K: std::hash::Hash + Eq, T> Default for Shared<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// What a client holds: the driver. When the last handle goes, a stdio
/// server's child is ended, even while tasks of the client's own (the
/// listening stream's reader) still hold the driver a while.
pub struct Handle<I: Io>(Arc<Driver<I>>);

impl<I: Io> Handle<I> {
    /// Wraps a driver.
    pub fn new(driver: Arc<Driver<I>>) -> Self {
        Handle(driver)
    }
}

impl<I: Io> std::ops::Deref for Handle<I> {
    type Target = Arc<Driver<I>>;
    fn deref(&self) -> &Arc<Driver<I>> {
        &self.0
    }
}

impl<I: Io> Drop for Handle<I> {
    fn drop(&mut self) {
        if let Some(link) = &self.0.stdio {
            link.detach();
        }
    }
}

impl<I: Io> fmt::Debug for Handle<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One request to send, with the limits on waiting for its answer.
#[derive(Debug)]
#[non_exhaustive]
pub struct Exchange<'a> {
    /// What to send.
    pub request: &'a HttpRequest,
    /// The longest silence: for the head, and for each read of the body.
    pub read_timeout: Duration,
    /// The call's own deadline, if it has one.
    pub deadline: Option<Instant>,
    /// The call's cancel handle, for an exchange that carries the caller's
    /// own call: a transport whose reads block (the blocking client's)
    /// looks at it while it waits, so a cancel ends a silent read at once.
    pub cancel: Option<crate::CancelHandle>,
}

/// A response whose head is in.
#[derive(Debug)]
pub struct Response<B> {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, still to be read.
    pub body: B,
}

/// A response body, read chunk by chunk.
pub trait Body: Send {
    /// The next chunk, `Ok(None)` at the end, or a failure (after send: the
    /// server may have acted on the request). At most `read_timeout` of
    /// silence.
    fn chunk(
        &mut self,
        read_timeout: Duration,
    ) -> impl Future<Output = Result<Option<&[u8]>, TransportFailure>> + Send;
}

/// A response body: the adapter's HTTP one, or a stdio child's stream.
enum Wire<B, S> {
    Http(B),
    Stdio(S),
}

impl<B: Body, S: Body> Body for Wire<B, S> {
    async fn chunk(&mut self, read_timeout: Duration) -> Result<Option<&[u8]>, TransportFailure> {
        match self {
            Wire::Http(b) => b.chunk(read_timeout).await,
            Wire::Stdio(s) => s.chunk(read_timeout).await,
        }
    }
}

/// How long the rest of an answered event stream is waited for, and how
/// much of it is read, before its connection is given up instead.
const DRAIN_WAIT: Duration = Duration::from_millis(10);
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads what is left of a response the core is done with (an event
/// stream's closing chunk comes a moment after its answer), within
/// [`DRAIN_WAIT`] and [`DRAIN_BYTES`]: read to its end, its connection goes
/// back to the pool; otherwise dropping it closes the connection. What it
/// says is not looked at: the core has its answer.
async fn drain<B: Body>(body: &mut B) {
    let until = Instant::now() + DRAIN_WAIT;
    let mut read = 0;
    while read <= DRAIN_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match body.chunk(left).await {
            Ok(Some(bytes)) => read += bytes.len(),
            Ok(None) | Err(_) => return,
        }
    }
}

/// The headers whose values are strings (the others cannot matter to MCP).
pub(crate) fn strings(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
}

type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One client's session, its engine and its I/O, shared by every caller.
pub struct Driver<I: Io> {
    state: Mutex<Dispatcher>,
    event: Event,
    io: I,
    /// A stdio server's child processes, in place of HTTP: every adapter
    /// gets stdio from here, its `Io` only doing the waiting.
    stdio: Option<StdioLink>,
    settings: Settings,
    memory: Memory,
}

impl<I: Io> fmt::Debug for Driver<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        let engine = st.engine();
        f.debug_struct("Driver")
            .field("url", &engine.session().url())
            .field("generation", &engine.generation())
            .field("ready", &engine.is_ready())
            .finish_non_exhaustive()
    }
}

/// Metadata and token answers are small; more is an error, not a feast.
const WHOLE_BODY_LIMIT: usize = 1024 * 1024;

/// How long one request read whole may take: each read, and the whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    /// The longest silence.
    pub read: Duration,
    /// The whole exchange, head to last byte.
    pub whole: Duration,
}

impl HttpLimits {
    /// `read` per read, and as long for the whole (tests).
    #[cfg(test)]
    pub fn new(read: Duration) -> Self {
        HttpLimits { read, whole: read }
    }
}

/// One request read whole (OAuth's discovery, registration and token
/// requests): its status, headers and body, within `limits` as a whole, so
/// a server trickling a byte now and then cannot hold it.
pub(crate) async fn fetch<I: Io>(
    io: &I,
    request: &HttpRequest,
    limits: HttpLimits,
) -> Result<(u16, HeaderMap, Vec<u8>), TransportFailure> {
    let deadline = ready_deadline(Instant::now(), limits.whole);
    let left = || deadline.saturating_duration_since(Instant::now());
    let exchange = Exchange {
        request,
        read_timeout: limits.read.min(left()),
        deadline: Some(deadline),
        cancel: None,
    };
    let Response {
        status,
        headers,
        mut body,
    } = io.send(&exchange).await?;
    let mut bytes = Vec::new();
    loop {
        let left = left();
        if left.is_zero() {
            return Err(TransportFailure::after_send(
                FailureKind::Timeout,
                "the answer took too long",
            ));
        }
        let Some(chunk) = body.chunk(limits.read.min(left)).await? else {
            return Ok((status, headers, bytes));
        };
        if bytes.len() + chunk.len() > WHOLE_BODY_LIMIT {
            return Err(TransportFailure::after_send(
                FailureKind::Other,
                "answer too large",
            ));
        }
        bytes.extend_from_slice(chunk);
    }
}

/// Ends the call if its future is dropped before the call ended (only an
/// async caller can do that): the core gets a cancel, and what that sends
/// (`notifications/cancelled`) goes out apart, since a destructor cannot
/// wait.
struct CallGuard<'a, I: Io> {
    driver: &'a Arc<Driver<I>>,
    id: CallId,
    done: bool,
}

impl<I: Io> Drop for CallGuard<'_, I> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut jobs = VecDeque::new();
        {
            let mut st = self.driver.lock();
            st.abandon(self.id, Instant::now(), &mut jobs);
            self.driver.unlock(st);
        }
        if !jobs.is_empty() {
            let driver = self.driver.clone();
            // Nothing to tell if it cannot start: the call is over anyway.
            let _ = self.driver.io.spawn(async move {
                driver.run(&mut jobs, &mut Caller::none()).await;
            });
        }
    }
}

impl<I: Io> Driver<I> {
    /// A driver for `settings` over its own `I`; nothing is sent yet.
    pub fn new(mut settings: Settings) -> Result<Arc<Self>, Error> {
        // Checked first: the I/O is built from the checked settings (the
        // parsed TLS roots).
        settings.validate()?;
        let io = I::new(&settings);
        let engine = settings.engine(Instant::now());
        Ok(Arc::new_cyclic(|me: &std::sync::Weak<Self>| {
            // An idle session gives back what its engine keeps for reuse.
            let me = me.clone();
            io.on_idle(Arc::new(move || {
                if let Some(driver) = me.upgrade() {
                    driver.lock().release_spare();
                }
            }));
            Driver {
                state: Mutex::new(Dispatcher::new(engine, settings.observer.is_some())),
                event: Event::new(),
                io,
                stdio: settings.stdio_link(),
                memory: Memory {
                    limits: settings.limits,
                    check_output: settings.check_output,
                    ..Memory::default()
                },
                settings,
            }
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        // Never held across an await or a send, and no user code runs under
        // it: a poisoned lock means a bug in this crate's bookkeeping, and
        // the engine itself stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting caller so it looks at its mailbox and watch
    /// again. Taking the lock orders this with a waiter's checks: a waiter
    /// registers its listener under the lock, after looking.
    fn wake_all(&self) {
        drop(self.lock());
        self.event.notify(usize::MAX);
    }

    /// Releases the lock, waking the waiters if the dispatcher says so.
    fn unlock(&self, mut st: MutexGuard<'_, Dispatcher>) {
        let woke = st.take_woke();
        drop(st);
        if woke {
            self.event.notify(usize::MAX);
        }
    }

    fn feed(&self, input: Input<'_>, jobs: &mut VecDeque<Job>) {
        let mut st = self.lock();
        st.feed(input, Instant::now(), jobs);
        self.unlock(st);
    }

    /// Runs a typed request to its end: one call, or one per page.
    pub async fn send<T>(self: &Arc<Self>, request: Request<'_, T>) -> Result<T, Error> {
        let Request {
            first,
            mut opts,
            mut then,
        } = request;
        // A tool call refused for headers the client could not know (its
        // tool never listed: `x-mcp-header` parameters) is sent again once
        // after listing the tools; the server ran nothing.
        let mut relist = None;
        let mut op = match first {
            First::Op(op) => op,
            First::Tool { name, arguments } => {
                relist = Some((name.clone(), arguments.clone()));
                self.memory.tools_call(&name, arguments, &opts)
            }
        };
        loop {
            let watch = Memory::watch(&opts, self.settings.call_timeout, Instant::now());
            let value = match self
                .call(op.clone(), &watch, opts.progress.as_deref_mut())
                .await
            {
                Err(Error::Call(mcp_recovery_core::CallError::HeaderMismatch { .. }))
                    if relist.is_some() =>
                {
                    let (name, arguments) = relist.take().unwrap_or_default();
                    self.list_every_tool(&watch).await?;
                    op = self.memory.tools_call(&name, arguments, &opts);
                    continue;
                }
                other => other?,
            };
            // What a listing taught is tied to the session it came from:
            // after a move to another server, schemas are learnt again.
            self.memory.at_generation(self.generation());
            match then(value, &self.memory)? {
                Next::Done(t) => return Ok(t),
                Next::Page(next) => op = next,
            }
        }
    }

    /// Lists every page of tools (within the listing bounds), for what the
    /// engine learns from them: their `x-mcp-header` parameters.
    async fn list_every_tool(self: &Arc<Self>, watch: &Watch) -> Result<(), Error> {
        let mut cursor: Option<String> = None;
        for _ in 0..self.memory.limits.max_pages {
            let page = self
                .call(Operation::list_tools(cursor.as_deref()), watch, None)
                .await?;
            let list: crate::ToolList = crate::decode(page)?;
            self.memory.at_generation(self.generation());
            self.memory.remember(&list);
            cursor = list.next_cursor;
            if cursor.is_none() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Does this caller's jobs, including whatever they produce. Boxed: it
    /// recurses through `exchange` (a server request on a stream).
    fn run<'a>(
        self: &'a Arc<Self>,
        jobs: &'a mut VecDeque<Job>,
        me: &'a mut Caller<'_, '_>,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            while let Some(job) = jobs.pop_front() {
                if let Job::Notification { method, .. } = &job {
                    if method == "notifications/tools/list_changed" {
                        // What the old listing said no longer holds.
                        self.memory.forget_tools();
                    }
                }
                match self.settings.local(job) {
                    Some(Job::Send { exchange, request }) => {
                        self.exchange(exchange, &request, false, me, jobs).await
                    }
                    Some(Job::Listen { exchange, request }) => self.listen(exchange, request, jobs),
                    Some(Job::Refresh {
                        generation,
                        challenge,
                    }) => {
                        // Boxed where it happens: a refresh (OAuth's whole
                        // flow) inline made every run's box 5.4 KiB instead
                        // of 1.9 (the blocking client), allocated and
                        // copied on every call.
                        let outcome = Box::pin(self.refresh(generation, challenge)).await;
                        self.refreshed(generation, &outcome, jobs);
                    }
                    Some(Job::ServerRequest { id, method, params }) => {
                        let me = self.clone();
                        let reply = self
                            .io
                            .blocking(move || answer(&me.settings, &method, params))
                            .await;
                        let mut st = self.lock();
                        st.engine_mut().reply(id, reply, Instant::now());
                        st.pump(jobs);
                        self.unlock(st);
                    }
                    _ => {}
                }
            }
        })
    }

    /// OAuth's requests: the client's read timeout per read, and the
    /// refresh timeout (what a call waits for a refresh) as a whole.
    fn oauth_limits(&self) -> HttpLimits {
        HttpLimits {
            read: self.settings.read_timeout,
            whole: self.settings.config.refresh_timeout,
        }
    }

    /// The one refresh for every caller that failed on `generation`:
    /// OAuth's over this client's own I/O, or the application's token
    /// source on the blocking side (it may block).
    async fn refresh(
        &self,
        generation: TokenGeneration,
        challenge: Option<String>,
    ) -> Result<Token, RefreshError> {
        match &self.settings.credentials {
            Credentials::OAuth(oauth) => {
                let limits = self.oauth_limits();
                oauth.refresh(&self.io, limits, challenge.as_deref()).await
            }
            Credentials::Source(source) => {
                let source = source.clone();
                self.io
                    .blocking(move || source.refresh(generation, challenge.as_deref()))
                    .await
            }
            Credentials::None => Err(RefreshError::NeedsReauth("no token source".into())),
        }
    }

    fn refreshed(
        &self,
        generation: TokenGeneration,
        outcome: &Result<Token, RefreshError>,
        jobs: &mut VecDeque<Job>,
    ) {
        let mut st = self.lock();
        self.settings
            .refreshed(&mut st, generation, outcome, Instant::now(), jobs);
        self.unlock(st);
    }

    /// Reads the listening stream apart (a thread, a task) for as long as
    /// the server keeps it open, or until its read timeout, after which the
    /// core opens it again.
    fn listen(
        self: &Arc<Self>,
        exchange: ExchangeId,
        request: HttpRequest,
        jobs: &mut VecDeque<Job>,
    ) {
        let driver = self.clone();
        let spawned = self.io.spawn(async move {
            let mut jobs = VecDeque::new();
            let mut me = Caller::none();
            driver
                .exchange(exchange, &request, false, &mut me, &mut jobs)
                .await;
            driver.run(&mut jobs, &mut me).await;
        });
        if let Err(e) = spawned {
            let failure = TransportFailure::not_sent(FailureKind::Other, e);
            self.feed(
                Input::Failed {
                    exchange,
                    failure: &failure,
                },
                jobs,
            );
        }
    }

    /// One HTTP exchange, fed to the engine as it arrives. `mine`: it
    /// carries this caller's own call, whose cancel may cut it short.
    async fn exchange(
        self: &Arc<Self>,
        exchange: ExchangeId,
        request: &HttpRequest,
        mine: bool,
        me: &mut Caller<'_, '_>,
        jobs: &mut VecDeque<Job>,
    ) {
        let fail = |failure: TransportFailure, jobs: &mut VecDeque<Job>| {
            let input = Input::Failed {
                exchange,
                failure: &failure,
            };
            self.feed(input, jobs)
        };
        let x = Exchange {
            request,
            read_timeout: me.read_timeout(self.settings.read_timeout),
            deadline: me.watch.deadline,
            cancel: if mine { me.watch.cancel.clone() } else { None },
        };
        let mut sent = self.send_proved(&x).await;
        // A DPoP server that wants its nonce in the proof refuses the
        // request before acting on it (RFC 9449 §9): it goes once more,
        // with a new proof naming the nonce.
        if let (Ok(r), Credentials::OAuth(oauth)) = (&sent, &self.settings.credentials) {
            if oauth.dpop_answer(r.status, &r.headers) {
                sent = self.send_proved(&x).await;
                // Its nonce too, for the next request (never a third send:
                // a second refusal goes to the engine as any 401 does).
                if let Ok(again) = &sent {
                    oauth.dpop_answer(again.status, &again.headers);
                }
            }
        }
        let Response {
            status,
            headers,
            mut body,
        } = match sent {
            Ok(r) => r,
            // The call gave up (cancel, its own deadline): that is what cut
            // the exchange short, and its caller tells the core so.
            Err(_) if mine && me.gave_up() => return,
            Err(failure) => return fail(failure, jobs),
        };
        {
            let headers: Vec<_> = strings(&headers).collect();
            let input = Input::Head {
                exchange,
                status,
                headers: &headers,
            };
            self.feed(input, jobs);
        }
        let mut chunk_was_data;
        loop {
            if mine && me.gave_up() {
                return; // dropping the body closes the connection
            }
            let timeout = me.read_timeout(self.settings.read_timeout);
            let chunk = match body.chunk(timeout).await {
                Ok(c) => c,
                Err(_) if mine && me.gave_up() => return,
                Err(failure) => return fail(failure, jobs),
            };
            let (open, progress) = {
                let mut st = self.lock();
                let input = match chunk {
                    None => Input::End { exchange },
                    Some(bytes) => Input::Body { exchange, bytes },
                };
                let more = matches!(input, Input::Body { .. });
                chunk_was_data = more;
                st.feed(input, Instant::now(), jobs);
                let open = more && st.engine().exchange_open(exchange);
                let progress = me.take_progress(&mut st);
                self.unlock(st);
                (open, progress)
            };
            me.progress(progress);
            if !open {
                // Done with this response: a body read to its end goes back
                // to the pool before the jobs it caused (the handshake's
                // `initialized`...) need a connection. An event stream the
                // core is done with usually ends a moment after its answer:
                // read that end, briefly, so its connection is kept too
                // (RELIABILITY.md, "Connections after an answer").
                if chunk_was_data {
                    drain(&mut body).await;
                }
                return;
            }
            // A server request on this stream (elicitation, sampling) waits
            // for our answer before the stream goes on: answer it now.
            self.run(jobs, me).await;
        }
    }

    /// Sends `request` on its way (a stdio child, or HTTP), with a fresh
    /// DPoP proof when it presents a DPoP-bound token.
    async fn send_proved(
        &self,
        x: &Exchange<'_>,
    ) -> Result<Response<Wire<I::Body, crate::stdio::StdioBody<I>>>, TransportFailure> {
        let proved = match &self.settings.credentials {
            Credentials::OAuth(oauth) => oauth.prove(x.request),
            _ => None,
        };
        let x = &Exchange {
            request: proved.as_ref().unwrap_or(x.request),
            read_timeout: x.read_timeout,
            deadline: x.deadline,
            cancel: x.cancel.clone(),
        };
        match &self.stdio {
            Some(link) => link.send(x, &self.io).await.map(|r| Response {
                status: r.status,
                headers: r.headers,
                body: Wire::Stdio(r.body),
            }),
            None => self.io.send(x).await.map(|r| Response {
                status: r.status,
                headers: r.headers,
                body: Wire::Http(r.body),
            }),
        }
    }

    /// Registers a listener if `wait`, before the lock is released: a
    /// wake-up sent after the dispatcher's checks cannot be missed.
    fn listener(&self, wait: bool) -> Option<EventListener> {
        wait.then(|| self.event.listen())
    }

    async fn wait(&self, listener: Option<EventListener>, until: Option<Instant>) {
        if let Some(listener) = listener {
            self.io.wait(listener, until).await;
        }
    }

    /// Runs one call to its end. Dropping the future cancels the call.
    async fn call(
        self: &Arc<Self>,
        op: Operation,
        watch: &Watch,
        progress: Option<&mut ProgressFn<'_>>,
    ) -> Result<Value, Error> {
        let mut jobs = VecDeque::new();
        let id = {
            let mut st = self.lock();
            let id = st.call(op, Instant::now(), &mut jobs);
            self.unlock(st);
            id
        };
        let mut guard = CallGuard {
            driver: self,
            id,
            done: false,
        };
        let mut me = Caller {
            call: Some(id),
            watch,
            progress,
        };
        loop {
            self.run(&mut jobs, &mut me).await;
            let (step, listener) = {
                let mut st = self.lock();
                let now = Instant::now();
                let step = st.step(id, watch.gave_up(now), watch.deadline, now, &mut jobs);
                let listener = self.listener(matches!(step, Step::Wait(_)));
                self.unlock(st);
                (step, listener)
            };
            match step {
                Step::Mail(Mail::Send { exchange, request }) => {
                    self.exchange(exchange, &request, true, &mut me, &mut jobs)
                        .await
                }
                Step::Mail(Mail::Progress(p)) => me.progress(vec![p]),
                Step::Mail(Mail::End(end)) => {
                    guard.done = true;
                    return watch.finish(end);
                }
                Step::Wait(until) => self.wait(listener, until).await,
                _ => {}
            }
        }
    }

    /// Brings the session up (or waits for the caller doing it), for at
    /// most the await-ready deadline.
    pub async fn initialize(self: &Arc<Self>) -> Result<(), Error> {
        let start = Instant::now();
        let deadline = ready_deadline(start, self.settings.config.await_ready);
        let mut jobs = VecDeque::new();
        let mut me = Caller::none();
        {
            let mut st = self.lock();
            st.connect(start, &mut jobs);
            self.unlock(st);
        }
        loop {
            self.run(&mut jobs, &mut me).await;
            let (step, listener) = {
                let mut st = self.lock();
                let step = st.ready_step(start, deadline, Instant::now(), &mut jobs);
                let listener = self.listener(matches!(step, ReadyStep::Wait(_)));
                self.unlock(st);
                (step, listener)
            };
            match step {
                ReadyStep::Ready => return Ok(()),
                ReadyStep::Failed(e) => return Err(Error::Call(e)),
                ReadyStep::Wait(until) => self.wait(listener, Some(until)).await,
                _ => {}
            }
        }
    }

    /// Ends the session: pending calls fail with `Closed`, the server gets
    /// a DELETE (a 405 is fine), later calls fail at once.
    pub async fn close(self: &Arc<Self>) -> Result<(), Error> {
        let mut jobs = VecDeque::new();
        {
            let mut st = self.lock();
            st.engine_mut().close(Instant::now());
            st.pump(&mut jobs);
            self.unlock(st);
        }
        self.run(&mut jobs, &mut Caller::none()).await;
        Ok(())
    }

    /// Sends a notification of the client's own in the ready session
    /// (none without one: the next session learns the state at its start).
    pub async fn notify(self: &Arc<Self>, method: &str, params: Option<Value>) {
        let mut jobs = VecDeque::new();
        {
            let mut st = self.lock();
            st.engine_mut().notify(method, params.as_ref());
            st.pump(&mut jobs);
            self.unlock(st);
        }
        self.run(&mut jobs, &mut Caller::none()).await;
    }

    /// Replaces the roots the client answers `roots/list` with, and tells
    /// the server they changed.
    pub async fn set_roots(self: &Arc<Self>, roots: Vec<crate::Root>) -> Result<(), Error> {
        let Some(kept) = &self.settings.roots else {
            return Err(Error::Config(
                "set_roots needs roots given to the builder (ClientBuilder::roots)".into(),
            ));
        };
        *kept.lock().unwrap_or_else(PoisonError::into_inner) = roots;
        self.notify("notifications/roots/list_changed", None).await;
        Ok(())
    }

    /// Uses `token` from now on; calls waiting for one go on with it.
    pub async fn set_token(self: &Arc<Self>, token: Token) {
        let mut jobs = VecDeque::new();
        {
            let mut st = self.lock();
            let now = Instant::now();
            st.engine_mut().set_token(Some(token), now);
            let expiry = self.settings.token_expiry(now);
            st.engine_mut().set_token_expiry(expiry, now);
            st.pump(&mut jobs);
            self.unlock(st);
        }
        self.run(&mut jobs, &mut Caller::none()).await;
    }

    /// Runs the OAuth authorization flow over this client's own I/O,
    /// starting from the last 401/403 challenge (where to look, what scope
    /// to ask for); `open` gets the URL a person's browser must visit.
    /// Calls waiting for a token go on with the new one.
    pub async fn authorize(self: &Arc<Self>, open: impl Fn(&str) + Sync) -> Result<(), Error> {
        let Credentials::OAuth(oauth) = &self.settings.credentials else {
            return Err(Error::Config(
                "authorize needs OAuth: set it with ClientBuilder::oauth".into(),
            ));
        };
        let challenge = self.lock().engine().last_challenge().map(str::to_owned);
        let limits = self.oauth_limits();
        // Boxed as `Send` here, where the bounds of `Io` are in sight: the
        // compiler cannot prove it at a concrete caller (a known rustc limit
        // with higher-ranked lifetimes in nested async code).
        let flow: Pin<Box<dyn Future<Output = _> + Send + '_>> =
            Box::pin(oauth.authorize(&self.io, limits, challenge.as_deref(), &open, false));
        let token = flow.await?;
        self.set_token(token).await;
        Ok(())
    }

    /// A handle that cancels one call.
    pub fn cancel_handle(self: &Arc<Self>) -> CancelHandle {
        let driver = self.clone();
        CancelHandle::new(Arc::new(move || driver.wake_all()))
    }

    /// The session id the server gave, if any.
    pub fn session_id(&self) -> Option<String> {
        self.lock().engine().session().id().map(str::to_owned)
    }

    /// The server's whole `InitializeResult`, once initialized.
    pub fn initialize_result(&self) -> Option<Value> {
        // Parsed after the lock is released.
        let text = self.lock().engine().session().server_json()?;
        serde_json::from_str(&text).ok()
    }

    /// The negotiated protocol version, once initialized.
    pub fn protocol_version(&self) -> Option<&'static str> {
        self.lock().engine().session().protocol_version()
    }

    /// How many sessions this client has initialized.
    pub fn generation(&self) -> u64 {
        self.lock().engine().generation().get()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock().engine().breaker()
    }
}

#[cfg(test)]
mod shared_tests {
    use super::*;

    /// One value per key while it is held; a new one once the last
    /// holder dropped it.
    #[test]
    fn shared_values_live_as_long_as_their_holders() {
        let table: Shared<u8, String> = Shared::new();
        let a = table.get_or(1, || Arc::new("a".into()));
        let again = table.get_or(1, || Arc::new("other".into()));
        assert!(Arc::ptr_eq(&a, &again));
        let b = table.get_or(2, || Arc::new("b".into()));
        assert_eq!(*b, "b");
        drop((a, again));
        let fresh = table.get_or(1, || Arc::new("new".into()));
        assert_eq!(*fresh, "new");
        // Dead entries are forgotten as the table grows: never more than
        // about twice the live ones.
        let held: Vec<_> = (0..100u8)
            .map(|k| {
                drop(table.get_or(k + 100, || Arc::new(String::new())));
                table.get_or(k, || Arc::new(String::new()))
            })
            .collect();
        let size = table.table.lock().unwrap().entries.as_ref().unwrap().len();
        assert!(size <= 2 * 101 + 16, "{size} entries for 101 live");
        drop(held);
    }
}
