//! Benchmarks against the real peers (`tests/peers`, installed pinned by
//! `scripts/peers.sh`), printed as Markdown:
//!
//! 1. Against the official clients: 1 000 sequential `tools/call "echo"` on
//!    the same Python peer by the official Python SDK client, the official
//!    TypeScript SDK client, and ours (blocking and smol), each in its own
//!    process; wall time and the process's CPU time (user+sys, getrusage)
//!    over the loop, plus the whole process's CPU at exit.
//! 2. Recovery latency: after an idle-timeout expiry (Python peer,
//!    `--idle-timeout`), time from the failing response (our
//!    `on_recovery` observer sees `SignalReconnect`) to the retried call's
//!    result, against one plain call on the same server. Then after a
//!    server restart, ours next to the official TypeScript client recovering
//!    by hand (new transport + connect + call).
//! 3. Herd: 64 smol tasks and 16 ureq threads across one expiry: initialize
//!    requests the server saw, and the time until all callers finished,
//!    against one caller's recovery and against the same herd with no
//!    expiry.
//!
//! 4. Protocol revisions (`wires`): connecting with the probe
//!    (`Protocol::Auto`) against the handshake (`Protocol::Legacy`) on a
//!    server that speaks both (Python) and one that speaks only the
//!    handshake (TypeScript 1.32.2), POSTs counted by the servers; client
//!    CPU per call on each wire against the same Python server; POSTs saved
//!    by the 2026-07-28 cache over 1 000 mixed calls.
//!
//! 5. Cancel (`cancel`): from `CancelHandle::cancel()` to the call's
//!    return while the server is silent.
//! 6. Over stdio (`stdio`): the same 1 000 calls with the Python peer as
//!    each client's child process, and the time from a crash of the child
//!    to the next call's result.
//! 7. Over TLS (`tls`): the comparison of (1) against the Python peer
//!    serving HTTPS (a CA of its own, which every client is made to trust),
//!    with kept connections and with a fresh connection per request (the
//!    peer answers `Connection: close`), on loopback and through a proxy
//!    adding 10 ms each way; TCP connections counted at the proxy, TLS
//!    handshakes (full or resumed) at the peer.
//!
//! Run: `cargo run --release --features ureq,smol --example bench_peers`
//! (scripts/bench.sh runs it). `BENCH_CALLS` sets the call count of (1),
//! (6) and (7) (a tenth of it through the delay proxy, where a call is
//! round trips and varies little);
//! `BENCH_ONLY=clients,recovery,herd,wires,cancel,stdio,tls` picks parts.
//!
//! The program re-runs itself as `bench_peers child calls ureq|smol URL N`
//! for our clients' processes (`BENCH_CA_FILE`: trust only that CA).

#[path = "../benches/common/peer.rs"]
mod peer;
#[path = "../tests/support/counting_proxy.rs"]
mod proxy;

use mcp_recovery::client::stdio::StdioCommand;
use mcp_recovery::core::{Action, Protocol};
use mcp_recovery::{blocking, smol as smol_client};
use peer::{median, Peer};
use proxy::CountingProxy as Proxy;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

/// CPU time of this process (all threads), user + system, in seconds.
fn cpu_s() -> f64 {
    // SAFETY: getrusage writes one plain struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(rc, 0, "getrusage");
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The Python peer as shipped (`nodelay` false) or with TCP_NODELAY on its
/// connections (benches/clients/nodelay_peer.py).
fn python_peer(nodelay: bool, idle: Option<f64>) -> Peer {
    if nodelay {
        Peer::python_nodelay("sse", idle)
    } else {
        Peer::python("sse", idle)
    }
}

fn label(nodelay: bool) -> &'static str {
    if nodelay {
        "Python peer with TCP_NODELAY (nodelay_peer.py)"
    } else {
        "Python peer as shipped (TCP_NODELAY since 82d3f59)"
    }
}

fn echo_args() -> Value {
    json!({"text": "hi"})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(&args[2..]);
    }
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    println!(
        "# bench_peers: {} cores, {} calls per client",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        calls
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    for nodelay in [false, true] {
        if run("clients") {
            against_official_clients(calls, nodelay);
        }
        if run("recovery") {
            recovery_latency(nodelay);
        }
        if run("herd") {
            herd(nodelay);
        }
    }
    if run("recovery") {
        recovery_ts_peer();
    }
    if run("wires") {
        wires(calls);
    }
    if run("cancel") {
        cancel_latency();
    }
    if run("stdio") {
        stdio(calls);
    }
    if run("tls") {
        tls(calls);
    }
}

// ---------------------------------------------------------------- 7.

/// One client process's run over TLS: the loop's wall and CPU seconds, the
/// TCP connections the proxy accepted and the TLS handshakes the server
/// completed (and of those, resumed) over the whole process (connect, 20
/// warm-up calls, the loop, close).
#[derive(Clone, Copy)]
struct TlsRun {
    wall: f64,
    cpu: f64,
    connections: f64,
    handshakes: f64,
    resumed: f64,
}

/// TLS handshakes a `Peer::python_tls` server completed so far, and how
/// many of them resumed a session (`tls_peer.py`'s `/tls-stats`). Read
/// straight from the peer (not through the proxy, so the proxy's count is
/// the clients' alone) with a new agent each time: one full handshake per
/// read, counted in the figures the read returns.
fn tls_stats(peer: &Peer) -> (u64, u64) {
    let ca = ureq::tls::Certificate::from_pem(peer.ca_pem().as_bytes()).expect("CA PEM");
    let roots = ureq::tls::RootCerts::Specific(Arc::new(vec![ca]));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        .build()
        .into();
    let body = agent
        .get(format!("https://127.0.0.1:{}/tls-stats", peer.port))
        .call()
        .expect("tls-stats")
        .body_mut()
        .read_to_string()
        .expect("tls-stats body");
    let v: Value = serde_json::from_str(&body).expect("tls-stats json");
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    (n("handshakes"), n("resumed"))
}

