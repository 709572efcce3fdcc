//! The blocking client's I/O: ureq 3 for HTTP, a parked thread for waiting.
//!
//! The driver's futures run to completion on the caller's own thread
//! (`block_on`), so every method here simply blocks inside `poll`: a send
//! or a read is ureq's, a wait is `EventListener::wait_deadline`, user code
//! runs inline, and the listening stream gets a thread of its own.
//!
//! Every transport ureq makes is wrapped ([`Bounded`]): the wrapper holds
//! each wait to the exchange's bounds (the call's deadline, its read
//! timeout, a cancel handle, polled every [`SLICE`]), which ureq's own
//! request-level timeouts did before. Those cost a copy of the agent's
//! configuration and two `setsockopt` per call (a deadline is a new
//! timeout value every time); the wrapper hands the socket timeouts
//! rounded to a coarse grid, so a run of calls sets them about once.

use crate::reaper::{Slot, User};
use event_listener::{EventListener, Listener};
use mcp_recovery_client::drive::{Body, Exchange, Io, Response, Shared};
use mcp_recovery_client::CancelHandle;
use mcp_recovery_client::Settings;
use mcp_recovery_core::{FailureKind, HttpRequest, TransportFailure};
use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use ureq::http::Request;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::time::Duration as Wait;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};

/// Each connection's input and output buffers (ureq's default: 128 KiB).
const BUFFER: usize = 32 * 1024;

/// Idle connections an agent keeps per host (the smol client's cap).
const MAX_IDLE: usize = 256;

/// The largest response head taken: below [`BUFFER`], so a larger one is
/// ureq's own typed error, not a read that runs out of room.
const MAX_HEAD: usize = 16 * 1024;

/// How often a blocked read looks at the caller's cancel handle: the most a
/// cancel waits.
const SLICE: Duration = Duration::from_millis(50);

/// What bounds the I/O of the exchange this thread is running.
#[derive(Default)]
struct Bounds {
    /// The call's cancel handle.
    cancel: Option<CancelHandle>,
    /// The call's end: no wait goes past it.
    deadline: Option<Instant>,
    /// The exchange's read timeout, when shorter than the agent's.
    read: Option<Duration>,
    /// A read's own end, sooner than the rest (the brief wait for the end
    /// of an answered event stream).
    until: Option<Instant>,
}

thread_local! {
    static BOUNDS: RefCell<Bounds> = const {
        RefCell::new(Bounds { cancel: None, deadline: None, read: None, until: None })
    };
}

/// Runs `f` with `bounds` on this thread's I/O.
/// The bounds before, put back when `f` returns or unwinds (a panic
/// leaves no stale deadline or cancel handle on the thread).
fn within<R>(bounds: Bounds, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Bounds>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(before) = self.0.take() {
                let _ = BOUNDS.try_with(|b| *b.borrow_mut() = before);
            }
        }
    }
    let _restore = Restore(Some(BOUNDS.with(|b| b.replace(bounds))));
    f()
}

fn cancelled() -> bool {
    BOUNDS.with(|b| {
        b.borrow()
            .cancel
            .as_ref()
            .is_some_and(CancelHandle::is_cancelled)
    })
}

/// The time left until the call's deadline, if it has one.
fn to_deadline(now: Instant) -> Option<Duration> {
    BOUNDS.with(|b| {
        b.borrow()
            .deadline
            .map(|d| d.saturating_duration_since(now))
    })
}

/// `d` rounded down (`up` false) or up to a grid of 1/256 to 1/512 of it
/// (a power of two of nanoseconds): 60 s less a few milliseconds is
/// the same value call after call, and the socket keeps the timeout it
/// has. Below 2 ms, `d` itself.
fn coarse(d: Duration, up: bool) -> Duration {
    let ns = d.as_nanos().min(u64::MAX as u128) as u64;
    if ns < 2_000_000 {
        return d;
    }
    let step = (1u64 << (63 - ns.leading_zeros())) >> 8;
    let down = ns - ns % step;
    let ns = if up && down < ns {
        down.saturating_add(step)
    } else {
        down
    };
    Duration::from_nanos(ns)
}

