"""Task definitions: Register/Describe/List/ListFamilies/Deregister/Delete (boto3)."""

import copy
import datetime

import pytest
from botocore.exceptions import ClientError

from harness import (
    ACCOUNT,
    SEED_TASK_DEFINITION,
    assert_error,
    ec2_task_def,
    fargate_task_def,
    paginate,
    simple_container,
    tags_dict,
    td_arn,
    unique,
)


def register(ecs, **kw):
    return ecs.register_task_definition(**kw)["taskDefinition"]


# ------------------------------------------------------------------ seed document
def test_register_seed_task_definition(ecs):
    resp = ecs.register_task_definition(**copy.deepcopy(SEED_TASK_DEFINITION))
    td = resp["taskDefinition"]
    assert td["family"] == "platform-task"
    assert td["revision"] >= 1
    assert td["taskDefinitionArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition/platform-task:{td['revision']}"
    assert td["status"] == "ACTIVE"
    assert td["networkMode"] == "awsvpc"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert "FARGATE" in td["compatibilities"]
    assert td["cpu"] == "256"
    assert td["memory"] == "512"
    assert isinstance(td["registeredAt"], datetime.datetime)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - td["registeredAt"]).total_seconds()) < 300
    (c,) = td["containerDefinitions"]
    assert c["name"] == "next-api"
    assert c["image"] == "platform-docker-image:latest"
    assert c["portMappings"] == [{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}]
    assert c["environment"] == [{"name": "ENV", "value": "production"}]
    assert c.get("essential", True) is True
    names = {a["name"] for a in td.get("requiresAttributes", [])}
    assert "ecs.capability.task-eni" in names, td.get("requiresAttributes")

    # and it can be read back by family, family:revision and ARN
    for ref in ("platform-task", f"platform-task:{td['revision']}", td["taskDefinitionArn"]):
        got = ecs.describe_task_definition(taskDefinition=ref)["taskDefinition"]
        assert got["taskDefinitionArn"] == td["taskDefinitionArn"]


# ------------------------------------------------------------------ revisions
def test_revisions_increase_and_never_reuse(ecs):
    fam = unique("td-rev")
    revs = [register(ecs, **ec2_task_def(fam))["revision"] for _ in range(3)]
    assert revs == [1, 2, 3]
    ecs.deregister_task_definition(taskDefinition=f"{fam}:3")
    assert register(ecs, **ec2_task_def(fam))["revision"] == 4
    ecs.deregister_task_definition(taskDefinition=f"{fam}:4")
    ecs.delete_task_definitions(taskDefinitions=[f"{fam}:4"])
    td = register(ecs, **ec2_task_def(fam))
    assert td["revision"] == 5
    assert td["taskDefinitionArn"] == td_arn(fam, 5)


def test_revisions_continue_after_all_deregistered(ecs):
    fam = unique("td-rev-all")
    register(ecs, **ec2_task_def(fam))
    register(ecs, **ec2_task_def(fam))
    for r in (1, 2):
        ecs.deregister_task_definition(taskDefinition=f"{fam}:{r}")
    ecs.delete_task_definitions(taskDefinitions=[f"{fam}:1", f"{fam}:2"])
    assert register(ecs, **ec2_task_def(fam))["revision"] == 3


# ------------------------------------------------------------------ normalization/computed
@pytest.mark.parametrize(
    "cpu,memory,want_cpu,want_mem",
    [
        ("1 vCPU", "2GB", "1024", "2048"),
        ("1 vcpu", "2 GB", "1024", "2048"),
        ("1024", "2048", "1024", "2048"),
        ("2 vCPU", "4 GB", "2048", "4096"),
    ],
)
def test_cpu_memory_normalized(ecs, cpu, memory, want_cpu, want_mem):
    fam = unique("td-norm")
    td = register(ecs, **fargate_task_def(fam, cpu=cpu, memory=memory))
    assert td["cpu"] == want_cpu
    assert td["memory"] == want_mem
    got = ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]
    assert (got["cpu"], got["memory"]) == (want_cpu, want_mem)


