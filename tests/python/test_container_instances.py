"""Container instances: Register/Describe/List/UpdateState/Deregister (boto3)."""

import datetime

import pytest
from botocore.exceptions import ClientError

from harness import (
    CI_ARN_RE,
    CONTAINER_INSTANCE_RESOURCES,
    VERSION_INFO,
    assert_error,
    cluster_arn,
    error_of,
    identity_document,
    paginate,
    register_instance,
    resources_by_name,
    unique,
)


@pytest.fixture
def cluster(ecs):
    name = unique("ci")
    ecs.create_cluster(clusterName=name)
    return name


def ci_id(arn):
    return arn.rsplit("/", 1)[1]


def cluster_count(ecs, name):
    return ecs.describe_clusters(clusters=[name])["clusters"][0]["registeredContainerInstancesCount"]


def check_resources(resources):
    by = resources_by_name(resources)
    assert set(by) >= {"CPU", "MEMORY", "PORTS", "PORTS_UDP"}, resources
    assert by["CPU"]["type"] == "INTEGER" and by["CPU"]["integerValue"] == 2048
    assert by["MEMORY"]["type"] == "INTEGER" and by["MEMORY"]["integerValue"] == 3768
    assert by["PORTS"]["type"] == "STRINGSET"
    assert sorted(by["PORTS"]["stringSetValue"]) == sorted(["22", "2375", "2376", "51678", "51679"])
    assert by["PORTS_UDP"]["type"] == "STRINGSET"
    assert by["PORTS_UDP"].get("stringSetValue", []) == []


def test_register_container_instance(ecs, cluster):
    ci = register_instance(ecs, cluster)
    m = CI_ARN_RE.match(ci["containerInstanceArn"])
    assert m, ci["containerInstanceArn"]
    assert m["region"] == "us-east-1" and m["account"] == "000000000000" and m["cluster"] == cluster
    assert ci["status"] == "ACTIVE"
    assert isinstance(ci["agentConnected"], bool)
    assert ci["runningTasksCount"] == 0
    assert ci["pendingTasksCount"] == 0
    assert ci["versionInfo"] == VERSION_INFO
    assert isinstance(ci["registeredAt"], datetime.datetime)
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs.get("ecs.os-type") == "linux"
    assert "com.amazonaws.ecs.capability.docker-remote-api.1.18" in attrs
    check_resources(ci["registeredResources"])
    check_resources(ci["remainingResources"])
    assert cluster_count(ecs, cluster) == 1


def test_register_with_instance_identity_document(ecs, cluster):
    doc = identity_document(instance_id="i-0123456789abcdef0", az="us-east-1b", instance_type="m5.large")
    ci = register_instance(ecs, cluster, instanceIdentityDocument=doc, instanceIdentityDocumentSignature="sig")
    assert ci["ec2InstanceId"] == "i-0123456789abcdef0"
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs.get("ecs.availability-zone") == "us-east-1b", ci["attributes"]
    assert attrs.get("ecs.instance-type") == "m5.large", ci["attributes"]
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[ci["containerInstanceArn"]])
    assert d["containerInstances"][0]["ec2InstanceId"] == "i-0123456789abcdef0"


def test_register_with_tags(ecs, cluster):
    ci = register_instance(ecs, cluster, tags=[{"key": "rack", "value": "r1"}])
    tags = ecs.list_tags_for_resource(resourceArn=ci["containerInstanceArn"])["tags"]
    assert tags == [{"key": "rack", "value": "r1"}]
    d = ecs.describe_container_instances(
        cluster=cluster, containerInstances=[ci["containerInstanceArn"]], include=["TAGS"]
    )["containerInstances"][0]
    assert d["tags"] == [{"key": "rack", "value": "r1"}]


def test_reregister_with_arn_keeps_identity(ecs, cluster):
    ci = register_instance(ecs, cluster)
    again = register_instance(ecs, cluster, containerInstanceArn=ci["containerInstanceArn"])
    assert again["containerInstanceArn"] == ci["containerInstanceArn"]
    arns, _ = paginate(ecs.list_container_instances, "containerInstanceArns", cluster=cluster)
    assert arns == [ci["containerInstanceArn"]]


def test_register_in_default_cluster_when_cluster_omitted(ecs):
    ecs.create_cluster()
    ci = ecs.register_container_instance(
        totalResources=CONTAINER_INSTANCE_RESOURCES, versionInfo=VERSION_INFO
    )["containerInstance"]
    try:
        assert CI_ARN_RE.match(ci["containerInstanceArn"])["cluster"] == "default"
        arns, _ = paginate(ecs.list_container_instances, "containerInstanceArns")
        assert ci["containerInstanceArn"] in arns
    finally:
        ecs.deregister_container_instance(containerInstance=ci["containerInstanceArn"], force=True)


def test_register_by_cluster_arn(ecs, cluster):
    ci = register_instance(ecs, cluster_arn(cluster))
    assert CI_ARN_RE.match(ci["containerInstanceArn"])["cluster"] == cluster