/// Every client `rounds` times, alternating, `calls` calls each, through
/// `proxy` to the TLS `peer`; per client, per round.
fn tls_rounds(
    tag: &str,
    peer: &Peer,
    proxy: &Proxy,
    calls: usize,
    rounds: usize,
) -> Vec<Vec<TlsRun>> {
    let url = peer.url_at(proxy.port);
    let ca = peer.ca_file();
    let mut results = vec![vec![]; CLIENTS.len()];
    for round in 0..rounds {
        for (i, which) in CLIENTS.iter().enumerate() {
            let mut cmd = client_command(which, &url, calls);
            // How each client is told to trust the peer's CA: the Python
            // one builds its httpx client with it (py_client.py), Node adds
            // it to its roots, ours read it in `child`.
            cmd.env("BENCH_CA_FILE", &ca)
                .env("NODE_EXTRA_CA_CERTS", &ca);
            let (conns, stats) = (proxy.connections(), tls_stats(peer));
            let v = run_json(cmd);
            let (conns_after, stats_after) = (proxy.connections(), tls_stats(peer));
            let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
            let r = TlsRun {
                wall: f("wall_s"),
                cpu: f("cpu_s"),
                connections: (conns_after - conns) as f64,
                // The second read's own handshake is not the client's.
                handshakes: (stats_after.0 - stats.0 - 1) as f64,
                resumed: (stats_after.1 - stats.1) as f64,
            };
            eprintln!(
                "{tag}round {round}: {which}: wall {:.3} s, cpu {:.3} s, {} connections, \
                 {} handshakes ({} resumed)",
                r.wall, r.cpu, r.connections, r.handshakes, r.resumed
            );
            results[i].push(r);
        }
    }
    results
}

/// Medians over rounds, per client.
fn tls_medians(results: &[Vec<TlsRun>]) -> Vec<TlsRun> {
    results
        .iter()
        .map(|runs| {
            let m = |k: fn(&TlsRun) -> f64| median(&runs.iter().map(k).collect::<Vec<_>>());
            TlsRun {
                wall: m(|r| r.wall),
                cpu: m(|r| r.cpu),
                connections: m(|r| r.connections),
                handshakes: m(|r| r.handshakes),
                resumed: m(|r| r.resumed),
            }
        })
        .collect()
}

/// Over TLS: `calls` sequential echo calls per client on loopback, then a
/// tenth of that through a proxy adding 10 ms each way; each with the
/// connections kept (the peer as it is) and with a fresh connection per
/// request (the peer answers every request with `Connection: close`).
fn tls(calls: usize) {
    // Through the delay proxy a call costs one to three round trips of
    // 20 ms and hardly varies: a tenth of the calls keeps the part short.
    let far_calls = (calls / 10).max(1);
    let networks = [
        (
            "loopback (through a counting proxy that adds no delay)",
            std::time::Duration::ZERO,
            calls,
            2,
        ),
        (
            "through a delay proxy: +10 ms each way (~20 ms round trip)",
            std::time::Duration::from_millis(10),
            far_calls,
            1,
        ),
    ];
    for (network, one_way, n, rounds) in networks {
        println!(
            "\n## Over TLS, {network}: {n} sequential tools/call \"echo\", Python peer \
             (mcp 2.3.0, SSE mode, HTTPS), median of {rounds} round(s)\n"
        );
        println!(
            "Connections and handshakes: the whole client process (connect, 20 warm-up \
             calls, the {n} calls, close); TCP connections counted at the proxy, TLS \
             handshakes (resumed ones in brackets) at the server.\n"
        );
        let mut by_mode = Vec::new();
        for (close, mode) in [
            (false, "connections kept (the peer as it is)"),
            (
                true,
                "a fresh connection per request (the peer answers `Connection: close`)",
            ),
        ] {
            let peer = Peer::python_tls(close);
            let proxy = Proxy::with_delay(peer.port, one_way);
            let tag = format!(
                "tls {}ms {}: ",
                one_way.as_millis(),
                if close { "fresh" } else { "kept" }
            );
            let m = tls_medians(&tls_rounds(&tag, &peer, &proxy, n, rounds));
            println!("### {mode}\n");
            println!("| client | wall | per call | wall vs Python | client CPU (user+sys) | CPU per call | **CPU vs Python** | TCP connections | TLS handshakes (resumed) |");
            println!("|---|---|---|---|---|---|---|---|---|");
            for (which, r) in CLIENTS.iter().zip(&m) {
                println!(
                    "| {which} | {:.2} s | {:.2} ms | {:.2}× | {:.3} s | {:.0} µs | **{:.3}×** | {:.0} | {:.0} ({:.0}) |",
                    r.wall,
                    r.wall / n as f64 * 1e3,
                    r.wall / m[0].wall,
                    r.cpu,
                    r.cpu / n as f64 * 1e6,
                    r.cpu / m[0].cpu,
                    r.connections,
                    r.handshakes,
                    r.resumed
                );
            }
            println!();
            by_mode.push(m);
        }
        println!("### What a fresh connection per request costs, per call\n");
        println!("| client | wall per call, kept → fresh | **fresh / kept** | CPU per call, kept → fresh | **fresh / kept** |");
        println!("|---|---|---|---|---|");
        for (i, which) in CLIENTS.iter().enumerate() {
            let (k, f) = (by_mode[0][i], by_mode[1][i]);
            println!(
                "| {which} | {:.2} → {:.2} ms | **{:.2}×** | {:.0} → {:.0} µs | **{:.2}×** |",
                k.wall / n as f64 * 1e3,
                f.wall / n as f64 * 1e3,
                f.wall / k.wall,
                k.cpu / n as f64 * 1e6,
                f.cpu / n as f64 * 1e6,
                f.cpu / k.cpu
            );
        }
    }
}

