"""Regions come from the SigV4 credential scope and partition all resources."""

import pytest
from botocore.exceptions import ClientError

from harness import (
    CI_ARN_RE,
    assert_error,
    cluster_arn,
    ec2_task_def,
    paginate,
    register_instance,
    td_arn,
    unique,
)


@pytest.fixture
def eu(berth):
    return berth.client(region="eu-west-1")


def test_cluster_arn_uses_client_region(eu):
    name = unique("eu-c")
    c = eu.create_cluster(clusterName=name)["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:eu-west-1:000000000000:cluster/{name}"


def test_clusters_are_not_visible_across_regions(ecs, eu):
    name = unique("eu-only")
    eu.create_cluster(clusterName=name)
    us = ecs.describe_clusters(clusters=[name])
    assert us["clusters"] == []
    assert [f["reason"] for f in us["failures"]] == ["MISSING"]
    us_list, _ = paginate(ecs.list_clusters, "clusterArns")
    assert not [a for a in us_list if a.endswith("/" + name)]
    eu_list, _ = paginate(eu.list_clusters, "clusterArns")
    assert cluster_arn(name, "eu-west-1") in eu_list
    with pytest.raises(ClientError) as ei:
        ecs.delete_cluster(cluster=name)
    assert_error(ei, "ClusterNotFoundException")


def test_same_cluster_name_in_two_regions(ecs, eu):
    name = unique("both")
    a = ecs.create_cluster(clusterName=name, tags=[{"key": "r", "value": "us"}])["cluster"]
    b = eu.create_cluster(clusterName=name, tags=[{"key": "r", "value": "eu"}])["cluster"]
    assert a["clusterArn"] == cluster_arn(name, "us-east-1")
    assert b["clusterArn"] == cluster_arn(name, "eu-west-1")
    eu.delete_cluster(cluster=name)
    assert ecs.describe_clusters(clusters=[name])["clusters"][0]["status"] == "ACTIVE"


def test_task_definition_revisions_are_per_region(ecs, eu):
    fam = unique("eu-td")
    assert ecs.register_task_definition(**ec2_task_def(fam))["taskDefinition"]["revision"] == 1
    assert ecs.register_task_definition(**ec2_task_def(fam))["taskDefinition"]["revision"] == 2
    td = eu.register_task_definition(**ec2_task_def(fam))["taskDefinition"]
    assert td["revision"] == 1
    assert td["taskDefinitionArn"] == td_arn(fam, 1, "eu-west-1")
    arns, _ = paginate(eu.list_task_definitions, "taskDefinitionArns", familyPrefix=fam)
    assert arns == [td_arn(fam, 1, "eu-west-1")]


def test_container_instance_arn_region(eu):
    name = unique("eu-ci")
    eu.create_cluster(clusterName=name)
    ci = register_instance(eu, name)
    assert CI_ARN_RE.match(ci["containerInstanceArn"])["region"] == "eu-west-1"


def test_capacity_provider_arn_region(eu):
    name = unique("eucp")
    cp = eu.create_capacity_provider(
        name=name,
        autoScalingGroupProvider={
            "autoScalingGroupArn": f"arn:aws:autoscaling:eu-west-1:000000000000:autoScalingGroup:{unique('u')}:autoScalingGroupName/{name}"
        },
    )["capacityProvider"]
    assert cp["capacityProviderArn"] == f"arn:aws:ecs:eu-west-1:000000000000:capacity-provider/{name}"


def test_arn_from_other_region_is_not_found(ecs, eu):
    name = unique("eu-arn")
    eu.create_cluster(clusterName=name)
    try:
        resp = ecs.describe_clusters(clusters=[cluster_arn(name, "eu-west-1")])
    except ClientError as e:  # rejecting a foreign-region ARN outright is fine too
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return
    assert resp["clusters"] == []
    assert len(resp["failures"]) == 1


def test_capacity_providers_and_tags_are_per_region(ecs, eu):
    name = unique("uscp")
    cp = ecs.create_capacity_provider(
        name=name,
        autoScalingGroupProvider={
            "autoScalingGroupArn": f"arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:{unique('u')}:autoScalingGroupName/{name}"
        },
    )["capacityProvider"]
    resp = eu.describe_capacity_providers(capacityProviders=[name])
    assert resp["capacityProviders"] == []
    assert [f["reason"] for f in resp["failures"]] == ["MISSING"]
    # the built-in providers exist in every region
    names = {c["name"] for c in eu.describe_capacity_providers(capacityProviders=["FARGATE", "FARGATE_SPOT"])["capacityProviders"]}
    assert names == {"FARGATE", "FARGATE_SPOT"}
    # a us-east-1 resource cannot be tagged through eu-west-1
    with pytest.raises(ClientError) as ei:
        eu.tag_resource(resourceArn=cp["capacityProviderArn"], tags=[{"key": "a", "value": "b"}])
    assert_error(ei, {"ResourceNotFoundException", "InvalidParameterException", "ClientException"})


def test_task_definition_families_are_per_region(ecs, eu):
    fam = unique("eu-fam")
    eu.register_task_definition(**ec2_task_def(fam))
    us_fams, _ = paginate(ecs.list_task_definition_families, "families", familyPrefix=fam)
    assert us_fams == []
    eu_fams, _ = paginate(eu.list_task_definition_families, "families", familyPrefix=fam)
    assert eu_fams == [fam]
    with pytest.raises(ClientError) as ei:
        ecs.describe_task_definition(taskDefinition=fam)
    assert_error(ei, "ClientException")


@pytest.mark.parametrize(
    "region,partition", [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("ap-southeast-2", "aws")]
)
def test_arn_partition_follows_region(berth, region, partition):
    # contract §1.5: arn:${Partition}:ecs:${Region}:${Account}:cluster/${ClusterName}
    name = unique("part")
    c = berth.client(region=region).create_cluster(clusterName=name)["cluster"]
    assert c["clusterArn"] == f"arn:{partition}:ecs:{region}:000000000000:cluster/{name}"


def test_arn_of_another_account_is_not_found(ecs):
    name = unique("acct")
    ecs.create_cluster(clusterName=name)
    resp = ecs.describe_clusters(clusters=[f"arn:aws:ecs:us-east-1:111111111111:cluster/{name}"])
    assert resp["clusters"] == []
    assert [f["reason"] for f in resp["failures"]] == ["MISSING"]
