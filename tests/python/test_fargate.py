"""The FARGATE launch type against simulated Fargate capacity (`berth agent
--simulate N --fargate`, no Docker): RunTask and services on FARGATE and
FARGATE_SPOT through boto3 and aws-cli, what a Fargate task shows (no
container instance, platform version, capacity provider, its network
interface going ATTACHING → ATTACHED → DETACHING → DETACHED, the
DEPROVISIONING state), capacity provider strategies with base and weight,
ECS's validation errors, a full pool, and Spot interruptions by the
operator command and by the chaos rate."""

from __future__ import annotations

import ipaddress
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    BerthServer,
    Simulator,
    assert_error,
    berth_bin,
    fargate_task_def,
    remove_tree,
    simple_container,
    unique,
)

POOL_HOSTS = 2
# Each simulated pool host offers 2 vCPU / 4 GiB: 8 tasks of 256/512 each.
HOST_CPU = 2048
HOST_MEMORY = 4096
NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"], "securityGroups": ["sg-0a1b2c3d"],
                                   "assignPublicIp": "ENABLED"}}
CAPACITY_UNAVAILABLE = (
    "Capacity is unavailable at this time. Please try again later or in a different availability zone"
)


@pytest.fixture(scope="module")
def fargate():
    """A private server whose Fargate pool is two simulated hosts, with a chaos
    rate of zero (the chaos test starts its own)."""
    root = Path(tempfile.mkdtemp(prefix="berth-fargate-"))
    server = BerthServer(data_dir=root / "data", log_dir=root / "logs")
    server.start()
    sim = Simulator(server.endpoint, None, root, POOL_HOSTS, cpu=HOST_CPU, memory=HOST_MEMORY)
    try:
        wait_pool(server, POOL_HOSTS, sim)
        yield server
    finally:
        sim.terminate()
        server.stop()
        remove_tree(root)


def berth_cli(server: BerthServer, *args, check=True) -> subprocess.CompletedProcess:
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(berth_bin()), *args, "--endpoint", server.endpoint],
                          capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def wait_pool(server: BerthServer, hosts: int, sim: Simulator):
    deadline = time.monotonic() + 60
    out = ""
    while time.monotonic() < deadline:
        out = berth_cli(server, "fargate", "ls").stdout
        if sum(1 for line in out.splitlines()[1:] if " true " in f" {line} ") == hosts:
            return
        assert sim.proc.poll() is None, sim.log()[-3000:]
        time.sleep(0.2)
    pytest.fail(f"the Fargate pool did not come up:\n{out}\n{sim.log()[-3000:]}")


def platform_task(ecs, family=None, **extra):
    family = family or unique("platform-task")
    ecs.register_task_definition(**fargate_task_def(
        family, containers=[simple_container(
            "next-api", image="berth-test/next-api:latest", memory=None,
            portMappings=[{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}],
            environment=[{"name": "ENV", "value": "production"}])], **extra))
    return family


def describe(ecs, cluster, arns):
    return ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]


def wait_status(ecs, cluster, arns, status, timeout=30.0, seen=None):
    """Polls until every task has `status`; records each lastStatus seen."""
    deadline = time.monotonic() + timeout
    tasks = []
    while time.monotonic() < deadline:
        tasks = describe(ecs, cluster, arns)
        if seen is not None:
            for t in tasks:
                history = seen.setdefault(t["taskArn"], [])
                if not history or history[-1] != t["lastStatus"]:
                    history.append(t["lastStatus"])
        if all(t["lastStatus"] == status for t in tasks):
            return tasks
        time.sleep(0.05)
    pytest.fail(f"tasks did not reach {status}: {[(t['taskArn'], t['lastStatus']) for t in tasks]}")


def eni(task) -> tuple[dict, dict]:
    [attachment] = task["attachments"]
    assert attachment["type"] == "ElasticNetworkInterface"
    return attachment, {d["name"]: d["value"] for d in attachment["details"]}


