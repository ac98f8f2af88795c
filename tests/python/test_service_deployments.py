"""Service deployments and revisions through boto3: ListServiceDeployments,
DescribeServiceDeployments and DescribeServiceRevisions (shapes, filters,
pages, failures and errors, durability across a restart), a rollout and a
circuit-breaker rollback on `berth agent --simulate` hosts (no Docker), and
ListServicesByNamespace."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from harness import REGION, assert_error, berth_bin, cluster_arn, td_arn, unique
from test_services import HOSTS, fleet  # noqa: F401  (`fleet` is a fixture)

ACCOUNT = "000000000000"
FAST = {"Delay": 1, "MaxAttempts": 60}


def service_arn(cluster: str, name: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}"


def deployment_arn(cluster: str, service: str, id_: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/{cluster}/{service}/{id_}"


def revision_arn(cluster: str, service: str, id_: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-revision/{cluster}/{service}/{id_}"


def register(ecs, family: str, image: str, **container):
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": image, "memory": 64, **container}],
    )


def listed(ecs, cluster: str, service: str, **filters) -> list[dict]:
    """Every page (botocore has no paginator for ListServiceDeployments)."""
    found, token = [], None
    while True:
        page = ecs.list_service_deployments(
            cluster=cluster, service=service, **filters, **({"nextToken": token} if token else {})
        )
        found += page["serviceDeployments"]
        token = page.get("nextToken")
        if not token:
            return found


def wait_for(what, probe, timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


def settled(ecs, cluster: str, service: str, count: int) -> list[dict]:
    """The service's deployments once `count` exist and none is ongoing."""
    ongoing = {"PENDING", "IN_PROGRESS", "STOP_REQUESTED", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"}

    def probe():
        found = listed(ecs, cluster, service)
        done = len(found) == count and not any(d["status"] in ongoing for d in found)
        return found if done else None

    return wait_for(f"{count} finished service deployments of {service}", probe)


@pytest.fixture
def setup(ecs):
    cluster = unique("sd")
    ecs.create_cluster(clusterName=cluster)
    family = unique("sd-app")
    register(ecs, family, "berth-sim/app:1")
    register(ecs, family, "berth-sim/app:2")
    return cluster, family


def test_idle_service_history_shapes_filters_and_pages(ecs, setup):
    """Without hosts a service of 0 tasks completes each deployment at once."""
    cluster, family = setup
    created = ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=f"{family}:1", desiredCount=0
    )["service"]
    [first] = settled(ecs, cluster, "web", 1)
    first_id = created["deployments"][0]["id"].removeprefix("ecs-svc/")
    assert first == {
        "serviceDeploymentArn": deployment_arn(cluster, "web", first_id),
        "serviceArn": service_arn(cluster, "web"),
        "clusterArn": cluster_arn(cluster),
        "createdAt": first["createdAt"],
        "startedAt": first["startedAt"],
        "finishedAt": first["finishedAt"],
        "targetServiceRevisionArn": revision_arn(cluster, "web", first_id),
        "status": "SUCCESSFUL",
    }
    assert first["createdAt"] <= first["startedAt"] <= first["finishedAt"]

    time.sleep(0.05)  # distinct creation times for the createdAt filter
    ecs.update_service(cluster=cluster, service="web", taskDefinition=f"{family}:2")
    second, again = settled(ecs, cluster, "web", 2)
    assert again == first, "a finished service deployment no longer changes"
    assert second["status"] == "SUCCESSFUL"
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert service["currentServiceDeployment"] == second["serviceDeploymentArn"]

    # Filters: status and creation time.
    assert listed(ecs, cluster, "web", status=["SUCCESSFUL"]) == [second, first]
    assert listed(ecs, cluster, "web", status=["IN_PROGRESS", "STOPPED"]) == []
    assert listed(ecs, cluster, "web", createdAt={"after": second["createdAt"]}) == [second]
    assert listed(ecs, cluster, "web", createdAt={"before": first["createdAt"]}) == [first]
    # By ARN, and a page at a time.
    page = ecs.list_service_deployments(cluster=cluster_arn(cluster), service=service_arn(cluster, "web"),
                                        maxResults=1)
    assert page["serviceDeployments"] == [second] and page["nextToken"]
    rest = ecs.list_service_deployments(cluster=cluster, service="web", nextToken=page["nextToken"])
    assert rest["serviceDeployments"] == [first] and "nextToken" not in rest

    out = ecs.describe_service_deployments(
        serviceDeploymentArns=[second["serviceDeploymentArn"], first["serviceDeploymentArn"]]
    )
    assert out["failures"] == []
    newer, older = out["serviceDeployments"]
    assert newer["status"] == "SUCCESSFUL" and "statusReason" not in newer
    assert newer["targetServiceRevision"] == {
        "arn": second["targetServiceRevisionArn"],
        "requestedTaskCount": 0, "runningTaskCount": 0, "pendingTaskCount": 0,
    }
    assert newer["sourceServiceRevisions"] == [{
        "arn": first["targetServiceRevisionArn"],
        "requestedTaskCount": 0, "runningTaskCount": 0, "pendingTaskCount": 0,
    }]
    assert older["sourceServiceRevisions"] == []
    assert "rollback" not in newer and "stoppedAt" not in newer
    assert newer["deploymentConfiguration"]["maximumPercent"] == 200
    assert newer["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert newer["deploymentCircuitBreaker"] == {"status": "DISABLED", "failureCount": 0, "threshold": 0}
    assert newer["alarms"] == {"status": "DISABLED"}
    assert newer["updatedAt"] >= newer["finishedAt"]

    revisions = ecs.describe_service_revisions(
        serviceRevisionArns=[first["targetServiceRevisionArn"], second["targetServiceRevisionArn"]]
    )
    assert revisions["failures"] == []
    r1, r2 = revisions["serviceRevisions"]
    assert r1["serviceRevisionArn"] == first["targetServiceRevisionArn"]
    assert (r1["taskDefinition"], r2["taskDefinition"]) == (td_arn(family, 1), td_arn(family, 2))
    assert r2["containerImages"] == [{"containerName": "app", "image": "berth-sim/app:2"}]
    assert r2["launchType"] == "EC2"
    assert r2["serviceArn"] == service_arn(cluster, "web") and r2["clusterArn"] == cluster_arn(cluster)
    assert r2["guardDutyEnabled"] is False
    assert r2["createdAt"] == second["createdAt"]

    # A redeploy of the same task definition is a service deployment too,
    # and stops the one in progress when another follows at once.
    ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)
    ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)
    statuses = [d["status"] for d in settled(ecs, cluster, "web", 4)]
    assert statuses[0] == "SUCCESSFUL" and statuses[2:] == ["SUCCESSFUL", "SUCCESSFUL"]
    assert statuses[1] in ("SUCCESSFUL", "STOPPED")
    stopped = listed(ecs, cluster, "web", status=["STOPPED"])
    if stopped:
        [described] = ecs.describe_service_deployments(
            serviceDeploymentArns=[stopped[0]["serviceDeploymentArn"]])["serviceDeployments"]
        assert described["statusReason"] == "A newer service deployment started."
        assert "stoppedAt" in described

    # A deleted service's deployments go with it.
    ecs.delete_service(cluster=cluster, service="web")
    assert ecs.list_service_deployments(cluster=cluster, service="web")["serviceDeployments"] == []
    gone = ecs.describe_service_deployments(serviceDeploymentArns=[first["serviceDeploymentArn"]])
    assert gone["serviceDeployments"] == []
    assert gone["failures"] == [{"arn": first["serviceDeploymentArn"], "reason": "MISSING"}]


