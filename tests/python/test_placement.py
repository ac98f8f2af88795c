"""Task placement through the API, on simulated hosts (`berth agent --simulate`):
strategies, constraints, the task definition's constraints and required
attributes, ECS's failure reasons naming the closest instance, validation of
bad placement input, and no over-commit under concurrent RunTask calls."""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from harness import error_of, unique
from test_simulated_hosts import HOSTS, READY_TIMEOUT, Simulator, describe_instances, wait_for

# HOSTS (20) simulated hosts: 7, 7 and 6 in us-east-1a/b/c, 1024 CPU units
# and 2048 MiB each.


@pytest.fixture(scope="module")
def fleet(berth, tmp_path_factory):
    ecs = berth.client()
    cluster = unique("place")
    ecs.create_cluster(clusterName=cluster)
    sim = Simulator(berth.endpoint, cluster, tmp_path_factory.mktemp("placement"))
    try:
        wait_for(
            f"{HOSTS} connected simulated hosts",
            lambda: (lambda found: len(found) == HOSTS and all(c["agentConnected"] for c in found))(
                describe_instances(ecs, cluster)),
            timeout=READY_TIMEOUT,
        )
        yield cluster
    finally:
        sim.terminate()


def family(ecs, memory=128, cpu=16, **extra):
    name = unique("pl")
    ecs.register_task_definition(
        family=name,
        containerDefinitions=[{"name": "app", "image": "berth-sim/app", "cpu": cpu, "memory": memory}],
        **extra,
    )
    return name


def zone_of(task):
    return task["availabilityZone"]


def stop_all(ecs, cluster, tasks):
    """Stops the tasks and waits until their resources are back."""
    arns = [t["taskArn"] for t in tasks]
    for arn in arns:
        ecs.stop_task(cluster=cluster, task=arn)
    for i in range(0, len(arns), 100):
        ecs.get_waiter("tasks_stopped").wait(
            cluster=cluster, tasks=arns[i:i + 100], WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def test_spread_over_zones_then_instances(ecs, fleet):
    td = family(ecs)
    out = ecs.run_task(
        cluster=fleet, taskDefinition=td, count=9,
        placementStrategy=[
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "spread", "field": "instanceId"},
        ],
    )
    assert out["failures"] == []
    zones = collections.Counter(zone_of(t) for t in out["tasks"])
    assert sorted(zones.values()) == [3, 3, 3], zones
    instances = collections.Counter(t["containerInstanceArn"] for t in out["tasks"])
    assert max(instances.values()) == 1, instances
    stop_all(ecs, fleet, out["tasks"])


def test_binpack_fills_the_tightest_instance(ecs, fleet):
    td = family(ecs, memory=512)
    out = ecs.run_task(
        cluster=fleet, taskDefinition=td, count=4,
        placementStrategy=[{"type": "binpack", "field": "memory"}],
    )
    assert out["failures"] == []
    assert len({t["containerInstanceArn"] for t in out["tasks"]}) == 1
    instance = out["tasks"][0]["containerInstanceArn"]
    ci = ecs.describe_container_instances(cluster=fleet, containerInstances=[instance])["containerInstances"][0]
    remaining = {r["name"]: r for r in ci["remainingResources"]}
    assert remaining["MEMORY"]["integerValue"] == 0
    stop_all(ecs, fleet, out["tasks"])


def test_member_of_and_distinct_instance(ecs, fleet):
    td = family(ecs)
    out = ecs.run_task(
        cluster=fleet, taskDefinition=td, count=7,
        placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.availability-zone == us-east-1b"},
            {"type": "distinctInstance"},
        ],
        group="distinct-b",
    )
    assert out["failures"] == []
    assert {zone_of(t) for t in out["tasks"]} == {"us-east-1b"}
    assert len({t["containerInstanceArn"] for t in out["tasks"]}) == 7
    # An eighth task of the group has no distinct instance left in the zone.
    more = ecs.run_task(
        cluster=fleet, taskDefinition=td,
        placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.availability-zone == us-east-1b"},
            {"type": "distinctInstance"},
        ],
        group="distinct-b",
    )
    assert more["tasks"] == []
    assert more["failures"][0]["reason"] == "DistinctInstance placement constraint unsatisfied"
    assert ":container-instance/" in more["failures"][0]["arn"]
    stop_all(ecs, fleet, out["tasks"])