@pytest.fixture
def cluster(fargate):
    ecs = fargate.client()
    name = unique("fg")
    ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    return name


LIFECYCLE = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING",
             "DEPROVISIONING", "STOPPED"]


def test_a_fargate_task_runs_with_its_own_interface_and_no_host(fargate, cluster):
    ecs = fargate.client()
    family = platform_task(ecs)
    out = ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                       networkConfiguration=NETWORK)
    assert out["failures"] == []
    [task] = out["tasks"]
    assert task["lastStatus"] == "PROVISIONING"
    assert task["launchType"] == "FARGATE"
    assert task["platformVersion"] == "1.4.0"
    assert task["platformFamily"] == "Linux"
    assert task["capacityProviderName"] == "FARGATE"
    assert "containerInstanceArn" not in task
    assert task["cpu"] == "256" and task["memory"] == "512"
    assert task["ephemeralStorage"] == {"sizeInGiB": 20}
    attachment, details = eni(task)
    assert attachment["status"] == "ATTACHING"
    assert details["subnetId"] == "subnet-0a1b2c3d"
    assert details["networkInterfaceId"].startswith("eni-")
    ip = ipaddress.ip_address(details["privateIPv4Address"])
    assert ip in ipaddress.ip_network("100.64.0.0/10")
    assert details["privateDnsName"] == f"ip-{str(ip).replace('.', '-')}.ec2.internal"
    assert details["macAddress"].startswith("0a:58:")
    [container] = task["containers"]
    assert container["networkInterfaces"] == [
        {"attachmentId": attachment["id"], "privateIpv4Address": str(ip)}]

    seen = {}
    arn = task["taskArn"]
    [running] = wait_status(ecs, cluster, [arn], "RUNNING", seen=seen)
    assert eni(running)[0]["status"] == "ATTACHED"
    assert running["startedAt"] >= running["createdAt"]
    # The user has no host: the cluster shows no container instance.
    assert ecs.list_container_instances(cluster=cluster)["containerInstanceArns"] == []
    assert ecs.list_tasks(cluster=cluster, launchType="FARGATE")["taskArns"] == [arn]

    ecs.stop_task(cluster=cluster, task=arn, reason="done")
    [stopped] = wait_status(ecs, cluster, [arn], "STOPPED", seen=seen)
    assert eni(stopped)[0]["status"] == "DETACHED"
    assert stopped["stopCode"] == "UserInitiated" and stopped["stoppedReason"] == "done"
    for field in ("stoppingAt", "executionStoppedAt", "stoppedAt"):
        assert field in stopped, field
    assert stopped["executionStoppedAt"] <= stopped["stoppedAt"]
    # Never backwards through the Fargate states.
    ranks = [LIFECYCLE.index(s) for s in seen[arn]]
    assert ranks == sorted(ranks), seen[arn]


def test_stopped_tasks_give_their_address_back(fargate, cluster):
    ecs = fargate.client()
    family = platform_task(ecs)
    out = ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                       networkConfiguration=NETWORK, count=4)
    arns = [t["taskArn"] for t in out["tasks"]]
    addresses = {eni(t)[1]["privateIPv4Address"] for t in out["tasks"]}
    assert len(addresses) == 4, "every task gets an address of its own"
    wait_status(ecs, cluster, arns, "RUNNING")
    for arn in arns:
        ecs.stop_task(cluster=cluster, task=arn)
    wait_status(ecs, cluster, arns, "STOPPED")
    again = ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                         networkConfiguration=NETWORK, count=4)["tasks"]
    # The lowest free addresses are reused once released.
    assert {eni(t)[1]["privateIPv4Address"] for t in again} & addresses
    for t in again:
        ecs.stop_task(cluster=cluster, task=t["taskArn"])


def test_a_full_pool_fails_as_fargate_does(fargate, cluster):
    ecs = fargate.client()
    family = platform_task(ecs, cpu="4096", memory="8192")
    # Two hosts of 2 vCPU cannot run a 4 vCPU task.
    out = ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                       networkConfiguration=NETWORK)
    assert out["tasks"] == []
    assert out["failures"] == [{"reason": CAPACITY_UNAVAILABLE}]


