#!/usr/bin/env python3
"""Nimbus serving the hello-wasm component through its router vs `wasmtime serve` of the same
wasmtime release, same component, same load tool, in the same run.

Paths measured (alternating A B, rounds):
  wasmtime   wasmtime serve -Scli (one instantiation per request, its default for WASIp2)
  nimbus     Nimbus's router → the wasm runtime's instance, called in-process (what users hit)

Load shapes: saturation (wrk -t2 -c50) for requests/s, one connection (wrk -t1 -c1) for p50/p99.

Cold start, medians over --cold-runs:
  nimbus zero → first byte   the service scaled to zero by the autoscaler, then one request
                             through the router on a new connection (includes the activator,
                             the autoscaler's decision and the instance start; the component
                             is already compiled)
  wasmtime spawn → first byte  `wasmtime serve` of the precompiled component started, polled
                             until its first response (the floor a process-per-function
                             platform pays)

Usage (see bench/wasm/README.md):
  python3 bench/wasm/wasm_vs_wasmtime.py --wasmtime ~/.local/wasmtime/bin/wasmtime --bin-dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import cpu, nimbus, wrk  # noqa: E402
from benchlib.procs import BenchError, Processes, free_port, wait_http_ok  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "hello-wasm"
HOST = f"{SERVICE}.default.localhost"
COLD = "cold-wasm"
COLD_HOST = f"{COLD}.default.localhost"

SERVICE_YAML = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    metadata:
      annotations:
{annotations}
    spec:
      runtimeClassName: wasm
      containers:
        - image: file://{image}
          env:
            - name: TARGET
              value: Bench
"""
PINNED = {"autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "1"}
TO_ZERO = {"autoscaling.knative.dev/window": "6s", "nimbus.dev/scale-to-zero-grace-period": "0s"}


def build_component(target_dir: Path) -> Path:
    subprocess.run(["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip2",
                    "--manifest-path", str(ROOT / "examples/hello-wasm/Cargo.toml"),
                    "--target-dir", str(target_dir)], check=True)
    return target_dir / "wasm32-wasip2/release/hello_wasm.wasm"


def apply(procs: Processes, bin: Path, api: str, dir: Path, name: str, image: Path,
          annotations: dict[str, str]) -> None:
    lines = "\n".join(f'        {k}: "{v}"' for k, v in annotations.items())
    manifest = dir / f"{name}.yaml"
    manifest.write_text(SERVICE_YAML.format(name=name, image=image, annotations=lines))
    # --data-dir lets the CLI find the admin token of this loopback server.
    procs.run("nimbus apply", [str(bin), "apply", "--server", f"http://{api}",
                               "--data-dir", str(dir / "nimbus-data"), "-f", str(manifest)],
              timeout_s=30)


def start_wasmtime(procs: Processes, wasmtime: Path, component: Path, port: int, log: Path,
                   precompiled: bool = False):
    argv = [str(wasmtime), "serve", "-Scli", "--env", "TARGET=Bench", "--addr", f"127.0.0.1:{port}"]
    if precompiled:
        argv.append("--allow-precompiled")
    return procs.start("wasmtime serve", argv + [str(component)], log)


def first_byte_s(addr: str, host: str, timeout_s: float = 30) -> float:
    """Seconds from connect to the first response byte of `GET /` on a new connection."""
    hostname, port = addr.rsplit(":", 1)
    started = time.perf_counter()
    with socket.create_connection((hostname, int(port)), timeout=timeout_s) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(1)
        elapsed = time.perf_counter() - started
        rest = first + s.recv(65536)
    if not rest.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"cold request to {addr} answered {rest[:80]!r}")
    return elapsed


def ready_replicas(api: str, service: str, dir: Path) -> int:
    url = f"http://{api}/apis/serving.knative.dev/v1/namespaces/default/revisions"
    token = (dir / "nimbus-data" / "admin.token").read_text().strip()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        items = json.load(r).get("items", [])
    return sum((i.get("status") or {}).get("actualReplicas") or 0 for i in items
               if (i["metadata"].get("labels") or {}).get("serving.knative.dev/service") == service)


def wait_zero(api: str, service: str, dir: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while ready_replicas(api, service, dir) > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"{service} did not scale to zero within {timeout_s:.0f}s")
        time.sleep(0.2)
    time.sleep(0.5)  # the status is written right after the runtime stopped the instance


def measure(procs, load, urls, hook, args, runs):
    for round_no in range(args.rounds):
        for path, (url, host) in urls.items():
            quiet = cpu.wait_for_quiet(args.idle_threshold, 1.0, args.quiet_max_wait)
            result = wrk.run(procs, load, url, host, hook)
            runs.append({"load": load.name, "path": path, "round": round_no,
                         "quiet": quiet.reached, "idle": round(quiet.idle, 3)} | result.to_json())
            print(f"  {load.name:10} {path:9} round {round_no}: {result.rps:9.0f} req/s  "
                  f"p50 {result.p50_us:7.0f} µs  p99 {result.p99_us:7.0f} µs  "
                  f"errors {result.error_count}{'' if quiet.reached else '  (CPU busy)'}",
                  flush=True)


def median_of(runs, load, path, key):
    values = [r[key] for r in runs if r["load"] == load and r["path"] == path]
    return statistics.median(values) if values else float("nan")


