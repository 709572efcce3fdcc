//! Many sessions on one thread (issue 17, part 3): `N` smol clients on one
//! executor thread, one session each, spread over `P` Python peers (JSON
//! answers). Prints Markdown: live heap per client before it connects and
//! per idle session (a counting allocator: exact bytes), RSS per idle
//! session, the core engine's own size, calls per second across all
//! sessions, and one expiry wave (every peer restarted: every session lost
//! at once): initialize requests the servers saw, and the time until every
//! client had a call answered again. "Idle" is after 5 s with nothing to
//! do (past the pool's 4 s, when connections are closed).
//!
//! `POOL_IDLE_MS` sets the clients' `pool_idle_timeout` (default 4 s), in
//! both runners.
//!
//! With `BLOCKING=T`, `N` blocking clients on a pool of `T` threads
//! instead: heap per client and per idle session, calls per second.
//!
//! With `MANY_EXIT_IDLE=1` the process exits at the idle point, for a heap
//! profiler (`heaptrack`) to report what idle sessions hold;
//! `MANY_EXIT_USED=1`, right after the sessions are up (connections pooled).
//!
//! Run: `MANY=1000 PEERS=4 cargo run --release --features smol,ureq --example many_sessions`
//! (one size per process for honest RSS; scripts/peers.sh installs the
//! peer).

#[path = "../benches/common/peer.rs"]
mod peer;

use mcp_recovery::core::{Engine, Protocol};
use mcp_recovery::smol::Client;
use peer::Peer;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set size of this process, in bytes (Linux).
fn rss() -> isize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<isize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// TCP connections to `port` this process holds open (ESTABLISHED, from
/// `/proc/net/tcp`: the connections' local side is ours, the remote side
/// the peer's port).
fn established(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(&remote) && f[3] == "01"
        })
        .count()
}

/// `bytes` per session, in KiB.
fn kib(bytes: isize, n: usize) -> f64 {
    bytes as f64 / n as f64 / 1024.0
}

/// Ends the process here when `var` is set, the peers first (they would
/// outlive an exit).
fn exit_if(var: &str, servers: &mut Vec<Peer>) {
    if std::env::var_os(var).is_some() {
        servers.clear();
        std::process::exit(0);
    }
}

/// Runs `f` for every client, at most `width` at a time, on this thread.
async fn each<F, Fut>(clients: &[Client], width: usize, f: F) -> usize
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let ex = smol::LocalExecutor::new();
    let mut ok = 0;
    for chunk in clients.chunks(width) {
        let tasks: Vec<_> = chunk.iter().map(|c| ex.spawn(f(c.clone()))).collect();
        ex.run(async {
            for t in tasks {
                ok += usize::from(t.await);
            }
        })
        .await;
    }
    ok
}