// ---------------------------------------------------------------- 6.

/// The four clients of the cross-client comparisons.
const CLIENTS: [&str; 4] = [
    "Python SDK (mcp 2.3.0)",
    "TypeScript SDK (1.32.2)",
    "ours, blocking (ureq)",
    "ours, async (smol)",
];

/// Rounds of every client against `url`, alternating: per client, per
/// round, (wall, loop CPU, whole-process CPU).
fn rounds(tag: &str, url: &str, calls: usize, rounds: usize) -> Vec<Vec<(f64, f64, f64)>> {
    let mut results: Vec<Vec<(f64, f64, f64)>> = vec![vec![]; CLIENTS.len()];
    for round in 0..rounds {
        for (i, which) in CLIENTS.iter().enumerate() {
            let v = run_json(client_command(which, url, calls));
            let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
            eprintln!(
                "{tag}round {round}: {which}: wall {:.3} s, cpu {:.3} s",
                f("wall_s"),
                f("cpu_s")
            );
            results[i].push((f("wall_s"), f("cpu_s"), f("process_cpu_s")));
        }
    }
    results
}

/// The Python peer as a child over stdio, for a client given `stdio:LINE`.
fn stdio_line(state: &std::path::Path) -> String {
    format!(
        "{} {} --stdio --state {}",
        peer::python().display(),
        peer::root().join("tests/peers/python_server.py").display(),
        state.display()
    )
}

/// Over stdio: `calls` sequential `echo` calls by each client, each
/// starting the same Python peer as its child (the handshake wire); then,
/// in this process, the time from a crash (SIGKILL of the child) to the
/// next call's result (restart, initialize, call) against a plain call.
fn stdio(calls: usize) {
    const ROUNDS: usize = 2;
    let state = std::env::temp_dir().join(format!("bench-stdio-{}", std::process::id()));
    std::fs::create_dir_all(&state).expect("state dir");
    let url = format!("stdio:{}", stdio_line(&state));
    let results = rounds("stdio ", &url, calls, ROUNDS);
    let med = |i: usize, k: fn(&(f64, f64, f64)) -> f64| {
        median(&results[i].iter().map(k).collect::<Vec<_>>())
    };
    let (py_wall, py_cpu) = (med(0, |r| r.0), med(0, |r| r.1));
    println!(
        "\n## Over stdio: {calls} sequential tools/call \"echo\", the Python peer (mcp 2.3.0) \
         as each client's child, median of {ROUNDS} rounds\n"
    );
    println!("| client | wall | per call | wall vs Python | client CPU (user+sys, the child not included) | CPU per call | **CPU vs Python** |");
    println!("|---|---|---|---|---|---|---|");
    for (i, which) in CLIENTS.iter().enumerate() {
        let (wall, cpu) = (med(i, |r| r.0), med(i, |r| r.1));
        println!(
            "| {which} | {:.2} s | {:.3} ms | {:.2}× | {:.3} s | {:.0} µs | **{:.3}×** |",
            wall,
            wall / calls as f64 * 1e3,
            wall / py_wall,
            cpu,
            cpu / calls as f64 * 1e6,
            cpu / py_cpu,
        );
    }

    // A crash, then the next call.
    let c = blocking::Client::stdio(StdioCommand::parse(&stdio_line(&state)).expect("command"))
        .protocol(Protocol::Legacy)
        .build()
        .expect("client");
    let mut plain = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        c.call_tool("echo", echo_args()).expect("call");
        plain.push(t.elapsed().as_secs_f64());
    }
    let mut recovered = Vec::new();
    for _ in 0..5 {
        let pid: i32 = std::fs::read_to_string(state.join("pid"))
            .expect("pid")
            .trim()
            .parse()
            .expect("pid");
        // SAFETY: kill(2) on the child's pid; no memory involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        // Until the client has reaped it: the crash is known.
        while unsafe { libc::kill(pid, 0) } == 0 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let t = Instant::now();
        c.call_tool("echo", echo_args()).expect("recovered call");
        recovered.push(t.elapsed().as_secs_f64());
    }
    let (p, r) = (median(&plain), median(&recovered));
    println!(
        "\nAfter a crash (SIGKILL of the child, 5 times): the next call took {:.0} ms \
         (median: a new child, its start-up, initialize, the call) against {:.3} ms for a \
         plain call ({:.0}×); the Python interpreter's start-up is most of it.",
        r * 1e3,
        p * 1e3,
        r / p
    );
    drop(c);
    let _ = std::fs::remove_dir_all(&state);
}

// ---------------------------------------------------------------- 5.

/// Cancels `h` from another thread 300 ms from now, noting when in `fired`.
fn cancel_soon(
    h: mcp_recovery::client::CancelHandle,
    fired: Arc<Mutex<Option<Instant>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        *fired.lock().unwrap() = Some(Instant::now());
        h.cancel();
    })
}

