//! Many callers, one [`Engine`]: routes each action to the call it belongs
//! to, so any number of threads or tasks can share one session.
//!
//! A caller registers its call with [`Dispatcher::call`] and then reads its
//! own mailbox ([`Dispatcher::next_mail`]): the requests it must send, the
//! progress the server reported, and finally its one end. Everything that
//! belongs to no call (initialize, notifications, token refreshes, server
//! requests) comes out of [`Dispatcher::pump`] as [`Job`]s for whoever
//! drained it. So the caller whose request found the session gone performs
//! the re-initialize while the others wait, and no background thread or
//! task is needed. Still sans-IO: the adapters (blocking threads with a
//! condvar, async tasks with an event) decide how to wait.

use crate::error::CallError;
use crate::http::HttpRequest;
use crate::jsonrpc::{Message, RequestId, RpcError};
use crate::operation::Operation;
use crate::policy::{Action, CallId, Engine, ExchangeId, SessionGeneration, TokenGeneration};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// How a call ended: the server's answer, or why there is none.
pub type CallEnd = Result<Result<Value, RpcError>, CallError>;

/// Work that belongs to no call, for whoever drained it. Do it outside any
/// lock around the dispatcher, then feed the outcome back.
#[derive(Debug)]
#[non_exhaustive]
pub enum Job {
    /// Perform this exchange (initialize, a notification, a reply, DELETE).
    Send {
        /// Report its response under this id.
        exchange: ExchangeId,
        /// What to send.
        request: HttpRequest,
    },
    /// Open the long-lived GET stream and read it in the background (a
    /// thread, a task), reporting it like any exchange; it may stay open
    /// for as long as the session lives.
    Listen {
        /// Report its response under this id.
        exchange: ExchangeId,
        /// The GET to send.
        request: HttpRequest,
    },
    /// Refresh the token of `generation`; answer with
    /// [`Input::TokenRefreshed`](crate::Input::TokenRefreshed) or
    /// [`Input::RefreshFailed`](crate::Input::RefreshFailed).
    Refresh {
        /// The token generation that failed.
        generation: TokenGeneration,
        /// The 401's `WWW-Authenticate`, if any.
        challenge: Option<String>,
    },
    /// The server asks something (elicitation, sampling, roots): answer
    /// with [`Engine::reply`].
    ServerRequest {
        /// Its id, for the reply.
        id: RequestId,
        /// What it asks.
        method: String,
        /// Its parameters.
        params: Option<Value>,
    },
    /// The server tells something (logging, list changed, progress of a
    /// call nobody waits for).
    Notification {
        /// What it tells.
        method: String,
        /// Its parameters.
        params: Option<Value>,
    },
    /// A recovery step for the logs: `SignalReconnect`, `AwaitReady`,
    /// `RetryOnce`, `SessionReady`, `SessionFailed`. Only when observing.
    Observe(Action),
}

/// What a call's caller finds in its mailbox, most urgent first.
#[derive(Debug)]
#[non_exhaustive]
pub enum Mail {
    /// Send this request for the call.
    Send {
        /// Report its response under this id.
        exchange: ExchangeId,
        /// What to send.
        request: HttpRequest,
    },
    /// The server reported progress (`notifications/progress` params).
    Progress(Value),
    /// The call is over; its mailbox is gone.
    End(CallEnd),
}

#[derive(Debug, Default)]
struct Mailbox {
    sends: VecDeque<(ExchangeId, HttpRequest)>,
    progress: VecDeque<Value>,
    end: Option<CallEnd>,
    /// The caller gave up and the engine was told.
    cancelled: bool,
}

/// What a call's caller does next ([`Dispatcher::step`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Handle this mail.
    Mail(Mail),
    /// Something changed (jobs queued, a deadline handled): do the jobs,
    /// then step again.
    Again,
    /// Nothing to do: wait until woken, or until then at the latest.
    Wait(Option<Instant>),
}

/// What a caller waiting for the session does next
/// ([`Dispatcher::ready_step`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadyStep {
    /// The session is ready.
    Ready,
    /// The handshake failed, or the deadline passed.
    Failed(CallError),
    /// Do the jobs, then step again.
    Again,
    /// Wait until woken, or until then at the latest.
    Wait(Instant),
}

