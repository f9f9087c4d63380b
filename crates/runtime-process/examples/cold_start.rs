//! Cold start of the sample function through the process runtime: the time from `set_desired(1)`
//! to the endpoint being published and to the first response, with readiness polling (the
//! program binds `$PORT`), with socket activation, and with socket activation reached through an
//! `sh -c 'exec …'` hop (what setting `LISTEN_PID` via the shell would cost). Prints a table; it
//! asserts nothing about time.
//!
//! Each mode is its own revision, scaled to zero after every start (as the autoscaler does), so
//! what a revision keeps between starts (its spare cgroup) is there for the next one.
//! `--idle SECS` waits that long after an instance is gone before the next start: cold starts
//! follow idle spells, and the kernel's first cgroup attach after one waits for an RCU grace
//! period, which back-to-back starts never see.
//!
//! ```text
//! cargo build --release -p nimbus-hello
//! cargo run --release -p nimbus-runtime-process --example cold_start [-- [--idle SECS] [HELLO_BINARY [RUNS]]]
//! NIMBUS_NO_CGROUPS=1 cargo run ...   # the same without per-instance cgroups
//! NIMBUS_NO_STUBS=1 cargo run ...     # cgroups joined at start, not by pre-started stubs
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_runtime::{InstanceSpec, Protocol, RevisionKey, Runtime};
use nimbus_runtime_process::{ProcessRuntime, ProcessRuntimeConfig, StubCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One way of starting the sample function.
struct Mode {
    name: &'static str,
    activated: bool,
    via_sh: bool,
}

const MODES: [Mode; 3] = [
    Mode {
        name: "port + readiness polling",
        activated: false,
        via_sh: false,
    },
    Mode {
        name: "socket activation",
        activated: true,
        via_sh: false,
    },
    Mode {
        name: "socket activation via sh hop",
        activated: true,
        via_sh: true,
    },
];

/// One cold start: when the endpoint appeared and when the first response was complete.
struct Sample {
    published: Duration,
    answered: Duration,
}

fn main() {
    // The runtime starts its instance stubs from this very executable.
    if nimbus_runtime_process::stub_requested() {
        nimbus_runtime_process::run_instance_stub();
    }
    tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(measure());
}

async fn measure() {
    let (idle, mut args) = options();
    let hello = args.next().map(PathBuf::from).unwrap_or_else(sibling_hello);
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(50);
    assert!(
        hello.is_file(),
        "{} not found; build nimbus-hello first",
        hello.display()
    );
    // `NIMBUS_NO_CGROUPS=1` measures without per-instance cgroups, to see what they cost.
    let mut config = ProcessRuntimeConfig::default();
    if std::env::var_os("NIMBUS_NO_CGROUPS").is_some() {
        config.cgroup_parent = None;
    }
    // `NIMBUS_NO_STUBS=1`: instances join their cgroup between fork and exec at start instead
    // of being executed by a stub that waited in it.
    if std::env::var_os("NIMBUS_NO_STUBS").is_none() {
        config.instance_stub = Some(StubCommand::this_executable());
    }
    let runtime = ProcessRuntime::new(config);
    println!(
        "{runs} cold starts of {} per mode (after one warm-up), {idle:?} idle before each\n",
        hello.display()
    );
    println!(
        "{:<30} {:>15} {:>15} {:>18} {:>18} {:>8}",
        "mode", "published p50", "published p90", "first answer p50", "first answer p90", "ratio"
    );
    let specs: Vec<InstanceSpec> = (1..).zip(&MODES).map(|(n, m)| spec(&hello, m, n)).collect();
    let mut samples: Vec<Vec<Sample>> = specs.iter().map(|_| Vec::new()).collect();
    // Round-robin over the modes, so a change in machine load hits them all alike; run 0 warms
    // up (page cache, blocking threads) and is not counted.
    for run in 0..=runs {
        for (spec, samples) in specs.iter().zip(&mut samples) {
            tokio::time::sleep(idle).await;
            let sample = cold_start(&runtime, spec).await;
            if run > 0 {
                samples.push(sample);
            }
        }
    }
    let mut baseline = None;
    for (mode, samples) in MODES.iter().zip(&samples) {
        let published = percentiles(samples.iter().map(|s| s.published));
        let answered = percentiles(samples.iter().map(|s| s.answered));
        let base = *baseline.get_or_insert(answered.0);
        println!(
            "{:<30} {:>15} {:>15} {:>18} {:>18} {:>7.2}x",
            mode.name,
            ms(published.0),
            ms(published.1),
            ms(answered.0),
            ms(answered.1),
            answered.0.as_secs_f64() / base.as_secs_f64()
        );
    }
    runtime.shutdown().await;
}

/// Start one instance, wait for its endpoint, ask `/` once, then scale to zero and wait until
/// the instance is gone (its port refuses connections), so runs do not overlap.
async fn cold_start(runtime: &Arc<ProcessRuntime>, spec: &InstanceSpec) -> Sample {
    let registry = runtime.endpoints();
    let mut changes = registry.watch();
    let began = Instant::now();
    runtime.set_desired(spec, 1).await.expect("valid spec");
    let addr = loop {
        let ready = registry
            .get(&spec.revision)
            .and_then(|e| e.ready.first().cloned());
        if let Some(endpoint) = ready {
            break endpoint.addr().expect("a process listens on a socket");
        }
        changes.changed().await.expect("registry alive");
    };
    let published = began.elapsed();
    first_response(addr).await;
    let answered = began.elapsed();
    runtime.set_desired(spec, 0).await.expect("valid spec");
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Sample {
        published,
        answered,
    }
}

async fn first_response(addr: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n";
    stream.write_all(request).await.expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("receive");
    assert!(response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200"));
}

fn spec(hello: &std::path::Path, mode: &Mode, n: u32) -> InstanceSpec {
    let hello = hello.to_string_lossy().into_owned();
    let command = if mode.via_sh {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "exec \"$0\" \"$@\"".into(),
            hello,
        ]
    } else {
        vec![hello]
    };
    InstanceSpec {
        revision: RevisionKey::new("bench", format!("hello-{n:05}")),
        runtime_class: "process".into(),
        image: None,
        command,
        args: vec![],
        env: vec![],
        working_dir: None,
        protocol: Protocol::Http1,
        startup_timeout: Duration::from_secs(10),
        socket_activation: mode.activated,
        labels: BTreeMap::new(),
        ..Default::default()
    }
}

/// `--idle SECS` (default 0) and the positional arguments.
fn options() -> (Duration, impl Iterator<Item = String>) {
    let mut idle = Duration::ZERO;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--idle" {
            let secs = args.next().and_then(|s| s.parse::<f64>().ok());
            idle = Duration::from_secs_f64(secs.expect("--idle takes seconds"));
        } else {
            positional.push(arg);
        }
    }
    (idle, positional.into_iter())
}

/// `nimbus-hello` next to this example's directory (`target/<profile>/examples/..`).
fn sibling_hello() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target layout");
    profile_dir.join("nimbus-hello")
}

/// (p50, p90).
fn percentiles(samples: impl Iterator<Item = Duration>) -> (Duration, Duration) {
    let mut sorted: Vec<Duration> = samples.collect();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
