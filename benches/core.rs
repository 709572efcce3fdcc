//! Cost of the sans-IO core, with no I/O in the way:
//! - `happy_path`: one `tools/call` through a ready engine (call, transmit,
//!   JSON answer, complete);
//! - `recovery_path`: one call whose session expired (404, reconnect,
//!   initialize, initialized, retry, complete);
//! - `sse_parse`: parser throughput over an MCP event stream cut at random
//!   chunk boundaries;
//! - heap allocations per happy-path call, counted by a global allocator and
//!   split by phase, printed before the timings.
//!
//! Run: `cargo bench --bench core`.

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use mcp_recovery_core::sse::SseParser;
use mcp_recovery_core::{Action, Config, Engine, ExchangeId, Input, Operation};
use serde_json::json;
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
const GONE: &[u8] =
    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}"#;

/// Drives an engine the way an adapter would, answering at once. The engine
/// numbers its JSON-RPC requests 1, 2, 3, ...; tracking that here keeps
/// parsing of our own requests out of the measurement.
struct Driver {
    engine: Engine,
    now: Instant,
    rpc: i64,
}

impl Driver {
    fn ready() -> Self {
        let now = Instant::now();
        let mut d = Driver {
            engine: Engine::new(Config::new("http://127.0.0.1:8000/mcp")),
            now,
            rpc: 0,
        };
        d.engine.connect(now);
        d.handshake("s1");
        d
    }

    /// The exchange of the one transmit the engine queued; drops the rest.
    fn transmitted(&mut self) -> ExchangeId {
        let mut ex = None;
        while let Some(a) = self.engine.poll_action() {
            if let Action::Transmit { exchange, .. } = a {
                ex = Some(exchange);
            }
        }
        ex.expect("a transmit")
    }

    /// Answers initialize and initialized; returns the exchange of a call
    /// the engine sent once the session was ready, if any.
    fn handshake(&mut self, session: &str) -> Option<ExchangeId> {
        let ex = self.transmitted();
        self.rpc += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"protocolVersion":"2025-11-25","capabilities":{{}}}}}}"#,
            self.rpc
        );
        let headers = [
            ("content-type", "application/json"),
            ("mcp-session-id", session),
        ];
        self.engine
            .handle_response(ex, 200, &headers, body.as_bytes(), self.now);
        let ex = self.transmitted();
        self.engine.handle_response(ex, 202, &[], b"", self.now);
        let mut retry = None;
        while let Some(a) = self.engine.poll_action() {
            if let Action::Transmit { exchange, .. } = a {
                retry = Some(exchange);
            }
        }
        retry
    }

    /// The answer to the request just sent (fixed size, so every call costs
    /// the same).
    fn answer(&mut self) -> Vec<u8> {
        self.rpc += 1;
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":"hi"}}]}}}}"#,
            self.rpc
        )
        .into_bytes()
    }

    fn happy_call(&mut self, op: Operation) {
        self.engine.call(op, self.now);
        let ex = self.transmitted();
        let body = self.answer();
        self.engine.handle_response(ex, 200, &JSON, &body, self.now);
        while let Some(a) = self.engine.poll_action() {
            black_box(a);
        }
    }

    fn recovered_call(&mut self, op: Operation) {
        self.engine.call(op, self.now);
        let ex = self.transmitted();
        self.rpc += 1;
        self.engine.handle_response(ex, 404, &JSON, GONE, self.now);
        let ex = self.handshake("s2").expect("the retry");
        let body = self.answer();
        self.engine.handle_response(ex, 200, &JSON, &body, self.now);
        while let Some(a) = self.engine.poll_action() {
            black_box(a);
        }
    }
}

fn echo() -> Operation {
    Operation::call_tool("echo", json!({"text": "hi"}))
}

fn report_allocations() {
    let mut d = Driver::ready();
    // Warm up maps and queues so their growth is not counted.
    for _ in 0..100 {
        d.happy_call(echo());
    }
    const N: u64 = 1000;
    // [start call, head, body chunk, end (parse + complete), drain]
    let mut phase = [0u64; 5];
    for _ in 0..N {
        let op = echo();
        let a0 = allocations();
        d.engine.call(op, d.now);
        let a1 = allocations();
        let ex = d.transmitted(); // frees the request: counted nowhere
        let body = d.answer();
        let b0 = allocations();
        d.engine.handle_input(
            Input::Head {
                exchange: ex,
                status: 200,
                headers: &JSON,
            },
            d.now,
        );
        let b1 = allocations();
        d.engine.handle_input(
            Input::Body {
                exchange: ex,
                bytes: &body,
            },
            d.now,
        );
        let b2 = allocations();
        d.engine.handle_input(Input::End { exchange: ex }, d.now);
        let b3 = allocations();
        while let Some(a) = d.engine.poll_action() {
            black_box(&a);
        }
        let b4 = allocations();
        for (p, n) in phase
            .iter_mut()
            .zip([a1 - a0, b1 - b0, b2 - b1, b3 - b2, b4 - b3])
        {
            *p += n;
        }
    }
    let per = |n: u64| n as f64 / N as f64;
    println!("heap allocations per happy-path tools/call (mean of {N}, after warm-up):");
    println!("  call(): request body + header list: {:.2}", per(phase[0]));
    println!("  Input::Head (policy bookkeeping): {:.2}", per(phase[1]));
    println!("  Input::Body (response buffer): {:.2}", per(phase[2]));
    println!(
        "  Input::End (JSON parse of the answer, Complete queued): {:.2}",
        per(phase[3])
    );
    println!("  poll_action drain: {:.2}", per(phase[4]));
    println!("  total: {:.2}", per(phase.iter().sum()));
}

fn bench_calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    let mut d = Driver::ready();
    g.bench_function("happy_path_call", |b| {
        b.iter_batched(echo, |op| d.happy_call(op), BatchSize::SmallInput)
    });
    g.bench_function("recovery_path_call", |b| {
        b.iter_batched(
            || (Driver::ready(), echo()),
            |(mut d, op)| {
                d.recovered_call(op);
                d
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// An MCP event stream as the Python SDK sends it (CRLF, priming event,
/// progress notifications, then the answer), repeated to about 1 MiB.
fn mcp_stream() -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < 1 << 20 {
        i += 1;
        s.push_str(&format!("id: {i}-0\r\ndata: \r\n\r\n"));
        s.push_str(&format!(
            "event: message\r\nid: {i}-1\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":{i},\"progress\":1,\"total\":2}}}}\r\n\r\n"
        ));
        s.push_str(&format!(
            "event: message\r\nid: {i}-2\r\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}]}}}}\r\n\r\n",
            "lorem ipsum ".repeat(8)
        ));
    }
    s.into_bytes()
}

/// Deterministic chunk boundaries between 1 and 4096 bytes.
fn chunk_sizes(total: usize) -> Vec<usize> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sizes = Vec::new();
    let mut left = total;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (1 + (x % 4096) as usize).min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

fn bench_sse(c: &mut Criterion) {
    let stream = mcp_stream();
    let sizes = chunk_sizes(stream.len());
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("parse_random_chunks", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut events = 0usize;
            let mut at = 0;
            for n in &sizes {
                p.feed(&stream[at..at + n]).expect("valid stream");
                at += n;
                while let Some(e) = p.poll_event() {
                    events += e.data.len();
                }
            }
            black_box(events)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .measurement_time(std::time::Duration::from_secs(4))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = bench_calls, bench_sse
}

fn main() {
    report_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