/// ureq's own connectors, each connection presented as agent-level, its
/// connect cut to the call's deadline. A request with request-level
/// settings (ours had its own timeouts until they moved to
/// [`BoundedTransport`]) made ureq's rustls connector build a new TLS
/// configuration for each connection, with an empty session cache, so no
/// TLS session ever resumed (0 of 1 023 handshakes, BENCHMARKS.md §10).
/// Presented as agent-level, every connection uses the agent's one
/// configuration, and sessions resume as they do in the smol client, even
/// should a request carry settings of its own again. Only the TLS
/// connectors look at `request_level`. Cloned, it is the same connector
/// (an `Arc`): the agents the reaper makes for one slot (the clients that
/// share an agent) share it, and with it the TLS sessions cached in it.
#[derive(Debug, Clone, Default)]
struct SharedTls(Arc<DefaultConnector>);

impl Connector<()> for SharedTls {
    type Out = Box<dyn Transport>;

    fn connect(
        &self,
        d: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let shared = ConnectionDetails {
            uri: d.uri,
            addrs: d.addrs.clone(),
            config: d.config,
            request_level: false,
            resolver: d.resolver,
            now: d.now,
            timeout: capped(d.timeout, Instant::now()),
            current_time: d.current_time.clone(),
            run_connector: d.run_connector.clone(),
            register_shutdown: d.register_shutdown.clone(),
        };
        self.0.connect(&shared, chained)
    }
}

/// How long a host name's addresses are used again without a new lookup.
const RESOLVED_FOR: Duration = Duration::from_secs(10);

/// ureq resolves the host of every request, pooled connection or not, and
/// with a timeout set (ours always are: the call's deadline) it does so on
/// a thread of its own: one thread spawned per call, ~60 µs of CPU, most
/// of what the blocking client cost over a raw request (BENCHMARKS.md
/// section 2). An IP address needs no lookup; a host name's addresses are
/// kept for [`RESOLVED_FOR`], so a run of calls looks up once (a lookup
/// that misses still has the deadline, on ureq's thread). The agent is
/// shared by clients that may call different servers: the last
/// [`RESOLVED_HOSTS`] hosts are kept.
#[derive(Debug, Default)]
struct Resolve {
    inner: ureq::unversioned::resolver::DefaultResolver,
    last: Mutex<Vec<(String, ResolvedSocketAddrs, Instant)>>,
}

/// How many hosts' addresses [`Resolve`] keeps.
const RESOLVED_HOSTS: usize = 16;

impl Resolver for Resolve {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let mut out = self.empty();
            out.push(std::net::SocketAddr::new(ip, port));
            return Ok(out);
        }
        let key = format!("{host}:{port}");
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.retain(|(_, _, at)| at.elapsed() < RESOLVED_FOR);
        if let Some((_, addrs, _)) = last.iter().find(|(k, _, _)| *k == key) {
            return Ok(addrs.clone());
        }
        drop(last);
        let addrs = self
            .inner
            .resolve(uri, config, capped(timeout, Instant::now()))?;
        last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.retain(|(k, _, _)| *k != key);
        if last.len() >= RESOLVED_HOSTS {
            last.remove(0);
        }
        last.push((key, addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

/// `timeout` cut to the call's deadline (a connect, a lookup); at least
/// 1 ms, as ureq reads a zero timeout as its own default of a second.
fn capped(timeout: NextTimeout, now: Instant) -> NextTimeout {
    match to_deadline(now) {
        Some(left) if Wait::Exact(left) < timeout.after => NextTimeout {
            after: Wait::Exact(left.max(Duration::from_millis(1))),
            reason: ureq::Timeout::Global,
            ..timeout
        },
        _ => timeout,
    }
}

/// Wraps each transport of the agent in [`BoundedTransport`].
#[derive(Debug)]
struct Bounded;

impl Connector<Box<dyn Transport>> for Bounded {
    type Out = BoundedTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(BoundedTransport::new))
    }
}

