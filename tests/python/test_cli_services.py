"""`berth service create|ls|scale|deploy|events|rm` driving the real binary
against the shared test server: the tables they print, the ECS errors they
pass on, and (with `berth agent --simulate` hosts, no Docker) `deploy`
watching a rollout to its end: exit 0 once the service is stable on the new
task definition, 1 when the circuit breaker failed the deployment, 2 on
timeout."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from harness import ACCESS_KEY, REGION, SECRET_KEY, berth_bin, simulated_fleet, td_arn, unique

HOSTS = 3
# A deployment completes once its tasks have run 40 s (the simulated
# containers have no health check); leave room for a slow CI machine.
DEPLOY_TIMEOUT = 150


def run_berth(berth, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION)
    return subprocess.run(
        [str(berth_bin()), *args, "--endpoint", berth.endpoint],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def ok(berth, *args, timeout: float = 60) -> str:
    res = run_berth(berth, *args, timeout=timeout)
    assert res.returncode == 0, f"berth {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


def rows(table: str) -> list[list[str]]:
    """The whitespace-split rows of a table, header first."""
    return [line.split() for line in table.strip().splitlines()]


def no_panic(res: subprocess.CompletedProcess):
    assert "panicked" not in res.stderr and "RUST_BACKTRACE" not in res.stderr, res.stderr


@pytest.fixture
def setup(ecs):
    cluster = unique("clisvc")
    ecs.create_cluster(clusterName=cluster)
    family = unique("clisvc-app")
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": "berth-sim/app", "memory": 64}],
    )
    return cluster, family


def test_cli_service_create_ls_scale_events_rm(berth, ecs, setup):
    cluster, family = setup
    out = ok(berth, "service", "create", "web", "--task-definition", family, "--desired-count", "0",
             "--min-healthy-percent", "50", "--max-percent", "150", "--circuit-breaker", "--cluster", cluster)
    facts = {r[0]: r[1:] for r in rows(out.split("\n\n")[0])}
    assert facts["SERVICE"] == ["web"] and facts["STATUS"] == ["ACTIVE"]
    assert facts["CLUSTER"] == [cluster]
    assert facts["TASK"] == ["DEFINITION", f"{family}:1"]
    assert " ".join(facts["TASKS"]) == "0 desired, 0 running, 0 pending"
    assert " ".join(facts["DEPLOYMENTS"]) == "min 50% healthy, max 150%, circuit breaker"
    deployments = rows(out.split("\n\n")[1])
    assert deployments[0][:2] == ["DEPLOYMENT", "STATUS"]
    assert deployments[1][0].startswith("ecs-svc/") and deployments[1][1] == "PRIMARY"

    described = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    config = described["deploymentConfiguration"]
    assert config["minimumHealthyPercent"] == 50 and config["maximumPercent"] == 150
    assert config["deploymentCircuitBreaker"] == {"enable": True, "rollback": False}

    # --output json prints the raw CreateService response.
    created = json.loads(ok(berth, "service", "create", "api", "--task-definition", f"{family}:1",
                            "--desired-count", "0", "--cluster", cluster, "-o", "json"))
    assert created["service"]["serviceName"] == "api"
    assert created["service"]["taskDefinition"] == td_arn(family, 1)

    table = rows(ok(berth, "service", "ls", "--cluster", cluster))
    assert table[0] == ["NAME", "STATUS", "DESIRED", "RUNNING", "PENDING", "TASK", "DEFINITION", "ROLLOUT"]
    assert [r[0] for r in table[1:]] == ["api", "web"]
    assert table[2][:6] == ["web", "ACTIVE", "0", "0", "0", f"{family}:1"]
    listed = json.loads(ok(berth, "service", "ls", "--cluster", cluster, "-o", "json"))
    assert sorted(s["serviceName"] for s in listed["services"]) == ["api", "web"]

    out = ok(berth, "service", "scale", "web", "2", "--cluster", cluster)
    assert "2 desired" in out
    assert ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["desiredCount"] == 2

    # Without hosts the scheduler reports that it cannot place the tasks.
    deadline = time.monotonic() + 20
    while True:
        out = ok(berth, "service", "events", "web", "--cluster", cluster)
        if "was unable to place a task" in out or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    events = out.strip().splitlines()
    assert events[0].split() == ["TIME", "MESSAGE"]
    assert any("(service web) was unable to place a task" in line for line in events[1:]), out
    for line in events[1:]:
        assert line[:20].endswith("Z") and line[4] == "-" and line[10] == "T", line
    assert len(ok(berth, "service", "events", "web", "--limit", "1", "--cluster", cluster).strip().splitlines()) == 2
    raw = json.loads(ok(berth, "service", "events", "web", "--limit", "1", "--cluster", cluster, "-o", "json"))
    assert len(raw["events"]) == 1 and set(raw["events"][0]) == {"id", "createdAt", "message"}

    # A service scaled above 0 needs --force.
    res = run_berth(berth, "service", "rm", "web", "--cluster", cluster)
    assert res.returncode == 1, res
    assert "error: InvalidParameterException: The service cannot be stopped while it is scaled above 0." in res.stderr
    no_panic(res)
    out = ok(berth, "service", "rm", "web", "--force", "--cluster", cluster)
    assert {r[0]: r[1:] for r in rows(out.split("\n\n")[0])}["STATUS"] == ["DRAINING"]
    ok(berth, "service", "rm", "api", "--cluster", cluster)
    assert rows(ok(berth, "service", "ls", "--cluster", cluster))[1:] == []


def test_cli_service_errors_are_ecs_errors(berth, setup):
    cluster, family = setup
    for args in (
        ("service", "scale", "nosuch", "1"),
        ("service", "deploy", "nosuch"),
        ("service", "events", "nosuch"),
        ("service", "rm", "nosuch"),
    ):
        res = run_berth(berth, *args, "--cluster", cluster)
        assert res.returncode == 1, res
        assert res.stderr.startswith("error: ServiceNotFoundException: "), res.stderr
        assert res.stdout == "", res
        no_panic(res)

    res = run_berth(berth, "service", "ls", "--cluster", unique("nocluster"))
    assert res.returncode == 1 and "error: ClusterNotFoundException: " in res.stderr, res
    res = run_berth(berth, "service", "create", "web", "--task-definition", unique("nofamily"), "--cluster", cluster)
    assert res.returncode == 1 and "error: ClientException: " in res.stderr, res
    # Usage errors are clap's (exit 2), before anything is sent.
    res = run_berth(berth, "service", "scale", "web", "-1", "--cluster", cluster)
    assert res.returncode == 2, res
    no_panic(res)


# ---- with simulated hosts ------------------------------------------------------------


@pytest.fixture
def fleet(berth, ecs, tmp_path):
    cluster = unique("clisvc-sim")
    with simulated_fleet(ecs, berth.endpoint, cluster, tmp_path, HOSTS):
        yield cluster


def test_cli_service_deploy_rolls_out_and_exits_0(berth, ecs, fleet):
    cluster = fleet
    family = unique("clisvc-roll")
    for image in ("berth-sim/app:1", "berth-sim/app:2"):
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[{"name": "app", "image": image, "cpu": 64, "memory": 128}],
        )
    ok(berth, "service", "create", "web", "--task-definition", f"{family}:1", "--desired-count", "3",
       "--cluster", cluster)

    def primary_id():
        deployments = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["deployments"]
        return next(d["id"] for d in deployments if d["status"] == "PRIMARY")

    # A redeploy (no task definition: forceNewDeployment) that cannot finish
    # in a second: exit 2, and the deployment goes on.
    first = primary_id()
    res = run_berth(berth, "service", "deploy", "web", "--timeout", "1", "--cluster", cluster)
    assert res.returncode == 2, res
    assert "error: service web did not become stable within 1s (deployment ecs-svc/" in res.stderr, res
    no_panic(res)
    assert primary_id() != first

    # Events as they happen, until the service is gone.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_"))}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION)
    follow = subprocess.Popen(
        [str(berth_bin()), "service", "events", "web", "--follow", "--limit", "0", "--cluster", cluster,
         "--endpoint", berth.endpoint],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )

    # stdout is a pipe: one line per change, then the verdict.
    res = run_berth(berth, "service", "deploy", "web", "--task-definition", f"{family}:2",
                    "--timeout", str(DEPLOY_TIMEOUT), "--cluster", cluster, timeout=DEPLOY_TIMEOUT + 30)
    assert res.returncode == 0, res
    no_panic(res)
    lines = res.stdout.strip().splitlines()
    assert "\x1b[" not in res.stdout, "no terminal redraws into a pipe"
    assert any("PRIMARY ecs-svc/" in line and f"{family}:2" in line and "IN_PROGRESS" in line for line in lines), lines
    assert any(f"{family}:2: 3/3 running" in line and "3 healthy, COMPLETED" in line for line in lines), lines
    assert any("has reached a steady state" in line for line in lines), lines
    assert lines[-1].startswith(f"Service web is stable: {family}:2 with 3/3 tasks running"), lines

    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    [deployment] = service["deployments"]
    assert deployment["rolloutState"] == "COMPLETED" and deployment["taskDefinition"] == td_arn(family, 2)
    assert service["runningCount"] == 3
    tasks = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    described = ecs.describe_tasks(cluster=cluster, tasks=tasks)["tasks"]
    assert {t["taskDefinitionArn"] for t in described} == {td_arn(family, 2)}

    # A stable service redeployed to what it runs: `ls` shows it, and the
    # events of the rollout are there, newest first.
    table = rows(ok(berth, "service", "ls", "--cluster", cluster))
    assert table[1] == ["web", "ACTIVE", "3", "3", "0", f"{family}:2", "COMPLETED"]
    events = ok(berth, "service", "events", "web", "--cluster", cluster).strip().splitlines()[1:]
    assert "has reached a steady state" in events[0], events
    times = [line.split()[0] for line in events]
    assert times == sorted(times, reverse=True)

    ok(berth, "service", "rm", "web", "--force", "--cluster", cluster)
    try:
        streamed, errors = follow.communicate(timeout=90)
    finally:
        follow.kill()
    assert follow.returncode == 0, errors
    streamed = streamed.strip().splitlines()
    assert any("deployment completed" in line for line in streamed), streamed
    assert any("has stopped 3 running tasks" in line for line in streamed), streamed
    times = [line.split()[0] for line in streamed]
    assert times == sorted(times), "--follow prints oldest first"


def test_cli_service_deploy_fails_with_the_circuit_breaker_and_exits_1(berth, ecs, fleet):
    cluster = fleet
    good = unique("clisvc-good")
    ecs.register_task_definition(
        family=good, containerDefinitions=[{"name": "app", "image": "berth-sim/app", "memory": 64}],
    )
    # The essential container waits for one that never completes, and gives
    # up after its startTimeout: every task fails to start.
    bad = unique("clisvc-bad")
    ecs.register_task_definition(
        family=bad,
        containerDefinitions=[
            {"name": "init", "image": "berth-sim/init", "essential": False, "memory": 64},
            {"name": "app", "image": "berth-sim/app", "memory": 64, "startTimeout": 2,
             "dependsOn": [{"containerName": "init", "condition": "COMPLETE"}]},
        ],
    )
    ok(berth, "service", "create", "web", "--task-definition", good, "--desired-count", "3",
       "--circuit-breaker", "--cluster", cluster)
    res = run_berth(berth, "service", "deploy", "web", "--task-definition", bad, "--timeout", "90",
                    "--cluster", cluster, timeout=120)
    assert res.returncode == 1, res
    no_panic(res)
    assert "error: deployment ecs-svc/" in res.stderr, res
    assert "failed: ECS deployment circuit breaker: tasks failed to start." in res.stderr, res
    assert any("FAILED" in line and f"{bad}:1" in line for line in res.stdout.splitlines()), res.stdout

    # --output json: nothing live, the final service, and the same status.
    res = run_berth(berth, "service", "deploy", "web", "--task-definition", bad, "--timeout", "30",
                    "--cluster", cluster, "-o", "json", timeout=60)
    assert res.returncode == 1, res
    primary = [d for d in json.loads(res.stdout)["deployments"] if d["status"] == "PRIMARY"]
    assert primary[0]["rolloutState"] == "FAILED"

    ok(berth, "service", "rm", "web", "--force", "--cluster", cluster)
