"""Tasks on the real Docker Engine, driven the way a user drives ECS: aws-cli and boto3
against `berth dev` (control plane + cluster `default` + an agent on the local engine),
and against a separate `berth server` + `berth agent` for the agent-restart test.

Needs Docker. Without CI=true the module is skipped when no engine answers; with
CI=true it fails loudly instead. The test images are built locally by
tests/images/build.sh (FROM scratch + static busybox, never pulled).

Every container a test causes is removed at teardown, selected by the task ARNs the
tests created (and, for the separate agent, by its uniquely named cluster), so other
runs on the same engine are left alone.

Caveat: do not run two of these modules (or any two `berth dev`) at once on one Docker
Engine. `berth dev` always joins cluster `default`, and a starting Berth agent stops and
later removes every container labelled with its cluster name that it has no record of --
including the running tasks of the other `berth dev` (their tasks then stop with
EssentialContainerExited, exitCode 0 after SIGTERM).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import WaiterError

from docker_env import (
    LABEL_TASK_ARN,
    BerthAgent,
    BerthDev,
    Docker,
    TaskTracker,
    build_test_images,
    docker_time,
    require_docker,
)
from harness import BerthServer, cluster_arn, remove_tree, tags_dict, unique

CLUSTER = "default"
HEALTH_CHECK = {
    "command": ["CMD-SHELL", "wget -q -O- localhost:8000/health || exit 1"],
    "interval": 5,
    "retries": 2,
    "startPeriod": 0,
}
ESSENTIAL_EXITED = "Essential container in task exited"


# ====================================================================== fixtures
@pytest.fixture(scope="session")
def test_images():
    require_docker()
    build_test_images()


@pytest.fixture(scope="module")
def tracker():
    return TaskTracker()


@pytest.fixture(scope="module")
def dev(test_images, tracker):
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-docker-"))
    proc = BerthDev(data_dir=root / "data", log_dir=root / "logs")
    try:
        proc.start()
        yield proc
    finally:
        if proc.alive:
            tracker.add_from_server(proc.client(), CLUSTER)
        proc.stop()
        removed = tracker.cleanup()
        print(f"\n[docker] removed {removed} containers of {len(tracker.arns)} tasks")
        _remove_or_keep(root)


@pytest.fixture
def ecs(dev):
    return dev.client()


@pytest.fixture(autouse=True)
def _dev_protocol_and_liveness(request):
    """Like conftest's watchdog for the shared server: every boto3 response from
    `berth dev` follows the JSON 1.1 conventions, and `berth dev` survives each test."""
    if "dev" not in request.fixturenames:
        yield
        return
    proc = request.getfixturevalue("dev")
    seen = len(proc.protocol_violations)
    yield
    new = proc.protocol_violations[seen:]
    if new:
        pytest.fail("responses violating the AWS JSON 1.1 conventions:\n" + "\n".join(new[:10]), pytrace=False)
    if not proc.alive:
        pytest.fail(f"berth dev died during this test (exit {proc.proc.returncode}):\n{proc.log_tail(60)}",
                    pytrace=False)


@pytest.fixture
def split(test_images, tracker):
    """A `berth server` and a `berth agent` as separate processes, on a uniquely named
    cluster (so its containers can be told apart from any other run's)."""
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-split-"))
    server = BerthServer(data_dir=root / "server", log_dir=root / "logs")
    cluster = unique("docker-e2e")
    tracker.clusters.add(cluster_arn(cluster))
    agent = None
    try:
        server.start()
        server.client().create_cluster(clusterName=cluster)
        agent = BerthAgent(server.endpoint, cluster, root / "agent", root / "logs")
        agent.start()
        yield server, agent, cluster
    finally:
        if server.alive:
            tracker.add_from_server(server.client(), cluster)
        if agent is not None:
            agent.stop()
        server.stop()
        tracker.cleanup()
        _remove_or_keep(root)


# ======================================================================= helpers
def _remove_or_keep(root: Path):
    if os.environ.get("BERTH_KEEP_DATA") == "1":
        print(f"\n[docker] kept {root}")
    else:
        remove_tree(root)


def register(ecs, containers, family=None, **extra) -> str:
    family = family or unique("e2e")
    td = ecs.register_task_definition(family=family, containerDefinitions=containers, **extra)["taskDefinition"]
    return f"{td['family']}:{td['revision']}"


def web(name="web", image="berth-test/web:v1", memory=64, **extra):
    c = {"name": name, "image": image, "memory": memory, "essential": True}
    c.update(extra)
    return c


def job(name="job", memory=32, env=None, essential=True, **extra):
    c = {"name": name, "image": "berth-test/job:latest", "memory": memory, "essential": essential}
    if env:
        c["environment"] = [{"name": k, "value": str(v)} for k, v in env.items()]
    c.update(extra)
    return c


def run_task(ecs, tracker, td, **kw) -> list[dict]:
    resp = ecs.run_task(cluster=kw.pop("cluster", CLUSTER), taskDefinition=td, **kw)
    tracker.add(resp["tasks"])
    assert resp["failures"] == [], f"RunTask failures: {resp['failures']}"
    assert resp["tasks"], "RunTask returned no task"
    return resp["tasks"]


def describe(ecs, arns, cluster=CLUSTER, **kw) -> list[dict]:
    arns = [arns] if isinstance(arns, str) else list(arns)
    resp = ecs.describe_tasks(cluster=cluster, tasks=arns, **kw)
    assert resp["failures"] == [], f"DescribeTasks failures: {resp['failures']}"
    by_arn = {t["taskArn"]: t for t in resp["tasks"]}
    return [by_arn[a] for a in arns]


def describe1(ecs, arn, cluster=CLUSTER, **kw) -> dict:
    return describe(ecs, [arn], cluster=cluster, **kw)[0]


def container(task: dict, name: str) -> dict:
    for c in task["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name!r} in task: {[c['name'] for c in task['containers']]}")


def brief(task: dict) -> str:
    """The interesting part of a task, for assertion messages."""
    keep = ("lastStatus", "desiredStatus", "stopCode", "stoppedReason", "healthStatus", "version")
    out = {k: task.get(k) for k in keep if k in task}
    out["containers"] = [
        {k: c.get(k) for k in ("name", "lastStatus", "exitCode", "reason", "healthStatus", "runtimeId") if k in c}
        for c in task.get("containers", [])
    ]
    return json.dumps(out, default=str)


def wait_task(ecs, arn, pred, timeout, what, cluster=CLUSTER, log=None, interval=0.2) -> dict:
    deadline = time.monotonic() + timeout
    task = None
    while True:
        task = describe1(ecs, arn, cluster=cluster)
        if pred(task):
            return task
        if time.monotonic() > deadline:
            tail = f"\n--- berth log tail ---\n{log.log_tail(30)}" if log is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; task: {brief(task)}{tail}")
        time.sleep(interval)


def is_stopped(t):
    return t["lastStatus"] == "STOPPED"


def is_running(t):
    return t["lastStatus"] == "RUNNING"


def waiter(ecs, name, arns, cluster=CLUSTER, delay=1, attempts=60):
    ecs.get_waiter(name).wait(
        cluster=cluster, tasks=list(arns), WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
    )


def wait_running(ecs, arns, cluster=CLUSTER, attempts=60):
    try:
        waiter(ecs, "tasks_running", arns, cluster=cluster, attempts=attempts)
    except WaiterError as e:
        tasks = ecs.describe_tasks(cluster=cluster, tasks=list(arns))["tasks"]
        raise AssertionError(f"tasks-running waiter failed: {e}; tasks: {[brief(t) for t in tasks]}") from None
    return describe(ecs, arns, cluster=cluster)


def wait_stopped(ecs, arns, cluster=CLUSTER, attempts=60):
    try:
        waiter(ecs, "tasks_stopped", arns, cluster=cluster, attempts=attempts)
    except WaiterError as e:
        tasks = ecs.describe_tasks(cluster=cluster, tasks=list(arns))["tasks"]
        raise AssertionError(f"tasks-stopped waiter failed: {e}; tasks: {[brief(t) for t in tasks]}") from None
    return describe(ecs, arns, cluster=cluster)


def http_get(port: int, path: str = "/", timeout: float = 10.0) -> str:
    """GET http://127.0.0.1:port/path; retries connection errors (RUNNING means the
    process started, not that it already listens)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.read().decode().strip()
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"GET 127.0.0.1:{port}{path} failed for {timeout}s: {e!r}") from None
            time.sleep(0.2)


def host_port(c: dict, container_port: int = 8000) -> int:
    binds = [b for b in c.get("networkBindings", []) if b.get("containerPort") == container_port]
    assert len(binds) == 1, f"expected one binding for containerPort {container_port}: {c.get('networkBindings')}"
    b = binds[0]
    assert b.get("protocol", "tcp") == "tcp", b
    assert isinstance(b.get("hostPort"), int) and 0 < b["hostPort"] < 65536, b
    return b["hostPort"]


def ts(v) -> float:
    """A timestamp as aws-cli prints it (epoch number or ISO 8601), or as boto3 parses it."""
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dt.datetime):
        return v.timestamp()
    return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


def started_at(info: dict) -> dt.datetime:
    return docker_time(info["State"]["StartedAt"])


def finished_at(info: dict) -> dt.datetime:
    return docker_time(info["State"]["FinishedAt"])


def stop_quietly(ecs, arns, cluster=CLUSTER):
    for a in arns:
        try:
            ecs.stop_task(cluster=cluster, task=a, reason="e2e cleanup")
        except Exception:  # noqa: BLE001 - teardown removes the containers anyway
            pass


def static_port(start: int = 18080) -> int:
    for p in range(start, start + 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                continue
            return p
    raise AssertionError("no free port in 18080-18279")


# ========================================================================= tests
def test_cli_run_wait_http_stop_lifecycle(dev, tracker):
    """aws-cli end to end: dynamic host port, HTTP through it, StopTask with a reason,
    both waiters, stopCode/stoppedReason/exitCode, ordered timestamps, version bumps."""
    family = unique("e2e-cli-web")
    containers = [{"name": "web", "image": "berth-test/web:v1", "memory": 64,
                   "portMappings": [{"containerPort": 8000}]}]
    dev.aws("ecs", "register-task-definition", "--family", family,
            "--container-definitions", json.dumps(containers))
    run = dev.aws("ecs", "run-task", "--cluster", CLUSTER, "--task-definition", family).json
    tracker.add(run["tasks"])
    assert run["failures"] == [], run
    assert len(run["tasks"]) == 1, run
    task = run["tasks"][0]
    arn = task["taskArn"]
    assert task["desiredStatus"] == "RUNNING"
    assert task["lastStatus"] in ("PROVISIONING", "PENDING", "RUNNING"), task["lastStatus"]
    v_created = task["version"]

    wait = dev.aws("ecs", "wait", "tasks-running", "--cluster", CLUSTER, "--tasks", arn, check=False)
    assert wait.returncode == 0, f"aws ecs wait tasks-running failed: {wait!r}\n{dev.log_tail(30)}"
    running = dev.aws("ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks", arn).json["tasks"][0]
    assert running["lastStatus"] == "RUNNING", brief(running)
    c = container(running, "web")
    assert c["lastStatus"] == "RUNNING", brief(running)
    assert c.get("runtimeId"), brief(running)
    port = host_port(c)
    assert http_get(port) == "v1"
    assert running["version"] > v_created, (v_created, running["version"])

    reason = "e2e: stopped by the aws-cli test"
    stop = dev.aws("ecs", "stop-task", "--cluster", CLUSTER, "--task", arn, "--reason", reason).json["task"]
    assert stop["desiredStatus"] == "STOPPED", brief(stop)
    wait = dev.aws("ecs", "wait", "tasks-stopped", "--cluster", CLUSTER, "--tasks", arn, check=False)
    assert wait.returncode == 0, f"aws ecs wait tasks-stopped failed: {wait!r}\n{dev.log_tail(30)}"

    done = dev.aws("ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks", arn).json["tasks"][0]
    assert done["lastStatus"] == "STOPPED" and done["desiredStatus"] == "STOPPED", brief(done)
    assert done.get("stopCode") == "UserInitiated", brief(done)
    assert done.get("stoppedReason") == reason, brief(done)
    c = container(done, "web")
    assert c["lastStatus"] == "STOPPED", brief(done)
    assert c.get("exitCode") == 0, brief(done)  # the web image exits 0 on SIGTERM

    order = ["createdAt", "pullStartedAt", "pullStoppedAt", "startedAt", "stoppingAt", "stoppedAt"]
    missing = [k for k in order if k not in done]
    assert not missing, f"missing timestamps {missing}: {done}"
    values = [ts(done[k]) for k in order]
    for (a, va), (b, vb) in zip(zip(order, values), zip(order[1:], values[1:])):
        assert va <= vb, f"{a}={done[a]} is after {b}={done[b]}"
    assert done["version"] > running["version"] > v_created, (v_created, running["version"], done["version"])

    info = Docker.inspect(c["runtimeId"])
    assert info["State"]["Running"] is False and info["State"]["ExitCode"] == 0, info["State"]


def test_essential_container_exit_stops_task(ecs, dev, tracker):
    """An essential container exiting 3 (EXIT_CODE set through containerOverrides)
    stops the task: EssentialContainerExited, the ECS reason text, exitCode 3."""
    td = register(ecs, [job()])
    overrides = {"containerOverrides": [{"name": "job", "environment": [{"name": "EXIT_CODE", "value": "3"}]}]}
    (task,) = run_task(ecs, tracker, td, overrides=overrides)
    (done,) = wait_stopped(ecs, [task["taskArn"]])
    assert done.get("stopCode") == "EssentialContainerExited", brief(done)
    assert done.get("stoppedReason") == ESSENTIAL_EXITED, brief(done)
    c = container(done, "job")
    assert c["lastStatus"] == "STOPPED", brief(done)
    assert c.get("exitCode") == 3, brief(done)
    env = Docker.inspect(c["runtimeId"])["Config"]["Env"]
    assert "EXIT_CODE=3" in env, env
    echoed = done["overrides"]["containerOverrides"]
    assert echoed and echoed[0]["name"] == "job", echoed
    assert {"name": "EXIT_CODE", "value": "3"} in echoed[0].get("environment", []), echoed


def test_non_essential_exit_keeps_task_running(ecs, dev, tracker):
    """A non-essential container exiting 5 is reported STOPPED/5 while the task and
    its essential web container keep RUNNING."""
    td = register(ecs, [web(), job(essential=False, env={"EXIT_CODE": 5, "DELAY": 1})])
    (task,) = run_task(ecs, tracker, td)
    arn = task["taskArn"]
    t = wait_task(ecs, arn, lambda t: container(t, "job")["lastStatus"] == "STOPPED" or is_stopped(t), 20,
                  "the job container to stop", log=dev)
    time.sleep(1.5)  # give a wrongly stopping task time to show it
    t = describe1(ecs, arn)
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", brief(t)
    assert "stopCode" not in t, brief(t)
    assert container(t, "web")["lastStatus"] == "RUNNING", brief(t)
    j = container(t, "job")
    assert j["lastStatus"] == "STOPPED" and j.get("exitCode") == 5, brief(t)
    assert Docker.inspect(container(t, "web")["runtimeId"])["State"]["Running"] is True
    stop_quietly(ecs, [arn])


def test_depends_on_conditions(ecs, dev, tracker):
    """dependsOn SUCCESS waits for init's zero exit, START only for init's start,
    HEALTHY for init's first passing health check (checked on Docker's own clocks)."""
    td_success = register(ecs, [
        job("init", essential=False, env={"DELAY": 1, "EXIT_CODE": 0}),
        web("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
    ])
    td_start = register(ecs, [
        job("init", essential=False, env={"DELAY": 10, "EXIT_CODE": 0}),
        web("app", dependsOn=[{"containerName": "init", "condition": "START"}]),
    ])
    td_healthy = register(ecs, [
        web("init", healthCheck=HEALTH_CHECK),
        web("app", image="berth-test/web:v2", dependsOn=[{"containerName": "init", "condition": "HEALTHY"}]),
    ])
    (t_success,) = run_task(ecs, tracker, td_success)
    (t_start,) = run_task(ecs, tracker, td_start)
    (t_healthy,) = run_task(ecs, tracker, td_healthy)

    # START: app runs while init (sleeping 10 s) is still running.
    t = wait_task(ecs, t_start["taskArn"], lambda t: container(t, "app")["lastStatus"] != "PENDING"
                  or is_stopped(t), 15, "START: app to leave PENDING", log=dev)
    assert container(t, "app")["lastStatus"] == "RUNNING", brief(t)
    init = Docker.inspect(container(t, "init")["runtimeId"])
    app = Docker.inspect(container(t, "app")["runtimeId"])
    assert init["State"]["Running"] is True, f"START should not wait for init to exit: {init['State']}"
    assert started_at(app) >= started_at(init), (app["State"], init["State"])

    # SUCCESS: app starts only after init exited 0.
    t = wait_task(ecs, t_success["taskArn"], lambda t: container(t, "app")["lastStatus"] != "PENDING"
                  or is_stopped(t), 20, "SUCCESS: app to leave PENDING", log=dev)
    assert container(t, "app")["lastStatus"] == "RUNNING", brief(t)
    assert is_running(t), brief(t)
    ic = container(t, "init")
    assert ic["lastStatus"] == "STOPPED" and ic.get("exitCode") == 0, brief(t)
    init = Docker.inspect(ic["runtimeId"])
    app = Docker.inspect(container(t, "app")["runtimeId"])
    assert init["State"]["Running"] is False and init["State"]["ExitCode"] == 0, init["State"]
    assert started_at(app) >= finished_at(init), (
        f"app started at {app['State']['StartedAt']} before init finished at {init['State']['FinishedAt']}")

    # HEALTHY: app starts only after init's first successful health check.
    t = wait_task(ecs, t_healthy["taskArn"], lambda t: container(t, "app")["lastStatus"] != "PENDING"
                  or is_stopped(t), 40, "HEALTHY: app to leave PENDING", log=dev)
    assert container(t, "app")["lastStatus"] == "RUNNING", brief(t)
    init = Docker.inspect(container(t, "init")["runtimeId"])
    app = Docker.inspect(container(t, "app")["runtimeId"])
    log = (init["State"].get("Health") or {}).get("Log") or []
    passed = [docker_time(e["End"]) for e in log if e.get("ExitCode") == 0]
    assert passed, f"init has no passing health check yet app started: {init['State']}"
    assert started_at(app) >= min(passed), (
        f"app started at {app['State']['StartedAt']} before init's first passing check {min(passed)}")
    t = wait_task(ecs, t_healthy["taskArn"], lambda t: container(t, "init").get("healthStatus") == "HEALTHY",
                  15, "HEALTHY: init healthStatus HEALTHY", log=dev)
    stop_quietly(ecs, [t_success["taskArn"], t_start["taskArn"], t_healthy["taskArn"]])


def test_health_checks(ecs, dev, tracker):
    """A passing healthCheck makes container and task HEALTHY; a failing one makes them
    UNHEALTHY, and a standalone task is not stopped for it."""
    td_ok = register(ecs, [web(healthCheck=HEALTH_CHECK)])
    td_bad = register(ecs, [web(image="berth-test/unhealthy:latest", healthCheck=HEALTH_CHECK)])
    (ok,) = run_task(ecs, tracker, td_ok)
    (bad,) = run_task(ecs, tracker, td_bad)

    t = wait_task(ecs, ok["taskArn"], lambda t: is_stopped(t) or (
        container(t, "web").get("healthStatus") == "HEALTHY" and t.get("healthStatus") == "HEALTHY"),
        30, "container and task healthStatus HEALTHY", log=dev)
    assert is_running(t), brief(t)

    t = wait_task(ecs, bad["taskArn"], lambda t: is_stopped(t) or (
        container(t, "web").get("healthStatus") == "UNHEALTHY" and t.get("healthStatus") == "UNHEALTHY"),
        40, "container and task healthStatus UNHEALTHY", log=dev)
    assert is_running(t), brief(t)
    info = Docker.inspect(container(t, "web")["runtimeId"])
    assert info["State"]["Health"]["Status"] == "unhealthy", info["State"]
    time.sleep(2)
    t = describe1(ecs, bad["taskArn"])
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", brief(t)
    assert container(t, "web")["lastStatus"] == "RUNNING", brief(t)
    assert Docker.inspect(container(t, "web")["runtimeId"])["State"]["Running"] is True
    stop_quietly(ecs, [ok["taskArn"], bad["taskArn"]])


def test_docker_kill_stops_task_promptly(ecs, dev, tracker):
    """`docker kill` of the essential container: the task is STOPPED within ~2 s with
    EssentialContainerExited and exitCode 137."""
    td = register(ecs, [web()])
    (task,) = run_task(ecs, tracker, td)
    (t,) = wait_running(ecs, [task["taskArn"]])
    rid = container(t, "web")["runtimeId"]
    Docker.kill(rid)
    t0 = time.monotonic()
    t = wait_task(ecs, task["taskArn"], is_stopped, 15, "STOPPED after docker kill", log=dev, interval=0.1)
    elapsed = time.monotonic() - t0
    assert elapsed <= 2.5, f"the task took {elapsed:.2f}s to be reported STOPPED after docker kill"
    assert t.get("stopCode") == "EssentialContainerExited", brief(t)
    assert t.get("stoppedReason") == ESSENTIAL_EXITED, brief(t)
    assert container(t, "web").get("exitCode") == 137, brief(t)


def test_out_of_memory(ecs, dev, tracker):
    """memhog under a 16 MiB hard limit is OOM-killed: reason OutOfMemoryError..., 137."""
    td = register(ecs, [{"name": "hog", "image": "berth-test/memhog:latest", "memory": 16, "essential": True}])
    (task,) = run_task(ecs, tracker, td)
    (t,) = wait_stopped(ecs, [task["taskArn"]], attempts=60)
    c = container(t, "hog")
    state = Docker.inspect(c["runtimeId"])["State"] if c.get("runtimeId") else {}
    assert (c.get("reason") or "").startswith("OutOfMemoryError"), f"{brief(t)}; docker: {state}"
    assert c.get("exitCode") == 137, f"{brief(t)}; docker: {state}"
    assert t.get("stopCode") == "EssentialContainerExited", brief(t)


def test_unpullable_image_fails_to_start(ecs, dev, tracker):
    """A missing image (no registry anywhere): STOPPED, TaskFailedToStart,
    CannotPullContainerError in the task and container reasons; tasks-running fails."""
    td = register(ecs, [web(image="berth-test/does-not-exist:latest")])
    (task,) = run_task(ecs, tracker, td)
    arn = task["taskArn"]
    with pytest.raises(WaiterError) as exc:
        waiter(ecs, "tasks_running", [arn], attempts=90)
    assert "terminal failure" in str(exc.value), str(exc.value)
    t = describe1(ecs, arn)
    assert is_stopped(t), brief(t)
    assert t.get("stopCode") == "TaskFailedToStart", brief(t)
    assert (t.get("stoppedReason") or "").startswith("CannotPullContainerError"), brief(t)
    c = container(t, "web")
    assert c["lastStatus"] == "STOPPED", brief(t)
    assert (c.get("reason") or "").startswith("CannotPullContainerError"), brief(t)
    assert "exitCode" not in c, brief(t)
    assert "startedAt" not in t, f"a task that never ran has startedAt: {t.get('startedAt')}"
    assert Docker.ids_with_label(LABEL_TASK_ARN, arn) == [], "a container was created for an unpullable image"


def test_agent_kill9_restart_adopts_running_task(split, tracker):
    """kill -9 the agent: the container keeps running; the restarted agent (same data
    dir) adopts it -- same runtimeId, one container, instance reconnected -- and
    supervises it: StopTask stops it."""
    server, agent, cluster = split
    ecs = server.client()
    ci_arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    assert len(ci_arns) == 1, ci_arns
    ci_arn = ci_arns[0]

    def connected():
        return ecs.describe_container_instances(cluster=cluster, containerInstances=[ci_arn])[
            "containerInstances"][0]["agentConnected"]

    assert connected() is True
    td = register(ecs, [web(portMappings=[{"containerPort": 8000}])])
    (task,) = run_task(ecs, tracker, td, cluster=cluster)
    arn = task["taskArn"]
    (t,) = wait_running(ecs, [arn], cluster=cluster)
    c = container(t, "web")
    rid, port = c["runtimeId"], host_port(c)
    assert http_get(port) == "v1"

    agent.kill()
    assert Docker.inspect(rid)["State"]["Running"] is True, "the container died with the agent"
    deadline = time.monotonic() + 10
    while connected() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert connected() is False, "agentConnected stayed true after the agent was killed"
    assert http_get(port) == "v1"

    agent.start()
    time.sleep(3)
    t = describe1(ecs, arn, cluster=cluster)
    assert is_running(t) and t["desiredStatus"] == "RUNNING", f"{brief(t)}\n{agent.log_tail(30)}"
    assert container(t, "web")["runtimeId"] == rid, brief(t)
    assert container(t, "web")["lastStatus"] == "RUNNING", brief(t)
    ids = Docker.ids_with_label(LABEL_TASK_ARN, arn)
    assert ids == [rid], f"expected exactly the original container for the task, got {ids}"
    assert Docker.inspect(rid)["State"]["Running"] is True
    assert connected() is True, "the restarted agent is not agentConnected"

    ecs.stop_task(cluster=cluster, task=arn, reason="after adoption")
    (t,) = wait_stopped(ecs, [arn], cluster=cluster, attempts=30)
    assert t.get("stopCode") == "UserInitiated" and t.get("stoppedReason") == "after adoption", brief(t)
    assert container(t, "web").get("exitCode") == 0, brief(t)
    state = Docker.inspect(rid)["State"]
    assert state["Running"] is False and state["ExitCode"] == 0, state


def test_cli_count_three_list_filters_and_tags(dev, tracker):
    """run-task --count 3 with startedBy and tags: 3 RUNNING tasks on 3 distinct host
    ports, found by ListTasks startedBy and family filters, tags in DescribeTasks."""
    family = unique("e2e-count")
    started_by = unique("e2e-starter")
    containers = [{"name": "web", "image": "berth-test/web:v1", "memory": 32,
                   "portMappings": [{"containerPort": 8000}]}]
    dev.aws("ecs", "register-task-definition", "--family", family,
            "--container-definitions", json.dumps(containers))
    run = dev.aws("ecs", "run-task", "--cluster", CLUSTER, "--task-definition", family, "--count", "3",
                  "--started-by", started_by,
                  "--tags", "key=team,value=e2e", f"key=run,value={started_by}").json
    tracker.add(run["tasks"])
    assert run["failures"] == [], run
    arns = [t["taskArn"] for t in run["tasks"]]
    assert len(set(arns)) == 3, arns
    wait = dev.aws("ecs", "wait", "tasks-running", "--cluster", CLUSTER, "--tasks", *arns, check=False)
    if wait.returncode != 0:
        described = dev.aws("ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks", *arns, check=False)
        pytest.fail(f"aws ecs wait tasks-running failed: {wait!r}\n{described.stdout}\n{dev.log_tail(60)}")

    tasks = dev.aws("ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks", *arns,
                    "--include", "TAGS").json["tasks"]
    assert len(tasks) == 3
    ports = []
    for t in tasks:
        assert t["lastStatus"] == "RUNNING", brief(t)
        assert t.get("startedBy") == started_by, brief(t)
        assert t["containerInstanceArn"] == dev.container_instance_arn(), t["containerInstanceArn"]
        assert tags_dict(t.get("tags")) == {"team": "e2e", "run": started_by}, t.get("tags")
        ports.append(host_port(container(t, "web")))
    assert len(set(ports)) == 3, f"host ports are not distinct: {ports}"
    for p in ports:
        assert http_get(p) == "v1"

    listed = dev.aws("ecs", "list-tasks", "--cluster", CLUSTER, "--started-by", started_by).json["taskArns"]
    assert sorted(listed) == sorted(arns), listed
    listed = dev.aws("ecs", "list-tasks", "--cluster", CLUSTER, "--family", family).json["taskArns"]
    assert sorted(listed) == sorted(arns), listed
    stop_quietly(dev.client(), arns)


def test_static_host_port_conflict(ecs, dev, tracker):
    """A static hostPort can be held by one task only: the second RunTask is refused
    with RESOURCE:PORTS; once the first task stopped the port can be used again."""
    port = static_port()
    td = register(ecs, [web(portMappings=[{"containerPort": 8000, "hostPort": port}])])
    (first,) = run_task(ecs, tracker, td)
    (t,) = wait_running(ecs, [first["taskArn"]])
    assert host_port(container(t, "web")) == port
    assert http_get(port) == "v1"

    resp = ecs.run_task(cluster=CLUSTER, taskDefinition=td)
    tracker.add(resp["tasks"])
    assert resp["tasks"] == [], f"a second task got static port {port}: {[brief(x) for x in resp['tasks']]}"
    assert [f.get("reason") for f in resp["failures"]] == ["RESOURCE:PORTS"], resp["failures"]
    assert resp["failures"][0].get("arn") == dev.container_instance_arn(), resp["failures"]

    ecs.stop_task(cluster=CLUSTER, task=first["taskArn"])
    wait_stopped(ecs, [first["taskArn"]])
    (again,) = run_task(ecs, tracker, td)
    (t,) = wait_running(ecs, [again["taskArn"]])
    assert host_port(container(t, "web")) == port
    stop_quietly(ecs, [again["taskArn"]])
