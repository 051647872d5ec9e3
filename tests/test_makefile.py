"""`make run` installs what running needs, never the test extra; `make test` installs the test extra;
separate stamps let either follow the other. Checked with `make -n` in a temporary copy."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

from addon.config_loader import load_config

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def dry_run(tree: Path, target: str) -> list[str]:
    done = subprocess.run(["make", "-n", target], cwd=tree, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    """The requirement specs of every pip install line."""
    return [m.group(1) for line in lines if (m := re.search(r"pip install -q -e '?([^' ]+)'?", line))]


def make_venv(tree: Path, *stamps: str) -> None:
    """A venv whose stamps are newer than pyproject.toml."""
    (tree / ".venv" / "bin").mkdir(parents=True)
    (tree / ".venv" / "bin" / "python").touch()
    for stamp in stamps:
        (tree / ".venv" / stamp).touch()
    old = (tree / "pyproject.toml").stat().st_mtime - 60
    os.utime(tree / "pyproject.toml", (old, old))
    os.utime(tree / ".venv" / "bin" / "python", (old, old))


def run_extras() -> set[str]:
    found = re.search(r"^RUN_EXTRAS :=(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert found is not None
    return {e.strip() for e in found.group(1).replace(",", " ").split() if e.strip()}


def test_fresh_machine_run_installs_no_test_extra(tree):
    lines = dry_run(tree, "run")
    assert any("-m venv .venv" in line for line in lines)
    assert installs(lines) == ["." + (f"[{','.join(sorted(run_extras()))}]" if run_extras() else "")]
    assert not any("test" in spec for spec in installs(lines))
    assert any("mitmdump -s addon/ai_proxy.py" in line for line in lines)


def test_fresh_machine_test_installs_the_test_extra(tree):
    lines = dry_run(tree, "test")
    assert installs(lines) == [".[test]"]
    assert any("pytest" in line for line in lines)
    assert installs(dry_run(tree, "lint")) == [".[test]"]


def test_switching_between_run_and_test_uses_separate_stamps(tree):
    make_venv(tree, ".installed-test")  # `make test` ran first
    assert installs(dry_run(tree, "test")) == []
    assert installs(dry_run(tree, "run")) == ["."]  # its own (quick) install, still without the test extra
    (tree / ".venv" / ".installed-run").touch()
    assert installs(dry_run(tree, "run")) == []
    assert installs(dry_run(tree, "test")) == []
    old = (tree / ".venv" / ".installed-test").stat().st_mtime - 10
    os.utime(tree / ".venv" / ".installed-test", (old, old))
    (tree / "pyproject.toml").touch()  # dependencies changed: both reinstall
    assert installs(dry_run(tree, "test")) == [".[test]"]


def test_run_extras_are_what_the_demo_routes_need():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    demo = load_config(ROOT / "addon" / "demo_routes.yaml", {"AI_PROXY_EMULATOR_URL": "http://127.0.0.1:9"})
    needed = set()
    if any(r.provider == "bedrock" for r in demo.routes):  # SigV4 signing and event streams: botocore
        needed.add("aws")
    if any(r.auth.gcp_use_service_account for r in demo.routes):  # service-account tokens: google-auth
        needed.add("gcp")
    assert run_extras() == needed
    assert run_extras() <= set(extras) - {"test"}


def test_claude_code_installs_into_the_git_ignored_tests_node(tree: Path) -> None:
    """The Claude Code e2e tests look for the CLI in tests/.node (tests/test_e2e_ingress_anthropic.py)."""
    [line] = [line for line in dry_run(tree, "claude-code") if not line.startswith("make")]  # not make[1]: …
    assert line == "npm install --prefix tests/.node --no-audit --no-fund @anthropic-ai/claude-code@2.1"
    assert "tests/.node/" in (ROOT / ".gitignore").read_text().splitlines()


def test_codex_installs_into_the_git_ignored_tests_node(tree: Path) -> None:
    """The Codex e2e tests look for the CLI in tests/.node (tests/test_e2e_responses.py)."""
    [line] = [line for line in dry_run(tree, "codex") if not line.startswith("make")]
    assert line == "npm install --prefix tests/.node --no-audit --no-fund @openai/codex@0.171"
