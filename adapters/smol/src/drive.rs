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
use mcp_recovery_client::oauth::{Fetch, Fetched, OAuth};
use mcp_recovery_client::{
    answer, ready_deadline, Caller, Error, Memory, ProgressFn, Settings, Watch,
};
use mcp_recovery_core::{
    CallId, Dispatcher, ExchangeId, FailureKind, HttpRequest, Input, Job, Mail, Operation,
    ReadyStep, Step, Token, TransportFailure,
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
    pub oauth: Option<Arc<OAuth>>,
}

/// The adapter's HTTP for OAuth's discovery, registration and token
/// requests, for a blocking caller (OAuth runs off the executor).
pub(crate) struct SmolFetch {
    http: Http,
    read_timeout: Duration,
}

/// Metadata and token answers are small; more is an error, not a feast.
const OAUTH_BODY_LIMIT: usize = 1024 * 1024;

impl Fetch for SmolFetch {
    fn fetch(&self, request: &HttpRequest) -> Result<Fetched, TransportFailure> {
        smol::block_on(async {
            let (head, mut body) = self.http.send(request, self.read_timeout).await?;
            let mut bytes = Vec::new();
            while let Some(chunk) = body.chunk(self.read_timeout).await? {
                if bytes.len() + chunk.len() > OAUTH_BODY_LIMIT {
                    return Err(TransportFailure::after_send(
                        FailureKind::Other,
                        "answer too large",
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            let headers = head
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            Ok(Fetched {
                status: head.status().as_u16(),
                headers,
                body: bytes,
            })
        })
    }
}

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
            st.abandon(self.id, Instant::now(), &mut jobs);
            self.shared.unlock(st);
        }
        if !jobs.is_empty() {
            let shared = self.shared.clone();
            smol::spawn(async move {
                shared.run(&mut jobs, &mut Caller::none()).await;
            })
            .detach();
        }
    }
}

impl Shared {
    /// The shared state; OAuth (if configured) is installed over this
    /// client's own HTTP before the engine takes the settings.
    pub fn new(mut settings: Settings) -> Result<Self, Error> {
        let http = Http::new(settings.connect_timeout);
        let fetch = SmolFetch {
            http: http.clone(),
            read_timeout: settings.read_timeout,
        };
        let oauth = settings.install_oauth(Arc::new(fetch));
        settings.validate()?;
        let engine = settings.engine(Instant::now());
        Ok(Shared {
            state: Mutex::new(Dispatcher::new(engine, settings.observer.is_some())),
            event: Event::new(),
            http,
            settings,
            memory: Memory::default(),
            oauth,
        })
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

    pub fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        // Never held across an await, and no user code runs under it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every waiting future so it looks at its mailbox and watch again.
    pub fn wake_all(&self) {
        self.event.notify(usize::MAX);
    }

    /// Releases the lock, waking the waiters if the dispatcher says so.
    fn unlock(&self, mut st: MutexGuard<'_, Dispatcher>) {
        if st.take_woke() {
            self.wake_all();
        }
    }

    fn feed(&self, input: Input<'_>, jobs: &mut VecDeque<Job>) {
        let mut st = self.lock();
        st.feed(input, Instant::now(), jobs);
        self.unlock(st);
    }

    /// Does this future's jobs, including whatever they produce. Boxed:
    /// it recurses through `exchange` (a server request on a stream).
    fn run<'a>(
        self: &'a Arc<Self>,
        jobs: &'a mut VecDeque<Job>,
        me: &'a mut Caller<'_, '_>,
    ) -> BoxFuture<'a> {
        Box::pin(async move {
            while let Some(job) = jobs.pop_front() {
                match self.settings.local(job) {
                    Some(Job::Send { exchange, request }) => {
                        self.exchange(exchange, &request, false, me, jobs).await
                    }
                    Some(Job::Listen { exchange, request }) => {
                        // The listening stream is read by a task of its
                        // own for as long as the server keeps it open.
                        let shared = self.clone();
                        smol::spawn(async move {
                            let mut jobs = VecDeque::new();
                            let mut me = Caller::none();
                            shared
                                .exchange(exchange, &request, false, &mut me, &mut jobs)
                                .await;
                            shared.run(&mut jobs, &mut me).await;
                        })
                        .detach();
                    }
                    Some(Job::Refresh {
                        generation,
                        challenge,
                    }) => {
                        // A user's token source may block: keep it off the executor.
                        let shared = self.clone();
                        let outcome = smol::unblock(move || {
                            shared.settings.refresh(generation, challenge.as_deref())
                        })
                        .await;
                        let mut st = self.lock();
                        let now = Instant::now();
                        self.settings
                            .refreshed(&mut st, generation, &outcome, now, jobs);
                        self.unlock(st);
                    }
                    Some(Job::ServerRequest { id, method, params }) => {
                        let handler = self.settings.handler.clone();
                        let reply =
                            smol::unblock(move || answer(handler.as_deref(), &method, params))
                                .await;
                        let mut st = self.lock();
                        st.engine_mut().reply(id, reply);
                        st.pump(jobs);
                        self.unlock(st);
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
        me: &mut Caller<'_, '_>,
        jobs: &mut VecDeque<Job>,
    ) {
        let read_timeout = me
            .watch
            .read_timeout(self.settings.read_timeout, Instant::now());
        let (head, mut body) = match self.http.send(request, read_timeout).await {
            Ok(r) => r,
            // The call gave up (cancel, its own deadline): that is what cut
            // the exchange short, and its future tells the core so.
            Err(_) if mine && me.gave_up() => return,
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
            if mine && me.gave_up() {
                return; // dropping the body closes the connection
            }
            let timeout = me
                .watch
                .read_timeout(self.settings.read_timeout, Instant::now());
            let chunk = match body.chunk(timeout).await {
                Ok(c) => c,
                Err(_) if mine && me.gave_up() => return,
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
                st.feed(input, Instant::now(), jobs);
                let open = chunk.is_some() && st.engine().exchange_open(exchange);
                let progress = me.take_progress(&mut st);
                self.unlock(st);
                (open, progress)
            };
            me.progress(progress);
            if !open {
                // Done with this response; the caller runs the jobs it caused.
                // An event stream the core is done with is closed, not
                // kept (RELIABILITY.md, "Connections after an answer").
                return;
            }
            // A server request on this stream (elicitation, sampling) waits
            // for our answer before the stream goes on: answer it now.
            self.run(jobs, me).await;
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
        let id = {
            let mut st = self.lock();
            let id = st.call(op, Instant::now(), &mut jobs);
            self.unlock(st);
            id
        };
        let mut guard = CallGuard {
            shared: self,
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
                // Listening before the lock is released: a wake-up sent
                // after the dispatcher's checks cannot be missed.
                let listener = matches!(step, Step::Wait(_)).then(|| self.event.listen());
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
                Step::Wait(until) => wait(listener, until).await,
                _ => {}
            }
        }
    }

    /// Brings the session up (or waits for the future doing it), for at
    /// most the await-ready deadline.
    pub async fn initialize(self: &Arc<Self>) -> Result<(), Error> {
        let start = Instant::now();
        let deadline = ready_deadline(start, self.settings.config.await_ready);
        let mut jobs = VecDeque::new();
        let mut me = Caller::none();
        self.lock().connect(start, &mut jobs);
        loop {
            self.run(&mut jobs, &mut me).await;
            let (step, listener) = {
                let mut st = self.lock();
                let step = st.ready_step(start, deadline, Instant::now(), &mut jobs);
                let listener = matches!(step, ReadyStep::Wait(_)).then(|| self.event.listen());
                self.unlock(st);
                (step, listener)
            };
            match step {
                ReadyStep::Ready => return Ok(()),
                ReadyStep::Failed(e) => return Err(Error::Call(e)),
                ReadyStep::Wait(until) => wait(listener, Some(until)).await,
                _ => {}
            }
        }
    }

    /// Ends the session and sends the DELETE.
    pub async fn close(self: &Arc<Self>) {
        let mut jobs = VecDeque::new();
        {
            let mut st = self.lock();
            st.engine_mut().close(Instant::now());
            st.pump(&mut jobs);
            self.unlock(st);
        }
        self.run(&mut jobs, &mut Caller::none()).await;
    }
}

/// Waits for a wake-up or, at the latest, `until`.
async fn wait(listener: Option<event_listener::EventListener>, until: Option<Instant>) {
    let Some(listener) = listener else { return };
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
