"""The same API driven through aws-cli (the venv's `aws`, never the system one)."""

import copy
import json

from harness import (
    SEED_TASK_DEFINITION,
    aws_cli_bin,
    cluster_arn,
    td_arn,
    unique,
)


def test_cli_is_the_venv_one():
    path = aws_cli_bin()
    assert ".venv" in str(path) or "venv" in str(path), path


def test_cli_create_and_describe_cluster(berth):
    name = unique("cli-c")
    out = berth.aws(
        "ecs", "create-cluster", "--cluster-name", name,
        "--tags", "key=team,value=cli",
        "--settings", "name=containerInsights,value=enabled",
    ).json
    assert out["cluster"]["clusterName"] == name
    assert out["cluster"]["clusterArn"] == cluster_arn(name)
    assert out["cluster"]["status"] == "ACTIVE"

    out = berth.aws("ecs", "describe-clusters", "--clusters", name, "--include", "TAGS", "SETTINGS").json
    assert [c["clusterName"] for c in out["clusters"]] == [name]
    assert out["failures"] == []
    c = out["clusters"][0]
    assert c["tags"] == [{"key": "team", "value": "cli"}]
    assert {"name": "containerInsights", "value": "enabled"} in c["settings"]


def test_cli_describe_missing_cluster(berth):
    name = unique("cli-missing")
    out = berth.aws("ecs", "describe-clusters", "--clusters", name).json
    assert out["clusters"] == []
    assert out["failures"] == [{"arn": cluster_arn(name), "reason": "MISSING"}]


def test_cli_register_task_definition_from_file(berth, tmp_path):
    doc = copy.deepcopy(SEED_TASK_DEFINITION)
    doc["family"] = unique("cli-platform-task")
    path = tmp_path / "taskdef.json"
    path.write_text(json.dumps(doc))
    out = berth.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}").json
    td = out["taskDefinition"]
    assert td["family"] == doc["family"]
    assert td["revision"] == 1
    assert td["taskDefinitionArn"] == td_arn(doc["family"], 1)
    assert td["status"] == "ACTIVE"
    assert "FARGATE" in td["compatibilities"]
    assert td["cpu"] == "256" and td["memory"] == "512"
    # aws-cli prints timestamps as strings; they must have parsed from epoch numbers
    assert isinstance(td["registeredAt"], (str, int, float))

    out = berth.aws("ecs", "describe-task-definition", "--task-definition", doc["family"]).json
    assert out["taskDefinition"]["revision"] == 1

    out = berth.aws("ecs", "list-task-definitions", "--family-prefix", doc["family"]).json
    assert out["taskDefinitionArns"] == [td_arn(doc["family"], 1)]

    out = berth.aws("ecs", "list-task-definition-families", "--family-prefix", doc["family"]).json
    assert out["families"] == [doc["family"]]


def test_cli_register_seed_as_is(berth, tmp_path):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(SEED_TASK_DEFINITION))
    out = berth.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}").json
    td = out["taskDefinition"]
    assert td["family"] == "platform-task"
    assert td["containerDefinitions"][0]["name"] == "next-api"
    assert "FARGATE" in td["compatibilities"]


def test_cli_list_task_definitions_sort_and_status(berth, tmp_path):
    fam = unique("cli-td")
    path = tmp_path / "td.json"
    path.write_text(json.dumps({
        "family": fam,
        "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}],
    }))
    for _ in range(3):
        berth.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}")
    berth.aws("ecs", "deregister-task-definition", "--task-definition", f"{fam}:2")
    out = berth.aws("ecs", "list-task-definitions", "--family-prefix", fam, "--sort", "DESC").json
    assert out["taskDefinitionArns"] == [td_arn(fam, 3), td_arn(fam, 1)]
    out = berth.aws("ecs", "list-task-definitions", "--family-prefix", fam, "--status", "INACTIVE").json
    assert out["taskDefinitionArns"] == [td_arn(fam, 2)]


