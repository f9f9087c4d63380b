"""Medians, ratios and the printed table. Pure functions over the measured runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from statistics import median

from .cpu import Quiet
from .wrk import Load, WrkResult

PATHS = ("direct", "nimbus", "nginx")


@dataclass(frozen=True)
class Run:
    load: Load
    path: str
    round: int
    quiet: Quiet
    result: WrkResult
    proxy_cpu_s: float
    backend_cpu_s: float
    # Machine busy time during the run minus wrk, proxy and backend: load from outside.
    other_cpu_s: float
    attempt: int = 1  # >1 when earlier tries were disturbed and redone

    def disturbed(self) -> bool:
        """More than 10% of the machine's CPU went to other programs during the run."""
        return self.other_cpu_s > 0.10 * self.load.duration_s * (os.cpu_count() or 1)

    def cpu_us_per_request(self, seconds: float) -> float:
        return seconds * 1e6 / max(1, self.result.requests)


@dataclass(frozen=True)
class PathSummary:
    rps: float
    rps_min: float
    rps_max: float
    p50_us: float
    p99_us: float
    bytes_per_response: float
    proxy_cpu_us: float
    backend_cpu_us: float
    errors: int
    not_quiet: int
    disturbed: int


@dataclass(frozen=True)
class Ratios:
    nimbus_over_nginx_rps: float
    nimbus_over_direct_rps: float
    nginx_over_direct_rps: float
    nimbus_added_p50_us: float
    nginx_added_p50_us: float
    added_p50_nimbus_over_nginx: float | None
    nimbus_added_p99_us: float
    nginx_added_p99_us: float
    proxy_cpu_nimbus_over_nginx: float | None


def summarize(runs: list[Run]) -> dict[str, PathSummary]:
    out = {}
    for path in PATHS:
        mine = [r for r in runs if r.path == path]
        if not mine:
            continue
        rps = [r.result.rps for r in mine]
        out[path] = PathSummary(
            rps=median(rps), rps_min=min(rps), rps_max=max(rps),
            p50_us=median(r.result.p50_us for r in mine),
            p99_us=median(r.result.p99_us for r in mine),
            bytes_per_response=median(r.result.bytes / max(1, r.result.requests) for r in mine),
            proxy_cpu_us=median(r.cpu_us_per_request(r.proxy_cpu_s) for r in mine),
            backend_cpu_us=median(r.cpu_us_per_request(r.backend_cpu_s) for r in mine),
            errors=sum(r.result.error_count for r in mine),
            not_quiet=sum(not r.quiet.reached for r in mine),
            disturbed=sum(r.disturbed() for r in mine),
        )
    return out


def ratios(s: dict[str, PathSummary]) -> Ratios:
    d, n, x = s["direct"], s["nimbus"], s["nginx"]
    added_n, added_x = n.p50_us - d.p50_us, x.p50_us - d.p50_us
    return Ratios(
        nimbus_over_nginx_rps=n.rps / x.rps,
        nimbus_over_direct_rps=n.rps / d.rps,
        nginx_over_direct_rps=x.rps / d.rps,
        nimbus_added_p50_us=added_n,
        nginx_added_p50_us=added_x,
        added_p50_nimbus_over_nginx=added_n / added_x if added_x > 0 else None,
        nimbus_added_p99_us=n.p99_us - d.p99_us,
        nginx_added_p99_us=x.p99_us - d.p99_us,
        proxy_cpu_nimbus_over_nginx=n.proxy_cpu_us / x.proxy_cpu_us if x.proxy_cpu_us > 0 else None,
    )


# === Formatting ===


def us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if abs(v) >= 10_000 else f"{v:.0f} µs"


def ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def table(load: Load, rounds: int, s: dict[str, PathSummary], r: Ratios) -> str:
    lines = [
        f"{load.name}: {load.describe()}  (median of {rounds} rounds)",
        f"  {'path':<8}{'req/s':>10}{'(min–max)':>20}{'p50':>11}{'p99':>11}"
        f"{'proxy CPU':>11}{'backend CPU':>13}{'B/resp':>8}{'errors':>8}",
    ]
    for path, p in s.items():
        spread = f"{p.rps_min:.0f}–{p.rps_max:.0f}"
        lines.append(f"  {path:<8}{p.rps:>10.0f}{spread:>20}{us(p.p50_us):>11}{us(p.p99_us):>11}"
                     f"{p.proxy_cpu_us:>8.1f} µs{p.backend_cpu_us:>10.1f} µs"
                     f"{p.bytes_per_response:>8.0f}{p.errors:>8}")
    ratio = ratio_text(r.added_p50_nimbus_over_nginx)
    lines += [
        f"  throughput  nimbus/nginx = {r.nimbus_over_nginx_rps:.2f}×   "
        f"nimbus/direct = {r.nimbus_over_direct_rps:.2f}×   nginx/direct = {r.nginx_over_direct_rps:.2f}×",
        f"  added p50   nimbus {r.nimbus_added_p50_us:+.0f} µs   nginx {r.nginx_added_p50_us:+.0f} µs"
        f"   nimbus/nginx = {ratio}",
        f"  added p99   nimbus {r.nimbus_added_p99_us:+.0f} µs   nginx {r.nginx_added_p99_us:+.0f} µs",
        f"  proxy CPU per request  nimbus/nginx = {ratio_text(r.proxy_cpu_nimbus_over_nginx)}"
        "   (least affected by other load on the machine)",
    ]
    lines.append("  (p50/p99: wrk latency; CPU: user+system time per request of the proxy process(es)"
                 " and of the backend, from /proc)")
    noisy = sum(p.not_quiet for p in s.values())
    if noisy:
        lines.append(f"  note: {noisy} run(s) started without reaching the idle threshold (see JSON)")
    disturbed = sum(p.disturbed for p in s.values())
    if disturbed:
        lines.append(f"  note: during {disturbed} run(s) other programs used >10% of the CPUs (see JSON)")
    errors = sum(p.errors for p in s.values())
    if errors:
        lines.append(f"  WARNING: {errors} wrk errors (connect/read/write/timeout/non-2xx); see JSON")
    return "\n".join(lines)
