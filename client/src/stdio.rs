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
//!   after sending: `OutcomeUncertain` unless the call is safe to resend;
//!   but a request the child never read a byte of (what entered its stdin
//!   pipe minus what is still in it, on Unix) was never sent, and goes
//!   again like any refused request. Death is seen when stdout closes, or,
//!   if a process the child started holds stdout open, a second after the
//!   child's exit.
//! - **Starting fails** (no such program), or the child dies before it
//!   answers anything: a refused connection (the response head waits for
//!   the child's first word, as an HTTP server's would); nothing was sent,
//!   the core's restart budget and breaker bound the attempts. A child
//!   that keeps dying within a second of its start, silent, is restarted
//!   after a pause that doubles from 100 ms to 5 s.
//! - **Every message of the server** arrives on stdout, one JSON-RPC
//!   message per line: a response goes to the request with its id;
//!   progress to the request that carries its token; anything else to the
//!   listening stream if one is open, or else to the oldest request still
//!   waiting (a server asks its questions while a call runs), or else it
//!   waits, bounded, for the next one. What a child that has died or been
//!   replaced says is dropped: it belongs to a session that is over.
//! - **Cancel**: a request abandoned before its answer gets
//!   `notifications/cancelled` on the 2026-07-28 wire (stdio has no
//!   stream to close); on the handshake wire the core sends it itself;
//!   `initialize` is never cancelled.
//! - **Shutdown** (the session's `DELETE`, or the client's last handle
//!   dropped): stdin closed, then `SIGTERM`, then `SIGKILL`, each after
//!   [`StdioCommand::shutdown_grace`], to the child's process group (it
//!   leads one of its own, so what it started goes with it, and a Ctrl-C
//!   meant for this program does not reach it). A shutdown abandoned half
//!   way goes on in the background; no child is left running or unreaped.
//! - **stderr** is kept, the last [`STDERR_KEPT`] bytes
//!   ([`StdioLink::stderr`]); its last line is quoted in the error only
//!   for a child that exits without having said anything (a start-up
//!   failure says why there; a running server's log may hold anything).

use crate::drive::{Body, Exchange, Io, Response};
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The most of the server's stderr kept, in bytes (the newest).
pub const STDERR_KEPT: usize = 64 * 1024;

/// Messages of the server that found no stream to go to, kept for the
/// next one at most (count and bytes); past it the oldest are dropped.
const BACKLOG: usize = 1024;
const BACKLOG_BYTES: usize = 4 * 1024 * 1024;

/// Messages other than the answer a stream keeps unread at most.
const STREAM_QUEUE: usize = 1024;

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
        // A group of its own: signals reach what it starts too (`npx`, a
        // wrapper script), and a Ctrl-C meant for this program does not
        // reach it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
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
/// when the last clone goes, or at once by [`StdioLink::detach`].
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

/// What the link and its threads share.
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
    /// Messages of the current child that found no stream yet.
    backlog: VecDeque<Vec<u8>>,
    backlog_bytes: usize,
    stderr: VecDeque<u8>,
    /// stderr bytes written since the current child started (what of the
    /// kept tail is its own).
    stderr_own: usize,
    /// How the current (or last) child ended, for messages.
    last_exit: Option<String>,
    /// Children in a row that died within [`QUICK_DEATH`] of their start
    /// without saying anything.
    quick_deaths: u32,
    /// When the last child was seen gone.
    died_at: Option<Instant>,
    /// The client let go: nothing starts any more.
    detached: bool,
}

/// The running child.
struct Proc {
    child: Child,
    incarnation: u64,
    session: String,
    /// Lines for the writer thread; dropped to close stdin.
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    /// The pipe itself, to ask how much of it the child never read.
    pipe: Option<Arc<ChildStdin>>,
    /// Bytes that entered the pipe (the writer's count).
    written: Arc<AtomicU64>,
    /// Bytes handed to the writer: where the next line starts.
    queued: u64,
    initialized: bool,
    alive: bool,
    /// It wrote a message on stdout.
    spoke: bool,
    started: Instant,
}

