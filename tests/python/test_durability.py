"""Durability: every acknowledged write survives a graceful restart and a kill -9.

Each test runs its own server (`own_berth`) so restarting it cannot disturb the
shared server used by the other tests."""

import pytest

from harness import (
    cluster_arn,
    ec2_task_def,
    paginate,
    register_instance,
    tags_dict,
    td_arn,
    unique,
)


def write_world(ecs):
    """Create a bit of everything; return what to look for afterwards."""
    w = {"clusters": [unique("dur-c") for _ in range(3)], "family": unique("dur-td")}
    for i, name in enumerate(w["clusters"]):
        ecs.create_cluster(
            clusterName=name,
            tags=[{"key": "i", "value": str(i)}],
            settings=[{"name": "containerInsights", "value": "enabled"}],
            capacityProviders=["FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
        )
    fam = w["family"]
    for _ in range(3):
        ecs.register_task_definition(**ec2_task_def(fam), tags=[{"key": "fam", "value": fam}])
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")
    c0 = w["clusters"][0]
    ci = register_instance(ecs, c0)["containerInstanceArn"]
    ecs.put_attributes(
        cluster=c0,
        attributes=[{"name": "zone", "value": "z1", "targetType": "container-instance", "targetId": ci}],
    )
    ci2 = register_instance(ecs, c0)["containerInstanceArn"]
    ecs.update_container_instances_state(cluster=c0, containerInstances=[ci2], status="DRAINING")
    ecs.delete_cluster(cluster=w["clusters"][2])
    w["ci"], w["ci2"] = ci, ci2
    cp = unique("durcp")
    ecs.create_capacity_provider(
        name=cp,
        autoScalingGroupProvider={
            "autoScalingGroupArn": f"arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:{unique('u')}:autoScalingGroupName/{cp}"
        },
    )
    w["cp"] = cp
    ecs.put_account_setting_default(name="awsvpcTrunking", value="enabled")
    return w


def check_world(ecs, w):
    c0, c1, c2 = w["clusters"]
    listed, _ = paginate(ecs.list_clusters, "clusterArns")
    assert cluster_arn(c0) in listed and cluster_arn(c1) in listed
    assert cluster_arn(c2) not in listed
    d = ecs.describe_clusters(clusters=[c0, c1], include=["TAGS", "SETTINGS"])
    assert d["failures"] == []
    by = {c["clusterName"]: c for c in d["clusters"]}
    assert tags_dict(by[c0]["tags"]) == {"i": "0"}
    assert tags_dict(by[c1]["tags"]) == {"i": "1"}
    assert {"name": "containerInsights", "value": "enabled"} in by[c1]["settings"]
    assert by[c1]["capacityProviders"] == ["FARGATE"]
    assert by[c0]["registeredContainerInstancesCount"] == 2

    fam = w["family"]
    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam)
    assert arns == [td_arn(fam, 1), td_arn(fam, 3)]
    assert ecs.describe_task_definition(taskDefinition=f"{fam}:2")["taskDefinition"]["status"] == "INACTIVE"
    t = ecs.describe_task_definition(taskDefinition=fam, include=["TAGS"])
    assert t["taskDefinition"]["revision"] == 3
    assert tags_dict(t["tags"]) == {"fam": fam}

    cis = ecs.describe_container_instances(cluster=c0, containerInstances=[w["ci"], w["ci2"]])
    assert cis["failures"] == []
    st = {c["containerInstanceArn"]: c for c in cis["containerInstances"]}
    assert st[w["ci"]]["status"] == "ACTIVE"
    assert st[w["ci2"]]["status"] == "DRAINING"
    assert {"name": "zone", "value": "z1"} in st[w["ci"]]["attributes"]
    attrs, _ = paginate(
        ecs.list_attributes, "attributes", cluster=c0, targetType="container-instance", attributeName="zone"
    )
    assert [(a["targetId"], a.get("value")) for a in attrs] == [(w["ci"], "z1")]

    cps = ecs.describe_capacity_providers(capacityProviders=[w["cp"]])
    assert [c["name"] for c in cps["capacityProviders"]] == [w["cp"]]

    eff = {s["name"]: s["value"] for s in paginate(ecs.list_account_settings, "settings", effectiveSettings=True)[0]}
    assert eff.get("awsvpcTrunking") == "enabled"


def test_graceful_restart_keeps_everything(own_berth):
    ecs = own_berth.client()
    w = write_world(ecs)
    check_world(ecs, w)
    rc = own_berth.restart()
    assert rc == 0, f"server did not exit cleanly on SIGTERM (exit code {rc})\n{own_berth.log_tail()}"
    ecs = own_berth.client()
    check_world(ecs, w)
    # revisions continue after the restart
    td = ecs.register_task_definition(**ec2_task_def(w["family"]))["taskDefinition"]
    assert td["revision"] == 4


def test_kill9_keeps_acknowledged_writes(own_berth):
    ecs = own_berth.client()
    w = write_world(ecs)
    own_berth.crash_restart()
    ecs = own_berth.client()
    check_world(ecs, w)
    td = ecs.register_task_definition(**ec2_task_def(w["family"]))["taskDefinition"]
    assert td["revision"] == 4


