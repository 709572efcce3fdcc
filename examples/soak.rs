//! Soak and memory run of both clients against the real Python peer
//! (official SDK, `mcp==2.3.0`, `session_idle_timeout` 0.3 s), which is
//! killed and started again on the same port every few seconds, with an
//! idle pause between restarts so sessions also expire by idle timeout.
//!
//! Every call is an `echo` or `add` (read-only: answers are checked) or,
//! one call in ten, `counter_increment` (NOT idempotent). A worker told
//! `CircuitOpen` waits the `retry_in` it was given (at least 50 ms) before
//! its next call.
//! At the end it
//! reads the server's counters and checks:
//!
//! - every call ended: results recorded == calls made (no lost call, no
//!   hang: a watchdog fails the run when nothing ends for `--hang-after`);
//! - no wrong answer (an echo gets its own text back, an add its own sum);
//! - the server's executions of `counter_increment` == successful
//!   increments + k, with 0 <= k <= increments that ended `OutcomeUncertain`
//!   (never a second execution, never an unreported one);
//! - no two successful increments saw the same counter value.
//!
//! It exits 1 if one fails, 2 on bad usage or a missing peer, 3 on a hang.
//!
//! ```sh
//! bash scripts/peers.sh   # once: installs the Python peer
//! cargo run --release --features ureq,smol --example soak -- --client both --calls 10000
//! cargo run --release --features ureq,smol --example soak -- --client ureq --memory
//! ```
//!
//! Flags: `--client ureq|smol|both` (both), `--calls N` (10000; 100000
//! with `--memory`), `--threads N` (8, ureq), `--tasks N` (32, smol),
//! `--restart-every SECS` (3; 0 = never), `--idle-timeout SECS` (0.3),
//! `--increment-every N` (10), `--breaker-cooldown SECS` (1),
//! `--hang-after SECS` (60), `--memory` (samples VmRSS every 10 000 calls,
//! fails if it grows more than `--rss-bound-mib` (16) after the warm-up
//! sample), `--protocol legacy|auto` (legacy: the handshake wire, whose
//! sessions the restarts and the idle timeout take away; auto: this server
//! speaks 2026-07-28, so the stateless wire, where only the restarts
//! matter).

use mcp_recovery::client::{Error, ToolResult};
use mcp_recovery::core::{BreakerConfig, CallError, Protocol};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls between two resident-memory samples in `--memory` mode.
const RSS_EVERY: u64 = 10_000;

#[derive(Debug, Clone)]
struct Opts {
    clients: Vec<Which>,
    calls: u64,
    threads: usize,
    tasks: usize,
    restart_every: f64,
    idle_timeout: f64,
    increment_every: u64,
    breaker_cooldown: f64,
    hang_after: f64,
    memory: bool,
    rss_bound_mib: u64,
    protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Ureq,
    Smol,
}

