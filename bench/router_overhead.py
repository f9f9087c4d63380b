#!/usr/bin/env python3
"""Router overhead vs nginx: the cost of Nimbus's router hop, against nginx doing the same hop.

Three paths to ONE backend process (the instance Nimbus runs for service `bench`):

    direct:  wrk ─────────────────────────────► nimbus-hello instance (127.0.0.1:P)
    nimbus:  wrk ──► nimbus router (Host: bench.default.localhost) ──► same instance
    nginx:   wrk ──► nginx (1 worker, keepalive upstream) ───────────► same instance

Two load shapes, run in alternating rounds with the path order rotated each round and a wait
for idle CPUs before every run: saturation (`wrk -t2 -c50`: on 2 cores this measures CPU cost
per request) and one connection (`wrk -t1 -c1`: added latency). Prints medians and same-run
ratios; writes every run to JSON with --json. Installs nothing; stops everything it started.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchlib import cpu, nginx, nimbus, report, wrk
from benchlib.procs import (BenchError, Interrupted, Pid, Processes, cpu_seconds, descendants, free_port,
                            http_get, install_signal_handlers, wait_http_ok)

REPO = Path(__file__).resolve().parent.parent
INSTALL_HINT = "apt-get install -y wrk nginx-light"


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", "3")),
                   help="rounds per load shape (env BENCH_ROUNDS)")
    p.add_argument("--duration", type=int, default=int(env("BENCH_DURATION", "10")),
                   help="whole seconds per saturation run (env BENCH_DURATION; wrk takes whole seconds)")
    p.add_argument("--latency-duration", type=int, default=None,
                   help="whole seconds per one-connection run (default: --duration)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads for saturation")
    p.add_argument("--connections", type=int, default=50, help="wrk connections for saturation")
    p.add_argument("--warmup", type=int, default=2, help="whole seconds of unrecorded load per path first")
    p.add_argument("--idle-threshold", type=float, default=0.90, help="required idle CPU fraction")
    p.add_argument("--quiet-max-wait", type=float, default=5.0, help="give up waiting for idle after s")
    p.add_argument("--bin-dir", type=Path, default=default_bin_dir(),
                   help="where nimbus and nimbus-hello are (release build)")
    p.add_argument("--redo-disturbed", type=int, default=2,
                   help="extra tries for a run during which other programs used >10%% of the CPUs")
    p.add_argument("--json", type=Path, help="write all runs and the summary here")
    p.add_argument("--keep-dir", action="store_true", help="keep the temp dir (configs, logs)")
    return p.parse_args()


def default_bin_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    return (Path(target) if target else REPO / "target") / "release"


def check_tools(bin_dir: Path) -> tuple[Path, Path]:
    missing = [t for t in ("wrk", "nginx") if shutil.which(t) is None]
    if missing:
        raise BenchError(f"missing {' and '.join(missing)}; install with:\n    {INSTALL_HINT}")
    bins = bin_dir / "nimbus", bin_dir / "nimbus-hello"
    for b in bins:
        if not os.access(b, os.X_OK):
            raise BenchError(f"{b} not found; build with:\n    cargo build --release -p nimbus -p nimbus-hello"
                             " (and pass --bin-dir, or set CARGO_TARGET_DIR)")
    return bins


# === Setup: one instance, three ways in ===


@dataclass(frozen=True)
class Testbed:
    """Everything running for the measurement: three ways into one backend instance."""

    nimbus: nimbus.Nimbus
    instance: nimbus.Instance
    addrs: dict[str, str]  # path name → host:port wrk connects to
    proxies: dict[str, list[Pid]]  # path name → processes whose CPU counts as the proxy's
    wrk_hook: Path


def setup(procs: Processes, dir: Path, nimbus_bin: Path, hello_bin: Path) -> Testbed:
    n = nimbus.start(procs, nimbus_bin, dir)
    instance = nimbus.deploy(procs, nimbus_bin, n, hello_bin, dir)
    nginx_port = free_port()
    ngx = nginx.start(procs, dir / "nginx", nginx_port, instance.port)
    urls = {
        "direct": f"127.0.0.1:{instance.port}",
        "nimbus": n.router_addr,
        "nginx": f"127.0.0.1:{nginx_port}",
    }
    wait_http_ok(urls["nginx"], nimbus.HOST, "nginx", 10, ngx)
    check_same_answer(urls, instance)
    proxies = {
        "direct": [],
        "nimbus": [Pid.of(n.child.popen.pid)],
        "nginx": [Pid.of(ngx.popen.pid), *descendants(ngx.popen.pid)],
    }
    return Testbed(n, instance, urls, proxies, wrk.write_hook(dir))


def check_same_answer(addrs: dict[str, str], instance: nimbus.Instance) -> None:
    """Every path must reach the same revision; both proxies must deliver the same body.

    The direct body is shorter: the backend echoes request headers and only the proxies add
    `Forwarded`/`X-Forwarded-*`."""
    sizes = {}
    for path, addr in addrs.items():
        status, body = http_get(addr, "/", nimbus.HOST)
        if status != 200 or f"revision: {instance.revision}".encode() not in body:
            raise BenchError(f"{path} ({addr}) answered {status} without revision {instance.revision}: {body!r}")
        sizes[path] = len(body)
    if sizes["nimbus"] != sizes["nginx"]:
        print(f"note: the proxies' bodies differ in size: {sizes}", file=sys.stderr)


# === Measurement ===


def measure(procs: Processes, args, loads: list[wrk.Load], bed: Testbed) -> list[report.Run]:
    runs = []
    for load in loads:
        for rnd in range(args.rounds):
            order = report.PATHS[rnd % 3:] + report.PATHS[:rnd % 3]
            runs += [measure_path(procs, args, load, path, rnd + 1, bed) for path in order]
            nimbus.check_same_instance(procs, bed.nimbus, bed.instance)
    return runs


def measure_path(procs: Processes, args, load: wrk.Load, path: str, rnd: int, bed: Testbed) -> report.Run:
    """One recorded run: wait for quiet, measure; redo it (up to --redo-disturbed times) when
    other programs took more than 10% of the CPUs meanwhile, keeping the least disturbed try."""
    tries = []
    for attempt in range(1 + args.redo_disturbed):
        quiet = cpu.wait_for_quiet(args.idle_threshold, 0.5, args.quiet_max_wait)
        tries.append(report.Run(load, path, rnd, quiet, *measure_one(procs, load, path, bed),
                                attempt=attempt + 1))
        progress(tries[-1])
        if not tries[-1].disturbed():
            break
    return min(tries, key=lambda r: r.other_cpu_s)


def measure_one(procs: Processes, load: wrk.Load, path: str, bed: Testbed):
    """One wrk run, with the CPU time of the proxy, the backend and everything else meanwhile."""
    def sample():
        return (cpu_seconds(bed.proxies[path]), cpu_seconds([bed.instance.pid]),
                cpu.children_cpu_seconds(), cpu.busy_seconds())

    before = sample()
    result = wrk.run(procs, load, f"http://{bed.addrs[path]}/", nimbus.HOST, bed.wrk_hook)
    proxy_s, backend_s, wrk_s, busy_s = (a - b for a, b in zip(sample(), before))
    return result, proxy_s, backend_s, busy_s - proxy_s - backend_s - wrk_s


def warm_up(procs: Processes, args, bed: Testbed) -> None:
    if args.warmup <= 0:
        return
    load = wrk.Load("warmup", args.threads, args.connections, args.warmup)
    for path in report.PATHS:
        wrk.run(procs, load, f"http://{bed.addrs[path]}/", nimbus.HOST, bed.wrk_hook)


def progress(run: report.Run) -> None:
    load, rnd, path, quiet, r, other_s = run.load, run.round, run.path, run.quiet, run.result, run.other_cpu_s
    flag = ("" if quiet.reached else "  (not quiet)") + ("  (disturbed)" if run.disturbed() else "")
    print(f"  [{load.name} round {rnd}] {path:<7} {r.rps:>9.0f} req/s  p50 {report.us(r.p50_us):>9}"
          f"  p99 {report.us(r.p99_us):>9}  idle before {quiet.idle:.0%}{flag}"
          f"  other CPU {other_s:.2f}s", file=sys.stderr)


# === Output ===


def environment(nimbus_bin: Path) -> dict:
    def out(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=5)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None
    return {
        "nimbus_commit": out(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        "nimbus_tree_dirty": bool(out(["git", "-C", str(REPO), "status", "--porcelain"])),
        "nimbus_bin": str(nimbus_bin),
        "nginx": out(["nginx", "-v"]),
        "wrk": out(["wrk", "-v"]),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, args, env, instance, loads, runs, summaries) -> None:
    doc = {
        "benchmark": "router-overhead-vs-nginx",
        "command": " ".join([sys.executable, *sys.argv]),
        "environment": env,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "backend": {"pid": instance.pid.pid, "port": instance.port, "revision": instance.revision},
        "loads": {l.name: asdict(l) | {"wrk": l.describe()} for l in loads},
        "summary": {name: {"paths": {p: asdict(s) for p, s in summ.items()},
                           "ratios": asdict(report.ratios(summ))}
                    for name, summ in summaries.items()},
        "runs": [{"load": r.load.name, "path": r.path, "round": r.round, "quiet": asdict(r.quiet),
                  "proxy_cpu_s": r.proxy_cpu_s, "backend_cpu_s": r.backend_cpu_s,
                  "other_cpu_s": r.other_cpu_s, "disturbed": r.disturbed(), "attempt": r.attempt,
                  "result": r.result.to_json()} for r in runs],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main() -> int:
    args = parse_args()
    install_signal_handlers()
    nimbus_bin, hello_bin = check_tools(args.bin_dir)
    loads = [
        wrk.Load("saturation", args.threads, args.connections, args.duration),
        wrk.Load("one-connection", 1, 1, args.latency_duration or args.duration),
    ]
    dir = Path(tempfile.mkdtemp(prefix="nimbus-bench-"))
    try:
        with Processes() as procs:
            bed = setup(procs, dir, nimbus_bin, hello_bin)
            instance = bed.instance
            print(f"backend: instance pid {instance.pid.pid}, port {instance.port} "
                  f"(revision {instance.revision}); nimbus router {bed.addrs['nimbus']}; "
                  f"nginx {bed.addrs['nginx']}", file=sys.stderr)
            warm_up(procs, args, bed)
            runs = measure(procs, args, loads, bed)
        summaries = {l.name: report.summarize([r for r in runs if r.load == l]) for l in loads}
        print()
        for l in loads:
            print(report.table(l, args.rounds, summaries[l.name], report.ratios(summaries[l.name])))
            print()
        if args.json:
            write_json(args.json, args, environment(nimbus_bin), instance, loads, runs, summaries)
            print(f"wrote {args.json}")
        return 0
    finally:
        if args.keep_dir:
            print(f"kept {dir}", file=sys.stderr)
        else:
            shutil.rmtree(dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"router_overhead: {e}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"router_overhead: interrupted ({str(e) or 'Ctrl-C'}); stopped everything it started",
              file=sys.stderr)
        sys.exit(130)
