"""Services through boto3 and aws-cli: CreateService, DescribeServices,
ListServices, UpdateService and DeleteService shapes and errors, and (with
`berth agent --simulate` hosts, no Docker) a service that the
`services_stable` / `services-stable` waiters see reach its desired count,
roll out a new task definition, and drain to INACTIVE."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from harness import REGION, assert_error, cluster_arn, simulated_fleet, td_arn, unique

ACCOUNT = "000000000000"


def service_arn(cluster: str, name: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{name}"


@pytest.fixture
def setup(ecs):
    cluster = unique("svc")
    ecs.create_cluster(clusterName=cluster)
    family = unique("svc-app")
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": "berth-sim/app", "memory": 64}],
    )
    return cluster, family


def test_create_service_shape(ecs, setup):
    cluster, family = setup
    out = ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=family, desiredCount=0,
        tags=[{"key": "team", "value": "a"}],
    )["service"]
    assert out["serviceArn"] == service_arn(cluster, "web")
    assert out["serviceName"] == "web"
    assert out["clusterArn"] == cluster_arn(cluster)
    assert out["status"] == "ACTIVE"
    assert out["desiredCount"] == 0 and out["runningCount"] == 0 and out["pendingCount"] == 0
    assert out["taskDefinition"] == td_arn(family, 1)
    assert out["launchType"] == "EC2"
    assert out["schedulingStrategy"] == "REPLICA"
    assert out["deploymentController"] == {"type": "ECS"}
    config = out["deploymentConfiguration"]
    assert config["maximumPercent"] == 200 and config["minimumHealthyPercent"] == 100
    assert config["deploymentCircuitBreaker"] == {"enable": False, "rollback": False}
    [deployment] = out["deployments"]
    assert deployment["status"] == "PRIMARY"
    assert deployment["id"].startswith("ecs-svc/") and len(deployment["id"]) == len("ecs-svc/") + 19
    assert deployment["taskDefinition"] == td_arn(family, 1)
    assert deployment["rolloutState"] == "IN_PROGRESS"
    assert deployment["rolloutStateReason"] == f"ECS deployment {deployment['id']} in progress."
    assert "createdAt" in out

    described = ecs.describe_services(cluster=cluster, services=["web"])
    assert described["failures"] == []
    assert "tags" not in described["services"][0]
    with_tags = ecs.describe_services(cluster=cluster, services=[service_arn(cluster, "web")], include=["TAGS"])
    assert with_tags["services"][0]["tags"] == [{"key": "team", "value": "a"}]

    clusters = ecs.describe_clusters(clusters=[cluster])["clusters"]
    assert clusters[0]["activeServicesCount"] == 1

    arn = service_arn(cluster, "web")
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}])
    ecs.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "dev"}]
    with pytest.raises(ClientError) as e:
        ecs.list_tags_for_resource(resourceArn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/web")
    assert_error(e, "InvalidParameterException")


def test_create_service_errors(ecs, setup):
    cluster, family = setup
    ecs.create_service(cluster=cluster, serviceName="dup", taskDefinition=family, desiredCount=0)
    # The same request again is idempotent; different parameters are not.
    again = ecs.create_service(cluster=cluster, serviceName="dup", taskDefinition=family, desiredCount=0)
    assert again["service"]["serviceName"] == "dup"
    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName="dup", taskDefinition=family, desiredCount=2)
    assert_error(e, "InvalidParameterException", "Creation of service was not idempotent.")

    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName="daemon", taskDefinition=family,
                           schedulingStrategy="DAEMON", desiredCount=1)
    assert_error(e, "InvalidParameterException",
                 "The daemon scheduling strategy does not support a desired count for services.")

    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName="nope", taskDefinition="missing-family", desiredCount=1)
    assert_error(e, "ClientException")

    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster="no-such-cluster", serviceName="x", taskDefinition=family, desiredCount=1)
    assert_error(e, "ClusterNotFoundException")

    with pytest.raises(ClientError) as e:
        ecs.create_service(cluster=cluster, serviceName="bad name!", taskDefinition=family, desiredCount=1)
    assert_error(e, "InvalidParameterException")


def test_describe_services_missing_and_limits(ecs, setup):
    cluster, family = setup
    ecs.create_service(cluster=cluster, serviceName="here", taskDefinition=family, desiredCount=0)
    out = ecs.describe_services(cluster=cluster, services=["here", "gone"])
    assert [s["serviceName"] for s in out["services"]] == ["here"]
    assert out["failures"] == [{"arn": service_arn(cluster, "gone"), "reason": "MISSING"}]
    with pytest.raises(ClientError) as e:
        ecs.describe_services(cluster=cluster, services=[f"s{i}" for i in range(11)])
    assert_error(e, "InvalidParameterException")


def test_list_services_pages_and_filters(ecs, setup):
    cluster, family = setup
    names = [f"svc-{i:02d}" for i in range(12)]
    for name in names:
        ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=family, desiredCount=0)
    first = ecs.list_services(cluster=cluster)
    assert len(first["serviceArns"]) == 10 and "nextToken" in first
    second = ecs.list_services(cluster=cluster, nextToken=first["nextToken"])
    assert len(second["serviceArns"]) == 2 and "nextToken" not in second
    assert sorted(first["serviceArns"] + second["serviceArns"]) == sorted(service_arn(cluster, n) for n in names)
    paged = [a for p in ecs.get_paginator("list_services").paginate(cluster=cluster) for a in p["serviceArns"]]
    assert len(paged) == 12
    assert len(ecs.list_services(cluster=cluster, launchType="EC2", maxResults=100)["serviceArns"]) == 12
    assert ecs.list_services(cluster=cluster, launchType="EXTERNAL")["serviceArns"] == []
    assert ecs.list_services(cluster=cluster, schedulingStrategy="DAEMON")["serviceArns"] == []
    # DRAINING services are hidden.
    ecs.delete_service(cluster=cluster, service=names[0])
    listed = [a for p in ecs.get_paginator("list_services").paginate(cluster=cluster) for a in p["serviceArns"]]
    assert service_arn(cluster, names[0]) not in listed and len(listed) == 11


def test_update_service_deployments(ecs, setup):
    cluster, family = setup
    created = ecs.create_service(cluster=cluster, serviceName="web", taskDefinition=family, desiredCount=0)["service"]
    first_id = created["deployments"][0]["id"]

    # desiredCount only: the PRIMARY deployment changes in place.
    scaled = ecs.update_service(cluster=cluster, service="web", desiredCount=0)["service"]
    assert [d["id"] for d in scaled["deployments"]] == [first_id]

    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "app", "image": "berth-sim/app:2", "memory": 64}],
    )
    updated = ecs.update_service(cluster=cluster, service="web", taskDefinition=f"{family}:2")["service"]
    assert updated["taskDefinition"] == td_arn(family, 2)
    primary = updated["deployments"][0]
    assert primary["status"] == "PRIMARY" and primary["id"] != first_id
    assert primary["taskDefinition"] == td_arn(family, 2)
    forced = ecs.update_service(cluster=cluster, service="web", forceNewDeployment=True)["service"]
    assert forced["deployments"][0]["id"] not in (first_id, primary["id"])
    assert forced["deployments"][0]["taskDefinition"] == td_arn(family, 2)

    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service="nope", desiredCount=1)
    assert_error(e, "ServiceNotFoundException")


def test_delete_service(ecs, setup):
    cluster, family = setup
    ecs.create_service(cluster=cluster, serviceName="busy", taskDefinition=family, desiredCount=2)
    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster=cluster, service="busy")
    assert_error(e, "InvalidParameterException", "The service cannot be stopped while it is scaled above 0.")
    deleted = ecs.delete_service(cluster=cluster, service="busy", force=True)["service"]
    assert deleted["status"] in ("DRAINING", "INACTIVE")
    assert deleted["desiredCount"] == 0
    # Nothing ran, so the service goes INACTIVE at once.
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=["busy"],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    with pytest.raises(ClientError) as e:
        ecs.update_service(cluster=cluster, service="busy", desiredCount=1)
    assert_error(e, "ServiceNotActiveException")
    # An INACTIVE service's name can be used again.
    again = ecs.create_service(cluster=cluster, serviceName="busy", taskDefinition=family, desiredCount=0)
    assert again["service"]["status"] == "ACTIVE"

    with pytest.raises(ClientError) as e:
        ecs.delete_service(cluster=cluster, service="never-was")
    assert_error(e, "ServiceNotFoundException")

    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=cluster)
    assert_error(e, "ClusterContainsServicesException")


def test_unplaceable_service_reports_why(ecs, setup):
    cluster, family = setup
    ecs.create_service(cluster=cluster, serviceName="stuck", taskDefinition=family, desiredCount=1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = ecs.describe_services(cluster=cluster, services=["stuck"])["services"][0]["events"]
        if any("was unable to place a task" in e["message"] for e in events):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no placement event: {events!r}")
    event = events[0]
    assert event["message"].startswith("(service stuck) was unable to place a task")
    assert set(event) == {"id", "createdAt", "message"}


# ---- with simulated hosts ------------------------------------------------------------

HOSTS = 3


@pytest.fixture
def fleet(berth, ecs, tmp_path):
    cluster = unique("svc-sim")
    with simulated_fleet(ecs, berth.endpoint, cluster, tmp_path, HOSTS):
        yield cluster


def test_service_on_simulated_hosts_is_stable_rolls_out_and_drains(berth, ecs, fleet):
    cluster = fleet
    family = unique("svc-sim-app")
    for image in ("berth-sim/app:1", "berth-sim/app:2"):
        ecs.register_task_definition(
            family=family,
            containerDefinitions=[{"name": "app", "image": image, "cpu": 64, "memory": 128}],
        )
    ecs.create_service(
        cluster=cluster, serviceName="web", taskDefinition=f"{family}:1", desiredCount=4,
        deploymentConfiguration={"minimumHealthyPercent": 0, "maximumPercent": 200},
    )
    fast = {"Delay": 1, "MaxAttempts": 60}
    ecs.get_waiter("services_stable").wait(cluster=cluster, services=["web"], WaiterConfig=fast)
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert service["runningCount"] == 4
    tasks = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    described = ecs.describe_tasks(cluster=cluster, tasks=tasks)["tasks"]
    assert len(described) == 4
    assert {t["group"] for t in described} == {"service:web"}
    assert {t["startedBy"] for t in described} == {service["deployments"][0]["id"]}
    # The default strategy spreads over availability zones and instances.
    assert len({t["containerInstanceArn"] for t in described}) == HOSTS

    # Roll out revision 2 and wait with aws-cli's waiter.
    ecs.update_service(cluster=cluster, service="web", taskDefinition=f"{family}:2")
    berth.aws("ecs", "wait", "services-stable", "--cluster", cluster, "--services", "web")
    service = ecs.describe_services(cluster=cluster, services=["web"])["services"][0]
    assert service["runningCount"] == 4 and len(service["deployments"]) == 1
    tasks = ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"]
    described = ecs.describe_tasks(cluster=cluster, tasks=tasks)["tasks"]
    assert {t["taskDefinitionArn"] for t in described} == {td_arn(family, 2)}

    ecs.delete_service(cluster=cluster, service="web", force=True)
    ecs.get_waiter("services_inactive").wait(cluster=cluster, services=["web"], WaiterConfig=fast)
    assert ecs.list_tasks(cluster=cluster, serviceName="web")["taskArns"] == []


def test_daemon_service_runs_only_on_instances_meeting_its_constraints(berth, ecs, fleet):
    cluster = fleet
    family = unique("svc-daemon")
    ecs.register_task_definition(
        family=family,
        containerDefinitions=[{"name": "probe", "image": "berth-sim/probe:1", "cpu": 16, "memory": 32}],
    )
    zone_b = "attribute:ecs.availability-zone == us-east-1b"
    eligible = set(ecs.list_container_instances(cluster=cluster, filter=zone_b)["containerInstanceArns"])
    assert 0 < len(eligible) < HOSTS
    ecs.create_service(
        cluster=cluster, serviceName="per-host", taskDefinition=family, schedulingStrategy="DAEMON",
        placementConstraints=[{"type": "memberOf", "expression": zone_b}],
    )
    deadline = time.monotonic() + 60
    while True:
        arns = ecs.list_tasks(cluster=cluster, serviceName="per-host")["taskArns"]
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
        hosts = [t["containerInstanceArn"] for t in tasks if t["lastStatus"] == "RUNNING"]
        if sorted(hosts) == sorted(eligible):
            break
        assert set(hosts) <= eligible, f"a daemon task runs outside {zone_b}: {tasks}"
        assert time.monotonic() < deadline, f"daemon tasks never covered {eligible}: {tasks}"
        time.sleep(0.3)
    service = ecs.describe_services(cluster=cluster, services=["per-host"])["services"][0]
    assert service["desiredCount"] == len(eligible)
    # Nothing else starts later: every other instance stays without a task.
    time.sleep(2)
    arns = ecs.list_tasks(cluster=cluster, serviceName="per-host")["taskArns"]
    assert {t["containerInstanceArn"] for t in ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]} == eligible
    ecs.delete_service(cluster=cluster, service="per-host", force=True)
