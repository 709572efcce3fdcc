//! Many sessions on one thread (issue 17, part 3): `N` smol clients on one
//! executor thread, one session each, spread over `P` Python peers (JSON
//! answers). Prints Markdown: live heap per client before it connects and
//! per idle session (a counting allocator: exact bytes), RSS per idle
//! session, the core engine's own size, calls per second across all
//! sessions, and one expiry wave (every peer restarted: every session lost
//! at once): initialize requests the servers saw, and the time until every
//! client had a call answered again.
//!
//! Run: `MANY=1000,5000 PEERS=4 cargo run --release --features smol --example many_sessions`
//! (scripts/peers.sh installs the peer).

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
    println!(
        "Core engine, inline: {} bytes (`size_of::<Engine>()`).\n",
        std::mem::size_of::<Engine>()
    );
    println!("| sessions | heap per client, not connected | heap per idle session | RSS per idle session | calls/s across all | expiry wave: initializes seen | expiry wave: all answered again after |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &sizes {
        run(n, peers);
    }
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
                .build()
                .expect("client")
        })
        .collect();
    let heap_built = live() - heap0;
    let up = smol::block_on(each(&clients, 200, |c| async move {
        c.initialize().await.is_ok()
    }));
    assert_eq!(up, n, "every session up");
    let (heap_idle, rss_idle) = (live() - heap0, rss() - rss0);

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
        "| {n} | {:.1} KiB | {:.1} KiB | {:.1} KiB | {rate:.0} | {inits} for {n} sessions ({back} answered) | {:.2} s |",
        heap_built as f64 / n as f64 / 1024.0,
        heap_idle as f64 / n as f64 / 1024.0,
        rss_idle as f64 / n as f64 / 1024.0,
        took.as_secs_f64()
    );
    drop(clients);
}