def test_task_definition_constraints_merge_with_the_request(ecs, fleet):
    td = family(ecs, placementConstraints=[
        {"type": "memberOf", "expression": "attribute:ecs.availability-zone in [us-east-1a, us-east-1c]"}])
    out = ecs.run_task(
        cluster=fleet, taskDefinition=td, count=3,
        placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.availability-zone != us-east-1a"}],
    )
    assert out["failures"] == []
    assert {zone_of(t) for t in out["tasks"]} == {"us-east-1c"}
    stop_all(ecs, fleet, out["tasks"])
    with pytest.raises(ClientError) as excinfo:
        ecs.run_task(
            cluster=fleet, taskDefinition=td,
            placementConstraints=[{"type": "distinctInstance"}] * 10,
        )
    assert error_of(excinfo.value)[0] == "InvalidParameterException"


def test_failure_reasons_name_the_closest_instance(ecs, fleet):
    too_big = family(ecs, memory=4096)
    out = ecs.run_task(cluster=fleet, taskDefinition=too_big, count=2)
    assert out["tasks"] == []
    assert [f["reason"] for f in out["failures"]] == ["RESOURCE:MEMORY"] * 2
    assert all(":container-instance/" in f["arn"] for f in out["failures"])

    too_busy = family(ecs, cpu=2048)
    out = ecs.run_task(cluster=fleet, taskDefinition=too_busy)
    assert [f["reason"] for f in out["failures"]] == ["RESOURCE:CPU"]

    nowhere = family(ecs)
    out = ecs.run_task(
        cluster=fleet, taskDefinition=nowhere,
        placementConstraints=[{"type": "memberOf", "expression": "attribute:fleet == elsewhere"}],
    )
    assert [f["reason"] for f in out["failures"]] == ["MemberOf placement constraint unsatisfied"]

    # A task role needs the task-iam-role capability, which simulated hosts lack.
    needs_role = family(ecs, taskRoleArn="arn:aws:iam::000000000000:role/app")
    out = ecs.run_task(cluster=fleet, taskDefinition=needs_role)
    assert [f["reason"] for f in out["failures"]] == ["ATTRIBUTE"]


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"placementConstraints": [{"type": "memberOf", "expression": "attribute:fleet =="}]}, "position"),
        ({"placementConstraints": [{"type": "memberOf"}]}, "expression"),
        ({"placementConstraints": [{"type": "distinctInstance", "expression": "agentConnected == true"}]}, "expression"),
        ({"placementStrategy": [{"type": "binpack", "field": "disk"}]}, "binpack"),
        ({"placementStrategy": [{"type": "spread", "field": "attribute:"}]}, "spread"),
        ({"placementStrategy": [{"type": "random"}] * 6}, "strategies"),
    ],
)
def test_bad_placement_input_is_an_invalid_parameter(ecs, fleet, kw, needle):
    td = family(ecs)
    with pytest.raises(ClientError) as excinfo:
        ecs.run_task(cluster=fleet, taskDefinition=td, **kw)
    code, message, status = error_of(excinfo.value)
    assert (code, status) == ("InvalidParameterException", 400)
    assert needle in message, message


def test_concurrent_launches_never_over_commit(ecs, berth, fleet):
    # 20 hosts x 2048 MiB hold 80 tasks of 512 MiB; ask for 120.
    td = family(ecs, memory=512)

    def launch(_):
        client = berth.client()
        return client.run_task(
            cluster=fleet, taskDefinition=td, count=10,
            placementStrategy=[{"type": "binpack", "field": "memory"}],
        )

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(launch, range(12)))
    tasks = [t for r in results for t in r["tasks"]]
    failures = [f for r in results for f in r["failures"]]
    assert len(tasks) == 80 and len(failures) == 40
    assert {f["reason"] for f in failures} == {"RESOURCE:MEMORY"}
    per_instance = collections.Counter(t["containerInstanceArn"] for t in tasks)
    assert max(per_instance.values()) == 4, per_instance
    arns = list(per_instance)
    for ci in ecs.describe_container_instances(cluster=fleet, containerInstances=arns)["containerInstances"]:
        remaining = {r["name"]: r for r in ci["remainingResources"]}
        assert remaining["MEMORY"]["integerValue"] == 0
    stop_all(ecs, fleet, tasks)