/// What handing a message to the child came to.
enum Written<W> {
    /// A request: its stream, and the child's session.
    Stream { key: u64, session: Option<String> },
    /// Answered already: a notification taken (202), a session gone (404).
    Answered(Response<StdioBody<W>>),
}

/// A request waiting for its answer, or the listening stream.
struct Stream {
    incarnation: u64,
    queue: VecDeque<Vec<u8>>,
    /// The answer is queued: the stream ends after it.
    done: bool,
    /// The child it was sent to is gone.
    dead: bool,
    /// ...and never read a byte of the request.
    unread: bool,
    /// Where the request starts in what was written to the child.
    start: u64,
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

    /// The client let go of the link (its last handle dropped) while a
    /// task of its own may still hold it (the listening stream's reader):
    /// the child is shut down now, and none starts again.
    pub fn detach(&self) {
        let shared = &self.owner.shared;
        let p = {
            let mut s = lock(&shared.state);
            s.detached = true;
            for st in s.streams.values_mut() {
                st.dead = true;
            }
            s.child.take()
        };
        if let Some(p) = p {
            retire(shared, p);
        }
        shared.event.notify(usize::MAX);
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
                    shutdown(shared, Retiring(Some(p), shared.clone()), io).await;
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
                drop(s);
                shared.event.notify(usize::MAX);
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
        let initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
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

        let (key, sid) = match self.write(&message, line, session, io)? {
            Written::Stream { key, session } => (key, session),
            Written::Answered(r) => return Ok(r),
        };
        let sid = sid.filter(|_| initialize);
        let mut r = self.stream(key, sid.as_ref(), io, x.cancel.clone());
        // The head only once the child said something for this request,
        // as an HTTP server's: a child that dies first is a connection
        // that failed (refused, if it never read the request), not a
        // server that answered.
        r.body.wait(x.read_timeout, false).await?;
        Ok(r)
    }