# ------------------------------------------------------------------ describe
def test_describe_by_arn_and_id_with_missing(ecs, cluster):
    a = register_instance(ecs, cluster)
    b = register_instance(ecs, cluster)
    missing = "0123456789abcdef0123456789abcdef"
    resp = ecs.describe_container_instances(
        cluster=cluster, containerInstances=[a["containerInstanceArn"], ci_id(b["containerInstanceArn"]), missing]
    )
    got = sorted(c["containerInstanceArn"] for c in resp["containerInstances"])
    assert got == sorted([a["containerInstanceArn"], b["containerInstanceArn"]])
    assert len(resp["failures"]) == 1
    assert resp["failures"][0]["reason"] == "MISSING"
    assert resp["failures"][0]["arn"].endswith(missing)
    for c in resp["containerInstances"]:
        check_resources(c["registeredResources"])
        check_resources(c["remainingResources"])


def test_describe_instance_of_another_cluster_is_missing(ecs, cluster):
    other = unique("ci-other")
    ecs.create_cluster(clusterName=other)
    ci = register_instance(ecs, other)
    resp = ecs.describe_container_instances(cluster=cluster, containerInstances=[ci["containerInstanceArn"]])
    assert resp["containerInstances"] == []
    assert [f["reason"] for f in resp["failures"]] == ["MISSING"]


# ------------------------------------------------------------------ list / state
def test_list_and_drain_and_reactivate(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    b = register_instance(ecs, cluster)["containerInstanceArn"]

    def listed(**kw):
        arns, _ = paginate(ecs.list_container_instances, "containerInstanceArns", cluster=cluster, **kw)
        return sorted(arns)

    assert listed() == sorted([a, b])
    assert listed(status="ACTIVE") == sorted([a, b])
    assert listed(status="DRAINING") == []

    resp = ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="DRAINING")
    assert [c["status"] for c in resp["containerInstances"]] == ["DRAINING"]
    assert resp["failures"] == []
    assert listed(status="DRAINING") == [a]
    assert listed(status="ACTIVE") == [b]
    assert listed() == sorted([a, b])  # default: every status except INACTIVE
    # DRAINING instances still count as registered
    assert cluster_count(ecs, cluster) == 2
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[a])["containerInstances"][0]
    assert d["status"] == "DRAINING"

    resp = ecs.update_container_instances_state(cluster=cluster, containerInstances=[ci_id(a)], status="ACTIVE")
    assert [c["status"] for c in resp["containerInstances"]] == ["ACTIVE"]
    assert listed(status="DRAINING") == []
    assert listed(status="ACTIVE") == sorted([a, b])