/// A transport whose waits keep to the exchange's [`Bounds`]: ureq's own
/// timeouts (the agent's: per read, and for the response head as a
/// whole), cut to the call's deadline, the exchange's read timeout and a
/// read's own end, and ended early by a cancel.
///
/// It also sends a request's head and body in one write. ureq writes the
/// head, sends it, then writes and sends the body: two segments, and two
/// wake-ups of the server, which reads the head, finds no body yet and
/// waits again (BENCHMARKS.md section 2). Here a request's first write is
/// held (copied aside), and goes in front of the body when that is sent;
/// a request without a body leaves when its answer is awaited: ureq reads
/// an answer through `await_input` (its input is empty when a request
/// starts: a pooled connection with unread input is not reused), which
/// sends what is held first.
#[derive(Debug)]
struct BoundedTransport {
    inner: Box<dyn Transport>,
    /// A request head written but not sent yet (its capacity is kept).
    held: Vec<u8>,
    /// Whether this request's first write was seen (reset by a read).
    writing: bool,
}

impl BoundedTransport {
    fn new(inner: Box<dyn Transport>) -> Self {
        BoundedTransport {
            inner,
            held: Vec::new(),
            writing: false,
        }
    }

    /// Sends the first `amount` bytes of the output buffer. A write cannot
    /// be resumed after its timeout, so its one wait is rounded up: past
    /// the deadline by at most 1/256 of the time it had left.
    fn send(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        let bounded = match to_deadline(Instant::now()) {
            Some(left) if Wait::Exact(left) < timeout.after => NextTimeout {
                after: Wait::Exact(coarse(left, true)),
                reason: ureq::Timeout::Global,
                ..timeout
            },
            _ => match timeout.after {
                Wait::Exact(d) => NextTimeout {
                    after: Wait::Exact(coarse(d, true)),
                    ..timeout
                },
                Wait::NotHappening => timeout,
            },
        };
        self.inner.transmit_output(
            amount,
            NextTimeout {
                per_write: None,
                ..bounded
            },
        )
    }

    /// Sends the held head, then `amount` bytes of the output buffer: in
    /// one write when both fit in the buffer.
    fn send_after_held(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let head = self.held.len();
        if head == 0 {
            return self.send(amount, timeout);
        }
        let output = self.inner.buffers().output();
        if head + amount <= output.len() {
            output.copy_within(..amount, head);
            output[..head].copy_from_slice(&self.held);
            self.held.clear();
            return self.send(head + amount, timeout);
        }
        if amount >= head {
            // Too large to join whole: the head and the body's start fill
            // one write, the body's last `head` bytes (kept aside) follow.
            let tail = output[amount - head..amount].to_vec();
            output.copy_within(..amount - head, head);
            output[..head].copy_from_slice(&self.held);
            self.held.clear();
            self.send(amount, timeout)?;
            self.inner.buffers().output()[..head].copy_from_slice(&tail);
            return self.send(head, timeout);
        }
        // A head longer than the write after it (a head ureq wrote in
        // parts): the head, then that write.
        let rest = output[..amount].to_vec();
        output[..head].copy_from_slice(&self.held);
        self.held.clear();
        self.send(head, timeout)?;
        self.inner.buffers().output()[..amount].copy_from_slice(&rest);
        self.send(amount, timeout)
    }

    /// Sends a held head before a wait for input.
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.writing = false;
        if !self.held.is_empty() {
            self.send_after_held(0, timeout)?;
        }
        Ok(())
    }
}