/// Time from `CancelHandle::cancel()` (another thread) to the call's
/// return, while the server is silent (a tool that answers after 3 s).
fn cancel_latency() {
    use mcp_recovery::client::CallOptions;
    println!("\n## Cancel while the server is silent (part `cancel`)\n");
    println!(
        "`counter_increment` with `delay_ms` 3000 (no progress, no event), \
         cancelled 300 ms into the call from another thread; time from \
         `cancel()` to the call's return, 10 calls per client.\n"
    );
    println!("| client | outcome | median | max |");
    println!("|---|---|---|---|");
    let peer = Peer::python("sse", None);
    for which in ["ureq", "smol"] {
        let mut ms = Vec::new();
        let mut outcomes = std::collections::BTreeSet::new();
        for _ in 0..10 {
            let fired = Arc::new(Mutex::new(None::<Instant>));
            let (result, returned) = if which == "ureq" {
                let c = blocking::Client::builder(&peer.url())
                    .build()
                    .expect("client");
                let h = c.cancel_handle();
                let t = cancel_soon(h.clone(), fired.clone());
                let r = c.call_tool_with(
                    "counter_increment",
                    json!({"delay_ms": 3000}),
                    CallOptions::new().cancel(h),
                );
                let at = Instant::now();
                t.join().unwrap();
                (r.map(|_| ()).map_err(|e| e.to_string()), at)
            } else {
                smol::block_on(async {
                    let c = smol_client::Client::builder(&peer.url())
                        .build()
                        .expect("client");
                    let h = c.cancel_handle();
                    let t = cancel_soon(h.clone(), fired.clone());
                    let r = c
                        .call_tool_with(
                            "counter_increment",
                            json!({"delay_ms": 3000}),
                            CallOptions::new().cancel(h),
                        )
                        .await;
                    let at = Instant::now();
                    t.join().unwrap();
                    (r.map(|_| ()).map_err(|e| e.to_string()), at)
                })
            };
            let fired = fired.lock().unwrap().expect("cancelled");
            ms.push(returned.saturating_duration_since(fired).as_secs_f64() * 1e3);
            outcomes.insert(result.err().unwrap_or_else(|| "answered".into()));
        }
        let max = ms.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {which} | {} | {:.1} ms | {max:.1} ms |",
            outcomes.into_iter().collect::<Vec<_>>().join(", "),
            median(&ms)
        );
    }
}

// ---------------------------------------------------------------- 4.

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Legacy => "legacy (handshake)",
        _ => "auto (probe)",
    }
}

fn wires(calls: usize) {
    println!("\n## Protocol revisions (part `wires`)\n");
    println!("### Connecting: the probe against the handshake\n");
    println!(
        "`initialize()` of a new blocking client, 30 clients per row (median); \
         POSTs counted by the server (`--count-posts`).\n"
    );
    println!("| server | protocol | revision reached | POSTs per connect | connect, median | vs legacy, same server |");
    println!("|---|---|---|---|---|---|");
    let servers = [
        (
            "Python `mcp` 2.3.0 (both wires)",
            Peer::python("json", None).with(&["--count-posts"]),
        ),
        (
            "TypeScript SDK 1.32.2 (handshake only)",
            Peer::ts("json").with(&["--count-posts"]),
        ),
    ];
    for (name, peer) in &servers {
        let mut legacy_ms = 0.0;
        for protocol in [Protocol::Legacy, Protocol::Auto] {
            let before = peer.count("posts");
            let mut ms = Vec::new();
            let mut reached = None;
            for _ in 0..30 {
                let c = blocking::Client::builder(&peer.url())
                    .protocol(protocol)
                    .build()
                    .expect("client");
                let t = Instant::now();
                c.initialize().expect("connect");
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                reached = c.protocol_version();
            }
            let posts = (peer.count("posts") - before) as f64 / 30.0;
            let m = median(&ms);
            if protocol == Protocol::Legacy {
                legacy_ms = m;
            }
            println!(
                "| {name} | {} | {} | {posts:.0} | {m:.2} ms | {:.2}× |",
                protocol_name(protocol),
                reached.unwrap_or("?"),
                m / legacy_ms
            );
        }
    }
    drop(servers);

    println!("\n### Client CPU per call on each wire, same Python server\n");
    println!(
        "{calls} sequential `tools/call \"echo\"` in this process after 20 warm-up \
         calls, median of 3 rounds alternating the wires; CPU = user+sys of this \
         process (the server is another). On the handshake wire this server \
         answers with an event stream (SSE mode) or JSON (JSON mode); on \
         2026-07-28 with JSON.\n"
    );
    println!("| server mode | client | wire | wall | CPU per call | vs handshake |");
    println!("|---|---|---|---|---|---|");
    for mode in ["sse", "json"] {
        let peer = Peer::python(mode, None);
        for which in ["ureq", "smol"] {
            let mut cpu = [Vec::new(), Vec::new()];
            let mut wall = [Vec::new(), Vec::new()];
            for _ in 0..3 {
                for (i, protocol) in [Protocol::Legacy, Protocol::Auto].into_iter().enumerate() {
                    let (w, c) = echo_loop(which, &peer.url(), protocol, calls);
                    wall[i].push(w);
                    cpu[i].push(c);
                }
            }
            let base = median(&cpu[0]);
            for (i, wire) in ["handshake (2025-11-25)", "stateless (2026-07-28)"]
                .iter()
                .enumerate()
            {
                let c = median(&cpu[i]);
                println!(
                    "| {mode} | {which} | {wire} | {:.2} s | {:.0} µs | {:.2}× |",
                    median(&wall[i]),
                    c / calls as f64 * 1e6,
                    c / base
                );
            }
        }
    }

    println!("\n### The 2026-07-28 cache, 1 000 mixed calls\n");
    println!(
        "One blocking client, the Python server marking listings and reads fresh \
         for 60 s (`--cache-ttl-ms 60000`); per 10 calls: `tools/list`, \
         `resources/read`, `prompts/list`, 7 × `tools/call \"echo\"`. POSTs \
         counted by the server.\n"
    );
    println!("| cache | POSTs | round trips saved | wall |");
    println!("|---|---|---|---|");
    let peer = Peer::python("json", None).with(&["--count-posts", "--cache-ttl-ms", "60000"]);
    for entries in [256usize, 0] {
        let c = blocking::Client::builder(&peer.url())
            .configure(|cfg| cfg.cache_entries = entries)
            .build()
            .expect("client");
        c.initialize().expect("connect");
        let before = peer.count("posts");
        let t = Instant::now();
        for i in 0..1000 {
            match i % 10 {
                0 => drop(c.list_tools(None).expect("list")),
                1 => drop(c.read_resource("counter://total").expect("read")),
                2 => drop(c.list_prompts(None).expect("prompts")),
                _ => drop(c.call_tool("echo", echo_args()).expect("call")),
            }
        }
        let wall = t.elapsed().as_secs_f64();
        let posts = peer.count("posts") - before;
        println!(
            "| {} | {posts} | {} | {wall:.2} s |",
            if entries > 0 {
                "on (default, 256 entries)"
            } else {
                "off (`cache_entries = 0`)"
            },
            1000u64.saturating_sub(posts)
        );
    }
}

