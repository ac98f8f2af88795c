"""AWS JSON 1.1 wire protocol, exercised with raw HTTP (http.client / sockets)."""

import json
import socket
import time

import pytest

from harness import JSON_CT, cluster_arn, no_nulls, unique


def check_error(resp, want_type=None, status=400):
    assert resp.status == status, resp
    assert "x-amzn-requestid" in resp.headers, resp.headers
    assert resp.headers["x-amzn-requestid"].strip(), resp.headers
    body = resp.json
    assert isinstance(body.get("__type"), str) and body["__type"], body
    msg = body.get("message", body.get("Message"))
    assert isinstance(msg, str), body
    et = resp.headers.get("x-amzn-errortype")
    assert et, f"missing x-amzn-errortype header: {resp.headers}"
    if want_type is not None:
        assert resp.error_type() == want_type, body
        assert et.split(":", 1)[0] == want_type, et
    return body


def test_healthz(berth):
    assert berth.healthz() == 200


def test_success_has_request_id_and_json_content_type(berth):
    name = unique("raw-ok")
    r = berth.raw("CreateCluster", {"clusterName": name})
    assert r.status == 200, r
    assert r.headers.get("x-amzn-requestid"), r.headers
    assert r.headers.get("content-type", "").startswith(JSON_CT), r.headers
    assert r.json["cluster"]["clusterArn"] == cluster_arn(name)
    no_nulls(r.json)


def test_request_ids_are_unique(berth):
    ids = {berth.raw("ListClusters", {}).headers["x-amzn-requestid"] for _ in range(5)}
    assert len(ids) == 5


def test_unknown_operation(berth):
    r = berth.raw("FrobnicateTheWidgets", {})
    check_error(r, "UnknownOperationException")


def test_unknown_target_prefix(berth):
    r = berth.raw(None, {}, target="SomeOtherServiceV20200101.ListClusters")
    assert 400 <= r.status < 500, r
    assert r.headers.get("x-amzn-requestid"), r.headers


def test_missing_target_header(berth):
    r = berth.raw(None, {})
    assert 400 <= r.status < 500, r
    assert r.headers.get("x-amzn-requestid"), r.headers


@pytest.mark.parametrize("body", [b'{"clusterName": ', b"not json at all", b"[1, 2", b'{"clusterName": "a",}'])
def test_malformed_json(berth, body):
    r = berth.raw("CreateCluster", body)
    check_error(r, "SerializationException")


@pytest.mark.parametrize(
    "op,body,field",
    [
        ("CreateCluster", {"clusterName": 5}, "clusterName"),
        ("CreateCluster", {"clusterName": "x", "tags": "not-a-list"}, "tags"),
        ("ListClusters", {"maxResults": "ten"}, "maxResults"),
        ("DescribeClusters", {"clusters": [1, 2]}, "clusters"),
        ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [{"name": "a", "memory": "lots"}]}, "memory"),
    ],
)
def test_wrong_member_type_names_field(berth, op, body, field):
    r = berth.raw(op, body)
    b = check_error(r)
    msg = b.get("message", b.get("Message", ""))
    assert field in msg, f"error message should name {field!r}: {b}"


def test_error_headers_and_body_for_modelled_exception(berth):
    r = berth.raw("DeleteCluster", {"cluster": unique("raw-missing")})
    b = check_error(r, "ClusterNotFoundException")
    assert b["message"] == "Cluster not found."
    assert r.headers.get("content-type", "").startswith(JSON_CT), r.headers


def test_empty_object_body_for_no_input_operation(berth):
    r = berth.raw("ListClusters", b"{}")
    assert r.status == 200, r
    assert isinstance(r.json["clusterArns"], list)


def test_unknown_members_are_ignored(berth):
    name = unique("raw-extra")
    r = berth.raw("CreateCluster", {"clusterName": name, "someFutureMember": {"x": 1}})
    assert r.status == 200, r
    assert r.json["cluster"]["clusterName"] == name


def test_batch_operations_emit_empty_failures(berth):
    name = unique("raw-batch")
    berth.raw("CreateCluster", {"clusterName": name})
    r = berth.raw("DescribeClusters", {"clusters": [name]})
    assert r.status == 200, r
    assert r.json["failures"] == []
    no_nulls(r.json)