def test_kill9_right_after_burst_of_writes(own_berth):
    ecs = own_berth.client()
    prefix = unique("burst")
    names = [f"{prefix}-{i}" for i in range(40)]
    fam = unique("burst-td")
    for n in names:
        ecs.create_cluster(clusterName=n)
        ecs.register_task_definition(**ec2_task_def(fam))
    # no pause: the last write was acknowledged, so it must be on disk
    own_berth.crash_restart()
    ecs = own_berth.client()
    listed, _ = paginate(ecs.list_clusters, "clusterArns")
    missing = [n for n in names if cluster_arn(n) not in listed]
    assert not missing, f"lost {len(missing)} acknowledged clusters, e.g. {missing[:3]}"
    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam)
    assert arns == [td_arn(fam, r) for r in range(1, 41)]
    assert ecs.register_task_definition(**ec2_task_def(fam))["taskDefinition"]["revision"] == 41


def test_repeated_crashes(own_berth):
    fam = unique("crash-td")
    for round_ in range(1, 4):
        ecs = own_berth.client()
        td = ecs.register_task_definition(**ec2_task_def(fam))["taskDefinition"]
        assert td["revision"] == round_
        own_berth.crash_restart()
    ecs = own_berth.client()
    arns, _ = paginate(ecs.list_task_definitions, "taskDefinitionArns", familyPrefix=fam)
    assert arns == [td_arn(fam, r) for r in (1, 2, 3)]


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_region_data_survives_restart(own_berth, how):
    eu = own_berth.client(region="eu-west-1")
    name = unique("dur-eu")
    eu.create_cluster(clusterName=name)
    if how == "graceful":
        own_berth.restart()
    else:
        own_berth.crash_restart()
    eu = own_berth.client(region="eu-west-1")
    us = own_berth.client()
    d = eu.describe_clusters(clusters=[name])
    assert [c["clusterArn"] for c in d["clusters"]] == [cluster_arn(name, "eu-west-1")]
    assert [f["reason"] for f in us.describe_clusters(clusters=[name])["failures"]] == ["MISSING"]


def test_second_server_on_same_data_dir_is_refused(own_berth, tmp_path):
    """Two servers must not share one embedded store: the second one exits with an error."""
    import subprocess

    from harness import free_port

    ecs = own_berth.client()
    name = unique("lock")
    ecs.create_cluster(clusterName=name)
    port = free_port()
    log = tmp_path / "second.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(own_berth.binary), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(own_berth.data_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        rc = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    assert rc not in (None, 0), (
        f"a second server on the same data dir kept running (rc={rc}); output:\n{log.read_text(errors='replace')}"
    )
    # the first server is unaffected
    assert own_berth.alive
    assert [c["clusterName"] for c in ecs.describe_clusters(clusters=[name])["clusters"]] == [name]


@pytest.mark.parametrize("how", ["graceful", "kill9"])
def test_deleted_latest_revision_not_reused_after_restart(own_berth, how):
    ecs = own_berth.client()
    fam = unique("dur-del")
    gone = unique("dur-gone")
    for _ in range(2):
        ecs.register_task_definition(**ec2_task_def(fam))
    ecs.deregister_task_definition(taskDefinition=f"{fam}:2")
    ecs.delete_task_definitions(taskDefinitions=[f"{fam}:2"])
    # a family whose every revision is deleted
    ecs.register_task_definition(**ec2_task_def(gone))
    ecs.deregister_task_definition(taskDefinition=f"{gone}:1")
    ecs.delete_task_definitions(taskDefinitions=[f"{gone}:1"])
    if how == "graceful":
        own_berth.restart()
    else:
        own_berth.crash_restart()
    ecs = own_berth.client()
    assert ecs.register_task_definition(**ec2_task_def(fam))["taskDefinition"]["revision"] == 3
    assert ecs.register_task_definition(**ec2_task_def(gone))["taskDefinition"]["revision"] == 2


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_writes_acknowledged_while_stopping_survive(own_berth, how):
    """Hammer the server from several threads, stop it mid-stream, restart: every
    write that got a 200 must be there."""
    import threading
    import time as _time

    from botocore.exceptions import BotoCoreError, ClientError

    prefix = unique("inflight")
    acked, lock, stop = [], threading.Lock(), threading.Event()
    ecs = own_berth.client()

    def writer(t):
        i = 0
        while not stop.is_set():
            name = f"{prefix}-{t}-{i}"
            try:
                ecs.create_cluster(clusterName=name)
            except (BotoCoreError, ClientError):
                return
            with lock:
                acked.append(name)
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    _time.sleep(1.0)
    if how == "sigterm":
        rc = own_berth.stop()
        assert rc == 0, f"exit code {rc} on SIGTERM under load\n{own_berth.log_tail()}"
    else:
        own_berth.kill()
    stop.set()
    for th in threads:
        th.join(timeout=30)
    assert len(acked) > 10, "the writers did not get going"
    own_berth.start()
    listed, _ = paginate(own_berth.client().list_clusters, "clusterArns")
    missing = [n for n in acked if cluster_arn(n) not in listed]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged clusters lost, e.g. {missing[:3]}"
