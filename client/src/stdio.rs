//! A server run as a child process, spoken to over its stdin and stdout.
//!
//! The core decides in terms of Streamable HTTP: requests, statuses, event
//! streams, sessions. This module carries those decisions out against a
//! child process, so stdio gets the same recovery policy, unchanged:
//!
//! - **One child is one session.** `initialize` starts a child (a fresh
//!   one if the current child was already initialized); the session id the
//!   core sees names that child. Once it exits, a request that names it is
//!   answered `404 Session not found`, exactly what a restarted HTTP server
//!   says, so the core re-initializes once for every caller (a new child)
//!   and retries each call once under its replay rules. On the 2026-07-28
//!   wire there is no session: the next request simply starts a new child.
//! - **A call in flight when the child dies** ends in a transport failure
//!   after sending: `OutcomeUncertain` unless the call is safe to resend.
//! - **Starting fails** (no such program) is a refused connection: nothing
//!   was sent, the core's restart budget and breaker bound the attempts. A
//!   child that keeps dying within a second of its start is restarted after
//!   a pause that doubles from 100 ms to 5 s.
//! - **Every message of the server** arrives on stdout, one JSON-RPC
//!   message per line: a response goes to the request with its id;
//!   progress to the request that carries its token; anything else to the
//!   listening stream if one is open, or else to the oldest request still
//!   waiting (a server asks its questions while a call runs), or else it
//!   waits, bounded, for the next one.
//! - **Cancel**: a request abandoned before its answer gets
//!   `notifications/cancelled` on the 2026-07-28 wire (stdio has no
//!   stream to close); on the handshake wire the core sends it itself.
//! - **Shutdown** (the session's `DELETE`, or the client dropped): stdin
//!   closed, then `SIGTERM`, then `SIGKILL`, each after
//!   [`StdioCommand::shutdown_grace`].
//! - **stderr** is kept, the last [`STDERR_KEPT`] bytes; its last line is
//!   quoted when the child exits.

use crate::drive::{Exchange, Io, Response};
use crate::{CancelHandle, Error};
use event_listener::Event;
use http::{HeaderMap, HeaderValue};
use mcp_recovery_core::{FailureKind, Method, TransportFailure};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio as Pipe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The most of the server's stderr kept, in bytes (the newest).
pub const STDERR_KEPT: usize = 64 * 1024;

/// Messages of the server that found no stream to go to, kept for the
/// next one at most; past it the oldest are dropped.
const BACKLOG: usize = 1024;

/// How often a read with a cancel handle looks at it.
const SLICE: Duration = Duration::from_millis(50);

/// A child that exits sooner than this after its start counts as a crash
/// loop, and the next start waits.
const QUICK_DEATH: Duration = Duration::from_secs(1);

/// How to start the server: program, arguments, environment, directory.
#[derive(Clone)]
pub struct StdioCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    clear_env: bool,
    cwd: Option<PathBuf>,
    grace: Duration,
}

impl StdioCommand {
    /// Runs `program` (looked up on `PATH` when it has no `/`).
    pub fn new(program: impl Into<OsString>) -> Self {
        StdioCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            grace: Duration::from_secs(2),
        }
    }

    /// A command line split as a POSIX shell would (quotes and
    /// backslashes; no variables, globs or pipes): `python server.py
    /// --name "my server"`.
    pub fn parse(line: &str) -> Result<Self, Error> {
        let words = shlex::split(line)
            .ok_or_else(|| Error::Config("unbalanced quotes in the stdio command".into()))?;
        let mut words = words.into_iter();
        let program = words
            .next()
            .ok_or_else(|| Error::Config("empty stdio command".into()))?;
        Ok(StdioCommand::new(program).args(words))
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in the child's environment (its credentials, say:
    /// a stdio server takes them from there, never from the client's
    /// token). Values never appear in `Debug`.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the child with only the variables set by [`StdioCommand::env`],
    /// none of this process's.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// The child's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// How long each step of a shutdown waits for the child to exit:
    /// after stdin is closed, then after `SIGTERM` (default 2 s each).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// The program's name, for messages.
    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        if self.clear_env {
            c.env_clear();
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.cwd {
            c.current_dir(dir);
        }
        c.stdin(Pipe::piped())
            .stdout(Pipe::piped())
            .stderr(Pipe::piped());
        c
    }
}

