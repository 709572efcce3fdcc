//! Reading responses: one [`Exchange`] per request, its head, its body
//! as JSON or an event stream, and its one [`Outcome`], routed to the
//! sub-machine that sent it.

use super::calls::CallState;
use super::{Action, CallId, Engine, ExchangeId, TokenGeneration};
use crate::classify::Context;
use crate::error::{CallError, ProtocolError};
use crate::http::{self, FailureKind, TransportFailure};
use crate::jsonrpc::{self, Message, RequestId, RpcError};
use crate::sse::SseParser;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Error bodies are read up to this size; the rest is dropped unread.
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Call(CallId),
    Initialize,
    Initialized,
    /// Fire and forget: cancellations, replies, DELETE.
    Notify,
    /// The long-lived GET stream of server messages.
    Listen,
}

#[derive(Debug)]
pub(super) enum Reader {
    AwaitHead,
    Json(Vec<u8>),
    Sse(Box<SseParser>),
    Error(Vec<u8>),
}

#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) purpose: Purpose,
    pub(super) rpc_id: Option<i64>,
    pub(super) ctx: Context,
    pub(super) token_generation: TokenGeneration,
    pub(super) status: u16,
    pub(super) session_header: Option<String>,
    pub(super) challenge: Option<String>,
    pub(super) reader: Reader,
    /// A GET resuming a call's stream: whatever goes wrong with it, the
    /// request itself may have run.
    pub(super) resume: bool,
    /// The event id the resumed stream follows.
    pub(super) resume_from: Option<String>,
}

/// How an exchange ended.
pub(super) enum Outcome {
    Answer(Result<Value, RpcError>),
    Accepted,
    Status {
        status: u16,
        body: Vec<u8>,
    },
    Transport(TransportFailure),
    Protocol(ProtocolError),
    /// A call's event stream ended or broke after event `last_event_id`,
    /// before the answer: it can be resumed.
    StreamCut {
        last_event_id: String,
        retry: Option<Duration>,
        failure: TransportFailure,
    },
}

impl Outcome {
    /// The error a failed handshake step reports.
    pub(super) fn into_error(self) -> CallError {
        match self {
            Outcome::Answer(Err(e)) => CallError::InitializeRejected(e),
            Outcome::Answer(Ok(_)) | Outcome::Accepted => {
                CallError::Protocol(ProtocolError::NoResponse)
            }
            Outcome::Status { status, body } => {
                let json_rpc = crate::jsonrpc::error_of_body(&body).is_some();
                let message = crate::error::sanitize(&crate::classify::message_of(&body).1);
                if matches!(status, 404 | 405) && !json_rpc || crate::classify::is_html(&body) {
                    CallError::NotMcpEndpoint { status, message }
                } else {
                    CallError::Http { status, message }
                }
            }
            Outcome::Transport(t) => CallError::Transport {
                kind: t.kind,
                message: crate::error::sanitize(&t.message),
            },
            Outcome::Protocol(p) => CallError::Protocol(p),
            Outcome::StreamCut { failure: t, .. } => CallError::Transport {
                kind: t.kind,
                message: crate::error::sanitize(&t.message),
            },
        }
    }
}

