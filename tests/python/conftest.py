"""Fixtures for the berth end-to-end suite.

- `berth` (session): one `berth server` on a free port with a temporary data dir,
  shared by every test (tests use unique names, so they do not interfere).
  It exposes `.endpoint`, `.client(region=...)` (boto3 ECS client),
  `.aws(*args, region=..., check=True)` (the venv's aws-cli) and `.raw(...)`.
- `ecs` (function): `berth.client()` for us-east-1.
- `own_berth` (function): a private server with its own data dir, for tests
  that restart it (`.restart()` = SIGTERM + start) or crash it
  (`.crash_restart()` = SIGKILL + start) without disturbing the shared one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from harness import BerthServer, remove_tree

# Keep the developer's AWS configuration out of boto3/aws-cli.
for _k in list(os.environ):
    if _k.startswith("AWS_"):
        del os.environ[_k]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def _keep_dirs() -> bool:
    return os.environ.get("BERTH_KEEP_DATA") == "1"


@pytest.fixture(scope="session")
def berth():
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-"))
    server = BerthServer(data_dir=root / "data", log_dir=root / "logs")
    try:
        server.start()
        yield server
    finally:
        rc = server.stop()
        if rc != 0 and server.ever_started:
            print(f"\n[berth] shared server exit code on SIGTERM: {rc}; log tail:\n{server.log_tail(30)}")
        if not _keep_dirs():
            remove_tree(root)
        else:
            print(f"\n[berth] kept {root}")


@pytest.fixture
def ecs(berth):
    return berth.client()


@pytest.fixture(autouse=True)
def _shared_server_watchdog(request):
    """If a test kills the shared server, fail that test loudly and start a new
    server on the same data dir, so one crash does not cascade into every later test."""
    if "berth" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("berth")
    if not server.alive:
        server.start()
    seen = len(server.protocol_violations)
    yield
    new = server.protocol_violations[seen:]
    if new:
        pytest.fail("responses violating the AWS JSON 1.1 conventions:\n" + "\n".join(new[:10]), pytrace=False)
    if not server.alive:
        rc = server.proc.returncode
        tail = server.log_tail(60)
        server.start()
        pytest.fail(f"the shared berth server died during this test (exit code {rc}); log tail:\n{tail}",
                    pytrace=False)


@pytest.fixture
def own_berth():
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-own-"))
    server = BerthServer(data_dir=root / "data", log_dir=root / "logs")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if not _keep_dirs():
            remove_tree(root)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server log tail to failing tests and note if the server died."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name in ("own_berth", "berth"):
            server = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(server, BerthServer):
                state = "alive" if server.alive else f"DEAD (exit {server.proc.returncode})"
                rep.sections.append((f"berth server ({name}, {state}) log tail", server.log_tail(40)))
                break