def report(runs, cold, paths):
    print("\n| load | path | req/s | p50 µs | p99 µs | req/s ÷ wasmtime | p50 ÷ wasmtime | p99 ÷ wasmtime |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for load in sorted({r["load"] for r in runs}):
        base = {k: median_of(runs, load, "wasmtime", k) for k in ("rps", "p50_us", "p99_us")}
        for path in paths:
            m = {k: median_of(runs, load, path, k) for k in ("rps", "p50_us", "p99_us")}
            ratio = " | ".join(f"{m[k] / base[k]:.2f}" if base[k] == base[k] else "—"
                               for k in ("rps", "p50_us", "p99_us"))
            print(f"| {load} | {path} | {m['rps']:.0f} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | "
                  f"{ratio} |")
    if cold:
        print("\n| cold start (median of runs) | ms | ÷ wasmtime spawn |")
        print("|---|---:|---:|")
        floor = statistics.median(cold["wasmtime_spawn"]) if cold.get("wasmtime_spawn") else None
        for name, values in cold.items():
            med = statistics.median(values) * 1e3
            ratio = f"{med / (floor * 1e3):.3f}" if floor else "—"
            print(f"| {name} (n={len(values)}) | {med:.3f} | {ratio} |")


def cold_starts(procs, args, bin, api, router, dir, image, wasmtime):
    cold: dict[str, list[float]] = {"nimbus_zero_to_first_byte": [], "nimbus_warm_new_connection": []}
    apply(procs, bin, api, dir, COLD, image, TO_ZERO)
    wait_http_ok(router, COLD_HOST, "the cold service", 120)
    for i in range(args.cold_runs):
        wait_zero(api, COLD, dir)
        cold["nimbus_zero_to_first_byte"].append(first_byte_s(router, COLD_HOST))
        cold["nimbus_warm_new_connection"].append(first_byte_s(router, COLD_HOST))
        print(f"  cold {i}: zero → first byte {cold['nimbus_zero_to_first_byte'][-1] * 1e3:.3f} ms",
              flush=True)
    if wasmtime:
        cwasm = dir / "hello.cwasm"
        procs.run("wasmtime compile", [str(wasmtime), "compile", str(image), "-o", str(cwasm)], 120)
        cold["wasmtime_spawn"] = []
        for i in range(args.cold_runs):
            port = free_port()
            started = time.perf_counter()
            child = start_wasmtime(procs, wasmtime, cwasm, port, dir / "wasmtime-cold.log", True)
            while True:
                try:
                    first_byte_s(f"127.0.0.1:{port}", "x", 5)
                    break
                except (ConnectionRefusedError, OSError):
                    if child.popen.poll() is not None:
                        raise BenchError("wasmtime serve exited; see wasmtime-cold.log")
                    time.sleep(0.0005)
            cold["wasmtime_spawn"].append(time.perf_counter() - started)
            child.popen.terminate()
            child.popen.wait(10)
    return cold


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wasmtime", type=Path, default=Path.home() / ".local/wasmtime/bin/wasmtime")
    p.add_argument("--bin-dir", type=Path,
                   default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--cold-runs", type=int, default=20)
    p.add_argument("--idle-threshold", type=float, default=0.9)
    p.add_argument("--quiet-max-wait", type=float, default=5)
    p.add_argument("--no-peer", action="store_true",
                   help="measure Nimbus only (no wasmtime serve; ratios are left blank)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    bin = args.bin_dir / "nimbus"
    for tool, path in (("wrk", shutil.which("wrk")), ("nimbus", bin if bin.exists() else None),
                       ("wasmtime", args.wasmtime if args.no_peer or args.wasmtime.exists() else None)):
        if path is None:
            print(f"missing {tool}: install wrk with `apt-get install -y wrk`, build nimbus with "
                  "`cargo build --release -p nimbus`, wasmtime with `cargo install wasmtime-cli "
                  "--version 48.0.8 --locked --root ~/.local/wasmtime`", file=sys.stderr)
            return 2
    dir = Path(tempfile.mkdtemp(prefix="bench-wasm-"))
    with Processes() as procs:
        image = build_component(dir / "guest")
        hook = wrk.write_hook(dir)
        urls: dict[str, tuple[str, str]] = {}
        if not args.no_peer:
            port = free_port()
            start_wasmtime(procs, args.wasmtime, image, port, dir / "wasmtime.log")
            wait_http_ok(f"127.0.0.1:{port}", "x", "wasmtime serve", 60)
            urls["wasmtime"] = (f"http://127.0.0.1:{port}/", "x")
        n = nimbus.start(procs, bin, dir)
        apply(procs, bin, n.api_addr, dir, SERVICE, image, PINNED)
        wait_http_ok(n.router_addr, HOST, "the wasm service through the router", 120, n.child)
        urls["nimbus"] = (f"http://{n.router_addr}/", HOST)
        runs: list[dict] = []
        for load in (wrk.Load("saturation", 2, 50, args.duration),
                     wrk.Load("one-conn", 1, 1, args.duration)):
            measure(procs, load, urls, hook, args, runs)
        peer = None if args.no_peer else args.wasmtime
        cold = cold_starts(procs, args, bin, n.api_addr, n.router_addr, dir, image, peer) \
            if args.cold_runs else {}
    report(runs, cold, list(urls))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "cold": cold, "args": vars(args)}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