fn main() {
    let sizes: Vec<usize> = std::env::var("MANY")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let peers: usize = std::env::var("PEERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    println!(
        "# many_sessions: {} cores, {peers} Python peers (mcp 2.3.0, JSON answers), one smol thread\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // The core's own state: an engine as a client builds it (its heap:
    // URL, headers, identity), and the server's initialize result it keeps
    // as text once a session is up (the Python peer's, measured below).
    let before = live();
    let engines: Vec<Engine> = (0..1000)
        .map(|_| Engine::new(mcp_recovery::core::Config::new("http://127.0.0.1:8000/mcp")))
        .collect();
    let engine_heap = (live() - before) as f64 / 1000.0;
    drop(engines);
    println!(
        "Core engine: {} bytes inline (`size_of::<Engine>()`), {engine_heap:.0} bytes of heap as built.\n",
        std::mem::size_of::<Engine>()
    );
    println!("| sessions | heap per client, not connected | heap per session, just used (connection pooled) | heap per idle session (past the pool's 4 s) | RSS per idle session | the same after `malloc_trim(0)` | connections open when idle | calls/s across all | expiry wave: initializes seen | expiry wave: all answered again after |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    if let Some(threads) = std::env::var("BLOCKING").ok().and_then(|t| t.parse().ok()) {
        println!("| clients | heap per client, not connected | heap per session, just used | heap per idle session (past 4 s) | RSS per idle session | connections open when idle | calls/s across all |");
        println!("|---|---|---|---|---|---|---|");
        for &n in &sizes {
            run_blocking(n, peers, threads);
        }
        return;
    }
    for &n in &sizes {
        run(n, peers);
    }
}

/// `n` blocking clients served by a pool of `threads` threads (each
/// thread takes every `threads`-th client): heap per client before and
/// after its session is up and once idle, connections open when idle,
/// calls/s across all.
fn run_blocking(n: usize, peers: usize, threads: usize) {
    use mcp_recovery::blocking;
    let servers: Vec<Peer> = (0..peers).map(|_| Peer::python("json", None)).collect();
    let urls: Vec<String> = servers.iter().map(Peer::url).collect();
    let (heap0, rss0) = (live(), rss());
    let clients: Vec<blocking::Client> = (0..n)
        .map(|i| {
            blocking::Client::builder(&urls[i % urls.len()])
                .protocol(Protocol::Legacy)
                .pool_idle_timeout(pool_idle())
                .build()
                .expect("client")
        })
        .collect();
    let heap_built = live() - heap0;
    let on_pool = |f: &(dyn Fn(&blocking::Client) -> bool + Sync)| -> usize {
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let clients = &clients;
                    s.spawn(move || {
                        clients
                            .iter()
                            .skip(t)
                            .step_by(threads)
                            .filter(|c| f(c))
                            .count()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        })
    };
    let up = on_pool(&|c| c.initialize().is_ok());
    assert_eq!(up, n, "every session up");
    let heap_used = live() - heap0;
    std::thread::sleep(idle_for());
    let (heap_idle, rss_idle) = (live() - heap0, rss() - rss0);
    let open: usize = servers.iter().map(|s| established(s.port)).sum();
    let started = Instant::now();
    let answered = on_pool(&|c| c.ping().is_ok());
    let rate = answered as f64 / started.elapsed().as_secs_f64();
    println!(
        "| {n} blocking clients, {threads} threads | {:.1} KiB | {:.1} KiB | {:.1} KiB | {:.1} KiB | {open} | {rate:.0} |",
        kib(heap_built, n),
        kib(heap_used, n),
        kib(heap_idle, n),
        kib(rss_idle, n),
    );
    drop(clients);
}

/// How long an idle connection is kept: the client's default, or
/// `POOL_IDLE_MS`.
fn pool_idle() -> Duration {
    std::env::var("POOL_IDLE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(
            mcp_recovery::client::DEFAULT_POOL_IDLE,
            Duration::from_millis,
        )
}

/// How long the sessions are left idle before they are measured: past
/// the pool's keep (and the default's, so runs compare), with a second to
/// spare for the sweeper.
fn idle_for() -> Duration {
    pool_idle().max(mcp_recovery::client::DEFAULT_POOL_IDLE) + Duration::from_secs(1)
}

fn run(n: usize, peers: usize) {
    let mut servers: Vec<Peer> = (0..peers).map(|_| Peer::python("json", None)).collect();
    let urls: Vec<String> = servers.iter().map(Peer::url).collect();
    let (heap0, rss0) = (live(), rss());
    let clients: Vec<Client> = (0..n)
        .map(|i| {
            Client::builder(&urls[i % urls.len()])
                .protocol(Protocol::Legacy)
                .read_timeout(Duration::from_secs(60))
                .pool_idle_timeout(pool_idle())
                .build()
                .expect("client")
        })
        .collect();
    let heap_built = live() - heap0;
    let up = smol::block_on(each(&clients, 200, |c| async move {
        c.initialize().await.is_ok()
    }));
    assert_eq!(up, n, "every session up");
    let heap_used = live() - heap0;
    // For a heap profiler: what a session holds just after its call, its
    // pooled connection included.
    exit_if("MANY_EXIT_USED", &mut servers);
    // Idle past the pool's keep: the pooled connections are closed.
    std::thread::sleep(idle_for());
    let (heap_idle, rss_idle) = (live() - heap0, rss() - rss0);
    // glibc keeps freed memory (the closed connections' buffers, the
    // handshakes' peak) for reuse; trimmed, what the sessions hold.
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };
    let rss_trimmed = rss() - rss0;
    let open: usize = servers.iter().map(|s| established(s.port)).sum();
    let server_text = clients[0]
        .initialize_result()
        .map_or(0, |v| v.to_string().len());
    println!("<!-- the server's initialize result, kept as text: {server_text} bytes -->");
    // For a heap profiler: what is still allocated now is what idle
    // sessions hold (heaptrack reports it as leaked).
    exit_if("MANY_EXIT_IDLE", &mut servers);

    let started = Instant::now();
    let answered = smol::block_on(each(
        &clients,
        200,
        |c| async move { c.ping().await.is_ok() },
    ));
    let rate = answered as f64 / started.elapsed().as_secs_f64();

    let before: u64 = servers.iter().map(Peer::initializes).sum();
    for s in &mut servers {
        s.restart();
    }
    let wave = Instant::now();
    let back = smol::block_on(each(
        &clients,
        200,
        |c| async move { c.ping().await.is_ok() },
    ));
    let took = wave.elapsed();
    let inits: u64 = servers.iter().map(Peer::initializes).sum::<u64>() - before;
    println!(
        "| {n} | {:.1} KiB | {:.1} KiB | {:.1} KiB | {:.1} KiB | {:.1} KiB | {open} | {rate:.0} | {inits} for {n} sessions ({back} answered) | {:.2} s |",
        kib(heap_built, n),
        kib(heap_used, n),
        kib(heap_idle, n),
        kib(rss_idle, n),
        kib(rss_trimmed, n),
        took.as_secs_f64()
    );
    drop(clients);
}
