//! Cold-start benchmark: time from a request to a scaled-to-zero Nimbus service until its first
//! response byte, for the process, container and Wasm runtimes, each next to its floor
//! measured in the same run.
//!
//! ```text
//! cargo build --release -p nimbus -p nimbus-hello -p nimbus-bench
//! target/release/coldstart --bin-dir target/release --runs 50 [--wasmtime PATH]
//! ```
//!
//! Method. The process and container rows run the same `nimbus-hello` binary, the Wasm rows
//! the `examples/hello-wasm` component; each polls (connect + `GET /` every 100 µs) or
//! requests until the first response byte, on 127.0.0.1.
//!
//! - spawn floor: `spawn(nimbus-hello, PORT=p)` + poll.
//! - nimbus process: one `GET /` through the router to an idle `runtimeClassName: process`
//!   service whose command is `nimbus-hello`.
//! - runc floor: Nimbus's own container launcher driven directly — build the instance bundle
//!   (overlay over the stored image's rootfs, config.json) and spawn the exact `runc run`
//!   command an instance gets — + poll. No supervisor, router or autoscaler.
//! - nimbus container: one `GET /` through the router to an idle service with
//!   `image: bench.local/hello:1`, a minimal image (the binary, its `ldd` libraries) imported
//!   with `nimbus image import`.
//! - wasmtime serve floor (with `--wasmtime PATH`, the CLI of the wasmtime release Nimbus
//!   embeds): `wasmtime serve` of `examples/hello-wasm`, precompiled, spawned + poll.
//! - nimbus wasm: one `GET /` through the router to an idle `runtimeClassName: wasm` service
//!   running the same component (compiled once when the service was created, as in use).
//! - nimbus wasm, warm: the same request again at once on a new connection (the instance now
//!   exists): the client's and the router's share of the cold row.
//!
//! N services of each kind (process, image, Wasm; grace 0 s, stable window `--window`, default
//! 120 s) are created at once and left idle until every one is at zero instances and every
//! container is deleted, so one wait serves every run. The long window keeps the instances started by the measured
//! requests alive until all rounds are done, so no scale-down (for containers: runc kill,
//! delete, unmount) runs during a measurement; rounds that start later than that are counted.
//! Each round waits for idle CPUs, then runs the rows in turn, so noise hits all alike.
//! Container rows need root and runc; without them the program says why and measures the rest.
//! Reported: median, p90, min, and the ratio of each Nimbus median to the median of the floor
//! of its kind.

use nimbus_bench::container::{self, RuncFloor};
use nimbus_bench::nimbus::{self, Workload};
use nimbus_bench::stats::{Summary, ms};
use nimbus_bench::summary::{self, Better, Figure};
use nimbus_bench::wasm::{self, WasmtimeFloor};
use nimbus_bench::{floor, quiet};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The image the container services run.
const REFERENCE: &str = "bench.local/hello:1";

/// Idle CPU share required before each round.
const IDLE_THRESHOLD: f64 = 0.90;

