"""The web app of `mtkit serve`: thin routes over `service.Service`, the static page, and the server.

Routes (the OpenAPI schema is at /openapi.json):

    GET  /                     the page (static/index.html)
    GET  /static/NAME          its scripts, style sheet and icon, read into memory at start
    GET  /api/runs             the served runs, the request limits and the length buckets
    POST /api/translate        {"text", "runs"?, "beam"?, "n_best"?, "layer"?, "head"?} → translations, pieces,
                               words, weights and which attention they are (layer, head: Transformer runs)
    GET  /api/scores           BLEU by length, from `mtkit eval --by-length`
    GET  /api/passages         the same verses alone and inside passages, from `mtkit eval --passages`
    GET  /api/examples         ?bucket=21-30&offset=0&count=5&outputs=true → test sentences, references and
                               the outputs `mtkit eval` cached (a GET never runs a model)

Every request first passes `guard.Guard` (Host, Content-Type, body size; headers on every answer).
Every error is JSON, {"error": message, "field": name-or-null}, with a 4xx status for a bad request
and 503 with Retry-After when a model's queue is full or a request runs out of time; a request
never reaches the filesystem (runs, page files, test splits and scores are all read at start).

Only translation is slow, and it runs on each model's own queue (`queue.py`); every route is a
coroutine that answers at once or awaits that queue, so the page, its files and /api/runs never
wait behind a translation. FastAPI's /docs page is switched off: Swagger UI loads its scripts from
a CDN, and the page must work without internet.
"""

# No `from __future__ import annotations`: the routes' request models are made per server (its limits) inside
# make_app, and FastAPI reads a route's annotations as objects.
import contextlib
import functools
import json
import logging
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Sequence

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtkit import __version__
from mtkit.config import ServeConfig
from mtkit.errors import MtkitError
from mtkit.serve.guard import HEADERS, Guard, allowed_hosts
from mtkit.serve.queue import Gone, ModelQueue, QueueFull, TimedOut, run_queued
from mtkit.serve.requests import LIMITS, RequestError, request_error as refusal
from mtkit.serve.service import Service

log = logging.getLogger(__name__)

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CLIENT_GONE = 499  # nginx's "client closed request": logged, never received


def static_files() -> dict[str, tuple[bytes, str]]:
    """Return the page's files by name, with their media types, read from the package's static/ folder."""
    folder = resources.files("mtkit.serve") / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = Path(entry.name).suffix
        if entry.is_file() and suffix in STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    if "index.html" not in files:
        raise MtkitError(f"{folder}: the page (index.html) is missing from the installed package; reinstall mtkit")
    return files


def static_response(files: dict[str, tuple[bytes, str]], name: str) -> Response:
    """Return the page file `name` from `files` (read at start), or a 404: a lookup in memory, never a path."""
    if name not in files:
        return _error(404, "name", f"no static file {name!r}; this server has {sorted(files)}")
    body, media_type = files[name]
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})


