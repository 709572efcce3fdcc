//! Carrying out the core's actions with async tasks.
//!
//! The same shape as the blocking client: no background task of ours. The
//! [`Dispatcher`] puts a call's sends, progress and end in its mailbox,
//! where the call's own future picks them up; [`Job`]s (initialize,
//! notifications, refreshes, server requests) are done by the future that
//! drained them. Waiting is an `event-listener` event raced against an
//! `async-io` timer set to the core's next deadline: no polling loop.
//! Dropping a call's future cancels the call (see [`CallGuard`]).

use crate::http::Http;
use async_io::Timer;
use event_listener::Event;
use futures_lite::future;
use mcp_recovery_client::{
    answer, Error, Memory, Progress, ProgressFn, RefreshError, Settings, Watch,
};
use mcp_recovery_core::{
    CallError, CallId, Dispatcher, ExchangeId, HttpRequest, Input, Job, Mail, Operation,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub(crate) struct Shared {
    state: Mutex<Dispatcher>,
    event: Event,
    http: Http,
    pub settings: Settings,
    pub memory: Memory,
}

/// The call this future runs, if any: whose reads it may cut short, whose
/// progress it hands over while the response streams in.
pub(crate) struct Own<'w, 'p> {
    call: Option<CallId>,
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

type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Ends the call if its future is dropped before the call ended: the core
/// gets a cancel, and what that sends (`notifications/cancelled`) goes out
/// on a detached task, since a destructor cannot wait.
struct CallGuard<'a> {
    shared: &'a Arc<Shared>,
    id: CallId,
    done: bool,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut jobs = VecDeque::new();
        {
            let mut st = self.shared.lock();
            st.engine_mut()
                .handle_input(Input::Cancel { call: self.id }, Instant::now());
            self.shared.pump(&mut st, &mut jobs);
            // Empty the mailbox so it goes away with the call.
            while let Some(mail) = st.next_mail(self.id) {
                if matches!(mail, Mail::End(_)) {
                    break;
                }
            }
        }
        if !jobs.is_empty() {
            let shared = self.shared.clone();
            smol::spawn(async move {
                let mut own = Own {
                    call: None,
                    watch: &NO_WATCH,
                    progress: None,
                };
                shared.run(&mut jobs, &mut own).await;
            })
            .detach();
        }
    }
}