impl Transport for BoundedTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    /// A request's first write (its head) is held for the next one (its
    /// body).
    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        if !self.writing && self.held.is_empty() && amount > 0 {
            self.writing = true;
            let output = self.inner.buffers().output();
            self.held.extend_from_slice(&output[..amount]);
            return Ok(());
        }
        self.send_after_held(amount, timeout)
    }

    /// The real budget is waited for in steps the socket's timeout can
    /// keep (rounded down, [`coarse`]; [`SLICE`]s while a cancel handle
    /// watches); nothing is consumed by a step that times out, so the
    /// next one picks up where it left.
    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.flush(timeout)?;
        let start = Instant::now();
        let real = timeout.for_read();
        let (watching, end) = BOUNDS.with(|b| {
            let b = b.borrow();
            let mut end = match real.after {
                Wait::Exact(d) => Some((start + d, real.reason)),
                Wait::NotHappening => None,
            };
            let mut cut = |at: Instant, why: ureq::Timeout| {
                if end.is_none_or(|(e, _)| at < e) {
                    end = Some((at, why));
                }
            };
            if let Some(r) = b.read {
                cut(start + r, ureq::Timeout::PerRead);
            }
            if let Some(d) = b.deadline {
                cut(d, ureq::Timeout::Global);
            }
            if let Some(u) = b.until {
                cut(u, ureq::Timeout::PerRead);
            }
            (b.cancel.is_some(), end)
        });
        loop {
            let left = end.map(|(e, _)| e.saturating_duration_since(Instant::now()));
            let mut step = left.map_or(Duration::MAX, |l| coarse(l, false));
            if watching {
                step = step.min(SLICE);
            }
            let last = left.is_some_and(|l| step >= l);
            let after = if step == Duration::MAX {
                Wait::NotHappening
            } else {
                Wait::Exact(step)
            };
            let slice = NextTimeout {
                after,
                reason: end.map_or(real.reason, |(_, why)| why),
                per_read: None,
                per_write: timeout.per_write,
            };
            match self.inner.await_input(slice) {
                Err(ureq::Error::Timeout(_)) if !last => {
                    if cancelled() {
                        return Err(ureq::Error::Io(io::Error::other("call cancelled")));
                    }
                }
                other => return other,
            }
        }
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

/// A response body, read into a buffer of its own.
pub(crate) struct UreqBody {
    reader: ureq::BodyReader<'static>,
    /// The reading call's cancel handle.
    cancel: Option<CancelHandle>,
    /// The reading call's deadline.
    deadline: Option<Instant>,
    /// The request's per-read timeout.
    read_timeout: Duration,
    /// The thread's spare buffer ([`SPARE`]), given back when the body is
    /// dropped. Not inline: the body moves with the call's future, into a
    /// box and out of it, and 8 KiB copied at each move was ~10 µs per
    /// call (BENCHMARKS.md section 2); nor one allocation per exchange.
    buf: Box<[u8]>,
    /// Dropped after the reader (fields drop in order): the connection is
    /// back in the pool when the slot hears the exchange is done.
    _done: Done,
}

impl Drop for UreqBody {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // Not during the thread's own teardown: the buffer is just freed.
        let _ = SPARE.try_with(|s| s.set(Some(buf)));
    }
}

/// The size of the buffer a body is read into.
const READ_BUFFER: usize = 8 * 1024;

thread_local! {
    /// A buffer for the next body read on this thread: a blocking call
    /// reads one body at a time, so one buffer per thread serves them all.
    static SPARE: std::cell::Cell<Option<Box<[u8]>>> = const { std::cell::Cell::new(None) };
}

/// Tells the client (and its agent's slot) an exchange is done with,
/// when dropped.
struct Done(Option<Arc<User>>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(user) = self.0.take() {
            user.done();
        }
    }
}

/// What an agent is made from, and whom it speaks for: clients whose
/// settings give the same agent share one ([`shared_slot`]) if they speak
/// for the same principal, since an agent may keep what one request's
/// answer set for the next (its cookie jar, when ureq's `cookies` feature
/// is on in the build: this crate does not turn it on, another crate in
/// the same build may).
#[derive(PartialEq, Eq, Hash)]
struct Key {
    principal: mcp_recovery_client::Principal,
    /// The proxy ureq took from the environment when the client was
    /// built.
    proxy: Option<ureq::Proxy>,
    roots: Option<Vec<Vec<u8>>>,
    connect: Duration,
    keep: Duration,
    read: Duration,
}

/// The slot of the clients with `key`, made by `make` if none is alive:
/// one per process for each set of settings in use, gone with its last
/// client.
fn shared_slot(key: Key, make: impl FnOnce() -> Arc<Slot>) -> Arc<Slot> {
    static SLOTS: Shared<Key, Slot> = Shared::new();
    SLOTS.get_or(key, make)
}

