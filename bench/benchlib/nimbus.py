"""The Nimbus side: `nimbus serve`, one service pinned to exactly one instance, and that
instance's identity (pid and port), so the other paths can be pointed at the same process.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import BenchError, Child, Pid, Processes, http_get, read_environ, wait_http_ok

SERVICE = "bench"
HOST = f"{SERVICE}.default.localhost"
LISTEN_RE = {
    "router": re.compile(r"router listening on http://(\S+)"),
    "api": re.compile(r"API listening on http://(\S+)"),
}

# min-scale = max-scale = 1: one instance for the whole run, whatever the autoscaler decides,
# and it is not scaled to zero while the direct and nginx rounds bypass the router.
SERVICE_YAML = """\
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
        autoscaling.knative.dev/max-scale: "1"
    spec:
      runtimeClassName: process
      containers:
        - command: ["{command}"]
"""


@dataclass(frozen=True)
class Nimbus:
    child: Child
    router_addr: str
    api_addr: str


@dataclass(frozen=True)
class Instance:
    """The one backend process every path hits."""

    pid: Pid
    port: int
    revision: str


def start(procs: Processes, bin: Path, dir: Path, timeout_s: float = 20,
          extra: tuple[str, ...] = ()) -> Nimbus:
    """`nimbus serve` (with `extra` flags) with its data in `dir/nimbus-data`; Wasm components
    are read from under `dir` (`--wasm-dir`)."""
    log = dir / "nimbus.log"
    argv = [str(bin), "serve", "--http-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
            "--data-dir", str(dir / "nimbus-data"), "--wasm-dir", str(dir), *extra]
    child = procs.start("nimbus serve", argv, log)
    addrs = _wait_for_addrs(child, log, timeout_s)
    return Nimbus(child, addrs["router"], addrs["api"])


def _wait_for_addrs(child: Child, log: Path, timeout_s: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = {k: m.group(1) for k, r in LISTEN_RE.items() if (m := r.search(text))}
        if len(found) == len(LISTEN_RE) and "nimbus: ready" in text:
            return found
        if child.popen.poll() is not None:
            raise BenchError(f"nimbus serve exited with {child.popen.returncode}:\n{text}")
        time.sleep(0.05)
    raise BenchError(f"nimbus serve printed no router/API address within {timeout_s:.0f}s; see {log}")


def deploy(procs: Processes, bin: Path, nimbus: Nimbus, backend: Path, dir: Path) -> Instance:
    """Apply the pinned service, wait until the router serves it, and identify its instance."""
    manifest = dir / "service.yaml"
    manifest.write_text(SERVICE_YAML.format(name=SERVICE, command=backend))
    # --data-dir lets the CLI find the admin token of this loopback server.
    procs.run("nimbus apply", [str(bin), "apply", "--server", f"http://{nimbus.api_addr}",
                               "--data-dir", str(dir / "nimbus-data"), "-f", str(manifest)], timeout_s=30)
    wait_http_ok(nimbus.router_addr, HOST, "the bench service through the router", 60, nimbus.child)
    return identify_instance(procs, nimbus)


def identify_instance(procs: Processes, nimbus: Nimbus) -> Instance:
    """The instance the router sends to: its port from its `/env` through the router, its pid
    the one process under `nimbus serve` whose environment has that `PORT`. Other processes
    there (the revision's spare stub, waiting to become the next instance) are not counted."""
    env = _env_through_router(nimbus)
    port = int(env.get("PORT", "0"))
    under = procs.adopt_descendants(nimbus.child)
    matches = [p for p in under if read_environ(p.pid).get("PORT") == str(port)]
    if len(matches) != 1:
        raise BenchError(f"expected one process with PORT={port} under nimbus serve, found "
                         f"{len(matches)} among {len(under)}")
    return Instance(matches[0], port, env.get("K_REVISION", "?"))


def _env_through_router(nimbus: Nimbus) -> dict[str, str]:
    status, body = http_get(nimbus.router_addr, "/env", HOST)
    if status != 200:
        raise BenchError(f"GET /env through the router answered {status}: {body[:200]!r}")
    lines = body.decode(errors="replace").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def check_same_instance(procs: Processes, nimbus: Nimbus, expected: Instance) -> None:
    """Fail if the instance was replaced or another appeared: the comparison would be void."""
    now = identify_instance(procs, nimbus)
    if now != expected or not expected.pid.alive():
        raise BenchError(f"the backend instance changed during the run: {expected} -> {now}")
