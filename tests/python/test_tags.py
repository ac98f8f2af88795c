"""TagResource / UntagResource / ListTagsForResource (boto3)."""

import pytest
from botocore.exceptions import ClientError

from harness import (
    assert_error,
    cluster_arn,
    ec2_task_def,
    register_instance,
    tags_dict,
    td_arn,
    unique,
)


def make_cluster(ecs):
    name = unique("tag-c")
    return ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]


def make_task_definition(ecs):
    return ecs.register_task_definition(**ec2_task_def(unique("tag-td")))["taskDefinition"]["taskDefinitionArn"]


def make_container_instance(ecs):
    name = unique("tag-ci")
    ecs.create_cluster(clusterName=name)
    return register_instance(ecs, name)["containerInstanceArn"]


def make_capacity_provider(ecs):
    name = unique("tagcp")
    return ecs.create_capacity_provider(
        name=name,
        autoScalingGroupProvider={
            "autoScalingGroupArn": f"arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:{unique('g')}:autoScalingGroupName/{name}",
            "managedTerminationProtection": "DISABLED",
        },
    )["capacityProvider"]["capacityProviderArn"]


MAKERS = {
    "cluster": make_cluster,
    "task-definition": make_task_definition,
    "container-instance": make_container_instance,
    "capacity-provider": make_capacity_provider,
}


def tags_of(ecs, arn):
    return tags_dict(ecs.list_tags_for_resource(resourceArn=arn)["tags"])


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_tag_untag_list(ecs, kind):
    arn = MAKERS[kind](ecs)
    assert tags_of(ecs, arn) == {}
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    assert tags_of(ecs, arn) == {"a": "1", "b": "2"}
    # overwrite one, add one
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "10"}, {"key": "c", "value": ""}])
    assert tags_of(ecs, arn) == {"a": "10", "b": "2", "c": ""}
    ecs.untag_resource(resourceArn=arn, tagKeys=["b", "c", "not-there"])
    assert tags_of(ecs, arn) == {"a": "10"}
    ecs.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert tags_of(ecs, arn) == {}


def test_cluster_tags_visible_in_describe(ecs):
    arn = make_cluster(ecs)
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "me"}])
    c = ecs.describe_clusters(clusters=[arn], include=["TAGS"])["clusters"][0]
    assert tags_dict(c["tags"]) == {"owner": "me"}


def test_task_definition_tags_visible_in_describe(ecs):
    arn = make_task_definition(ecs)
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "owner", "value": "me"}])
    d = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    assert tags_dict(d["tags"]) == {"owner": "me"}


@pytest.mark.parametrize(
    "arn_fn",
    [
        lambda: cluster_arn(unique("tag-missing")),
        lambda: td_arn(unique("tag-missing"), 1),
        lambda: f"arn:aws:ecs:us-east-1:000000000000:capacity-provider/{unique('tagmissing')}",
    ],
    ids=["cluster", "task-definition", "capacity-provider"],
)
def test_tag_missing_resource(ecs, arn_fn):
    arn = arn_fn()
    codes = {"ResourceNotFoundException", "ClusterNotFoundException", "InvalidParameterException", "ClientException"}
    with pytest.raises(ClientError) as ei:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "1"}])
    assert_error(ei, codes)
    with pytest.raises(ClientError) as ei:
        ecs.list_tags_for_resource(resourceArn=arn)
    assert_error(ei, codes)


def test_malformed_resource_arn(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.list_tags_for_resource(resourceArn="not-an-arn")
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_aws_prefix_reserved(ecs):
    arn = make_cluster(ecs)
    with pytest.raises(ClientError) as ei:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "aws:owner", "value": "x"}])
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    assert tags_of(ecs, arn) == {}


def test_at_most_50_tags(ecs):
    arn = make_cluster(ecs)
    ecs.tag_resource(resourceArn=arn, tags=[{"key": f"k{i}", "value": "v"} for i in range(50)])
    assert len(tags_of(ecs, arn)) == 50
    with pytest.raises(ClientError) as ei:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "one-too-many", "value": "v"}])
    assert_error(ei, {"InvalidParameterException", "ClientException", "LimitExceededException"})
    assert len(tags_of(ecs, arn)) == 50


def test_tag_key_and_value_length_limits(ecs):
    arn = make_cluster(ecs)
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "k" * 128, "value": "v" * 256}])
    assert tags_of(ecs, arn) == {"k" * 128: "v" * 256}
    with pytest.raises(ClientError) as ei:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "k" * 129, "value": "v"}])
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    with pytest.raises(ClientError) as ei:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "x", "value": "v" * 257}])
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    assert tags_of(ecs, arn) == {"k" * 128: "v" * 256}
