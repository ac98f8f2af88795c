"""Services under faults, driven with boto3 against a real server and
`berth agent --simulate` processes (one per "rack" of hosts):

- lost hosts (Berth's rule beyond ECS): when the agents of a host stay
  disconnected longer than `berth server --lost-agent-timeout`, the service
  tasks on it are recorded STOPPED with a reason naming the host and are
  replaced on other hosts, never running more than maximumPercent of the
  service at once; when the agents come back, the lost tasks stay stopped;
- the server killed with SIGKILL in the middle of a deployment: after the
  restart the deployment completes, within maximumPercent."""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from harness import REGION, BerthServer, berth_bin, remove_tree, unique

TIMEOUT_SECONDS = 3
HOSTS_PER_RACK = 2


class Rack:
    """One simulator process standing in for a few hosts."""

    def __init__(self, endpoint: str, cluster: str, root: Path, zone: str):
        self.args = [
            str(berth_bin()), "agent", "--simulate", str(HOSTS_PER_RACK),
            "--endpoint", endpoint, "--cluster", cluster,
            "--data-dir", str(root), "--cpu", "1024", "--memory", "2048",
            "--zones", zone, "--task-start-delay-ms", "10",
        ]
        self.log_path = root.with_suffix(".log")
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ, AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY="secret",
                   AWS_REGION=REGION)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture
def server():
    root = Path(tempfile.mkdtemp(prefix="berth-lost-"))
    server = BerthServer(root / "data", root / "logs",
                         extra_args=("--lost-agent-timeout", str(TIMEOUT_SECONDS)))
    server.start()
    try:
        yield server, root
    finally:
        server.stop()
        remove_tree(root)


def client(endpoint: str):
    return boto3.client(
        "ecs", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="AKID", aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 2}),
    )


def wait_until(what, check, timeout=60.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(interval)


def instances_by_zone(ecs, cluster):
    arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    if not arns:
        return {}
    found = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)
    zones = {}
    for ci in found["containerInstances"]:
        zone = next(a["value"] for a in ci["attributes"] if a["name"] == "ecs.availability-zone")
        zones.setdefault(zone, []).append(ci)
    return zones


def live_tasks(ecs, cluster):
    arns = ecs.list_tasks(cluster=cluster, serviceName="web", desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return []
    return ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]