/// A ureq agent: HTTP/1.1 with keep-alive, no redirects (a bearer token
/// never follows one), HTTP statuses as answers, not errors.
#[derive(Clone)]
pub(crate) struct Ureq {
    /// The agent, shared by the clients with the same settings and
    /// principal ([`Key`]), swapped for a fresh one once idle (closing its pooled connections,
    /// [`crate::reaper`]).
    user: Arc<User>,
}

impl Io for Ureq {
    type Body = UreqBody;

    fn new(s: &Settings) -> Self {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(roots) = s.tls_roots() {
            let certs = roots
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(s.connect_timeout))
            // ureq drops a pooled connection idle past it when it next
            // looks: the same bound as the smol client's.
            .max_idle_age(s.pool_idle)
            // The agent is shared by clients with the same settings
            // (ureq's defaults, 3 per host and 10 in all, suit one client
            // on one thread): as many as the smol client keeps per origin.
            .max_idle_connections_per_host(MAX_IDLE)
            .max_idle_connections(4 * MAX_IDLE)
            // ureq's default is 128 KiB each way per connection (twice
            // over TLS: the socket's and the TLS layer's), allocated for
            // as long as the connection is pooled. MCP's heads are small
            // and bodies stream through: 32 KiB is room enough, and an idle
            // connection is closed anyway ([`crate::reaper`]).
            .input_buffer_size(BUFFER)
            .output_buffer_size(BUFFER)
            .max_response_header_size(MAX_HEAD)
            .timeout_per_read(Some(s.read_timeout))
            // A head trickling in a byte at a time never trips the
            // per-read timeout: the head as a whole has the same limit.
            .timeout_recv_response(Some(s.read_timeout))
            .user_agent(concat!("mcp-recovery/", env!("CARGO_PKG_VERSION")))
            .build();
        let key = Key {
            principal: s.principal(),
            proxy: config.proxy().cloned(),
            roots: s.tls_roots().map(<[Vec<u8>]>::to_vec),
            connect: s.connect_timeout,
            keep: s.pool_idle,
            read: s.read_timeout,
        };
        // One connector for every agent the reaper makes for the slot: its
        // TLS configuration, and the sessions cached in it, outlive a reap.
        let tls = SharedTls::default();
        let make = move || {
            ureq::Agent::with_parts(
                config.clone(),
                tls.clone().chain(Bounded),
                Resolve::default(),
            )
        };
        let slot = shared_slot(key, || Slot::new(s.pool_idle, make));
        Ureq {
            user: User::new(slot),
        }
    }

    fn on_idle(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.user.on_idle(hook);
    }

