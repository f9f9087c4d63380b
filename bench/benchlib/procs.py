"""Child processes of a benchmark run, and the guarantee that every one of them is stopped.

Every process is started in its own session, so it never receives the terminal's Ctrl-C
directly and its whole process group can be signalled by id. `Processes` stops them in reverse
start order on exit, on an exception and on SIGINT/SIGTERM/SIGHUP (turned into exceptions by
`install_signal_handlers`). Processes that a child spawned itself (Nimbus's instances) are
recorded with `adopt_descendants` and killed by pid if the child did not stop them.
Never kills anything by name.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_S = 5.0


class BenchError(Exception):
    """A setup or measurement step failed; the message says which and why."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived; raised so that cleanup runs like on Ctrl-C."""


def install_signal_handlers() -> None:
    """Make SIGINT, SIGTERM and SIGHUP unwind the stack (running every `finally`)."""

    def raise_interrupted(signum: int, _frame: object) -> None:
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_interrupted)
    signal.signal(signal.SIGHUP, raise_interrupted)


# === Process identity (pid + start time, so a reused pid is never signalled) ===


@dataclass(frozen=True)
class Pid:
    pid: int
    start_ticks: int

    @staticmethod
    def of(pid: int) -> Pid | None:
        stat = _stat_fields(pid)
        return None if stat is None else Pid(pid, int(stat[19]))

    def alive(self) -> bool:
        stat = _stat_fields(self.pid)
        return stat is not None and int(stat[19]) == self.start_ticks and stat[0] != "Z"

    def kill(self) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1], starttime [19])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pids: list[Pid]) -> float:
    """User + system CPU time used so far by `pids` (all threads), in seconds."""
    ticks = 0
    for p in pids:
        stat = _stat_fields(p.pid)
        if stat is not None and p.alive():
            ticks += int(stat[11]) + int(stat[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[Pid]:
    """Every live process below `pid` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat_fields(int(entry.name))
            if stat is not None:
                children.setdefault(int(stat[1]), []).append(int(entry.name))
    found: list[Pid] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        ident = Pid.of(p)
        if ident is not None:
            found.append(ident)
        todo.extend(children.get(p, []))
    return found


def read_environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


# === impl Processes ===


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log: Path | None


class Processes:
    """Owns every process a run starts; use as a context manager."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._adopted: list[Pid] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Child:
        out = open(log, "ab")
        try:
            popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )
        except OSError as e:
            raise BenchError(f"cannot start {name} ({argv[0]}): {e}") from e
        finally:
            out.close()
        child = Child(name, popen, log)
        self._children.append(child)
        return child

    def run(self, name: str, argv: list[str], timeout_s: float) -> str:
        """Run a short-lived command to completion and return its stdout (stderr on failure)."""
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        child = Child(name, popen, None)
        self._children.append(child)
        try:
            out, err = popen.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"{name} did not finish within {timeout_s:.0f}s") from e
        finally:
            self._stop(child)
            self._children.remove(child)
        if popen.returncode != 0:
            raise BenchError(f"{name} exited with {popen.returncode}: {err.strip() or out.strip()}")
        return out

    def adopt_descendants(self, child: Child) -> list[Pid]:
        """Remember `child`'s current descendants so they are killed if it leaves them behind."""
        found = descendants(child.popen.pid)
        self._adopted.extend(p for p in found if p not in self._adopted)
        return found

    def stop_all(self) -> None:
        while self._children:
            self._stop(self._children.pop())
        for orphan in self._adopted:
            orphan.kill()
        self._adopted.clear()

    def _stop(self, child: Child) -> None:
        """SIGTERM the child, wait for it, then SIGKILL its process group (it leads its own)."""
        popen = child.popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        popen.wait()


# === Sockets and HTTP on loopback ===


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for programs that need a fixed port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(addr: str, path: str, host: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    hostname, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(hostname, int(port), timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http_ok(addr: str, host: str, what: str, timeout_s: float, child: Child | None = None) -> bytes:
    """Poll `GET /` until it answers 200; fail early if `child` exits."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    while time.monotonic() < deadline:
        if child is not None and child.popen.poll() is not None:
            raise BenchError(f"{what} exited with {child.popen.returncode}; see {child.log}")
        try:
            status, body = http_get(addr, "/", host)
            if status == 200:
                return body
            last = f"HTTP {status}: {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise BenchError(f"{what} at {addr} not answering 200 after {timeout_s:.0f}s (last: {last})")