def make_app(run_dirs: Sequence[Path] | Service, checkpoint: str = "best", device: str | None = None,
             limits: ServeConfig = LIMITS, results: Path | None = None) -> FastAPI:
    """Return the web app over the runs in `run_dirs` (or an already loaded Service, with its own limits).

    The run list is fixed here. The Host names answered are the loopback names, `limits.host` and
    `limits.allowed_hosts` (see `guard.allowed_hosts`).
    """
    service = run_dirs if isinstance(run_dirs, Service) else Service.from_run_dirs(run_dirs, checkpoint, device,
                                                                                   limits, results)
    limits = service.limits
    files = static_files()
    TranslateBody, ExamplesQuery = service.translate_request, service.examples_query  # checked against its limits
    queues = {name: ModelQueue(name, limits.queue) for name in service.run_names}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for queue in queues.values():
            queue.close()

    app = FastAPI(title="mtkit serve", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Translate with trained mtkit runs and see where each model looks. "
                              "Errors are JSON: {\"error\": message, \"field\": the request field at fault}.")
    app.add_middleware(Guard, hosts=allowed_hosts(limits.host, limits.allowed_hosts),
                       max_body_bytes=limits.max_body_bytes)
    _handle_errors(app)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return static_response(files, "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        return static_response(files, name)

    @app.get("/api/runs", summary="The served runs, the request limits and the length buckets")
    async def list_runs() -> dict[str, Any]:
        return service.runs()

    @app.post("/api/translate", summary="Translate one sentence: translations, pieces, words and weights")
    async def translate(body: TranslateBody, request: Request) -> Response:
        # The checks tokenize the text (up to the body limit): off the event loop, like the encoding of the answer.
        plan = await run_in_threadpool(service.check_translate, body)
        jobs = [(queues[name], functools.partial(service.translate_run, plan, name)) for name, _ in plan.runs]
        try:
            results = await run_queued(jobs, limits.timeout, gone=functools.partial(_disconnect, request))
        except (QueueFull, TimedOut) as err:
            return _error(503, None, str(err), {"Retry-After": str(err.retry_after)})
        except Gone:
            return Response(status_code=CLIENT_GONE)
        answer = await run_in_threadpool(_json_bytes, service.answer(plan, results))
        return Response(answer, media_type="application/json")

    @app.get("/api/scores", summary="BLEU by length (with 95% intervals) from `mtkit eval --by-length`")
    async def scores() -> dict[str, Any]:
        return service.scores()

    @app.get("/api/passages", summary="The same verses alone and inside passages, from `mtkit eval --passages`")
    async def passages() -> dict[str, Any]:
        return service.passages()

    @app.get("/api/examples", summary="Test sentences of one length bucket, with references and cached outputs")
    async def examples(query: Annotated[ExamplesQuery, Query()]) -> dict[str, Any]:
        return service.show_examples(query)

    return app


async def _disconnect(request: Request) -> None:
    """Return when the client has gone (the body is read by now, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _handle_errors(app: FastAPI) -> None:
    """Make every failure a JSON {"error", "field"} answer: 4xx for the request's mistakes, a logged 500 for bugs."""
    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        return _error(err.status, err.field, str(err))

    @app.exception_handler(MtkitError)
    async def mtkit_error(request: Request, err: MtkitError) -> JSONResponse:
        return _error(400, None, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        refused = refusal(list(err.errors()))
        return _error(refused.status, refused.field, str(refused))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, None, str(err.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:  # a bug: logged, never shown
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, None, "internal error; the server log has the details")


def _error(status: int, field: str | None, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Return the JSON error; a lone surrogate that came in (a field name, say) goes out escaped, not as a 500."""
    safe = [None if s is None else s.encode("utf-8", "backslashreplace").decode("utf-8") for s in (field, message)]
    return JSONResponse({"error": safe[1], "field": safe[0]}, status_code=status, headers={**HEADERS, **(headers or {})})


def bind(host: str, port: int) -> socket.socket:
    """Return a listening socket on host:port (port 0: any free one), or raise MtkitError naming the option."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise MtkitError(f"--host {host}: not an address this machine can listen on ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise MtkitError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); choose another "
                         "--port, or 0 for any free one") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """Return the http:// address a listening socket answers on."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(run_dirs: Sequence[Path], limits: ServeConfig = LIMITS, checkpoint: str = "best",
          device: str | None = None, results: Path | None = None, echo: Callable[[str], None] = print,
          access_log: bool = True) -> None:
    """Load the runs, listen on limits.host:limits.port, print the URL and serve until Ctrl-C (or SIGTERM)."""
    import uvicorn

    app = make_app(run_dirs, checkpoint, device, limits, results)
    sock = bind(limits.host, limits.port)
    if not _is_loopback(sock):
        log.warning("listening on %s: anyone who can reach this machine can use these models; requests must name "
                    "this host (--allow-host NAME adds the names they use)", limits.host)
    echo(f"mtkit serve: {len(run_dirs)} run(s) at {url_of(sock)}  (Ctrl-C stops)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=access_log, timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down cleanly, then re-raises the Ctrl-C it caught
        pass
    finally:
        sock.close()
    echo("mtkit serve: stopped")


def _is_loopback(sock: socket.socket) -> bool:
    import ipaddress

    return ipaddress.ip_address(sock.getsockname()[0]).is_loopback


@contextlib.contextmanager
def background(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on a thread of this process while the block runs; yield its URL (for tests and scripts)."""
    import uvicorn

    sock = bind(host, port)
    url = url_of(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mtkit-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise MtkitError(f"the server on {url} did not start within {timeout:.0f} s")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