impl fmt::Debug for StdioCommand {
    /// Arguments may carry secrets (`--api-key`), environment values
    /// usually do: only the program, the number of arguments and the
    /// variables' names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdioCommand")
            .field("program", &self.program)
            .field("args", &self.args.len())
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// The child processes of one client, one at a time, and the streams of
/// the requests waiting on them. Cheap to clone; the child is shut down
/// when the last clone goes.
#[derive(Clone)]
pub struct StdioLink {
    owner: Arc<Owner>,
}

impl fmt::Debug for StdioLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdioLink")
            .field("command", &self.owner.shared.command)
            .finish_non_exhaustive()
    }
}

/// Shuts the child down when the last clone of the link goes.
struct Owner {
    shared: Arc<Shared>,
}

/// What the link and its reader threads share.
struct Shared {
    command: StdioCommand,
    max_line: usize,
    state: Mutex<State>,
    /// Fired on every change: a message queued, a child gone.
    event: Event,
}

#[derive(Default)]
struct State {
    child: Option<Proc>,
    incarnation: u64,
    streams: BTreeMap<u64, Stream>,
    next_stream: u64,
    /// Request id (as JSON text) → stream.
    by_id: HashMap<String, u64>,
    /// Progress token (as JSON text) → stream.
    by_token: HashMap<String, u64>,
    /// The listening stream, if open.
    listener: Option<u64>,
    backlog: VecDeque<Vec<u8>>,
    stderr: VecDeque<u8>,
    /// How the last child ended, for messages.
    last_exit: Option<String>,
    /// Children in a row that died within [`QUICK_DEATH`] of their start.
    quick_deaths: u32,
    /// When the last child was seen gone.
    died_at: Option<Instant>,
}

/// The running child.
struct Proc {
    child: Child,
    incarnation: u64,
    session: String,
    /// Lines for the writer thread; dropped to close stdin.
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    initialized: bool,
    alive: bool,
    started: Instant,
}

