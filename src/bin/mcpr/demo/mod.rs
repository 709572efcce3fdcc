//! `mcpr demo`, the README's first command: the real blocking client
//! against an embedded DEMO server (see [`server`]) that loses sessions on
//! cue. Four scripted scenarios, each printed as a trace of what the server
//! did, what the client decided (its `on_recovery` actions), how long it
//! took and what the call returned:
//!
//! 1. idle expiry: the server forgets a session nobody used;
//! 2. restart: a call lands while the server is down, then finds its
//!    session forgotten;
//! 3. a herd: 8 threads call at once across one expiry, and the server sees
//!    exactly one new `initialize`;
//! 4. a non-idempotent tool whose connection is cut mid-call: the call ends
//!    `OutcomeUncertain` and the server's counter shows it ran once.

mod server;

use crate::exit::Exit;
use mcp_recovery::blocking::{Client, Error};
use mcp_recovery::core::{Action, CallError, Recovery};
use serde_json::json;
use server::DemoServer;
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The demo server forgets a session unused for this long.
const IDLE_TTL: Duration = Duration::from_millis(500);
/// How long the restart keeps the port closed.
const DOWNTIME: Duration = Duration::from_millis(300);
const HERD: usize = 8;

/// What happened, in order, from the server and the client, with the time
/// since the demo started. Shared by both sides so their lines interleave
/// as they happened.
#[derive(Clone)]
pub struct Trace {
    start: Instant,
    events: Arc<Mutex<Vec<(Duration, String)>>>,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            start: Instant::now(),
            events: Arc::default(),
        }
    }

    /// Records one line.
    pub fn note(&self, line: impl Into<String>) {
        let at = self.start.elapsed();
        self.lock().push((at, line.into()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Duration, String)>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints and forgets the lines so far. With `collapse`, repeated lines
    /// (a herd of threads doing the same thing) print once, with a count.
    fn flush(&self, collapse: bool) {
        let events = std::mem::take(&mut *self.lock());
        let mut shown: Vec<(Duration, String, usize)> = Vec::new();
        for (at, line) in events {
            match shown.iter_mut().find(|(_, l, _)| collapse && *l == line) {
                Some(seen) => seen.2 += 1,
                None => shown.push((at, line, 1)),
            }
        }
        for (at, line, n) in shown {
            let times = if n > 1 {
                format!("  (x{n})")
            } else {
                String::new()
            };
            println!("  {:>7.3}s  {line}{times}", at.as_secs_f64());
        }
    }
}

/// The client's recovery actions, as trace lines.
fn observe(trace: &Trace, action: &Action) {
    let line = match action {
        Action::SignalReconnect { generation } => format!(
            "client: SignalReconnect: session lost, re-initializing (session generation {generation})"
        ),
        Action::SessionReady { generation } => {
            format!("client: SessionReady: session generation {generation} is up")
        }
        Action::SessionFailed { generation, error } => {
            format!("client: SessionFailed: generation {generation}: {error}")
        }
        Action::AwaitReady { .. } => {
            "client: AwaitReady: a call waits for the new session".to_owned()
        }
        Action::RetryOnce { recovery, .. } => {
            let why = match recovery {
                Recovery::Session => "the session was re-initialized",
                Recovery::Auth => "the token was refreshed",
                Recovery::Transport => "a transport failure that is safe to resend",
                _ => "a recovery",
            };
            format!("client: RetryOnce: sending the call again after {why}")
        }
        _ => return,
    };
    trace.note(line);
}

struct Demo {
    client: Client,
    server: Arc<DemoServer>,
    trace: Trace,
}

type Scenario = fn(&Demo) -> Result<String, String>;

/// Runs the demo; exit 0 when every scenario went as expected.
pub fn run() -> Exit {
    let started = Instant::now();
    let trace = Trace::new();
    let server = match DemoServer::start(trace.clone(), IDLE_TTL) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("mcpr: demo: cannot start the demo server on 127.0.0.1: {e}");
            return Exit::Unreachable;
        }
    };
    println!("mcpr demo: the recovering blocking client against an embedded DEMO server");
    println!(
        "(not a real MCP server) at {}. It forgets sessions idle for {} ms and can restart.",
        server.url(),
        IDLE_TTL.as_millis()
    );
    println!("Every call below goes through mcp_recovery::blocking::Client, default settings.");

    let observer = trace.clone();
    let client = Client::builder(&server.url())
        .read_timeout(Duration::from_secs(5))
        .call_timeout(Duration::from_secs(5))
        .on_recovery(move |a| observe(&observer, a))
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcpr: demo: {e}");
            return Exit::BadInput;
        }
    };
    let demo = Demo {
        client,
        server,
        trace,
    };

    println!("\n[setup] tools/list (the client remembers which tools are safe to resend)");
    match demo.client.all_tools() {
        Ok(tools) => {
            demo.trace.flush(false);
            for t in tools {
                let safe = if t.replay_safe() {
                    "replay-safe"
                } else {
                    "NOT replay-safe"
                };
                println!("  => {} ({safe})", t.name);
            }
        }
        Err(e) => {
            demo.trace.flush(false);
            eprintln!("mcpr: demo: tools/list failed: {e}");
            return Exit::Unreachable;
        }
    }

    let scenarios: [(&str, Scenario, bool); 4] = [
        (
            "idle expiry: the server forgets a session nobody used",
            idle_expiry,
            false,
        ),
        (
            "restart: a call lands while the server is down, then finds its session forgotten",
            restart,
            false,
        ),
        ("herd: 8 threads call at once across one expiry", herd, true),
        (
            "cut mid-call: a non-idempotent tool loses its connection after it ran",
            cut_mid_call,
            false,
        ),
    ];
    let mut good = 0;
    for (i, (title, scenario, collapse)) in scenarios.iter().enumerate() {
        println!("\n[{}/{}] {title}", i + 1, scenarios.len());
        let outcome = scenario(&demo);
        demo.trace.flush(*collapse);
        match outcome {
            Ok(what) => {
                good += 1;
                println!("  => {what}");
            }
            Err(what) => println!("  => NOT AS EXPECTED: {what}"),
        }
    }
    let _ = demo.client.close();
    println!(
        "\nsummary: {good}/{} scenarios went as expected in {:.1} s; the server saw {} initializes \
         (1 + {} recoveries) and `transfer` ran {} time(s)",
        scenarios.len(),
        started.elapsed().as_secs_f64(),
        demo.server.initializes(),
        demo.server.initializes().saturating_sub(1),
        demo.server.transfers(),
    );
    if good == scenarios.len() {
        Exit::Ok
    } else {
        Exit::ServerError
    }
}