/// `n` echo calls on a fresh client at `protocol` after 20 warm-up calls:
/// (wall s, CPU s) of the loop.
fn echo_loop(which: &str, url: &str, protocol: Protocol, n: usize) -> (f64, f64) {
    if which == "ureq" {
        let c = blocking::Client::builder(url)
            .protocol(protocol)
            .build()
            .expect("client");
        for _ in 0..20 {
            c.call_tool("echo", echo_args()).expect("warm-up");
        }
        let (w0, c0) = (Instant::now(), cpu_s());
        for _ in 0..n {
            c.call_tool("echo", echo_args()).expect("call");
        }
        let out = (w0.elapsed().as_secs_f64(), cpu_s() - c0);
        let _ = c.close();
        return out;
    }
    smol::block_on(async {
        let c = smol_client::Client::builder(url)
            .protocol(protocol)
            .build()
            .expect("client");
        for _ in 0..20 {
            c.call_tool("echo", echo_args()).await.expect("warm-up");
        }
        let (w0, c0) = (Instant::now(), cpu_s());
        for _ in 0..n {
            c.call_tool("echo", echo_args()).await.expect("call");
        }
        let out = (w0.elapsed().as_secs_f64(), cpu_s() - c0);
        let _ = c.close().await;
        out
    })
}

// ---------------------------------------------------------------- 1.

/// `child calls ureq|smol URL N`: our client in its own process.
fn child(args: &[String]) {
    let start = Instant::now();
    let [mode, which, url, n] = args else {
        panic!("child calls ureq|smol URL N")
    };
    assert_eq!(mode, "calls");
    let n: usize = n.parse().expect("N");
    // An HTTPS peer's private CA (part `tls`): trusted alone, as an
    // application pinning its server's CA would.
    let ca = std::env::var_os("BENCH_CA_FILE")
        .map(|f| std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{f:?}: {e}")));
    let (wall, cpu) = match which.as_str() {
        "ureq" => {
            // The handshake wire, as the official clients speak it here.
            let c = match url.strip_prefix("stdio:") {
                Some(line) => blocking::Client::stdio(StdioCommand::parse(line).expect("command")),
                None => blocking::Client::builder(url),
            };
            let c = match &ca {
                Some(pem) => c.tls_roots_pem(pem),
                None => c,
            }
            .protocol(Protocol::Legacy)
            .build()
            .expect("client");
            for _ in 0..20 {
                c.call_tool("echo", echo_args()).expect("warm-up");
            }
            let (w0, c0) = (Instant::now(), cpu_s());
            for _ in 0..n {
                let r = c.call_tool("echo", echo_args()).expect("call");
                assert_eq!(r.text(), "hi");
            }
            let out = (w0.elapsed().as_secs_f64(), cpu_s() - c0);
            let _ = c.close();
            out
        }
        "smol" => smol::block_on(async {
            let c = match url.strip_prefix("stdio:") {
                Some(line) => {
                    smol_client::Client::stdio(StdioCommand::parse(line).expect("command"))
                }
                None => smol_client::Client::builder(url),
            };
            let c = match &ca {
                Some(pem) => c.tls_roots_pem(pem),
                None => c,
            }
            .protocol(Protocol::Legacy)
            .build()
            .expect("client");
            for _ in 0..20 {
                c.call_tool("echo", echo_args()).await.expect("warm-up");
            }
            let (w0, c0) = (Instant::now(), cpu_s());
            for _ in 0..n {
                let r = c.call_tool("echo", echo_args()).await.expect("call");
                assert_eq!(r.text(), "hi");
            }
            let out = (w0.elapsed().as_secs_f64(), cpu_s() - c0);
            let _ = c.close().await;
            out
        }),
        other => panic!("unknown client {other}"),
    };
    println!(
        "{}",
        json!({"client": which, "calls": n, "wall_s": wall, "cpu_s": cpu,
               "process_cpu_s": cpu_s(), "process_wall_s": start.elapsed().as_secs_f64()})
    );
}

fn run_json(mut cmd: Command) -> Value {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{cmd:?} printed {text:?}: {e}"))
}

fn client_command(which: &str, url: &str, n: usize) -> Command {
    let root = peer::root();
    let n = n.to_string();
    match which {
        "Python SDK (mcp 2.3.0)" => {
            let mut c = Command::new(peer::python());
            c.arg(root.join("benches/clients/py_client.py"))
                .args([url, &n]);
            c
        }
        "TypeScript SDK (1.32.2)" => {
            let mut c = Command::new("node");
            c.arg(root.join("benches/clients/ts_client.mjs"))
                .args(["calls", url, &n]);
            c
        }
        ours => {
            let mut c = Command::new(std::env::current_exe().expect("exe"));
            let kind = if ours.contains("ureq") {
                "ureq"
            } else {
                "smol"
            };
            c.args(["child", "calls", kind, url, &n]);
            c
        }
    }
}

fn against_official_clients(calls: usize, nodelay: bool) {
    const ROUNDS: usize = 2;
    let py = python_peer(nodelay, None);
    let results = rounds("", &py.url(), calls, ROUNDS);
    let med = |i: usize, k: fn(&(f64, f64, f64)) -> f64| {
        median(&results[i].iter().map(k).collect::<Vec<_>>())
    };
    let (py_wall, py_cpu) = (med(0, |r| r.0), med(0, |r| r.1));
    println!(
        "\n## Against the official clients: {calls} sequential tools/call \"echo\", \
         {} (mcp 2.3.0, SSE mode), median of {ROUNDS} rounds\n",
        label(nodelay)
    );
    println!("| client | wall | per call | wall vs Python | client CPU (user+sys) | CPU per call | **CPU vs Python** | whole process CPU (start-up included) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (i, which) in CLIENTS.iter().enumerate() {
        let (wall, cpu, proc_cpu) = (med(i, |r| r.0), med(i, |r| r.1), med(i, |r| r.2));
        println!(
            "| {which} | {:.2} s | {:.2} ms | {:.2}× | {:.3} s | {:.0} µs | **{:.3}×** | {:.2} s |",
            wall,
            wall / calls as f64 * 1e3,
            wall / py_wall,
            cpu,
            cpu / calls as f64 * 1e6,
            cpu / py_cpu,
            proc_cpu
        );
    }
    let spread: Vec<String> = CLIENTS
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let cpus: Vec<String> = results[i].iter().map(|r| format!("{:.3}", r.1)).collect();
            format!("{w}: {}", cpus.join(" / "))
        })
        .collect();
    println!("\nCPU seconds per round: {}", spread.join("; "));
}