/// A request waiting for its answer, or the listening stream.
struct Stream {
    incarnation: u64,
    queue: VecDeque<Vec<u8>>,
    /// The answer is queued: the stream ends after it.
    done: bool,
    /// The child it was sent to is gone.
    dead: bool,
    id: Option<String>,
    token: Option<String>,
    /// The raw id, for `notifications/cancelled`.
    raw_id: Value,
    cancel_on_drop: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StdioLink {
    /// A link that starts `command` when the first request needs it. Lines
    /// longer than `max_line` bytes end the child (its stream can no
    /// longer be trusted to be in step).
    pub fn new(command: StdioCommand, max_line: usize) -> Self {
        StdioLink {
            owner: Arc::new(Owner {
                shared: Arc::new(Shared {
                    command,
                    max_line,
                    state: Mutex::new(State::default()),
                    event: Event::new(),
                }),
            }),
        }
    }

    /// The last [`STDERR_KEPT`] bytes the server wrote to stderr.
    pub fn stderr(&self) -> String {
        let s = lock(&self.owner.shared.state);
        String::from_utf8_lossy(&s.stderr.iter().copied().collect::<Vec<_>>()).into_owned()
    }

    /// The process id of the running child, if one runs.
    pub fn pid(&self) -> Option<u32> {
        let s = lock(&self.owner.shared.state);
        s.child.as_ref().filter(|p| p.alive).map(|p| p.child.id())
    }

    /// Carries out one exchange of the core against the child; `io` does
    /// the waiting (a parked thread or a timer, the adapter's).
    pub async fn send<W: Io>(
        &self,
        x: &Exchange<'_>,
        io: &W,
    ) -> Result<Response<StdioBody<W>>, TransportFailure> {
        let shared = &self.owner.shared;
        let session = x.request.header("mcp-session-id").map(str::to_owned);
        match x.request.method {
            Method::Delete => {
                let proc = {
                    let mut s = lock(&shared.state);
                    match (&session, &s.child) {
                        (Some(sid), Some(p)) if p.alive && &p.session == sid => s.child.take(),
                        _ => return Ok(self.not_found(&s, Value::Null, io)),
                    }
                };
                if let Some(p) = proc {
                    shutdown(shared, p, io).await;
                }
                Ok(self.empty(200, io))
            }
            Method::Get => {
                let mut s = lock(&shared.state);
                let current = match (&session, &s.child) {
                    (Some(sid), Some(p)) if p.alive && &p.session == sid => p.incarnation,
                    (Some(_), _) => return Ok(self.not_found(&s, Value::Null, io)),
                    (None, _) => return Ok(self.empty(405, io)),
                };
                if let Some(old) = s.listener.take() {
                    if let Some(st) = s.streams.get_mut(&old) {
                        st.dead = true;
                    }
                }
                let key = s.open(current, None, None, Value::Null, false);
                s.listener = Some(key);
                let backlog: Vec<_> = s.backlog.drain(..).collect();
                if let Some(st) = s.streams.get_mut(&key) {
                    st.queue.extend(backlog);
                }
                drop(s);
                Ok(self.stream(key, None, io, x.cancel.clone()))
            }
            _ => self.post(x, session, io).await,
        }
    }

    async fn post<W: Io>(
        &self,
        x: &Exchange<'_>,
        session: Option<String>,
        io: &W,
    ) -> Result<Response<StdioBody<W>>, TransportFailure> {
        let shared = &self.owner.shared;
        let message: Value = serde_json::from_slice(&x.request.body).map_err(|e| {
            TransportFailure::not_sent(FailureKind::Other, format!("not JSON: {e}"))
        })?;
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").filter(|_| method.is_some()).cloned();
        let initialize = method == Some("initialize");
        // One line: serde_json writes no raw newline.
        let mut line = serde_json::to_vec(&message)
            .map_err(|e| TransportFailure::not_sent(FailureKind::Other, e.to_string()))?;
        line.push(b'\n');

        // A crash loop pauses the next start.
        loop {
            let until = {
                let s = lock(&shared.state);
                match s.restart_at() {
                    Some(at) if s.child.as_ref().is_none_or(|p| !p.alive) => at,
                    _ => break,
                }
            };
            if x.deadline.is_some_and(|d| d <= until) {
                let s = lock(&shared.state);
                return Err(TransportFailure::not_sent(
                    FailureKind::Connect,
                    format!("the server process keeps exiting at start{}", s.exit_note()),
                ));
            }
            io.wait(shared.event.listen(), Some(until)).await;
            if Instant::now() >= until {
                break;
            }
        }

        let mut s = lock(&shared.state);
        // A child that exited a moment ago may not have been noticed yet:
        // writing to it would make a call that never ran look uncertain.
        if let Some(p) = s.child.as_mut().filter(|p| p.alive) {
            if !matches!(p.child.try_wait(), Ok(None)) {
                let incarnation = p.incarnation;
                s.died(incarnation);
            }
        }
        if initialize && s.child.as_ref().is_some_and(|p| p.initialized) {
            // A second initialize is a new session: a new child.
            if let Some(p) = s.child.take() {
                retire(shared, p);
            }
        }
        match (&session, &s.child) {
            (Some(sid), Some(p)) if p.alive && &p.session == sid => {}
            (Some(_), _) => return Ok(self.not_found(&s, id.unwrap_or(Value::Null), io)),
            (None, Some(p)) if p.alive => {}
            (None, _) => {
                if let Some(p) = s.child.take() {
                    retire(shared, p);
                }
                s.spawn(shared)?;
            }
        }
        let Some(proc) = s.child.as_mut() else {
            return Err(TransportFailure::not_sent(FailureKind::Connect, "no child"));
        };
        if initialize {
            proc.initialized = true;
        }
        let incarnation = proc.incarnation;
        let sid = proc.session.clone();
        let sender = proc.stdin.clone();
        let key = id.as_ref().map(|id| {
            let token = message
                .pointer("/params/_meta/progressToken")
                .map(Value::to_string);
            // Without a session the stateless wire is spoken: abandoning
            // the request must say so in a message.
            s.open(
                incarnation,
                Some(id.to_string()),
                token,
                id.clone(),
                session.is_none(),
            )
        });
        drop(s);
        let written = sender.is_some_and(|tx| tx.send(line).is_ok());
        if !written {
            if let Some(key) = key {
                lock(&shared.state).close(key);
            }
            // The writer had gone: the child is gone, nothing was written.
            return Err(TransportFailure::not_sent(
                FailureKind::Connect,
                "the server process has exited",
            ));
        }
        match key {
            Some(key) => {
                Ok(self.stream(key, Some(&sid).filter(|_| initialize), io, x.cancel.clone()))
            }
            None => Ok(self.empty(202, io)),
        }
    }

    fn stream<W: Io>(
        &self,
        key: u64,
        session: Option<&String>,
        io: &W,
        cancel: Option<CancelHandle>,
    ) -> Response<StdioBody<W>> {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(sid) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
            headers.insert("mcp-session-id", sid);
        }
        Response {
            status: 200,
            headers,
            body: StdioBody {
                link: self.clone(),
                io: io.clone(),
                key: Some(key),
                cancel,
                frame: Vec::new(),
                short: None,
            },
        }
    }

