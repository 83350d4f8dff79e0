"""serve/guard.py on its own, as ASGI middleware around a stub app: which Host names pass, which POSTs are refused
for their Content-Type, a body bounded while it streams (an endless chunked body is read only up to the limit),
and the page's headers on every answer."""

from __future__ import annotations

import asyncio
import json

import pytest

from mtkit.serve.guard import HEADERS, Guard, allowed_hosts, host_name

LIMIT = 1000
HOSTS = allowed_hosts("127.0.0.1")


@pytest.mark.parametrize("header, name", [
    ("127.0.0.1", "127.0.0.1"), ("127.0.0.1:8000", "127.0.0.1"), ("LOCALHOST:80", "localhost"),
    ("localhost.", "localhost"), ("[::1]", "::1"), ("[::1]:8000", "::1"), ("[0:0::1]:1", "::1"),
    ("evil.example:8000", "evil.example"), ("", None), (":8000", None), ("127.0.0.1:x", None),
    ("[::1", None), ("[::1]x", None), ("[nope]:80", None),
])
def test_host_name_drops_the_port_and_reads_ipv6_literals(header, name):
    assert host_name(header) == name


def test_allowed_hosts_are_the_loopback_names_the_bound_address_and_the_extra_ones():
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("[::1]", ["Box.Lan"]) == {"127.0.0.1", "localhost", "::1", "box.lan"}
    assert "192.168.1.5" in allowed_hosts("192.168.1.5")


class Stub:
    """An app that records whether it was called and the body it read, and answers 200."""

    def __init__(self) -> None:
        self.called, self.body = False, b""

    async def __call__(self, scope, receive, send) -> None:
        self.called = True
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def call(headers: dict[str, str], chunks=(), method: str = "POST", limit: int = LIMIT):
    """Return (status, response headers, JSON body or None, the stub, how many body chunks were read)."""
    stub, sent, read = Stub(), [], [0]
    chunks = iter(chunks)

    async def receive():
        chunk = next(chunks, None)
        read[0] += chunk is not None
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/api/translate",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(Guard(stub, HOSTS, limit)(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    data = json.loads(body) if response_headers.get("content-type") == "application/json" else None
    return start["status"], response_headers, data, stub, read[0]


JSON = {"host": "127.0.0.1:8000", "content-type": "application/json"}


def test_an_endless_chunked_body_is_refused_at_the_limit_and_never_read_further():
    endless = (b"x" * 100 for _ in range(10**9))  # 100 GB, were it all read
    status, headers, data, stub, read = call({**JSON, "transfer-encoding": "chunked"}, endless)
    assert (status, data["field"], stub.called) == (413, "body", False)
    assert read == LIMIT // 100 + 1  # the chunk that crossed the limit was the last one read
    assert headers["connection"] == "close" and headers["x-content-type-options"] == "nosniff"


def test_a_body_within_the_limit_reaches_the_app_whole_however_it_was_cut():
    status, _, _, stub, _ = call({**JSON, "transfer-encoding": "chunked"}, [b"a" * 600, b"b" * 400])
    assert status == 200 and stub.body == b"a" * 600 + b"b" * 400


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    status, _, data, stub, read = call({**JSON, "content-length": str(LIMIT + 1)}, [b"x" * (LIMIT + 1)])
    assert (status, data["field"], stub.called, read) == (413, "body", False, 0)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil", ""])
def test_a_host_not_of_this_server_gets_400_before_anything_else(host):
    headers = {**JSON, "host": host} if host else {"content-type": "application/json"}
    status, _, data, stub, read = call(headers, [b"{}"])
    assert (status, data["field"], stub.called, read) == (400, "Host", False, 0)
    assert repr(host) in data["error"] and "--allow-host" in data["error"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/jsonx", "application/json-patch+json"])
def test_a_post_that_is_not_json_gets_415(content_type):
    headers = {"host": "localhost"} | ({"content-type": content_type} if content_type else {})
    status, _, data, stub, _ = call(headers, [b"{}"])
    assert (status, data["field"], stub.called) == (415, "Content-Type", False)


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8"])
def test_a_json_post_passes(content_type):
    status, headers, _, stub, _ = call({"host": "localhost", "content-type": content_type}, [b"{}"])
    assert status == 200 and stub.body == b"{}"
    assert {k: headers[k] for k in HEADERS} == HEADERS  # on the app's own answers too


def test_a_get_needs_no_content_type():
    status, _, _, stub, _ = call({"host": "[::1]:8000"}, method="GET")
    assert status == 200 and stub.called


def test_a_client_gone_before_its_body_arrived_reaches_no_app_and_gets_no_answer():
    stub, sent = Stub(), []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/api/translate",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"), (b"content-length", b"9")]}
    asyncio.run(Guard(stub, HOSTS, LIMIT)(scope, receive, send))
    assert not stub.called and sent == []
