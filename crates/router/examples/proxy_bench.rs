//! The router alone in front of one HTTP/1.1 backend, for profiling the data path without the
//! rest of `nimbus serve` (e.g. under `valgrind --tool=callgrind`, counting instructions per
//! request while `wrk` drives it).
//!
//! ```text
//! cargo build --release -p nimbus-router --example proxy_bench
//! [PROXY_BENCH_WORKERS=N] proxy_bench <backend addr> [listen addr] [seconds]
//! wrk -t1 -c1 -d5 -H 'Host: bench.default.localhost' http://<listen addr>/
//! ```
//!
//! It serves `bench.default.localhost` → revision `bench-1` → the backend, prints
//! `listening on <addr>`, and stops after `seconds` (default 30). `PROXY_BENCH_WORKERS` sets
//! [`RouterConfig::workers`] (0: serve on this program's multi-thread runtime).

use std::net::SocketAddr;
use std::time::Duration;

use nimbus_api::networking::{Ingress, IngressRule, IngressSplit, RequestTimeouts};
use nimbus_router::{Router, RouterConfig};
use nimbus_runtime::{Endpoint, EndpointRegistry, Protocol, RevisionEndpoints, RevisionKey};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let backend: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: proxy_bench <backend addr> [listen addr] [seconds]");
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let mut config = RouterConfig::default();
    if let Some(workers) = std::env::var("PROXY_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        config.workers = workers;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let router = router(backend, config);
        let lifetime = tokio::time::sleep(Duration::from_secs(seconds));
        router.serve(listener, lifetime).await
    })
}

fn router(backend: SocketAddr, config: RouterConfig) -> Router {
    let endpoints = EndpointRegistry::new();
    let ready = vec![Endpoint::tcp("bench-1-0", backend, Protocol::Http1)];
    let revision = RevisionKey::new("default", "bench-1");
    let failure = None;
    endpoints.set(&revision, RevisionEndpoints { ready, failure });
    let router = Router::new(endpoints, config);
    router.apply(Ingress {
        namespace: "default".into(),
        name: "bench".into(),
        rules: vec![IngressRule {
            hosts: vec!["bench.default.localhost".into()],
            splits: vec![IngressSplit {
                revision: "bench-1".into(),
                percent: 100,
                timeouts: RequestTimeouts::default(),
                container_concurrency: 0,
            }],
        }],
    });
    router
}
