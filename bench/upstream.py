"""The static upstream: nginx serving the fixed provider answers, or the Python stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.payloads import BIG_STREAMS, big_stream, upstream_documents
from bench.procs import Service, free_port, start_service
from bench.tools import ROOT, Tool

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
error_log {run}/nginx-error.log warn;
pid {run}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run}/nginx-body;
    proxy_temp_path {run}/nginx-proxy;
    fastcgi_temp_path {run}/nginx-fastcgi;
    uwsgi_temp_path {run}/nginx-uwsgi;
    scgi_temp_path {run}/nginx-scgi;
    client_body_buffer_size 256k;
    client_max_body_size 4m;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nodelay on;
    open_file_cache max=64 inactive=3600s;
    open_file_cache_valid 3600s;
    types {{ }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {docroot};
{locations}
    }}
}}
"""
# Static files answer POST with 405; the error page turns that into a 200 with the file (as GET).
LOCATION = """\
        location = {path} {{
            default_type {content_type};
            error_page 405 =200 $uri;
        }}"""


def write_docroot(docroot: Path, big_size: int) -> None:
    for path, (_type, body) in upstream_documents().items():
        target = docroot / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    for path, provider in BIG_STREAMS.items():
        target = docroot / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            out.writelines(big_stream(provider, big_size))


def _content_types() -> dict[str, str]:
    types = {path: content_type for path, (content_type, _body) in upstream_documents().items()}
    types.update(dict.fromkeys(BIG_STREAMS, "text/event-stream"))
    return types


def nginx_config(run: Path, docroot: Path, port: int) -> str:
    types = _content_types()
    locations = "\n".join(LOCATION.format(path=path, content_type=ctype) for path, ctype in types.items())
    return NGINX_CONF.format(run=run, docroot=docroot, port=port, locations=locations)


def start_nginx(nginx: Tool, run: Path, big_size: int) -> Service:
    assert nginx.path is not None
    docroot = run / "docroot"
    write_docroot(docroot, big_size)
    port = free_port()
    conf = run / "nginx.conf"
    conf.write_text(nginx_config(run, docroot, port))
    cmd = [str(nginx.path), "-p", str(run), "-e", str(run / "nginx-error.log"), "-c", str(conf)]
    return start_service("nginx", cmd, port, run, env=nginx.env)


def start_python_upstream(run: Path, big_size: int) -> Service:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.pyupstream", str(port), str(big_size)]
    return start_service("python-upstream", cmd, port, run, cwd=ROOT)