fn usage(msg: &str) -> ! {
    eprintln!("soak: {msg}");
    eprintln!(
        "usage: soak [--client ureq|smol|both] [--calls N] [--threads N] [--tasks N] \
         [--restart-every SECS] [--idle-timeout SECS] [--increment-every N] \
         [--breaker-cooldown SECS] [--hang-after SECS] [--memory] [--rss-bound-mib N] \
         [--protocol legacy|auto]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        clients: vec![Which::Ureq, Which::Smol],
        calls: 0,
        threads: 8,
        tasks: 32,
        restart_every: 3.0,
        idle_timeout: 0.3,
        increment_every: 10,
        breaker_cooldown: 1.0,
        hang_after: 60.0,
        memory: false,
        rss_bound_mib: 16,
        protocol: Protocol::Legacy,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--memory" {
            o.memory = true;
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> T {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v}")))
        }
        match flag.as_str() {
            "--client" => {
                o.clients = match value.as_str() {
                    "ureq" => vec![Which::Ureq],
                    "smol" => vec![Which::Smol],
                    "both" => vec![Which::Ureq, Which::Smol],
                    _ => usage("--client is ureq, smol or both"),
                }
            }
            "--calls" => o.calls = num(&flag, &value),
            "--threads" => o.threads = num(&flag, &value),
            "--tasks" => o.tasks = num(&flag, &value),
            "--restart-every" => o.restart_every = num(&flag, &value),
            "--idle-timeout" => o.idle_timeout = num(&flag, &value),
            "--increment-every" => o.increment_every = num(&flag, &value),
            "--breaker-cooldown" => o.breaker_cooldown = num(&flag, &value),
            "--hang-after" => o.hang_after = num(&flag, &value),
            "--rss-bound-mib" => o.rss_bound_mib = num(&flag, &value),
            "--protocol" => {
                o.protocol = match value.as_str() {
                    "legacy" => Protocol::Legacy,
                    "auto" => Protocol::Auto,
                    _ => usage("--protocol is legacy or auto"),
                }
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    if o.calls == 0 {
        o.calls = if o.memory { 100_000 } else { 10_000 };
    }
    if o.threads == 0 || o.tasks == 0 || o.increment_every == 0 {
        usage("--threads, --tasks and --increment-every must be at least 1");
    }
    if !(o.idle_timeout > 0.0 && o.idle_timeout.is_finite()) {
        usage("--idle-timeout must be a positive number of seconds");
    }
    o
}

// ---------------------------------------------------------------- the peer

/// The Python peer, restarted on the same port; its counters live in files
/// under `state` and survive restarts.
struct Peer {
    port: u16,
    state: PathBuf,
    idle_timeout: f64,
    child: Option<Child>,
}

impl Peer {
    fn start(idle_timeout: f64, tag: &str) -> Peer {
        let state =
            std::env::temp_dir().join(format!("mcp-recovery-soak-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("create the peer's state dir");
        let mut peer = Peer {
            port: 0,
            state,
            idle_timeout,
            child: None,
        };
        peer.spawn();
        peer
    }

    fn spawn(&mut self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
        let python = dir.join(".venv/bin/python");
        if !python.exists() {
            eprintln!(
                "soak: the Python peer is not installed ({} missing): run `bash scripts/peers.sh` first",
                python.display()
            );
            std::process::exit(2);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state.join("peer.log"))
            .expect("peer log");
        let mut child = Command::new(&python)
            .arg(dir.join("python_server.py"))
            .args([
                "--mode",
                "sse",
                "--idle-timeout",
                &self.idle_timeout.to_string(),
            ])
            .arg("--state")
            .arg(&self.state)
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("soak: cannot start {}: {e}", python.display());
                std::process::exit(2)
            });
        let stdout = child.stdout.take().expect("peer stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(port)) => {
                self.port = port;
                self.child = Some(child);
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(self.state.join("peer.log")).unwrap_or_default();
                eprintln!(
                    "soak: the Python peer did not print READY within 30 s (port {}); its stderr:\n{log}",
                    self.port
                );
                std::process::exit(2);
            }
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// SIGKILL: every session and every call in flight is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn count(&self, name: &str) -> u64 {
        std::fs::read_to_string(self.state.join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

// ------------------------------------------------------------- the calls

/// What call number `i` is, and what its answer must be.
enum Plan {
    Echo(String),
    Add(u64, u64),
    Increment,
}

impl Plan {
    fn of(i: u64, increment_every: u64) -> Plan {
        if i % increment_every == increment_every - 1 {
            Plan::Increment
        } else if i.is_multiple_of(2) {
            Plan::Echo(format!("soak call {i}"))
        } else {
            Plan::Add(i, 7)
        }
    }

    fn tool(&self) -> (&'static str, Value) {
        match self {
            Plan::Echo(text) => ("echo", json!({ "text": text })),
            Plan::Add(a, b) => ("add", json!({ "a": a, "b": b })),
            Plan::Increment => ("counter_increment", json!({})),
        }
    }
}

/// Everything the run saw; one entry per ended call.
#[derive(Default)]
struct Tally {
    ok: u64,
    wrong: u64,
    wrong_examples: Vec<String>,
    /// class -> (count, first message)
    errors: BTreeMap<String, (u64, String)>,
    increments_ok: u64,
    increments_uncertain: u64,
    /// Increments that ended in another typed error (never sent, or the
    /// server refused them): they must not have run.
    increments_failed: u64,
    /// class -> count, for increments only.
    increment_errors: BTreeMap<String, u64>,
    increment_values: HashSet<u64>,
    duplicate_values: u64,
    /// (calls ended, VmRSS KiB)
    rss: Vec<(u64, u64)>,
}

struct Shared {
    opts: Opts,
    next: AtomicU64,
    ended: AtomicU64,
    tally: Mutex<Tally>,
    paused: AtomicBool,
    done: AtomicBool,
}

impl Shared {
    /// The next call number, or `None` once every call is handed out.
    fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.opts.calls).then_some(i)
    }

    fn record(&self, plan: &Plan, result: Result<ToolResult, Error>) {
        let mut t = self.tally.lock().unwrap();
        match result {
            Ok(r) => {
                let text = r.text();
                let right = !r.is_error
                    && match plan {
                        Plan::Echo(s) => text == *s,
                        Plan::Add(a, b) => text == (a + b).to_string(),
                        Plan::Increment => text.parse::<u64>().is_ok(),
                    };
                if right {
                    t.ok += 1;
                    if let Plan::Increment = plan {
                        t.increments_ok += 1;
                        if !self.opts.memory && !t.increment_values.insert(text.parse().unwrap()) {
                            t.duplicate_values += 1;
                        }
                    }
                } else {
                    t.wrong += 1;
                    if t.wrong_examples.len() < 5 {
                        let (tool, args) = plan.tool();
                        t.wrong_examples.push(format!(
                            "{tool}({args}) -> {text:?} (isError {})",
                            r.is_error
                        ));
                    }
                }
            }
            Err(e) => {
                let class = class(&e);
                if let Plan::Increment = plan {
                    *t.increment_errors.entry(class.clone()).or_default() += 1;
                    if matches!(e, Error::Call(CallError::OutcomeUncertain { .. })) {
                        t.increments_uncertain += 1;
                    } else {
                        t.increments_failed += 1;
                    }
                }
                let entry = t.errors.entry(class).or_insert((0, e.to_string()));
                entry.0 += 1;
            }
        }
        let ended = self.ended.fetch_add(1, Ordering::Relaxed) + 1;
        if self.opts.memory && ended.is_multiple_of(RSS_EVERY) {
            t.rss.push((ended, rss_kib()));
        }
    }

    /// Holds a worker while the controller lets the session go idle.
    fn must_wait(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// The error's class: its variant (and the inner one for wrappers).
fn class(e: &Error) -> String {
    match e {
        Error::Call(c) => call_class(c),
        Error::Rpc(r) => format!("Rpc({})", r.code),
        Error::Timeout => "Timeout".into(),
        Error::Decode(_) => "Decode".into(),
        Error::Config(_) => "Config".into(),
        Error::Auth(_) => "Auth".into(),
        other => format!("other: {other}"),
    }
}

fn call_class(c: &CallError) -> String {
    match c {
        CallError::Cancelled => "Cancelled".into(),
        CallError::CircuitOpen { .. } => "CircuitOpen".into(),
        CallError::ReconnectTimeout { .. } => "ReconnectTimeout".into(),
        CallError::RefreshTimeout { .. } => "RefreshTimeout".into(),
        CallError::NeedsReauth { .. } => "NeedsReauth".into(),
        CallError::RefreshFailed { .. } => "RefreshFailed".into(),
        CallError::Unauthorized => "Unauthorized".into(),
        CallError::SessionLost { .. } => "SessionLost".into(),
        CallError::OutcomeUncertain { .. } => "OutcomeUncertain".into(),
        CallError::Transport { kind, .. } => format!("Transport({kind:?})"),
        CallError::Http { status, .. } => format!("Http({status})"),
        CallError::Protocol(p) => {
            let name = format!("{p:?}");
            let name = name.split(['(', ' ', '{']).next().unwrap_or("").to_string();
            format!("Protocol({name})")
        }
        CallError::InitializeFailed(inner) => format!("InitializeFailed({})", call_class(inner)),
        CallError::InitializeRejected(r) => format!("InitializeRejected({})", r.code),
        CallError::Closed => "Closed".into(),
        other => format!("other: {other}"),
    }
}

/// How long a caller told `CircuitOpen` waits before its next call, as an
/// application would (else the open breaker fails the rest of the calls in
/// a few milliseconds and the run no longer spans restarts): the
/// `retry_in` it was given, at least 50 ms (`retry_in` is 0 while the
/// half-open breaker's one probe is in flight).
fn backoff(result: &Result<ToolResult, Error>) -> Option<Duration> {
    match result {
        Err(Error::Call(CallError::CircuitOpen { retry_in })) => {
            Some((*retry_in).max(Duration::from_millis(50)))
        }
        _ => None,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

// ------------------------------------------------------------- the clients

fn breaker(o: &Opts) -> BreakerConfig {
    BreakerConfig::new(3, Duration::from_secs_f64(o.breaker_cooldown))
}

/// One blocking client shared by `--threads` threads.
fn run_ureq(url: &str, shared: &Arc<Shared>) -> Result<u64, Error> {
    use mcp_recovery::blocking::Client;
    let client = Client::builder(url)
        .protocol(shared.opts.protocol)
        .read_timeout(Duration::from_secs(30))
        .breaker(breaker(&shared.opts))
        .build()?;
    client.all_tools()?; // learns echo/add are read-only: retried after a cut
    let workers: Vec<_> = (0..shared.opts.threads)
        .map(|_| {
            let (client, shared) = (client.clone(), shared.clone());
            std::thread::spawn(move || {
                while let Some(i) = shared.take() {
                    while shared.must_wait() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let plan = Plan::of(i, shared.opts.increment_every);
                    let (tool, args) = plan.tool();
                    let result = client.call_tool(tool, args);
                    let wait = backoff(&result);
                    shared.record(&plan, result);
                    if let Some(d) = wait {
                        std::thread::sleep(d);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker thread panicked");
    }
    let generation = client.generation();
    let _ = client.close();
    Ok(generation)
}

/// One async client shared by `--tasks` tasks.
fn run_smol(url: &str, shared: &Arc<Shared>) -> Result<u64, Error> {
    use mcp_recovery::smol::Client;
    let client = Client::builder(url)
        .protocol(shared.opts.protocol)
        .read_timeout(Duration::from_secs(30))
        .breaker(breaker(&shared.opts))
        .build()?;
    smol::block_on(async {
        client.all_tools().await?;
        let workers: Vec<_> = (0..shared.opts.tasks)
            .map(|_| {
                let (client, shared) = (client.clone(), shared.clone());
                smol::spawn(async move {
                    while let Some(i) = shared.take() {
                        while shared.must_wait() {
                            smol::Timer::after(Duration::from_millis(10)).await;
                        }
                        let plan = Plan::of(i, shared.opts.increment_every);
                        let (tool, args) = plan.tool();
                        let result = client.call_tool(tool, args).await;
                        let wait = backoff(&result);
                        shared.record(&plan, result);
                        if let Some(d) = wait {
                            smol::Timer::after(d).await;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.await;
        }
        let generation = client.generation();
        let _ = client.close().await;
        Ok(generation)
    })
}

// ------------------------------------------------------------------ a run

struct Events {
    restarts: u64,
    pauses: u64,
    restart_time: Duration,
}

/// Every `restart_every`: an idle pause half-way (no new calls for
/// `idle_timeout` + 0.4 s, so the server's idle timeout drops the
/// session), then a kill + start on the same port.
fn control(peer: &Mutex<Peer>, shared: &Shared) -> Events {
    let mut ev = Events {
        restarts: 0,
        pauses: 0,
        restart_time: Duration::ZERO,
    };
    if shared.opts.restart_every <= 0.0 {
        while !shared.done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return ev;
    }
    let half = Duration::from_secs_f64(shared.opts.restart_every / 2.0);
    let pause = Duration::from_secs_f64(shared.opts.idle_timeout + 0.4);
    let sleep = |d: Duration| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if shared.done.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    };
    loop {
        if !sleep(half) {
            return ev;
        }
        shared.paused.store(true, Ordering::Relaxed);
        ev.pauses += 1;
        let went_on = sleep(pause);
        shared.paused.store(false, Ordering::Relaxed);
        if !went_on || !sleep(half) {
            return ev;
        }
        let t = Instant::now();
        peer.lock().unwrap().restart();
        ev.restart_time += t.elapsed();
        ev.restarts += 1;
    }
}

/// Fails the whole process when no call has ended for `hang_after` while
/// some are in flight: a hang is a bug to report, not to wait out.
fn watchdog(peer: &Arc<Mutex<Peer>>, shared: &Arc<Shared>, name: &'static str) {
    let (peer, shared) = (peer.clone(), shared.clone());
    std::thread::spawn(move || {
        let mut last = (0, Instant::now());
        while !shared.done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let ended = shared.ended.load(Ordering::Relaxed);
            if ended != last.0 || shared.paused.load(Ordering::Relaxed) {
                last = (ended, Instant::now());
            } else if last.1.elapsed().as_secs_f64() > shared.opts.hang_after {
                let started = shared.next.load(Ordering::Relaxed).min(shared.opts.calls);
                eprintln!(
                    "soak: HANG ({name}): no call ended for {:.0} s; {started} started, {ended} ended, {} in flight",
                    shared.opts.hang_after,
                    started - ended
                );
                peer.lock().unwrap().kill();
                std::process::exit(3);
            }
        }
    });
}

/// Runs one client to the end; returns whether every invariant held.
fn run(which: Which, opts: &Opts) -> bool {
    let (name, workers) = match which {
        Which::Ureq => ("ureq", format!("{} threads", opts.threads)),
        Which::Smol => ("smol", format!("{} tasks", opts.tasks)),
    };
    let peer = Arc::new(Mutex::new(Peer::start(opts.idle_timeout, name)));
    let url = peer.lock().unwrap().url();
    println!(
        "== {name}: {} calls from {workers} on one client ({:?} protocol), Python peer (mcp 2.3.0, SSE, \
         idle timeout {} s) restarted every {} s, breaker 3 failures / {} s cooldown",
        opts.calls, opts.protocol, opts.idle_timeout, opts.restart_every, opts.breaker_cooldown
    );
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        next: AtomicU64::new(0),
        ended: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
        paused: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });
    if opts.memory {
        shared.tally.lock().unwrap().rss.push((0, rss_kib()));
    }
    watchdog(&peer, &shared, name);
    let controller = {
        let (peer, shared) = (peer.clone(), shared.clone());
        std::thread::spawn(move || control(&peer, &shared))
    };
    let started = Instant::now();
    let generation = match which {
        Which::Ureq => run_ureq(&url, &shared),
        Which::Smol => run_smol(&url, &shared),
    };
    let wall = started.elapsed();
    shared.done.store(true, Ordering::Relaxed);
    let events = controller.join().expect("controller");
    let generation = match generation {
        Ok(g) => g,
        Err(e) => {
            eprintln!("soak: {name}: the client could not start against a live server: {e}");
            return false;
        }
    };
    // Let a call the server was still running when the last worker gave
    // up on it finish counting before the counters are read.
    std::thread::sleep(Duration::from_millis(300));
    let peer = peer.lock().unwrap();
    let (executions, initializes) = (peer.count("counter"), peer.count("initialize"));
    drop(peer);

    let t = shared.tally.lock().unwrap();
    let made = shared.next.load(Ordering::Relaxed).min(opts.calls);
    let ended = shared.ended.load(Ordering::Relaxed);
    let errors: u64 = t.errors.values().map(|(n, _)| n).sum();
    let increments = t.increments_ok + t.increments_uncertain + t.increments_failed;
    println!("calls made          {made}");
    println!(
        "calls ended         {ended} (ok {} + wrong answers {} + typed errors {errors})",
        t.ok, t.wrong
    );
    println!(
        "errors by class     {}",
        if t.errors.is_empty() { "none" } else { "" }
    );
    for (class, (n, first)) in &t.errors {
        println!("  {n:>7}  {class:<34} e.g. {first}");
    }
    for w in &t.wrong_examples {
        println!("  wrong answer: {w}");
    }
    println!(
        "re-initializes      client: {} (generation {generation}); server: {initializes} initialize requests handled",
        generation.saturating_sub(1)
    );
    println!(
        "server events       {} restarts (mean {:.2} s each to READY), {} idle pauses",
        events.restarts,
        events.restart_time.as_secs_f64() / events.restarts.max(1) as f64,
        events.pauses
    );
    println!(
        "counter_increment   {increments} calls: ok {}, OutcomeUncertain {}, other typed errors {}; server executions {executions}",
        t.increments_ok, t.increments_uncertain, t.increments_failed
    );
    if !t.increment_errors.is_empty() {
        let classes: Vec<String> = t
            .increment_errors
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        println!("  their errors      {}", classes.join(", "));
    }
    println!(
        "wall time           {:.1} s ({:.0} calls/s)",
        wall.as_secs_f64(),
        made as f64 / wall.as_secs_f64()
    );

    let mut fails = Vec::new();
    if ended != made || made != opts.calls {
        fails.push(format!(
            "{made} calls made, {ended} ended (every call must end once)"
        ));
    }
    if t.ok + t.wrong + errors != ended {
        fails.push("results do not add up to the calls ended".into());
    }
    if t.wrong > 0 {
        fails.push(format!("{} wrong answers", t.wrong));
    }
    if t.duplicate_values > 0 {
        fails.push(format!(
            "{} successful increments saw a counter value already seen",
            t.duplicate_values
        ));
    }
    let extra = executions as i64 - t.increments_ok as i64;
    if extra < 0 || extra as u64 > t.increments_uncertain {
        fails.push(format!(
            "server executions {executions} != ok increments {} + k with 0 <= k <= {} OutcomeUncertain (k = {extra})",
            t.increments_ok, t.increments_uncertain
        ));
    } else {
        println!(
            "executions check    {executions} = {} ok + {extra} of {} uncertain: holds",
            t.increments_ok, t.increments_uncertain
        );
    }
    if opts.memory {
        fails.extend(memory_report(&t.rss, opts.rss_bound_mib));
    }
    if fails.is_empty() {
        println!("invariants          all hold");
        true
    } else {
        for f in &fails {
            println!("INVARIANT BROKEN    {f}");
        }
        false
    }
}

/// Prints the samples; fails if any after the warm-up sample (the first
/// taken after calls ran) exceeds it by more than `bound_mib`.
fn memory_report(rss: &[(u64, u64)], bound_mib: u64) -> Vec<String> {
    let samples: Vec<String> = rss.iter().map(|(n, kib)| format!("{n}:{kib}")).collect();
    println!("VmRSS KiB by calls  {}", samples.join(" "));
    let Some(&(warm_at, warm)) = rss.get(1) else {
        return vec!["no resident-memory sample after warm-up".into()];
    };
    let (last_at, last) = *rss.last().unwrap();
    let max = rss[1..].iter().map(|&(_, k)| k).max().unwrap_or(warm);
    println!(
        "memory              start {} KiB; after warm-up ({warm_at} calls) {warm} KiB; last ({last_at} calls) {last} KiB; \
         max after warm-up {max} KiB; growth {:+} KiB (bound {} KiB)",
        rss[0].1,
        max as i64 - warm as i64,
        bound_mib * 1024
    );
    if max > warm + bound_mib * 1024 {
        vec![format!(
            "resident memory grew {} KiB after warm-up, more than {bound_mib} MiB",
            max - warm
        )]
    } else {
        Vec::new()
    }
}

fn main() -> ExitCode {
    let opts = parse_opts();
    println!(
        "soak: {} on {} CPUs",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut ok = true;
    for which in opts.clients.clone() {
        ok &= run(which, &opts);
    }
    if ok {
        println!("soak: every invariant held");
        ExitCode::SUCCESS
    } else {
        println!("soak: FAILED");
        ExitCode::FAILURE
    }
}