    fn empty<W: Io>(&self, status: u16, io: &W) -> Response<StdioBody<W>> {
        Response {
            status,
            headers: HeaderMap::new(),
            body: StdioBody {
                link: self.clone(),
                io: io.clone(),
                key: None,
                cancel: None,
                frame: Vec::new(),
                short: None,
            },
        }
    }

    /// What a restarted HTTP server says to a request of a session it no
    /// longer has.
    fn not_found<W: Io>(&self, s: &State, id: Value, io: &W) -> Response<StdioBody<W>> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": -32001,
                "message": format!("Session not found: the server process exited{}", s.exit_note()),
            },
        });
        let mut r = self.empty(404, io);
        r.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.body.short = serde_json::to_vec(&body).ok();
        r
    }
}

impl State {
    fn open(
        &mut self,
        incarnation: u64,
        id: Option<String>,
        token: Option<String>,
        raw_id: Value,
        cancel_on_drop: bool,
    ) -> u64 {
        let key = self.next_stream;
        self.next_stream += 1;
        if let Some(id) = &id {
            self.by_id.insert(id.clone(), key);
        }
        if let Some(t) = &token {
            self.by_token.insert(t.clone(), key);
        }
        // What waited for a stream goes to the first one.
        let queue = if self.listener.is_none() {
            self.backlog.drain(..).collect()
        } else {
            VecDeque::new()
        };
        self.streams.insert(
            key,
            Stream {
                incarnation,
                queue,
                done: false,
                dead: false,
                id,
                token,
                raw_id,
                cancel_on_drop,
            },
        );
        key
    }

    fn close(&mut self, key: u64) -> Option<Stream> {
        let st = self.streams.remove(&key)?;
        if let Some(id) = &st.id {
            self.by_id.remove(id);
        }
        if let Some(t) = &st.token {
            self.by_token.remove(t);
        }
        if self.listener == Some(key) {
            self.listener = None;
        }
        Some(st)
    }