def test_unknown_arns_and_bad_input(ecs, setup):
    cluster, family = setup
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=family, desiredCount=0)
    [first] = settled(ecs, cluster, "web", 1)

    unknown = [
        deployment_arn(cluster, "web", "1234567890"),
        deployment_arn(cluster, "nope", "1"),
        deployment_arn("no-such-cluster", "web", "1"),
        f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service-deployment/{cluster}/web/1",
    ]
    out = ecs.describe_service_deployments(serviceDeploymentArns=[first["serviceDeploymentArn"], *unknown])
    assert [d["serviceDeploymentArn"] for d in out["serviceDeployments"]] == [first["serviceDeploymentArn"]]
    assert out["failures"] == [{"arn": a, "reason": "MISSING"} for a in unknown]
    # A revision ARN is no service deployment ARN, and the reverse.
    with pytest.raises(ClientError) as e:
        ecs.describe_service_deployments(serviceDeploymentArns=[first["targetServiceRevisionArn"]])
    assert_error(e, "InvalidParameterException", message_contains=first["targetServiceRevisionArn"])
    with pytest.raises(ClientError) as e:
        ecs.describe_service_revisions(serviceRevisionArns=[first["serviceDeploymentArn"]])
    assert_error(e, "InvalidParameterException", message_contains="Invalid service-revision ARN")
    with pytest.raises(ClientError) as e:
        ecs.describe_service_deployments(serviceDeploymentArns=["web"])
    assert_error(e, "InvalidParameterException", "Invalid service-deployment ARN: web")

    revisions = ecs.describe_service_revisions(
        serviceRevisionArns=[revision_arn(cluster, "web", "1"), first["targetServiceRevisionArn"]]
    )
    assert [r["serviceRevisionArn"] for r in revisions["serviceRevisions"]] == [first["targetServiceRevisionArn"]]
    assert revisions["failures"] == [{"arn": revision_arn(cluster, "web", "1"), "reason": "MISSING"}]

    too_many = [deployment_arn(cluster, "web", str(n)) for n in range(21)]
    with pytest.raises(ClientError) as e:
        ecs.describe_service_deployments(serviceDeploymentArns=too_many)
    assert_error(e, "InvalidParameterException",
                 "serviceDeploymentArns must list between 1 and 20 ARNs, got 21.")
    with pytest.raises(ClientError) as e:
        ecs.describe_service_revisions(serviceRevisionArns=[revision_arn(cluster, "web", str(n)) for n in range(21)])
    assert_error(e, "InvalidParameterException", "serviceRevisionArns must list between 1 and 20 ARNs, got 21.")
    with pytest.raises(ClientError) as e:
        ecs.describe_service_revisions(serviceRevisionArns=[])
    assert_error(e, "InvalidParameterException", message_contains="got 0")

    with pytest.raises(ClientError) as e:
        ecs.list_service_deployments(cluster=cluster, service="nope")
    assert_error(e, "ServiceNotFoundException")
    with pytest.raises(ClientError) as e:
        ecs.list_service_deployments(cluster="no-such-cluster", service="web")
    assert_error(e, "ClusterNotFoundException")
    with pytest.raises(ClientError) as e:
        ecs.list_service_deployments(cluster=cluster, service="web", maxResults=101)
    assert_error(e, "InvalidParameterException", message_contains="maxResults")
    with pytest.raises(ClientError) as e:
        ecs.list_service_deployments(cluster=cluster, service="web",
                                     createdAt={"after": first["createdAt"].timestamp() + 10,
                                                "before": first["createdAt"]})
    assert_error(e, "InvalidParameterException", message_contains="createdAt")
    with pytest.raises(ClientError) as e:
        ecs.list_service_deployments(cluster=cluster, service="web", nextToken="not-a-token")
    assert_error(e, "InvalidParameterException", message_contains="nextToken")


