"""What every request to `mtkit serve` passes before a route sees it, and what every response carries.

`Guard` is ASGI middleware around the web app. In order, a request is refused:

- **400** when its Host header names neither the address the server listens on nor a loopback name
  (127.0.0.1, localhost, [::1]) nor one allowed by `--allow-host`. A web page whose own name
  re-resolves to 127.0.0.1 (DNS rebinding) is same-origin with the server, but its requests still
  carry that page's name as Host.
- **415** when a POST does not say `Content-Type: application/json`. A cross-site form, or a
  `fetch` with `mode: "no-cors"`, can send any body without a preflight, but not with that type.
- **413** when its body grows past the limit: counted while it streams, whatever the transfer
  encoding (a chunked body has no Content-Length to check beforehand), and not read further.

Every response, errors and 404s included, carries the page's Content-Security-Policy and
`X-Content-Type-Options: nosniff`. The refusals are JSON like every other error of the app:
{"error": message, "field": what is at fault}.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable, Iterable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# The page runs only its own files: no CDN, no inline script, no request to another host.
HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
}
JSON_TYPE = "application/json"
GONE = b"gone"  # what _read_body returns when the client disconnects first (compared by identity)


def host_name(header: str) -> str | None:
    """Return the name in a Host header without its port, lower case ("[::1]:8000" → "::1"); None when malformed."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal: [addr] or [addr]:port
        name, sep, rest = header[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    name, sep, port = header.partition(":")
    if not name or (sep and not port.isdigit()):
        return None
    return name.rstrip(".")


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Return the Host names to answer: the loopback names, the address listened on (`--host`), and `extra`."""
    names = set(LOOPBACK_NAMES)
    for name in (bound, *extra):
        name = name.strip().lower()
        names.add(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    return frozenset(names)


class Guard:
    """ASGI middleware: Host check (400), JSON-only POST (415), body bounded while it streams (413), headers on all."""

    def __init__(self, app: App, hosts: Iterable[str], max_body_bytes: int) -> None:
        self.app, self.hosts, self.max_body_bytes = app, frozenset(hosts), max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = _headers(scope)
        refusal = self._refusal(scope["method"], headers)
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        if "content-length" in headers or "transfer-encoding" in headers:
            body = await self._read_body(receive)
            if body is GONE:  # the client left before its body arrived: nothing to answer, nothing to run
                return
            if body is None:
                await _refuse(send, 413, "body", f"body: more than {self.max_body_bytes:,} bytes; this server takes at "
                                                 f"most {self.max_body_bytes:,}", close=True)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str, str] | None:
        """Return (status, field, message) for a request refused on its headers alone, else None."""
        name = host_name(headers.get("host", ""))
        if name not in self.hosts:
            shown = headers.get("host", "")[:100]
            return 400, "Host", (f"Host: {shown!r} is not a name of this server; use {sorted(self.hosts)} "
                                 "(mtkit serve --allow-host NAME adds one)")
        if method == "POST":
            media_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type != JSON_TYPE:
                return 415, "Content-Type", (f"Content-Type: got {media_type or 'none'!r}; send the body as "
                                             f"{JSON_TYPE}")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return 413, "body", f"body: {length} bytes; this server takes at most {self.max_body_bytes:,}"
        return None

    async def _read_body(self, receive: Receive) -> bytes | None:
        """Return the whole body, None as soon as it passes the limit (the rest is never read), or GONE."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Return the request headers by lower-case name (the first of repeated ones), decoded as Latin-1."""
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive that gives `body` once, then whatever comes next (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()
    return replayed


def _with_headers(send: Send) -> Send:
    """Return a send that adds `HEADERS` to the response's start, unless the response set them itself."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {key.lower() for key, _ in message.get("headers", [])}
            extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)
    return sending


async def _refuse(send: Send, status: int, field: str, message: str, close: bool = False) -> None:
    """Answer the JSON error {"error", "field"} with `status` (and `Connection: close` when the body is left unread)."""
    body = json.dumps({"error": message, "field": field}, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
