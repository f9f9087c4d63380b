//! The router alone in front of one HTTP/1.1 backend, for profiling the data path without the
//! rest of `nimbus serve` (e.g. under `valgrind --tool=callgrind`, counting instructions per
//! request while `wrk` drives it).
//!
//! ```text
//! cargo build --release -p nimbus-router --example proxy_bench
//! proxy_bench <backend addr> [listen addr] [seconds]
//! wrk -t1 -c1 -d5 -H 'Host: bench.default.localhost' http://<listen addr>/
//! ```
//!
//! It serves `bench.default.localhost` → revision `bench-1` → the backend, prints
//! `listening on <addr>`, and stops after `seconds` (default 30) or at end of standard input.

use std::net::SocketAddr;
use std::time::Duration;

use nimbus_api::networking::{Ingress, IngressRule, IngressSplit};
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(backend, &listen, Duration::from_secs(seconds)))
}

async fn serve(backend: SocketAddr, listen: &str, lifetime: Duration) -> std::io::Result<()> {
    let endpoints = EndpointRegistry::new();
    let revision = RevisionKey::new("default", "bench-1");
    endpoints.set(
        &revision,
        RevisionEndpoints {
            ready: vec![Endpoint {
                id: "bench-1-0".into(),
                addr: backend,
                protocol: Protocol::Http1,
            }],
            failure: None,
        },
    );
    let router = Router::new(endpoints, RouterConfig::default());
    router.apply(Ingress {
        namespace: "default".into(),
        name: "bench".into(),
        rules: vec![IngressRule {
            hosts: vec!["bench.default.localhost".into()],
            splits: vec![IngressSplit {
                revision: "bench-1".into(),
                percent: 100,
                timeout: Duration::from_secs(300),
                container_concurrency: 0,
            }],
        }],
    });
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    router.serve(listener, tokio::time::sleep(lifetime)).await
}
