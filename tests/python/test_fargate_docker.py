"""FARGATE on the real Docker Engine, driven with aws-cli against `berth dev`
(whose Fargate capacity is this host's Docker Engine, the way a user drives
ECS):

- the seed's `platform-task` (awsvpc, FARGATE, 256/512, `next-api` on 8000
  with ENV=production; the image is a locally built stand-in) runs as a task:
  it answers on its privateIPv4Address:8000, its container shares the
  namespace of a pause container taken from the agent's warm pool (on no
  Docker network: the agent gave it the address, which `ip` inside the task
  shows on eth0, through a veth on the task network's bridge), the pool
  refills, and the task cgroup holds the task's memory limit;
- it runs as a service of 3 (more tasks at once than the pool holds, so
  some make their own namespace): every task answers on its own address,
  tasks reach each other by address, and two containers of one task reach
  each other on localhost;
- a container that exceeds the task's memory is OOM-killed and reported as
  OutOfMemoryError;
- an invalid cpu/memory pair is refused;
- after stopping, no container (the pause included), cgroup, or veth of the
  task's address (and so no namespace) is left behind;
- stopping `berth dev` removes the pool's idle namespaces.

Needs Docker: without CI=true the module is skipped when no engine answers;
with CI=true it fails loudly.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from docker_env import LABEL_CONTAINER_NAME, LABEL_TASK_ARN, BerthDev, Docker, TaskTracker, \
    build_test_images, require_docker
from harness import ACCESS_KEY, REGION, SECRET_KEY, berth_bin, cluster_arn, remove_tree, unique

NETWORK = ("awsvpcConfiguration={subnets=[subnet-12345678],securityGroups=[sg-12345678],"
           "assignPublicIp=ENABLED}")
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory/berth")
LABEL_WARM = "io.berth.warm-namespace"
LABEL_OWNER = "io.berth.agent-instance-id"
# `berth dev`'s Fargate agent keeps as many as `berth agent --fargate` does.
WARM = 2


def platform_task(family: str, image: str = "berth-test/next-api:latest", **extra) -> dict:
    """The seed's task definition, with the image replaced by a local one."""
    td = {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "next-api",
            "image": image,
            "portMappings": [{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}],
            "environment": [{"name": "ENV", "value": "production"}],
        }],
    }
    td.update(extra)
    return td


@pytest.fixture(scope="module")
def dev():
    require_docker()
    build_test_images()
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-fargate-"))
    server = BerthDev(data_dir=root / "data", log_dir=root / "logs")
    tracker = TaskTracker()
    clusters = []
    try:
        server.start()
        wait_pool(server)
        yield Dev(server, tracker, clusters, root)
    finally:
        if server.alive:
            for c in clusters:
                tracker.add_from_server(server.client(), c)
        server.stop()
        tracker.cleanup()
        remove_tree(root)


def wait_pool(server):
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}
    deadline = time.monotonic() + 60
    out = ""
    while time.monotonic() < deadline:
        out = subprocess.run([str(berth_bin()), "fargate", "ls", "--endpoint", server.endpoint],
                             capture_output=True, text=True, env=env).stdout
        if " true " in out:
            return
        time.sleep(0.2)
    pytest.fail(f"berth dev offers no Fargate capacity:\n{out}\n{server.log_tail()}")


class Dev:
    def __init__(self, server, tracker, clusters, root):
        self.server, self.tracker, self.clusters, self.root = server, tracker, clusters, root

    def ecs(self, *args, check=True, timeout=120):
        return self.server.aws("ecs", *args, check=check, timeout=timeout)

    def cluster(self) -> str:
        name = unique("fargate")
        self.ecs("create-cluster", "--cluster-name", name, "--capacity-providers", "FARGATE", "FARGATE_SPOT")
        self.clusters.append(name)
        self.tracker.clusters.add(cluster_arn(name))
        return name

    def register(self, td: dict) -> str:
        path = self.root / f"{td['family']}.json"
        path.write_text(json.dumps(td))
        out = self.ecs("register-task-definition", "--cli-input-json", f"file://{path}").json
        return out["taskDefinition"]["taskDefinitionArn"]

    def describe(self, cluster, arns) -> list[dict]:
        out = self.ecs("describe-tasks", "--cluster", cluster, "--tasks", *arns).json
        assert out["failures"] == [], out["failures"]
        return out["tasks"]

    def logs(self) -> str:
        return self.server.log_tail(60)


def address(task) -> str:
    [attachment] = task["attachments"]
    return {d["name"]: d["value"] for d in attachment["details"]}["privateIPv4Address"]