// ---------------------------------------------------------------- 2.

/// What the observer saw: when the core first signalled a reconnect (right
/// after the failing response was classified), and every recovery action
/// with its time, for the breakdown.
#[derive(Default)]
struct Seen {
    failed: Option<Instant>,
    steps: Vec<(Instant, String)>,
}

fn marker() -> (Arc<Mutex<Seen>>, impl Fn(&Action) + Send + Sync) {
    let at = Arc::new(Mutex::new(Seen::default()));
    let seen = at.clone();
    let observe = move |a: &Action| {
        let now = Instant::now();
        let mut s = seen.lock().unwrap();
        if matches!(a, Action::SignalReconnect { .. }) && s.failed.is_none() {
            s.failed = Some(now);
        }
        let name = format!("{a:?}");
        let name = name.split([' ', '{', '(']).next().unwrap_or("").to_owned();
        s.steps.push((now, name));
    };
    (at, observe)
}

/// Seconds from the failing response to the result, and from the call's
/// start to its result, for each expiry; and the plain call's median.
struct Recovery {
    plain: f64,
    from_failure: Vec<f64>,
    whole_call: Vec<f64>,
    /// The first expiry's observed steps, in ms from the call's start.
    breakdown: String,
}

impl Recovery {
    /// Nothing measured yet but the plain call: the median of 100 calls
    /// of `call`, after 20 to warm up.
    fn after_plain(mut call: impl FnMut()) -> Recovery {
        for _ in 0..20 {
            call();
        }
        let mut plain = vec![];
        for _ in 0..100 {
            let t = Instant::now();
            call();
            plain.push(t.elapsed().as_secs_f64());
        }
        Recovery {
            plain: median(&plain),
            from_failure: vec![],
            whole_call: vec![],
            breakdown: String::new(),
        }
    }
}

enum Ours {
    Ureq(blocking::Client),
    Smol(smol_client::Client),
}

impl Ours {
    fn new(kind: &str, url: &str) -> (Ours, Arc<Mutex<Seen>>) {
        let (at, observe) = marker();
        // Sessions, and so their loss, exist on the handshake wire only:
        // the peer speaks 2026-07-28 too, which `Protocol::Auto` would pick.
        let c = if kind == "ureq" {
            Ours::Ureq(
                blocking::Client::builder(url)
                    .protocol(Protocol::Legacy)
                    .on_recovery(observe)
                    .build()
                    .expect("client"),
            )
        } else {
            Ours::Smol(
                smol_client::Client::builder(url)
                    .protocol(Protocol::Legacy)
                    .on_recovery(observe)
                    .build()
                    .expect("client"),
            )
        };
        (c, at)
    }

    fn call(&self) {
        let r = match self {
            Ours::Ureq(c) => c.call_tool("echo", echo_args()),
            Ours::Smol(c) => smol::block_on(c.call_tool("echo", echo_args())),
        };
        assert_eq!(r.expect("call").text(), "hi");
    }

    fn generation(&self) -> u64 {
        match self {
            Ours::Ureq(c) => c.generation(),
            Ours::Smol(c) => c.generation(),
        }
    }
}

