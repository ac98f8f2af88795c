"""Clusters: CreateCluster, DescribeClusters, ListClusters, UpdateCluster,
UpdateClusterSettings, PutClusterCapacityProviders, DeleteCluster (boto3)."""

import pytest
from botocore.exceptions import ClientError

from harness import (
    ACCOUNT,
    assert_error,
    cluster_arn,
    paginate,
    register_instance,
    tags_dict,
    unique,
)

STAT_KEYS = {
    "runningEC2TasksCount",
    "runningFargateTasksCount",
    "pendingEC2TasksCount",
    "pendingFargateTasksCount",
    "activeEC2ServiceCount",
    "activeFargateServiceCount",
    "drainingEC2ServiceCount",
    "drainingFargateServiceCount",
}


def describe_one(ecs, name, include=None):
    kw = {"clusters": [name]}
    if include:
        kw["include"] = include
    resp = ecs.describe_clusters(**kw)
    assert resp.get("failures", []) == [], resp
    assert len(resp["clusters"]) == 1, resp
    return resp["clusters"][0]


# ------------------------------------------------------------------ CreateCluster
def test_create_cluster_minimal(ecs):
    name = unique("c-min")
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["clusterName"] == name
    assert c["clusterArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/{name}"
    assert c["status"] == "ACTIVE"
    # non-boxed integers are always emitted
    for k in (
        "registeredContainerInstancesCount",
        "runningTasksCount",
        "pendingTasksCount",
        "activeServicesCount",
    ):
        assert c[k] == 0, (k, c)


def test_create_cluster_without_name_creates_default(ecs):
    c = ecs.create_cluster()["cluster"]
    assert c["clusterName"] == "default"
    assert c["clusterArn"] == cluster_arn("default")
    assert c["status"] == "ACTIVE"


def test_create_cluster_is_idempotent_for_same_name(ecs):
    name = unique("c-idem")
    a = ecs.create_cluster(clusterName=name)["cluster"]
    b = ecs.create_cluster(clusterName=name)["cluster"]
    assert a["clusterArn"] == b["clusterArn"]
    assert b["status"] == "ACTIVE"
    arns, _ = paginate(ecs.list_clusters, "clusterArns")
    assert arns.count(a["clusterArn"]) == 1


def test_create_cluster_with_tags_settings_configuration(ecs):
    name = unique("c-full")
    configuration = {
        "executeCommandConfiguration": {
            "logging": "OVERRIDE",
            "logConfiguration": {
                "cloudWatchLogGroupName": "/berth/exec",
                "cloudWatchEncryptionEnabled": False,
            },
        }
    }
    resp = ecs.create_cluster(
        clusterName=name,
        tags=[{"key": "team", "value": "platform"}, {"key": "env", "value": "prod"}],
        settings=[{"name": "containerInsights", "value": "enabled"}],
        configuration=configuration,
    )
    c = resp["cluster"]
    assert c["clusterName"] == name
    assert c["settings"] == [{"name": "containerInsights", "value": "enabled"}]

    d = describe_one(ecs, name, include=["TAGS", "SETTINGS", "CONFIGURATIONS"])
    assert tags_dict(d["tags"]) == {"team": "platform", "env": "prod"}
    assert d["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    ecc = d["configuration"]["executeCommandConfiguration"]
    assert ecc["logging"] == "OVERRIDE"
    # everything that was sent comes back (the server may add defaults such as s3EncryptionEnabled=false)
    want = configuration["executeCommandConfiguration"]["logConfiguration"]
    assert {k: ecc["logConfiguration"].get(k) for k in want} == want


def test_create_cluster_with_fargate_capacity_providers(ecs):
    name = unique("c-cp")
    strategy = [
        {"capacityProvider": "FARGATE", "weight": 1, "base": 2},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3, "base": 0},
    ]
    c = ecs.create_cluster(
        clusterName=name,
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=strategy,
    )["cluster"]
    assert sorted(c["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    got = {s["capacityProvider"]: (s.get("weight", 0), s.get("base", 0)) for s in c["defaultCapacityProviderStrategy"]}
    assert got == {"FARGATE": (1, 2), "FARGATE_SPOT": (3, 0)}

    d = describe_one(ecs, name)
    assert sorted(d["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    got = {s["capacityProvider"]: (s.get("weight", 0), s.get("base", 0)) for s in d["defaultCapacityProviderStrategy"]}
    assert got == {"FARGATE": (1, 2), "FARGATE_SPOT": (3, 0)}


@pytest.mark.parametrize("bad", ["has space", "bad!name", "x" * 256, "slash/name"])
def test_create_cluster_invalid_name_rejected(ecs, bad):
    with pytest.raises(ClientError) as ei:
        ecs.create_cluster(clusterName=bad)
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_create_cluster_name_255_chars_accepted(ecs):
    name = ("c255-" + unique("x")).ljust(255, "z")
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["clusterName"] == name


# ------------------------------------------------------------------ DescribeClusters
def test_describe_clusters_defaults_to_default_cluster(ecs):
    ecs.create_cluster()  # make sure `default` exists
    resp = ecs.describe_clusters()
    assert [c["clusterName"] for c in resp["clusters"]] == ["default"]
    assert resp["failures"] == []


def test_describe_clusters_by_name_and_arn(ecs):
    a = unique("c-da")
    b = unique("c-db")
    ecs.create_cluster(clusterName=a)
    ecs.create_cluster(clusterName=b)
    resp = ecs.describe_clusters(clusters=[a, cluster_arn(b)])
    assert sorted(c["clusterName"] for c in resp["clusters"]) == sorted([a, b])
    assert resp["failures"] == []


def test_describe_clusters_missing_reports_failure(ecs):
    good = unique("c-ok")
    missing = unique("c-missing")
    ecs.create_cluster(clusterName=good)
    resp = ecs.describe_clusters(clusters=[good, missing])
    assert [c["clusterName"] for c in resp["clusters"]] == [good]
    assert len(resp["failures"]) == 1
    f = resp["failures"][0]
    assert f["reason"] == "MISSING"
    assert f["arn"] == cluster_arn(missing)


def test_describe_clusters_include_everything(ecs):
    name = unique("c-inc")
    ecs.create_cluster(
        clusterName=name,
        tags=[{"key": "k", "value": "v"}],
        settings=[{"name": "containerInsights", "value": "disabled"}],
        configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}},
    )
    d = describe_one(ecs, name, include=["STATISTICS", "TAGS", "SETTINGS", "CONFIGURATIONS", "ATTACHMENTS"])
    stats = {s["name"]: s["value"] for s in d["statistics"]}
    assert STAT_KEYS <= set(stats), stats
    assert all(stats[k] == "0" for k in STAT_KEYS), stats
    assert tags_dict(d["tags"]) == {"k": "v"}
    assert {"name": "containerInsights", "value": "disabled"} in d["settings"]
    assert d["configuration"]["executeCommandConfiguration"]["logging"] == "DEFAULT"
    assert isinstance(d.get("attachments", []), list)


def test_describe_clusters_without_include_omits_tags_and_statistics(ecs):
    name = unique("c-noinc")
    ecs.create_cluster(clusterName=name, tags=[{"key": "k", "value": "v"}])
    d = describe_one(ecs, name)
    assert not d.get("tags"), d
    assert not d.get("statistics"), d


# ------------------------------------------------------------------ ListClusters
def test_list_clusters_pagination_small_pages(ecs):
    prefix = unique("c-pg")
    names = [f"{prefix}-{i}" for i in range(5)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    arns, pages = paginate(ecs.list_clusters, "clusterArns", maxResults=2)
    assert len(pages) >= 3
    for p in pages:
        assert len(p["clusterArns"]) <= 2
    assert "nextToken" not in pages[-1]
    assert len(arns) == len(set(arns)), "duplicate ARNs across pages"
    for n in names:
        assert cluster_arn(n) in arns


def test_list_clusters_paginator(ecs):
    prefix = unique("c-pgr")
    names = [f"{prefix}-{i}" for i in range(3)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    pager = ecs.get_paginator("list_clusters")
    arns = []
    for page in pager.paginate(PaginationConfig={"PageSize": 1}):
        assert len(page["clusterArns"]) <= 1
        arns.extend(page["clusterArns"])
    for n in names:
        assert cluster_arn(n) in arns


def test_list_clusters_default_page_size_is_100(ecs):
    prefix = unique("c-many")
    for i in range(101):
        ecs.create_cluster(clusterName=f"{prefix}-{i:03d}")
    first = ecs.list_clusters()
    assert len(first["clusterArns"]) == 100
    assert first.get("nextToken")
    all_arns, _ = paginate(ecs.list_clusters, "clusterArns")
    assert len(all_arns) == len(set(all_arns))
    for i in range(101):
        assert cluster_arn(f"{prefix}-{i:03d}") in all_arns
    # maxResults=100 is the maximum allowed
    assert len(ecs.list_clusters(maxResults=100)["clusterArns"]) == 100


# ------------------------------------------------------------------ Update*
def test_update_cluster_settings_and_configuration(ecs):
    name = unique("c-upd")
    ecs.create_cluster(clusterName=name)
    c = ecs.update_cluster(
        cluster=name,
        settings=[{"name": "containerInsights", "value": "enabled"}],
        configuration={"executeCommandConfiguration": {"logging": "NONE"}},
    )["cluster"]
    assert c["clusterName"] == name
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    assert c["configuration"]["executeCommandConfiguration"]["logging"] == "NONE"

    d = describe_one(ecs, name, include=["SETTINGS", "CONFIGURATIONS"])
    assert {"name": "containerInsights", "value": "enabled"} in d["settings"]
    assert d["configuration"]["executeCommandConfiguration"]["logging"] == "NONE"


def test_update_cluster_settings(ecs):
    name = unique("c-set")
    ecs.create_cluster(clusterName=name, settings=[{"name": "containerInsights", "value": "disabled"}])
    c = ecs.update_cluster_settings(
        cluster=cluster_arn(name), settings=[{"name": "containerInsights", "value": "enabled"}]
    )["cluster"]
    assert c["clusterArn"] == cluster_arn(name)
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]
    d = describe_one(ecs, name, include=["SETTINGS"])
    assert {"name": "containerInsights", "value": "enabled"} in d["settings"]
    assert {"name": "containerInsights", "value": "disabled"} not in d["settings"]


def test_put_cluster_capacity_providers(ecs):
    name = unique("c-pcp")
    ecs.create_cluster(clusterName=name)
    c = ecs.put_cluster_capacity_providers(
        cluster=name,
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    )["cluster"]
    assert sorted(c["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    assert [s["capacityProvider"] for s in c["defaultCapacityProviderStrategy"]] == ["FARGATE_SPOT"]
    assert c["defaultCapacityProviderStrategy"][0]["weight"] == 1

    # replace: the lists are set, not merged
    c = ecs.put_cluster_capacity_providers(
        cluster=cluster_arn(name),
        capacityProviders=["FARGATE"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 2, "base": 1}],
    )["cluster"]
    assert c["capacityProviders"] == ["FARGATE"]
    d = describe_one(ecs, name)
    assert d["capacityProviders"] == ["FARGATE"]
    s = d["defaultCapacityProviderStrategy"]
    assert len(s) == 1 and s[0]["capacityProvider"] == "FARGATE" and s[0]["weight"] == 2 and s[0].get("base") == 1

    # and can be emptied
    c = ecs.put_cluster_capacity_providers(cluster=name, capacityProviders=[], defaultCapacityProviderStrategy=[])[
        "cluster"
    ]
    assert not c.get("capacityProviders")
    assert not c.get("defaultCapacityProviderStrategy")


def test_put_cluster_capacity_providers_strategy_must_use_associated_provider(ecs):
    name = unique("c-pcp-bad")
    ecs.create_cluster(clusterName=name)
    with pytest.raises(ClientError) as ei:
        ecs.put_cluster_capacity_providers(
            cluster=name,
            capacityProviders=["FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        )
    assert_error(ei, {"InvalidParameterException", "ClientException"})


# ------------------------------------------------------------------ DeleteCluster
def test_delete_cluster_marks_inactive(ecs):
    name = unique("c-del")
    ecs.create_cluster(clusterName=name)
    c = ecs.delete_cluster(cluster=name)["cluster"]
    assert c["clusterName"] == name
    assert c["status"] == "INACTIVE"
    arns, _ = paginate(ecs.list_clusters, "clusterArns")
    assert cluster_arn(name) not in arns
    # INACTIVE clusters may remain discoverable; if described they must say INACTIVE
    resp = ecs.describe_clusters(clusters=[name])
    for d in resp["clusters"]:
        assert d["status"] == "INACTIVE"
    for f in resp["failures"]:
        assert f["reason"] == "MISSING"


def test_delete_cluster_by_arn(ecs):
    name = unique("c-delarn")
    ecs.create_cluster(clusterName=name)
    c = ecs.delete_cluster(cluster=cluster_arn(name))["cluster"]
    assert c["status"] == "INACTIVE"
    assert c["clusterArn"] == cluster_arn(name)


def test_delete_cluster_with_container_instances_refused(ecs):
    name = unique("c-delci")
    ecs.create_cluster(clusterName=name)
    ci = register_instance(ecs, name)
    with pytest.raises(ClientError) as ei:
        ecs.delete_cluster(cluster=name)
    assert_error(ei, "ClusterContainsContainerInstancesException")
    assert describe_one(ecs, name)["status"] == "ACTIVE"
    # once the instance is gone the cluster can be deleted
    ecs.deregister_container_instance(cluster=name, containerInstance=ci["containerInstanceArn"], force=True)
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"


def test_recreate_deleted_cluster(ecs):
    name = unique("c-recreate")
    ecs.create_cluster(clusterName=name)
    ecs.delete_cluster(cluster=name)
    c = ecs.create_cluster(clusterName=name)["cluster"]
    assert c["status"] == "ACTIVE"
    assert describe_one(ecs, name)["status"] == "ACTIVE"
    arns, _ = paginate(ecs.list_clusters, "clusterArns")
    assert arns.count(cluster_arn(name)) == 1


# ------------------------------------------------------------------ missing cluster
MISSING_CLUSTER_CALLS = {
    "delete_cluster": lambda ecs, c: ecs.delete_cluster(cluster=c),
    "update_cluster": lambda ecs, c: ecs.update_cluster(
        cluster=c, settings=[{"name": "containerInsights", "value": "enabled"}]
    ),
    "update_cluster_settings": lambda ecs, c: ecs.update_cluster_settings(
        cluster=c, settings=[{"name": "containerInsights", "value": "enabled"}]
    ),
    "put_cluster_capacity_providers": lambda ecs, c: ecs.put_cluster_capacity_providers(
        cluster=c, capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[]
    ),
    "list_container_instances": lambda ecs, c: ecs.list_container_instances(cluster=c),
    "describe_container_instances": lambda ecs, c: ecs.describe_container_instances(
        cluster=c, containerInstances=["0123456789abcdef0123456789abcdef"]
    ),
    "register_container_instance": lambda ecs, c: register_instance(ecs, c),
    "update_container_instances_state": lambda ecs, c: ecs.update_container_instances_state(
        cluster=c, containerInstances=["0123456789abcdef0123456789abcdef"], status="DRAINING"
    ),
    "deregister_container_instance": lambda ecs, c: ecs.deregister_container_instance(
        cluster=c, containerInstance="0123456789abcdef0123456789abcdef"
    ),
    "list_attributes": lambda ecs, c: ecs.list_attributes(cluster=c, targetType="container-instance"),
    "put_attributes": lambda ecs, c: ecs.put_attributes(
        cluster=c,
        attributes=[
            {
                "name": "a",
                "value": "b",
                "targetType": "container-instance",
                "targetId": "0123456789abcdef0123456789abcdef",
            }
        ],
    ),
}


@pytest.mark.parametrize("op", sorted(MISSING_CLUSTER_CALLS))
@pytest.mark.parametrize("as_arn", [False, True], ids=["name", "arn"])
def test_operations_on_missing_cluster(ecs, op, as_arn):
    name = unique("c-nope")
    ref = cluster_arn(name) if as_arn else name
    with pytest.raises(ClientError) as ei:
        MISSING_CLUSTER_CALLS[op](ecs, ref)
    assert_error(ei, "ClusterNotFoundException", message="Cluster not found.")


def test_operations_on_deleted_cluster(ecs):
    name = unique("c-gone")
    ecs.create_cluster(clusterName=name)
    ecs.delete_cluster(cluster=name)
    with pytest.raises(ClientError) as ei:
        register_instance(ecs, name)
    assert_error(ei, {"ClusterNotFoundException", "InvalidParameterException", "ClientException"})




def test_describe_clusters_at_most_100(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.describe_clusters(clusters=[unique("c-lim") for _ in range(101)])
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_list_clusters_invalid_next_token(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.list_clusters(nextToken="definitely-not-a-token-%%%")
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_list_clusters_pagination_stable_under_concurrent_changes(ecs):
    """Clusters that exist for the whole walk are listed exactly once, even when other
    clusters are created or deleted between pages."""
    prefix = unique("c-stable")
    stable = [f"{prefix}-m-{i:02d}" for i in range(12)]
    doomed = [f"{prefix}-d-{i:02d}" for i in range(6)]
    for n in stable + doomed:
        ecs.create_cluster(clusterName=n)
    seen, token, pages = [], None, 0
    while True:
        kw = {"maxResults": 3}
        if token:
            kw["nextToken"] = token
        resp = ecs.list_clusters(**kw)
        seen.extend(resp["clusterArns"])
        token = resp.get("nextToken")
        # churn: names that sort before and after everything else
        ecs.create_cluster(clusterName=f"0-{prefix}-{pages}")
        ecs.create_cluster(clusterName=f"z-{prefix}-{pages}")
        if pages < len(doomed):
            ecs.delete_cluster(cluster=doomed[pages])
        pages += 1
        if not token:
            break
        assert pages < 2000
    for n in stable:
        assert seen.count(cluster_arn(n)) == 1, (n, seen.count(cluster_arn(n)))


def test_concurrent_create_same_cluster_name(berth):
    from concurrent.futures import ThreadPoolExecutor

    ecs = berth.client()
    name = unique("c-race")
    with ThreadPoolExecutor(max_workers=8) as pool:
        arns = list(pool.map(lambda _: ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"], range(16)))
    assert set(arns) == {cluster_arn(name)}
    listed, _ = paginate(ecs.list_clusters, "clusterArns")
    assert listed.count(cluster_arn(name)) == 1


STRATEGY_CASES = {
    "two-items-with-base": (
        ["FARGATE", "FARGATE_SPOT"],
        [{"capacityProvider": "FARGATE", "weight": 1, "base": 1}, {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 1}],
    ),
    "weight-over-1000": (["FARGATE"], [{"capacityProvider": "FARGATE", "weight": 1001}]),
    "base-over-100000": (["FARGATE"], [{"capacityProvider": "FARGATE", "weight": 1, "base": 100001}]),
    "duplicate-provider": (
        ["FARGATE"],
        [{"capacityProvider": "FARGATE", "weight": 1}, {"capacityProvider": "FARGATE", "weight": 2}],
    ),
}


@pytest.mark.parametrize("case", sorted(STRATEGY_CASES))
def test_invalid_default_capacity_provider_strategy(ecs, case):
    providers, strategy = STRATEGY_CASES[case]
    name = unique("c-strat")
    ecs.create_cluster(clusterName=name)
    with pytest.raises(ClientError) as ei:
        ecs.put_cluster_capacity_providers(
            cluster=name, capacityProviders=providers, defaultCapacityProviderStrategy=strategy
        )
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    with pytest.raises(ClientError) as ei:
        ecs.create_cluster(
            clusterName=unique("c-strat2"), capacityProviders=providers, defaultCapacityProviderStrategy=strategy
        )
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    # nothing changed on the existing cluster
    assert not describe_one(ecs, name).get("capacityProviders")


def test_strategy_cannot_mix_fargate_and_asg_providers(ecs):
    cp = unique("mixcp")
    ecs.create_capacity_provider(
        name=cp,
        autoScalingGroupProvider={
            "autoScalingGroupArn": f"arn:aws:autoscaling:us-east-1:{ACCOUNT}:autoScalingGroup:{unique('u')}:autoScalingGroupName/{cp}"
        },
    )
    name = unique("c-mix")
    ecs.create_cluster(clusterName=name)
    with pytest.raises(ClientError) as ei:
        ecs.put_cluster_capacity_providers(
            cluster=name,
            capacityProviders=["FARGATE", cp],
            defaultCapacityProviderStrategy=[
                {"capacityProvider": "FARGATE", "weight": 1},
                {"capacityProvider": cp, "weight": 1},
            ],
        )
    assert_error(ei, {"InvalidParameterException", "ClientException"})


@pytest.mark.parametrize(
    "setting", [{"name": "containerInsights", "value": "maybe"}, {"name": "noSuchSetting", "value": "enabled"}]
)
def test_invalid_cluster_settings_rejected(ecs, setting):
    name = unique("c-badset")
    ecs.create_cluster(clusterName=name)
    with pytest.raises(ClientError) as ei:
        ecs.update_cluster_settings(cluster=name, settings=[setting])
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    with pytest.raises(ClientError) as ei:
        ecs.create_cluster(clusterName=unique("c-badset2"), settings=[setting])
    assert_error(ei, {"InvalidParameterException", "ClientException"})
