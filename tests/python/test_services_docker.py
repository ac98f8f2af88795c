"""A service on the real Docker Engine, driven with aws-cli against a real `berth server`
and `berth agent`, the way a user drives ECS:

create a service of 3 -> `aws ecs wait services-stable` -> `docker kill` one container ->
a replacement is RUNNING -> update to a new image -> the rollout completes while never
fewer than minimumHealthyPercent of the tasks are healthy and serving HTTP -> deploy an
image whose container exits at once -> the circuit breaker fails the deployment and rolls
back (still serving throughout) -> `delete-service --force` -> `aws ecs wait
services-inactive`.

Needs Docker. Without CI=true the module is skipped when no engine answers; with CI=true
it fails loudly instead. The images are built locally by tests/images/build.sh.

While a deployment runs, a monitor thread samples continuously: DescribeTasks, then an
HTTP GET on every task's host port (from networkBindings), then DescribeTasks again. A
task counts as healthy and serving when it answered and was RUNNING and HEALTHY in either
description; describing on both sides of the probes keeps the count exact when a new task
turns healthy and an old one is stopped between two requests of one sample.

aws-cli does everything a user would (register, create, update, delete, the waiters,
describe); the monitor uses boto3 because it samples every ~100 ms, which one aws-cli
process per request could not.

Every container the test causes is removed at teardown, selected by the uniquely named
cluster's label, so other runs on the same engine are left alone.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from docker_env import LABEL_CLUSTER, BerthAgent, Docker, TaskTracker, build_test_images, require_docker
from harness import BerthServer, cluster_arn, remove_tree, unique

SERVICE = "web"
DESIRED = 3
MIN_HEALTHY_PERCENT = 100
MAX_PERCENT = 200
LOWER = -(-DESIRED * MIN_HEALTHY_PERCENT // 100)  # ceil, as ECS rounds the minimum
UPPER = DESIRED * MAX_PERCENT // 100
HEALTH_CHECK = {
    "command": ["CMD-SHELL", "wget -q -O- localhost:8000/health || exit 1"],
    "interval": 5,
    "timeout": 2,
    "retries": 2,
    "startPeriod": 0,
}
# The circuit breaker needs a task's container to die before it ever turns healthy.
CRASHING = {"DELAY": "0", "EXIT_CODE": "1"}


# ====================================================================== fixtures
@pytest.fixture(scope="module")
def stack():
    """A `berth server` and a `berth agent` on the local engine, on a uniquely named
    cluster (so its containers can be told apart from any other run's)."""
    require_docker()
    build_test_images()
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-svc-docker-"))
    server = BerthServer(data_dir=root / "server", log_dir=root / "logs")
    cluster = unique("svc-docker")
    tracker = TaskTracker()
    tracker.clusters.add(cluster_arn(cluster))
    agent = None
    try:
        server.start()
        server.aws("ecs", "create-cluster", "--cluster-name", cluster)
        agent = BerthAgent(server.endpoint, cluster, root / "agent", root / "logs")
        agent.start()
        yield Stack(server, agent, cluster)
    finally:
        if server.alive:
            tracker.add_from_server(server.client(), cluster)
        if agent is not None:
            agent.stop()
        server.stop()
        removed = tracker.cleanup()
        print(f"\n[docker] removed {removed} containers of cluster {cluster}")
        if os.environ.get("BERTH_KEEP_DATA") == "1":
            print(f"\n[docker] kept {root}")
        else:
            remove_tree(root)


@dataclass
class Stack:
    server: BerthServer
    agent: BerthAgent
    cluster: str

    def ecs(self, *args, check=True, timeout=120):
        return self.server.aws("ecs", *args, check=check, timeout=timeout)

    def logs(self, n=40) -> str:
        return (f"--- server log ---\n{self.server.log_tail(n)}\n"
                f"--- agent log ---\n{self.agent.log_tail(n)}")

    def service(self) -> dict:
        out = self.ecs("describe-services", "--cluster", self.cluster, "--services", SERVICE).json
        assert out["failures"] == [], out["failures"]
        return out["services"][0]

    def tasks(self, desired="RUNNING") -> list[dict]:
        arns = self.ecs("list-tasks", "--cluster", self.cluster, "--service-name", SERVICE,
                        "--desired-status", desired).json["taskArns"]
        return self.describe(arns) if arns else []

    def describe(self, arns) -> list[dict]:
        out = self.ecs("describe-tasks", "--cluster", self.cluster, "--tasks", *arns).json
        assert out["failures"] == [], out["failures"]
        return out["tasks"]

    def wait(self, waiter: str, what: str):
        """`aws ecs wait <waiter>` (15 s between attempts, as the model says)."""
        res = self.ecs("wait", waiter, "--cluster", self.cluster, "--services", SERVICE,
                       check=False, timeout=700)
        if res.returncode != 0:
            pytest.fail(f"aws ecs wait {waiter} ({what}) failed: {res!r}\n"
                        f"{summary(self.service())}\n{self.logs()}", pytrace=False)

    def register(self, family: str, image: str, environment: dict | None = None) -> str:
        container = {
            "name": "web",
            "image": image,
            "memory": 32,
            "essential": True,
            "portMappings": [{"containerPort": 8000}],
            "healthCheck": HEALTH_CHECK,
        }
        if environment:
            container["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
        td = self.ecs("register-task-definition", "--family", family,
                      "--container-definitions", json.dumps([container])).json["taskDefinition"]
        return td["taskDefinitionArn"]


# ======================================================================= helpers
def summary(service: dict) -> str:
    deployments = [{k: d.get(k) for k in ("id", "status", "taskDefinition", "desiredCount", "runningCount",
                                           "pendingCount", "failedTasks", "rolloutState", "rolloutStateReason")}
                   for d in service.get("deployments", [])]
    events = [e["message"] for e in service.get("events", [])[:12]]
    counts = {k: service.get(k) for k in ("status", "desiredCount", "runningCount", "pendingCount")}
    return json.dumps({"service": counts, "deployments": deployments, "events": events}, indent=1)


def host_port(task: dict) -> int | None:
    for c in task.get("containers", []):
        for b in c.get("networkBindings") or []:
            if b.get("containerPort") == 8000 and b.get("hostPort"):
                return b["hostPort"]
    return None


def container_of(task: dict) -> dict:
    (c,) = task["containers"]
    return c


def get(port: int, path: str = "/", timeout: float = 1.0) -> str | None:
    """The body of GET http://127.0.0.1:port/path, or None if it did not answer 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read().decode().strip() if r.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def poll(what: str, timeout: float, check, stack: Stack, interval: float = 0.2):
    """Calls `check()` until it returns something truthy; fails with the service's
    state and the logs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{summary(stack.service())}\n{stack.logs()}",
                        pytrace=False)
        time.sleep(interval)


def all_healthy(stack: Stack) -> bool:
    tasks = stack.tasks()
    return len(tasks) == DESIRED and all(
        t["lastStatus"] == "RUNNING" and t.get("healthStatus") == "HEALTHY" for t in tasks)


@dataclass
class Sample:
    at: float
    running: int  # tasks RUNNING (any health), as described
    serving: int  # RUNNING + HEALTHY + answering HTTP
    versions: dict = field(default_factory=dict)  # task arn -> body of GET /


class ServingMonitor(threading.Thread):
    """Samples the service's tasks continuously until stopped (see the module doc)."""

    def __init__(self, ecs, cluster: str):
        super().__init__(daemon=True)
        self.ecs = ecs
        self.cluster = cluster
        self.samples: list[Sample] = []
        self.error: BaseException | None = None
        self.ports: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self):
        try:
            while not self._halt.is_set():
                self.samples.append(self.sample())
                self._halt.wait(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self) -> list[Sample]:
        self._halt.set()
        self.join(timeout=30)
        if self.error is not None:
            raise AssertionError(f"the serving monitor failed: {self.error!r}") from self.error
        return self.samples

    def describe(self) -> dict[str, dict]:
        # Tasks asked to stop leave ListTasks(desiredStatus RUNNING) but may still serve:
        # keep describing every task seen until it is STOPPED.
        arns = set(self.ecs.list_tasks(cluster=self.cluster, serviceName=SERVICE)["taskArns"]) | set(self.ports)
        if not arns:
            return {}
        tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=sorted(arns))["tasks"]
        out = {t["taskArn"]: t for t in tasks}
        for arn, t in out.items():
            if t["lastStatus"] == "STOPPED":
                self.ports.pop(arn, None)
            elif (port := host_port(t)) is not None:
                self.ports[arn] = port
        return out

    def sample(self) -> Sample:
        before = self.describe()
        at = time.monotonic()
        versions = {}
        for arn, port in list(self.ports.items()):
            body = get(port)
            if body is not None:
                versions[arn] = body
        after = self.describe()

        def healthy(tasks, arn):
            t = tasks.get(arn)
            return t is not None and t["lastStatus"] == "RUNNING" and t.get("healthStatus") == "HEALTHY"

        serving = sum(1 for arn in versions if healthy(before, arn) or healthy(after, arn))
        running = sum(1 for t in before.values() if t["lastStatus"] == "RUNNING")
        return Sample(at, running, serving, versions)