    /// When the next child may start, if a crash loop makes it wait.
    fn restart_at(&self) -> Option<Instant> {
        let n = self.quick_deaths.checked_sub(1)?;
        let pause = Duration::from_millis(100)
            .saturating_mul(1 << n.min(6))
            .min(Duration::from_secs(5));
        self.died_at?.checked_add(pause)
    }

    /// ": exit status 1; its last words: ...", for messages.
    fn exit_note(&self) -> String {
        let mut note = String::new();
        if let Some(e) = &self.last_exit {
            note.push_str(&format!(" ({e})"));
        }
        let bytes: Vec<u8> = self.stderr.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            let last: String = last.trim().chars().take(200).collect();
            note.push_str(&format!("; its stderr ends: {last}"));
        }
        note
    }

    fn spawn(&mut self, shared: &Arc<Shared>) -> Result<(), TransportFailure> {
        let mut child = shared.command.command().spawn().map_err(|e| {
            TransportFailure::not_sent(
                FailureKind::Connect,
                format!("could not start {}: {e}", shared.command.program()),
            )
        })?;
        self.incarnation += 1;
        let incarnation = self.incarnation;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportFailure::not_sent(FailureKind::Connect, "no pipes"));
        };
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let started = std::thread::Builder::new()
            .name("mcp-stdio-write".into())
            .spawn(move || write_lines(stdin, rx))
            .and_then(|_| {
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name("mcp-stdio-read".into())
                    .spawn(move || read_lines(&sh, stdout, incarnation))
            })
            .and_then(|_| {
                let sh = shared.clone();
                std::thread::Builder::new()
                    .name("mcp-stdio-stderr".into())
                    .spawn(move || read_stderr(&sh, stderr))
            });
        if let Err(e) = started {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportFailure::not_sent(
                FailureKind::Other,
                e.to_string(),
            ));
        }
        self.child = Some(Proc {
            child,
            incarnation,
            session: format!("stdio-{incarnation}"),
            stdin: Some(tx),
            initialized: false,
            alive: true,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Routes one line of the child's stdout.
    fn route(&mut self, line: &[u8], incarnation: u64) {
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            // Not a message (a stray print): the spec forbids it, and
            // nothing can be done with it.
            return;
        };
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id");
        let target = match (method, id) {
            (None, Some(id)) => match self.by_id.get(&id.to_string()).copied() {
                Some(key) => {
                    if let Some(st) = self.streams.get_mut(&key) {
                        st.done = true;
                    }
                    Some(key)
                }
                // The answer to a request nobody waits for any more.
                None => return,
            },
            (Some("notifications/progress"), None) => message
                .pointer("/params/progressToken")
                .and_then(|t| self.by_token.get(&t.to_string()).copied()),
            _ => None,
        };
        let target = target.or(self.listener).or_else(|| {
            self.streams
                .iter()
                .find(|(_, st)| st.incarnation == incarnation && !st.done && !st.dead)
                .map(|(k, _)| *k)
        });
        let frame = sse_frame(line);
        match target.and_then(|k| self.streams.get_mut(&k)) {
            Some(st) => st.queue.push_back(frame),
            None => {
                if self.backlog.len() >= BACKLOG {
                    self.backlog.pop_front();
                }
                self.backlog.push_back(frame);
            }
        }
    }

    /// The child of `incarnation` is gone: its streams end.
    fn died(&mut self, incarnation: u64) {
        for st in self.streams.values_mut() {
            if st.incarnation == incarnation && !st.done {
                st.dead = true;
            }
        }
        let Some(p) = self.child.as_mut().filter(|p| p.incarnation == incarnation) else {
            return;
        };
        if !p.alive {
            return;
        }
        p.alive = false;
        p.stdin = None;
        let now = Instant::now();
        self.quick_deaths = if now.duration_since(p.started) < QUICK_DEATH {
            self.quick_deaths.saturating_add(1)
        } else {
            0
        };
        self.died_at = Some(now);
        if let Ok(Some(status)) = p.child.try_wait() {
            self.last_exit = Some(status.to_string());
        }
    }
}