def test_ec2_bridge_compatibilities(ecs):
    fam = unique("td-ec2")
    td = register(ecs, **ec2_task_def(fam, networkMode="bridge"))
    assert td["status"] == "ACTIVE"
    assert "EC2" in td["compatibilities"]
    assert "FARGATE" not in td["compatibilities"]
    assert "FARGATE" not in (td.get("requiresCompatibilities") or [])


def test_awsvpc_fargate_compatible_definition_lists_both(ecs):
    fam = unique("td-both")
    td = register(ecs, **fargate_task_def(fam, cpu="512", memory="1024"))
    assert {"EC2", "FARGATE"} <= set(td["compatibilities"])


def test_task_level_cpu_memory_optional_on_ec2(ecs):
    fam = unique("td-ec2-nocpu")
    td = register(ecs, **ec2_task_def(fam, containers=[simple_container(memory=64, cpu=128)]))
    assert "cpu" not in td or td["cpu"] in (None, "")
    assert td["containerDefinitions"][0]["memory"] == 64
    assert td["containerDefinitions"][0]["cpu"] == 128


def test_register_returns_tags_and_describe_include_tags(ecs):
    fam = unique("td-tags")
    resp = ecs.register_task_definition(
        **ec2_task_def(fam), tags=[{"key": "team", "value": "a"}, {"key": "cost", "value": "7"}]
    )
    assert tags_dict(resp.get("tags")) == {"team": "a", "cost": "7"}
    d = ecs.describe_task_definition(taskDefinition=fam, include=["TAGS"])
    assert tags_dict(d["tags"]) == {"team": "a", "cost": "7"}
    d2 = ecs.describe_task_definition(taskDefinition=fam)
    assert not d2.get("tags")


