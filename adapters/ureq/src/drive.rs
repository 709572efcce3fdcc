//! Carrying out the core's actions with blocking threads.
//!
//! There is no background thread. The [`Dispatcher`] puts what belongs to a
//! call (its sends, its progress, its end) in that call's mailbox, where
//! the call's own thread picks it up; the rest ([`Job`]s: initialize,
//! notifications, token refreshes, server requests) is done by the thread
//! that drained it, after it lets go of the lock. So the thread whose call
//! found the session gone performs the re-initialize while the others wait
//! on the condvar, woken by the engine's own deadlines.

use mcp_recovery_client::{answer, Error, Progress, ProgressFn, RefreshError, Settings, Watch};
use mcp_recovery_core::{
    CallError, Dispatcher, ExchangeId, FailureKind, HttpRequest, Input, Job, Mail, Operation,
    TransportFailure,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

pub(crate) struct Shared {
    state: Mutex<Dispatcher>,
    wake: Condvar,
    agent: ureq::Agent,
    pub settings: Settings,
    pub memory: mcp_recovery_client::Memory,
}

/// The call this thread runs, if any: whose reads it may cut short, whose
/// progress it hands over while the response streams in.
struct Own<'w, 'p> {
    call: Option<mcp_recovery_core::CallId>,
    watch: &'w Watch,
    progress: Option<&'w mut ProgressFn<'p>>,
}

impl Own<'_, '_> {
    fn gave_up(&self) -> bool {
        self.call.is_some() && self.watch.gave_up(Instant::now())
    }

    fn progress(&mut self, items: Vec<Value>) {
        if let Some(f) = self.progress.as_mut() {
            items.iter().filter_map(Progress::from_params).for_each(f);
        }
    }
}

const NO_WATCH: Watch = Watch {
    cancel: None,
    deadline: None,
};

impl Shared {
    pub fn new(dispatcher: Dispatcher, agent: ureq::Agent, settings: Settings) -> Self {
        Shared {
            state: Mutex::new(dispatcher),
            wake: Condvar::new(),
            agent,
            settings,
            memory: Default::default(),
        }
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
        self.wake.notify_all();
    }

    fn pump(&self, st: &mut Dispatcher, jobs: &mut VecDeque<Job>) {
        if st.pump(jobs) {
            self.wake.notify_all();
        }
    }

    /// Feeds one input and drains what it caused.
    fn feed(&self, input: Input<'_>, jobs: &mut VecDeque<Job>) {
        let mut st = self.lock();
        st.engine_mut().handle_input(input, Instant::now());
        self.pump(&mut st, jobs);
    }

    /// Does this thread's jobs, including whatever they produce.
    fn run(&self, jobs: &mut VecDeque<Job>, own: &mut Own<'_, '_>) {
        while let Some(job) = jobs.pop_front() {
            match job {
                Job::Send { exchange, request } => {
                    self.exchange(exchange, &request, false, own, jobs)
                }
                Job::Refresh {
                    generation,
                    challenge,
                } => {
                    let outcome = match &self.settings.tokens {
                        Some(t) => t.refresh(generation, challenge.as_deref()),
                        None => Err(RefreshError::NeedsReauth("no token source".into())),
                    };
                    let message = outcome.as_ref().err().map(ToString::to_string);
                    let input = match &outcome {
                        Ok(token) => Input::TokenRefreshed { generation, token },
                        Err(e) => Input::RefreshFailed {
                            generation,
                            needs_reauth: matches!(e, RefreshError::NeedsReauth(_)),
                            message: message.as_deref().unwrap_or_default(),
                        },
                    };
                    self.feed(input, jobs);
                }
                Job::ServerRequest { id, method, params } => {
                    let reply = answer(self.settings.handler.as_deref(), &method, params);
                    let mut st = self.lock();
                    st.engine_mut().reply(id, reply);
                    self.pump(&mut st, jobs);
                }
                Job::Notification { method, params } => {
                    if let Some(h) = &self.settings.handler {
                        h.notification(&method, params);
                    }
                }
                Job::Observe(action) => {
                    if let Some(o) = &self.settings.observer {
                        o(&action);
                    }
                }
                _ => {}
            }
        }
    }

    /// One HTTP exchange, fed to the engine as it arrives. `mine`: it
    /// carries this thread's own call.
    fn exchange(
        &self,
        exchange: ExchangeId,
        request: &HttpRequest,
        mine: bool,
        own: &mut Own<'_, '_>,
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
        let read_timeout = own
            .watch
            .read_timeout(self.settings.read_timeout, Instant::now());
        let response = match build(request) {
            Ok(r) => ureq::RequestExt::with_agent(r, &self.agent)
                .configure()
                .timeout_per_read(Some(read_timeout))
                .run(),
            Err(e) => return fail(TransportFailure::not_sent(FailureKind::Other, e), jobs),
        };
        let response = match response {
            Ok(r) => r,
            // The call gave up (cancel, its own deadline): that is what cut
            // the exchange short, and its thread tells the core so.
            Err(_) if mine && own.gave_up() => return,
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
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if mine && own.gave_up() {
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
                    st.engine_mut().handle_input(input, Instant::now());
                    self.pump(&mut st, jobs);
                    let open = n > 0 && st.engine().exchange_open(exchange);
                    let progress = own.call.map(|c| st.take_progress(c)).unwrap_or_default();
                    drop(st);
                    own.progress(progress);
                    // A server request on this stream (elicitation,
                    // sampling) waits for our answer before the stream goes
                    // on: answer it now, not after the stream ends.
                    self.run(jobs, own);
                    if !open {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if mine && own.gave_up() => return,
                Err(e) => return fail(failure(ureq::Error::from(e)), jobs),
            }
        }
    }

    /// Runs one call to its end on this thread.
    pub fn call(
        &self,
        op: Operation,
        watch: &Watch,
        progress: Option<&mut ProgressFn<'_>>,
    ) -> Result<Value, Error> {
        let mut jobs = VecDeque::new();
        let id = self.lock().call(op, Instant::now(), &mut jobs);
        let mut own = Own {
            call: Some(id),
            watch,
            progress,
        };
        let mut cancel_sent = false;
        loop {
            self.run(&mut jobs, &mut own);
            let mut st = self.lock();
            match st.next_mail(id) {
                Some(Mail::Send { exchange, request }) => {
                    drop(st);
                    self.exchange(exchange, &request, true, &mut own, &mut jobs);
                    continue;
                }
                Some(Mail::Progress(p)) => {
                    drop(st);
                    own.progress(vec![p]);
                    continue;
                }
                Some(Mail::End(end)) => return watch.finish(end),
                Some(_) | None => {}
            }
            let now = Instant::now();
            if !cancel_sent && watch.gave_up(now) {
                cancel_sent = true;
                st.engine_mut()
                    .handle_input(Input::Cancel { call: id }, now);
                self.pump(&mut st, &mut jobs);
                continue;
            }
            let (next, woke) = st.tick(now, &mut jobs);
            if woke {
                self.wake.notify_all();
            }
            if !jobs.is_empty() || woke {
                continue;
            }
            let until = match (next, watch.deadline.filter(|_| !cancel_sent)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            drop(match until {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.wake
                        .wait_timeout(st, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
            });
        }
    }

    /// Brings the session up (or waits for the thread doing it), for at
    /// most the await-ready deadline.
    pub fn initialize(&self) -> Result<(), Error> {
        let start = Instant::now();
        let wait = self.settings.config.await_ready;
        let deadline = start
            .checked_add(wait)
            .or_else(|| start.checked_add(std::time::Duration::from_secs(365 * 86400)))
            .unwrap_or(start);
        let mut jobs = VecDeque::new();
        let mut own = Own {
            call: None,
            watch: &NO_WATCH,
            progress: None,
        };
        {
            let mut st = self.lock();
            if st.engine().is_ready() {
                return Ok(());
            }
            if st.connect(start, &mut jobs) {
                self.wake.notify_all();
            }
        }
        loop {
            self.run(&mut jobs, &mut own);
            let mut st = self.lock();
            if st.engine().is_ready() {
                return Ok(());
            }
            if let Some(Err(e)) = st.handshake() {
                return Err(Error::Call(e.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                let waited = now - start;
                return Err(Error::Call(CallError::ReconnectTimeout { waited }));
            }
            let (next, woke) = st.tick(now, &mut jobs);
            if woke {
                self.wake.notify_all();
            }
            if jobs.is_empty() {
                let wait = next
                    .map_or(deadline, |t| t.min(deadline))
                    .saturating_duration_since(now);
                drop(self.wake.wait_timeout(st, wait));
            }
        }
    }

    /// Ends the session and sends the DELETE.
    pub fn close(&self) {
        let mut jobs = VecDeque::new();
        {
            let mut st = self.lock();
            st.engine_mut().close(Instant::now());
            self.pump(&mut st, &mut jobs);
        }
        let mut own = Own {
            call: None,
            watch: &NO_WATCH,
            progress: None,
        };
        self.run(&mut jobs, &mut own);
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