def get(url: str, timeout=2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode().strip()


def get_eventually(url: str, within=15.0) -> str:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            return get(url)
        except Exception as e:  # noqa: BLE001
            last = e
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {within}s: {last!r}")


def containers_of(task_arn: str) -> list[str]:
    return Docker.ids_with_label(LABEL_TASK_ARN, task_arn)


def veth(ip: str) -> Path:
    """The host end of the veth pair of the namespace holding `ip` (`bv` + the address in hex)."""
    return Path("/sys/class/net") / ("bv" + "".join(f"{int(o):02x}" for o in ip.split(".")))


def pause_of(container_id: str) -> str:
    """The pause container whose namespace a task's container joined."""
    mode = Docker.inspect(container_id)["HostConfig"]["NetworkMode"]
    assert mode.startswith("container:"), mode
    return mode.split(":", 1)[1]


def assert_attached(container_id: str, ip: str) -> str:
    """The task's container runs in a pause container's namespace that is on no Docker
    network, holds `ip` on eth0 (seen from inside) and is plugged into the task
    network's bridge (seen from the host). Returns the pause container's id."""
    pause = Docker.inspect(pause_of(container_id))
    assert pause["HostConfig"]["NetworkMode"] == "none"
    assert list(pause["NetworkSettings"]["Networks"]) == ["none"]
    out = Docker.run("exec", container_id, "ip", "-4", "addr", "show", "eth0").stdout
    assert f"inet {ip}/22 " in out, out
    assert (veth(ip) / "master").resolve().name.startswith("br-"), f"{veth(ip)} is on no bridge"
    return pause["Id"]


def fargate_owner(server) -> str:
    """The instance id of `berth dev`'s Fargate agent, which labels its warm namespaces."""
    identity = json.loads((server.data_dir / "agent-fargate" / "instance.json").read_text())
    return identity["instance_id"]


def warm_namespaces(owner: str, running=True) -> list[str]:
    args = ["ps", "-q", "--no-trunc", "--filter", f"label={LABEL_WARM}", "--filter", f"label={LABEL_OWNER}={owner}"]
    if not running:
        args.insert(1, "-a")
    return Docker.run(*args).stdout.split()


def wait_for(what: str, check, within=30.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {within}s")


def assert_nothing_left(task: dict, pauses=(), within=15.0):
    """No container of the task (nor the pause containers in `pauses`, which a
    namespace of the warm pool needs: no label names its task), no cgroup, and no
    veth of the task's address, which lives exactly as long as its namespace."""
    arn, task_id = task["taskArn"], task["taskArn"].rsplit("/", 1)[1]
    ip = address(task)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = containers_of(arn) + [p for p in pauses if Docker.exists(p)]
        cgroup = (CGROUP_MEMORY / task_id).exists()
        link = veth(ip).exists()
        if not left and not cgroup and not link:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"task {task_id} left containers {left} / cgroup {cgroup} / veth {link}")


def test_the_seed_platform_task_runs_on_its_own_address(dev):
    cluster = dev.cluster()
    family = unique("platform-task")
    dev.register(platform_task(family))
    owner = fargate_owner(dev.server)
    wait_for("a full warm pool", lambda: len(warm_namespaces(owner)) == WARM)
    out = dev.ecs("run-task", "--cluster", cluster, "--task-definition", family, "--launch-type", "FARGATE",
                  "--network-configuration", NETWORK).json
    assert out["failures"] == []
    [task] = out["tasks"]
    dev.tracker.add([task])
    arn = task["taskArn"]
    dev.ecs("wait", "tasks-running", "--cluster", cluster, "--tasks", arn)
    [task] = dev.describe(cluster, [arn])
    assert task["launchType"] == "FARGATE" and "containerInstanceArn" not in task
    assert task["attachments"][0]["status"] == "ATTACHED"
    ip = address(task)
    assert task["containers"][0]["networkInterfaces"][0]["privateIpv4Address"] == ip

    assert get_eventually(f"http://{ip}:8000/") == "next-api"
    assert get(f"http://{ip}:8000/env") == "production"

    # The container joins the namespace of a pause container from the warm pool
    # (which no label ties to the task), given the task's address by the agent;
    # the pool refills; the task's cgroup holds its memory.
    ids = containers_of(arn)
    info = {Docker.inspect(i)["Config"]["Labels"][LABEL_CONTAINER_NAME]: Docker.inspect(i) for i in ids}
    assert set(info) == {"next-api"}
    pause = assert_attached(info["next-api"]["Id"], ip)
    assert LABEL_WARM in Docker.inspect(pause)["Config"]["Labels"]
    wait_for("the pool's refill", lambda: len(warm_namespaces(owner)) == WARM + 1)
    task_id = arn.rsplit("/", 1)[1]
    limit = int((CGROUP_MEMORY / task_id / "memory.limit_in_bytes").read_text())
    assert limit == 512 * 1024 * 1024

    dev.ecs("stop-task", "--cluster", cluster, "--task", arn)
    dev.ecs("wait", "tasks-stopped", "--cluster", cluster, "--tasks", arn)
    [stopped] = dev.describe(cluster, [arn])
    assert stopped["attachments"][0]["status"] == "DETACHED"
    assert stopped["stopCode"] == "UserInitiated"
    assert_nothing_left(stopped, pauses=[pause])


def test_a_service_of_three_tasks_that_reach_each_other(dev):
    cluster = dev.cluster()
    family = unique("platform-svc")
    duo = platform_task(family)
    # A second container in the same task: reachable from the first on localhost.
    duo["containerDefinitions"].append({
        "name": "sidecar", "image": "berth-test/web:v2", "essential": False,
        "environment": [{"name": "PORT", "value": "9000"}],
    })
    dev.register(duo)
    dev.ecs("create-service", "--cluster", cluster, "--service-name", "api", "--task-definition", family,
            "--desired-count", "3", "--launch-type", "FARGATE", "--network-configuration", NETWORK)
    dev.ecs("wait", "services-stable", "--cluster", cluster, "--services", "api", timeout=300)
    arns = dev.ecs("list-tasks", "--cluster", cluster, "--service-name", "api").json["taskArns"]
    tasks = dev.describe(cluster, arns)
    dev.tracker.add(tasks)
    assert len(tasks) == 3
    ips = [address(t) for t in tasks]
    assert len(set(ips)) == 3
    for ip in ips:
        assert get_eventually(f"http://{ip}:8000/env") == "production"

    def container(task, name):
        for i in containers_of(task["taskArn"]):
            if Docker.inspect(i)["Config"]["Labels"][LABEL_CONTAINER_NAME] == name:
                return i
        raise AssertionError(f"no container {name} in {task['taskArn']}")

    pauses = [assert_attached(container(t, "next-api"), ip) for t, ip in zip(tasks, ips)]
    assert len(set(pauses)) == 3
    first = container(tasks[0], "next-api")
    # Task to task, by address.
    for ip in ips[1:]:
        out = Docker.run("exec", first, "wget", "-qO-", f"http://{ip}:8000/").stdout.strip()
        assert out == "next-api"
    # Container to container inside one task, on localhost.
    assert Docker.run("exec", first, "wget", "-qO-", "http://127.0.0.1:9000/").stdout.strip() == "v2"

    dev.ecs("delete-service", "--cluster", cluster, "--service", "api", "--force")
    dev.ecs("wait", "services-inactive", "--cluster", cluster, "--services", "api", timeout=300)
    dev.ecs("wait", "tasks-stopped", "--cluster", cluster, "--tasks", *arns, timeout=300)
    for t in dev.describe(cluster, arns):
        assert_nothing_left(t, pauses=pauses)


def test_a_container_over_the_task_memory_is_oom_killed(dev):
    cluster = dev.cluster()
    family = unique("memhog")
    td = platform_task(family, image="berth-test/memhog:latest")
    td["containerDefinitions"][0]["portMappings"] = []
    dev.register(td)
    out = dev.ecs("run-task", "--cluster", cluster, "--task-definition", family, "--launch-type", "FARGATE",
                  "--network-configuration", NETWORK).json
    [task] = out["tasks"]
    dev.tracker.add([task])
    dev.ecs("wait", "tasks-stopped", "--cluster", cluster, "--tasks", task["taskArn"], timeout=180)
    [stopped] = dev.describe(cluster, [task["taskArn"]])
    [c] = stopped["containers"]
    assert c["reason"].startswith("OutOfMemoryError"), (c, dev.logs())
    assert c["exitCode"] == 137
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert_nothing_left(stopped)


def test_an_invalid_cpu_memory_pair_is_refused(dev):
    td = platform_task(unique("too-much"))
    td["memory"] = "4096"
    path = dev.root / "invalid.json"
    path.write_text(json.dumps(td))
    res = dev.ecs("register-task-definition", "--cli-input-json", f"file://{path}", check=False)
    assert res.returncode != 0
    assert "ClientException" in res.stderr
    assert "No Fargate configuration exists for given values." in res.stderr


def test_stopping_berth_dev_removes_idle_warm_namespaces():
    require_docker()
    root = Path(tempfile.mkdtemp(prefix="berth-e2e-fargate-pool-"))
    server = BerthDev(data_dir=root / "data", log_dir=root / "logs")
    try:
        server.start()
        wait_pool(server)
        owner = fargate_owner(server)
        wait_for("a full warm pool", lambda: len(warm_namespaces(owner)) == WARM)
        assert server.stop() == 0, server.log_tail()
        assert warm_namespaces(owner, running=False) == [], server.log_tail()
    finally:
        server.stop()
        remove_tree(root)