def test_update_state_unknown_instance_is_failure(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    missing = "fedcba9876543210fedcba9876543210"
    resp = ecs.update_container_instances_state(
        cluster=cluster, containerInstances=[a, missing], status="DRAINING"
    )
    assert [c["containerInstanceArn"] for c in resp["containerInstances"]] == [a]
    assert resp["containerInstances"][0]["status"] == "DRAINING"
    assert len(resp["failures"]) == 1
    assert resp["failures"][0]["arn"].endswith(missing)
    assert resp["failures"][0]["reason"] == "MISSING"


def test_update_state_invalid_status(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    with pytest.raises(ClientError) as ei:
        ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="INACTIVE")
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_list_container_instances_pagination(ecs, cluster):
    arns = sorted(register_instance(ecs, cluster)["containerInstanceArn"] for _ in range(5))
    got, pages = paginate(ecs.list_container_instances, "containerInstanceArns", cluster=cluster, maxResults=2)
    assert sorted(got) == arns
    assert len(got) == len(set(got))
    assert all(len(p["containerInstanceArns"]) <= 2 for p in pages)
    assert len(pages) >= 3


# ------------------------------------------------------------------ deregister
def test_deregister_container_instance(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    b = register_instance(ecs, cluster)["containerInstanceArn"]
    assert cluster_count(ecs, cluster) == 2
    ci = ecs.deregister_container_instance(cluster=cluster, containerInstance=a)["containerInstance"]
    assert ci["containerInstanceArn"] == a
    assert ci["status"] == "INACTIVE"
    arns, _ = paginate(ecs.list_container_instances, "containerInstanceArns", cluster=cluster)
    assert arns == [b]
    for status in ("ACTIVE", "DRAINING"):
        arns, _ = paginate(ecs.list_container_instances, "containerInstanceArns", cluster=cluster, status=status)
        assert a not in arns
    assert cluster_count(ecs, cluster) == 1
    # describable as INACTIVE for a while, or gone
    resp = ecs.describe_container_instances(cluster=cluster, containerInstances=[a])
    for c in resp["containerInstances"]:
        assert c["status"] == "INACTIVE"


def test_deregister_by_id(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    ci = ecs.deregister_container_instance(cluster=cluster, containerInstance=ci_id(a), force=True)[
        "containerInstance"
    ]
    assert ci["containerInstanceArn"] == a
    assert ci["status"] == "INACTIVE"


def test_deregister_unknown_instance(ecs, cluster):
    with pytest.raises(ClientError) as ei:
        ecs.deregister_container_instance(cluster=cluster, containerInstance="00000000000000000000000000000000")
    assert_error(ei, {"InvalidParameterException", "ClientException", "ResourceNotFoundException"})


def test_drain_inactive_instance_fails(ecs, cluster):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    ecs.deregister_container_instance(cluster=cluster, containerInstance=a)
    try:
        resp = ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status="DRAINING")
    except ClientError as e:  # refusing the whole call is acceptable too
        assert_error(pytest.ExceptionInfo.from_exc_info((type(e), e, e.__traceback__)),
                     {"InvalidParameterException", "ClientException"})
        return
    assert resp["containerInstances"] == []
    assert len(resp["failures"]) == 1


@pytest.mark.parametrize("status", ["INACTIVE", "REGISTERING", "DEREGISTERING", "REGISTRATION_FAILED"])
def test_update_state_only_active_or_draining(ecs, cluster, status):
    a = register_instance(ecs, cluster)["containerInstanceArn"]
    with pytest.raises(ClientError) as ei:
        ecs.update_container_instances_state(cluster=cluster, containerInstances=[a], status=status)
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[a])["containerInstances"][0]
    assert d["status"] == "ACTIVE"


def test_list_container_instances_cql_filter(ecs, cluster):
    # ListContainerInstances `filter` takes a cluster query language expression
    prod = register_instance(ecs, cluster)["containerInstanceArn"]
    dev = register_instance(ecs, cluster)["containerInstanceArn"]
    for arn, stack in ((prod, "prod"), (dev, "dev")):
        ecs.put_attributes(
            cluster=cluster,
            attributes=[{"name": "stack", "value": stack, "targetType": "container-instance", "targetId": arn}],
        )
    got, _ = paginate(
        ecs.list_container_instances, "containerInstanceArns", cluster=cluster, filter="attribute:stack == prod"
    )
    assert got == [prod]
    got, _ = paginate(
        ecs.list_container_instances, "containerInstanceArns", cluster=cluster, filter="attribute:stack != prod"
    )
    assert got == [dev]
    got, _ = paginate(
        ecs.list_container_instances, "containerInstanceArns", cluster=cluster,
        filter="attribute:ecs.os-type == linux",
    )
    assert sorted(got) == sorted([prod, dev])
    got, _ = paginate(
        ecs.list_container_instances, "containerInstanceArns", cluster=cluster,
        filter="(attribute:stack in [prod, qa] or attribute:stack =~ de.*) and not(attribute:stack == dev)",
    )
    assert got == [prod]
    got, _ = paginate(
        ecs.list_container_instances, "containerInstanceArns", cluster=cluster,
        filter="agentConnected == false and runningTasksCount == 0 and attribute:stack exists",
    )
    assert sorted(got) == sorted([prod, dev])


def test_list_container_instances_malformed_filter_names_the_error(ecs, cluster):
    register_instance(ecs, cluster)
    with pytest.raises(ClientError) as excinfo:
        ecs.list_container_instances(cluster=cluster, filter="attribute:stack == prod and")
    code, message, _ = error_of(excinfo.value)
    assert code == "InvalidParameterException"
    assert "position 27" in message and "end of input" in message, message
    with pytest.raises(ClientError) as excinfo:
        ecs.list_container_instances(cluster=cluster, filter="attribute:stack ~= prod")
    assert error_of(excinfo.value)[0] == "InvalidParameterException"


def test_concurrent_registrations_in_one_cluster(berth, cluster):
    from concurrent.futures import ThreadPoolExecutor

    ecs = berth.client()
    with ThreadPoolExecutor(max_workers=8) as pool:
        arns = list(pool.map(lambda _: register_instance(ecs, cluster)["containerInstanceArn"], range(24)))
    assert len(set(arns)) == 24
    listed, _ = paginate(ecs.list_container_instances, "containerInstanceArns", cluster=cluster)
    assert sorted(listed) == sorted(arns)
    assert cluster_count(ecs, cluster) == 24


def test_container_instance_version_increases_on_change(ecs, cluster):
    ci = register_instance(ecs, cluster)
    v0 = ci["version"]
    d = ecs.update_container_instances_state(
        cluster=cluster, containerInstances=[ci["containerInstanceArn"]], status="DRAINING"
    )["containerInstances"][0]
    assert d["version"] > v0
    d2 = ecs.update_container_instances_state(
        cluster=cluster, containerInstances=[ci["containerInstanceArn"]], status="ACTIVE"
    )["containerInstances"][0]
    assert d2["version"] > d["version"]


def test_describe_container_instance_health(ecs, cluster):
    ci = register_instance(ecs, cluster)["containerInstanceArn"]
    d = ecs.describe_container_instances(
        cluster=cluster, containerInstances=[ci], include=["CONTAINER_INSTANCE_HEALTH"]
    )["containerInstances"][0]
    assert d["healthStatus"]["overallStatus"] in {"OK", "IMPAIRED", "INSUFFICIENT_DATA", "INITIALIZING"}