    async fn send(&self, x: &Exchange<'_>) -> Result<Response<UreqBody>, TransportFailure> {
        let result = (|| {
            let req =
                build(x.request).map_err(|e| TransportFailure::not_sent(FailureKind::Other, e))?;
            // A listening stream (a GET) is never counted busy: it lives as
            // long as the session, and idle connections beside it must
            // still be closed.
            let (agent, done) = match x.request.method {
                mcp_recovery_core::Method::Get => (self.user.agent(), Done(None)),
                _ => (self.user.begin(), Done(Some(self.user.clone()))),
            };
            // The agent's configuration as it is: the exchange's own
            // bounds (its deadline, a shorter read timeout) are kept by
            // the transport ([`BoundedTransport`]).
            let response = within(bounds(x), || agent.run(req)).map_err(failure)?;
            let (parts, body) = response.into_parts();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: UreqBody {
                    // The core enforces the body size limit; the reader has none.
                    reader: body.into_with_config().limit(u64::MAX).reader(),
                    cancel: x.cancel.clone(),
                    deadline: x.deadline,
                    read_timeout: x.read_timeout,
                    buf: SPARE
                        .take()
                        .unwrap_or_else(|| vec![0; READ_BUFFER].into_boxed_slice()),
                    _done: done,
                },
            })
        })();
        result
    }

    fn wait(
        &self,
        listener: EventListener,
        until: Option<Instant>,
    ) -> impl Future<Output = ()> + Send {
        match until {
            Some(at) => drop(listener.wait_deadline(at)),
            None => listener.wait(),
        }
        std::future::ready(())
    }

    fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = R> + Send {
        std::future::ready(f())
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
        std::thread::Builder::new()
            .name("mcp-recovery-listen".into())
            .spawn(move || mcp_recovery_client::__private::block_on(task))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Body for UreqBody {
    /// The read timeouts were set on the request (ureq's are per request):
    /// the client's per read, and the call's deadline as a whole; a
    /// `read_timeout` shorter than the client's (a drain) bounds this read.
    fn chunk(
        &mut self,
        read_timeout: Duration,
    ) -> impl Future<Output = Result<Option<&[u8]>, TransportFailure>> + Send {
        let until = (read_timeout < self.read_timeout).then(|| Instant::now() + read_timeout);
        std::future::ready(self.read(until))
    }
}

/// The bounds of exchange `x`'s I/O.
fn bounds(x: &Exchange<'_>) -> Bounds {
    Bounds {
        cancel: x.cancel.clone(),
        deadline: x.deadline,
        read: Some(x.read_timeout),
        until: None,
    }
}

impl UreqBody {
    fn read(&mut self, until: Option<Instant>) -> Result<Option<&[u8]>, TransportFailure> {
        let (reader, buf) = (&mut self.reader, &mut self.buf);
        let bounds = Bounds {
            cancel: self.cancel.clone(),
            deadline: self.deadline,
            read: Some(self.read_timeout),
            until,
        };
        let result = within(bounds, || loop {
            match reader.read(buf) {
                Ok(0) => break Ok(None),
                Ok(n) => break Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(failure(ureq::Error::from(e))),
            }
        });
        result.map(|n| n.map(|n| &self.buf[..n]))
    }
}

fn build(request: &HttpRequest) -> Result<Request<&[u8]>, String> {
    let mut b = Request::builder()
        .method(request.method.as_str())
        .uri(&*request.url);
    for (name, value) in request.headers() {
        b = b.header(name, value);
    }
    // The error text of `http` never repeats header values, so a token
    // cannot leak through it.
    b.body(&request.body[..]).map_err(|e| e.to_string())
}

/// Sorts a ureq error into "never reached the server" (safe to resend
/// anything) and "may have reached it".
fn failure(e: ureq::Error) -> TransportFailure {
    use ureq::Error as E;
    use ureq::Timeout as T;
    let message = e.to_string();
    match &e {
        E::ConnectionFailed | E::HostNotFound | E::Tls(_) => {
            TransportFailure::not_sent(FailureKind::Connect, message)
        }
        E::Timeout(T::Resolve | T::Connect) => {
            TransportFailure::not_sent(FailureKind::Connect, message)
        }
        E::Timeout(_) => TransportFailure::after_send(FailureKind::Timeout, message),
        E::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable => {
                TransportFailure::not_sent(FailureKind::Connect, message)
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                TransportFailure::after_send(FailureKind::Timeout, message)
            }
            _ => TransportFailure::after_send(FailureKind::Reset, message),
        },
        E::BadUri(_) | E::Http(_) => TransportFailure::not_sent(FailureKind::Other, message),
        // A request head too large for the output buffer never left.
        E::Protocol(_) if message.contains("output too small") => {
            TransportFailure::not_sent(FailureKind::Other, message)
        }
        _ => TransportFailure::after_send(FailureKind::Other, message),
    }
}

#[cfg(test)]
mod tests {
    use super::{coarse, BoundedTransport};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use ureq::unversioned::transport::{Buffers, LazyBuffers, NextTimeout, Transport};

