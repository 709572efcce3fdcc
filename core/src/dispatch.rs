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
use crate::policy::{Action, CallId, Engine, ExchangeId};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
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
    /// Refresh the token of `generation`; answer with
    /// [`Input::TokenRefreshed`](crate::Input::TokenRefreshed) or
    /// [`Input::RefreshFailed`](crate::Input::RefreshFailed).
    Refresh {
        /// The token generation that failed.
        generation: u64,
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
}

/// An [`Engine`] shared by many callers. Put it behind a mutex; never hold
/// the lock while sending, waiting or running user code.
#[derive(Debug)]
pub struct Dispatcher {
    engine: Engine,
    mail: HashMap<CallId, Mailbox>,
    handshake: Option<Result<u64, CallError>>,
    observe: bool,
}

impl Dispatcher {
    /// Routes `engine`'s actions. With `observe`, recovery steps come out
    /// as [`Job::Observe`]; without, they are dropped.
    pub fn new(engine: Engine, observe: bool) -> Self {
        Dispatcher {
            engine,
            mail: HashMap::new(),
            handshake: None,
            observe,
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

    /// Starts a call with a mailbox of its own.
    pub fn call(&mut self, op: Operation, now: Instant, jobs: &mut VecDeque<Job>) -> CallId {
        let id = self.engine.call(op, now);
        self.mail.insert(id, Mailbox::default());
        self.pump(jobs);
        id
    }

    /// Drains the engine: call actions into their mailboxes, the rest into
    /// `jobs`. Returns whether a waiting caller has something new, so the
    /// adapter knows to wake them.
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
                Action::Refresh401 {
                    generation,
                    challenge,
                } => jobs.push_back(Job::Refresh {
                    generation,
                    challenge,
                }),
                // The reader of that exchange sees `exchange_open` turn false.
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

    /// Handles the deadlines due at `now` and returns the next one, so a
    /// caller knows how long it may wait.
    pub fn tick(&mut self, now: Instant, jobs: &mut VecDeque<Job>) -> (Option<Instant>, bool) {
        let mut woke = false;
        if self.engine.poll_timeout().is_some_and(|(at, _)| at <= now) {
            self.engine.handle_timeout(now);
            woke = self.pump(jobs);
        }
        (self.engine.poll_timeout().map(|(at, _)| at), woke)
    }

    /// Asks for the session now (no-op when ready or initializing) and
    /// forgets the last handshake outcome, so [`Dispatcher::handshake`]
    /// reports this attempt's.
    pub fn connect(&mut self, now: Instant, jobs: &mut VecDeque<Job>) -> bool {
        self.handshake = None;
        self.engine.connect(now);
        self.pump(jobs)
    }

    /// How the last handshake ended, if it has: the generation that became
    /// ready, or the error.
    pub fn handshake(&self) -> Option<&Result<u64, CallError>> {
        self.handshake.as_ref()
    }
}
