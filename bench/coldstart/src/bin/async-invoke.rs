//! Asynchronous invocation throughput (issue #14): how many requests per second the router
//! accepts with `Prefer: respond-async` (each answered `202` only once stored and fsync'd),
//! and how many per second are then delivered to the function, beside the same function
//! called synchronously through the same router in the same run (the peer).
//!
//! ```text
//! cargo build --release -p nimbus -p nimbus-hello -p nimbus-bench
//! target/release/async-invoke --bin-dir target/release --clients 32 --requests 20000
//! ```
//!
//! Each client sends its share on connections of its own (`Connection: close`), to a service
//! running `nimbus-hello` with one instance kept ready and room for more.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nimbus_bench::summary::{self, Better, Figure};
use nimbus_bench::{http, nimbus};

const HOST: &str = "async.default.localhost";

fn main() {
    let mut bin_dir = PathBuf::from("target/release");
    let mut clients = 32usize;
    let mut requests = 20_000usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin-dir" => bin_dir = it.next().map(PathBuf::from).unwrap_or(bin_dir),
            "--clients" => clients = it.next().and_then(|v| v.parse().ok()).unwrap_or(clients),
            "--requests" => requests = it.next().and_then(|v| v.parse().ok()).unwrap_or(requests),
            _ => {
                eprintln!("usage: async-invoke [--bin-dir DIR] [--clients N] [--requests N]");
                std::process::exit(2);
            }
        }
    }
    let hello = bin_dir.join("nimbus-hello");
    let mut server =
        nimbus::Server::start(&bin_dir.join("nimbus"), &bin_dir).unwrap_or_else(|e| fail(&e));
    server
        .deploy_target("async", &hello, 100)
        .unwrap_or_else(|e| fail(&e));
    server
        .wait_ready_replicas("async-00001", 1, Duration::from_secs(60))
        .unwrap_or_else(|e| fail(&e));

    let sync = send_all(&server.router, clients, requests, &[("Host", HOST)], 200);
    let headers = [("Host", HOST), ("Prefer", "respond-async")];
    let accepted = send_all(&server.router, clients, requests, &headers, 202);
    let started = Instant::now() - accepted.elapsed;
    let delivered = wait_delivered(&server, requests).unwrap_or_else(|e| fail(&e));
    server.stop();

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("async-invoke: {requests} requests, {clients} clients, nimbus-hello, one run");
    println!(
        "  synchronous (the peer):  {:>8.0} req/s   ({} errors)",
        rate(sync.ok, sync.elapsed),
        sync.errors
    );
    println!(
        "  accepted (202, fsync'd): {:>8.0} req/s   ({} errors)   {:.2}x the synchronous rate",
        rate(accepted.ok, accepted.elapsed),
        accepted.errors,
        rate(accepted.ok, accepted.elapsed) / rate(sync.ok, sync.elapsed)
    );
    let whole = delivered.duration_since(started);
    println!(
        "  delivered (all succeeded): {:>6.0} req/s over {:.1} s from the first acceptance   {:.2}x the synchronous rate",
        rate(accepted.ok, whole),
        whole.as_secs_f64(),
        rate(accepted.ok, whole) / rate(sync.ok, sync.elapsed)
    );
    for (figure, value) in [
        (
            "async accepted (202, durable)",
            rate(accepted.ok, accepted.elapsed),
        ),
        ("async delivered", rate(accepted.ok, whole)),
    ] {
        summary::record(&Figure {
            bench: "async-invoke",
            figure,
            value,
            peer: "synchronous calls",
            peer_value: rate(sync.ok, sync.elapsed),
            unit: "req/s",
            better: Better::Higher,
        });
    }
}

struct Sent {
    ok: usize,
    errors: usize,
    elapsed: Duration,
}

/// `requests` GETs of `/` split over `clients` threads; `ok`: those answered `expect`.
fn send_all(
    router: &str,
    clients: usize,
    requests: usize,
    headers: &[(&'static str, &'static str)],
    expect: u16,
) -> Sent {
    let (ok, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (router, headers) = (router.to_owned(), headers.to_vec());
            let (ok, errors) = (ok.clone(), errors.clone());
            let share = requests / clients + usize::from(c < requests % clients);
            std::thread::spawn(move || {
                for _ in 0..share {
                    match http::request(&router, "GET", "/", &headers, b"") {
                        Ok((status, _, _)) if status == expect => {
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Sent {
        ok: ok.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

/// Wait until no invocation is pending and `n` succeeded; the moment it was seen.
fn wait_delivered(server: &nimbus::Server, n: usize) -> Result<Instant, String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let path = "/apis/nimbus.dev/v1/namespaces/default/invocations?state=Pending&limit=1";
    loop {
        let pending = server.api("GET", path, "")?;
        if pending["items"].as_array().is_some_and(Vec::is_empty) {
            let at = Instant::now();
            let done = server.api(
                "GET",
                "/apis/nimbus.dev/v1/namespaces/default/invocations?state=Succeeded&limit=10000",
                "",
            )?;
            let succeeded = done["items"].as_array().map_or(0, Vec::len);
            if succeeded < n.min(10_000) {
                return Err(format!("only {succeeded} of {n} invocations succeeded"));
            }
            return Ok(at);
        }
        if Instant::now() > deadline {
            return Err("invocations still pending after 600 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("async-invoke: {msg}");
    std::process::exit(1)
}
