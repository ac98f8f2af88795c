"""PutAttributes / DeleteAttributes / ListAttributes on container instances (boto3)."""

import pytest
from botocore.exceptions import ClientError

from harness import assert_error, paginate, register_instance, unique


@pytest.fixture
def cluster(ecs):
    name = unique("attr")
    ecs.create_cluster(clusterName=name)
    return name


def bare_instance(ecs, cluster):
    """A container instance registered without agent capability attributes."""
    return register_instance(ecs, cluster, attributes=[])["containerInstanceArn"]


def attr(name, value, target, target_type="container-instance"):
    a = {"name": name, "targetType": target_type, "targetId": target}
    if value is not None:
        a["value"] = value
    return a


def listed(ecs, cluster, **kw):
    items, _ = paginate(ecs.list_attributes, "attributes", cluster=cluster, targetType="container-instance", **kw)
    return items


def key(a):
    return (a["name"], a.get("value"), a["targetId"])


def test_put_list_delete_attributes(ecs, cluster):
    ci = bare_instance(ecs, cluster)
    resp = ecs.put_attributes(cluster=cluster, attributes=[attr("stack", "prod", ci), attr("gpu", None, ci)])
    assert sorted(a["name"] for a in resp["attributes"]) == ["gpu", "stack"]

    got = {key(a) for a in listed(ecs, cluster)}
    assert ("stack", "prod", ci) in got
    assert ("gpu", None, ci) in got
    for a in listed(ecs, cluster):
        assert a["targetType"] == "container-instance"

    # filters
    by_name = listed(ecs, cluster, attributeName="stack")
    assert [key(a) for a in by_name] == [("stack", "prod", ci)]
    by_value = listed(ecs, cluster, attributeName="stack", attributeValue="prod")
    assert [key(a) for a in by_value] == [("stack", "prod", ci)]
    assert listed(ecs, cluster, attributeName="stack", attributeValue="dev") == []
    assert listed(ecs, cluster, attributeName="nope") == []

    # attributes show up on the container instance
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[ci])["containerInstances"][0]
    assert {"name": "stack", "value": "prod"} in d["attributes"]

    # delete
    resp = ecs.delete_attributes(cluster=cluster, attributes=[attr("stack", None, ci)])
    assert [a["name"] for a in resp["attributes"]] == ["stack"]
    assert listed(ecs, cluster, attributeName="stack") == []
    assert [key(a) for a in listed(ecs, cluster, attributeName="gpu")] == [("gpu", None, ci)]


def test_put_attribute_overwrites_value(ecs, cluster):
    ci = bare_instance(ecs, cluster)
    ecs.put_attributes(cluster=cluster, attributes=[attr("tier", "a", ci)])
    ecs.put_attributes(cluster=cluster, attributes=[attr("tier", "b", ci)])
    got = listed(ecs, cluster, attributeName="tier")
    assert [key(a) for a in got] == [("tier", "b", ci)]


def test_put_attributes_with_short_id(ecs, cluster):
    ci = bare_instance(ecs, cluster)
    short = ci.rsplit("/", 1)[1]
    ecs.put_attributes(cluster=cluster, attributes=[attr("short", "yes", short)])
    got = listed(ecs, cluster, attributeName="short")
    assert len(got) == 1
    assert got[0]["targetId"] in (ci, short)
    d = ecs.describe_container_instances(cluster=cluster, containerInstances=[ci])["containerInstances"][0]
    assert {"name": "short", "value": "yes"} in d["attributes"]


def test_attributes_only_listed_for_their_cluster(ecs, cluster):
    other = unique("attr-other")
    ecs.create_cluster(clusterName=other)
    ci = bare_instance(ecs, other)
    ecs.put_attributes(cluster=other, attributes=[attr("where", "other", ci)])
    assert listed(ecs, cluster, attributeName="where") == []
    assert len(listed(ecs, other, attributeName="where")) == 1


