"""Capacity providers: Describe (FARGATE/FARGATE_SPOT built in), Create, Update, Delete."""

import uuid

import pytest
from botocore.exceptions import ClientError

from harness import ACCOUNT, assert_error, paginate, tags_dict, unique


def asg_arn(name):
    u = uuid.uuid5(uuid.NAMESPACE_URL, name)
    return f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:{u}:autoScalingGroupName/{name}"


def create(ecs, name=None, **extra):
    name = name or unique("cp")
    kw = {
        "name": name,
        "autoScalingGroupProvider": {
            "autoScalingGroupArn": asg_arn(name),
            "managedScaling": {
                "status": "ENABLED",
                "targetCapacity": 90,
                "minimumScalingStepSize": 1,
                "maximumScalingStepSize": 100,
                "instanceWarmupPeriod": 300,
            },
            "managedTerminationProtection": "DISABLED",
        },
    }
    kw.update(extra)
    return ecs.create_capacity_provider(**kw)["capacityProvider"]


def describe(ecs, *names):
    return ecs.describe_capacity_providers(capacityProviders=list(names))


def test_builtin_fargate_providers(ecs):
    items, _ = paginate(ecs.describe_capacity_providers, "capacityProviders")
    by = {cp["name"]: cp for cp in items}
    assert "FARGATE" in by and "FARGATE_SPOT" in by, list(by)
    for n in ("FARGATE", "FARGATE_SPOT"):
        assert by[n]["status"] == "ACTIVE"
    resp = describe(ecs, "FARGATE", "FARGATE_SPOT")
    assert sorted(cp["name"] for cp in resp["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    assert resp.get("failures", []) == []


def test_create_capacity_provider(ecs):
    name = unique("cp-create")
    cp = create(ecs, name, tags=[{"key": "team", "value": "infra"}])
    assert cp["name"] == name
    assert cp["capacityProviderArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:capacity-provider/{name}"
    assert cp["status"] == "ACTIVE"
    asg = cp["autoScalingGroupProvider"]
    assert asg["autoScalingGroupArn"] == asg_arn(name)
    assert asg["managedScaling"]["status"] == "ENABLED"
    assert asg["managedScaling"]["targetCapacity"] == 90
    assert asg["managedScaling"]["minimumScalingStepSize"] == 1
    assert asg["managedScaling"]["maximumScalingStepSize"] == 100
    assert asg["managedScaling"]["instanceWarmupPeriod"] == 300
    assert asg["managedTerminationProtection"] == "DISABLED"
    assert tags_dict(cp.get("tags")) == {"team": "infra"}

    resp = describe(ecs, name)
    assert [c["name"] for c in resp["capacityProviders"]] == [name]
    assert resp.get("failures", []) == []
    resp = ecs.describe_capacity_providers(capacityProviders=[cp["capacityProviderArn"]], include=["TAGS"])
    assert tags_dict(resp["capacityProviders"][0]["tags"]) == {"team": "infra"}


def test_create_capacity_provider_defaults(ecs):
    name = unique("cp-def")
    cp = ecs.create_capacity_provider(
        name=name, autoScalingGroupProvider={"autoScalingGroupArn": asg_arn(name)}
    )["capacityProvider"]
    assert cp["status"] == "ACTIVE"
    ms = cp["autoScalingGroupProvider"].get("managedScaling")
    if ms is not None and ms.get("status") == "ENABLED":
        assert ms.get("targetCapacity", 100) == 100


@pytest.mark.parametrize("prefix", ["aws", "ecs", "fargate", "AWS", "Fargate", "ECS"])
def test_reserved_name_prefixes_rejected(ecs, prefix):
    name = prefix + unique("cp")
    with pytest.raises(ClientError) as ei:
        create(ecs, name)
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_duplicate_name_rejected(ecs):
    name = unique("cp-dup")
    create(ecs, name)
    with pytest.raises(ClientError) as ei:
        create(ecs, name)
    assert_error(ei, {"ClientException", "InvalidParameterException", "LimitExceededException", "ResourceInUseException"})


def test_describe_missing_capacity_provider(ecs):
    name = unique("cp-missing")
    resp = describe(ecs, name, "FARGATE")
    assert [c["name"] for c in resp["capacityProviders"]] == ["FARGATE"]
    assert len(resp["failures"]) == 1
    assert resp["failures"][0]["reason"] == "MISSING"
    assert resp["failures"][0]["arn"].endswith(name)


def test_describe_capacity_providers_pagination(ecs):
    names = [create(ecs)["name"] for _ in range(3)]
    items, pages = paginate(ecs.describe_capacity_providers, "capacityProviders", maxResults=2)
    got = [c["name"] for c in items]
    assert len(got) == len(set(got))
    assert set(names) | {"FARGATE", "FARGATE_SPOT"} <= set(got)
    assert all(len(p["capacityProviders"]) <= 2 for p in pages)


def test_update_capacity_provider(ecs):
    name = unique("cp-upd")
    create(ecs, name)
    cp = ecs.update_capacity_provider(
        name=name,
        autoScalingGroupProvider={
            "managedScaling": {"status": "ENABLED", "targetCapacity": 50, "maximumScalingStepSize": 10},
            "managedTerminationProtection": "DISABLED",
        },
    )["capacityProvider"]
    assert cp["name"] == name
    assert cp["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"] == 50
    assert cp["autoScalingGroupProvider"]["managedScaling"]["maximumScalingStepSize"] == 10
    # the ASG itself is not changeable and stays as created
    assert cp["autoScalingGroupProvider"]["autoScalingGroupArn"] == asg_arn(name)
    d = describe(ecs, name)["capacityProviders"][0]
    assert d["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"] == 50


def test_update_missing_capacity_provider(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.update_capacity_provider(
            name=unique("cp-nope"), autoScalingGroupProvider={"managedTerminationProtection": "DISABLED"}
        )
    assert_error(ei, {"ClientException", "InvalidParameterException", "ResourceNotFoundException"})


def test_delete_capacity_provider(ecs):
    name = unique("cp-del")
    create(ecs, name)
    cp = ecs.delete_capacity_provider(capacityProvider=name)["capacityProvider"]
    assert cp["name"] == name
    resp = describe(ecs, name)
    for c in resp["capacityProviders"]:
        assert c["status"] == "INACTIVE" or c.get("updateStatus") in ("DELETE_IN_PROGRESS", "DELETE_COMPLETE"), c
    items, _ = paginate(ecs.describe_capacity_providers, "capacityProviders")
    assert not [c for c in items if c["name"] == name and c["status"] == "ACTIVE"]


def test_delete_builtin_fargate_rejected(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.delete_capacity_provider(capacityProvider="FARGATE")
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_associate_custom_provider_with_cluster(ecs):
    name = unique("cp-assoc")
    cp = create(ecs, name)
    cluster = unique("cp-cluster")
    ecs.create_cluster(clusterName=cluster)
    c = ecs.put_cluster_capacity_providers(
        cluster=cluster,
        capacityProviders=[name],
        defaultCapacityProviderStrategy=[{"capacityProvider": name, "weight": 1}],
    )["cluster"]
    assert c["capacityProviders"] == [name]
    assert c["defaultCapacityProviderStrategy"][0]["capacityProvider"] == name
    assert cp["capacityProviderArn"].endswith(name)


def test_cluster_with_unknown_capacity_provider_rejected(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.create_cluster(clusterName=unique("cp-bad-cluster"), capacityProviders=[unique("cp-nonexistent")])
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_delete_provider_associated_with_cluster_refused(ecs):
    # "Only capacity providers that aren't associated with a cluster can be deleted."
    name = unique("cp-inuse")
    create(ecs, name)
    cluster = unique("cp-inuse-cluster")
    ecs.create_cluster(clusterName=cluster, capacityProviders=[name])
    with pytest.raises(ClientError) as ei:
        ecs.delete_capacity_provider(capacityProvider=name)
    assert_error(ei, {"ResourceInUseException", "ClientException", "InvalidParameterException"})
    assert describe(ecs, name)["capacityProviders"][0]["status"] == "ACTIVE"
    # after disassociation it can go
    ecs.put_cluster_capacity_providers(cluster=cluster, capacityProviders=[], defaultCapacityProviderStrategy=[])
    ecs.delete_capacity_provider(capacityProvider=name)