def test_validation_errors(fargate, cluster):
    ecs = fargate.client()
    family = platform_task(ecs)
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE")
    assert_error(e, "InvalidParameterException",
                 "Network Configuration must be provided when networkMode 'awsvpc' is specified.")
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                     networkConfiguration=NETWORK,
                     capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    assert_error(e, "InvalidParameterException",
                 "Specifying both a launchType and capacityProviderStrategy is not supported.")
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                     networkConfiguration=NETWORK, overrides={"cpu": "256", "memory": "4096"})
    assert_error(e, "ClientException", "No Fargate configuration exists for given values.")
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                     networkConfiguration=NETWORK, platformVersion="9.9.9")
    assert_error(e, "InvalidParameterException", message_contains="platform version")
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=cluster, taskDefinition=family, launchType="FARGATE",
                     networkConfiguration={"awsvpcConfiguration": {"subnets": []}})
    assert_error(e, "InvalidParameterException", "subnets can not be empty.")
    with pytest.raises(Exception) as e:
        ecs.register_task_definition(**fargate_task_def(unique("bad"), cpu="256", memory="4096"))
    assert_error(e, "ClientException", "No Fargate configuration exists for given values.")
    # A cluster without the FARGATE_SPOT provider cannot use it.
    plain = unique("plain")
    ecs.create_cluster(clusterName=plain)
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=plain, taskDefinition=family, networkConfiguration=NETWORK,
                     capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])
    assert_error(e, "InvalidParameterException", message_contains="not associated with the cluster")
    # An EC2-only definition cannot run on Fargate.
    ec2 = unique("ec2-only")
    ecs.register_task_definition(family=ec2, containerDefinitions=[simple_container()])
    with pytest.raises(Exception) as e:
        ecs.run_task(cluster=cluster, taskDefinition=ec2, launchType="FARGATE")
    assert_error(e, "ClientException", "Task definition does not support launch_type FARGATE.")


def test_aws_cli_run_task_with_the_seed_definition(fargate, cluster):
    family = platform_task(fargate.client(), family=unique("platform-task"))
    res = fargate.aws("ecs", "run-task", "--cluster", cluster, "--task-definition", family,
                      "--launch-type", "FARGATE", "--network-configuration",
                      "awsvpcConfiguration={subnets=[subnet-12345678],securityGroups=[sg-12345678],"
                      "assignPublicIp=ENABLED}").json
    [task] = res["tasks"]
    assert task["launchType"] == "FARGATE"
    fargate.aws("ecs", "wait", "tasks-running", "--cluster", cluster, "--tasks", task["taskArn"])
    fargate.aws("ecs", "stop-task", "--cluster", cluster, "--task", task["taskArn"])
    fargate.aws("ecs", "wait", "tasks-stopped", "--cluster", cluster, "--tasks", task["taskArn"])


def test_a_default_strategy_splits_by_base_and_weight(fargate):
    ecs = fargate.client()
    name = unique("fg-mix")
    ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"],
                       defaultCapacityProviderStrategy=[
                           {"capacityProvider": "FARGATE", "base": 2, "weight": 1},
                           {"capacityProvider": "FARGATE_SPOT", "weight": 3}])
    family = platform_task(ecs)
    out = ecs.run_task(cluster=name, taskDefinition=family, networkConfiguration=NETWORK, count=10)
    assert out["failures"] == []
    providers = [t["capacityProviderName"] for t in out["tasks"]]
    assert providers.count("FARGATE") == 4 and providers.count("FARGATE_SPOT") == 6
    assert all(t["launchType"] == "FARGATE" for t in out["tasks"])
    for t in out["tasks"]:
        ecs.stop_task(cluster=name, task=t["taskArn"])


def service_tasks(ecs, cluster, service, desired="RUNNING"):
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus=desired)["taskArns"]
    return describe(ecs, cluster, arns) if arns else []


