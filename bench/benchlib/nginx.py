"""The peer: nginx as a keep-alive reverse proxy in front of the same backend instance.

Written the way a careful operator would: one worker, an `upstream` with `keepalive 64`,
HTTP/1.1 upstream with an empty `Connection` header, no access log, and the same forwarding
headers Nimbus's router adds (`Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`) so the backend
does the same work and returns the same bytes on every path. `keepalive_requests` is raised on
both sides so that neither proxy pays for reconnects the other does not.
"""

from __future__ import annotations

import os
from pathlib import Path

from .procs import Child, Processes

CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
{user}
events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;

    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{listen_port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def write_config(dir: Path, listen_port: int, backend_port: int) -> Path:
    # As root, nginx would switch its worker to `nobody`, which cannot enter a private temp dir.
    user = "user root;" if os.geteuid() == 0 else ""
    path = dir / "nginx.conf"
    path.write_text(CONFIG.format(dir=dir, user=user, listen_port=listen_port, backend_port=backend_port))
    return path


def start(procs: Processes, dir: Path, listen_port: int, backend_port: int) -> Child:
    dir.mkdir(parents=True, exist_ok=True)
    conf = write_config(dir, listen_port, backend_port)
    argv = ["nginx", "-p", str(dir), "-c", str(conf), "-e", str(dir / "nginx-error.log")]
    return procs.start("nginx", argv, dir / "nginx-stdout.log")
