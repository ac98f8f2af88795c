"""ListAccountSettings / PutAccountSetting / PutAccountSettingDefault / DeleteAccountSetting.

Account settings are per account and region; these tests use their own region so
that they cannot change the defaults seen by the other tests (which use us-east-1)."""

import pytest
from botocore.exceptions import ClientError

from harness import ACCOUNT, assert_error, unique

REGION = "us-west-2"


@pytest.fixture
def ecs_w(berth):
    return berth.client(region=REGION)


def all_settings(ecs, **kw):
    items, token = [], None
    pages = 0
    while True:
        if token:
            kw["nextToken"] = token
        resp = ecs.list_account_settings(**kw)
        pages += 1
        assert len(resp["settings"]) <= kw.get("maxResults", 10)
        items.extend(resp["settings"])
        token = resp.get("nextToken")
        if not token:
            return items
        assert pages < 100


def test_effective_settings_include_long_arn_formats(ecs_w):
    settings = all_settings(ecs_w, effectiveSettings=True)
    by = {s["name"]: s["value"] for s in settings}
    for name in ("serviceLongArnFormat", "taskLongArnFormat", "containerInstanceLongArnFormat"):
        assert by.get(name) == "enabled", settings
    for s in settings:
        assert s["name"] and s["value"]
        assert "principalArn" in s


def test_list_account_settings_pagination(ecs_w):
    settings = all_settings(ecs_w, effectiveSettings=True, maxResults=2)
    names = [s["name"] for s in settings]
    assert len(names) == len(set(names))
    assert len(names) >= 3


def test_put_account_setting_for_principal(ecs_w):
    principal = f"arn:aws:iam::{ACCOUNT}:user/{unique('alice')}"
    s = ecs_w.put_account_setting(name="containerInsights", value="enabled", principalArn=principal)["setting"]
    assert s["name"] == "containerInsights"
    assert s["value"] == "enabled"
    assert s["principalArn"] == principal

    got = all_settings(ecs_w, name="containerInsights", principalArn=principal)
    assert [(x["name"], x["value"], x["principalArn"]) for x in got] == [("containerInsights", "enabled", principal)]

    got = all_settings(ecs_w, name="containerInsights", principalArn=principal, effectiveSettings=True)
    assert [x["value"] for x in got] == ["enabled"]

    d = ecs_w.delete_account_setting(name="containerInsights", principalArn=principal)["setting"]
    assert d["name"] == "containerInsights"
    assert all_settings(ecs_w, name="containerInsights", principalArn=principal) == []


def test_put_account_setting_default_and_effective(ecs_w):
    s = ecs_w.put_account_setting_default(name="awsvpcTrunking", value="enabled")["setting"]
    assert s["name"] == "awsvpcTrunking"
    assert s["value"] == "enabled"
    eff = {x["name"]: x["value"] for x in all_settings(ecs_w, effectiveSettings=True)}
    assert eff.get("awsvpcTrunking") == "enabled"
    # a principal without its own setting sees the default
    principal = f"arn:aws:iam::{ACCOUNT}:user/{unique('bob')}"
    got = all_settings(ecs_w, name="awsvpcTrunking", principalArn=principal, effectiveSettings=True)
    assert [x["value"] for x in got] == ["enabled"]
    # ...until it sets its own
    ecs_w.put_account_setting(name="awsvpcTrunking", value="disabled", principalArn=principal)
    got = all_settings(ecs_w, name="awsvpcTrunking", principalArn=principal, effectiveSettings=True)
    assert [x["value"] for x in got] == ["disabled"]
    ecs_w.put_account_setting_default(name="awsvpcTrunking", value="disabled")
    eff = {x["name"]: x["value"] for x in all_settings(ecs_w, effectiveSettings=True)}
    assert eff.get("awsvpcTrunking") == "disabled"


def test_put_account_setting_without_principal_and_delete(ecs_w):
    s = ecs_w.put_account_setting(name="tagResourceAuthorization", value="on")["setting"]
    assert (s["name"], s["value"]) == ("tagResourceAuthorization", "on")
    got = all_settings(ecs_w, name="tagResourceAuthorization", effectiveSettings=True)
    assert [x["value"] for x in got] == ["on"]
    got = all_settings(ecs_w, name="tagResourceAuthorization", value="on")
    assert [x["value"] for x in got] == ["on"]
    ecs_w.delete_account_setting(name="tagResourceAuthorization")
    got = all_settings(ecs_w, name="tagResourceAuthorization", effectiveSettings=True)
    assert len(got) <= 1  # falls back to the default, whatever it is
    got = all_settings(ecs_w, name="tagResourceAuthorization", value="on")
    assert got == []


def test_invalid_setting_name(ecs_w):
    with pytest.raises(ClientError) as ei:
        ecs_w.put_account_setting(name="noSuchSetting", value="enabled")
    assert_error(ei, {"InvalidParameterException", "ClientException"})


def test_account_settings_are_per_region(berth, ecs_w):
    other = berth.client(region="ap-southeast-2")
    ecs_w.put_account_setting_default(name="containerInsights", value="enhanced")
    mine = {x["name"]: x["value"] for x in all_settings(ecs_w, effectiveSettings=True)}
    theirs = {x["name"]: x["value"] for x in all_settings(other, effectiveSettings=True)}
    assert mine.get("containerInsights") == "enhanced"
    assert theirs.get("containerInsights") != "enhanced"
    ecs_w.put_account_setting_default(name="containerInsights", value="disabled")


@pytest.mark.parametrize(
    "name,value",
    [
        ("containerInsights", "bogus"),
        ("fargateTaskRetirementWaitPeriod", "5"),
        ("serviceLongArnFormat", "disabled"),
        ("awsvpcTrunking", "maybe"),
    ],
)
def test_invalid_setting_value(ecs_w, name, value):
    with pytest.raises(ClientError) as ei:
        ecs_w.put_account_setting(name=name, value=value)
    assert_error(ei, {"InvalidParameterException", "ClientException"})
    with pytest.raises(ClientError) as ei:
        ecs_w.put_account_setting_default(name=name, value=value)
    assert_error(ei, {"InvalidParameterException", "ClientException"})
