"""Helpers for the end-to-end tests that run real containers on the local Docker Engine.

- `require_docker()`: skip (or, with CI=true, fail loudly) when no engine answers.
- `build_test_images()`: runs tests/images/build.sh (local FROM-scratch images, no registry).
- `BerthDev`: one `berth dev --listen ... --data-dir ...` process (control plane +
  cluster `default` + an agent on the local engine). It reuses harness.BerthServer's
  boto3 client, aws-cli runner and protocol checks; only the process differs.
- `BerthAgent`: one `berth agent` process against a separately started `berth server`,
  which can be killed with SIGKILL and started again on the same data dir.
- `Docker`: thin wrappers over the docker CLI (inspect, kill, ps by label, rm -f).
- `TaskTracker`: remembers every task ARN the tests caused, so that teardown removes
  exactly their containers and never those of other runs on the same engine.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import REPO, BerthServer, berth_bin, free_port

LABEL_TASK_ARN = "com.amazonaws.ecs.task-arn"
LABEL_CLUSTER = "com.amazonaws.ecs.cluster"
LABEL_CONTAINER_NAME = "com.amazonaws.ecs.container-name"

IMAGES = (
    "berth-test/web:v1",
    "berth-test/web:v2",
    "berth-test/unhealthy:latest",
    "berth-test/job:latest",
    "berth-test/memhog:latest",
    "berth-test/next-api:latest",
)

READY_TIMEOUT = 30.0


# ---------------------------------------------------------------------- docker
def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def docker_problem() -> str | None:
    """None when a Docker Engine answers through the docker CLI, else why not."""
    if shutil.which("docker") is None:
        return "the docker CLI is not on PATH"
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not Path("/var/run/docker.sock").exists():
        return "no Docker socket (/var/run/docker.sock is missing and DOCKER_HOST is unset)"
    try:
        p = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "`docker version` did not answer within 20 s"
    if p.returncode != 0 or not p.stdout.strip():
        return f"the Docker Engine is unreachable: {p.stderr.strip() or p.stdout.strip()}"
    return None


def require_docker():
    problem = docker_problem()
    if problem is None:
        return
    if _ci():
        pytest.fail(f"CI=true but Docker is required by these tests: {problem}", pytrace=False)
    pytest.skip(f"Docker is required: {problem}")


def build_test_images():
    script = REPO / "tests" / "images" / "build.sh"
    p = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        pytest.fail(f"{script} failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}", pytrace=False)
    missing = [i for i in IMAGES if Docker.run("image", "inspect", i, check=False).returncode != 0]
    if missing:
        pytest.fail(f"{script} ran but these images are missing: {missing}", pytrace=False)


class Docker:
    @staticmethod
    def run(*args, check=True, timeout=60) -> subprocess.CompletedProcess:
        p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
        return p

    @classmethod
    def inspect(cls, container_id: str) -> dict:
        return json.loads(cls.run("inspect", "--type", "container", container_id).stdout)[0]

    @classmethod
    def exists(cls, container_id: str) -> bool:
        return cls.run("inspect", "--type", "container", container_id, check=False).returncode == 0

    @classmethod
    def kill(cls, container_id: str, sig: str = "KILL"):
        cls.run("kill", "--signal", sig, container_id)

    @classmethod
    def ids_with_label(cls, key: str, value: str) -> list[str]:
        out = cls.run("ps", "-aq", "--no-trunc", "--filter", f"label={key}={value}").stdout
        return [line for line in out.split() if line]

    @classmethod
    def remove(cls, ids):
        ids = list(ids)
        for i in range(0, len(ids), 50):
            cls.run("rm", "-f", "-v", *ids[i : i + 50], check=False, timeout=120)


def docker_time(value: str) -> _dt.datetime:
    """Parse Docker's RFC 3339 timestamps with nanoseconds ("...T21:32:16.123456789Z")."""
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    main, _, tz = v.partition("+")
    if "." in main:
        head, frac = main.split(".", 1)
        main = f"{head}.{(frac + '000000')[:6]}"
    return _dt.datetime.fromisoformat(f"{main}+{tz or '00:00'}")