impl Shared {
    pub fn new(dispatcher: Dispatcher, settings: Settings) -> Self {
        Shared {
            state: Mutex::new(dispatcher),
            event: Event::new(),
            http: Http::new(settings.connect_timeout),
            settings,
            memory: Memory::default(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        // Never held across an await, and no user code runs under it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting future so it looks at its mailbox and watch again.
    pub fn wake_all(&self) {
        self.event.notify(usize::MAX);
    }

    fn pump(&self, st: &mut Dispatcher, jobs: &mut VecDeque<Job>) {
        if st.pump(jobs) {
            self.wake_all();
        }
    }

    fn feed(&self, input: Input<'_>, jobs: &mut VecDeque<Job>) {
        let mut st = self.lock();
        st.engine_mut().handle_input(input, Instant::now());
        self.pump(&mut st, jobs);
    }

    /// Does this future's jobs, including whatever they produce. Boxed:
    /// it recurses through `exchange` (a server request on a stream).
    fn run<'a>(
        self: &'a Arc<Self>,
        jobs: &'a mut VecDeque<Job>,
        own: &'a mut Own<'_, '_>,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            while let Some(job) = jobs.pop_front() {
                match job {
                    Job::Send { exchange, request } => {
                        self.exchange(exchange, &request, false, own, jobs).await
                    }
                    Job::Refresh {
                        generation,
                        challenge,
                    } => {
                        let tokens = self.settings.tokens.clone();
                        // A user's token source may block: keep it off the executor.
                        let outcome = smol::unblock(move || match tokens {
                            Some(t) => t.refresh(generation, challenge.as_deref()),
                            None => Err(RefreshError::NeedsReauth("no token source".into())),
                        })
                        .await;
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
                        let handler = self.settings.handler.clone();
                        let reply =
                            smol::unblock(move || answer(handler.as_deref(), &method, params))
                                .await;
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
        })
    }

    /// One HTTP exchange, fed to the engine as it arrives. `mine`: it
    /// carries this future's own call.
    async fn exchange(
        self: &Arc<Self>,
        exchange: ExchangeId,
        request: &HttpRequest,
        mine: bool,
        own: &mut Own<'_, '_>,
        jobs: &mut VecDeque<Job>,
    ) {
        let read_timeout = own
            .watch
            .read_timeout(self.settings.read_timeout, Instant::now());
        let (head, mut body) = match self.http.send(request, read_timeout).await {
            Ok(r) => r,
            // The call gave up (cancel, its own deadline): that is what cut
            // the exchange short, and its future tells the core so.
            Err(_) if mine && own.gave_up() => return,
            Err(failure) => {
                return self.feed(
                    Input::Failed {
                        exchange,
                        failure: &failure,
                    },
                    jobs,
                )
            }
        };
        {
            let headers: Vec<(&str, &str)> = head
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
                .collect();
            let input = Input::Head {
                exchange,
                status: head.status().as_u16(),
                headers: &headers,
            };
            self.feed(input, jobs);
        }
        loop {
            if mine && own.gave_up() {
                return; // dropping the body closes the connection
            }
            let timeout = own
                .watch
                .read_timeout(self.settings.read_timeout, Instant::now());
            let chunk = match body.chunk(timeout).await {
                Ok(c) => c,
                Err(_) if mine && own.gave_up() => return,
                Err(failure) => {
                    return self.feed(
                        Input::Failed {
                            exchange,
                            failure: &failure,
                        },
                        jobs,
                    )
                }
            };
            let (open, progress) = {
                let mut st = self.lock();
                let input = match &chunk {
                    None => Input::End { exchange },
                    Some(bytes) => Input::Body { exchange, bytes },
                };
                st.engine_mut().handle_input(input, Instant::now());
                self.pump(&mut st, jobs);
                let open = chunk.is_some() && st.engine().exchange_open(exchange);
                let progress = own.call.map(|c| st.take_progress(c)).unwrap_or_default();
                (open, progress)
            };
            own.progress(progress);
            // A server request on this stream (elicitation, sampling) waits
            // for our answer before the stream goes on: answer it now.
            self.run(jobs, own).await;
            if !open {
                return;
            }
        }
    }

    /// Runs one call to its end. Dropping the future cancels the call.
    pub async fn call(
        self: &Arc<Self>,
        op: Operation,
        watch: &Watch,
        progress: Option<&mut ProgressFn<'_>>,
    ) -> Result<Value, Error> {
        let mut jobs = VecDeque::new();
        let id = self.lock().call(op, Instant::now(), &mut jobs);
        let mut guard = CallGuard {
            shared: self,
            id,
            done: false,
        };
        let mut own = Own {
            call: Some(id),
            watch,
            progress,
        };
        let mut cancel_sent = false;
        loop {
            self.run(&mut jobs, &mut own).await;
            let (mail, listener, until) = {
                let mut st = self.lock();
                let mail = st.next_mail(id);
                let now = Instant::now();
                let mut until = None;
                let mut listener = None;
                if mail.is_none() {
                    if !cancel_sent && watch.gave_up(now) {
                        cancel_sent = true;
                        st.engine_mut()
                            .handle_input(Input::Cancel { call: id }, now);
                        self.pump(&mut st, &mut jobs);
                        continue;
                    }
                    let (next, woke) = st.tick(now, &mut jobs);
                    if woke {
                        self.wake_all();
                    }
                    if !jobs.is_empty() || woke {
                        continue;
                    }
                    until = match (next, watch.deadline.filter(|_| !cancel_sent)) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    // Listening before the lock is released: a wake-up sent
                    // after our checks cannot be missed.
                    listener = Some(self.event.listen());
                }
                (mail, listener, until)
            };
            match mail {
                Some(Mail::Send { exchange, request }) => {
                    self.exchange(exchange, &request, true, &mut own, &mut jobs)
                        .await
                }
                Some(Mail::Progress(p)) => own.progress(vec![p]),
                Some(Mail::End(end)) => {
                    guard.done = true;
                    return watch.finish(end);
                }
                Some(_) => {}
                None => {
                    if let Some(listener) = listener {
                        wait(listener, until).await;
                    }
                }
            }
        }
    }

    /// Brings the session up (or waits for the future doing it), for at
    /// most the await-ready deadline.
    pub async fn initialize(self: &Arc<Self>) -> Result<(), Error> {
        let start = Instant::now();
        let deadline = start
            .checked_add(self.settings.config.await_ready)
            .or_else(|| start.checked_add(Duration::from_secs(365 * 86400)))
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
                self.wake_all();
            }
        }
        loop {
            self.run(&mut jobs, &mut own).await;
            let (listener, until) = {
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
                    self.wake_all();
                }
                if !jobs.is_empty() {
                    continue;
                }
                (
                    self.event.listen(),
                    next.map_or(deadline, |t| t.min(deadline)),
                )
            };
            wait(listener, Some(until)).await;
        }
    }

    /// Ends the session and sends the DELETE.
    pub async fn close(self: &Arc<Self>) {
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
        self.run(&mut jobs, &mut own).await;
    }
}

/// Waits for a wake-up or, at the latest, `until`.
async fn wait(listener: event_listener::EventListener, until: Option<Instant>) {
    match until {
        Some(at) => {
            future::or(listener, async {
                Timer::at(at).await;
            })
            .await
        }
        None => listener.await,
    }
}