def test_timestamps_are_epoch_seconds_numbers(berth):
    fam = unique("raw-ts")
    body = {
        "family": fam,
        "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}],
    }
    before = time.time()
    r = berth.raw("RegisterTaskDefinition", body)
    after = time.time()
    assert r.status == 200, r
    td = r.json["taskDefinition"]
    ts = td["registeredAt"]
    assert isinstance(ts, (int, float)) and not isinstance(ts, bool), td
    assert before - 5 <= ts <= after + 5, (before, ts, after)
    no_nulls(r.json)

    r = berth.raw("DeregisterTaskDefinition", {"taskDefinition": f"{fam}:1"})
    assert r.status == 200, r
    ts = r.json["taskDefinition"]["deregisteredAt"]
    assert isinstance(ts, (int, float)) and not isinstance(ts, bool)
    assert before - 5 <= ts <= time.time() + 5

    cluster = unique("raw-ts-c")
    berth.raw("CreateCluster", {"clusterName": cluster})
    r = berth.raw(
        "RegisterContainerInstance",
        {
            "cluster": cluster,
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024},
            ],
        },
    )
    assert r.status == 200, r
    ts = r.json["containerInstance"]["registeredAt"]
    assert isinstance(ts, (int, float)) and not isinstance(ts, bool)
    assert before - 5 <= ts <= time.time() + 5
    no_nulls(r.json)


def test_region_from_credential_scope(berth):
    name = unique("raw-region")
    r = berth.raw("CreateCluster", {"clusterName": name}, region="eu-west-1")
    assert r.status == 200, r
    assert r.json["cluster"]["clusterArn"] == cluster_arn(name, "eu-west-1")


class _Prefixed:
    """A socket whose first recv() returns bytes that were already read."""

    def __init__(self, first, sock):
        self.first, self.sock = first, sock

    def recv(self, n):
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.sock.recv(n)


def _read_http_response(sock, deadline):
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            if status == 100:
                data = rest
                continue
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.decode().strip().lower()] = v.decode().strip()
            n = int(headers.get("content-length", "0") or 0)
            if len(rest) >= n or "content-length" not in headers:
                return status, headers, rest
    return None, {}, data


def test_oversized_body_rejected(berth):
    size = 20 * 1024 * 1024
    body = b'{"clusterName": "' + b"a" * (size - 20) + b'"}'
    hdrs = berth.signed_headers("CreateCluster", body)
    hdrs["Content-Length"] = str(len(body))
    hdrs["Expect"] = "100-continue"
    head = "POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % berth.port
    head += "".join(f"{k}: {v}\r\n" for k, v in hdrs.items() if k.lower() != "host")
    head += "\r\n"
    sock = socket.create_connection(("127.0.0.1", berth.port), timeout=2)
    status, headers = None, {}
    try:
        sock.sendall(head.encode())
        # the server may answer the headers alone (413) or ask for the body (100 Continue)
        sock.settimeout(2)
        early = b""
        try:
            early = sock.recv(65536)
        except socket.timeout:
            pass
        if early.startswith(b"HTTP/1.1 100") or early.startswith(b"HTTP/1.0 100") or not early:
            try:
                sock.settimeout(30)
                view = memoryview(body)
                for i in range(0, len(body), 1 << 16):
                    sock.sendall(view[i : i + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass
            sock.settimeout(1)
            status, headers, _ = _read_http_response(sock, time.monotonic() + 30)
        else:
            sock.settimeout(1)
            status, headers, _ = _read_http_response(_Prefixed(early, sock), time.monotonic() + 10)
    finally:
        sock.close()
    assert status is not None, "server closed the connection without an HTTP response"
    assert 400 <= status < 500, f"oversized body answered with HTTP {status}"
    assert headers.get("x-amzn-requestid"), headers
    # the server is still alive and serving
    assert berth.alive
    assert berth.healthz() == 200
    assert berth.raw("ListClusters", {}).status == 200


def test_large_but_reasonable_task_definition_accepted(berth):
    # ~40 KiB of environment is below the 64 KiB task definition limit
    fam = unique("raw-big")
    env = [{"name": f"VAR_{i}", "value": "x" * 30} for i in range(800)]
    body = {"family": fam, "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64, "environment": env}]}
    assert len(json.dumps(body)) < 60_000
    r = berth.raw("RegisterTaskDefinition", body)
    assert r.status == 200, r
    assert len(r.json["taskDefinition"]["containerDefinitions"][0]["environment"]) == 800


def test_get_root_does_not_crash_server(berth):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", berth.port, timeout=10)
    try:
        conn.request("GET", "/")
        r = conn.getresponse()
        r.read()
        assert r.status < 500, r.status
    finally:
        conn.close()
    assert berth.healthz() == 200


def test_timestamps_have_millisecond_fractions(berth):
    # "epoch seconds as JSON number with fractional ms, e.g. 1510811361.128"
    fam = unique("raw-ms")
    stamps = []
    for _ in range(5):
        r = berth.raw(
            "RegisterTaskDefinition",
            {"family": fam, "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 64}]},
        )
        assert r.status == 200, r
        stamps.append(r.json["taskDefinition"]["registeredAt"])
        time.sleep(0.013)
    assert any(isinstance(s, float) and s != int(s) for s in stamps), stamps