def wait_running(ecs, cluster, service, n, timeout=60.0):
    deadline = time.monotonic() + timeout
    tasks = []
    while time.monotonic() < deadline:
        tasks = service_tasks(ecs, cluster, service)
        if len(tasks) == n and all(t["lastStatus"] == "RUNNING" for t in tasks):
            return tasks
        time.sleep(0.2)
    pytest.fail(f"{service} did not run {n} tasks: {[t['lastStatus'] for t in tasks]}")


def test_a_spot_service_replaces_interrupted_tasks(fargate, cluster):
    ecs = fargate.client()
    family = platform_task(ecs)
    svc = ecs.create_service(
        cluster=cluster, serviceName="spot", taskDefinition=family, desiredCount=3,
        capacityProviderStrategy=[{"capacityProvider": "FARGATE", "base": 1, "weight": 0},
                                  {"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        networkConfiguration=NETWORK)["service"]
    assert "launchType" not in svc
    assert svc["capacityProviderStrategy"][1]["capacityProvider"] == "FARGATE_SPOT"
    assert svc["platformVersion"] == "LATEST"
    tasks = wait_running(ecs, cluster, "spot", 3)
    providers = sorted(t["capacityProviderName"] for t in tasks)
    assert providers == ["FARGATE", "FARGATE_SPOT", "FARGATE_SPOT"]
    victim = next(t for t in tasks if t["capacityProviderName"] == "FARGATE_SPOT")
    on_demand = next(t for t in tasks if t["capacityProviderName"] == "FARGATE")

    refused = berth_cli(fargate, "fargate", "interrupt", "--cluster", cluster, on_demand["taskArn"],
                        check=False)
    assert refused.returncode != 0 and "does not run on FARGATE_SPOT" in refused.stderr

    berth_cli(fargate, "fargate", "interrupt", "--cluster", cluster, victim["taskArn"])
    [stopped] = wait_status(ecs, cluster, [victim["taskArn"]], "STOPPED")
    assert stopped["stopCode"] == "SpotInterruption"
    assert stopped["stoppedReason"] == "Your Spot Task was interrupted."
    replaced = wait_running(ecs, cluster, "spot", 3)
    assert victim["taskArn"] not in {t["taskArn"] for t in replaced}
    # The replacement keeps the strategy: one on FARGATE (its base), two on Spot.
    assert sorted(t["capacityProviderName"] for t in replaced) == providers
    ecs.delete_service(cluster=cluster, service="spot", force=True)


def test_the_chaos_rate_interrupts_spot_tasks():
    root = Path(tempfile.mkdtemp(prefix="berth-chaos-"))
    # 3600 per task-hour: each Spot task is interrupted within a second or so.
    server = BerthServer(data_dir=root / "data", log_dir=root / "logs",
                         extra_args=["--spot-interruption-rate", "3600"])
    server.start()
    sim = Simulator(server.endpoint, None, root, 1, cpu=HOST_CPU, memory=HOST_MEMORY)
    try:
        wait_pool(server, 1, sim)
        ecs = server.client()
        name = unique("chaos")
        ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"])
        family = platform_task(ecs)
        out = ecs.run_task(cluster=name, taskDefinition=family, networkConfiguration=NETWORK, count=2,
                           capacityProviderStrategy=[{"capacityProvider": "FARGATE", "base": 1, "weight": 0},
                                                     {"capacityProvider": "FARGATE_SPOT", "weight": 1}])
        by_provider = {t["capacityProviderName"]: t["taskArn"] for t in out["tasks"]}
        [spot] = wait_status(ecs, name, [by_provider["FARGATE_SPOT"]], "STOPPED", timeout=60)
        assert spot["stopCode"] == "SpotInterruption"
        [regular] = describe(ecs, name, [by_provider["FARGATE"]])
        assert regular["lastStatus"] == "RUNNING", "on-demand Fargate tasks are never interrupted"
    finally:
        sim.terminate()
        server.stop()
        remove_tree(root)
