//! Adapter overhead: `call_tool("echo")` through our clients against the
//! same request sent raw on the same HTTP stack, same server, same session:
//! - blocking client (`mcp_recovery::blocking`) vs a raw `ureq` POST of the
//!   same JSON-RPC bytes and headers (an agent configured like the client's);
//! - smol client (`mcp_recovery::smol`) vs a raw hyper 1
//!   `client::conn::http1` connection over smol-hyper (the smol adapter's
//!   own stack), body collected frame by frame, two ways: the connection
//!   driven by the calling task, as the adapter does (the baseline of the
//!   ratio), and by a task of its own, as hyper's examples do.
//!
//! Servers: a minimal static responder in this process (fixed answers, no
//! JSON parsing: the client side is most visible) and, when
//! `scripts/peers.sh` has installed it, the official TypeScript SDK peer in
//! JSON mode (a real server).
//!
//! The variants are interleaved: every round runs a block of calls of each,
//! in alternating order, so drift and other load hit all of them alike. The
//! reported ratio is the median of the per-round ratios (client / raw),
//! with the middle half of them.
//!
//! Run: `cargo bench --all-features --bench adapters` (scripts/bench.sh).

#[path = "common/peer.rs"]
mod peer;
#[path = "common/static_server.rs"]
mod static_server;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use mcp_recovery::{blocking, smol as smol_client};
use serde_json::json;
use smol_hyper::rt::FuturesIo;
use std::time::{Duration, Instant};

const USER_AGENT: &str = "mcp-recovery/0.1.0";

fn body(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"arguments":{{"text":"hi"}},"name":"echo"}}}}"#
    )
}

/// The headers our clients put on a `tools/call` (besides host,
/// user-agent and content-length).
fn headers(session: &str, version: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        (
            "accept".into(),
            "application/json, text/event-stream".into(),
        ),
        ("mcp-session-id".into(), session.into()),
        ("mcp-protocol-version".into(), version.into()),
    ]
}

struct Raw {
    url: String,
    port: u16,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
    next_id: u64,
}

impl Raw {
    fn ureq_call(&mut self) {
        self.ureq_call_parsed(false);
    }

    /// The raw request; with `parse`, its answer parsed the way any MCP
    /// client has to (JSON-RPC into a `serde_json::Value`, its `result`
    /// taken): the floor of a client that returns the result as data.
    fn ureq_call_parsed(&mut self, parse: bool) {
        self.next_id += 1;
        let mut req = self.agent.post(&self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let mut resp = req.send(body(self.next_id).as_bytes()).expect("raw ureq");
        assert_eq!(resp.status(), 200);
        let bytes = resp.body_mut().read_to_vec().expect("raw ureq body");
        assert!(!bytes.is_empty());
        if parse {
            std::hint::black_box(parsed(&bytes));
        }
    }

    async fn hyper_call(&mut self, sender: &mut SendRequest<Full<Bytes>>) {
        self.hyper_call_parsed(sender, false).await;
    }

    /// [`Raw::hyper_call`]; with `parse`, as [`Raw::ureq_call_parsed`].
    async fn hyper_call_parsed(&mut self, sender: &mut SendRequest<Full<Bytes>>, parse: bool) {
        self.next_id += 1;
        sender.ready().await.expect("hyper ready");
        let mut b = Request::builder()
            .method("POST")
            .uri("/mcp")
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("user-agent", USER_AGENT);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        let req = b
            .body(Full::new(Bytes::from(body(self.next_id))))
            .expect("request");
        let resp = sender.send_request(req).await.expect("raw hyper");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        assert!(!bytes.is_empty());
        if parse {
            std::hint::black_box(parsed(&bytes));
        }
    }
}

/// A JSON-RPC answer's `result` (a JSON body, or the `data:` of an event
/// stream's message).
fn parsed(bytes: &[u8]) -> serde_json::Value {
    let json = match bytes.windows(6).position(|w| w == b"data: ") {
        Some(at) => {
            let rest = &bytes[at + 6..];
            &rest[..rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len())]
        }
        None => bytes,
    };
    let mut v: serde_json::Value = serde_json::from_slice(json).expect("JSON-RPC answer");
    v["result"].take()
}

type Conn = http1::Connection<FuturesIo<smol::net::TcpStream>, Full<Bytes>>;

