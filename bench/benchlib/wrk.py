"""Drive `wrk` and read its results exactly, through a `done()` Lua hook that prints JSON.

wrk's `--latency` text rounds to two decimals in mixed units; the hook reads the same
histogram (`latency:percentile(p)`, microseconds) without rounding.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .procs import BenchError, Processes

MARKER = "BENCH_WRK_JSON "

DONE_HOOK = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"p999_us":%.1f,"mean_us":%.1f,"max_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    "MARKER", summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
""".replace("MARKER", MARKER)


@dataclass(frozen=True)
class Load:
    """One load shape: wrk threads, connections and duration."""

    name: str
    threads: int
    connections: int
    duration_s: int

    def describe(self) -> str:
        return f"wrk -t{self.threads} -c{self.connections} -d{self.duration_s}s"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_us: int
    bytes: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    max_us: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict:
        return asdict(self) | {"rps": self.rps}


def write_hook(dir: Path) -> Path:
    path = dir / "wrk-done.lua"
    path.write_text(DONE_HOOK)
    return path


def command(load: Load, url: str, host: str, hook: Path) -> list[str]:
    return [
        "wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{load.duration_s}s",
        "--latency", "-H", f"Host: {host}", "-s", str(hook), url,
    ]


def run(procs: Processes, load: Load, url: str, host: str, hook: Path) -> WrkResult:
    out = procs.run("wrk", command(load, url, host, hook), timeout_s=load.duration_s + 30)
    for line in out.splitlines():
        if line.startswith(MARKER):
            return WrkResult(**json.loads(line[len(MARKER):]))
    raise BenchError(f"wrk printed no result line for {url}:\n{out}")
