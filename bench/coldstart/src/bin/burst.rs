//! Burst benchmark: 0 → N concurrent clients (default 200) against a service with
//! `autoscaling.knative.dev/target: "10"`; reports how long until enough instances are ready
//! (N / (10 × 70%) by Knative's formula), the errors (target: none) and the latency percentiles
//! of the requests made during the ramp.
//!
//! ```text
//! cargo build --release -p nimbus -p nimbus-hello -p nimbus-bench
//! target/release/burst --bin-dir target/release --clients 200 --seconds 20
//! ```
//!
//! Every client loops `GET /sleep?ms=100` on its own connection (`Connection: close`, so the
//! router sees real connection churn), through the router, on 127.0.0.1.

use nimbus_bench::summary::{self, Better, Figure};
use nimbus_bench::{http, nimbus};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() {
    let mut bin_dir = PathBuf::from("target/release");
    let mut clients = 200usize;
    let mut seconds = 20u64;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin-dir" => bin_dir = it.next().map(PathBuf::from).unwrap_or(bin_dir),
            "--clients" => clients = it.next().and_then(|v| v.parse().ok()).unwrap_or(clients),
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            _ => {
                eprintln!("usage: burst [--bin-dir DIR] [--clients N] [--seconds S]");
                std::process::exit(2);
            }
        }
    }
    let hello = bin_dir.join("nimbus-hello");
    let mut server =
        nimbus::Server::start(&bin_dir.join("nimbus"), &bin_dir).unwrap_or_else(|e| fail(&e));
    server
        .deploy_target("burst", &hello, 10)
        .unwrap_or_else(|e| fail(&e));
    server
        .wait_ready_replicas("burst-00001", 1, Duration::from_secs(60))
        .unwrap_or_else(|e| fail(&e));
    let needed = (clients as f64 / 7.0).ceil() as i64;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(Duration, bool)>();
    let start = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..clients {
        let (tx, stop, router) = (tx.clone(), stop.clone(), server.router.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = matches!(
                    http::request(
                        &router,
                        "GET",
                        "/sleep?ms=100",
                        &[("Host", "burst.default.localhost")],
                        b""
                    ),
                    Ok((200, _, _))
                );
                let _ = tx.send((t.elapsed(), ok));
            }
        }));
    }
    drop(tx);
    let reached = server
        .wait_ready_replicas("burst-00001", needed, Duration::from_secs(seconds))
        .map(|_| start.elapsed());
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    server.stop();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut errors = 0usize;
    for (d, ok) in rx {
        latencies.push(d);
        errors += usize::from(!ok);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "burst: 0 → {clients} clients, GET /sleep?ms=100, target 10 (needs {needed} instances)"
    );
    match &reached {
        Ok(d) => println!(
            "  time until {needed} instances ready: {:.2} s",
            d.as_secs_f64()
        ),
        Err(e) => println!("  not reached: {e}"),
    }
    println!("  requests: {}   errors: {errors}", latencies.len());
    println!(
        "  latency during the ramp: p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    // #16's goals: every needed instance ready within 1 s, the ramp's p99 within 2x the
    // handler's 100 ms.
    let ready_s = reached.as_ref().map_or(f64::INFINITY, |d| d.as_secs_f64());
    let figures = [
        (
            "burst: all needed instances ready",
            ready_s,
            "goal",
            1.0,
            "s",
        ),
        (
            "burst: p99 during the ramp",
            pct(0.99).as_secs_f64() * 1e3,
            "2x the handler",
            200.0,
            "ms",
        ),
        ("burst: errors", errors as f64, "goal", 0.0, "requests"),
    ];
    for (figure, value, peer, peer_value, unit) in figures {
        summary::record(&Figure {
            bench: "burst",
            figure,
            value,
            peer,
            peer_value,
            unit,
            better: Better::Lower,
        });
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("burst: {msg}");
    std::process::exit(1)
}
