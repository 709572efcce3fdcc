//! The blocking client's I/O: ureq 3 for HTTP, a parked thread for waiting.
//!
//! The driver's futures run to completion on the caller's own thread
//! (`block_on`), so every method here simply blocks inside `poll`: a send
//! or a read is ureq's, a wait is `EventListener::wait_deadline`, user code
//! runs inline, and the listening stream gets a thread of its own.
//!
//! A read blocked on a silent server would not see a cancel from another
//! thread until its timeout: every transport ureq makes is wrapped
//! ([`Cancellable`]) so that, while a call with a cancel handle reads, the
//! wait goes in slices of [`SLICE`] and ends as soon as the handle fires.

use crate::reaper::Slot;
use event_listener::{EventListener, Listener};
use mcp_recovery_client::drive::{Body, Exchange, Io, Response};
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

/// The largest response head taken: below [`BUFFER`], so a larger one is
/// ureq's own typed error, not a read that runs out of room.
const MAX_HEAD: usize = 16 * 1024;

/// How often a blocked read looks at the caller's cancel handle: the most a
/// cancel waits.
const SLICE: Duration = Duration::from_millis(50);

thread_local! {
    /// The cancel handle of the call this thread is reading for, if any.
    static CANCEL: RefCell<Option<CancelHandle>> = const { RefCell::new(None) };
    /// A read's own deadline, shorter than the request's timeouts (the
    /// brief wait for the end of an answered event stream).
    static UNTIL: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with `cancel` as this thread's current cancel handle.
fn with_cancel<R>(cancel: &Option<CancelHandle>, f: impl FnOnce() -> R) -> R {
    CANCEL.with(|c| *c.borrow_mut() = cancel.clone());
    let r = f();
    CANCEL.with(|c| *c.borrow_mut() = None);
    r
}

fn cancelled() -> bool {
    CANCEL.with(|c| c.borrow().as_ref().is_some_and(CancelHandle::is_cancelled))
}

/// ureq's own connectors, each connection presented as agent-level. Every
/// request of ours carries request-level settings (its own timeouts), never
/// TLS settings of its own; ureq's rustls connector then builds a new TLS
/// configuration for each connection, with an empty session cache, so no
/// TLS session ever resumed (0 of 1 023 handshakes, BENCHMARKS.md §10).
/// Presented as agent-level, every connection uses the agent's one
/// configuration (the request-level one only copies it), and sessions
/// resume as they do in the smol client. Only the TLS connectors look at
/// `request_level`. Cloned, it is the same connector (an `Arc`): the agents
/// the reaper makes for one client share it, and with it the TLS sessions
/// cached in it.
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
            timeout: d.timeout,
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
/// that misses still has the deadline, on ureq's thread).
#[derive(Debug, Default)]
struct Resolve {
    inner: ureq::unversioned::resolver::DefaultResolver,
    last: Mutex<Option<(String, ResolvedSocketAddrs, Instant)>>,
}

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
        if let Some((k, addrs, at)) = last.as_ref() {
            if *k == key && at.elapsed() < RESOLVED_FOR {
                return Ok(addrs.clone());
            }
        }
        drop(last);
        let addrs = self.inner.resolve(uri, config, timeout)?;
        last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = Some((key, addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

/// Wraps each transport of the agent in [`CancellableTransport`].
#[derive(Debug)]
struct Cancellable;

impl Connector<Box<dyn Transport>> for Cancellable {
    type Out = CancellableTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(CancellableTransport))
    }
}

/// A transport whose waits for input end early when the reading call is
/// cancelled. Without a cancel handle it is the transport it wraps.
#[derive(Debug)]
struct CancellableTransport(Box<dyn Transport>);

impl Transport for CancellableTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.0.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let until = UNTIL.with(std::cell::Cell::get);
        let watching = CANCEL.with(|c| c.borrow().is_some());
        if !watching && until.is_none() {
            return self.0.await_input(timeout);
        }
        // The real budget (the smaller of the remaining and the per-read
        // timeouts, and the read's own deadline), waited for in slices;
        // nothing is consumed by a slice that times out, so the next one
        // picks up where it left.
        let start = Instant::now();
        let real = timeout.for_read();
        loop {
            let now = Instant::now();
            let mut left = match real.after {
                Wait::Exact(d) => Some(d.saturating_sub(now.duration_since(start))),
                Wait::NotHappening => None,
            };
            if let Some(u) = until {
                let to_until = u.saturating_duration_since(now);
                left = Some(left.map_or(to_until, |l| l.min(to_until)));
            }
            let step = if watching { SLICE } else { Duration::MAX };
            let last = left.is_some_and(|l| l <= step);
            let slice = NextTimeout {
                after: Wait::Exact(left.map_or(step, |l| l.min(step))),
                reason: real.reason,
                per_read: None,
                per_write: timeout.per_write,
            };
            match self.0.await_input(slice) {
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
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

/// A response body, read into a buffer of its own.
pub(crate) struct UreqBody {
    reader: ureq::BodyReader<'static>,
    /// The reading call's cancel handle.
    cancel: Option<CancelHandle>,
    /// The request's per-read timeout.
    read_timeout: Duration,
    /// Inline, so it lives in the call's future on the caller's stack: a
    /// heap buffer per exchange was measurable per call.
    buf: [u8; 8 * 1024],
    /// Dropped after the reader (fields drop in order): the connection is
    /// back in the pool when the slot hears the exchange is done.
    _done: Done,
}

/// Tells the slot an exchange is done with, when dropped.
struct Done(Option<Arc<Slot>>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            slot.done();
        }
    }
}

/// A ureq agent: HTTP/1.1 with keep-alive, no redirects (a bearer token
/// never follows one), HTTP statuses as answers, not errors.
#[derive(Clone)]
pub(crate) struct Ureq {
    /// The agent, swapped for a fresh one once idle (closing its pooled
    /// connections, [`crate::reaper`]).
    slot: Arc<Slot>,
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
            // ureq's default is 128 KiB each way per connection (twice
            // over TLS: the socket's and the TLS layer's), allocated for
            // as long as the connection is pooled. MCP's heads are small
            // and bodies stream through: 32 KiB is room enough, and an idle
            // connection is closed anyway ([`crate::reaper`]).
            .input_buffer_size(BUFFER)
            .output_buffer_size(BUFFER)
            .max_response_header_size(MAX_HEAD)
            .timeout_per_read(Some(s.read_timeout))
            .user_agent(concat!("mcp-recovery/", env!("CARGO_PKG_VERSION")))
            .build();
        // One connector for every agent the reaper makes: its TLS
        // configuration, and the sessions cached in it, outlive a reap.
        let tls = SharedTls::default();
        let make = move || {
            ureq::Agent::with_parts(
                config.clone(),
                tls.clone().chain(Cancellable),
                Resolve::default(),
            )
        };
        Ureq {
            slot: Slot::new(s.pool_idle, make),
        }
    }

    fn on_idle(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        self.slot.on_idle(hook);
    }

    async fn send(&self, x: &Exchange<'_>) -> Result<Response<UreqBody>, TransportFailure> {
        let result = (|| {
            let req =
                build(x.request).map_err(|e| TransportFailure::not_sent(FailureKind::Other, e))?;
            // A listening stream (a GET) is never counted busy: it lives as
            // long as the session, and idle connections beside it must
            // still be closed.
            let (agent, done) = match x.request.method {
                mcp_recovery_core::Method::Get => (self.slot.agent(), Done(None)),
                _ => (self.slot.begin(), Done(Some(self.slot.clone()))),
            };
            let mut config = ureq::RequestExt::with_agent(req, &agent)
                .configure()
                .timeout_per_read(Some(x.read_timeout))
                // A head trickling in a byte at a time never trips the
                // per-read timeout: the head as a whole has the same limit.
                .timeout_recv_response(Some(x.read_timeout));
            if let Some(deadline) = x.deadline {
                // The call's end bounds every read of this exchange,
                // however the silences fall.
                let left = deadline.saturating_duration_since(Instant::now());
                config = config.timeout_global(Some(left.max(Duration::from_millis(1))));
            }
            let response = with_cancel(&x.cancel, || config.run()).map_err(failure)?;
            let (parts, body) = response.into_parts();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: UreqBody {
                    // The core enforces the body size limit; the reader has none.
                    reader: body.into_with_config().limit(u64::MAX).reader(),
                    cancel: x.cancel.clone(),
                    read_timeout: x.read_timeout,
                    buf: [0; 8 * 1024],
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
        UNTIL.with(|u| u.set(until));
        let r = self.read();
        UNTIL.with(|u| u.set(None));
        std::future::ready(r)
    }
}

impl UreqBody {
    fn read(&mut self) -> Result<Option<&[u8]>, TransportFailure> {
        let (reader, buf) = (&mut self.reader, &mut self.buf);
        let result = with_cancel(&self.cancel, || loop {
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
