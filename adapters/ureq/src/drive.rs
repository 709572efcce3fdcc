//! Carrying out the core's actions with blocking threads.
//!
//! There is no background thread. Every thread that feeds the engine drains
//! its actions: what belongs to a call (its sends, its progress, its end)
//! goes to that call's mailbox, where the call's own thread picks it up;
//! the rest (initialize, notifications, token refreshes, server requests) is
//! done by the thread that drained it, after it lets go of the lock. So the
//! thread whose call found the session gone performs the re-initialize while
//! the others wait on the condvar, woken by the engine's own deadlines.

use crate::{Error, Progress, ServerHandler, TokenSource};
use mcp_recovery_core::{
    Action, CallError, CallId, Engine, ExchangeId, FailureKind, HttpRequest, Input, Message,
    Operation, RpcError, TransportFailure,
};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Observer of the core's recovery actions.
pub(crate) type Observer = dyn Fn(&Action) + Send + Sync;

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub wake: Condvar,
    pub agent: ureq::Agent,
    pub read_timeout: Duration,
    pub handler: Option<Arc<dyn ServerHandler>>,
    pub observer: Option<Arc<Observer>>,
    pub tokens: Option<Arc<dyn TokenSource>>,
}

pub(crate) struct State {
    pub engine: Engine,
    mail: HashMap<CallId, Mailbox>,
    /// The last handshake outcome: `Ok(generation)` or the error.
    pub handshake: Option<Result<u64, CallError>>,
}

impl State {
    pub fn new(engine: Engine) -> Self {
        State {
            engine,
            mail: HashMap::new(),
            handshake: None,
        }
    }
}

#[derive(Default)]
struct Mailbox {
    sends: VecDeque<(ExchangeId, HttpRequest)>,
    progress: Vec<Value>,
    end: Option<Result<Value, Error>>,
}

pub(crate) enum Work {
    /// Perform an exchange; `own` when it carries this thread's call.
    Send(ExchangeId, HttpRequest, bool),
    Refresh(u64, Option<String>),
    Message(Message),
    Observe(Action),
}

/// What a call's thread watches besides its mailbox, and where its progress
/// goes: delivered while its response streams in, not after.
pub(crate) struct Watch<'a> {
    pub call: Option<CallId>,
    pub cancel: Option<&'a AtomicBool>,
    pub deadline: Option<Instant>,
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
}

