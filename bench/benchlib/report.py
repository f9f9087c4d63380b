"""Medians, ratios and the printed table. Pure functions over the measured runs."""

from __future__ import annotations

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


@dataclass(frozen=True)
class PathSummary:
    rps: float
    rps_min: float
    rps_max: float
    p50_us: float
    p99_us: float
    bytes_per_response: float
    errors: int
    not_quiet: int


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
            errors=sum(r.result.error_count for r in mine),
            not_quiet=sum(not r.quiet.reached for r in mine),
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
    )


# === Formatting ===


def us(v: float) -> str:
    return f"{v / 1000:.2f} ms" if abs(v) >= 10_000 else f"{v:.0f} µs"


def table(load: Load, rounds: int, s: dict[str, PathSummary], r: Ratios) -> str:
    lines = [
        f"{load.name}: {load.describe()}  (median of {rounds} rounds)",
        f"  {'path':<8}{'req/s':>10}{'(min–max)':>20}{'p50':>11}{'p99':>11}{'B/resp':>8}{'errors':>8}",
    ]
    for path, p in s.items():
        spread = f"{p.rps_min:.0f}–{p.rps_max:.0f}"
        lines.append(f"  {path:<8}{p.rps:>10.0f}{spread:>20}{us(p.p50_us):>11}{us(p.p99_us):>11}"
                     f"{p.bytes_per_response:>8.0f}{p.errors:>8}")
    ratio = "n/a" if r.added_p50_nimbus_over_nginx is None else f"{r.added_p50_nimbus_over_nginx:.2f}×"
    lines += [
        f"  throughput  nimbus/nginx = {r.nimbus_over_nginx_rps:.2f}×   "
        f"nimbus/direct = {r.nimbus_over_direct_rps:.2f}×   nginx/direct = {r.nginx_over_direct_rps:.2f}×",
        f"  added p50   nimbus {r.nimbus_added_p50_us:+.0f} µs   nginx {r.nginx_added_p50_us:+.0f} µs"
        f"   nimbus/nginx = {ratio}",
        f"  added p99   nimbus {r.nimbus_added_p99_us:+.0f} µs   nginx {r.nginx_added_p99_us:+.0f} µs",
    ]
    noisy = sum(p.not_quiet for p in s.values())
    if noisy:
        lines.append(f"  note: {noisy} run(s) started without reaching the idle threshold (see JSON)")
    errors = sum(p.errors for p in s.values())
    if errors:
        lines.append(f"  WARNING: {errors} wrk errors (connect/read/write/timeout/non-2xx); see JSON")
    return "\n".join(lines)