def test_tasks_of_a_lost_host_are_replaced_and_stay_stopped(server):
    berth, root = server
    ecs = client(berth.endpoint)
    cluster = unique("lost")
    ecs.create_cluster(clusterName=cluster)
    racks = {zone: Rack(berth.endpoint, cluster, root / zone, zone)
             for zone in ("us-east-1a", "us-east-1b")}
    try:
        def connected():
            zones = instances_by_zone(ecs, cluster)
            return all(len(zones.get(z, [])) == HOSTS_PER_RACK
                       and all(ci["agentConnected"] for ci in zones[z]) for z in racks)
        wait_until("both racks to connect", connected)

        family = unique("lost-app")
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[{"name": "app", "image": "berth-sim/app:1",
                                   "cpu": 64, "memory": 128}],
        )
        ecs.create_service(
            cluster=cluster, serviceName="web", taskDefinition=family, desiredCount=4,
            deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 150},
        )
        ecs.get_waiter("services_stable").wait(
            cluster=cluster, services=["web"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        zones = instances_by_zone(ecs, cluster)
        rack_a = {ci["containerInstanceArn"] for ci in zones["us-east-1a"]}
        before = live_tasks(ecs, cluster)
        on_a = {t["taskArn"] for t in before if t["containerInstanceArn"] in rack_a}
        # The default strategy spreads over zones: half the tasks are on rack a.
        assert len(on_a) == 2, before

        racks["us-east-1a"].kill()
        peak = 0

        def replaced():
            nonlocal peak
            live = live_tasks(ecs, cluster)
            peak = max(peak, len(live))
            running = [t for t in live if t["lastStatus"] == "RUNNING"]
            return (len(running) == 4 and not on_a & {t["taskArn"] for t in live}
                    and all(t["containerInstanceArn"] not in rack_a for t in running))
        wait_until("the lost tasks to be replaced on rack b", replaced,
                   timeout=TIMEOUT_SECONDS + 45)
        assert peak <= 6, f"more than maximumPercent (150 % of 4) tasks at once: {peak}"

        lost = ecs.describe_tasks(cluster=cluster, tasks=sorted(on_a))["tasks"]
        for task in lost:
            assert task["lastStatus"] == "STOPPED", task
            assert task["stopCode"] == "InfrastructureHealth", task
            instance_id = task["containerInstanceArn"].rsplit("/", 1)[1]
            assert task["stoppedReason"] == (
                f"Task lost: the agent on container instance {instance_id} was disconnected "
                f"for more than {TIMEOUT_SECONDS} seconds."), task
        events = [e["message"] for e in
                  ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["events"]]
        assert any("has started 2 tasks" in m for m in events), events

        # The agents come back with the same identities: the lost tasks stay
        # stopped and the service keeps its four tasks on rack b.
        racks["us-east-1a"].start()
        wait_until("rack a to reconnect", connected)
        time.sleep(2)
        again = ecs.describe_tasks(cluster=cluster, tasks=sorted(on_a))["tasks"]
        assert all(t["lastStatus"] == "STOPPED" for t in again), again
        live = live_tasks(ecs, cluster)
        assert len(live) == 4 and all(t["lastStatus"] == "RUNNING" for t in live), live
    finally:
        for rack in racks.values():
            rack.stop()


def test_a_deployment_survives_the_server_killed_midway(server):
    berth, root = server
    ecs = client(berth.endpoint)
    cluster = unique("crash")
    ecs.create_cluster(clusterName=cluster)
    racks = [Rack(berth.endpoint, cluster, root / zone, zone) for zone in ("us-east-1a", "us-east-1b")]
    try:
        def connected():
            arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
            found = ecs.describe_container_instances(
                cluster=cluster, containerInstances=arns)["containerInstances"] if arns else []
            return len(found) == 2 * HOSTS_PER_RACK and all(ci["agentConnected"] for ci in found)
        wait_until("the racks to connect", connected)
        family = unique("crash-app")
        for image in ("berth-sim/app:1", "berth-sim/app:2"):
            ecs.register_task_definition(
                family=family,
                containerDefinitions=[{"name": "app", "image": image, "cpu": 64, "memory": 128}],
            )
        ecs.create_service(
            cluster=cluster, serviceName="web", taskDefinition=f"{family}:1", desiredCount=6,
            deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 150},
        )
        stable = {"Delay": 1, "MaxAttempts": 90}
        ecs.get_waiter("services_stable").wait(cluster=cluster, services=["web"], WaiterConfig=stable)

        ecs.update_service(cluster=cluster, service="web", taskDefinition=f"{family}:2")
        wait_until("the rollout to start", lambda: any(
            t["taskDefinitionArn"].endswith(":2") for t in live_tasks(ecs, cluster)))
        berth.kill()
        berth.start()
        ecs = client(berth.endpoint)
        peak = 0

        def rolled_out():
            nonlocal peak
            live = live_tasks(ecs, cluster)
            peak = max(peak, len(live))
            service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
            return (len(service["deployments"]) == 1
                    and service["deployments"][0]["rolloutState"] == "COMPLETED"
                    and service["runningCount"] == 6
                    and all(t["taskDefinitionArn"].endswith(":2") for t in live))
        wait_until("the deployment to complete after the restart", rolled_out, timeout=90)
        assert peak <= 9, f"more than maximumPercent (150 % of 6) tasks at once: {peak}"
    finally:
        for rack in racks:
            rack.stop()
