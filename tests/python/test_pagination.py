"""maxResults ranges of the paginated operations (contract §1.4)."""

import pytest
from botocore.exceptions import ClientError

from harness import assert_error, unique

# operation -> (extra kwargs builder, max allowed)
OPS = {
    "list_clusters": (lambda ecs: {}, 100),
    "list_container_instances": (lambda ecs: {"cluster": _cluster(ecs)}, 100),
    "list_task_definitions": (lambda ecs: {}, 100),
    "list_task_definition_families": (lambda ecs: {}, 100),
    "list_attributes": (lambda ecs: {"cluster": _cluster(ecs), "targetType": "container-instance"}, 100),
    "list_account_settings": (lambda ecs: {"effectiveSettings": True}, 10),
    "describe_capacity_providers": (lambda ecs: {}, 10),
}


def _cluster(ecs):
    name = unique("pg")
    ecs.create_cluster(clusterName=name)
    return name


@pytest.mark.parametrize("op", sorted(OPS))
def test_max_results_bounds(ecs, op):
    extra, top = OPS[op]
    kw = extra(ecs)
    fn = getattr(ecs, op)
    fn(maxResults=1, **kw)
    fn(maxResults=top, **kw)
    for bad in (0, top + 1):
        with pytest.raises(ClientError) as ei:
            fn(maxResults=bad, **kw)
        assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_describe_batch_limits(ecs):
    cluster = _cluster(ecs)
    ids = [f"{i:032x}" for i in range(101)]
    with pytest.raises(ClientError) as ei:
        ecs.describe_container_instances(cluster=cluster, containerInstances=ids)
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    resp = ecs.describe_container_instances(cluster=cluster, containerInstances=ids[:100])
    assert len(resp["failures"]) == 100
    with pytest.raises(ClientError) as ei:
        ecs.describe_capacity_providers(capacityProviders=[unique("cp") for _ in range(101)])
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    resp = ecs.describe_clusters(clusters=[unique("nope") for _ in range(100)])
    assert len(resp["failures"]) == 100