/// An [`Engine`] shared by many callers. Put it behind a mutex; never hold
/// the lock while sending, waiting or running user code.
#[derive(Debug)]
pub struct Dispatcher {
    engine: Engine,
    mail: BTreeMap<CallId, Mailbox>,
    handshake: Option<Result<SessionGeneration, CallError>>,
    observe: bool,
    woke: bool,
}

impl Dispatcher {
    /// Routes `engine`'s actions. With `observe`, recovery steps come out
    /// as [`Job::Observe`]; without, they are dropped.
    pub fn new(engine: Engine, observe: bool) -> Self {
        Dispatcher {
            engine,
            mail: BTreeMap::new(),
            handshake: None,
            observe,
            woke: false,
        }
    }

    /// The engine, for queries.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for inputs. Call [`Dispatcher::pump`] after every input.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// Gives back the memory kept for reuse while nothing is under way
    /// ([`Engine::release_spare`], and the mailboxes' table): for a session
    /// gone idle, of which a process may hold thousands.
    pub fn release_spare(&mut self) {
        self.engine.release_spare();
        if self.mail.is_empty() {
            self.mail = BTreeMap::new();
        }
    }

    /// Starts a call with a mailbox of its own.
    pub fn call(&mut self, op: Operation, now: Instant, jobs: &mut VecDeque<Job>) -> CallId {
        let id = self.engine.call(op, now);
        self.mail.insert(id, Mailbox::default());
        self.pump(jobs);
        id
    }

    /// Whether a waiting caller got something new since the last call:
    /// the adapter wakes the waiters (after its last change under the lock).
    pub fn take_woke(&mut self) -> bool {
        std::mem::take(&mut self.woke)
    }

    /// Feeds one input and drains what it caused.
    pub fn feed(&mut self, input: crate::Input<'_>, now: Instant, jobs: &mut VecDeque<Job>) {
        self.engine.handle_input(input, now);
        self.pump(jobs);
    }