fn measure_ours(kind: &str, peer: &mut Peer, samples: usize, restart: bool) -> Recovery {
    let (client, at) = Ours::new(kind, &peer.url());
    let mut r = Recovery::after_plain(|| client.call());
    for _ in 0..samples {
        if restart {
            peer.restart();
        } else {
            peer.await_no_sessions();
        }
        *at.lock().unwrap() = Seen::default();
        let generation = client.generation();
        let t = Instant::now();
        client.call();
        let end = Instant::now();
        assert!(client.generation() > generation, "no re-initialize");
        let seen = at.lock().unwrap();
        let failed = seen.failed.expect("a SignalReconnect");
        if r.from_failure.is_empty() {
            let steps: Vec<String> = seen
                .steps
                .iter()
                .map(|(at, name)| format!("{name} +{:.1} ms", (*at - t).as_secs_f64() * 1e3))
                .collect();
            r.breakdown = format!(
                "{}; result +{:.1} ms",
                steps.join(", "),
                (end - t).as_secs_f64() * 1e3
            );
        }
        r.from_failure.push((end - failed).as_secs_f64());
        r.whole_call.push((end - t).as_secs_f64());
    }
    r
}

/// The floor of a recovery, with no client in the way: what any client
/// must send once the server forgot its session (`initialize`,
/// `notifications/initialized`, the call again), as raw requests on one
/// ureq agent, answers read to their end and nothing parsed beyond the
/// session id. Timed like ours: from the failing answer (the 404) to the
/// retried call's answer; the plain call is the same raw call, before.
fn measure_raw_floor(peer: &mut Peer, samples: usize) -> Recovery {
    let url = peer.url();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let post = |session: Option<&str>, body: &str| -> (u16, Option<String>) {
        let mut req = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        if let Some(s) = session {
            req = req
                .header("Mcp-Session-Id", s)
                .header("MCP-Protocol-Version", "2025-11-25");
        }
        let mut resp = req.send(body).expect("raw request");
        let id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.body_mut().read_to_string().expect("raw answer");
        std::hint::black_box(text);
        (resp.status().as_u16(), id)
    };
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let handshake = || -> String {
        let (status, id) = post(None, init);
        assert_eq!(status, 200, "raw initialize");
        let id = id.expect("a session id");
        assert_eq!(post(Some(&id), initialized).0, 202, "raw initialized");
        id
    };
    let mut session = handshake();
    let mut r = Recovery::after_plain(|| assert_eq!(post(Some(&session), call).0, 200));
    for _ in 0..samples {
        peer.await_no_sessions();
        let t = Instant::now();
        assert_eq!(
            post(Some(&session), call).0,
            404,
            "the session was not lost"
        );
        let failed = Instant::now();
        session = handshake();
        let ready = Instant::now();
        assert_eq!(post(Some(&session), call).0, 200);
        let end = Instant::now();
        if r.from_failure.is_empty() {
            r.breakdown = format!(
                "404 +{:.1} ms, session ready +{:.1} ms, result +{:.1} ms",
                (failed - t).as_secs_f64() * 1e3,
                (ready - t).as_secs_f64() * 1e3,
                (end - t).as_secs_f64() * 1e3
            );
        }
        r.from_failure.push((end - failed).as_secs_f64());
        r.whole_call.push((end - t).as_secs_f64());
    }
    r
}

