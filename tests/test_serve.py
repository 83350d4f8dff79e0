"""`mtkit serve`: the JSON API (answers, weights, every bad input a 4xx naming its field), a Transformer run
(described by its architecture, its cross-attention labelled and chosen by layer and head), concurrency, the CLI
start and Ctrl-C, and the page itself in a real browser (headless Chromium, skipped with the reason where none
is installed)."""

from __future__ import annotations

import contextlib
import http.client
import select
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import torch
from conftest import cross_attention

pytest.importorskip("fastapi", reason="mtkit serve needs fastapi (pip install -e '.[dev]')")
from fastapi.testclient import TestClient  # noqa: E402

from mtkit import compare  # noqa: E402
from mtkit.errors import MtkitError  # noqa: E402
from mtkit.runs import prepared_dir, write_data_info  # noqa: E402
from mtkit.serve.app import background, bind, make_app, static_files, static_response  # noqa: E402
from mtkit.config import ServeConfig  # noqa: E402
from mtkit.evaluate import corpus_scores  # noqa: E402
from mtkit.results import JSON_FORMAT  # noqa: E402
from mtkit.serve.requests import RequestError  # noqa: E402
from mtkit.serve.loading import LoadedRun, load_runs, read_passages  # noqa: E402
from mtkit.serve.service import Service  # noqa: E402
from mtkit.translate import Translator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("MTKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
THRESHOLD = 0.05  # the page's default "lines from weight"
LIMITS = ServeConfig()
MAX_BEAM, MAX_TEXT_CHARS = LIMITS.max_beam, LIMITS.max_text_chars
LOCAL = "http://127.0.0.1"  # a Host the server answers (TestClient's own, "testserver", is refused)


@pytest.fixture(scope="module")
def runs(tiny_runs, tmp_path_factory) -> list[Path]:
    """Copies of the tiny runs (attention first), scored by `mtkit eval --by-length` into the first one's eval/,
    with passage scores (no bootstrap) where the study writes them; att's have the `paired` list, none's not. Only
    att's config names its languages."""
    root = tmp_path_factory.mktemp("serve")
    dirs = [Path(shutil.copytree(tiny_runs / "runs" / name, root / name)) for name in ("att", "none")]
    for checkpoint in ("best.pt", "last.pt"):  # att says its languages (ISO 639's codes for local use); none not
        path = dirs[0] / checkpoint
        saved = torch.load(path, weights_only=True)
        saved["config"]["data"].update(src_lang="qaa", tgt_lang="qab")
        torch.save(saved, path)
    systems = compare.compare(dirs, bootstrap=20, edges=[4, 8])
    compare.write_results(systems, dirs[0] / "eval", plot=False)
    for run in dirs:
        system = passage_scores(run)
        if run.name == "att":
            system["paired"] = PAIRED
        path = run / "eval" / "passages" / "passages_scores.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"format": JSON_FORMAT, "version": 1, "systems": [system]}))
    return dirs


def passage_scores(run: Path) -> dict:
    """Return what `mtkit eval --passages` (no bootstrap) writes of a system that serve reads, with the run's test
    lines standing in for passages of 1-3 verses."""
    _, hyps, refs = compare.run_test_outputs(run)
    by_k = []
    for k in (1, 2, 3):
        rows = range(k - 1, len(hyps), 3)
        scores = corpus_scores([hyps[i] for i in rows], [refs[i] for i in rows])
        by_k.append({"label": f"k={k}", "low": k, "high": k, "count": len(rows), "bleu": scores.bleu,
                     "ci_low": None, "ci_high": None, "chrf": scores.chrf, "ratio": 1.0})
    return {"name": run.name, "n_boot": 0, "by_k": by_k}


PAIRED = [{"k": 2, "ratio": 0.91, "ci_low": 0.85, "ci_high": 0.97, "mean_src_words": 12.4},
          {"k": 3, "ratio": 0.77, "ci_low": 0.72, "ci_high": 0.82, "mean_src_words": 18.9}]


@pytest.fixture(scope="module")
def loaded(runs) -> list[LoadedRun]:
    """The runs loaded once, for services with other limits."""
    return load_runs(runs)


@pytest.fixture(scope="module")
def service(loaded) -> Service:
    return Service(loaded)


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    return TestClient(make_app(service), base_url=LOCAL)


@pytest.fixture(scope="module")
def sentence(service) -> str:
    """A test sentence that the attention model translates into at least two words (so there are steps to take)."""
    return two_word_sentence(service, "att")


def two_word_sentence(service: Service, run: str) -> str:
    """Return the first of 20 test sentences that `run` translates (greedily) into two or more words."""
    for line in service.examples(None, 0, 20, outputs=False)["examples"]:
        hyp = service.translate(line["source"], [run], beam=1)["results"][0]["hypotheses"][0]
        if hyp["words"] and len(hyp["words"]["target"]) >= 2:
            return line["source"]
    pytest.fail(f"run {run} translated none of 20 test sentences into two or more words")


def rows_sum_to_one(matrix: list[list[float]]) -> bool:
    return all(abs(sum(row) - 1.0) < 1e-3 for row in matrix)


# -- the API ----------------------------------------------------------------------------------------------------

def test_runs_lists_the_models_in_the_order_given(client):
    data = client.get("/api/runs").json()
    assert [(r["name"], r["attention"]) for r in data["runs"]] == [("att", True), ("none", False)]
    assert data["limits"]["max_beam"] == MAX_BEAM and data["length_of"] == "src"
    assert all(r["scored"] for r in data["runs"])  # both systems are in the first run's eval/scores.json
    assert [b["label"] for b in data["buckets"]] == ["0-4", "5-8", "9+"]
    assert sum(b["count"] for b in data["buckets"]) == data["runs"][0]["test_sentences"] == 30


def test_translate_gives_pieces_words_and_weights_that_sum_to_one(client, runs, sentence):
    response = client.post("/api/translate", json={"text": sentence, "beam": 2, "n_best": 2})
    assert response.status_code == 200
    att, none = response.json()["results"]
    assert att["run"] == "att" and none["run"] == "none" and len(att["hypotheses"]) == 2
    for hyp in att["hypotheses"]:
        assert len(hyp["weights"]) == len(hyp["pieces"]) and rows_sum_to_one(hyp["weights"])
        assert all(len(row) == len(att["source_pieces"]) for row in hyp["weights"])
        words = hyp["words"]
        assert rows_sum_to_one(words["weights"]) and len(words["weights"]) == len(words["target"])
        assert all(len(row) == len(words["source"]) for row in words["weights"])
        assert " ".join(words["source"]) == sentence
    assert none["attention"] is False and none["translation"]
    assert all(h["weights"] is None and h["words"] is None for h in none["hypotheses"])
    expected = Translator.from_run(runs[0]).translate([sentence], beam=2)[0].text
    assert att["translation"] == expected


def test_a_10000_word_text_is_truncated_as_translate_does_and_says_so(client, sentence):
    text = " ".join([sentence] * (10_000 // len(sentence.split()) + 1))
    results = client.post("/api/translate", json={"text": text, "runs": ["att"], "beam": 1}).json()["results"]
    assert results[0]["truncated"] is True
    assert "decode.max_src_len" in results[0]["note"] and len(results[0]["source_pieces"]) == 250


BAD_REQUESTS = [  # (body, HTTP status, the field the error must name)
    ({"text": ""}, 422, "text"),
    ({"text": " \t\n  "}, 422, "text"),
    ({"text": 5}, 422, "text"),
    ({}, 422, "text"),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, 413, "text"),
    ({"text": "a b", "beam": 0}, 422, "beam"),
    ({"text": "a b", "beam": -3}, 422, "beam"),
    ({"text": "a b", "beam": 1000}, 422, "beam"),
    ({"text": "a b", "beam": "5"}, 422, "beam"),
    ({"text": "a b", "beam": 2.5}, 422, "beam"),
    ({"text": "a b", "n_best": 0}, 422, "n_best"),
    ({"text": "a b", "beam": 2, "n_best": 3}, 422, "n_best"),
    ({"text": "a b", "runs": ["../../etc"]}, 404, "runs"),
    ({"text": "a b", "runs": []}, 422, "runs"),
    ({"text": "a b", "runs": "att"}, 422, "runs"),
    ({"text": "a b", "path": "/tmp"}, 422, "path"),
    (b"{not json", 422, "body"),
    (b"[1, 2]", 422, "body"),
    (b"", 422, "body"),
]


@pytest.mark.parametrize("body,status,field", BAD_REQUESTS)
def test_bad_translate_requests_get_a_4xx_json_error_naming_the_field(client, body, status, field):
    if isinstance(body, bytes):
        response = client.post("/api/translate", content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post("/api/translate", json=body)
    assert (response.status_code, response.headers["content-type"]) == (status, "application/json")
    data = response.json()
    assert set(data) == {"error", "field"} and data["field"] == field and data["error"].startswith(f"{field}: ")


@pytest.mark.parametrize("query,field", [
    ("bucket=99-100", "bucket"), ("count=0", "count"), ("count=21", "count"), ("count=x", "count"),
    ("offset=-1", "offset"), ("bucket=0-4&outputs=maybe", "outputs"),
])
def test_bad_example_queries_get_a_4xx_naming_the_field(client, query, field):
    response = client.get(f"/api/examples?{query}")
    assert 400 <= response.status_code < 500 and response.json()["field"] == field


@pytest.mark.parametrize("body,status,field", [b for b in BAD_REQUESTS if isinstance(b[0], dict) and "path" not in b[0]])
def test_python_callers_get_the_request_models_checks_and_messages(client, service, body, status, field):
    """Service.translate checks its arguments with the web app's request model: one place, the same answers."""
    over_http = client.post("/api/translate", json=body).json()
    with pytest.raises(RequestError) as err:
        service.translate(**{"text": None, **body})
    assert (err.value.status, err.value.field) == (status, field)
    if "text" in body:
        assert str(err.value) == over_http["error"]


def test_python_callers_of_examples_get_the_query_models_checks(service):
    for query, field in [({"count": 0}, "count"), ({"count": LIMITS.max_examples + 1}, "count"),
                         ({"offset": -1}, "offset"), ({"bucket": "99-100"}, "bucket")]:
        with pytest.raises(RequestError) as err:
            service.examples(**query)
        assert err.value.field == field


def test_an_oversized_body_is_refused_before_it_is_read(client):
    response = client.post("/api/translate", content=b"{}", headers={"Content-Type": "application/json",
                                                                        "Content-Length": str(10**9)})
    assert response.status_code == 413 and response.json()["field"] == "body"


# -- a hostile web page -------------------------------------------------------------------------------------

def wire(url: str, method: str, path: str, body=None, headers: dict | None = None,
         chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Send one request over a real socket (http.client sends Host as given); return status, headers, body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)

    def until_answered(chunks):
        # A server that refuses a body mid-stream answers and closes; a client that went on sending would be
        # reset and could lose the answer, so stop sending once there is something to read, as browsers do.
        for chunk in chunks:
            if conn.sock is not None and select.select([conn.sock], [], [], 0.01)[0]:
                return
            yield chunk

    try:
        if chunked:
            body = until_answered(body)
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_a_chunked_body_past_the_limit_gets_413_while_it_streams(service):
    # 2.5 MB of valid JSON with no Content-Length: read whole, it would parse and fail on "pad" (422).
    pad = b"x" * (2_500_000 // 50)
    chunks = iter([b'{"text": "a b", "pad": "', *[pad] * 50, b'"}'])
    with background(make_app(service)) as url:
        status, headers, body = wire(url, "POST", "/api/translate", chunks, chunked=True,
                                     headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)["field"]) == (413, "body") and "transfer-encoding" not in headers
    assert f"{LIMITS.max_body_bytes:,}" in json.loads(body)["error"]


def test_a_100000_character_text_sent_as_u_escapes_is_accepted(client):
    text = "ñúé " * (MAX_TEXT_CHARS // 4)  # 100,000 characters, each letter 6 bytes as \u00f1 (a Greek text: all)
    body = json.dumps({"text": text, "runs": ["att"], "beam": 1}, ensure_ascii=True).encode()
    assert len(body) > 4 * MAX_TEXT_CHARS  # past the old limit, which assumed raw UTF-8
    response = client.post("/api/translate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["results"][0]["truncated"] is True


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io:8000", "attacker"])
def test_a_host_header_of_another_name_gets_400_so_dns_rebinding_reads_nothing(service, host):
    with background(make_app(service)) as url:
        port = urlsplit(url).port
        refused = [wire(url, method, path, body, {"Host": host, "Content-Type": "application/json"})
                   for method, path, body in [("GET", "/api/runs", None), ("GET", "/", None),
                                              ("POST", "/api/translate", b'{"text": "a b"}')]]
        answered = [wire(url, "GET", "/api/runs", headers={"Host": name})[0]
                    for name in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1")]
    for status, headers, body in refused:
        assert (status, json.loads(body)["field"]) == (400, "Host")
        assert headers["x-content-type-options"] == "nosniff"
    assert answered == [200] * 4


def test_allow_host_and_the_bound_address_are_answered_too(loaded):
    app = make_app(Service(loaded, replace(LIMITS, host="::1", allowed_hosts=("box.lan",))))
    client = TestClient(app, base_url="http://box.lan:8000")
    assert client.get("/api/runs").status_code == 200
    assert client.get("/api/runs", headers={"Host": "[::1]:8000"}).status_code == 200
    assert client.get("/api/runs", headers={"Host": "other.lan"}).status_code == 400


@pytest.mark.parametrize("content_type", [None, "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_post_without_a_json_content_type_gets_415(client, monkeypatch, content_type):
    # What a cross-site form, or fetch(url, {method: "POST", mode: "no-cors", body: blob}), can send without a
    # preflight: the beam-20 translation it asks for must not start.
    monkeypatch.setattr(Service, "check_translate", lambda *a, **k: pytest.fail("a model was asked"))
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/translate", content=b'{"text": "a b", "beam": 20}', headers=headers)
    assert (response.status_code, response.json()["field"]) == (415, "Content-Type")


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/nope", None, 404), ("GET", "/static/nothing.js", None, 404), ("GET", "/api/translate", None, 405),
    ("POST", "/api/translate", b"{not json", 422), ("POST", "/api/translate", b'{"text": "a", "beam": 99}', 422),
    ("GET", "/api/examples?count=99", None, 422),
])
def test_errors_and_404s_carry_the_csp_and_nosniff_too(client, method, path, body, status):
    response = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status and response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("default-src 'self'")


@pytest.mark.parametrize("body, status, field, says", [
    (b'{"text": "\\ud800"}', 422, "text", "character 1 is U+D800"),
    (b'{"text": "Sea la luz \\udfff"}', 422, "text", "character 12 is U+DFFF"),
    (b'{"text": "a b", "\\ud800": 1}', 422, "body", "unable to parse raw data as a unicode string"),
    (b'{"text": "a b", "runs": ["\\ud800"]}', 404, "runs", "unknown run '\\ud800'"),
])
def test_a_lone_surrogate_gets_a_4xx_naming_the_field_not_a_500(client, body, status, field, says):
    response = client.post("/api/translate", content=body, headers={"Content-Type": "application/json"})
    data = response.json()
    assert (response.status_code, data["field"]) == (status, field) and says in data["error"]


def test_a_surrogate_pair_is_one_character_and_translates(client):
    body = b'{"text": "a b \\ud83d\\ude00", "runs": ["att"], "beam": 1}'
    response = client.post("/api/translate", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["source"] == "a b \U0001F600"


def test_test_files_of_unequal_length_give_a_clear_error_not_an_index_error(runs, tmp_path):
    run = Path(shutil.copytree(runs[0], tmp_path / "att"))
    prepared = Path(shutil.copytree(prepared_dir(run), tmp_path / "prepared"))
    write_data_info(run, prepared)
    lines = (prepared / "test.tgt").read_text(encoding="utf-8").splitlines()
    (prepared / "test.tgt").write_text("".join(line + "\n" for line in lines[:-3]), encoding="utf-8")
    client = TestClient(make_app(Service.from_run_dirs([run])), base_url=LOCAL, raise_server_exceptions=False)
    response = client.get("/api/examples?offset=25&count=5")  # lines 26-30: the last three have no reference
    data = response.json()
    assert (response.status_code, data["field"]) == (404, "bucket")
    assert "test.src has 30 lines but test.tgt 27" in data["error"]
    assert client.post("/api/translate", json={"text": "a b"}).status_code == 200  # the model still serves


def test_no_answer_holds_a_path_on_disk(client, runs):
    described = client.get("/api/runs").json()["runs"]
    assert all("path" not in run for run in described)
    root = str(runs[0].resolve().parent)
    for path in ("/api/runs", "/api/scores", "/api/passages", "/api/examples?count=20"):
        assert root not in client.get(path).text, path


def test_n_best_times_weights_is_capped_with_a_4xx_naming_the_field(client, loaded, sentence):
    long_text = " ".join([sentence] * 2000)  # truncated to 250 pieces: up to 510 × 250 weights a hypothesis
    response = client.post("/api/translate", json={"text": long_text, "runs": ["att"], "beam": 2, "n_best": 2})
    data = response.json()
    assert (response.status_code, data["field"]) == (422, "n_best")
    assert "2 hypotheses × up to 510 target × 250 source pieces = 255,000" in data["error"]
    assert f"at most {LIMITS.max_weights:,}" in data["error"]
    assert client.post("/api/translate", json={"text": long_text, "runs": ["att"], "beam": 2}).status_code == 200
    assert client.post("/api/translate", json={"text": long_text, "runs": ["none"], "beam": 2,
                                               "n_best": 2}).status_code == 200  # no attention, no weights
    small = TestClient(make_app(Service(loaded, replace(LIMITS, max_weights=1000))), base_url=LOCAL)
    response = small.post("/api/translate", json={"text": long_text, "runs": ["att"], "beam": 1})
    assert (response.status_code, response.json()["field"]) == (413, "text")


# -- a crowd ------------------------------------------------------------------------------------------------

@pytest.fixture()
def gate(monkeypatch):
    """Every translation waits until gate.open is set; gate.ran lists the sentences translated, in order."""
    held = SimpleNamespace(open=threading.Event(), ran=[], entered=threading.Event())
    translate_shown = LoadedRun.translate_shown

    def waiting(self, sentence, *args, **kwargs):
        held.entered.set()
        assert held.open.wait(60), "the gate was never opened"
        held.ran.append(sentence)
        return translate_shown(self, sentence, *args, **kwargs)
    monkeypatch.setattr(LoadedRun, "translate_shown", waiting)
    yield held
    held.open.set()


def timed_get(url: str, path: str) -> tuple[int, float]:
    start = time.perf_counter()
    with urllib.request.urlopen(url + path.lstrip("/"), timeout=10) as response:
        return response.status, time.perf_counter() - start


def test_the_page_and_run_list_answer_while_45_requests_crowd_one_model(loaded, gate):
    patient = Service(loaded, replace(LIMITS, timeout=600))  # the default queue; no time limit on a slow machine
    with background(make_app(patient)) as url, ThreadPoolExecutor(45) as pool:
        crowd = [pool.submit(post_status, url, {"text": f"a b {i}", "runs": ["att"], "beam": 20})
                 for i in range(45)]
        assert gate.entered.wait(30)
        deadline = time.monotonic() + 30  # every request arrives: one runs, the queue fills, the rest are answered
        while sum(f.done() for f in crowd) < 45 - LIMITS.queue and time.monotonic() < deadline:
            time.sleep(0.05)
        cheap = [timed_get(url, path) for path in ("/", "/static/main.js", "/api/runs", "/api/scores")]
        refused = [f.result(timeout=30) for f in crowd if f.done()]
        gate.open.set()
        statuses = sorted(f.result(timeout=60)[0] for f in crowd)
    assert [status for status, _ in cheap] == [200] * 4 and max(seconds for _, seconds in cheap) < 1.0
    assert len(refused) == 45 - LIMITS.queue and all(status == 503 and int(retry) >= 1 for status, retry in refused)
    assert statuses == [200] * LIMITS.queue + [503] * (45 - LIMITS.queue)


def post_status(url: str, body: dict) -> tuple[int, str | None]:
    """Return the status of POST /api/translate and its Retry-After header."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "api/translate", json.dumps(body).encode(),
                                                           {"Content-Type": "application/json"}), timeout=60) as r:
            return r.status, r.headers.get("Retry-After")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Retry-After")


def test_past_the_time_limit_a_request_gets_503_and_its_waiting_work_is_dropped(loaded, gate):
    app = make_app(Service(loaded, replace(LIMITS, timeout=0.5)))
    with background(app) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_status, url, {"text": "first", "runs": ["att"]})
        assert gate.entered.wait(30)
        start = time.perf_counter()
        second = post_status(url, {"text": "second", "runs": ["att"]})
        waited = time.perf_counter() - start
        assert first.result(timeout=30)[0] == 503
        gate.open.set()
        time.sleep(0.3)
    assert second[0] == 503 and int(second[1]) >= 1 and 0.2 < waited < 5
    assert gate.ran == ["first"]  # the waiting request's work never started


def test_the_work_of_a_client_that_went_away_is_dropped_before_it_starts(service, gate):
    body = json.dumps({"text": "gone", "runs": ["att"]}).encode()
    with background(make_app(service)) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(post_status, url, {"text": "first", "runs": ["att"]})
        assert gate.entered.wait(30)
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.5)  # read and queued behind the first
        time.sleep(0.5)  # the server sees the disconnect
        gate.open.set()
        assert first.result(timeout=30)[0] == 200
        time.sleep(0.5)
    assert gate.ran == ["first"]


def test_the_load_test_script_counts_answers_503s_and_page_polls(loaded):
    spec = importlib.util.spec_from_file_location("load_test", ROOT / "scripts" / "load_test.py")
    load_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_test)
    with background(make_app(Service(loaded, replace(LIMITS, queue=1)))) as url:
        figures = load_test.load(url, clients=4, requests=3, beam=2, max_seconds=60, timeout=60, model="att", poll=0.02)
    assert figures["requests"] == 12 and figures["answered"] + figures["busy_503"] == 12
    assert figures["answered"] >= 3 and figures["errors"] == figures["dropped"] == figures["page_errors"] == 0
    assert figures["page_ms"]["count"] >= 1 and figures["translate_ms_by_run"].keys() == {"att"}


def test_scores_and_examples_come_from_the_runs_eval_outputs(client, service):
    scores = client.get("/api/scores").json()
    assert [s["name"] for s in scores["systems"]] == ["att", "none"] and scores["note"] is None
    bucket = scores["systems"][0]["buckets"][1]
    assert bucket["label"] == "5-8" and bucket["ci_low"] <= bucket["bleu"] <= bucket["ci_high"]
    examples = client.get("/api/examples?bucket=5-8&count=3").json()
    assert examples["total"] == bucket["count"] and len(examples["examples"]) == min(3, bucket["count"])
    for ex in examples["examples"]:
        assert 5 <= ex["words"] <= 8 and ex["reference"]
        assert {run: (out["from"], out["beam"]) for run, out in ex["outputs"].items()} == {
            "att": ("mtkit eval, beam 2", 2), "none": ("mtkit eval, beam 2", 2)}
        assert ex["outputs"]["att"]["text"] == service.translate(ex["source"], ["att"], beam=2)["results"][0]["translation"]
    bare = client.get("/api/examples?bucket=5-8&count=3&outputs=false").json()
    assert all(ex["outputs"] == {} for ex in bare["examples"])


def test_examples_never_translate_a_run_without_cached_outputs_but_say_how_to_get_them(runs, tmp_path,
                                                                                        monkeypatch):
    bare = Path(shutil.copytree(runs[1], tmp_path / "none", ignore=shutil.ignore_patterns("eval")))
    service = Service.from_run_dirs([bare])
    assert service.scores()["systems"] == [] and "mtkit eval" in service.scores()["note"]
    calls = []
    monkeypatch.setattr(Translator, "translate", lambda *args, **kwargs: calls.append(args))
    response = TestClient(make_app(service), base_url=LOCAL).get("/api/examples?count=20")
    data = response.json()
    assert response.status_code == 200 and len(data["examples"]) == 20 and calls == []
    assert all(ex["outputs"] == {} for ex in data["examples"]) and data["uncached"] == ["none"]
    assert "`mtkit eval --run DIR`" in data["uncached_note"]


def test_the_page_ships_in_the_package_and_fetches_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    names = [name for name in static_files() if name != "index.html"]
    assert {"main.js", "api.js", "style.css", "icon.svg"} <= set(names)
    for name in names:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        external = response.text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in external and "https://" not in external and "//cdn" not in external
    assert "https://" not in page.text and "http://" not in page.text
    schema = client.get("/openapi.json").json()
    assert {"/api/runs", "/api/translate", "/api/scores", "/api/passages", "/api/examples"} <= set(schema["paths"])


@pytest.mark.parametrize("name", ["..", "../service.py", "../__init__.py", "/etc/passwd", "static", ".",
                                  "main.js/../../app.py"])
def test_the_static_route_serves_only_the_files_read_at_start_never_a_path(client, monkeypatch, name):
    # A route that joined the name to its folder would serve ../service.py (it is there, beside static/).
    files = static_files()
    response = static_response(files, name)
    assert response.status_code == 404 and json.loads(response.body)["field"] == "name"
    # Over HTTP, "%2e%2e" reaches the route as ".." (the router decodes it; "%2f" would not match the route):
    # the 404 is the route's own (field "name"), with the filesystem closed to the request.
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("a request opened a file"))
    monkeypatch.setattr(Path, "read_bytes", lambda *a, **k: pytest.fail("a request read a file"))
    over_http = client.get("/static/%2e%2e")
    assert (over_http.status_code, over_http.json()["field"]) == (404, "name")
    assert over_http.json()["error"].startswith("no static file '..'")
    assert client.get("/static/main.js").content == files["main.js"][0]  # served from memory


def test_runs_say_their_languages_as_their_config_names_them(client):
    att, none = client.get("/api/runs").json()["runs"]
    assert (att["src_lang"], att["tgt_lang"], none["src_lang"], none["tgt_lang"]) == ("qaa", "qab", None, None)
    examples = client.get("/api/examples?count=1").json()
    assert (examples["src_lang"], examples["tgt_lang"]) == ("qaa", "qab")  # the test split's run: att


def test_scores_without_a_bootstrap_say_which_file_lacks_intervals_and_the_command(client, runs, tmp_path):
    assert client.get("/api/scores").json()["intervals_note"] is None  # the fixture's were bootstrapped
    run = Path(shutil.copytree(runs[0], tmp_path / "att"))
    compare.write_results(compare.compare([run], bootstrap=0, edges=[4, 8]), run / "eval", plot=False)
    scores = Service.from_run_dirs([run]).scores()
    assert all(b["ci_low"] is None for b in scores["systems"][0]["buckets"])
    assert scores["intervals_note"] == (f"att/eval/scores.json has no 95% intervals (written without a bootstrap): "
                                        f"`mtkit eval --run .../att --by-length` writes them.")


def test_passages_give_the_same_verses_alone_and_inside_passages_with_paired_ratios_when_present(client):
    data = client.get("/api/passages").json()
    att, none = data["systems"]
    assert [b["label"] for b in att["by_k"]] == ["k=1", "k=2", "k=3"] and att["run"] == "att"
    assert sum(b["count"] for b in att["by_k"]) == 30 and all(b["bleu"] is not None for b in att["by_k"])
    assert att["paired"] == PAIRED and none["paired"] is None  # the newer `paired` list is read, its absence no error
    assert data["note"] is None and data["intervals_note"] == (
        "att/eval/passages/passages_scores.json has no 95% intervals (written without a bootstrap): `mtkit eval --run "
        ".../att --passages --by-length --out .../att/eval/passages` writes them. none/eval/passages/passages_scores"
        ".json has no 95% intervals (written without a bootstrap): `mtkit eval --run .../none --passages --by-length "
        "--out .../none/eval/passages` writes them.")


def test_passage_files_are_read_whatever_mtkit_eval_wrote_of_the_paired_ratios(runs, tmp_path):
    data = json.loads((runs[0] / "eval" / "passages" / "passages_scores.json").read_text())
    older, newer = dict(data["systems"][0]), dict(data["systems"][0])
    older.pop("paired")  # written before `paired` existed
    newer["paired"] = [{"k": 2, "inputs": 10, "mean_src_words": 9.0, "bleu": 0.0, "ratio": None, "ci_low": None,
                        "ci_high": None, "bleu_ci_low": None}]  # BLEU_1 of 0: no ratio; extra keys ignored
    empty = {**older, "name": "empty", "paired": []}  # a system scored without passages
    path = tmp_path / "passages_scores.json"
    path.write_text(json.dumps({**data, "systems": [older, newer, empty]}))
    assert [s["paired"] for s in read_passages(path)] == [None, [{"k": 2, "ratio": None, "ci_low": None,
                                                                  "ci_high": None, "mean_src_words": 9.0}], None]
    path.write_text("{}")
    with pytest.raises(MtkitError, match="not a passage scores file"):
        read_passages(path)


def test_a_results_directory_replaces_the_runs_own_scores(runs, tmp_path):
    results = tmp_path / "results"
    named = compare.compare(runs, names=["study_att", "study_none"], bootstrap=10, edges=[4, 8])
    compare.write_results(named, results, plot=False)
    shutil.copy(runs[0] / "eval" / "passages" / "passages_scores.json", results / "passages_scores.json")
    service = Service.from_run_dirs(runs, results=results)
    scores = service.scores()
    assert [(s["name"], s["run"]) for s in scores["systems"]] == [("study_att", None), ("study_none", None)]
    assert scores["intervals_note"] is None and scores["systems"][0]["n_boot"] == 10
    assert [s["name"] for s in service.passages()["systems"]] == ["att"]
    with pytest.raises(MtkitError, match="--results"):
        Service.from_run_dirs(runs, results=tmp_path / "nothing")


# -- a Transformer run --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf_runs(runs, tiny_transformer, tmp_path_factory) -> list[Path]:
    """A copy of the tiny Transformer run (2 decoder layers, 2 heads), then the RNN `att`."""
    return [Path(shutil.copytree(tiny_transformer, tmp_path_factory.mktemp("serve_tf") / "tf")), runs[0]]


@pytest.fixture(scope="module")
def tf_service(tf_runs) -> Service:
    return Service.from_run_dirs(tf_runs)


@pytest.fixture(scope="module")
def tf_client(tf_service) -> TestClient:
    return TestClient(make_app(tf_service), base_url=LOCAL)


@pytest.fixture(scope="module")
def tf_sentence(tf_service) -> str:
    """A test sentence that the Transformer translates into at least two words."""
    return two_word_sentence(tf_service, "tf")


def test_runs_describes_a_transformer_by_its_architecture(tf_client):
    tf, rnn = tf_client.get("/api/runs").json()["runs"]
    assert tf["name"] == "tf" and tf["arch"] == "transformer" and tf["attention"] is True
    assert tf["description"].startswith("Transformer(1+2 layers, d 16, 2 heads, ff 32")
    assert (tf["layers"], tf["heads"], tf["decoder"], tf["cell"]) == (2, 2, "transformer", None)
    assert rnn["arch"] == "rnn" and rnn["description"].startswith("RNNsearch(gru")
    assert (rnn["layers"], rnn["heads"], rnn["attention_kind"], rnn["cell"]) == (None, None, "additive", "gru")


@pytest.mark.parametrize("layer, head, label", [
    (None, None, "cross-attention, mean of 2 layers, mean of 2 heads"),
    (2, None, "cross-attention, layer 2 of 2, mean of 2 heads"),
    (1, 2, "cross-attention, layer 1 of 2, head 2 of 2"),
])
def test_translate_labels_and_honours_a_transformers_layer_and_head(tf_client, tf_runs, tf_sentence, layer, head,
                                                                    label):
    body = {"text": tf_sentence, "runs": ["tf"], "beam": 1, **({"layer": layer} if layer else {}),
            **({"head": head} if head else {})}
    response = tf_client.post("/api/translate", json=body)
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert result["attention_label"] == label and (result["layer"], result["head"]) == (layer, head)
    translator = Translator.from_run(tf_runs[0])
    tokens = translator.translate([tf_sentence], beam=1)[0].hypotheses[0].tokens
    every = cross_attention(translator.model, translator.tokenizer.encode_src([tf_sentence])[0], tokens)
    expected = every[slice(None) if layer is None else slice(layer - 1, layer),
                     slice(None) if head is None else slice(head - 1, head)].mean((0, 1))  # (T, S)
    weights = result["hypotheses"][0]["weights"]
    assert torch.allclose(torch.tensor(weights), expected, atol=1e-4) and rows_sum_to_one(weights)
    assert rows_sum_to_one(result["hypotheses"][0]["words"]["weights"])


def test_an_rnn_result_says_which_attention_it_is(tf_client, tf_sentence):
    results = tf_client.post("/api/translate", json={"text": tf_sentence}).json()["results"]
    assert [r["attention_label"] for r in results] == ["cross-attention, mean of 2 layers, mean of 2 heads",
                                                       "additive attention"]


@pytest.mark.parametrize("body, message", [
    ({"runs": ["tf"], "layer": 3}, "layer: got 3; run tf has 2 decoder layers (1-2)"),
    ({"runs": ["tf"], "head": 5}, "head: got 5; run tf has 2 heads (1-2)"),
    ({"runs": ["tf"], "layer": 0}, "layer: got 0; must be at least 1"),
    ({"runs": ["tf"], "head": "1"}, "head"),
    ({"runs": ["tf"], "layer": 1.5}, "layer"),
    ({"runs": ["att"], "layer": 1}, "layer: run att is an RNN"),
    ({"head": 1}, "head: run att is an RNN"),  # all runs: the RNN among them has no heads to choose
])
def test_bad_layers_and_heads_get_a_422_naming_the_field(tf_client, body, message):
    response = tf_client.post("/api/translate", json={"text": "kafegi feno", **body})
    assert response.status_code == 422
    data = response.json()
    assert data["field"] == ("layer" if "layer" in body else "head") and message in data["error"]


# -- concurrency --------------------------------------------------------------------------------------------

def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url + "api/translate", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_concurrent_requests_give_the_serial_answers_and_never_reenter_a_model(service, monkeypatch):
    sentences = [ex["source"] for ex in service.examples(None, 0, 12, outputs=False)["examples"]]
    serial = {s: service.translate(s, beam=2)["results"] for s in sentences}
    active: dict[int, int] = {}
    most = {"inside": 0}
    guard = threading.Lock()
    translate = Translator.translate

    def counting(self, *args, **kwargs):
        with guard:
            active[id(self)] = active.get(id(self), 0) + 1
            most["inside"] = max(most["inside"], active[id(self)])
        try:
            return translate(self, *args, **kwargs)
        finally:
            with guard:
                active[id(self)] -= 1

    monkeypatch.setattr(Translator, "translate", counting)
    with background(make_app(service)) as url:
        jobs = [s for _ in range(3) for s in sentences]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda s: (s, post(url, {"text": s, "beam": 2})["results"]), jobs))
    assert len(answers) == 3 * len(sentences)
    for s, results in answers:
        for got, want in zip(results, serial[s]):
            got.pop("elapsed_ms"), want.pop("elapsed_ms", None)
            assert got == want
    assert most["inside"] == 1  # each model was entered by one thread at a time


# -- the command --------------------------------------------------------------------------------------------

def test_serve_prints_the_url_answers_and_stops_cleanly_on_ctrl_c(runs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mtkit.cli", "serve", "--run", str(runs[0]), "--port", "0",
                             "--threads", "1", "--queue", "3", "--timeout", "12.5", "--allow-host", "box.lan"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mtkit serve: 1 run(s) at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/runs", timeout=30) as response:
            data = json.loads(response.read())
        assert data["runs"][0]["name"] == "att" and (data["limits"]["queue"], data["limits"]["timeout_s"]) == (3, 12.5)
        assert wire(url, "GET", "/api/runs", headers={"Host": "box.lan:8000"})[0] == 200
        assert wire(url, "GET", "/api/runs", headers={"Host": "other.lan"})[0] == 400
        with pytest.raises(urllib.error.HTTPError) as err:
            post(url, {"text": "a", "beam": 0})
        assert err.value.code == 422 and json.loads(err.value.read())["field"] == "beam"
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "mtkit serve: stopped" in out and "Traceback" not in errors


def test_a_port_in_use_is_an_error_naming_the_option():
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(MtkitError, match="--port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_serve_without_runs_or_with_a_checkpoint_path_says_what_to_do(runs):
    with pytest.raises(MtkitError, match="--run"):
        Service.from_run_dirs([])
    with pytest.raises(MtkitError, match="--checkpoint"):
        Service.from_run_dirs(runs, checkpoint=str(runs[0] / "best.pt"))


# -- the page in a browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser: {CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                                   "(pip install -e '.[dev]')")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_the_page_translates_and_draws_lines_hover_and_steps(browser, service, sentence):
    expected = service.translate(sentence)["results"]
    att = expected[0]["hypotheses"][0]["words"]
    weights = att["weights"]  # (T words, S words)
    with background(make_app(service)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems, foreign = [], []
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("request", lambda req: foreign.append(req.url) if not req.url.startswith(url) else None)
        page.goto(url)
        page.wait_for_selector("#pick-bucket option", state="attached")
        page.fill("#source", sentence)
        page.click("#translate")
        panel = page.locator('.model[data-run="att"]')
        page.wait_for_selector('.model[data-run="att"] .translation')
        page.wait_for_selector('.model[data-run="none"] .translation')
        assert panel.locator(".translation").inner_text() == expected[0]["translation"]

        # One line per weight ≥ the threshold, each carrying its weight, widths ordered like the weights.
        lines = panel.locator("line.link").evaluate_all(
            "ls => ls.map(l => [+l.dataset.t, +l.dataset.s, +l.dataset.w, +l.getAttribute('stroke-width')])")
        wanted = {(t, s) for t, row in enumerate(weights) for s, w in enumerate(row) if w >= THRESHOLD}
        assert {(t, s) for t, s, _, _ in lines} == wanted and len(lines) == len(wanted)
        assert all(abs(w - weights[t][s]) < 1e-9 for t, s, w, _ in lines)
        by_weight = sorted(lines, key=lambda line: line[2])
        assert all(a[3] <= b[3] and (a[2] == b[2] or a[3] < b[3]) for a, b in zip(by_weight, by_weight[1:]))

        # Hovering target word t highlights exactly its lines.
        for t in range(len(weights)):
            panel.locator(f"svg.align text.word.t[data-i='{t}']").hover()
            lit = panel.locator("line.link.hl").evaluate_all("ls => ls.map(l => [+l.dataset.t, +l.dataset.s])")
            assert sorted(map(tuple, lit)) == sorted((tt, s) for tt, s in wanted if tt == t)
        panel.locator(f"svg.align text.word.s[data-i='0']").hover()
        lit = panel.locator("line.link.hl").evaluate_all("ls => ls.map(l => +l.dataset.s)")
        assert set(lit) <= {0} and len(lit) == sum(1 for _, s in wanted if s == 0)

        # The step-through shows each step's own weights: → moves one target word on.
        page.mouse.move(5, 5)
        panel.locator("button.next").click()
        shown = []
        for step in range(1, len(weights) + 1):
            assert panel.locator(".step-label").inner_text().startswith(f"step {step} of {len(weights)}")
            shown.append(panel.locator(".info .bar").evaluate_all("bs => bs.map(b => +b.dataset.w)"))
            future = panel.locator("line.link.future").evaluate_all("ls => ls.map(l => +l.dataset.t)")
            assert all(t >= step for t in future) and len(future) == sum(1 for t, _ in wanted if t >= step)
            page.keyboard.press("ArrowRight")
        assert shown == weights and shown[0] != shown[1]

        # The model without attention says so, and draws no weights.
        plain = page.locator('.model[data-run="none"]')
        assert "fixed vector" in plain.locator(".fixed-vector").inner_text()
        assert plain.locator("line.link").count() == 0 and plain.locator("rect.cell").count() == 0
        assert plain.locator(".translation").inner_text() == expected[1]["translation"]

        # BLEU by length: one series per scored system; a bucket's examples show both models' outputs.
        page.click("#tab-length")
        page.wait_for_selector("svg.bleu-chart path.series")
        assert page.locator("svg.bleu-chart path.series").count() == 2
        page.locator('.bucket-hit[data-bucket="5-8"]').click()
        page.wait_for_selector(".example")
        first = page.locator(".example").first
        assert first.locator(".output").count() == 2 and "mtkit eval, beam 2" in first.inner_text()
        page.click("#tab-translate")

        # A bad request shows the server's message and marks the field.
        page.fill("#source", "   ")
        page.click("#translate")
        page.wait_for_selector("#status.error")
        assert "text" in page.locator("#status").inner_text() and page.locator("#source.invalid").count() == 1
        page.close()
    expected_422 = "Failed to load resource: the server responded with a status of 422"  # the empty text, one per model
    assert [p for p in problems if not p.startswith(expected_422)] == [] and foreign == []


def test_the_page_labels_a_transformers_attention_and_draws_the_chosen_layer(browser, tf_service, tf_sentence):
    layer_2 = tf_service.translate(tf_sentence, ["tf"], layer=2)["results"][0]["hypotheses"][0]["words"]["weights"]
    with background(make_app(tf_service)) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems = []
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.goto(url)
        page.wait_for_selector("#pick-bucket option", state="attached")
        assert "tf (Transformer, cross-attention)" in page.locator("#runs-summary").inner_text()
        page.fill("#source", tf_sentence)
        page.click("#translate")
        tf, rnn = page.locator('.model[data-run="tf"]'), page.locator('.model[data-run="att"]')
        page.wait_for_selector('.model[data-run="tf"] .attention-label')
        page.wait_for_selector('.model[data-run="att"] .attention-label')
        assert tf.locator(".attention-label").inner_text() == "cross-attention, mean of 2 layers, mean of 2 heads"
        assert "Transformer(1+2 layers" in tf.locator("h2 small").inner_text()
        assert rnn.locator(".attention-label").inner_text() == "additive attention"
        assert rnn.locator("select.layer, select.head").count() == 0  # an RNN has no layers or heads to choose

        tf.locator("select.layer").select_option("2")
        page.wait_for_function("() => document.querySelector('.model[data-run=\"tf\"] .attention-label')"
                               ".textContent.includes('layer 2 of 2')")
        assert tf.locator(".attention-label").inner_text() == "cross-attention, layer 2 of 2, mean of 2 heads"
        assert tf.locator("select.layer").input_value() == "2"
        cells = tf.locator("rect.cell").evaluate_all("rs => rs.map(r => [+r.dataset.t, +r.dataset.s, +r.dataset.w])")
        assert len(cells) == sum(len(row) for row in layer_2)
        assert all(abs(w - layer_2[t][s]) < 1e-9 for t, s, w in cells)
        page.close()
    assert problems == []


def open_page(browser, url: str):
    """Return a page of the app at `url`, its runs loaded, and the list its errors are collected in."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("#pick-bucket option", state="attached")
    return page, problems


def test_a_newer_translation_aborts_the_older_one_which_never_overwrites_it(browser, service, sentence):
    expected = [r["translation"] for r in service.translate(sentence)["results"]]
    with background(make_app(service)) as url:
        page, problems = open_page(browser, url)
        held, failed = [], []

        def hold_the_first(route):  # the first sentence's answers come only after the second sentence is drawn
            if json.loads(route.request.post_data)["text"] == "kafegi feno":
                held.append(route)
            else:
                route.continue_()
        page.route("**/api/translate", hold_the_first)
        page.on("requestfailed", lambda r: failed.append((json.loads(r.post_data)["text"], r.failure)))
        page.fill("#source", "kafegi feno")
        page.click("#translate")
        page.wait_for_function("() => document.querySelectorAll('.model .pending').length === 2")
        page.fill("#source", sentence)
        page.click("#translate")
        page.wait_for_selector('.model[data-run="att"] .translation')
        page.wait_for_selector('.model[data-run="none"] .translation')
        for route in held:  # too late: the page has aborted these requests
            with contextlib.suppress(Exception):
                route.continue_()
        page.wait_for_timeout(500)
        assert page.locator(".model").count() == 2 and len(held) == 2
        assert [page.locator(f'.model[data-run="{run}"] .translation').inner_text() for run in ("att", "none")] == expected
        assert sorted(failed) == [("kafegi feno", "net::ERR_ABORTED")] * 2
        assert page.locator("#status").inner_text().startswith("translated by 2 models")
        page.mouse.move(5, 5)
        page.keyboard.press("ArrowRight")  # the keys step the panel on screen, not a stale one
        assert page.locator('.model[data-run="att"] .step-label').inner_text().startswith("step 1 of")
        # The languages are the runs' own: att's config names them, none's does not (and they differ: no lang).
        assert page.locator('.model[data-run="att"] .translation').get_attribute("lang") == "qab"
        assert page.locator('.model[data-run="none"] .translation').get_attribute("lang") is None
        assert page.locator("#source").get_attribute("lang") is None
        page.close()
    assert problems == []


def test_one_failing_model_shows_its_error_in_its_own_panel_and_leaves_the_others(browser, service, sentence):
    busy = {"error": "model none is busy: 8 requests are waiting or running", "field": None}

    def refuse_none(route):
        if json.loads(route.request.post_data)["runs"] == ["none"]:
            route.fulfill(status=503, content_type="application/json", headers={"Retry-After": "3"},
                          body=json.dumps(busy))
        else:
            route.continue_()
    expected = service.translate(sentence, ["att"])["results"][0]["translation"]
    with background(make_app(service)) as url:
        page, problems = open_page(browser, url)
        page.route("**/api/translate", refuse_none)
        page.fill("#source", sentence)
        page.click("#translate")
        page.wait_for_selector('.model[data-run="none"] .panel-error')
        page.wait_for_selector('.model[data-run="att"] .translation')
        assert page.locator('.model[data-run="att"] .translation').inner_text() == expected
        assert page.locator('.model[data-run="att"] svg.align').count() == 1
        assert page.locator('.model[data-run="none"] .panel-error').inner_text() == busy["error"] + " (HTTP 503)"
        assert page.locator("#status.error").inner_text().endswith("(HTTP 503) (1 of 2 models)")
        page.close()
    assert [p for p in problems if "status of 503" not in p] == []


def test_the_bleu_tab_shows_intervals_or_names_the_file_without_them_and_the_passages_view(browser, service, runs,
                                                                                         tmp_path):
    with background(make_app(service)) as url:
        page, problems = open_page(browser, url)
        page.click("#tab-length")
        page.wait_for_selector("svg.passage-chart path.series")
        assert "over 20 resamples" in page.locator("#bucket-table .fine").inner_text()
        assert page.locator("#scores-note").is_hidden() and page.locator("svg.bleu-chart line.ci").count() > 0
        # The headline view: the same verses alone and inside passages, one series per model.
        assert page.locator("svg.passage-chart path.series").count() == 2
        att = page.locator('table.passages tr[data-system="att"]').inner_text()
        assert "×0.91 [0.85–0.97], 12 source words" in att and "×0.77 [0.72–0.82], 19 source words" in att
        assert "×" not in page.locator('table.passages tr[data-system="none"]').inner_text()
        note = page.locator("#passages-note").inner_text()
        assert "att/eval/passages/passages_scores.json has no 95% intervals" in note and "--passages" in note
        page.close()
    run = Path(shutil.copytree(runs[0], tmp_path / "att"))
    compare.write_results(compare.compare([run], bootstrap=0, edges=[4, 8]), run / "eval", plot=False)
    with background(make_app(Service.from_run_dirs([run]))) as url:
        page, more = open_page(browser, url)
        page.click("#tab-length")
        page.wait_for_selector("svg.bleu-chart path.series")
        page.wait_for_selector("#scores-note:not([hidden])")
        assert "resamples" not in page.locator("#view-length").inner_text()
        assert page.locator("svg.bleu-chart line.ci").count() == 0
        assert page.locator("#scores-note").inner_text() == (
            "att/eval/scores.json has no 95% intervals (written without a bootstrap): "
            "`mtkit eval --run .../att --by-length` writes them.")
        page.close()
    assert problems == [] and more == []
