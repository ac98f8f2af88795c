"""`berth agent --simulate N` as its own process against the shared test server:
the simulated hosts are real container instances to boto3 (registered, connected,
spread over three availability zones, carrying the custom attributes), run the
tasks RunTask places on them, honour StopTask, and the process exits cleanly on
SIGTERM. No Docker is involved: the hosts run their containers on the fake runtime."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness import REGION, berth_bin, unique

HOSTS = 20
READY_TIMEOUT = 60.0


def wait_for(what, check, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what} within {timeout:.0f}s (last: {last!r})", pytrace=False)


def describe_instances(ecs, cluster):
    arns = []
    for page in ecs.get_paginator("list_container_instances").paginate(cluster=cluster):
        arns.extend(page["containerInstanceArns"])
    if not arns:
        return []
    return ecs.describe_container_instances(cluster=cluster, containerInstances=arns)["containerInstances"]


def attribute(instance, name):
    for a in instance.get("attributes", []):
        if a["name"] == name:
            return a.get("value")
    return None


class Simulator:
    """One `berth agent --simulate` process; its output goes to a log file."""

    def __init__(self, endpoint: str, cluster: str, root: Path, *extra: str):
        self.log_path = root / "simulator.log"
        env = dict(os.environ)
        env.update({
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_REGION": REGION,
            "RUST_BACKTRACE": "1",
        })
        env.pop("BERTH_LOG", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(berth_bin()), "agent",
                    "--simulate", str(HOSTS),
                    "--endpoint", endpoint,
                    "--cluster", cluster,
                    "--data-dir", str(root / "agent"),
                    "--cpu", "1024",
                    "--memory", "2048",
                    "--task-start-delay-ms", "10",
                    "--attributes", "fleet=sim,tier=test",
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 15.0):
        """SIGTERM and wait; returns the exit code, or None when it had to be killed."""
        if not self.alive():
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


@pytest.fixture
def fleet(berth, ecs, tmp_path):
    cluster = unique("sim")
    ecs.create_cluster(clusterName=cluster)
    sim = Simulator(berth.endpoint, cluster, tmp_path)
    try:
        yield sim, cluster
    finally:
        sim.terminate()


def test_simulated_hosts_register_run_tasks_and_stop_cleanly(ecs, fleet):
    sim, cluster = fleet

    def all_connected():
        assert sim.alive(), f"the simulator exited early:\n{sim.log()[-3000:]}"
        found = describe_instances(ecs, cluster)
        return found if len(found) == HOSTS and all(ci["agentConnected"] for ci in found) else None

    instances = wait_for(f"{HOSTS} connected simulated hosts", all_connected, timeout=READY_TIMEOUT)
    zones = collections.Counter(attribute(ci, "ecs.availability-zone") for ci in instances)
    assert zones == {"us-east-1a": 7, "us-east-1b": 7, "us-east-1c": 6}, zones
    assert len({ci["ec2InstanceId"] for ci in instances}) == HOSTS
    for ci in instances:
        assert attribute(ci, "fleet") == "sim" and attribute(ci, "tier") == "test"
        assert ci["status"] == "ACTIVE"
        registered = {r["name"]: r for r in ci["registeredResources"]}
        assert registered["CPU"]["integerValue"] == 1024
        assert registered["MEMORY"]["integerValue"] == 2048
    assert "all simulated hosts registered and connected" in sim.log()

    family = unique("sim-app")
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": "berth-sim/app", "cpu": 64, "memory": 128}],
    )
    out = ecs.run_task(cluster=cluster, taskDefinition=family, count=10)
    assert out["failures"] == []
    arns = [t["taskArn"] for t in out["tasks"]]
    assert len(arns) == 10

    def statuses():
        return [t["lastStatus"] for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]]

    wait_for("10 tasks RUNNING", lambda: statuses() == ["RUNNING"] * 10 or None)
    placed_on = {t["containerInstanceArn"] for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]}
    assert placed_on <= {ci["containerInstanceArn"] for ci in instances}

    ecs.stop_task(cluster=cluster, task=arns[0], reason="simulated stop")
    waiter = ecs.get_waiter("tasks_stopped")
    waiter.wait(cluster=cluster, tasks=[arns[0]], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    stopped = ecs.describe_tasks(cluster=cluster, tasks=[arns[0]])["tasks"][0]
    assert stopped["stoppedReason"] == "simulated stop"
    assert stopped["stopCode"] == "UserInitiated"
    assert statuses()[1:] == ["RUNNING"] * 9

    assert sim.terminate() == 0, sim.log()[-3000:]
    assert "simulated hosts stopped" in sim.log()
    wait_for(
        "every simulated host disconnected",
        lambda: all(not ci["agentConnected"] for ci in describe_instances(ecs, cluster)),
    )


def test_simulated_tasks_end_after_their_run_time(berth, ecs, tmp_path):
    cluster = unique("sim-run")
    ecs.create_cluster(clusterName=cluster)
    sim = Simulator(berth.endpoint, cluster, tmp_path, "--task-run-seconds", "1", "--zones", "eu-x-1a,eu-x-1b")
    try:
        instances = wait_for(
            f"{HOSTS} connected simulated hosts",
            lambda: (lambda found: found if len(found) == HOSTS and all(c["agentConnected"] for c in found) else None)(
                describe_instances(ecs, cluster)),
            timeout=READY_TIMEOUT,
        )
        zones = collections.Counter(attribute(ci, "ecs.availability-zone") for ci in instances)
        assert zones == {"eu-x-1a": 10, "eu-x-1b": 10}, zones

        family = unique("sim-batch")
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[{"name": "job", "image": "berth-sim/job", "memory": 64}],
        )
        arns = [t["taskArn"] for t in ecs.run_task(cluster=cluster, taskDefinition=family, count=5)["tasks"]]
        waiter = ecs.get_waiter("tasks_stopped")
        waiter.wait(cluster=cluster, tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]:
            assert task["stopCode"] == "EssentialContainerExited"
            assert task["containers"][0]["exitCode"] == 0
            assert "startedAt" in task
    finally:
        assert sim.terminate() == 0, sim.log()[-3000:]


def test_simulate_rejects_bad_flags(tmp_path):
    for args in (
        ["--simulate", "0"],
        ["--cpu", "1024"],  # simulation options need --simulate
        ["--simulate", "2", "--zones", "a", "--availability-zone", "b"],
        ["--simulate", "2", "--task-run-seconds", "soon"],
    ):
        proc = subprocess.run(
            [str(berth_bin()), "agent", "--data-dir", str(tmp_path), *args],
            capture_output=True, text=True, timeout=30,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