impl Watch<'_> {
    /// A thread with no call of its own (initialize, close).
    pub fn none() -> Watch<'static> {
        Watch {
            call: None,
            cancel: None,
            deadline: None,
            progress: None,
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Acquire))
    }

    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }

    fn gave_up(&self) -> bool {
        self.cancelled() || self.expired(Instant::now())
    }

    /// Hands this call's queued progress to its callback, outside the lock.
    fn flush_progress(&mut self, mut st: MutexGuard<'_, State>) {
        let Some(m) = self.call.and_then(|id| st.mail.get_mut(&id)) else {
            return;
        };
        let items = std::mem::take(&mut m.progress);
        drop(st);
        if let Some(f) = self.progress.as_mut() {
            items.iter().filter_map(Progress::from_params).for_each(f);
        }
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // No user code runs under this lock, so a poisoned lock means a bug
        // in this crate's bookkeeping; the engine itself stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drains the engine's actions into mailboxes and this thread's `work`.
    pub fn pump(&self, st: &mut State, work: &mut VecDeque<Work>) {
        let mut woke = false;
        while let Some(action) = st.engine.poll_action() {
            match action {
                Action::Transmit {
                    exchange,
                    call: Some(call),
                    request,
                } => match st.mail.get_mut(&call) {
                    Some(m) => {
                        m.sends.push_back((exchange, request));
                        woke = true;
                    }
                    None => work.push_back(Work::Send(exchange, request, false)),
                },
                Action::Transmit {
                    exchange, request, ..
                } => work.push_back(Work::Send(exchange, request, false)),
                Action::Complete { call, result } => {
                    woke |= deliver(st, call, result.map_err(Error::Rpc));
                }
                Action::Surface { call, error } => {
                    woke |= deliver(st, call, Err(Error::Call(error)));
                }
                Action::ServerMessage {
                    call: Some(call),
                    message: Message::Notification { method, params },
                } if method == "notifications/progress" && st.mail.contains_key(&call) => {
                    if let Some(m) = st.mail.get_mut(&call) {
                        m.progress.push(params.unwrap_or(Value::Null));
                        woke = true;
                    }
                }
                Action::ServerMessage { message, .. } => work.push_back(Work::Message(message)),
                Action::Refresh401 {
                    generation,
                    challenge,
                } => work.push_back(Work::Refresh(generation, challenge)),
                Action::Abort { .. } => {} // the reader sees `exchange_open` turn false
                other => {
                    match &other {
                        Action::SessionReady { generation } => {
                            st.handshake = Some(Ok(*generation));
                            woke = true;
                        }
                        Action::SessionFailed { error, .. } => {
                            st.handshake = Some(Err(error.clone()));
                            woke = true;
                        }
                        _ => {}
                    }
                    if self.observer.is_some() {
                        work.push_back(Work::Observe(other));
                    }
                }
            }
        }
        if woke {
            self.wake.notify_all();
        }
    }

    /// Handles due deadlines; returns when to look again.
    fn tick(&self, st: &mut State, now: Instant, work: &mut VecDeque<Work>) -> Option<Instant> {
        let next = st.engine.poll_timeout().map(|(at, _)| at);
        if next.is_some_and(|at| at <= now) {
            st.engine.handle_timeout(now);
            self.pump(st, work);
            return Some(now);
        }
        next
    }

    /// Does this thread's work, including whatever the work produces.
    pub fn run(&self, work: &mut VecDeque<Work>, watch: &mut Watch<'_>) {
        while let Some(w) = work.pop_front() {
            match w {
                Work::Send(exchange, request, own) => {
                    self.exchange(exchange, &request, own, watch, work)
                }
                Work::Refresh(generation, challenge) => {
                    let outcome = match &self.tokens {
                        Some(t) => t.refresh(generation, challenge.as_deref()),
                        None => Err(crate::RefreshError::NeedsReauth("no token source".into())),
                    };
                    let mut st = self.lock();
                    let now = Instant::now();
                    match &outcome {
                        Ok(token) => st
                            .engine
                            .handle_input(Input::TokenRefreshed { generation, token }, now),
                        Err(e) => st.engine.handle_input(
                            Input::RefreshFailed {
                                generation,
                                needs_reauth: matches!(e, crate::RefreshError::NeedsReauth(_)),
                                message: &e.to_string(),
                            },
                            now,
                        ),
                    }
                    self.pump(&mut st, work);
                }
                Work::Message(Message::Request { id, method, params }) => {
                    let answer = match &self.handler {
                        Some(h) => h.request(&method, params),
                        None => Err(RpcError::new(-32601, format!("method not found: {method}"))),
                    };
                    let mut st = self.lock();
                    st.engine.reply(id, answer);
                    self.pump(&mut st, work);
                }
                Work::Message(Message::Notification { method, params }) => {
                    if let Some(h) = &self.handler {
                        h.notification(&method, params);
                    }
                }
                Work::Message(_) => {} // stray responses: nothing waits for them
                Work::Observe(action) => {
                    if let Some(o) = &self.observer {
                        o(&action);
                    }
                }
            }
        }
    }

    /// One HTTP exchange, fed to the engine as it arrives.
    fn exchange(
        &self,
        exchange: ExchangeId,
        request: &HttpRequest,
        own: bool,
        watch: &mut Watch<'_>,
        work: &mut VecDeque<Work>,
    ) {
        let fail = |failure: TransportFailure, stop: bool, work: &mut VecDeque<Work>| {
            if stop {
                // The call gave up (cancel, its own deadline): that is what
                // cut the read short, and its thread tells the core so.
                return;
            }
            let mut st = self.lock();
            let input = Input::Failed {
                exchange,
                failure: &failure,
            };
            st.engine.handle_input(input, Instant::now());
            self.pump(&mut st, work);
        };
        // The call's own deadline bounds every read, so a silent server
        // cannot hold the call past it.
        let mut read_timeout = self.read_timeout;
        if let Some(d) = watch.deadline {
            let left = d.saturating_duration_since(Instant::now());
            read_timeout = read_timeout.min(left.max(Duration::from_millis(1)));
        }
        let response = match build(request) {
            Ok(r) => ureq::RequestExt::with_agent(r, &self.agent)
                .configure()
                .timeout_per_read(Some(read_timeout))
                .run(),
            Err(e) => {
                return fail(
                    TransportFailure::not_sent(FailureKind::Other, e),
                    false,
                    work,
                )
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return fail(failure(e), own && watch.gave_up(), work),
        };
        let (parts, body) = response.into_parts();
        {
            let headers: Vec<(&str, &str)> = parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
                .collect();
            let mut st = self.lock();
            let input = Input::Head {
                exchange,
                status: parts.status.as_u16(),
                headers: &headers,
            };
            st.engine.handle_input(input, Instant::now());
            self.pump(&mut st, work);
        }
        // The core enforces the body size limit; the reader has none.
        let mut reader = body.into_with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if own && watch.gave_up() {
                return; // the call's thread cancels it; dropping closes the stream
            }
            match reader.read(&mut buf) {
                Ok(n) => {
                    let mut st = self.lock();
                    let now = Instant::now();
                    if n == 0 {
                        st.engine.handle_input(Input::End { exchange }, now);
                    } else {
                        let bytes = &buf[..n];
                        st.engine.handle_input(Input::Body { exchange, bytes }, now);
                    }
                    self.pump(&mut st, work);
                    let open = n > 0 && st.engine.exchange_open(exchange);
                    watch.flush_progress(st);
                    // A server request on this stream (elicitation,
                    // sampling) waits for our answer before the stream goes
                    // on: answer it now, not after the stream ends.
                    self.run(work, watch);
                    if !open {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return fail(failure(ureq::Error::from(e)), own && watch.gave_up(), work),
            }
        }
    }

    /// Runs one call to its end on this thread.
    pub fn call(&self, op: Operation, watch: &mut Watch<'_>) -> Result<Value, Error> {
        let mut work = VecDeque::new();
        let id = {
            let mut st = self.lock();
            let id = st.engine.call(op, Instant::now());
            st.mail.insert(id, Mailbox::default());
            self.pump(&mut st, &mut work);
            id
        };
        watch.call = Some(id);
        let mut cancel_sent = false;
        let mut timed_out = false;
        loop {
            self.run(&mut work, watch);
            let mut st = self.lock();
            let Some(m) = st.mail.get_mut(&id) else {
                return Err(Error::Call(CallError::Closed));
            };
            if let Some((exchange, request)) = m.sends.pop_front() {
                work.push_back(Work::Send(exchange, request, true));
                continue;
            }
            if !m.progress.is_empty() {
                watch.flush_progress(st);
                continue;
            }
            if let Some(end) = m.end.take() {
                st.mail.remove(&id);
                return match end {
                    Err(Error::Call(CallError::Cancelled)) if timed_out => Err(Error::Timeout),
                    other => other,
                };
            }
            let now = Instant::now();
            if !cancel_sent && (watch.cancelled() || watch.expired(now)) {
                cancel_sent = true;
                timed_out = !watch.cancelled();
                st.engine.handle_input(Input::Cancel { call: id }, now);
                self.pump(&mut st, &mut work);
                continue;
            }
            let next = self.tick(&mut st, now, &mut work);
            if !work.is_empty() {
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

    /// Brings the session up (or waits for the thread doing it).
    pub fn initialize(&self, deadline: Instant) -> Result<(), Error> {
        let mut work = VecDeque::new();
        {
            let mut st = self.lock();
            if st.engine.is_ready() {
                return Ok(());
            }
            st.handshake = None;
            st.engine.connect(Instant::now());
            self.pump(&mut st, &mut work);
        }
        loop {
            self.run(&mut work, &mut Watch::none());
            let mut st = self.lock();
            if st.engine.is_ready() {
                return Ok(());
            }
            if let Some(Err(e)) = st.handshake.take() {
                return Err(Error::Call(e));
            }
            let now = Instant::now();
            if now >= deadline {
                let waited = Duration::ZERO;
                return Err(Error::Call(CallError::ReconnectTimeout { waited }));
            }
            let next = self
                .tick(&mut st, now, &mut work)
                .map_or(deadline, |t| t.min(deadline));
            if work.is_empty() {
                let wait = next.saturating_duration_since(now);
                drop(
                    self.wake
                        .wait_timeout(st, wait)
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
        }
    }
}

fn deliver(st: &mut State, call: CallId, end: Result<Value, Error>) -> bool {
    match st.mail.get_mut(&call) {
        Some(m) => {
            m.end = Some(end);
            true
        }
        None => false,
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
