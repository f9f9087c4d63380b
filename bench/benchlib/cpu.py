"""Wait until the machine's CPUs are mostly idle, from /proc/stat, before a measurement."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Quiet:
    """Outcome of one wait: the last idle fraction seen and whether it met the threshold."""

    idle: float
    reached: bool
    waited_s: float


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies over all CPUs; iowait counts as idle."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already included in user/nice; count only the first 8 fields.
    return idle, sum(fields[:8])


def busy_seconds() -> float:
    """CPU seconds spent busy so far, summed over all CPUs (for "what else ran meanwhile")."""
    idle, total = _cpu_times()
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds used by this program's reaped children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def idle_fraction(window_s: float) -> float:
    idle0, total0 = _cpu_times()
    time.sleep(window_s)
    idle1, total1 = _cpu_times()
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(threshold: float, window_s: float, max_wait_s: float) -> Quiet:
    """Sample idle over `window_s` until it is >= `threshold`, for at most `max_wait_s`."""
    start = time.monotonic()
    while True:
        idle = idle_fraction(window_s)
        waited = time.monotonic() - start
        if idle >= threshold:
            return Quiet(idle, True, waited)
        if waited >= max_wait_s:
            return Quiet(idle, False, waited)