/// `data: <line>` and a blank line: the event the core's SSE reader takes.
fn sse_frame(line: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(line.len() + 8);
    f.extend_from_slice(b"data: ");
    f.extend_from_slice(line);
    f.extend_from_slice(b"\n\n");
    f
}

fn write_lines(mut stdin: ChildStdin, rx: mpsc::Receiver<Vec<u8>>) {
    // Ends when every sender is gone (stdin is closed as it drops) or the
    // child stops reading for good.
    for line in rx {
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            return;
        }
    }
}

fn read_lines(shared: &Arc<Shared>, stdout: impl Read, incarnation: u64) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = shared.max_line as u64 + 1;
        match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() != Some(&b'\n') && line.len() as u64 >= limit => {
                // Out of step for good: end this child.
                let mut s = lock(&shared.state);
                if let Some(p) = s.child.as_mut().filter(|p| p.incarnation == incarnation) {
                    let _ = p.child.kill();
                }
                s.last_exit = Some(format!("a line over {} bytes", shared.max_line));
                break;
            }
            Ok(_) => {
                let text = line.trim_ascii();
                if !text.is_empty() {
                    lock(&shared.state).route(text, incarnation);
                    shared.event.notify(usize::MAX);
                }
            }
        }
    }
    // stdout closed: the child is gone (or going). Its exit status, if it
    // comes within a moment, makes the messages clearer. Reaped and marked
    // gone under one lock: whoever sees the process gone sees it dead here.
    for _ in 0..25 {
        let mut s = lock(&shared.state);
        let exited = match s.child.as_mut().filter(|p| p.incarnation == incarnation) {
            Some(p) => !matches!(p.child.try_wait(), Ok(None)),
            None => true,
        };
        if exited {
            s.died(incarnation);
            drop(s);
            shared.event.notify(usize::MAX);
            return;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    lock(&shared.state).died(incarnation);
    shared.event.notify(usize::MAX);
}

fn read_stderr(shared: &Arc<Shared>, stderr: impl Read) {
    let mut stderr = stderr;
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut s = lock(&shared.state);
                s.stderr.extend(&buf[..n]);
                let over = s.stderr.len().saturating_sub(STDERR_KEPT);
                s.stderr.drain(..over);
            }
        }
    }
}