def test_register_keeps_container_fields(ecs):
    fam = unique("td-fields")
    containers = [
        simple_container(
            name="web",
            memory=256,
            memoryReservation=128,
            cpu=256,
            command=["sh", "-c", "echo hi"],
            entryPoint=["/bin/sh"],
            environment=[{"name": "A", "value": "1"}],
            portMappings=[{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
            healthCheck={"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 0},
            dockerLabels={"x": "y"},
            ulimits=[{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
            logConfiguration={"logDriver": "json-file", "options": {"max-size": "10m"}},
        ),
        simple_container(
            name="sidecar",
            memory=64,
            essential=False,
            dependsOn=[{"containerName": "web", "condition": "START"}],
        ),
    ]
    td = register(
        ecs,
        **ec2_task_def(
            fam,
            containers=containers,
            networkMode="bridge",
            volumes=[{"name": "data", "host": {"sourcePath": "/tmp/data"}}],
            placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
        ),
    )
    web = next(c for c in td["containerDefinitions"] if c["name"] == "web")
    side = next(c for c in td["containerDefinitions"] if c["name"] == "sidecar")
    assert web["memory"] == 256 and web["memoryReservation"] == 128 and web["cpu"] == 256
    assert web["command"] == ["sh", "-c", "echo hi"]
    assert web["entryPoint"] == ["/bin/sh"]
    assert web["healthCheck"]["command"] == ["CMD-SHELL", "true"]
    assert web["healthCheck"]["interval"] == 10
    assert web["dockerLabels"] == {"x": "y"}
    assert web["ulimits"] == [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}]
    assert web["logConfiguration"]["logDriver"] == "json-file"
    assert web["portMappings"][0]["containerPort"] == 80
    assert side["essential"] is False
    assert side["dependsOn"] == [{"containerName": "web", "condition": "START"}]
    assert td["volumes"][0]["name"] == "data"
    assert td["volumes"][0]["host"]["sourcePath"] == "/tmp/data"
    assert td["placementConstraints"] == [{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}]


# ------------------------------------------------------------------ validation
def test_invalid_fargate_cpu_memory_pair(ecs):
    with pytest.raises(ClientError) as ei:
        register(ecs, **fargate_task_def(unique("td-bad"), cpu="256", memory="4096"))
    assert_error(ei, "ClientException", message="No Fargate configuration exists for given values.")


@pytest.mark.parametrize(
    "cpu,memory",
    [("256", "512"), ("256", "2048"), ("512", "4096"), ("1024", "8192"), ("2048", "16384"),
     ("4096", "30720"), ("8192", "20480"), ("16384", "40960")],
)
def test_valid_fargate_combinations(ecs, cpu, memory):
    td = register(ecs, **fargate_task_def(unique("td-fg-ok"), cpu=cpu, memory=memory))
    assert (td["cpu"], td["memory"]) == (cpu, memory)


@pytest.mark.parametrize(
    "cpu,memory",
    [("512", "512"), ("1024", "1024"), ("2048", "2048"), ("4096", "31744"), ("8192", "18432"),
     ("16384", "36864"), ("300", "1024")],
)
def test_invalid_fargate_combinations(ecs, cpu, memory):
    with pytest.raises(ClientError) as ei:
        register(ecs, **fargate_task_def(unique("td-fg-bad"), cpu=cpu, memory=memory))
    assert_error(ei, "ClientException")


def test_invalid_cpu_setting(ecs):
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-badcpu"), cpu="lots of cpu"))
    assert_error(ei, "ClientException", message="Invalid 'cpu' setting for task.")


def test_too_many_containers(ecs):
    containers = [simple_container(name=f"c{i}") for i in range(11)]
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-many"), containers=containers))
    assert_error(ei, "ClientException", message="Too many containers.")


def test_ten_containers_allowed(ecs):
    containers = [simple_container(name=f"c{i}") for i in range(10)]
    td = register(ecs, **ec2_task_def(unique("td-ten"), containers=containers))
    assert len(td["containerDefinitions"]) == 10


def test_memory_required_at_task_or_container_level(ecs):
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-nomem"), containers=[simple_container(memory=None)]))
    assert_error(ei, "ClientException", message_contains="memory")


def test_memory_at_task_level_is_enough(ecs):
    td = register(ecs, **ec2_task_def(unique("td-taskmem"), containers=[simple_container(memory=None)], memory="512"))
    assert td["memory"] == "512"


def test_memory_reservation_alone_is_enough(ecs):
    td = register(
        ecs,
        **ec2_task_def(unique("td-memres"), containers=[simple_container(memory=None, memoryReservation=64)]),
    )
    assert td["containerDefinitions"][0]["memoryReservation"] == 64


def test_memory_must_exceed_memory_reservation(ecs):
    with pytest.raises(ClientError) as ei:
        register(
            ecs,
            **ec2_task_def(unique("td-memlt"), containers=[simple_container(memory=64, memoryReservation=128)]),
        )
    assert_error(ei, "ClientException")


def test_port_mappings_not_allowed_with_network_mode_none(ecs):
    c = simple_container(portMappings=[{"containerPort": 80}])
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-none"), containers=[c], networkMode="none"))
    assert_error(ei, "ClientException")


def test_network_mode_none_without_ports_ok(ecs):
    td = register(ecs, **ec2_task_def(unique("td-none-ok"), networkMode="none"))
    assert td["networkMode"] == "none"


@pytest.mark.parametrize("mode", ["awsvpc", "host"])
def test_host_port_must_equal_container_port(ecs, mode):
    c = simple_container(portMappings=[{"containerPort": 80, "hostPort": 8080}])
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-hp"), containers=[c], networkMode=mode))
    assert_error(ei, "ClientException")


@pytest.mark.parametrize("mode", ["awsvpc", "host"])
def test_host_port_equal_or_omitted_ok(ecs, mode):
    c = simple_container(portMappings=[{"containerPort": 80, "hostPort": 80}, {"containerPort": 81}])
    td = register(ecs, **ec2_task_def(unique("td-hp-ok"), containers=[c], networkMode=mode))
    pms = td["containerDefinitions"][0]["portMappings"]
    assert [p["containerPort"] for p in pms] == [80, 81]
    # in awsvpc/host mode the host port equals the container port
    assert all(p.get("hostPort", p["containerPort"]) == p["containerPort"] for p in pms)


@pytest.mark.parametrize("interval", [4, 301])
def test_health_check_interval_out_of_range(ecs, interval):
    c = simple_container(healthCheck={"command": ["CMD-SHELL", "true"], "interval": interval})
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-hc"), containers=[c]))
    assert_error(ei, "ClientException")


@pytest.mark.parametrize(
    "field,value", [("timeout", 1), ("timeout", 61), ("retries", 0), ("retries", 11), ("startPeriod", 301)]
)
def test_health_check_other_ranges(ecs, field, value):
    c = simple_container(healthCheck={"command": ["CMD-SHELL", "true"], field: value})
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-hc2"), containers=[c]))
    assert_error(ei, "ClientException")


def test_health_check_command_must_start_with_cmd(ecs):
    c = simple_container(healthCheck={"command": ["curl", "-f", "http://localhost/"]})
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-hc3"), containers=[c]))
    assert_error(ei, "ClientException")


def test_health_check_bounds_accepted(ecs):
    c = simple_container(
        healthCheck={"command": ["CMD", "true"], "interval": 5, "timeout": 2, "retries": 10, "startPeriod": 300}
    )
    td = register(ecs, **ec2_task_def(unique("td-hc-ok"), containers=[c]))
    assert td["containerDefinitions"][0]["healthCheck"]["interval"] == 5


@pytest.mark.parametrize("condition", ["COMPLETE", "SUCCESS"])
def test_depends_on_complete_on_essential_container_rejected(ecs, condition):
    containers = [
        simple_container(name="init", essential=True),
        simple_container(name="app", dependsOn=[{"containerName": "init", "condition": condition}]),
    ]
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-dep"), containers=containers))
    assert_error(ei, "ClientException")


def test_depends_on_complete_on_non_essential_ok(ecs):
    containers = [
        simple_container(name="init", essential=False),
        simple_container(name="app", dependsOn=[{"containerName": "init", "condition": "COMPLETE"}]),
    ]
    td = register(ecs, **ec2_task_def(unique("td-dep-ok"), containers=containers))
    app = next(c for c in td["containerDefinitions"] if c["name"] == "app")
    assert app["dependsOn"] == [{"containerName": "init", "condition": "COMPLETE"}]


def test_depends_on_unknown_container(ecs):
    c = simple_container(dependsOn=[{"containerName": "ghost", "condition": "START"}])
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-dep-unk"), containers=[c]))
    assert_error(ei, "ClientException")


def test_at_least_one_essential_container(ecs):
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-noess"), containers=[simple_container(essential=False)]))
    assert_error(ei, "ClientException")


def test_container_image_required(ecs):
    c = {"name": "noimage", "memory": 128}
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-noimg"), containers=[c]))
    assert_error(ei, "ClientException")


def test_duplicate_container_names_rejected(ecs):
    containers = [simple_container(name="same"), simple_container(name="same")]
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-dup"), containers=containers))
    assert_error(ei, "ClientException")


@pytest.mark.parametrize("bad", ["has space", "bad:colon", "x" * 256])
def test_invalid_family_name(ecs, bad):
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(bad))
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_fargate_requires_awsvpc(ecs):
    kw = fargate_task_def(unique("td-fg-bridge"))
    kw["networkMode"] = "bridge"
    with pytest.raises(ClientError) as ei:
        register(ecs, **kw)
    assert_error(ei, "ClientException")


def test_fargate_requires_task_cpu_and_memory(ecs):
    kw = fargate_task_def(unique("td-fg-nocpu"))
    del kw["cpu"]
    del kw["memory"]
    kw["containerDefinitions"] = [simple_container(memory=512)]
    with pytest.raises(ClientError) as ei:
        register(ecs, **kw)
    assert_error(ei, "ClientException")


def test_no_containers_rejected(ecs):
    with pytest.raises(ClientError) as ei:
        register(ecs, family=unique("td-empty"), containerDefinitions=[])
    assert_error(ei, {"ClientException", "InvalidParameterException"})


# ------------------------------------------------------------------ describe
def test_describe_by_family_revision_and_arn(ecs):
    fam = unique("td-desc")
    t1 = register(ecs, **ec2_task_def(fam))
    t2 = register(ecs, **ec2_task_def(fam, containers=[simple_container(image="busybox:2")]))
    assert ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]["revision"] == 2
    d1 = ecs.describe_task_definition(taskDefinition=f"{fam}:1")["taskDefinition"]
    assert d1["taskDefinitionArn"] == t1["taskDefinitionArn"]
    assert d1["containerDefinitions"][0]["image"] == "busybox:latest"
    d2 = ecs.describe_task_definition(taskDefinition=t2["taskDefinitionArn"])["taskDefinition"]
    assert d2["revision"] == 2
    assert d2["containerDefinitions"][0]["image"] == "busybox:2"


@pytest.mark.parametrize("ref", ["{fam}", "{fam}:1", "{fam}:99"])
def test_describe_unknown_task_definition(ecs, ref):
    fam = unique("td-unknown")
    if ref.endswith(":99"):
        register(ecs, **ec2_task_def(fam))
    with pytest.raises(ClientError) as ei:
        ecs.describe_task_definition(taskDefinition=ref.format(fam=fam))
    assert_error(ei, "ClientException")


# ------------------------------------------------------------------ deregister
def test_deregister_marks_inactive_and_family_falls_back(ecs):
    fam = unique("td-dereg")
    for _ in range(3):
        register(ecs, **ec2_task_def(fam))
    td = ecs.deregister_task_definition(taskDefinition=f"{fam}:3")["taskDefinition"]
    assert td["status"] == "INACTIVE"
    assert td["revision"] == 3
    assert isinstance(td["deregisteredAt"], datetime.datetime)
    # family now resolves to the newest ACTIVE revision
    assert ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]["revision"] == 2
    # INACTIVE revisions stay describable
    d3 = ecs.describe_task_definition(taskDefinition=f"{fam}:3")["taskDefinition"]
    assert d3["status"] == "INACTIVE"
    assert isinstance(d3["deregisteredAt"], datetime.datetime)
    # deregister by ARN
    td2 = ecs.deregister_task_definition(taskDefinition=td_arn(fam, 2))["taskDefinition"]
    assert td2["status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition=fam)["taskDefinition"]["revision"] == 1


def test_family_with_no_active_revision_not_describable_by_family(ecs):
    fam = unique("td-allgone")
    register(ecs, **ec2_task_def(fam))
    ecs.deregister_task_definition(taskDefinition=f"{fam}:1")
    with pytest.raises(ClientError) as ei:
        ecs.describe_task_definition(taskDefinition=fam)
    assert_error(ei, "ClientException")


def test_deregister_requires_revision(ecs):
    fam = unique("td-dereg-fam")
    register(ecs, **ec2_task_def(fam))
    with pytest.raises(ClientError) as ei:
        ecs.deregister_task_definition(taskDefinition=fam)
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_deregister_unknown(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.deregister_task_definition(taskDefinition=f"{unique('td-nope')}:1")
    assert_error(ei, {"ClientException", "InvalidParameterException"})


# ------------------------------------------------------------------ list
def test_list_task_definitions_filters_and_sort(ecs):
    fam = unique("td-list")
    other = fam + "-other"  # familyPrefix is the *full* family name for this operation
    for _ in range(3):
        register(ecs, **ec2_task_def(fam))
    register(ecs, **ec2_task_def(other))
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")

    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam)
    assert arns == [td_arn(fam, 1), td_arn(fam, 3)]  # default status ACTIVE, default sort ASC

    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam, sort="DESC")
    assert arns == [td_arn(fam, 3), td_arn(fam, 1)]

    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam, status="INACTIVE")
    assert arns == [td_arn(fam, 2)]

    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam, status="ACTIVE")
    assert arns == [td_arn(fam, 1), td_arn(fam, 3)]

    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=other)
    assert arns == [td_arn(other, 1)]


