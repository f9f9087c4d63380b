//! Cold-start benchmark: time from a request to a scaled-to-zero Nimbus service until its first
//! response byte, next to the floor measured in the same run — spawning the same sample binary
//! and polling it until its first response byte.
//!
//! ```text
//! cargo build --release -p nimbus -p nimbus-hello -p nimbus-bench
//! target/release/coldstart --bin-dir target/release --runs 50
//! ```
//!
//! Method. Floor: `spawn(nimbus-hello, PORT=p)`, then connect + `GET /` every 100 µs until the
//! first byte of a response arrives. Nimbus: `nimbus serve`, N services (the same binary; window
//! 6 s, grace 0 s) created at once and left idle until every one is at zero instances; then each
//! gets one `GET /` through the router, timed to the first response byte. The two kinds of run
//! alternate (floor, nimbus, floor, ...) so machine noise hits both alike. Reported: medians,
//! p90, and the ratio of medians. Everything runs on 127.0.0.1.

use nimbus_bench::{http, nimbus};

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    bin_dir: PathBuf,
    runs: usize,
    socket_activation: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        bin_dir: PathBuf::from("target/release"),
        runs: 50,
        socket_activation: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin-dir" => args.bin_dir = it.next().map(PathBuf::from).unwrap_or(args.bin_dir),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(args.runs),
            "--socket-activation" => args.socket_activation = true,
            "-h" | "--help" => {
                println!("usage: coldstart [--bin-dir DIR] [--runs N] [--socket-activation]");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?}; see --help");
                std::process::exit(2);
            }
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let hello = args.bin_dir.join("nimbus-hello");
    let nimbus_bin = args.bin_dir.join("nimbus");
    for b in [&hello, &nimbus_bin] {
        if !b.exists() {
            eprintln!(
                "{} is missing; build it: cargo build --release -p nimbus -p nimbus-hello",
                b.display()
            );
            std::process::exit(2);
        }
    }
    let mut server = match nimbus::Server::start(&nimbus_bin) {
        Ok(s) => s,
        Err(e) => fail(&format!("starting nimbus: {e}")),
    };
    let names: Vec<String> = (0..args.runs).map(|i| format!("cold{i}")).collect();
    if let Err(e) = server.deploy_idle(&names, &hello, args.socket_activation) {
        fail(&format!("deploying: {e}"));
    }
    eprintln!("waiting for {} services to scale to zero ...", names.len());
    if let Err(e) = server.wait_all_at_zero(&names, Duration::from_secs(120)) {
        fail(&e);
    }
    let mut floor = Vec::new();
    let mut cold = Vec::new();
    for name in &names {
        match spawn_floor(&hello) {
            Ok(d) => floor.push(d),
            Err(e) => fail(&format!("floor run: {e}")),
        }
        match server.cold_request(name) {
            Ok(d) => cold.push(d),
            Err(e) => fail(&format!("cold request to {name}: {e}")),
        }
    }
    server.stop();
    report(&floor, &cold, args.socket_activation);
}

fn fail(msg: &str) -> ! {
    eprintln!("coldstart: {msg}");
    std::process::exit(1)
}

/// Spawn the sample binary on a free port and time until its first response byte.
fn spawn_floor(hello: &std::path::Path) -> Result<Duration, String> {
    let port = http::free_port().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let child = Command::new(hello)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut guard = KillOnDrop(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = start + Duration::from_secs(10);
    loop {
        if let Ok(()) = http::first_byte(&addr, "localhost", "/") {
            let elapsed = start.elapsed();
            let _ = guard.0.kill();
            return Ok(elapsed);
        }
        if Instant::now() > deadline {
            return Err("the sample binary never answered".into());
        }
        // Poll like a careful supervisor would (Nimbus's own runtime polls every 150 µs): a
        // busy loop would steal the CPU the starting process needs on a 2-core machine.
        std::thread::sleep(Duration::from_micros(100));
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report(floor: &[Duration], cold: &[Duration], socket_activation: bool) {
    let mut f = floor.to_vec();
    let mut c = cold.to_vec();
    f.sort();
    c.sort();
    let (fm, cm) = (percentile(&f, 0.5), percentile(&c, 0.5));
    println!(
        "cold start, {} runs each (socket activation: {socket_activation})",
        c.len()
    );
    println!("  {:<34} {:>12} {:>12} {:>12}", "", "median", "p90", "min");
    println!(
        "  {:<34} {:>12} {:>12} {:>12}",
        "floor (spawn + poll, same binary)",
        ms(fm),
        ms(percentile(&f, 0.9)),
        ms(f[0])
    );
    println!(
        "  {:<34} {:>12} {:>12} {:>12}",
        "nimbus (zero → first byte)",
        ms(cm),
        ms(percentile(&c, 0.9)),
        ms(c[0])
    );
    println!(
        "  ratio of medians nimbus/floor = {:.2}x",
        cm.as_secs_f64() / fm.as_secs_f64()
    );
}
