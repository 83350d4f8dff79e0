"""`mtkit serve`: the JSON API (answers, weights, every bad input a 4xx naming its field), a Transformer run
(described by its architecture, its cross-attention labelled and chosen by layer and head), concurrency, the CLI
start and Ctrl-C, and the page itself in a real browser (headless Chromium, skipped with the reason where none
is installed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import cross_attention

pytest.importorskip("fastapi", reason="mtkit serve needs fastapi (pip install -e '.[dev]')")
from fastapi.testclient import TestClient  # noqa: E402

from mtkit import compare  # noqa: E402
from mtkit.errors import MtkitError  # noqa: E402
from mtkit.serve.app import background, bind, make_app  # noqa: E402
from mtkit.serve.service import MAX_BEAM, MAX_TEXT_CHARS, Service  # noqa: E402
from mtkit.translate import Translator  # noqa: E402

CHROMIUM = Path(os.environ.get("MTKIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
THRESHOLD = 0.05  # the page's default "lines from weight"


@pytest.fixture(scope="module")
def runs(tiny_runs, tmp_path_factory) -> list[Path]:
    """Copies of the tiny runs (attention first), scored by `mtkit eval --by-length` into the first one's eval/."""
    root = tmp_path_factory.mktemp("serve")
    dirs = [Path(shutil.copytree(tiny_runs / "runs" / name, root / name)) for name in ("att", "none")]
    systems = compare.compare(dirs, bootstrap=20, edges=[4, 8])
    compare.write_results(systems, dirs[0] / "eval", plot=False)
    return dirs


@pytest.fixture(scope="module")
def service(runs) -> Service:
    return Service.from_run_dirs(runs)


@pytest.fixture(scope="module")
def client(service) -> TestClient:
    return TestClient(make_app(service))


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
    assert [b["label"] for b in data["buckets"]] == ["1-4", "5-8", "9+"]
    assert sum(b["count"] for b in data["buckets"]) == data["runs"][0]["test_sentences"] == 30


def test_translate_gives_pieces_words_and_weights_that_sum_to_one(client, service, sentence):
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
    expected = Translator.from_run(service_run_dir(service, "att")).translate([sentence], beam=2)[0].text
    assert att["translation"] == expected


def service_run_dir(service: Service, name: str) -> Path:
    return Path(next(r["path"] for r in service.runs()["runs"] if r["name"] == name))


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
    assert response.status_code == status
    data = response.json()
    assert data["field"] == field and field in data["error"] and "Traceback" not in response.text


@pytest.mark.parametrize("query,field", [
    ("bucket=99-100", "bucket"), ("count=0", "count"), ("count=21", "count"), ("count=x", "count"),
    ("offset=-1", "offset"), ("bucket=1-4&outputs=maybe", "outputs"),
])
def test_bad_example_queries_get_a_4xx_naming_the_field(client, query, field):
    response = client.get(f"/api/examples?{query}")
    assert 400 <= response.status_code < 500 and response.json()["field"] == field


def test_an_oversized_body_is_refused_before_it_is_read(client):
    response = client.post("/api/translate", content=b"{}", headers={"Content-Type": "application/json",
                                                                        "Content-Length": str(10**9)})
    assert response.status_code == 413 and response.json()["field"] == "body"


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


def test_examples_without_eval_outputs_are_translated_then_with_the_runs_beam(runs, tmp_path):
    bare = Path(shutil.copytree(runs[1], tmp_path / "none", ignore=shutil.ignore_patterns("eval")))
    service = Service.from_run_dirs([bare])
    assert service.scores()["systems"] == [] and "mtkit eval" in service.scores()["note"]
    example = service.examples("1-10", 0, 1)["examples"][0]  # the run's eval.edges, as no scores.json says otherwise
    assert example["outputs"]["none"]["from"] == "translated now, beam 2"


def test_the_page_ships_in_the_package_and_fetches_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css", "icon.svg"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        external = response.text.replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in external and "https://" not in external and "//cdn" not in external
    assert "https://" not in page.text and "http://" not in page.text
    for path in ("/static/nothing.js", "/static/..%2Fapp.py", "/static/../app.py", "/nope"):
        assert client.get(path).status_code == 404
    schema = client.get("/openapi.json").json()
    assert {"/api/runs", "/api/translate", "/api/scores", "/api/examples"} <= set(schema["paths"])


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
    return TestClient(make_app(tf_service))


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
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "mtkit.cli", "serve", "--run", str(runs[0]), "--port", "0",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("mtkit serve: 1 run(s) at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/runs", timeout=30) as response:
            assert json.loads(response.read())["runs"][0]["name"] == "att"
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