def test_list_task_definitions_unfiltered_includes_new_ones(ecs):
    fam = unique("td-listall")
    register(ecs, **ec2_task_def(fam))
    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns")
    assert td_arn(fam, 1) in arns
    assert len(arns) == len(set(arns))


def test_list_task_definitions_pagination(ecs):
    fam = unique("td-page")
    for _ in range(5):
        register(ecs, **ec2_task_def(fam))
    arns, pages = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam, maxResults=2)
    assert arns == [td_arn(fam, r) for r in range(1, 6)]
    assert all(len(p["taskDefinitionArns"]) <= 2 for p in pages)
    assert len(pages) >= 3
    arns, _ = paginate(
        ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam, maxResults=2, sort="DESC"
    )
    assert arns == [td_arn(fam, r) for r in range(5, 0, -1)]
    # boto3 paginator
    got = []
    for page in ecs.get_paginator("list_task_definitions").paginate(
        familyPrefix=fam, PaginationConfig={"PageSize": 3}
    ):
        got.extend(page["taskDefinitionArns"])
    assert got == [td_arn(fam, r) for r in range(1, 6)]


def test_list_task_definition_families_status(ecs):
    base = unique("tdf")
    active, inactive, mixed = f"{base}-active", f"{base}-inactive", f"{base}-mixed"
    register(ecs, **ec2_task_def(active))
    register(ecs, **ec2_task_def(inactive))
    register(ecs, **ec2_task_def(mixed))
    register(ecs, **ec2_task_def(mixed))
    ecs.deregister_task_definition(taskDefinition=f"{inactive}:1")
    ecs.deregister_task_definition(taskDefinition=f"{mixed}:1")

    def fams(**kw):
        items, _ = paginate(ecs.list_task_definition_families, "families", familyPrefix=base, **kw)
        return sorted(items)

    assert fams() == sorted([active, inactive, mixed])  # default: both
    assert fams(status="ALL") == sorted([active, inactive, mixed])
    assert fams(status="ACTIVE") == sorted([active, mixed])
    assert fams(status="INACTIVE") == [inactive]