# ------------------------------------------------------------------- tracking
class TaskTracker:
    """Task ARNs caused by the tests; teardown removes exactly their containers."""

    def __init__(self):
        self.arns: set[str] = set()
        self.clusters: set[str] = set()  # cluster ARNs unique to this run

    def add(self, tasks):
        for t in tasks or []:
            a = t["taskArn"] if isinstance(t, dict) else t
            self.arns.add(a)

    def add_from_server(self, ecs, cluster: str):
        """Adds every task the server knows in `cluster` (running and stopped)."""
        try:
            for status in ("RUNNING", "STOPPED"):
                token = None
                while True:
                    kw = {"cluster": cluster, "desiredStatus": status, "maxResults": 100}
                    if token:
                        kw["nextToken"] = token
                    resp = ecs.list_tasks(**kw)
                    self.arns.update(resp.get("taskArns", []))
                    token = resp.get("nextToken")
                    if not token:
                        break
        except Exception as e:  # noqa: BLE001 - best effort, the server may be gone
            print(f"[docker_env] could not list tasks of {cluster}: {e!r}")

    def cleanup(self):
        ids: set[str] = set()
        for a in self.arns:
            ids.update(Docker.ids_with_label(LABEL_TASK_ARN, a))
        for c in self.clusters:
            ids.update(Docker.ids_with_label(LABEL_CLUSTER, c))
        if ids:
            Docker.remove(sorted(ids))
        return len(ids)


# -------------------------------------------------------------------- processes
class BerthDev(BerthServer):
    """`berth dev` on a free port: the ECS API plus cluster `default` whose only
    container instance is an agent on the local Docker Engine."""

    READY_LINE = "the ECS API is at"

    def _spawn(self):
        self.starts += 1
        log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("BERTH_LOG", "info")
        self.proc = subprocess.Popen(
            [str(self.binary), "dev", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self._clients.clear()

    def _wait_healthy(self, timeout: float = READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return f"berth dev exited with code {rc} before it was ready.\n--- output ---\n{self.log_tail()}"
            text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if self.READY_LINE in text:
                break
            time.sleep(0.1)
        else:
            self.kill()
            return f"berth dev did not print {self.READY_LINE!r} within {timeout:.0f}s.\n--- output ---\n{self.log_tail()}"
        # Ready also means: the agent registered and its push channel is up.
        ecs = self.client()
        last = None
        while time.monotonic() < deadline:
            try:
                arns = ecs.list_container_instances(cluster="default")["containerInstanceArns"]
                if arns:
                    ci = ecs.describe_container_instances(cluster="default", containerInstances=arns)
                    last = [(c["containerInstanceArn"], c["agentConnected"]) for c in ci["containerInstances"]]
                    if any(c["agentConnected"] for c in ci["containerInstances"]):
                        return None
            except Exception as e:  # noqa: BLE001
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        return f"berth dev's agent did not connect within {timeout:.0f}s (last: {last}).\n--- output ---\n{self.log_tail()}"

    def container_instance_arn(self, cluster: str = "default") -> str:
        arns = self.client().list_container_instances(cluster=cluster)["containerInstanceArns"]
        assert len(arns) == 1, f"expected exactly one container instance in {cluster}, got {arns}"
        return arns[0]


class BerthAgent:
    """`berth agent --endpoint URL --cluster NAME --data-dir DIR` as its own process."""

    READY_LINE = "push channel connected"

    def __init__(self, endpoint: str, cluster: str, data_dir: Path, log_dir: Path):
        self.binary = berth_bin()
        self.endpoint = endpoint
        self.cluster = cluster
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"agent-{self.starts}.log"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "<no log>"

    def start(self, timeout: float = READY_TIMEOUT):
        self.starts += 1
        log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env["BERTH_LOG"] = "info"
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "agent",
                "--endpoint",
                self.endpoint,
                "--cluster",
                self.cluster,
                "--data-dir",
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(f"berth agent exited with code {rc} before connecting:\n{self.log_tail()}", pytrace=False)
            if self.READY_LINE in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"berth agent did not log {self.READY_LINE!r} within {timeout:.0f}s:\n{self.log_tail()}",
                    pytrace=False)

    def kill(self):
        """SIGKILL (kill -9): no chance to say goodbye to the server or to stop anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 15.0):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


__all__ = [
    "BerthAgent",
    "BerthDev",
    "Docker",
    "IMAGES",
    "LABEL_CLUSTER",
    "LABEL_CONTAINER_NAME",
    "LABEL_TASK_ARN",
    "TaskTracker",
    "build_test_images",
    "docker_problem",
    "docker_time",
    "free_port",
    "require_docker",
]