async fn hyper_connection(port: u16) -> (SendRequest<Full<Bytes>>, Conn) {
    let tcp = smol::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    http1::handshake(FuturesIo::new(tcp))
        .await
        .expect("handshake")
}

/// A connection driven by a task of its own (hyper's examples).
async fn hyper_spawned(port: u16) -> SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper_connection(port).await;
    smol::spawn(async move {
        let _ = conn.await;
    })
    .detach();
    sender
}

/// Runs `work` while the calling task drives `conn` (the adapter's way).
async fn driving<T>(conn: &mut Conn, work: impl std::future::Future<Output = T>) -> T {
    smol::future::or(work, async {
        let _ = conn.await;
        panic!("the raw connection ended");
    })
    .await
}

/// Per-call times (seconds) of each variant per round, and the ratios.
struct Series {
    name: &'static str,
    per_call: Vec<f64>,
    /// CPU time (user + system) of the calling thread, all rounds.
    cpu: f64,
    calls: usize,
}

/// CPU time (user + system) the calling thread has used, in seconds.
fn thread_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn measure(server: &str, url: &str, port: u16, rounds: usize, block: usize) {
    let ureq_client = blocking::Client::builder(url).build().expect("client");
    let smol_client = smol_client::Client::builder(url).build().expect("client");
    // Sessions up, connections open, everything warm.
    for _ in 0..200 {
        ureq_client
            .call_tool("echo", json!({"text": "hi"}))
            .unwrap();
    }
    smol::block_on(async {
        for _ in 0..200 {
            smol_client
                .call_tool("echo", json!({"text": "hi"}))
                .await
                .unwrap();
        }
    });
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .user_agent(USER_AGENT)
        // The client's buffers (adapters/ureq: 32 KiB, not ureq's 128).
        .input_buffer_size(32 * 1024)
        .output_buffer_size(32 * 1024)
        .max_response_header_size(16 * 1024)
        .build()
        .new_agent();
    let mut ureq_raw = Raw {
        url: url.to_owned(),
        port,
        headers: headers(
            &ureq_client.session_id().expect("session"),
            ureq_client.protocol_version().expect("version"),
        ),
        agent,
        next_id: 1 << 20,
    };
    let mut hyper_raw = Raw {
        url: url.to_owned(),
        port,
        headers: headers(
            &smol_client.session_id().expect("session"),
            smol_client.protocol_version().expect("version"),
        ),
        agent: ureq::Agent::new_with_defaults(),
        next_id: 1 << 20,
    };
    let mut sender = smol::block_on(hyper_spawned(port));
    let (mut inline_sender, mut inline_conn) = smol::block_on(hyper_connection(port));
    for _ in 0..200 {
        ureq_raw.ureq_call();
        smol::block_on(hyper_raw.hyper_call(&mut sender));
        smol::block_on(driving(
            &mut inline_conn,
            hyper_raw.hyper_call(&mut inline_sender),
        ));
    }

    let mut series = [
        Series {
            name: "ureq client call_tool",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
        Series {
            name: "raw ureq POST",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
        Series {
            name: "smol client call_tool",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
        Series {
            name: "raw hyper (smol-hyper) POST, connection driven by the caller",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
        Series {
            name: "raw hyper (smol-hyper) POST, connection on its own task",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
        Series {
            name: "raw ureq POST, answer parsed",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
        Series {
            name: "raw hyper POST (driven by the caller), answer parsed",
            per_call: vec![],
            cpu: 0.0,
            calls: 0,
        },
    ];
    for round in 0..rounds {
        let mut order = [0usize, 1, 5, 2, 3, 6, 4];
        if round % 2 == 1 {
            order = [6, 1, 0, 5, 4, 3, 2];
        }
        for which in order {
            if which == 4 && std::env::var_os("NO_SPAWNED").is_some() {
                continue;
            }
            // For a profiler: only the variants listed (`ONLY=0,1`).
            if let Ok(only) = std::env::var("ONLY") {
                if !only.split(',').any(|v| v.trim() == which.to_string()) {
                    continue;
                }
            }
            let t = Instant::now();
            let cpu = thread_cpu();
            match which {
                0 => {
                    for _ in 0..block {
                        let r = ureq_client
                            .call_tool("echo", json!({"text": "hi"}))
                            .unwrap();
                        std::hint::black_box(r);
                    }
                }
                1 => {
                    for _ in 0..block {
                        ureq_raw.ureq_call();
                    }
                }
                2 => smol::block_on(async {
                    for _ in 0..block {
                        let r = smol_client
                            .call_tool("echo", json!({"text": "hi"}))
                            .await
                            .unwrap();
                        std::hint::black_box(r);
                    }
                }),
                3 => smol::block_on(driving(&mut inline_conn, async {
                    for _ in 0..block {
                        hyper_raw.hyper_call(&mut inline_sender).await;
                    }
                })),
                5 => {
                    for _ in 0..block {
                        ureq_raw.ureq_call_parsed(true);
                    }
                }
                6 => smol::block_on(driving(&mut inline_conn, async {
                    for _ in 0..block {
                        hyper_raw.hyper_call_parsed(&mut inline_sender, true).await;
                    }
                })),
                _ => smol::block_on(async {
                    for _ in 0..block {
                        hyper_raw.hyper_call(&mut sender).await;
                    }
                }),
            }
            series[which]
                .per_call
                .push(t.elapsed().as_secs_f64() / block as f64);
            series[which].cpu += thread_cpu() - cpu;
            series[which].calls += block;
        }
    }
    println!(
        "\n### {server}: {rounds} rounds x {block} calls per variant, interleaved (load average {})\n",
        loadavg()
    );
    println!(
        "| variant | median per call | ratio (median of rounds) | middle half of rounds | calling thread's CPU per call | CPU ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for pair in [[0usize, 1], [0, 5], [2, 3], [2, 6], [2, 4]] {
        let [ours, raw] = pair;
        if series[ours].calls == 0 || series[raw].calls == 0 {
            continue;
        }
        let ratios: Vec<f64> = series[ours]
            .per_call
            .iter()
            .zip(&series[raw].per_call)
            .map(|(a, b)| a / b)
            .collect();
        let mut sorted = ratios.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let (lo, hi) = (sorted[sorted.len() / 4], sorted[sorted.len() * 3 / 4]);
        let cpu = |s: &Series| s.cpu / s.calls as f64;
        println!(
            "| {} | {:.1} µs | **{:.3}×** | {:.3}–{:.3}× | {:.1} µs | {:.3}× |",
            series[ours].name,
            median(&series[ours].per_call) * 1e6,
            median(&ratios),
            lo,
            hi,
            cpu(&series[ours]) * 1e6,
            cpu(&series[ours]) / cpu(&series[raw]),
        );
        println!(
            "| {} | {:.1} µs | 1.000× | | {:.1} µs | 1.000× |",
            series[raw].name,
            median(&series[raw].per_call) * 1e6,
            cpu(&series[raw]) * 1e6,
        );
    }
    drop(sender);
    let _ = ureq_client.close();
    let _ = smol::block_on(smol_client.close());
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    println!("## Adapter overhead (client call_tool vs the raw request on the same stack)");
    println!(
        "\n{} cores, interleaved rounds; per-call times are wall-clock, one call at a time",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    let server = static_server::StaticServer::start();
    let url = server.url();
    {
        // Print what the client actually sends, next to what the raw
        // variants send, so "the same bytes" can be checked.
        let c = blocking::Client::builder(&url).build().expect("client");
        c.call_tool("echo", json!({"text": "hi"})).unwrap();
        let first = server.first_call.lock().unwrap().clone();
        if let Some((headers, body)) = first {
            println!("\nclient's tools/call as the static responder received it:");
            for h in headers {
                println!("    {h}");
            }
            println!("    {}", String::from_utf8_lossy(&body));
            println!("raw variants send: {}", body_for_display());
        }
    }
    if std::env::var_os("NO_STATIC").is_none() {
        measure("static responder (in process)", &url, server.port, 101, 200);
    }

    if peer::installed() {
        let ts = peer::Peer::ts("json");
        measure(
            "official TypeScript SDK peer, --mode json",
            &ts.url(),
            ts.port,
            41,
            100,
        );
    } else {
        println!("\n(TypeScript peer not installed: run `bash scripts/peers.sh` to add it)");
    }
}

fn body_for_display() -> String {
    body(1 << 20).replace(&(1u64 << 20).to_string(), "<n>")
}

/// The 1-minute load average, to show what else the machine was doing.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