def test_list_task_definition_families_prefix_and_pagination(ecs):
    base = unique("tdfp")
    names = [f"{base}-{i}" for i in range(4)]
    for n in names:
        register(ecs, **ec2_task_def(n))
    register(ecs, **ec2_task_def(unique("zz-unrelated")))
    items, pages = paginate(ecs.list_task_definition_families, "families", familyPrefix=base, maxResults=1)
    assert sorted(items) == names
    assert len(pages) >= 4
    all_items, _ = paginate(ecs.list_task_definition_families, "families")
    assert set(names) <= set(all_items)


# ------------------------------------------------------------------ delete
def test_delete_task_definitions_requires_inactive(ecs):
    fam = unique("td-delete")
    register(ecs, **ec2_task_def(fam))
    register(ecs, **ec2_task_def(fam))
    ecs.deregister_task_definition(taskDefinition=f"{fam}:1")
    resp = ecs.delete_task_definitions(taskDefinitions=[f"{fam}:1", td_arn(fam, 2)])
    deleted = {t["taskDefinitionArn"]: t for t in resp["taskDefinitions"]}
    assert list(deleted) == [td_arn(fam, 1)]
    assert deleted[td_arn(fam, 1)]["status"] == "DELETE_IN_PROGRESS"
    assert len(resp["failures"]) == 1
    f = resp["failures"][0]
    assert f["arn"] == td_arn(fam, 2)
    assert f.get("reason")
    # revision 2 is untouched
    assert ecs.describe_task_definition(taskDefinition=f"{fam}:2")["taskDefinition"]["status"] == "ACTIVE"
    # a DELETE_IN_PROGRESS revision is not listed as ACTIVE or INACTIVE
    for status in ("ACTIVE", "INACTIVE"):
        arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam, status=status)
        assert td_arn(fam, 1) not in arns