def assert_served_throughout(samples: list[Sample], what: str):
    assert len(samples) >= 20, f"{what}: only {len(samples)} samples were taken"
    low = [s for s in samples if s.serving < LOWER]
    if low:
        start = samples[0].at
        timeline = "\n".join(
            f"  {s.at - start:6.2f}s running {s.running} serving {s.serving} "
            f"{sorted((a.rsplit('/', 1)[1][:8], v) for a, v in s.versions.items())}"
            for s in samples)
        pytest.fail(f"{what}: fewer than {LOWER} healthy tasks answered HTTP in {len(low)} of "
                    f"{len(samples)} samples:\n{timeline}", pytrace=False)
    too_many = [s for s in samples if s.running > UPPER]
    assert not too_many, f"{what}: more than {UPPER} tasks RUNNING at once: {too_many[0]}"


# ========================================================================= test
def test_service_heals_rolls_out_trips_the_breaker_and_drains(stack):
    ecs = stack.server.client()
    family = unique("svc-web")
    td_v1 = stack.register(family, "berth-test/web:v1")
    td_v2 = stack.register(family, "berth-test/web:v2")
    td_crash = stack.register(family, "berth-test/job:latest", CRASHING)

    # ---- create a service of 3 and wait for it with aws-cli's waiter
    config = {
        "minimumHealthyPercent": MIN_HEALTHY_PERCENT,
        "maximumPercent": MAX_PERCENT,
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    }
    created = stack.ecs("create-service", "--cluster", stack.cluster, "--service-name", SERVICE,
                        "--task-definition", td_v1, "--desired-count", str(DESIRED),
                        "--deployment-configuration", json.dumps(config)).json["service"]
    assert created["status"] == "ACTIVE" and created["desiredCount"] == DESIRED
    first_deployment = created["deployments"][0]["id"]
    stack.wait("services-stable", "after create-service")
    service = stack.service()
    assert service["runningCount"] == DESIRED, summary(service)
    tasks = stack.tasks()
    assert len(tasks) == DESIRED, [t["lastStatus"] for t in tasks]
    for t in tasks:
        assert t["lastStatus"] == "RUNNING" and t["group"] == f"service:{SERVICE}", t
        assert t["startedBy"] == first_deployment, t
        assert t["taskDefinitionArn"] == td_v1
    ports = [host_port(t) for t in tasks]
    assert None not in ports and len(set(ports)) == DESIRED, ports
    for p in ports:
        assert poll(f"v1 on port {p}", 10, lambda p=p: get(p), stack) == "v1"
    # The first deployment completes once its tasks are healthy.
    poll("the first deployment to complete", 30,
         lambda: stack.service()["deployments"][0]["rolloutState"] == "COMPLETED", stack)

    # ---- docker kill one container: a replacement is RUNNING
    victim = tasks[0]
    Docker.kill(container_of(victim)["runtimeId"])
    killed_at = time.monotonic()

    def replaced():
        now = stack.tasks()
        fresh = [t for t in now if t["taskArn"] not in {x["taskArn"] for x in tasks}]
        running = [t for t in fresh if t["lastStatus"] == "RUNNING"]
        return running[0] if running and len(now) == DESIRED else None

    replacement = poll("a replacement task RUNNING", 30, replaced, stack, interval=0.1)
    took = time.monotonic() - killed_at
    (dead,) = stack.describe([victim["taskArn"]])
    assert dead["lastStatus"] == "STOPPED", dead
    assert dead["stopCode"] == "EssentialContainerExited", dead
    assert container_of(dead).get("exitCode") == 137, dead
    assert replacement["startedBy"] == first_deployment and replacement["group"] == f"service:{SERVICE}"
    assert replacement["taskDefinitionArn"] == td_v1
    assert poll("the replacement to serve", 10, lambda: get(host_port(replacement)), stack) == "v1"
    replacement_id = replacement["taskArn"].rsplit("/", 1)[1]
    poll("the replacement's start event", 10, lambda: any(
        e["message"] == f"(service {SERVICE}) has started 1 tasks: (task {replacement_id})."
        for e in stack.service()["events"]), stack)
    print(f"\n[services] replacement RUNNING {took:.2f}s after docker kill")
    stack.wait("services-stable", "after the replacement")
    # services-stable does not look at health; the rollout's minimum is about
    # healthy tasks, so start it from a service whose tasks all are.
    poll("every task HEALTHY", 30, lambda: all_healthy(stack), stack)

    # ---- update to a new image: never fewer than minimumHealthyPercent healthy and serving
    monitor = ServingMonitor(ecs, stack.cluster)
    monitor.start()
    try:
        time.sleep(1)  # a few samples of the steady state first
        updated = stack.ecs("update-service", "--cluster", stack.cluster, "--service", SERVICE,
                            "--task-definition", td_v2).json["service"]
        assert updated["taskDefinition"] == td_v2
        v2_deployment = updated["deployments"][0]["id"]
        assert updated["deployments"][0]["status"] == "PRIMARY" and v2_deployment != first_deployment
        stack.wait("services-stable", "after the update to v2")
        poll("the v2 deployment to complete", 30,
             lambda: stack.service()["deployments"][0]["rolloutState"] == "COMPLETED", stack)
        time.sleep(1)
    finally:
        samples = monitor.stop()
    assert_served_throughout(samples, "rollout to v2")
    assert max(s.running for s in samples) > DESIRED, (
        "minimumHealthyPercent 100 needs new tasks started before old ones stop, but never more than "
        f"{DESIRED} ran at once")
    assert {"v1", "v2"} <= {v for s in samples for v in s.versions.values()}
    service = stack.service()
    assert [d["id"] for d in service["deployments"]] == [v2_deployment], summary(service)
    tasks = stack.tasks()
    assert len(tasks) == DESIRED and {t["taskDefinitionArn"] for t in tasks} == {td_v2}
    for t in tasks:
        assert get(host_port(t)) == "v2", t
    assert any(e["message"] == f"(service {SERVICE}) (deployment {v2_deployment}) deployment completed."
               for e in service["events"]), summary(service)

    # ---- deploy an image whose container exits at once: the breaker fails it and rolls back
    monitor = ServingMonitor(ecs, stack.cluster)
    monitor.start()
    try:
        time.sleep(1)
        crash = stack.ecs("update-service", "--cluster", stack.cluster, "--service", SERVICE,
                          "--task-definition", td_crash).json["service"]
        crash_deployment = crash["deployments"][0]["id"]

        def failed():
            s = stack.service()
            d = next((d for d in s["deployments"] if d["id"] == crash_deployment), None)
            return s if d is None or d["rolloutState"] == "FAILED" else None

        service = poll("the circuit breaker to fail the deployment", 120, failed, stack, interval=0.5)
        primary = service["deployments"][0]
        assert primary["status"] == "PRIMARY" and primary["taskDefinition"] == td_v2, summary(service)
        assert primary["id"] not in (crash_deployment, v2_deployment), summary(service)
        assert primary["rolloutStateReason"] == (
            f"ECS deployment circuit breaker: rolling back to deploymentId {v2_deployment}."), summary(service)
        messages = [e["message"] for e in service["events"]]
        assert (f"(service {SERVICE}) (deployment {crash_deployment}) deployment failed: tasks failed to start."
                in messages), summary(service)
        assert f"(service {SERVICE}) rolling back to deployment {v2_deployment}." in messages, summary(service)
        stack.wait("services-stable", "after the rollback")
        poll("the rollback to complete", 30,
             lambda: stack.service()["deployments"][0]["rolloutState"] == "COMPLETED", stack)
        time.sleep(1)
    finally:
        samples = monitor.stop()
    assert_served_throughout(samples, "failed deployment and rollback")
    crash_tasks = [t for t in stack.tasks(desired="STOPPED") if t["startedBy"] == crash_deployment]
    assert {t["taskDefinitionArn"] for t in crash_tasks} == {td_crash}
    assert all(t["lastStatus"] == "STOPPED" for t in crash_tasks), crash_tasks
    exited = [t for t in crash_tasks if t["stopCode"] == "EssentialContainerExited"]
    # The default threshold for 3 tasks is 3; a task still starting when it
    # trips is stopped by the scheduler instead.
    assert len(exited) >= 3, f"the breaker tripped after {len(exited)} failed tasks (threshold 3)"
    assert all(container_of(t).get("exitCode") == 1 for t in exited), exited
    assert all(t["stopCode"] == "ServiceSchedulerInitiated" for t in crash_tasks if t not in exited), crash_tasks
    service = stack.service()
    assert len(service["deployments"]) == 1 and service["deployments"][0]["taskDefinition"] == td_v2
    assert service["taskDefinition"] == td_v2, summary(service)
    tasks = stack.tasks()
    assert len(tasks) == DESIRED and {t["taskDefinitionArn"] for t in tasks} == {td_v2}
    for t in tasks:
        assert get(host_port(t)) == "v2", t

    # ---- delete-service --force, then wait for INACTIVE
    deleted = stack.ecs("delete-service", "--cluster", stack.cluster, "--service", SERVICE, "--force").json
    assert deleted["service"]["status"] == "DRAINING" and deleted["service"]["desiredCount"] == 0
    stack.wait("services-inactive", "after delete-service --force")
    service = stack.service()
    assert service["status"] == "INACTIVE" and service["runningCount"] == 0, summary(service)
    assert stack.tasks() == []
    last = stack.describe([t["taskArn"] for t in tasks])
    assert all(t["lastStatus"] == "STOPPED" and t["stopCode"] == "ServiceSchedulerInitiated" for t in last), last
    running = [i for i in Docker.ids_with_label(LABEL_CLUSTER, cluster_arn(stack.cluster))
               if Docker.inspect(i)["State"]["Running"]]
    assert running == [], f"containers still running after the service went INACTIVE: {running}"
    assert stack.server.protocol_violations == []