impl Engine {
    pub(super) fn on_head(
        &mut self,
        exchange: ExchangeId,
        status: u16,
        headers: &[(&str, &str)],
        now: Instant,
    ) {
        if let Some(ex) = self.exchanges.get(&exchange) {
            // An answer of any kind: the server is there, and a call that
            // got one starts a new restart budget if it is refused again.
            if let Purpose::Call(id) = ex.purpose {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.refused_since = None;
                }
            }
            let listening = ex.purpose == Purpose::Listen;
            self.on_reachable(now);
            if listening {
                // Its answer is in: the server can now reach us outside a
                // call, so the calls that waited for that go.
                self.open_gate(now);
            }
        }
        let max = self.config.max_body_size;
        let Some(ex) = self.exchanges.get_mut(&exchange) else {
            return;
        };
        if !matches!(ex.reader, Reader::AwaitHead) {
            return;
        }
        ex.status = status;
        if !(200..300).contains(&status) {
            if status == 401 || status == 403 {
                ex.challenge = http::find(headers, "www-authenticate").map(str::to_owned);
                if ex.challenge.is_some() {
                    self.last_challenge.clone_from(&ex.challenge);
                }
            }
            ex.reader = Reader::Error(Vec::new());
            return;
        }
        if ex.purpose == Purpose::Initialize {
            // Only a successful initialize may name the session.
            ex.session_header = http::find(headers, "mcp-session-id").map(str::to_owned);
        }
        if matches!(ex.purpose, Purpose::Notify | Purpose::Initialized) {
            return self.resolve(exchange, Outcome::Accepted, now);
        }
        if status == 202 || status == 204 {
            return self.resolve(exchange, Outcome::Accepted, now);
        }
        let content_type = http::find(headers, "content-type")
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("application/json");
        if content_type.eq_ignore_ascii_case("text/event-stream") {
            ex.reader = Reader::Sse(Box::new(SseParser::with_max_event_size(max)));
        } else if content_type.eq_ignore_ascii_case("application/json") {
            ex.reader = Reader::Json(Vec::new());
        } else {
            let ct = crate::error::sanitize(content_type);
            self.resolve(
                exchange,
                Outcome::Protocol(ProtocolError::UnexpectedContentType(ct)),
                now,
            );
        }
    }

    pub(super) fn on_body(&mut self, exchange: ExchangeId, bytes: &[u8], now: Instant) {
        let max = self.config.max_body_size;
        let Some(ex) = self.exchanges.get_mut(&exchange) else {
            return;
        };
        match &mut ex.reader {
            Reader::Json(buf) => {
                if buf.len() + bytes.len() > max {
                    let outcome = Outcome::Protocol(ProtocolError::TooLarge { limit: max });
                    return self.resolve(exchange, outcome, now);
                }
                buf.extend_from_slice(bytes);
            }
            Reader::Error(buf) => {
                let room = MAX_ERROR_BODY.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                if buf.len() >= MAX_ERROR_BODY {
                    // Enough to say what went wrong: an error body that goes
                    // on (forever, perhaps) is not read to its end.
                    let (status, body) = (ex.status, std::mem::take(buf));
                    self.resolve(exchange, Outcome::Status { status, body }, now);
                }
            }
            Reader::Sse(parser) => {
                if let Err(e) = parser.feed(bytes) {
                    return self.resolve(exchange, Outcome::Protocol(e.into()), now);
                }
                self.drain_events(exchange, now);
            }
            Reader::AwaitHead => {}
        }
    }

    pub(super) fn drain_events(&mut self, exchange: ExchangeId, now: Instant) {
        loop {
            let Some(ex) = self.exchanges.get_mut(&exchange) else {
                return;
            };
            let Reader::Sse(parser) = &mut ex.reader else {
                return;
            };
            let Some(event) = parser.poll_event() else {
                return;
            };
            // Only `message` events carry JSON-RPC.
            if event.event != "message" {
                continue;
            }
            let parsed = serde_json::from_str::<Value>(&event.data)
                .map_err(|e| jsonrpc::MessageError::Json(e.to_string()))
                .and_then(Message::from_value);
            match parsed {
                Ok(message) => {
                    // News on the stream: a later cut may be resumed again.
                    match self.exchanges.get(&exchange).map(|e| e.purpose) {
                        Some(Purpose::Call(id)) => {
                            if let Some(c) = self.calls.get_mut(&id) {
                                c.resumes = 0;
                            }
                        }
                        Some(Purpose::Listen) => self.listen_failures = 0,
                        _ => {}
                    }
                    self.on_message(exchange, message, now)
                }
                Err(e) => return self.resolve(exchange, Outcome::Protocol(e.into()), now),
            }
        }
    }

    /// One message from a response: ours ends the exchange, others go to
    /// the caller (or, for `ping`, are answered here).
    pub(super) fn on_message(&mut self, exchange: ExchangeId, message: Message, now: Instant) {
        let Some(ex) = self.exchanges.get(&exchange) else {
            return;
        };
        match message {
            Message::Response { id, result } => {
                let ours = match (&id, ex.rpc_id) {
                    (Some(RequestId::Number(n)), Some(mine)) => *n == mine,
                    // `"id": null` errors answer what the server could not read.
                    (None, Some(_)) => result.is_err(),
                    _ => false,
                };
                if ours {
                    self.resolve(exchange, Outcome::Answer(result), now);
                }
            }
            Message::Request { id, method, .. } if method == "ping" => {
                self.reply(id, Ok(json!({})), now);
            }
            other => {
                if let Message::Notification { method, params } = &other {
                    self.cache.on_notification(method, params.as_ref());
                }
                let call = match ex.purpose {
                    Purpose::Call(c) => Some(c),
                    _ => None,
                };
                self.actions.push_back(Action::ServerMessage {
                    call,
                    message: other,
                });
            }
        }
    }

    pub(super) fn on_end(&mut self, exchange: ExchangeId, now: Instant) {
        enum Ended {
            Early,
            Error(u16, Vec<u8>),
            Json(Vec<u8>),
            Sse,
        }
        let Some(ex) = self.exchanges.get_mut(&exchange) else {
            return;
        };
        let ended = match &mut ex.reader {
            Reader::AwaitHead => Ended::Early,
            Reader::Error(body) => Ended::Error(ex.status, std::mem::take(body)),
            Reader::Json(body) => Ended::Json(std::mem::take(body)),
            Reader::Sse(parser) => {
                parser.finish();
                Ended::Sse
            }
        };
        let outcome = match ended {
            Ended::Early => Outcome::Transport(TransportFailure::after_send(
                FailureKind::Reset,
                "response ended before its head",
            )),
            Ended::Error(status, body) => Outcome::Status { status, body },
            Ended::Json(body) => match jsonrpc::parse_body(&body) {
                Ok(messages) => {
                    for m in messages {
                        self.on_message(exchange, m, now);
                    }
                    Outcome::Protocol(ProtocolError::NoResponse)
                }
                Err(e) => Outcome::Protocol(e.into()),
            },
            Ended::Sse => {
                self.drain_events(exchange, now);
                // The stream closed before our answer: the request may have
                // run. (Resuming with Last-Event-ID is the SSE layer's job.)
                Outcome::Transport(TransportFailure::after_send(
                    FailureKind::Reset,
                    "event stream ended before the response",
                ))
            }
        };
        // A no-op when a message above already resolved it.
        self.resolve(exchange, outcome, now);
    }

    /// An exchange has its outcome: it leaves the table (so it resolves
    /// once, and later input for it is ignored) and goes to its sender.
    pub(super) fn resolve(&mut self, exchange: ExchangeId, outcome: Outcome, now: Instant) {
        let Some(ex) = self.exchanges.remove(&exchange) else {
            return;
        };
        // What it says of the server: nothing listens, or something did.
        match &outcome {
            Outcome::Transport(t) if t.kind == FailureKind::Connect && !t.sent => {
                self.on_refused(exchange, now)
            }
            Outcome::Transport(t) if t.sent && t.kind != FailureKind::Cancelled => {
                self.on_reachable(now)
            }
            // Says nothing either way (not sent for another reason, a
            // cancel): if it was the scout, the next one goes out.
            Outcome::Transport(_) => self.scout_gone(exchange, now),
            _ => {}
        }
        // A call's stream that broke after an event id can be resumed.
        let outcome = match (outcome, ex.purpose) {
            // The stateless wire has no resumption (no event ids to go
            // back to): a cut stream is a cut request.
            (Outcome::Transport(failure), Purpose::Call(_))
                if failure.kind != FailureKind::Cancelled && !ex.ctx.sessionless =>
            {
                let (seen, retry) = match &ex.reader {
                    Reader::Sse(p) => (
                        Some(p.last_event_id()).filter(|id| !id.is_empty()),
                        p.retry(),
                    ),
                    _ => (None, None),
                };
                match seen.map(str::to_owned).or_else(|| ex.resume_from.clone()) {
                    Some(last_event_id) => Outcome::StreamCut {
                        last_event_id,
                        retry,
                        failure,
                    },
                    None => Outcome::Transport(failure),
                }
            }
            (outcome, _) => outcome,
        };
        match ex.purpose {
            Purpose::Call(id) => {
                let current = matches!(
                    self.calls.get(&id).map(|c| &c.state),
                    Some(CallState::InFlight { exchange: e, .. }) if *e == exchange
                );
                if current {
                    self.on_call(id, ex, outcome, now);
                }
            }
            Purpose::Initialize => self.on_initialize(exchange, ex, outcome, now),
            Purpose::Initialized => self.on_initialized(exchange, outcome, now),
            Purpose::Notify => {}
            Purpose::Listen => self.on_listen_end(exchange, ex, outcome, now),
        }
    }
}