def test_delete_task_definitions_unknown_is_failure(ecs):
    fam = unique("td-delunk")
    resp = ecs.delete_task_definitions(taskDefinitions=[f"{fam}:1"])
    assert resp["taskDefinitions"] == []
    assert len(resp["failures"]) == 1
    assert resp["failures"][0]["arn"] in (td_arn(fam, 1), f"{fam}:1")


def test_delete_task_definitions_at_most_ten(ecs):
    fam = unique("td-del11")
    with pytest.raises(ClientError) as ei:
        ecs.delete_task_definitions(taskDefinitions=[f"{fam}:{i}" for i in range(1, 12)])
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_delete_ten_at_once(ecs):
    fam = unique("td-del10")
    for i in range(1, 11):
        register(ecs, **ec2_task_def(fam))
        ecs.deregister_task_definition(taskDefinition=f"{fam}:{i}")
    resp = ecs.delete_task_definitions(taskDefinitions=[f"{fam}:{i}" for i in range(1, 11)])
    assert len(resp["taskDefinitions"]) == 10
    assert resp["failures"] == []
    assert all(t["status"] == "DELETE_IN_PROGRESS" for t in resp["taskDefinitions"])


def test_memory_equal_to_memory_reservation_rejected(ecs):
    # contract: "If both container values, memory > memoryReservation" (botocore doc:
    # "If both are specified, memory must be greater than memoryReservation")
    with pytest.raises(ClientError) as ei:
        register(
            ecs,
            **ec2_task_def(unique("td-memeq"), containers=[simple_container(memory=128, memoryReservation=128)]),
        )
    assert_error(ei, "ClientException")