def test_history_survives_a_restart(own_berth):
    ecs = own_berth.client()
    ecs.create_cluster(clusterName="keep")
    register(ecs, "keep-app", "berth-sim/app:1")
    register(ecs, "keep-app", "berth-sim/app:2")
    ecs.create_service(cluster="keep", serviceName="web", taskDefinition="keep-app:1", desiredCount=0)
    settled(ecs, "keep", "web", 1)
    ecs.update_service(cluster="keep", service="web", taskDefinition="keep-app:2")
    before = settled(ecs, "keep", "web", 2)
    arns = [d["serviceDeploymentArn"] for d in before]
    described = ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"]
    revisions = ecs.describe_service_revisions(
        serviceRevisionArns=[d["targetServiceRevisionArn"] for d in before])["serviceRevisions"]

    own_berth.crash_restart()
    ecs = own_berth.client()
    assert listed(ecs, "keep", "web") == before
    assert ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"] == described
    again = ecs.describe_service_revisions(serviceRevisionArns=[d["targetServiceRevisionArn"] for d in before])
    assert again["serviceRevisions"] == revisions and again["failures"] == []


def test_list_services_by_namespace(ecs):
    namespace = unique("ns")
    with pytest.raises(ClientError) as e:
        ecs.list_services_by_namespace(namespace=namespace)
    assert_error(e, "NamespaceNotFoundException")
    with pytest.raises(ClientError) as e:
        ecs.list_services_by_namespace(namespace=" ")
    assert_error(e, "InvalidParameterException")

    # A cluster's Service Connect default is the one way a namespace exists
    # in Berth; no service can join it (Service Connect is not supported).
    cluster = unique("ns-cluster")
    ecs.create_cluster(clusterName=cluster, serviceConnectDefaults={"namespace": namespace})
    family = unique("ns-app")
    register(ecs, family, "berth-sim/app:1")
    ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=family, desiredCount=0)
    out = ecs.list_services_by_namespace(namespace=namespace)
    assert out["serviceArns"] == [] and "nextToken" not in out
    pages = list(ecs.get_paginator("list_services_by_namespace").paginate(namespace=namespace))
    assert [a for p in pages for a in p["serviceArns"]] == []
    with pytest.raises(ClientError) as e:
        ecs.list_services_by_namespace(namespace=namespace, maxResults=0)
    assert_error(e, "InvalidParameterException")


