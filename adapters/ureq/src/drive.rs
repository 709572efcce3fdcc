//! Carrying out the core's actions with blocking threads.
//!
//! There is no background thread. The [`Dispatcher`] puts what belongs to a
//! call (its sends, its progress, its end) in that call's mailbox, where
//! the call's own thread picks it up; the rest ([`Job`]s: initialize,
//! notifications, token refreshes, server requests) is done by the thread
//! that drained it, after it lets go of the lock. So the thread whose call
//! found the session gone performs the re-initialize while the others wait
//! on the condvar, woken by the engine's own deadlines. Every decision,
//! down to how long to wait, is the dispatcher's.

use mcp_recovery_client::oauth::{Fetch, Fetched, OAuth};
use mcp_recovery_client::{
    answer, ready_deadline, Caller, Error, Memory, ProgressFn, Settings, Watch,
};
use mcp_recovery_core::{
    Dispatcher, ExchangeId, FailureKind, HttpRequest, Input, Job, Mail, Operation, ReadyStep, Step,
    Token, TransportFailure,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

pub(crate) struct Shared {
    state: Mutex<Dispatcher>,
    wake: Condvar,
    /// Threads asleep on `wake`: a notify with none is a wasted system call
    /// (std's futex condvar makes one every time), two per call otherwise.
    /// Changed and read under the lock (see [`Shared::notify`]).
    sleepers: AtomicUsize,
    agent: ureq::Agent,
    pub settings: Settings,
    pub memory: Memory,
    pub oauth: Option<Arc<OAuth>>,
    /// Itself, for the listening stream's thread.
    me: Weak<Shared>,
}

/// The adapter's HTTP for OAuth's discovery, registration and token
/// requests: whole answers, no redirects (the agent follows none).
pub(crate) struct UreqFetch(pub ureq::Agent);

impl Fetch for UreqFetch {
    fn fetch(&self, request: &HttpRequest) -> Result<Fetched, TransportFailure> {
        let req = build(request).map_err(|e| TransportFailure::not_sent(FailureKind::Other, e))?;
        let response = ureq::RequestExt::with_agent(req, &self.0)
            .run()
            .map_err(failure)?;
        let (parts, body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = body
            .into_with_config()
            .limit(OAUTH_BODY_LIMIT)
            .read_to_vec()
            .map_err(failure)?;
        Ok(Fetched {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }
}

/// Metadata and token answers are small; more is an error, not a feast.
const OAUTH_BODY_LIMIT: u64 = 1024 * 1024;

impl Shared {
    pub fn new(
        dispatcher: Dispatcher,
        agent: ureq::Agent,
        settings: Settings,
        oauth: Option<Arc<OAuth>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Shared {
            state: Mutex::new(dispatcher),
            wake: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            agent,
            settings,
            memory: Memory::default(),
            oauth,
            me: me.clone(),
        })
    }

    /// Uses `token` from now on; calls waiting for one go on with it.
    pub fn set_token(&self, token: Token) {
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
        self.run(&mut jobs, &mut Caller::none());
    }

    pub fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        // No user code runs under this lock, so a poisoned lock means a bug
        // in this crate's bookkeeping; the engine itself stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting thread so it looks at its mailbox and watch
    /// again. Taking the lock orders this with a waiter's checks.
    pub fn wake_all(&self) {
        drop(self.lock());
        self.notify();
    }

    /// Wakes the sleepers, if any. A thread counts itself while it holds
    /// the lock, before the condvar releases it: whoever changed the state
    /// under the lock afterwards sees it counted.
    fn notify(&self) {
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.wake.notify_all();
        }
    }

    /// Releases the lock, waking the waiters if the dispatcher says so.
    fn unlock(&self, mut st: MutexGuard<'_, Dispatcher>) {
        if st.take_woke() {
            self.notify();
        }
    }

    fn feed(&self, input: Input<'_>, jobs: &mut VecDeque<Job>) {
        let mut st = self.lock();
        st.feed(input, Instant::now(), jobs);
        self.unlock(st);
    }

    /// Does this thread's jobs, including whatever they produce.
    fn run(&self, jobs: &mut VecDeque<Job>, me: &mut Caller<'_, '_>) {
        while let Some(job) = jobs.pop_front() {
            match self.settings.local(job) {
                Some(Job::Send { exchange, request }) => {
                    self.exchange(exchange, &request, false, me, jobs)
                }
                Some(Job::Listen { exchange, request }) => self.listen(exchange, request, jobs),
                Some(Job::Refresh {
                    generation,
                    challenge,
                }) => {
                    let outcome = self.settings.refresh(generation, challenge.as_deref());
                    let mut st = self.lock();
                    let now = Instant::now();
                    self.settings
                        .refreshed(&mut st, generation, &outcome, now, jobs);
                    self.unlock(st);
                }
                Some(Job::ServerRequest { id, method, params }) => {
                    let reply = answer(self.settings.handler.as_deref(), &method, params);
                    let mut st = self.lock();
                    st.engine_mut().reply(id, reply);
                    st.pump(jobs);
                    self.unlock(st);
                }
                _ => {}
            }
        }
    }

    /// Reads the listening stream on a thread of its own (the one thread
    /// this client starts): it lives as long as the server keeps it open,
    /// or until its read timeout, after which the core opens it again.
    fn listen(&self, exchange: ExchangeId, request: HttpRequest, jobs: &mut VecDeque<Job>) {
        let Some(shared) = self.me.upgrade() else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("mcp-recovery-listen".into())
            .spawn(move || {
                let mut jobs = VecDeque::new();
                let mut me = Caller::none();
                shared.exchange(exchange, &request, false, &mut me, &mut jobs);
                shared.run(&mut jobs, &mut me);
            });
        if let Err(e) = spawned {
            let failure = TransportFailure::not_sent(FailureKind::Other, e.to_string());
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
    /// carries this thread's own call, whose cancel may cut it short.
    fn exchange(
        &self,
        exchange: ExchangeId,
        request: &HttpRequest,
        mine: bool,
        me: &mut Caller<'_, '_>,
        jobs: &mut VecDeque<Job>,
    ) {
        let fail = |failure: TransportFailure, jobs: &mut VecDeque<Job>| {
            self.feed(
                Input::Failed {
                    exchange,
                    failure: &failure,
                },
                jobs,
            )
        };
        let read_timeout = me
            .watch
            .read_timeout(self.settings.read_timeout, Instant::now());
        let response = match build(request) {
            Ok(r) => ureq::RequestExt::with_agent(r, &self.agent)
                .configure()
                .timeout_per_read(Some(read_timeout))
                // A head trickling in a byte at a time never trips the
                // per-read timeout: the head as a whole has the same limit.
                .timeout_recv_response(Some(read_timeout))
                .run(),
            Err(e) => return fail(TransportFailure::not_sent(FailureKind::Other, e), jobs),
        };
        let response = match response {
            Ok(r) => r,
            // The call gave up (cancel, its own deadline): that is what cut
            // the exchange short, and its thread tells the core so.
            Err(_) if mine && me.gave_up() => return,
            Err(e) => return fail(failure(e), jobs),
        };
        let (parts, body) = response.into_parts();
        let headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let status = parts.status.as_u16();
        self.feed(
            Input::Head {
                exchange,
                status,
                headers: &headers,
            },
            jobs,
        );
        // The core enforces the body size limit; the reader has none.
        let mut reader = body.into_with_config().limit(u64::MAX).reader();
        // On the stack: a heap buffer per exchange was measurable per call.
        let mut buf = [0u8; 8 * 1024];
        loop {
            if mine && me.gave_up() {
                return; // dropping the reader closes the connection
            }
            match reader.read(&mut buf) {
                Ok(n) => {
                    let mut st = self.lock();
                    let input = match n {
                        0 => Input::End { exchange },
                        n => Input::Body {
                            exchange,
                            bytes: &buf[..n],
                        },
                    };
                    st.feed(input, Instant::now(), jobs);
                    let open = n > 0 && st.engine().exchange_open(exchange);
                    let progress = me.take_progress(&mut st);
                    self.unlock(st);
                    me.progress(progress);
                    if !open {
                        // Done with this response: its connection goes back
                        // to the pool if it was read to its end (a JSON
                        // answer), before the jobs it caused (the
                        // handshake's `initialized`...) need one. An event
                        // stream the core is done with is closed instead
                        // (RELIABILITY.md, "Connections after an answer").
                        return;
                    }
                    // A server request on this stream (elicitation,
                    // sampling) waits for our answer before the stream goes
                    // on: answer it now, not after the stream ends.
                    self.run(jobs, me);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if mine && me.gave_up() => return,
                Err(e) => return fail(failure(ureq::Error::from(e)), jobs),
            }
        }
    }

    /// Sleeps on the condvar until woken or `until`.
    fn wait(&self, st: MutexGuard<'_, Dispatcher>, until: Option<Instant>) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let st = match until {
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                self.wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
        };
        // Still under the lock.
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        drop(st);
    }

    /// Runs one call to its end on this thread.
    pub fn call(
        &self,
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
        let mut me = Caller {
            call: Some(id),
            watch,
            progress,
        };
        loop {
            self.run(&mut jobs, &mut me);
            let mut st = self.lock();
            let now = Instant::now();
            let step = st.step(id, watch.gave_up(now), watch.deadline, now, &mut jobs);
            if st.take_woke() {
                self.notify();
            }
            match step {
                Step::Mail(Mail::Send { exchange, request }) => {
                    drop(st);
                    self.exchange(exchange, &request, true, &mut me, &mut jobs);
                }
                Step::Mail(Mail::Progress(p)) => {
                    drop(st);
                    me.progress(vec![p]);
                }
                Step::Mail(Mail::End(end)) => return watch.finish(end),
                Step::Wait(until) => self.wait(st, until),
                _ => {}
            }
        }
    }

    /// Brings the session up (or waits for the thread doing it), for at
    /// most the await-ready deadline.
    pub fn initialize(&self) -> Result<(), Error> {
        let start = Instant::now();
        let deadline = ready_deadline(start, self.settings.config.await_ready);
        let mut jobs = VecDeque::new();
        let mut me = Caller::none();
        let mut st = self.lock();
        st.connect(start, &mut jobs);
        loop {
            let step = st.ready_step(start, deadline, Instant::now(), &mut jobs);
            if st.take_woke() {
                self.notify();
            }
            match step {
                ReadyStep::Ready => return Ok(()),
                ReadyStep::Failed(e) => return Err(Error::Call(e)),
                ReadyStep::Wait(until) => self.wait(st, Some(until)),
                _ => {
                    drop(st);
                    self.run(&mut jobs, &mut me);
                }
            }
            st = self.lock();
        }
    }

    /// Ends the session and sends the DELETE.
    pub fn close(&self) {
        let mut jobs = VecDeque::new();
        {
            let mut st = self.lock();
            st.engine_mut().close(Instant::now());
            st.pump(&mut jobs);
            self.unlock(st);
        }
        self.run(&mut jobs, &mut Caller::none());
    }
}

fn build(request: &HttpRequest) -> Result<ureq::http::Request<&[u8]>, String> {
    let mut b = ureq::http::Request::builder()
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
        _ => TransportFailure::after_send(FailureKind::Other, message),
    }
}