def test_concurrent_registrations_get_distinct_contiguous_revisions(berth):
    from concurrent.futures import ThreadPoolExecutor

    fam = unique("td-race")
    ecs = berth.client()  # botocore clients are thread-safe

    def one(_):
        return ecs.register_task_definition(**ec2_task_def(fam))["taskDefinition"]["revision"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        revs = list(pool.map(one, range(40)))
    assert sorted(revs) == list(range(1, 41))
    arns, _ = paginate(berth.client().list_task_definitions, "taskDefinitionArns", familyPrefix=fam)
    assert arns == [td_arn(fam, r) for r in range(1, 41)]


def test_requires_attributes_derived_from_features(ecs):
    fam = unique("td-reqattr")
    containers = [
        simple_container(
            name="a",
            healthCheck={"command": ["CMD", "true"]},
            logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1"}},
        ),
        simple_container(name="b", dependsOn=[{"containerName": "a", "condition": "HEALTHY"}]),
    ]
    td = register(
        ecs,
        **ec2_task_def(fam, containers=containers, taskRoleArn="arn:aws:iam::000000000000:role/task"),
    )
    names = {a["name"] for a in td.get("requiresAttributes", [])}
    for want in (
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.task-iam-role",
    ):
        assert want in names, (want, sorted(names))
    # a plain bridge definition needs no ENI capability
    assert "ecs.capability.task-eni" not in names


def test_list_task_definitions_default_page_size_is_100(ecs):
    fam = unique("td-100")
    for _ in range(101):
        register(ecs, **ec2_task_def(fam))
    first = ecs.list_task_definitions(familyPrefix=fam)
    assert len(first["taskDefinitionArns"]) == 100
    assert first.get("nextToken")
    second = ecs.list_task_definitions(familyPrefix=fam, nextToken=first["nextToken"])
    assert second["taskDefinitionArns"] == [td_arn(fam, 101)]
    assert not second.get("nextToken")


def test_unicode_and_escapes_round_trip(ecs):
    fam = unique("td-uni")
    tricky = 'héllo ✓ "quoted" back\\slash\nnew line \t tab \u0000nul 🚀'
    c = simple_container(environment=[{"name": "TRICKY", "value": tricky}], dockerLabels={"label": tricky})
    td = register(ecs, **ec2_task_def(fam, containers=[c]), tags=[{"key": "ünï", "value": tricky[:200]}])
    assert td["containerDefinitions"][0]["environment"] == [{"name": "TRICKY", "value": tricky}]
    d = ecs.describe_task_definition(taskDefinition=fam, include=["TAGS"])
    assert d["taskDefinition"]["containerDefinitions"][0]["environment"][0]["value"] == tricky
    assert d["taskDefinition"]["containerDefinitions"][0]["dockerLabels"] == {"label": tricky}
    assert tags_dict(d["tags"]) == {"ünï": tricky[:200]}


# ------------------------------------------------------------------ more validation (§2.2, §2.7)
@pytest.mark.parametrize("size,ok", [(20, False), (21, True), (200, True), (201, False)])
def test_fargate_ephemeral_storage_range(ecs, size, ok):
    kw = fargate_task_def(unique("td-eph"), ephemeralStorage={"sizeInGiB": size})
    if ok:
        assert register(ecs, **kw)["ephemeralStorage"] == {"sizeInGiB": size}
    else:
        with pytest.raises(ClientError) as ei:
            register(ecs, **kw)
        assert_error(ei, "ClientException")


@pytest.mark.parametrize("extra", [{"pidMode": "host"}, {"ipcMode": "host"}], ids=["pidMode-host", "ipcMode"])
def test_fargate_rejects_host_pid_and_ipc(ecs, extra):
    with pytest.raises(ClientError) as ei:
        register(ecs, **fargate_task_def(unique("td-fgmode"), **extra))
    assert_error(ei, "ClientException")


def test_links_only_in_bridge_mode(ecs):
    containers = [simple_container(name="a"), simple_container(name="b", links=["a"])]
    td = register(ecs, **ec2_task_def(unique("td-links"), containers=containers, networkMode="bridge"))
    assert td["containerDefinitions"][1]["links"] == ["a"]
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-links2"), containers=containers, networkMode="awsvpc"))
    assert_error(ei, "ClientException")


def test_fargate_log_drivers(ecs):
    bad = simple_container(memory=None, logConfiguration={"logDriver": "json-file"})
    with pytest.raises(ClientError) as ei:
        register(ecs, **fargate_task_def(unique("td-fglog"), containers=[bad]))
    assert_error(ei, "ClientException")
    good = simple_container(
        memory=None,
        logConfiguration={"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "us-east-1"}},
    )
    # awslogs on Fargate needs an execution role to push the logs
    register(
        ecs,
        **fargate_task_def(
            unique("td-fglog-ok"), containers=[good], executionRoleArn="arn:aws:iam::000000000000:role/exec"
        ),
    )


def test_container_cpu_sum_not_above_task_cpu(ecs):
    containers = [simple_container(name="a", memory=None, cpu=200), simple_container(name="b", memory=None, cpu=200)]
    with pytest.raises(ClientError) as ei:
        register(ecs, **fargate_task_def(unique("td-cpusum"), containers=containers))
    assert_error(ei, "ClientException")


def test_at_most_10_placement_constraints(ecs):
    pc = [{"type": "memberOf", "expression": f"attribute:a{i} == b"} for i in range(11)]
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-pc11"), placementConstraints=pc))
    assert_error(ei, {"ClientException", "InvalidParameterException"})
    register(ecs, **ec2_task_def(unique("td-pc10"), placementConstraints=pc[:10]))


def test_at_most_50_tags_on_registration(ecs):
    with pytest.raises(ClientError) as ei:
        ecs.register_task_definition(
            **ec2_task_def(unique("td-tags51")), tags=[{"key": f"k{i}", "value": "v"} for i in range(51)]
        )
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_task_definition_over_64_kib_rejected(ecs):
    # contract §2.2: task definition JSON <= 64 KiB
    env = [{"name": f"VAR_{i:04d}", "value": "x" * 60} for i in range(1100)]
    c = simple_container(environment=env)
    import json as _json

    assert len(_json.dumps(c)) > 65536
    with pytest.raises(ClientError) as ei:
        register(ecs, **ec2_task_def(unique("td-huge"), containers=[c]))
    assert_error(ei, {"ClientException", "InvalidParameterException"})


def test_list_task_definitions_sorted_by_family_then_numeric_revision(ecs):
    base = unique("td-order")
    fam_b, fam_a = f"{base}-b", f"{base}-a"
    for _ in range(2):
        register(ecs, **ec2_task_def(fam_b))
    for _ in range(11):  # revisions 1..11: numeric, not lexicographic, order
        register(ecs, **ec2_task_def(fam_a))
    want = [td_arn(fam_a, r) for r in range(1, 12)] + [td_arn(fam_b, r) for r in (1, 2)]
    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", maxResults=7)
    ours = [a for a in arns if f"/{base}-" in a]
    assert ours == want
    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", maxResults=7, sort="DESC")
    ours = [a for a in arns if f"/{base}-" in a]
    assert ours == list(reversed(want))


def test_tags_belong_to_one_revision(ecs):
    fam = unique("td-tagrev")
    register(ecs, **ec2_task_def(fam))
    register(ecs, **ec2_task_def(fam))
    ecs.tag_resource(resourceArn=td_arn(fam, 1), tags=[{"key": "rev", "value": "1"}])
    assert tags_dict(ecs.list_tags_for_resource(resourceArn=td_arn(fam, 1))["tags"]) == {"rev": "1"}
    assert ecs.list_tags_for_resource(resourceArn=td_arn(fam, 2))["tags"] == []


def test_explicit_zero_values_round_trip(ecs):
    fam = unique("td-zero")
    c = simple_container(cpu=0, portMappings=[{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}])
    td = register(ecs, **ec2_task_def(fam, containers=[c], networkMode="bridge"))
    got = td["containerDefinitions"][0]
    assert got["cpu"] == 0
    assert got["portMappings"] == [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}]
