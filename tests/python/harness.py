"""Process harness and small helpers shared by the end-to-end tests.

`BerthServer` starts `berth server --listen 127.0.0.1:<port> --data-dir <dir>`,
waits for `GET /healthz`, and can stop it gracefully (SIGTERM), kill it (SIGKILL)
and start it again on the same port and data dir.  It also hands out boto3 ECS
clients, runs the venv's aws-cli and sends raw (SigV4-signed) HTTP requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

ACCOUNT = "000000000000"
REGION = "us-east-1"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "secret"
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
JSON_CT = "application/x-amz-json-1.1"

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def berth_bin() -> Path:
    env = os.environ.get("BERTH_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "berth"


def aws_cli_bin() -> Path:
    """The aws-cli installed in the test venv -- never the one on PATH."""
    candidates = [
        Path(sys.executable).parent / "aws",
        HERE / ".venv" / "bin" / "aws",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        "aws-cli is not installed in the test venv (looked at %s); run tests/python/run.sh"
        % ", ".join(map(str, candidates)),
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid(n: int = 10) -> str:
    return uuid.uuid4().hex[:n]


def unique(prefix: str) -> str:
    return f"{prefix}-{uid()}"


def arn(resource: str, region: str = REGION) -> str:
    return f"arn:aws:ecs:{region}:{ACCOUNT}:{resource}"


def cluster_arn(name: str, region: str = REGION) -> str:
    return arn(f"cluster/{name}", region)


def td_arn(family: str, revision: int, region: str = REGION) -> str:
    return arn(f"task-definition/{family}:{revision}", region)


def error_of(exc: ClientError) -> tuple[str, str, int]:
    err = exc.response.get("Error", {})
    return (
        err.get("Code", ""),
        err.get("Message", ""),
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
    )


def assert_error(excinfo, code, message=None, status=400, message_contains=None):
    """Check a pytest.raises(ClientError) result.

    `code` may be a string or a set of acceptable codes (used where the contract
    does not pin the exact exception name)."""
    c, m, s = error_of(excinfo.value)
    codes = {code} if isinstance(code, str) else set(code)
    assert c in codes, f"expected error {sorted(codes)}, got {c!r}: {m!r} (HTTP {s})"
    if status is not None:
        assert s == status, f"expected HTTP {status} for {c}, got {s}"
    if message is not None:
        assert m == message, f"{c}: expected message {message!r}, got {m!r}"
    if message_contains is not None:
        assert message_contains.lower() in m.lower(), (
            f"{c}: expected message containing {message_contains!r}, got {m!r}"
        )
    return c, m


def tags_dict(tags) -> dict:
    return {t["key"]: t.get("value") for t in (tags or [])}


class CliResult:
    def __init__(self, args, proc: subprocess.CompletedProcess):
        self.args = args
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def json(self):
        assert self.stdout.strip(), f"aws {' '.join(self.args)} printed nothing; stderr={self.stderr}"
        return json.loads(self.stdout)

    def __repr__(self):
        return f"<aws {' '.join(self.args)} rc={self.returncode} stdout={self.stdout!r} stderr={self.stderr!r}>"


class RawResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict with lower-cased names
        self.body = body

    @property
    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def error_type(self) -> str:
        """__type normalised the way botocore does it."""
        t = self.json.get("__type", "")
        if "#" in t:
            t = t.split("#", 1)[1]
        if ":" in t:
            t = t.split(":", 1)[0]
        return t

    def __repr__(self):
        return f"<HTTP {self.status} {self.headers} {self.body[:500]!r}>"


class BerthServer:
    """One `berth server` process bound to a fixed port and data dir."""

    def __init__(self, data_dir: Path, log_dir: Path, port: int | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.binary = berth_bin()
        self.extra_args = tuple(extra_args)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.ever_started = False
        self.protocol_violations: list[str] = []
        self._clients: dict = {}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- process
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"berth-{self.starts}.log"

    def log_tail(self, n: int = 80) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "<no log>"
        return "\n".join(lines[-n:])

    def start(self):
        """Start the server and wait for /healthz. Retries a few times when the port is
        taken (another process grabbed the free port, or a previous instance is still
        releasing it); a fresh port is only picked before the first successful start."""
        if not self.binary.is_file():
            pytest.fail(
                f"berth binary not found at {self.binary} "
                "(build it with `cargo build -p berth` or set BERTH_BIN)",
                pytrace=False,
            )
        for attempt in range(5):
            self._spawn()
            problem = self._wait_healthy()
            if problem is None:
                self.ever_started = True
                return
            if "address already in use" in self.log_tail().lower() and attempt < 4:
                time.sleep(0.5)
                if not self.ever_started:
                    self.port = free_port()
                continue
            pytest.fail(problem, pytrace=False)

    def _spawn(self):
        self.starts += 1
        log = open(self.log_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "server",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(self.data_dir),
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self._clients.clear()

    def _wait_healthy(self, timeout: float = STARTUP_TIMEOUT):
        """None when healthy, else a description of what went wrong (process is gone)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return (
                    f"berth server exited with code {rc} before becoming healthy "
                    f"(port {self.port}, data dir {self.data_dir}).\n--- server output ---\n" + self.log_tail()
                )
            try:
                with urllib.request.urlopen(self.endpoint + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return None
                    last = f"HTTP {r.status}"
            except Exception as e:  # noqa: BLE001 - anything means "not yet"
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        return (
            f"berth server did not answer GET /healthz with 200 within {timeout:.0f}s "
            f"(last: {last}).\n--- server output ---\n" + self.log_tail()
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait. Returns the exit code (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def kill(self):
        """SIGKILL the server process (no chance to flush anything)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> int | None:
        """Graceful restart on the same port and data dir; returns the old exit code."""
        rc = self.stop()
        self.start()
        return rc

    def crash_restart(self):
        """kill -9, then start again on the same port and data dir."""
        self.kill()
        self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---------------------------------------------------------------- clients
    def client(self, region: str = REGION, service: str = "ecs"):
        key = (region, service)
        if key not in self._clients:
            session = boto3.session.Session(
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=SECRET_KEY,
                region_name=region,
            )
            self._clients[key] = session.client(
                service,
                region_name=region,
                endpoint_url=self.endpoint,
                config=Config(
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    parameter_validation=True,
                ),
            )
            self._clients[key].meta.events.register("after-call.ecs", self._check_response_headers)
        return self._clients[key]

    def _check_response_headers(self, http_response=None, model=None, **_):
        """Every response (success or error) carries x-amzn-RequestId and a JSON 1.1 body."""
        if http_response is None:
            return
        h = {k.lower(): v for k, v in http_response.headers.items()}
        op = model.name if model is not None else "?"
        if not h.get("x-amzn-requestid"):
            self.protocol_violations.append(f"{op}: HTTP {http_response.status_code} without x-amzn-RequestId")
        if http_response.status_code >= 400 and not h.get("x-amzn-errortype"):
            self.protocol_violations.append(f"{op}: HTTP {http_response.status_code} without x-amzn-ErrorType")
        if not h.get("content-type", "").startswith(JSON_CT):
            self.protocol_violations.append(f"{op}: content-type {h.get('content-type')!r}")

    def aws(self, *args, region: str = REGION, timeout: float = 120, check: bool = True) -> CliResult:
        """Run `.venv/bin/aws <args> --endpoint-url ... --region ... --output json`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_MAX_ATTEMPTS="1",
            AWS_RETRY_MODE="standard",
            AWS_PAGER="",
        )
        argv = [
            str(aws_cli_bin()),
            *args,
            "--endpoint-url",
            self.endpoint,
            "--region",
            region,
            "--output",
            "json",
        ]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        res = CliResult(list(args), proc)
        if check:
            assert res.returncode == 0, f"aws-cli failed: {res!r}"
        return res

    def raw(
        self,
        operation: str | None,
        body=b"{}",
        *,
        region: str = REGION,
        target: str | None = None,
        headers: dict | None = None,
        sign: bool = True,
        timeout: float = 30,
    ) -> RawResponse:
        """POST / with an AWS JSON 1.1 request, optionally SigV4-signed."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs = {"Content-Type": JSON_CT}
        if target is None and operation is not None:
            target = f"{TARGET_PREFIX}.{operation}"
        if target is not None:
            hdrs["X-Amz-Target"] = target
        hdrs.update(headers or {})
        if sign:
            req = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=hdrs)
            SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ecs", region).add_auth(req)
            hdrs = dict(req.headers.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", "/", body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return RawResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def signed_headers(self, operation: str, body: bytes, region: str = REGION, extra=None) -> dict:
        hdrs = {"Content-Type": JSON_CT, "X-Amz-Target": f"{TARGET_PREFIX}.{operation}"}
        hdrs.update(extra or {})
        req = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=hdrs)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ecs", region).add_auth(req)
        return dict(req.headers.items())

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(self.endpoint + "/healthz", timeout=5) as r:
                return r.status
        except Exception:  # noqa: BLE001
            return 0


def remove_tree(path: Path):
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ ECS payloads
SEED_TASK_DEFINITION = {
    "family": "platform-task",
    "networkMode": "awsvpc",
    "requiresCompatibilities": ["FARGATE"],
    "cpu": "256",
    "memory": "512",
    "containerDefinitions": [
        {
            "name": "next-api",
            "image": "platform-docker-image:latest",
            "portMappings": [{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}],
            "environment": [{"name": "ENV", "value": "production"}],
        }
    ],
}


def simple_container(name="app", image="busybox:latest", memory=128, **extra):
    c = {"name": name, "image": image, "essential": True}
    if memory is not None:
        c["memory"] = memory
    c.update(extra)
    return c


def ec2_task_def(family, containers=None, **extra):
    """Minimal EC2/bridge task definition kwargs for register_task_definition."""
    kw = {"family": family, "containerDefinitions": containers or [simple_container()]}
    kw.update(extra)
    return kw


def fargate_task_def(family, cpu="256", memory="512", containers=None, **extra):
    kw = {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": cpu,
        "memory": memory,
        "containerDefinitions": containers or [simple_container(memory=None)],
    }
    kw.update(extra)
    return kw


CONTAINER_INSTANCE_RESOURCES = [
    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
    {"name": "MEMORY", "type": "INTEGER", "integerValue": 3768},
    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
    {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
]

VERSION_INFO = {
    "agentVersion": "1.105.1",
    "agentHash": "8dfceca",
    "dockerVersion": "DockerVersion: 25.0.3",
}


def identity_document(instance_id=None, az="us-east-1a", instance_type="t3.medium", region=REGION):
    return json.dumps(
        {
            "accountId": ACCOUNT,
            "architecture": "x86_64",
            "availabilityZone": az,
            "imageId": "ami-0abcdef1234567890",
            "instanceId": instance_id or ("i-" + uid(17)),
            "instanceType": instance_type,
            "pendingTime": "2025-01-01T12:00:00Z",
            "privateIp": "10.0.1.23",
            "region": region,
            "version": "2017-09-30",
        }
    )


def register_instance(ecs, cluster, **extra):
    kw = {
        "cluster": cluster,
        "totalResources": CONTAINER_INSTANCE_RESOURCES,
        "versionInfo": VERSION_INFO,
        "attributes": [
            {"name": "ecs.os-type", "value": "linux"},
            {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"},
        ],
    }
    kw.update(extra)
    return ecs.register_container_instance(**kw)["containerInstance"]


def resources_by_name(resources) -> dict:
    return {r["name"]: r for r in (resources or [])}


CI_ARN_RE = re.compile(
    r"^arn:aws:ecs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):container-instance/(?P<cluster>[A-Za-z0-9_-]+)/(?P<id>[0-9a-f]{32})$"
)


def paginate(fn, key, **kwargs):
    """Follow nextToken by hand; returns (items, pages)."""
    items, pages, token = [], [], None
    for _ in range(10_000):
        kw = dict(kwargs)
        if token:
            kw["nextToken"] = token
        resp = fn(**kw)
        pages.append(resp)
        items.extend(resp.get(key, []))
        token = resp.get("nextToken")
        if not token:
            return items, pages
    raise AssertionError("pagination did not terminate")


def no_nulls(obj, path="$"):
    """Assert a decoded JSON document contains no null values (AWS omits unset members)."""
    if obj is None:
        raise AssertionError(f"null value at {path}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            no_nulls(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            no_nulls(v, f"{path}[{i}]")


class Simulator:
    """One `berth agent --simulate HOSTS` process of 1024-CPU, 2048-MiB hosts
    (or `cpu`/`memory`) in `cluster`, or in the Fargate pool when `cluster`
    is None; its output goes to `<root>/simulator.log`."""

    def __init__(self, endpoint: str, cluster: str | None, root: Path, hosts: int,
                 cpu: int = 1024, memory: int = 2048, extra_args=()):
        self.log_path = root / "simulator.log"
        env = dict(os.environ)
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION})
        joins = ["--cluster", cluster] if cluster is not None else ["--fargate"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(berth_bin()), "agent", "--simulate", str(hosts), "--endpoint", endpoint,
                 *joins, "--data-dir", str(root / "agent"),
                 "--cpu", str(cpu), "--memory", str(memory), "--task-start-delay-ms", "10",
                 *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def simulated_fleet(ecs, endpoint: str, cluster: str, root: Path, hosts: int):
    """Creates `cluster`, starts `hosts` simulated hosts in it and yields once
    every one is registered with its agent connected; stops them after."""
    ecs.create_cluster(clusterName=cluster)
    sim = Simulator(endpoint, cluster, root, hosts)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
            if len(arns) == hosts:
                found = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)
                if all(ci["agentConnected"] for ci in found["containerInstances"]):
                    break
            assert sim.proc.poll() is None, sim.log()[-3000:]
            time.sleep(0.2)
        else:
            pytest.fail(f"simulated hosts did not connect:\n{sim.log()[-3000:]}")
        yield sim
    finally:
        sim.terminate()