    /// Drains the engine: call actions into their mailboxes, the rest into
    /// `jobs`. Returns whether a waiting caller has something new (also
    /// kept for [`Dispatcher::take_woke`]).
    pub fn pump(&mut self, jobs: &mut VecDeque<Job>) -> bool {
        let mut woke = false;
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Transmit {
                    exchange,
                    call,
                    request,
                } => match call.and_then(|c| self.mail.get_mut(&c)) {
                    Some(m) => {
                        m.sends.push_back((exchange, request));
                        woke = true;
                    }
                    None => jobs.push_back(Job::Send { exchange, request }),
                },
                Action::Complete { call, result } => woke |= self.deliver(call, Ok(result)),
                Action::Surface { call, error } => woke |= self.deliver(call, Err(error)),
                Action::ServerMessage { call, message } => match message {
                    Message::Notification { method, params } => {
                        let mailbox = call
                            .filter(|_| method == "notifications/progress")
                            .and_then(|c| self.mail.get_mut(&c));
                        match mailbox {
                            Some(m) => {
                                m.progress.push_back(params.unwrap_or(Value::Null));
                                woke = true;
                            }
                            None => jobs.push_back(Job::Notification { method, params }),
                        }
                    }
                    Message::Request { id, method, params } => {
                        jobs.push_back(Job::ServerRequest { id, method, params })
                    }
                    // A response nobody asked for: nothing waits for it.
                    Message::Response { .. } => {}
                },
                Action::Listen { exchange, request } => {
                    jobs.push_back(Job::Listen { exchange, request })
                }
                Action::Refresh401 {
                    generation,
                    challenge,
                } => jobs.push_back(Job::Refresh {
                    generation,
                    challenge,
                }),
                // Informs only (`Action::is_required`): the reader of that
                // exchange sees `exchange_open` turn false.
                Action::Abort { .. } => {}
                other => {
                    match &other {
                        Action::SessionReady { generation } => {
                            self.handshake = Some(Ok(*generation));
                            woke = true;
                        }
                        Action::SessionFailed { error, .. } => {
                            self.handshake = Some(Err(error.clone()));
                            woke = true;
                        }
                        _ => {}
                    }
                    if self.observe {
                        jobs.push_back(Job::Observe(other));
                    }
                }
            }
        }
        self.woke |= woke;
        woke
    }

    fn deliver(&mut self, call: CallId, end: CallEnd) -> bool {
        match self.mail.get_mut(&call) {
            Some(m) => {
                m.end = Some(end);
                true
            }
            None => false,
        }
    }

    /// The next thing for `call`'s caller: a request to send, then progress,
    /// then the end (which removes the mailbox). `None`: wait. A call
    /// without a mailbox (never registered, or already ended) reads as
    /// ended by [`CallError::Closed`].
    pub fn next_mail(&mut self, call: CallId) -> Option<Mail> {
        let Some(m) = self.mail.get_mut(&call) else {
            return Some(Mail::End(Err(CallError::Closed)));
        };
        if let Some((exchange, request)) = m.sends.pop_front() {
            return Some(Mail::Send { exchange, request });
        }
        if let Some(p) = m.progress.pop_front() {
            return Some(Mail::Progress(p));
        }
        let end = m.end.take()?;
        self.mail.remove(&call);
        Some(Mail::End(end))
    }

    /// Takes `call`'s queued progress only, for a caller that is still
    /// reading its response.
    pub fn take_progress(&mut self, call: CallId) -> Vec<Value> {
        self.mail
            .get_mut(&call)
            .map(|m| m.progress.drain(..).collect())
            .unwrap_or_default()
    }

    /// Handles the deadlines due at `now`; returns whether there were any.
    fn tick(&mut self, now: Instant, jobs: &mut VecDeque<Job>) -> bool {
        let due = self.engine.poll_timeout().is_some_and(|(at, _)| at <= now);
        if due {
            self.engine.handle_timeout(now);
            self.pump(jobs);
        }
        due
    }

    /// One step of the caller of `call`: its mail first; else, once the
    /// caller gave up (`gave_up`: its cancel handle, its `deadline`), the
    /// cancel; else the engine's due deadlines; else how long it may wait.
    pub fn step(
        &mut self,
        call: CallId,
        gave_up: bool,
        deadline: Option<Instant>,
        now: Instant,
        jobs: &mut VecDeque<Job>,
    ) -> Step {
        if let Some(mail) = self.next_mail(call) {
            return Step::Mail(mail);
        }
        let Some(m) = self.mail.get_mut(&call) else {
            return Step::Again;
        };
        if gave_up && !m.cancelled {
            m.cancelled = true;
            self.feed(crate::Input::Cancel { call }, now, jobs);
            return Step::Again;
        }
        let deadline = deadline.filter(|_| !m.cancelled);
        if self.tick(now, jobs) || !jobs.is_empty() {
            return Step::Again;
        }
        let next = self.engine.poll_timeout().map(|(at, _)| at);
        Step::Wait(match (next, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// One step of a caller waiting for the session (started with
    /// [`Dispatcher::connect`]) until `deadline`.
    pub fn ready_step(
        &mut self,
        since: Instant,
        deadline: Instant,
        now: Instant,
        jobs: &mut VecDeque<Job>,
    ) -> ReadyStep {
        if self.engine.is_ready() {
            return ReadyStep::Ready;
        }
        if let Some(Err(e)) = &self.handshake {
            return ReadyStep::Failed(e.clone());
        }
        if now >= deadline {
            let waited = now.saturating_duration_since(since);
            return ReadyStep::Failed(CallError::ReconnectTimeout { waited });
        }
        if self.tick(now, jobs) || !jobs.is_empty() {
            return ReadyStep::Again;
        }
        let next = self.engine.poll_timeout().map(|(at, _)| at);
        ReadyStep::Wait(next.map_or(deadline, |t| t.min(deadline)))
    }

    /// Ends the call of a caller that went away (a dropped future): the
    /// engine is told, and the mailbox goes with the call.
    pub fn abandon(&mut self, call: CallId, now: Instant, jobs: &mut VecDeque<Job>) {
        if self.mail.contains_key(&call) {
            self.feed(crate::Input::Cancel { call }, now, jobs);
            self.mail.remove(&call);
        }
    }

    /// Asks for the session now (no-op when ready or initializing) and
    /// forgets the last handshake outcome, so [`Dispatcher::ready_step`]
    /// reports this attempt's.
    pub fn connect(&mut self, now: Instant, jobs: &mut VecDeque<Job>) {
        if !self.engine.is_ready() {
            self.handshake = None;
            self.engine.connect(now);
            self.pump(jobs);
        }
    }

    /// How the last handshake ended, if it has: the generation that became
    /// ready, or the error.
    pub fn handshake(&self) -> Option<&Result<SessionGeneration, CallError>> {
        self.handshake.as_ref()
    }
}