struct Args {
    bin_dir: PathBuf,
    runs: usize,
    socket_activation: bool,
    quiet_max_wait: Duration,
    window: Duration,
    wasmtime: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        bin_dir: PathBuf::from("target/release"),
        runs: 50,
        socket_activation: false,
        quiet_max_wait: Duration::from_secs(2),
        window: Duration::from_secs(120),
        wasmtime: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bin-dir" => args.bin_dir = it.next().map(PathBuf::from).unwrap_or(args.bin_dir),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).unwrap_or(args.runs),
            "--socket-activation" => args.socket_activation = true,
            "--quiet-max-wait" => {
                if let Some(s) = it.next().and_then(|v| v.parse().ok()) {
                    args.quiet_max_wait = Duration::from_secs_f64(s);
                }
            }
            "--window" => {
                if let Some(s) = it.next().and_then(|v| v.parse().ok()) {
                    args.window = Duration::from_secs(s);
                }
            }
            "--wasmtime" => args.wasmtime = it.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!(
                    "usage: coldstart [--bin-dir DIR] [--runs N] [--socket-activation] \
                     [--quiet-max-wait SECS] [--window SECS] [--wasmtime PATH]"
                );
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

/// The samples of one whole run, a vector per row.
#[derive(Default)]
struct Samples {
    spawn: Vec<Duration>,
    process: Vec<Duration>,
    runc: Vec<Duration>,
    runc_bundle: Vec<Duration>,
    container: Vec<Duration>,
    wasmtime: Vec<Duration>,
    wasm: Vec<Duration>,
    wasm_warm: Vec<Duration>,
    /// Rounds that started before the CPUs reached the idle threshold.
    not_quiet: usize,
    /// Rounds that started a stable window or more after the first: scale-downs may overlap.
    late: usize,
}

fn main() {
    let args = parse_args();
    let hello = args.bin_dir.join("nimbus-hello");
    let nimbus_bin = args.bin_dir.join("nimbus");
    for b in [&hello, &nimbus_bin] {
        if !b.exists() {
            fail(&format!(
                "{} is missing; build it: cargo build --release -p nimbus -p nimbus-hello",
                b.display()
            ));
        }
    }
    let no_containers = container::unavailable();
    if let Some(why) = &no_containers {
        eprintln!("coldstart: container rows skipped: {why} (they need root and runc)");
    }
    let scratch =
        std::env::temp_dir().join(format!("nimbus-coldstart-{}-bench", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .unwrap_or_else(|e| fail(&format!("creating {}: {e}", scratch.display())));
    let mut server = nimbus::Server::start(&nimbus_bin, &scratch)
        .unwrap_or_else(|e| fail(&format!("starting nimbus: {e}")));
    let result = run(&args, &server, &scratch, no_containers.is_none());
    server.stop();
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok(samples) => report(&samples, &args),
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("coldstart: {msg}");
    std::process::exit(1)
}

/// Set up the services (and the runc floor), wait for zero, measure every round.
fn run(
    args: &Args,
    server: &nimbus::Server,
    scratch: &Path,
    containers: bool,
) -> Result<Samples, String> {
    let hello = args.bin_dir.join("nimbus-hello");
    let names =
        |prefix: &str| -> Vec<String> { (0..args.runs).map(|i| format!("{prefix}{i}")).collect() };
    let (procs, ctrs, wasms) = (names("proc"), names("ctr"), names("wasm"));
    let mut runc = None;
    if containers {
        let layout = container::write_image(&hello, &scratch.join("image"), REFERENCE)?;
        server.import_image(&args.bin_dir.join("nimbus"), &layout)?;
        let store = server.data_dir().join("images");
        runc = Some(RuncFloor::new(
            &store,
            REFERENCE,
            &scratch.join("runc-floor"),
        )?);
    }
    let process = Workload::Process(hello.clone());
    server.deploy_idle(&procs, &process, args.window, args.socket_activation)?;
    let mut all = procs.clone();
    let mut wasmtime = None;
    match wasm::component(&scratch.join("hello-wasm")) {
        Ok(component) => {
            if let Some(path) = &args.wasmtime {
                let dir = scratch.join("wasmtime-floor");
                wasmtime = Some(WasmtimeFloor::new(path, &component, &dir)?);
            }
            server.deploy_idle(&wasms, &Workload::Wasm(component), args.window, false)?;
            all.extend(wasms.iter().cloned());
        }
        Err(why) => eprintln!("coldstart: wasm rows skipped: {why}"),
    }
    let with_wasm = all.len() > procs.len();
    if containers {
        let image = Workload::Image(REFERENCE.into());
        server.deploy_idle(&ctrs, &image, args.window, false)?;
        all.extend(ctrs.iter().cloned());
    }
    eprintln!("waiting for {} services to scale to zero ...", all.len());
    server.wait_all_at_zero(&all, args.window * 2 + Duration::from_secs(120))?;
    server.wait_containers_gone(Duration::from_secs(120))?;
    let mut samples = Samples::default();
    let first_round = Instant::now();
    for i in 0..args.runs {
        if first_round.elapsed() >= args.window {
            samples.late += 1;
        }
        if !quiet::wait_for_idle(IDLE_THRESHOLD, args.quiet_max_wait) {
            samples.not_quiet += 1;
        }
        samples
            .spawn
            .push(floor::spawn(&hello).map_err(|e| format!("spawn floor: {e}"))?);
        samples.process.push(cold(server, &procs[i])?);
        if let Some(runc) = runc.as_mut() {
            let r = runc.run().map_err(|e| format!("runc floor: {e}"))?;
            samples.runc.push(r.total);
            samples.runc_bundle.push(r.bundle);
            samples.container.push(cold(server, &ctrs[i])?);
        }
        if let Some(floor) = &wasmtime {
            samples
                .wasmtime
                .push(floor.run().map_err(|e| format!("wasmtime floor: {e}"))?);
        }
        if with_wasm {
            samples.wasm.push(cold(server, &wasms[i])?);
            samples.wasm_warm.push(cold(server, &wasms[i])?);
        }
    }
    Ok(samples)
}

fn cold(server: &nimbus::Server, name: &str) -> Result<Duration, String> {
    server
        .cold_request(name)
        .map_err(|e| format!("cold request to {name}: {e}"))
}

fn report(s: &Samples, args: &Args) {
    println!(
        "cold start, {} rounds (socket activation for process services: {}, window {:?}); \
         {} round(s) began with the CPUs < {:.0}% idle, {} after scale-downs could begin",
        args.runs,
        args.socket_activation,
        args.window,
        s.not_quiet,
        IDLE_THRESHOLD * 100.0,
        s.late
    );
    println!(
        "  {:<40} {:>11} {:>11} {:>11}  ratio of medians",
        "", "median", "p90", "min"
    );
    let spawn = Summary::of(&s.spawn);
    let runc = Summary::of(&s.runc);
    row("spawn floor (spawn + poll)", spawn, None);
    row(
        "nimbus process (zero → first byte)",
        Summary::of(&s.process),
        spawn.map(|f| (f, "spawn floor")),
    );
    report_containers(s, spawn, runc);
    report_wasm(s);
}

fn report_containers(s: &Samples, spawn: Option<Summary>, runc: Option<Summary>) {
    if runc.is_none() {
        println!("  (container rows skipped: see above)");
        return;
    }
    row("runc floor (bundle + runc run + poll)", runc, None);
    row(
        "nimbus container (zero → first byte)",
        Summary::of(&s.container),
        runc.map(|f| (f, "runc floor")),
    );
    if let Some(b) = Summary::of(&s.runc_bundle) {
        println!(
            "  of the runc floor, building the bundle (overlay mount, config.json): median {}",
            ms(b.median)
        );
    }
    if let (Some(c), Some(p), Some(r), Some(f)) = (
        Summary::of(&s.container),
        Summary::of(&s.process),
        runc,
        spawn,
    ) {
        println!(
            "  container/process = {:.2}x (nimbus), {:.2}x (floors)",
            c.ratio_to(&p),
            r.ratio_to(&f)
        );
    }
}

fn report_wasm(s: &Samples) {
    if s.wasm.is_empty() {
        println!("  (wasm rows skipped: see above)");
        return;
    }
    let floor = Summary::of(&s.wasmtime);
    match floor {
        Some(_) => row("wasmtime serve floor (spawn + poll)", floor, None),
        None => println!("  (no wasmtime serve floor: pass --wasmtime PATH)"),
    }
    row(
        "nimbus wasm (zero → first byte)",
        Summary::of(&s.wasm),
        floor.map(|f| (f, "wasmtime serve floor")),
    );
    if let Some(w) = Summary::of(&s.wasm) {
        // #16's goal for the Wasm cold start, beside the floor.
        summary::record(&Figure {
            bench: "coldstart",
            figure: "nimbus wasm (zero → first byte)",
            value: w.median.as_secs_f64() * 1e3,
            peer: "goal",
            peer_value: 0.5,
            unit: "ms",
            better: Better::Lower,
        });
    }
    row(
        "nimbus wasm, warm (new connection)",
        Summary::of(&s.wasm_warm),
        floor.map(|f| (f, "wasmtime serve floor")),
    );
}

fn row(label: &str, summary: Option<Summary>, floor: Option<(Summary, &str)>) {
    let Some(s) = summary else { return };
    let ratio = match floor {
        Some((f, name)) => {
            summary::record(&Figure {
                bench: "coldstart",
                figure: label,
                value: s.median.as_secs_f64() * 1e3,
                peer: name,
                peer_value: f.median.as_secs_f64() * 1e3,
                unit: "ms",
                better: Better::Lower,
            });
            format!("{:.2}x {name}", s.ratio_to(&f))
        }
        None => "1.00x".to_owned(),
    };
    println!(
        "  {label:<40} {:>11} {:>11} {:>11}  {ratio}",
        ms(s.median),
        ms(s.p90),
        ms(s.min)
    );
}