def test_cli_list_clusters_pagination(berth):
    prefix = unique("cli-pg")
    names = [f"{prefix}-{i}" for i in range(5)]
    for n in names:
        berth.aws("ecs", "create-cluster", "--cluster-name", n)

    # auto-pagination with a small page size walks every page
    out = berth.aws("ecs", "list-clusters", "--page-size", "2").json
    arns = out["clusterArns"]
    assert len(arns) == len(set(arns))
    for n in names:
        assert cluster_arn(n) in arns

    # --max-items returns a NextToken that resumes where it stopped
    first = berth.aws("ecs", "list-clusters", "--max-items", "2", "--page-size", "2").json
    assert len(first["clusterArns"]) == 2
    assert first.get("NextToken")
    rest = berth.aws("ecs", "list-clusters", "--starting-token", first["NextToken"], "--page-size", "2").json
    combined = first["clusterArns"] + rest["clusterArns"]
    assert len(combined) == len(set(combined))
    assert sorted(combined) == sorted(arns)

    # --no-paginate with an explicit maxResults returns one raw page with nextToken
    raw = berth.aws("ecs", "list-clusters", "--no-paginate", "--max-results", "2").json
    assert len(raw["clusterArns"]) == 2
    assert raw.get("nextToken")


def test_cli_error_prints_exception_name(berth):
    name = unique("cli-nope")
    res = berth.aws("ecs", "delete-cluster", "--cluster", name, check=False)
    assert res.returncode != 0, res
    assert "An error occurred (ClusterNotFoundException)" in res.stderr, res
    assert "DeleteCluster" in res.stderr, res

    res = berth.aws("ecs", "list-container-instances", "--cluster", name, check=False)
    assert res.returncode != 0, res
    assert "An error occurred (ClusterNotFoundException)" in res.stderr, res


def test_cli_client_exception_for_invalid_task_definition(berth, tmp_path):
    doc = copy.deepcopy(SEED_TASK_DEFINITION)
    doc["family"] = unique("cli-bad")
    doc["memory"] = "4096"  # not valid with cpu 256 on Fargate
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    res = berth.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{path}", check=False)
    assert res.returncode != 0, res
    assert "An error occurred (ClientException)" in res.stderr, res
    assert "No Fargate configuration exists for given values." in res.stderr, res


def test_cli_container_instance_lifecycle(berth, tmp_path):
    name = unique("cli-ci")
    berth.aws("ecs", "create-cluster", "--cluster-name", name)
    req = tmp_path / "ci.json"
    req.write_text(json.dumps({
        "cluster": name,
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048},
        ],
        "versionInfo": {"agentVersion": "1.105.1", "agentHash": "x", "dockerVersion": "25.0.3"},
    }))
    ci = berth.aws("ecs", "register-container-instance", "--cli-input-json", f"file://{req}").json[
        "containerInstance"
    ]
    arn = ci["containerInstanceArn"]
    out = berth.aws("ecs", "list-container-instances", "--cluster", name).json
    assert out["containerInstanceArns"] == [arn]
    out = berth.aws(
        "ecs", "update-container-instances-state", "--cluster", name,
        "--container-instances", arn, "--status", "DRAINING",
    ).json
    assert out["containerInstances"][0]["status"] == "DRAINING"
    out = berth.aws("ecs", "list-container-instances", "--cluster", name, "--status", "DRAINING").json
    assert out["containerInstanceArns"] == [arn]
    out = berth.aws("ecs", "deregister-container-instance", "--cluster", name, "--container-instance", arn).json
    assert out["containerInstance"]["status"] == "INACTIVE"
    out = berth.aws("ecs", "delete-cluster", "--cluster", name).json
    assert out["cluster"]["status"] == "INACTIVE"


def test_cli_region_flag(berth):
    name = unique("cli-eu")
    out = berth.aws("ecs", "create-cluster", "--cluster-name", name, region="eu-west-1").json
    assert out["cluster"]["clusterArn"] == cluster_arn(name, "eu-west-1")
    out = berth.aws("ecs", "describe-clusters", "--clusters", name).json
    assert [f["reason"] for f in out["failures"]] == ["MISSING"]


def test_cli_describe_capacity_providers(berth):
    out = berth.aws("ecs", "describe-capacity-providers", "--capacity-providers", "FARGATE", "FARGATE_SPOT").json
    assert sorted(c["name"] for c in out["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]


def test_cli_tags(berth):
    name = unique("cli-tag")
    arn = berth.aws("ecs", "create-cluster", "--cluster-name", name).json["cluster"]["clusterArn"]
    berth.aws("ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=a,value=1", "key=b,value=2")
    out = berth.aws("ecs", "list-tags-for-resource", "--resource-arn", arn).json
    assert sorted((t["key"], t["value"]) for t in out["tags"]) == [("a", "1"), ("b", "2")]
    berth.aws("ecs", "untag-resource", "--resource-arn", arn, "--tag-keys", "a")
    out = berth.aws("ecs", "list-tags-for-resource", "--resource-arn", arn).json
    assert out["tags"] == [{"key": "b", "value": "2"}]