/// Ends a child without waiting: stdin closed now, `SIGTERM` and then
/// `SIGKILL` from a thread of its own after the grace periods.
fn retire(shared: &Arc<Shared>, p: Proc) {
    let Proc {
        child, mut stdin, ..
    } = p;
    stdin.take();
    let grace = shared.command.grace;
    let child = Arc::new(Mutex::new(Some(child)));
    let held = child.clone();
    let reap = move || {
        let mut guard = held.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(child) = guard.as_mut() else {
            return;
        };
        for signal in [Signal::Term, Signal::Kill] {
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            send_signal(child, signal);
        }
        let _ = child.wait();
    };
    if std::thread::Builder::new()
        .name("mcp-stdio-reap".into())
        .spawn(reap)
        .is_err()
    {
        // No thread to wait with: end it at once.
        if let Some(mut c) = child.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

fn send_signal(child: &mut Child, signal: Signal) {
    match signal {
        #[cfg(unix)]
        Signal::Term => {
            let pid = rustix::process::Pid::from_child(child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        #[cfg(not(unix))]
        Signal::Term => {
            let _ = child.kill();
        }
        Signal::Kill => {
            let _ = child.kill();
        }
    }
}

/// Ends a child and waits for it, each step bounded: stdin closed, then
/// `SIGTERM`, then `SIGKILL`.
async fn shutdown<W: Io>(shared: &Arc<Shared>, mut p: Proc, io: &W) {
    p.stdin = None;
    let grace = shared.command.grace;
    for signal in [None, Some(Signal::Term), Some(Signal::Kill)] {
        if let Some(sig) = signal {
            send_signal(&mut p.child, sig);
        }
        let until = Instant::now() + grace;
        loop {
            if !matches!(p.child.try_wait(), Ok(None)) {
                let mut s = lock(&shared.state);
                s.died(p.incarnation);
                return;
            }
            let now = Instant::now();
            if now >= until {
                break;
            }
            // Nothing fires when a child exits: look again shortly.
            let listener = shared.event.listen();
            io.wait(listener, Some((now + Duration::from_millis(20)).min(until)))
                .await;
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let p = lock(&self.shared.state).child.take();
        if let Some(p) = p {
            retire(&self.shared, p);
        }
    }
}

/// The body of a request's answer (as an event stream), of the listening
/// stream, or of a short answer (202, 404).
pub struct StdioBody<W> {
    link: StdioLink,
    io: W,
    key: Option<u64>,
    cancel: Option<CancelHandle>,
    /// The chunk handed out last.
    frame: Vec<u8>,
    /// A short answer's whole body, handed out once.
    short: Option<Vec<u8>>,
}

impl<W> fmt::Debug for StdioBody<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdioBody")
            .field("stream", &self.key)
            .finish()
    }
}

impl<W: Io> StdioBody<W> {
    /// The next chunk: one event, `None` after the answer, a failure when
    /// the child exits first or stays silent for `read_timeout`.
    pub async fn chunk(
        &mut self,
        read_timeout: Duration,
    ) -> Result<Option<&[u8]>, TransportFailure> {
        let Some(key) = self.key else {
            // A short answer: its body once, then the end.
            return Ok(match self.short.take() {
                Some(body) => {
                    self.frame = body;
                    Some(&self.frame)
                }
                None => None,
            });
        };
        let shared = self.link.owner.shared.clone();
        let silent_until = Instant::now() + read_timeout;
        loop {
            let listener = {
                let mut s = lock(&shared.state);
                let Some(st) = s.streams.get_mut(&key) else {
                    return Ok(None);
                };
                if let Some(frame) = st.queue.pop_front() {
                    drop(s);
                    self.frame = frame;
                    return Ok(Some(&self.frame));
                }
                if st.done {
                    s.close(key);
                    self.key = None;
                    return Ok(None);
                }
                if st.dead {
                    let note = s.exit_note();
                    s.close(key);
                    self.key = None;
                    return Err(TransportFailure::after_send(
                        FailureKind::Reset,
                        format!("the server process exited{note}"),
                    ));
                }
                shared.event.listen()
            };
            if self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled) {
                return Err(TransportFailure::after_send(
                    FailureKind::Cancelled,
                    "call cancelled",
                ));
            }
            let now = Instant::now();
            if now >= silent_until {
                return Err(TransportFailure::after_send(
                    FailureKind::Timeout,
                    format!(
                        "no message from the server process in {} ms",
                        read_timeout.as_millis()
                    ),
                ));
            }
            let until = match &self.cancel {
                Some(_) => silent_until.min(now + SLICE),
                None => silent_until,
            };
            self.io.wait(listener, Some(until)).await;
        }
    }
}

impl<W> Drop for StdioBody<W> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let shared = &self.link.owner.shared;
        let mut s = lock(&shared.state);
        let Some(st) = s.close(key) else {
            return;
        };
        if st.done || st.dead || !st.cancel_on_drop {
            return;
        }
        // Abandoned before its answer, on a wire where no one else says so.
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": st.raw_id, "reason": "cancelled by the client"},
        });
        if let Some(tx) = s
            .child
            .as_ref()
            .filter(|p| p.alive && p.incarnation == st.incarnation)
            .and_then(|p| p.stdin.as_ref())
        {
            if let Ok(mut line) = serde_json::to_vec(&note) {
                line.push(b'\n');
                let _ = tx.send(line);
            }
        }
    }
}