impl Demo {
    fn echo(&self, text: &str) -> Result<(String, Duration), String> {
        self.trace
            .note(format!("call:   echo {{\"text\": {text:?}}}"));
        let t = Instant::now();
        let r = self
            .client
            .call_tool("echo", json!({ "text": text }))
            .map_err(|e| format!("echo failed: {e}"))?;
        Ok((r.text(), t.elapsed()))
    }

    fn await_expiry(&self) -> Result<(), String> {
        if self.server.await_no_sessions(IDLE_TTL * 4) {
            Ok(())
        } else {
            Err("the demo server did not expire the session".into())
        }
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn idle_expiry(d: &Demo) -> Result<String, String> {
    d.echo("before the expiry")?;
    d.await_expiry()?;
    let before = d.server.initializes();
    let (text, took) = d.echo("after the expiry")?;
    let inits = d.server.initializes() - before;
    if text != "after the expiry" || inits != 1 {
        return Err(format!("answer {text:?} after {inits} re-initializes"));
    }
    Ok(format!(
        "recovered in {} ms: 404, one re-initialize, one retry; echo returned {text:?}",
        ms(took)
    ))
}

fn restart(d: &Demo) -> Result<String, String> {
    let before = d.server.initializes();
    d.server.restart(DOWNTIME);
    let (text, took) = d.echo("during the restart")?;
    let inits = d.server.initializes() - before;
    if text != "during the restart" || inits != 1 {
        return Err(format!("answer {text:?} after {inits} re-initializes"));
    }
    Ok(format!(
        "recovered in {} ms: connection refused, waited for the server (one scout at a time), \
         404 from the restarted server, one re-initialize, one retry; echo returned {text:?}",
        ms(took)
    ))
}

fn herd(d: &Demo) -> Result<String, String> {
    d.await_expiry()?;
    let before = d.server.initializes();
    d.trace.note(format!(
        "call:   {HERD} threads call `add` at once on the expired session"
    ));
    let start = Arc::new(Barrier::new(HERD));
    let t = Instant::now();
    let threads: Vec<_> = (0..HERD)
        .map(|i| {
            let (client, start) = (d.client.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let r = client.call_tool("add", json!({"a": i, "b": 1000}));
                r.map(|r| r.text() == (i + 1000).to_string())
            })
        })
        .collect();
    let mut right = 0;
    for t in threads {
        match t.join() {
            Ok(Ok(true)) => right += 1,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => d.trace.note(format!("call failed: {e}")),
            Err(_) => d.trace.note("a caller thread panicked"),
        }
    }
    let took = t.elapsed();
    let inits = d.server.initializes() - before;
    if right != HERD || inits != 1 {
        return Err(format!(
            "{right}/{HERD} right answers, {inits} re-initializes (want {HERD} and 1)"
        ));
    }
    Ok(format!(
        "{right}/{HERD} calls answered correctly in {} ms; the server saw exactly 1 new initialize",
        ms(took)
    ))
}

fn cut_mid_call(d: &Demo) -> Result<String, String> {
    let before = d.server.transfers();
    d.trace.note("call:   transfer {\"amount\": 10}");
    let t = Instant::now();
    let outcome = d.client.call_tool("transfer", json!({"amount": 10}));
    let took = t.elapsed();
    let err = match outcome {
        Err(Error::Call(e @ CallError::OutcomeUncertain { .. })) => e,
        Err(e) => return Err(format!("expected OutcomeUncertain, got: {e}")),
        Ok(r) => {
            return Err(format!(
                "expected OutcomeUncertain, got an answer: {}",
                r.text()
            ))
        }
    };
    d.trace.note(format!("client: {err}"));
    let counted = d
        .client
        .call_tool("transfers", json!({}))
        .map_err(|e| format!("transfers failed: {e}"))?
        .text();
    d.trace.note(format!(
        "call:   transfers {{}} -> the server's counter says {counted}"
    ));
    let ran = d.server.transfers() - before;
    if ran != 1 || counted != d.server.transfers().to_string() {
        return Err(format!("transfer ran {ran} times"));
    }
    Ok(format!(
        "OutcomeUncertain after {} ms, not resent (transfer is not idempotent); \
         the server's counter shows it ran exactly once",
        ms(took)
    ))
}
