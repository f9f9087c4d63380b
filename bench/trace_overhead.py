#!/usr/bin/env python3
"""Tracing's cost on the router: wrk through `nimbus serve` with tracing off, on with sampling
ratio 0 (every request sampled out), and on with ratio 1 (every request's spans exported to a
local OTLP sink), optionally against another nimbus binary (e.g. main's, `--baseline`).

Every variant runs its own `nimbus serve` with one pinned `nimbus-hello` instance; all are
started first, then measured in alternating rounds (the order rotated each round) after a wait
for idle CPUs. Prints medians of throughput, latency and the router's CPU time per request
(user + system time of the `nimbus serve` process, which does not count the instance: the
figure that holds when other programs share the CPUs), each as a ratio to "off". See
bench/README.md.
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from benchlib import cpu, nimbus, wrk
from benchlib.procs import BenchError, Interrupted, Pid, Processes, cpu_seconds, install_signal_handlers


class Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts and drops every export (the collector's cost is not
    the router's)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def parse_args() -> argparse.Namespace:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path(__file__).resolve().parent.parent / "target"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="whole seconds per wrk run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--connections", type=int, default=10)
    p.add_argument("--bin-dir", type=Path, default=target / "release",
                   help="where nimbus and nimbus-hello are")
    p.add_argument("--baseline", type=Path, help="another nimbus binary to measure (tracing off)")
    p.add_argument("--idle-threshold", type=float, default=0.90)
    p.add_argument("--quiet-max-wait", type=float, default=5.0)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    install_signal_handlers()
    bin, hello = args.bin_dir / "nimbus", args.bin_dir / "nimbus-hello"
    for needed in (bin, hello, *([args.baseline] if args.baseline else [])):
        if not needed.exists():
            raise BenchError(f"{needed} is missing (cargo build -p nimbus -p nimbus-hello)")
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{sink.server_address[1]}"
    variants = {"off": (bin, ()),
                "ratio 0": (bin, ("--otlp-endpoint", otlp, "--trace-sampling-ratio", "0")),
                "ratio 1": (bin, ("--otlp-endpoint", otlp, "--trace-sampling-ratio", "1"))}
    if args.baseline:
        variants = {"baseline": (args.baseline, ())} | variants
    load = wrk.Load("saturation", args.threads, args.connections, args.duration)
    rps: dict[str, list[float]] = {name: [] for name in variants}
    p50: dict[str, list[float]] = {name: [] for name in variants}
    cpu_us: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="nimbus-trace-bench-") as tmp, Processes() as procs:
        hook = wrk.write_hook(Path(tmp))
        servers = {}
        for name, (binary, extra) in variants.items():
            dir = Path(tmp) / name.replace(" ", "-")
            dir.mkdir()
            server = nimbus.start(procs, binary, dir, extra=extra)
            nimbus.deploy(procs, binary, server, hello, dir)
            servers[name] = server
        names = list(variants)
        for round in range(args.rounds):
            for name in names[round % len(names):] + names[:round % len(names)]:
                cpu.wait_for_quiet(args.idle_threshold, 1.0, args.quiet_max_wait)
                router = [Pid.of(servers[name].child.popen.pid)]
                before = cpu_seconds(router)
                result = wrk.run(procs, load, f"http://{servers[name].router_addr}/", nimbus.HOST, hook)
                used = cpu_seconds(router) - before
                if result.error_count:
                    raise BenchError(f"{name}: wrk saw errors {result.errors}")
                rps[name].append(result.rps)
                p50[name].append(result.p50_us)
                cpu_us[name].append(used * 1e6 / max(result.requests, 1))
                print(f"round {round + 1} {name:>8}: {result.rps:9.0f} req/s  p50 {result.p50_us:7.0f} µs"
                      f"  router CPU {cpu_us[name][-1]:6.1f} µs/req", file=sys.stderr)
    med = {name: (statistics.median(rps[name]), statistics.median(p50[name]),
                  statistics.median(cpu_us[name])) for name in variants}
    off = med["off"]
    print(f"\n{load.describe()}, {args.rounds} rounds, medians; binaries from {args.bin_dir}")
    print(f"{'variant':>9} {'req/s':>9} {'vs off':>7} {'p50 µs':>8} {'CPU µs/req':>11} {'vs off':>7}")
    for name, (r, p, c) in med.items():
        print(f"{name:>9} {r:9.0f} {r / off[0]:7.3f} {p:8.0f} {c:11.1f} {c / off[2]:7.3f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted:
        sys.exit(130)
