"""The web app of `mtkit serve`: thin routes over `service.Service`, the static page, and the server.

Routes (the OpenAPI schema is at /openapi.json):

    GET  /                     the page (static/index.html)
    GET  /static/NAME          its script, style sheet and icon, read into memory at start
    GET  /api/runs             the served runs and the request limits
    POST /api/translate        {"text", "runs"?, "beam"?, "n_best"?, "layer"?, "head"?} → translations, pieces,
                               words, weights and which attention they are (layer, head: Transformer runs)
    GET  /api/scores           BLEU by length from the runs' eval/scores.json
    GET  /api/examples         ?bucket=21-30&offset=0&count=5&outputs=true → test sentences, references, outputs

Every error is JSON, {"error": message, "field": name-or-null}, with a 4xx status for a bad
request; a request never reaches the filesystem (runs, page files and test splits are all read
at start). FastAPI's /docs page is switched off: Swagger UI loads its scripts from a CDN, and the
page must work without internet.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtkit import __version__
from mtkit.errors import MtkitError
from mtkit.serve.service import MAX_BEAM, MAX_EXAMPLES, MAX_TEXT_CHARS, RequestError, Service

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * MAX_TEXT_CHARS + 4096  # UTF-8 text of the longest allowed sentence, plus the JSON around it
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
# The page runs only its own files: no CDN, no inline script, no request to another host.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                                           "base-uri 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


class TranslateRequest(BaseModel):
    """A sentence to translate with some or all of the served runs."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "En el principio crió Dios los cielos y la tierra.", "beam": 5, "n_best": 1}]})

    text: StrictStr = Field(description=f"One source sentence (line breaks count as spaces; at most "
                                        f"{MAX_TEXT_CHARS:,} characters; longer than the run's "
                                        "decode.max_src_len pieces is truncated, and the result says so).")
    runs: Optional[list[StrictStr]] = Field(None, description="Names of runs to use (GET /api/runs); default all.")
    beam: Optional[StrictInt] = Field(None, description=f"Beam size, 1 (greedy) to {MAX_BEAM}; default: each "
                                                        "run's decode.beam.")
    n_best: StrictInt = Field(1, description="Hypotheses to return per run, 1 to the beam size.")
    layer: Optional[StrictInt] = Field(None, description="Transformer runs only: show the cross-attention of this "
                                                         "decoder layer, 1 to its layers (GET /api/runs); default: "
                                                         "the mean of all layers.")
    head: Optional[StrictInt] = Field(None, description="Transformer runs only: show this attention head, 1 to its "
                                                        "heads; default: the mean of all heads.")


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


def make_app(run_dirs: Sequence[Path] | Service, checkpoint: str = "best", device: str | None = None) -> FastAPI:
    """Return the web app over the runs in `run_dirs` (or an already loaded Service); the run list is fixed here."""
    service = run_dirs if isinstance(run_dirs, Service) else Service.from_run_dirs(run_dirs, checkpoint, device)
    files = static_files()
    app = FastAPI(title="mtkit serve", version=__version__, docs_url=None, redoc_url=None,
                  description="Translate with trained mtkit runs and see where each model looks. "
                              "Errors are JSON: {\"error\": message, \"field\": the request field at fault}.")

    _handle_errors(app)

    @app.get("/", include_in_schema=False)
    def page() -> Response:
        body, media_type = files["index.html"]
        return Response(body, media_type=media_type, headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in files:  # a lookup in memory: the name never becomes a path
            return _error(404, "name", f"no static file {name!r}")
        body, media_type = files[name]
        return Response(body, media_type=media_type, headers=PAGE_HEADERS)

    @app.get("/api/runs", summary="The served runs and the request limits")
    def list_runs() -> dict[str, Any]:
        return service.runs()

    @app.post("/api/translate", summary="Translate one sentence: translations, pieces, words and weights")
    def translate(request: TranslateRequest) -> dict[str, Any]:
        return service.translate(request.text, request.runs, request.beam, request.n_best, request.layer,
                                 request.head)

    @app.get("/api/scores", summary="BLEU by length (with 95% intervals) from the runs' `mtkit eval --by-length`")
    def scores() -> dict[str, Any]:
        return service.scores()

    @app.get("/api/examples", summary="Test sentences of one length bucket, with references and each run's output")
    def examples(bucket: Optional[str] = Query(None, description="A bucket label from /api/runs; none: all."),
                 offset: int = Query(0, description="Skip this many sentences of the bucket."),
                 count: int = Query(5, description=f"Sentences to return, 1 to {MAX_EXAMPLES}."),
                 outputs: bool = Query(True, description="Also each run's translation.")) -> dict[str, Any]:
        return service.examples(bucket, offset, count, outputs)

    return app


def _handle_errors(app: FastAPI) -> None:
    """Make every failure a JSON {"error", "field"} answer: 4xx for the request's mistakes, a logged 500 for bugs."""
    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return _error(413, "body", f"body: {length} bytes; this server takes at most {MAX_BODY_BYTES:,}")
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        return _error(err.status, err.field, str(err))

    @app.exception_handler(MtkitError)
    async def mtkit_error(request: Request, err: MtkitError) -> JSONResponse:
        return _error(400, None, str(err))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0]
        field = _field(first)
        message = "body: not valid JSON" if first.get("type") == "json_invalid" else f"{field}: {first['msg']}"
        return _error(422, field, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, None, str(err.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:  # a bug: logged, never shown
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, None, "internal error; the server log has the details")


def _field(error: dict[str, Any]) -> str:
    """Return the request field a pydantic error is about: "beam", "text", or "body" for the body as a whole."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
    if error.get("type") == "json_invalid" or not loc or loc[0].isdigit():
        return "body"
    return loc[0]


def _error(status: int, field: str | None, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


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


def serve(run_dirs: Sequence[Path], host: str = "127.0.0.1", port: int = 8000, checkpoint: str = "best",
          device: str | None = None, echo: Callable[[str], None] = print, access_log: bool = True) -> None:
    """Load the runs, listen on host:port, print the URL and serve until Ctrl-C (or SIGTERM); return then."""
    import uvicorn

    app = make_app(run_dirs, checkpoint, device)
    sock = bind(host, port)
    if not _is_loopback(sock):
        log.warning("listening on %s: anyone who can reach this machine can use these models", host)
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