    /// Hands one message to the child (starting one if it needs to):
    /// the request's stream, or the whole answer (202, 404).
    fn write<W: Io>(
        &self,
        message: &Value,
        line: Vec<u8>,
        session: Option<String>,
        io: &W,
    ) -> Result<Written<W>, TransportFailure> {
        let shared = &self.owner.shared;
        let method = message.get("method").and_then(Value::as_str);
        let id = message.get("id").filter(|_| method.is_some()).cloned();
        let initialize = method == Some("initialize");
        let mut s = lock(&shared.state);
        if s.detached {
            return Err(TransportFailure::not_sent(
                FailureKind::Other,
                "the client was dropped",
            ));
        }
        // A child that exited a moment ago may not have been noticed yet:
        // writing to it would make a call that never ran look uncertain.
        if let Some(p) = s.child.as_mut().filter(|p| p.alive) {
            if !matches!(p.child.try_wait(), Ok(None)) {
                let incarnation = p.incarnation;
                s.died(incarnation);
                shared.event.notify(usize::MAX);
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
            (Some(_), _) => {
                return Ok(Written::Answered(self.not_found(
                    &s,
                    id.unwrap_or(Value::Null),
                    io,
                )))
            }
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
        let start = proc.queued;
        let written = proc
            .stdin
            .as_ref()
            .is_some_and(|tx| tx.send(line.clone()).is_ok());
        if !written {
            // The writer had gone: the child is gone, nothing was written.
            return Err(TransportFailure::not_sent(
                FailureKind::Connect,
                "the server process has exited",
            ));
        }
        proc.queued += line.len() as u64;
        let Some(id) = id else {
            return Ok(Written::Answered(self.empty(202, io)));
        };
        let token = message
            .pointer("/params/_meta/progressToken")
            .map(Value::to_string);
        // Without a session the stateless wire is spoken: abandoning the
        // request must say so in a message. `initialize` is never
        // cancelled (the specification forbids it).
        let cancel_on_drop = session.is_none() && !initialize;
        let key = s.open(incarnation, Some(id.to_string()), token, id, cancel_on_drop);
        if let Some(st) = s.streams.get_mut(&key) {
            st.start = start;
        }
        Ok(Written::Stream {
            key,
            session: Some(sid),
        })
    }

    fn stream<W: Io>(
        &self,
        key: u64,
        session: Option<&String>,
        io: &W,
        cancel: Option<CancelHandle>,
    ) -> Response<StdioBody<W>> {
        let mut r = self.empty(200, io);
        r.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        if let Some(sid) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
            r.headers.insert("mcp-session-id", sid);
        }
        r.body.key = Some(key);
        r.body.cancel = cancel;
        r
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
        // What the current child said while no stream was open goes to the
        // first one.
        let queue: VecDeque<Vec<u8>> = self.backlog.drain(..).collect();
        self.backlog_bytes = 0;
        self.streams.insert(
            key,
            Stream {
                incarnation,
                queue,
                done: false,
                dead: false,
                unread: false,
                start: 0,
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
        // A retry of the same request may have taken the id or the token
        // over: only this stream's own entries go.
        if let Some(id) = &st.id {
            if self.by_id.get(id) == Some(&key) {
                self.by_id.remove(id);
            }
        }
        if let Some(t) = &st.token {
            if self.by_token.get(t) == Some(&key) {
                self.by_token.remove(t);
            }
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

    /// " (exit status: 1); its stderr ends: ...", for messages. The stderr
    /// line only for a child that never spoke (it failed at start: its
    /// stderr says why); a running server's log may hold anything.
    fn exit_note(&self) -> String {
        let mut note = String::new();
        if let Some(e) = &self.last_exit {
            note.push_str(&format!(" ({e})"));
        }
        let spoke = self.child.as_ref().is_some_and(|p| p.spoke);
        let own = self.stderr_own.min(self.stderr.len());
        if !spoke && own > 0 {
            let bytes: Vec<u8> = self
                .stderr
                .iter()
                .skip(self.stderr.len() - own)
                .copied()
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                let last: String = last.trim().chars().take(200).collect();
                note.push_str(&format!("; its stderr ends: {last}"));
            }
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
        let pipe = Arc::new(stdin);
        let written = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let pid = child.id();
        let thread = |name: &str| std::thread::Builder::new().name(name.into());
        let started = {
            let (pipe, written) = (pipe.clone(), written.clone());
            thread("mcp-stdio-write").spawn(move || write_lines(&pipe, &written, rx))
        }
        .and_then(|_| {
            let sh = shared.clone();
            thread("mcp-stdio-read").spawn(move || read_lines(&sh, stdout, incarnation))
        })
        .and_then(|_| {
            let sh = shared.clone();
            thread("mcp-stdio-stderr").spawn(move || read_stderr(&sh, stderr))
        })
        .and_then(|_| {
            let sh = shared.clone();
            thread("mcp-stdio-watch").spawn(move || watch(&sh, pid, incarnation))
        });
        if let Err(e) = started {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TransportFailure::not_sent(
                FailureKind::Other,
                e.to_string(),
            ));
        }
        // What is kept of earlier children is theirs, not this one's.
        self.last_exit = None;
        self.stderr_own = 0;
        self.backlog.clear();
        self.backlog_bytes = 0;
        self.child = Some(Proc {
            child,
            incarnation,
            session: format!("stdio-{incarnation}"),
            stdin: Some(tx),
            pipe: Some(pipe),
            written,
            queued: 0,
            initialized: false,
            alive: true,
            spoke: false,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Routes one message of the child of `incarnation`.
    fn route(&mut self, message: &Value, line: &[u8], incarnation: u64) {
        let current = self.child.as_mut().filter(|p| p.incarnation == incarnation);
        let Some(p) = current else {
            // A child already replaced: its words are for a session that
            // is over (a request of its could be a paid sampling call).
            return;
        };
        if !p.spoke {
            p.spoke = true;
            // It started well: the crash loop, if any, is over.
            self.quick_deaths = 0;
        }
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
            (Some("notifications/progress"), None) => {
                let token = message.pointer("/params/progressToken");
                match token.and_then(|t| self.by_token.get(&t.to_string()).copied()) {
                    Some(key) => Some(key),
                    // Progress of a call that is over.
                    None => return,
                }
            }
            _ => None,
        };
        let open = |st: &Stream| st.incarnation == incarnation && !st.done && !st.dead;
        let target = target
            .or(self
                .listener
                .filter(|k| self.streams.get(k).is_some_and(open)))
            .or_else(|| {
                self.streams
                    .iter()
                    .find(|(_, st)| open(st))
                    .map(|(k, _)| *k)
            });
        let frame = sse_frame(line);
        match target.and_then(|k| self.streams.get_mut(&k)) {
            Some(st) => {
                // A stream nobody reads (a listening stream left alone)
                // keeps only so much; answers always go in.
                if st.queue.len() < STREAM_QUEUE || st.done {
                    st.queue.push_back(frame);
                }
            }
            None => {
                while self.backlog.len() >= BACKLOG
                    || self.backlog_bytes + frame.len() > BACKLOG_BYTES
                {
                    match self.backlog.pop_front() {
                        Some(old) => self.backlog_bytes -= old.len(),
                        None => break,
                    }
                }
                if frame.len() <= BACKLOG_BYTES {
                    self.backlog_bytes += frame.len();
                    self.backlog.push_back(frame);
                }
            }
        }
    }

    /// The child of `incarnation` is gone (or can no longer be heard): its
    /// streams end; a request it never read a byte of is marked so.
    fn died(&mut self, incarnation: u64) {
        let Some(p) = self.child.as_mut().filter(|p| p.incarnation == incarnation) else {
            for st in self.streams.values_mut() {
                if st.incarnation == incarnation && !st.done {
                    st.dead = true;
                }
            }
            return;
        };
        if !p.alive {
            return;
        }
        p.alive = false;
        p.stdin = None;
        // What entered the pipe minus what is still in it: how far the
        // child read. A request starting past that was never read.
        let consumed = p
            .pipe
            .take()
            .and_then(|pipe| unread(&pipe))
            .map(|left| p.written.load(Ordering::Acquire).saturating_sub(left));
        let now = Instant::now();
        self.quick_deaths = if !p.spoke && now.duration_since(p.started) < QUICK_DEATH {
            self.quick_deaths.saturating_add(1)
        } else {
            0
        };
        self.died_at = Some(now);
        match p.child.try_wait() {
            Ok(Some(status)) => {
                self.last_exit = Some(status.to_string());
                // What it started dies with it (its group outlives it
                // only while a member runs, so the id names no stranger).
                signal_group(&p.child, Signal::Kill);
            }
            // stdout closed but the process runs on: it cannot be heard,
            // so it goes.
            Ok(None) => send_signal(&mut p.child, Signal::Kill),
            Err(_) => {}
        }
        for st in self.streams.values_mut() {
            if st.incarnation == incarnation && !st.done {
                st.dead = true;
                st.unread = consumed.is_some_and(|c| st.start >= c);
            }
        }
        self.backlog.clear();
        self.backlog_bytes = 0;
    }
}

/// How many bytes written to the child's stdin it never read (Unix).
#[cfg(unix)]
fn unread(pipe: &ChildStdin) -> Option<u64> {
    rustix::io::ioctl_fionread(pipe).ok()
}

#[cfg(not(unix))]
fn unread(_: &ChildStdin) -> Option<u64> {
    None
}

/// `data: <line>` and a blank line: the event the core's SSE reader takes.
fn sse_frame(line: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(line.len() + 8);
    f.extend_from_slice(b"data: ");
    f.extend_from_slice(line);
    f.extend_from_slice(b"\n\n");
    f
}

/// Writes the queued lines, counting every byte that enters the pipe. Ends
/// when every sender is gone or the child stops reading for good; stdin
/// closes when the last handle of the pipe goes.
fn write_lines(pipe: &ChildStdin, written: &AtomicU64, rx: mpsc::Receiver<Vec<u8>>) {
    let mut out = pipe;
    for line in rx {
        let mut rest = &line[..];
        while !rest.is_empty() {
            match out.write(rest) {
                Ok(0) => return,
                Ok(n) => {
                    written.fetch_add(n as u64, Ordering::AcqRel);
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

fn read_lines(shared: &Arc<Shared>, stdout: impl Read, incarnation: u64) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let limit = shared.max_line as u64 + 1;
    loop {
        line.clear();
        match reader.by_ref().take(limit).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() != Some(&b'\n') && line.len() as u64 >= limit => {
                // Out of step for good: this child can no longer be heard.
                let mut s = lock(&shared.state);
                s.died(incarnation);
                s.last_exit = Some(format!("it wrote a line over {} bytes", shared.max_line));
                drop(s);
                shared.event.notify(usize::MAX);
                return;
            }
            Ok(_) => {
                let text = line.trim_ascii();
                // Parsed outside the lock: a large message does not hold
                // up every caller. Not JSON (a stray print) is skipped:
                // the specification forbids it, nothing can be done with it.
                let Ok(message) = serde_json::from_slice::<Value>(text) else {
                    continue;
                };
                lock(&shared.state).route(&message, text, incarnation);
                shared.event.notify(usize::MAX);
            }
        }
    }
    // stdout closed: whatever the child said is in. Its exit status, if it
    // comes within a moment, makes the messages clearer.
    for _ in 0..25 {
        let exited = {
            let mut s = lock(&shared.state);
            match s.child.as_mut().filter(|p| p.incarnation == incarnation) {
                Some(p) => !matches!(p.child.try_wait(), Ok(None)),
                None => true,
            }
        };
        if exited {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    lock(&shared.state).died(incarnation);
    shared.event.notify(usize::MAX);
}

/// Waits for the child to exit (without reaping it: the `Child` does that)
/// and, if stdout stays open after it (a process it started holds it),
/// ends the child's streams a second later instead of waiting on them.
fn watch(shared: &Arc<Shared>, pid: u32, incarnation: u64) {
    #[cfg(unix)]
    {
        use rustix::process::{waitid, Pid, WaitId, WaitIdOptions};
        let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            return;
        };
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
        loop {
            match waitid(WaitId::Pid(pid), options) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => {}
                // Reaped already (shut down): nothing to watch.
                Err(_) => return,
            }
        }
        std::thread::sleep(QUICK_DEATH);
        let mut s = lock(&shared.state);
        let heard = s
            .child
            .as_ref()
            .is_some_and(|p| p.incarnation == incarnation && p.alive);
        if heard {
            // The child is gone but its stdout is held open by another
            // process: the rest of its group goes too.
            if let Some(p) = s.child.as_mut() {
                signal_group(&p.child, Signal::Kill);
            }
            s.died(incarnation);
            drop(s);
            shared.event.notify(usize::MAX);
        }
    }
    #[cfg(not(unix))]
    let _ = (shared, pid, incarnation);
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
                s.stderr_own = s.stderr_own.saturating_add(n);
                let over = s.stderr.len().saturating_sub(STDERR_KEPT);
                s.stderr.drain(..over);
            }
        }
    }
}

/// A child being shut down: retired (in the background) if the shutdown
/// is dropped half way, so no child outlives a cancelled `close`.
struct Retiring(Option<Proc>, Arc<Shared>);

impl Drop for Retiring {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            retire(&self.1, p);
        }
    }
}

/// Ends a child without waiting: stdin closed now, `SIGTERM` and then
/// `SIGKILL` (to its process group) from a thread of its own after the
/// grace periods, then reaped.
fn retire(shared: &Arc<Shared>, p: Proc) {
    let Proc {
        child, stdin, pipe, ..
    } = p;
    // stdin closes once the writer has let go too.
    drop((stdin, pipe));
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
                    // Whatever it started goes with it.
                    signal_group(child, Signal::Kill);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            signal_group(child, signal);
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
            signal_group(&c, Signal::Kill);
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

/// Signals the child's process group (it leads one of its own), so a
/// wrapper's children (`npx`, a shell script) go with it.
fn signal_group(child: &Child, signal: Signal) {
    #[cfg(unix)]
    {
        use rustix::process::{kill_process_group, Pid, Signal as S};
        let sig = match signal {
            Signal::Term => S::TERM,
            Signal::Kill => S::KILL,
        };
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(pid, sig);
        }
    }
    #[cfg(not(unix))]
    let _ = (child, signal);
}

fn send_signal(child: &mut Child, signal: Signal) {
    signal_group(child, signal);
    if matches!(signal, Signal::Kill) || cfg!(not(unix)) {
        let _ = child.kill();
    }
}

/// Ends a child and waits for it, each step bounded: stdin closed, then
/// `SIGTERM`, then `SIGKILL`; a child still there after that is left to a
/// reaper thread, never as a zombie.
async fn shutdown<W: Io>(shared: &Arc<Shared>, mut retiring: Retiring, io: &W) {
    let grace = shared.command.grace;
    if let Some(p) = retiring.0.as_mut() {
        p.stdin = None;
        p.pipe = None;
    }
    for signal in [None, Some(Signal::Term), Some(Signal::Kill)] {
        let Some(p) = retiring.0.as_mut() else {
            return;
        };
        if let Some(sig) = signal {
            send_signal(&mut p.child, sig);
        }
        let until = Instant::now() + grace;
        loop {
            let Some(p) = retiring.0.as_mut() else {
                return;
            };
            if !matches!(p.child.try_wait(), Ok(None)) {
                signal_group(&p.child, Signal::Kill);
                let incarnation = p.incarnation;
                retiring.0 = None;
                lock(&shared.state).died(incarnation);
                shared.event.notify(usize::MAX);
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
    // `retiring` drops here: whatever is left is reaped in the background.
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

impl<W: Io> Body for StdioBody<W> {
    /// The next chunk: one event, `None` after the answer, a failure when
    /// the child exits first or stays silent for `read_timeout`.
    async fn chunk(&mut self, read_timeout: Duration) -> Result<Option<&[u8]>, TransportFailure> {
        if self.key.is_none() {
            // A short answer: its body once, then the end.
            return Ok(match self.short.take() {
                Some(body) => {
                    self.frame = body;
                    Some(&self.frame)
                }
                None => None,
            });
        };
        match self.wait(read_timeout, true).await? {
            true => Ok(Some(&self.frame)),
            false => Ok(None),
        }
    }
}

impl<W: Io> StdioBody<W> {
    /// Waits until the stream has a message (taken into `frame` if `take`),
    /// has ended (`false`), or failed: the child gone, silent for
    /// `read_timeout`, or the call cancelled.
    async fn wait(&mut self, read_timeout: Duration, take: bool) -> Result<bool, TransportFailure> {
        let Some(key) = self.key else {
            return Ok(false);
        };
        let shared = self.link.owner.shared.clone();
        let silent_until = Instant::now() + read_timeout;
        loop {
            let listener = {
                let mut s = lock(&shared.state);
                let Some(st) = s.streams.get_mut(&key) else {
                    return Ok(false);
                };
                if !st.queue.is_empty() {
                    if take {
                        if let Some(frame) = st.queue.pop_front() {
                            self.frame = frame;
                        }
                    }
                    return Ok(true);
                }
                if st.done {
                    if take {
                        s.close(key);
                        self.key = None;
                    }
                    return Ok(false);
                }
                if st.dead {
                    let unread = st.unread;
                    let note = s.exit_note();
                    s.close(key);
                    self.key = None;
                    return Err(if unread {
                        // It never read a byte of the request: nothing ran.
                        TransportFailure::not_sent(
                            FailureKind::Connect,
                            format!("the server process exited before reading the request{note}"),
                        )
                    } else {
                        TransportFailure::after_send(
                            FailureKind::Reset,
                            format!("the server process exited{note}"),
                        )
                    });
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
        let Some(p) = s
            .child
            .as_mut()
            .filter(|p| p.alive && p.incarnation == st.incarnation)
        else {
            return;
        };
        if let (Some(tx), Ok(mut line)) = (p.stdin.as_ref(), serde_json::to_vec(&note)) {
            line.push(b'\n');
            let len = line.len() as u64;
            if tx.send(line).is_ok() {
                p.queued += len;
            }
        }
    }
}