# ---- with simulated hosts ------------------------------------------------------------


def test_rollout_on_simulated_hosts_is_recorded(ecs, fleet):  # noqa: F811  (the fixture)
    cluster = fleet
    family = unique("sd-sim-app")
    register(ecs, family, "berth-sim/app:1", cpu=64)
    register(ecs, family, "berth-sim/app:2", cpu=64)
    ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=f"{family}:1", desiredCount=2,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": False}},
    )
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=["web"], WaiterConfig=FAST)
    # services-stable only wants the tasks running; the rollout completes
    # once they count as healthy (40 s without a health check), so this
    # deployment stops the first one before it could.
    ecs.update_service(cluster=cluster, service="web", taskDefinition=f"{family}:2")
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=["web"], WaiterConfig=FAST)
    second, first = settled(ecs, cluster, "web", 2)
    assert (second["status"], first["status"]) == ("SUCCESSFUL", "STOPPED")
    assert first["statusReason"] == "A newer service deployment started."

    newer, older = ecs.describe_service_deployments(
        serviceDeploymentArns=[second["serviceDeploymentArn"], first["serviceDeploymentArn"]]
    )["serviceDeployments"]
    # Counts as the deployments finished: all of the target, none left of the source.
    assert newer["targetServiceRevision"] == {
        "arn": second["targetServiceRevisionArn"],
        "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0,
    }
    assert newer["sourceServiceRevisions"] == [{
        "arn": first["targetServiceRevisionArn"],
        "requestedTaskCount": 0, "runningTaskCount": 0, "pendingTaskCount": 0,
    }]
    # The stopped one keeps the counts it had when it stopped.
    assert older["targetServiceRevision"]["runningTaskCount"] == 2
    assert older["sourceServiceRevisions"] == []
    assert older["stoppedAt"] == older["finishedAt"] <= newer["createdAt"]
    assert newer["deploymentCircuitBreaker"] == {"status": "MONITORING_COMPLETE", "failureCount": 0, "threshold": 3}
    assert newer["deploymentConfiguration"]["deploymentCircuitBreaker"] == {"enable": True, "rollback": False}
    assert "rollback" not in newer

    revisions = ecs.describe_service_revisions(
        serviceRevisionArns=[first["targetServiceRevisionArn"], second["targetServiceRevisionArn"]]
    )["serviceRevisions"]
    assert [r["taskDefinition"] for r in revisions] == [td_arn(family, 1), td_arn(family, 2)]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"])
    assert {t["taskDefinitionArn"] for t in tasks["tasks"]} == {td_arn(family, 2)}

    ecs.delete_service(cluster=cluster, service="web", force=True)
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=["web"], WaiterConfig=FAST)


