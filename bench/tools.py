"""Finding or installing the outside programs the benchmark needs, into git-ignored scratch folders.

nginx and wrk come from Debian's packages: a copy on PATH is used as is, otherwise the .deb files
are fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (no root, no service started).
The Portkey gateway comes from npm into its own folder; it is never a project dependency.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "bench" / ".scratch"
DEBROOT = SCRATCH / "debroot"
PORTKEY_DIR = SCRATCH / "portkey"
PORTKEY_VERSION = "1.15.2"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
LIBDIR = DEBROOT / "usr" / "lib" / "x86_64-linux-gnu"


@dataclass
class Tool:
    """An external program: where it is, the environment it needs, and a one-line provenance note."""

    name: str
    path: Path | None
    note: str
    version: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.path is not None


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _debian_unpack(packages: list[str]) -> str | None:
    """Download and unpack Debian packages into DEBROOT; returns an error text, or None when done."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return "apt-get/dpkg not available"
    debs = SCRATCH / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    done = _run(["apt-get", "download", *packages], cwd=debs)
    if done.returncode != 0:
        return f"apt-get download {' '.join(packages)} failed: {done.stderr.strip()[-300:]}"
    for deb in sorted(debs.glob("*.deb")):
        unpacked = _run(["dpkg", "-x", str(deb), str(DEBROOT)])
        if unpacked.returncode != 0:
            return f"dpkg -x {deb.name} failed: {unpacked.stderr.strip()[-300:]}"
    return None


def _version(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=10, env={**os.environ, **(env or {})}, check=False
        )
    except OSError:
        return ""
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else ""


def find_nginx() -> Tool:
    system = shutil.which("nginx")
    if system:
        return Tool("nginx", Path(system), "nginx from PATH", _version([system, "-v"]))
    local = DEBROOT / "usr" / "sbin" / "nginx"
    if not local.exists():
        error = _debian_unpack(["nginx"])
        if error:
            return Tool("nginx", None, error)
    note = "Debian package nginx, unpacked into bench/.scratch"
    return Tool("nginx", local, note, _version([str(local), "-v"]))


def find_wrk() -> Tool:
    system = shutil.which("wrk")
    if system:
        return Tool("wrk", Path(system), "wrk from PATH", _version([system, "-v"]))
    local = DEBROOT / "usr" / "bin" / "wrk"
    if not local.exists():
        error = _debian_unpack(["wrk", "libluajit-5.1-2"])
        if error:
            return Tool("wrk", None, error)
    env = {"LD_LIBRARY_PATH": str(LIBDIR)}
    note = "Debian package wrk (+ libluajit-5.1-2), unpacked into bench/.scratch"
    return Tool("wrk", local, note, _version([str(local), "-v"], env), env)


def find_portkey() -> Tool:
    """The Portkey gateway's start script, installed with npm into bench/.scratch/portkey."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return Tool("portkey", None, "node/npm not available: Portkey skipped")
    package = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway"
    script = package / "build" / "start-server.js"
    if _installed_version(package) != PORTKEY_VERSION:
        PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
        manifest = PORTKEY_DIR / "package.json"
        if not manifest.exists():
            manifest.write_bytes(orjson.dumps({"private": True}))
        spec = f"{PORTKEY_PACKAGE}@{PORTKEY_VERSION}"
        done = _run([npm, "install", "--no-audit", "--no-fund", spec], cwd=PORTKEY_DIR, timeout=600)
        if done.returncode != 0 or not script.exists():
            return Tool("portkey", None, f"npm install {spec} failed: {done.stderr.strip()[-300:]}")
    version = f"{PORTKEY_PACKAGE} {_installed_version(package)}, node {_version([node, '--version'])}"
    return Tool("portkey", script, "npm package, installed into bench/.scratch/portkey", version)


def _installed_version(package: Path) -> str | None:
    try:
        return orjson.loads((package / "package.json").read_bytes()).get("version")
    except (OSError, orjson.JSONDecodeError):
        return None


def node_binary() -> str:
    return shutil.which("node") or "node"