def test_custom_attribute_limit(ecs, cluster):
    ci = bare_instance(ecs, cluster)
    ecs.put_attributes(cluster=cluster, attributes=[attr(f"custom{i}", "v", ci) for i in range(10)])
    with pytest.raises(ClientError) as ei:
        ecs.put_attributes(cluster=cluster, attributes=[attr("custom10", "v", ci)])
    assert_error(ei, "AttributeLimitExceededException")
    # overwriting an existing one is still fine
    ecs.put_attributes(cluster=cluster, attributes=[attr("custom0", "w", ci)])
    assert [a.get("value") for a in listed(ecs, cluster, attributeName="custom0")] == ["w"]


def test_custom_attribute_limit_in_one_call(ecs, cluster):
    ci = bare_instance(ecs, cluster)
    with pytest.raises(ClientError) as ei:
        ecs.put_attributes(cluster=cluster, attributes=[attr(f"c{i}", "v", ci) for i in range(11)])
    assert_error(ei, "AttributeLimitExceededException")
    # nothing was applied
    assert [a for a in listed(ecs, cluster) if a["name"].startswith("c") and a["name"][1:].isdigit()] == []


def test_put_attributes_unknown_target(ecs, cluster):
    bare_instance(ecs, cluster)
    with pytest.raises(ClientError) as ei:
        ecs.put_attributes(cluster=cluster, attributes=[attr("x", "y", "0123456789abcdef0123456789abcdef")])
    assert_error(ei, "TargetNotFoundException")


def test_delete_attributes_unknown_target(ecs, cluster):
    with pytest.raises(ClientError) as ei:
        ecs.delete_attributes(cluster=cluster, attributes=[attr("x", None, "0123456789abcdef0123456789abcdef")])
    assert_error(ei, "TargetNotFoundException")


@pytest.mark.parametrize("bad_name", ["has space", "x" * 129, "semi;colon"])
def test_invalid_attribute_name(ecs, cluster, bad_name):
    ci = bare_instance(ecs, cluster)
    with pytest.raises(ClientError) as ei:
        ecs.put_attributes(cluster=cluster, attributes=[attr(bad_name, "v", ci)])
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_list_attributes_pagination(ecs, cluster):
    cis = [bare_instance(ecs, cluster) for _ in range(3)]
    for ci in cis:
        ecs.put_attributes(cluster=cluster, attributes=[attr("pg", "1", ci), attr("pg2", "2", ci)])
    items, pages = paginate(
        ecs.list_attributes, "attributes", cluster=cluster, targetType="container-instance", attributeName="pg",
        maxResults=2,
    )
    assert sorted(a["targetId"] for a in items) == sorted(cis)
    assert all(len(p["attributes"]) <= 2 for p in pages)
    assert len(pages) >= 2


def test_attribute_limit_holds_under_concurrency(berth, cluster):
    from concurrent.futures import ThreadPoolExecutor

    ecs = berth.client()
    ci = bare_instance(ecs, cluster)

    def put(i):
        try:
            ecs.put_attributes(cluster=cluster, attributes=[attr(f"race{i}", "v", ci)])
            return True
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AttributeLimitExceededException", e.response
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = list(pool.map(put, range(16)))
    stored = [a for a in listed(ecs, cluster) if a["name"].startswith("race")]
    assert sum(ok) == 10, ok
    assert len(stored) == 10, stored


def test_list_attributes_unknown_target_type(ecs, cluster):
    with pytest.raises(ClientError) as ei:
        ecs.list_attributes(cluster=cluster, targetType="task")
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_attributes_of_deregistered_instance_are_not_listed(ecs, cluster):
    ci = bare_instance(ecs, cluster)
    ecs.put_attributes(cluster=cluster, attributes=[attr("gone", "soon", ci)])
    ecs.deregister_container_instance(cluster=cluster, containerInstance=ci)
    assert listed(ecs, cluster, attributeName="gone") == []