def _agent_supports(flag: str) -> bool:
    try:
        out = subprocess.run([str(berth_bin()), "agent", "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return flag in out.stdout


@pytest.fixture
def crashing_fleet(berth, ecs, tmp_path):
    """Simulated hosts whose containers exit after 4 s and whose health
    checks pass after 1.5 s: a task with a health check is replaced without
    blame, one without dies before it could count as healthy and fails its
    deployment."""
    if not _agent_supports("--task-healthy-after-ms"):
        pytest.skip("this berth binary cannot simulate health checks")
    cluster = unique("sd-crash")
    ecs.create_cluster(clusterName=cluster)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDEXAMPLE", AWS_SECRET_ACCESS_KEY="secret", AWS_REGION=REGION)
    log_path = tmp_path / "simulator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(berth_bin()), "agent", "--simulate", str(HOSTS), "--endpoint", berth.endpoint,
             "--cluster", cluster, "--data-dir", str(tmp_path / "agent"),
             "--cpu", "1024", "--memory", "2048", "--task-start-delay-ms", "10",
             "--task-run-seconds", "4", "--task-healthy-after-ms", "1500"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        wait_for("the simulated hosts", lambda: len(ecs.list_container_instances(cluster=cluster)
                                                    ["containerInstanceArns"]) == HOSTS)
        yield cluster
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_circuit_breaker_rollback_is_recorded(ecs, crashing_fleet):
    cluster = crashing_fleet
    family = unique("sd-crash-app")
    check = {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 2, "retries": 1}
    register(ecs, family, "berth-sim/app:good", cpu=64, healthCheck=check)
    register(ecs, family, "berth-sim/app:bad", cpu=64)
    ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=f"{family}:1", desiredCount=2,
        deploymentConfiguration={"deploymentCircuitBreaker": {
            "enable": True, "rollback": True, "thresholdConfiguration": {"type": "COUNT", "value": 2}}},
    )
    [good] = settled(ecs, cluster, "web", 1)
    assert good["status"] == "SUCCESSFUL"
    ecs.update_service(cluster=cluster, service="web", taskDefinition=f"{family}:2")

    # While the rollback replaces it, the failed deployment stays listed:
    # ACTIVE, FAILED, next to the rollback, PRIMARY.
    def failed_and_rolling_back():
        deployments = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]["deployments"]
        states = [(d["status"], d["rolloutState"]) for d in deployments]
        return deployments if ("ACTIVE", "FAILED") in states and states[0] == ("PRIMARY", "IN_PROGRESS") else None

    deployments = wait_for("the failed deployment next to its rollback", failed_and_rolling_back, every=0.1)
    failed = next(d for d in deployments if d["rolloutState"] == "FAILED")
    assert failed["taskDefinition"] == td_arn(family, 2)
    assert failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert deployments[0]["taskDefinition"] == td_arn(family, 1)
    assert deployments[0]["rolloutStateReason"].startswith(
        "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/")

    bad, again = settled(ecs, cluster, "web", 2)
    assert again["serviceDeploymentArn"] == good["serviceDeploymentArn"], "a rollback is no new service deployment"
    assert bad["status"] == "ROLLBACK_SUCCESSFUL"
    assert bad["statusReason"] == "ECS deployment circuit breaker: tasks failed to start."
    [described] = ecs.describe_service_deployments(
        serviceDeploymentArns=[bad["serviceDeploymentArn"]])["serviceDeployments"]
    rollback = described["rollback"]
    assert rollback["serviceRevisionArn"] == good["targetServiceRevisionArn"]
    assert rollback["reason"].startswith("ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/")
    assert described["createdAt"] <= rollback["startedAt"] <= described["finishedAt"]
    assert described["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert described["deploymentCircuitBreaker"]["threshold"] == 2
    assert described["deploymentCircuitBreaker"]["failureCount"] >= 2
    assert described["sourceServiceRevisions"][0]["arn"] == good["targetServiceRevisionArn"]
    assert described["targetServiceRevision"]["requestedTaskCount"] == 0
    # Once the rollback completed, only it is listed.
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert [d["taskDefinition"] for d in service["deployments"]] == [td_arn(family, 1)]

    ecs.delete_service(cluster=cluster, service="web", force=True)