fn measure_ts_by_hand(peer: &mut Peer, samples: usize) -> Recovery {
    let mut child = Command::new("node")
        .arg(peer::root().join("benches/clients/ts_client.mjs"))
        .args(["recover", &peer.url(), &samples.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut last = String::new();
    for line in BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
    {
        if line == "EXPIRE" {
            peer.restart();
            writeln!(stdin, "GO").expect("write");
        } else {
            last = line;
        }
    }
    assert!(
        child.wait().expect("wait").success(),
        "ts_client recover failed"
    );
    let v: Value = serde_json::from_str(&last).expect("ts result");
    let rec: Vec<f64> = v["recover_s"]
        .as_array()
        .expect("recover_s")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    Recovery {
        plain: v["plain_median_s"].as_f64().expect("plain"),
        from_failure: rec,
        whole_call: vec![],
        breakdown: String::new(),
    }
}

fn recovery_row(name: &str, r: &Recovery) {
    let from = median(&r.from_failure);
    let lo = r.from_failure.iter().cloned().fold(f64::MAX, f64::min);
    let hi = r.from_failure.iter().cloned().fold(f64::MIN, f64::max);
    let whole = if r.whole_call.is_empty() {
        "–".to_owned()
    } else {
        let w = median(&r.whole_call);
        format!("{:.2} ms ({:.2}×)", w * 1e3, w / r.plain)
    };
    println!(
        "| {name} | {:.2} ms | {:.2} ms ({:.2}–{:.2}) | **{:.2}×** | {whole} |",
        r.plain * 1e3,
        from * 1e3,
        lo * 1e3,
        hi * 1e3,
        from / r.plain,
    );
}

fn breakdown(rows: &[(&str, &Recovery)]) {
    println!("\nFirst expiry, as `on_recovery` saw it (ms from the call's start):\n");
    for (name, r) in rows {
        println!("- {name}: {}", r.breakdown);
    }
}

fn recovery_latency(nodelay: bool) {
    const SAMPLES: usize = 10;
    let mut idle = python_peer(nodelay, Some(0.5));
    let ureq = measure_ours("ureq", &mut idle, SAMPLES, false);
    let smol = measure_ours("smol", &mut idle, SAMPLES, false);
    let raw = measure_raw_floor(&mut idle, SAMPLES);
    drop(idle);
    println!(
        "\n## Recovery latency after an idle-timeout expiry ({}, SSE mode, \
         --idle-timeout 0.5), {SAMPLES} expiries per client, medians\n",
        label(nodelay)
    );
    println!("| client | plain call | failing response → retried result (min–max) | **vs plain call** | whole recovered call (vs plain) |");
    println!("|---|---|---|---|---|");
    recovery_row("ours, blocking (ureq)", &ureq);
    recovery_row("ours, async (smol)", &smol);
    recovery_row(
        "the floor: raw ureq requests, no client (initialize, initialized, call again)",
        &raw,
    );
    breakdown(&[("ureq", &ureq), ("smol", &smol), ("raw", &raw)]);
    let floor = median(&raw.from_failure);
    println!(
        "\nAgainst the floor (failing answer → result): ureq {:.2}×, smol {:.2}×; \
         the floor itself is {:.2}× the raw plain call",
        median(&ureq.from_failure) / floor,
        median(&smol.from_failure) / floor,
        floor / raw.plain,
    );

    const RESTARTS: usize = 5;
    let mut py = python_peer(nodelay, None);
    let ureq = measure_ours("ureq", &mut py, RESTARTS, true);
    let smol = measure_ours("smol", &mut py, RESTARTS, true);
    let ts = measure_ts_by_hand(&mut py, RESTARTS);
    println!(
        "\n## Recovery latency after a server restart ({}, SSE mode, killed and \
         started again on the same port), {RESTARTS} restarts per client, medians\n",
        label(nodelay)
    );
    println!("| client | plain call | failure → retried result (min–max) | **vs plain call** | whole recovered call (vs plain) |");
    println!("|---|---|---|---|---|");
    recovery_row("ours, blocking (ureq): automatic", &ureq);
    recovery_row("ours, async (smol): automatic", &smol);
    recovery_row(
        "official TypeScript SDK client, by hand: catch, new transport + Client, connect, call again",
        &ts,
    );
    breakdown(&[("ureq", &ureq), ("smol", &smol)]);
}

fn recovery_ts_peer() {
    const RESTARTS: usize = 5;
    // The same restart against the TypeScript peer (JSON mode), to tell the
    // client's cost from the server's.
    let mut ts_peer = Peer::ts("json");
    let ureq = measure_ours("ureq", &mut ts_peer, RESTARTS, true);
    let smol = measure_ours("smol", &mut ts_peer, RESTARTS, true);
    let ts = measure_ts_by_hand(&mut ts_peer, RESTARTS);
    println!(
        "\n## Recovery latency after a server restart, TypeScript peer (JSON mode), \
         {RESTARTS} restarts per client, medians\n"
    );
    println!("| client | plain call | failure → retried result (min–max) | **vs plain call** | whole recovered call (vs plain) |");
    println!("|---|---|---|---|---|");
    recovery_row("ours, blocking (ureq): automatic", &ureq);
    recovery_row("ours, async (smol): automatic", &smol);
    recovery_row(
        "official TypeScript SDK client, by hand: catch, new transport + Client, connect, call again",
        &ts,
    );
    breakdown(&[("ureq", &ureq), ("smol", &smol)]);
}

// ---------------------------------------------------------------- 3.

/// Seconds until `n` concurrent callers all have their result, and how many
/// succeeded.
fn ureq_burst(client: &blocking::Client, n: usize) -> (f64, usize) {
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (c, b) = (client.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                c.call_tool("echo", echo_args())
                    .is_ok_and(|r| r.text() == "hi")
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let ok = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&x| x)
        .count();
    (t.elapsed().as_secs_f64(), ok)
}

fn smol_burst(client: &smol_client::Client, n: usize) -> (f64, usize) {
    smol::block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let c = client.clone();
                smol::spawn(async move {
                    c.call_tool("echo", echo_args())
                        .await
                        .is_ok_and(|r| r.text() == "hi")
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            ok += task.await as usize;
        }
        (t.elapsed().as_secs_f64(), ok)
    })
}

fn herd(nodelay: bool) {
    const ROUNDS: usize = 5;
    let peer = python_peer(nodelay, Some(0.5));
    println!(
        "\n## Herd across one expiry ({}, SSE mode, --idle-timeout 0.5), \
         {ROUNDS} expiries each, medians\n",
        label(nodelay)
    );
    println!("| callers | initialize requests per expiry (each round) | all done | one caller's recovered call | **herd vs one caller** | same herd, no expiry | herd vs no expiry | succeeded |");
    println!("|---|---|---|---|---|---|---|---|");
    type Burst<'a> = Box<dyn Fn(usize) -> (f64, usize) + 'a>;
    let ureq_client = blocking::Client::builder(&peer.url())
        .build()
        .expect("client");
    let smol_c = smol_client::Client::builder(&peer.url())
        .build()
        .expect("client");
    let cases: [(&str, usize, Burst); 2] = [
        (
            "16 threads, blocking (ureq)",
            16,
            Box::new(|n| ureq_burst(&ureq_client, n)),
        ),
        (
            "64 tasks, async (smol)",
            64,
            Box::new(|n| smol_burst(&smol_c, n)),
        ),
    ];
    for (name, n, burst) in cases {
        burst(n); // session up, connections open
        let mut warm = vec![];
        for _ in 0..ROUNDS {
            warm.push(burst(n).0);
        }
        let mut one = vec![];
        for _ in 0..ROUNDS {
            peer.await_no_sessions();
            let (t, ok) = burst(1);
            assert_eq!(ok, 1);
            one.push(t);
        }
        let (mut all, mut inits, mut oks) = (vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            peer.await_no_sessions();
            let before = peer.initializes();
            let (t, ok) = burst(n);
            all.push(t);
            inits.push((peer.initializes() - before).to_string());
            oks.push(ok);
        }
        let (all, one, warm) = (median(&all), median(&one), median(&warm));
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | **{:.2}×** | {:.2} ms | {:.2}× | {} |",
            inits.join(", "),
            all * 1e3,
            one * 1e3,
            all / one,
            warm * 1e3,
            all / warm,
            oks.iter()
                .map(|o| format!("{o}/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = ureq_client.close();
    let _ = smol::block_on(smol_c.close());
}