    /// An inner transport that keeps what each of its writes sent.
    #[derive(Debug)]
    struct Wire {
        buffers: LazyBuffers,
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Transport for Wire {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            let sent = self.buffers.output()[..amount].to_vec();
            self.writes.lock().unwrap().push(sent);
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, ureq::Error> {
            Ok(false)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    fn wire(output: usize) -> (BoundedTransport, Arc<Mutex<Vec<Vec<u8>>>>) {
        let writes = Arc::new(Mutex::new(vec![]));
        let buffers = LazyBuffers::new(64, output);
        let inner = Wire {
            buffers,
            writes: writes.clone(),
        };
        (BoundedTransport::new(Box::new(inner)), writes)
    }

    /// Writes `bytes` as ureq does: into the output buffer, then sent.
    fn write(t: &mut BoundedTransport, bytes: &[u8]) {
        t.buffers().output()[..bytes.len()].copy_from_slice(bytes);
        t.transmit_output(bytes.len(), NextTimeout::default())
            .unwrap();
    }

    #[test]
    fn a_head_and_its_body_leave_in_one_write() {
        let (mut t, writes) = wire(1024);
        write(&mut t, b"POST /mcp HTTP/1.1\r\n\r\n");
        assert!(writes.lock().unwrap().is_empty(), "the head is held");
        write(&mut t, b"{\"jsonrpc\":\"2.0\"}");
        t.await_input(NextTimeout::default()).unwrap();
        assert_eq!(
            *writes.lock().unwrap(),
            [b"POST /mcp HTTP/1.1\r\n\r\n{\"jsonrpc\":\"2.0\"}".to_vec()]
        );
        // The next request on the connection is held again; without a
        // body, it leaves when its answer is awaited.
        write(&mut t, b"GET /mcp HTTP/1.1\r\n\r\n");
        assert_eq!(writes.lock().unwrap().len(), 1);
        t.await_input(NextTimeout::default()).unwrap();
        assert_eq!(
            writes.lock().unwrap()[1],
            b"GET /mcp HTTP/1.1\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn a_body_too_large_to_join_its_head_follows_it() {
        let (mut t, writes) = wire(32);
        write(&mut t, b"HEAD-OF-20-BYTES....");
        write(&mut t, b"a body of exactly 30 bytes....");
        // The body goes on in more writes of its own.
        write(&mut t, b"more");
        assert_eq!(
            *writes.lock().unwrap(),
            [
                b"HEAD-OF-20-BYTES....a body of ".to_vec(),
                b"exactly 30 bytes....".to_vec(),
                b"more".to_vec()
            ]
        );
        // A head written in parts, longer than what follows it, the two
        // too large for one write.
        let (mut t, writes) = wire(32);
        write(&mut t, b"A-HEAD-OF-30-BYTES-IN-TWO-PAR");
        write(&mut t, b"TS\r\n\r\n");
        assert_eq!(
            *writes.lock().unwrap(),
            [
                b"A-HEAD-OF-30-BYTES-IN-TWO-PAR".to_vec(),
                b"TS\r\n\r\n".to_vec()
            ]
        );
    }

    #[test]
    fn coarse_timeouts_stay_within_1_256th_and_repeat() {
        for ms in [2u64, 3, 17, 250, 999, 1_000, 29_999, 60_000, 120_000] {
            for less in [0u64, 1, 7, 333] {
                let d = Duration::from_millis(ms) - Duration::from_micros(less);
                let (down, up) = (coarse(d, false), coarse(d, true));
                assert!(down <= d && d <= up, "{d:?}: {down:?} {up:?}");
                assert!(
                    d - down <= d / 256 && up - d <= d / 256,
                    "{d:?}: {down:?} {up:?}"
                );
            }
        }
        // A run of 1 000 calls 50 µs apart, each with 60 s left when its
        // read starts (the time left drifting by 50 ms in all): the socket
        // sees at most two values.
        let mut seen: Vec<Duration> = (0..1_000u64)
            .map(|i| {
                coarse(
                    Duration::from_millis(60_000) - Duration::from_micros(i * 50),
                    false,
                )
            })
            .collect();
        seen.dedup();
        assert!(seen.len() <= 2, "{seen:?}");
        // Short waits are kept exact, zero included.
        assert_eq!(coarse(Duration::ZERO, false), Duration::ZERO);
        let short = Duration::from_micros(1_500);
        assert_eq!((coarse(short, false), coarse(short, true)), (short, short));
    }
}
