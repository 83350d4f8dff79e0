"""CLI smoke test: synth → prepare → train → translate → eval → attention through the console entry point,
and the user errors that must end in one `error: ...` line with exit status 2, never a traceback."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import matplotlib.image
import pytest
from typer.testing import CliRunner

from mtkit.cli import main

CONFIG = """\
run_dir: runs/tiny
data:
  source: text
  src_file: data/train.src
  tgt_file: data/train.tgt
  dev_size: 30
  test_size: 30
  passage_windows: 5  # windows of 2 consecutive lines, read alone (k=1) and joined (k=2)
  passage_max_k: 2
tokenizer:
  vocab_size: 40
model:
  emb_dim: 16
  hidden_dim: 24
  dec_hidden_dim: 32
  out_dim: 24
  dropout: 0.0
  attention:
    dim: 24
train:
  batch_tokens: 400
  epochs: 100
  max_steps: 40
  lr: 0.01
  valid_every: 20
  valid_bleu_sentences: 0
  attention_samples: 0
  log_every: 10
decode:
  beam: 2
length_edges: [3, 6]
"""
PNG = b"\x89PNG\r\n\x1a\n"


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str


def mtkit(*args: str, input: str | bytes | None = None) -> Result:
    """Run `mtkit ARGS` in this process through `main()`, the console script, with its error handling."""
    with CliRunner().isolation(input=input) as (out, err, _), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["mtkit", *args])
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


def console(cwd: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mtkit.cli ARGS` as a separate process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mtkit.cli", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, timeout=120)


def assert_user_error(result: Result, *fragments: str) -> None:
    """One `error: ...` line, as the last line of stderr, exit status 2, no traceback; it holds each fragment."""
    assert result.code == 2, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """synth, prepare twice and train (with and without attention) through the CLI, in a fresh directory."""
    root = tmp_path_factory.mktemp("cli")
    (root / "c.yaml").write_text(CONFIG, encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        steps = SimpleNamespace(
            root=root,
            synth=mtkit("synth", "data", "--n", "600", "--max-len", "6", "--vocab", "12"),
            prepare=mtkit("prepare", "c.yaml"),
            prepare_again=mtkit("prepare", "c.yaml"),
            train_none=mtkit("train", "c.yaml", "--set", "run_dir=runs/none", "--set", "model.attention.kind=none",
                             "--set", "train.max_steps=1"),
            train=mtkit("train", "c.yaml"),  # the latest run
        )
    return steps


def test_synth_prepare_and_train(project):
    root = project.root
    assert project.synth.code == 0, project.synth
    assert len(lines_of(root / "data/train.src")) == len(lines_of(root / "data/train.tgt")) == 600
    assert project.prepare.code == 0, project.prepare
    assert "training batches:" in project.prepare.stderr and "prepared: runs/cache/" in project.prepare.stderr
    assert project.prepare_again.code == 0
    assert "up to date, nothing to do: runs/cache/" in project.prepare_again.stderr
    for result in (project.train_none, project.train):
        assert result.code == 0, result
    assert (root / "runs/tiny/best.pt").is_file() and (root / "runs/none/last.pt").is_file()
    assert Path(lines_of(root / "runs/latest")[0]) == (root / "runs/tiny").resolve()


def test_translate_stdin_to_stdout_keeps_the_line_count(project):
    sources = lines_of(project.root / "data/train.src")[:5]
    text = "\r\n".join([sources[0], "", "   ", *sources[1:]]) + "\n"
    run = console(project.root, "translate", input=b"\xef\xbb\xbf" + text.encode())
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    out = run.stdout.decode("utf-8").split("\n")
    assert out[-1] == "" and len(out) - 1 == 7
    assert out[1] == out[2] == "" and out[0]
    assert b"Traceback" not in run.stderr


def test_translate_files_n_best_and_attention_json(project, monkeypatch):
    monkeypatch.chdir(project.root)
    (project.root / "in.txt").write_text("\n".join(lines_of(project.root / "data/train.src")[:4]) + "\n")
    result = mtkit("translate", "-i", "in.txt", "-o", "out/new/dir/hyp.txt", "--attention", "out/att.jsonl")
    assert result.code == 0, result
    assert len(lines_of(project.root / "out/new/dir/hyp.txt")) == 4
    records = [json.loads(line) for line in lines_of(project.root / "out/att.jsonl")]
    assert [r["line"] for r in records] == [1, 2, 3, 4]
    assert all(len(r["weights"]) == len(r["target"]) and len(r["weights"][0]) == len(r["source"]) for r in records)
    nbest = mtkit("translate", "-i", "in.txt", "--beam", "3", "--n-best", "3")
    assert nbest.code == 0, nbest
    rows = [line.split(" ||| ") for line in nbest.stdout.splitlines()]
    assert [int(r[0]) for r in rows] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    for i in range(0, 12, 3):
        scores = [float(r[3]) for r in rows[i : i + 3]]
        assert scores == sorted(scores, reverse=True)
    shown = mtkit("attention", "--from-json", "out/att.jsonl", "--line", "2", "--out", "out/plots", "--stem", "j")
    assert shown.code == 0, shown
    assert_png(project.root / "out/plots/j_heatmap.png")


def test_eval_by_length_writes_scores_and_a_png(project, monkeypatch):
    monkeypatch.chdir(project.root)
    result = mtkit("eval", "--by-length", "--bootstrap", "200")
    assert result.code == 0, result
    assert "src words" in result.stdout and "0-3" in result.stdout and "BLEU: nrefs:1" in result.stdout
    out = project.root / "runs/tiny/eval"
    scores = json.loads((out / "scores.json").read_text())
    system = scores["systems"][0]
    assert system["name"] == "tiny" and system["count"] == 30 and system["edges"] == [3, 6]
    assert sum(b["count"] for b in system["buckets"]) == 30
    assert lines_of(out / "scores.csv")[0].startswith("system,bucket,")
    assert_png(out / "bleu_by_length.png")


def test_eval_passages_scores_the_same_lines_alone_and_joined(project, monkeypatch):
    monkeypatch.chdir(project.root)
    result = mtkit("eval", "--passages", "--by-length", "--bootstrap", "50", "--out", "out/passages")
    assert result.code == 0, result
    assert "every k covers the same verses" in result.stdout and "k=2" in result.stdout
    system = json.loads((project.root / "out/passages/passages_scores.json").read_text())["systems"][0]
    by_k = {b["label"]: b for b in system["by_k"]}
    assert by_k["k=1"]["count"] == 10 and by_k["k=2"]["count"] == 5  # 5 windows of 2 lines
    assert system["count"] == 15 and sum(b["count"] for b in system["buckets"]) == 15
    assert all(b["ratio"] is None or b["ratio"] > 0 for b in system["by_k"] + system["buckets"])
    rows = list(csv.DictReader(open(project.root / "out/passages/passages_scores.csv", encoding="utf-8")))
    assert [r["bucket"] for r in rows if r["bucket"].startswith("k=")] == ["k=1", "k=2"]
    assert_png(project.root / "out/passages/passages_bleu_by_length.png")
    joined = (project.root / "runs/tiny/eval").glob("passages.best.*.hyp")
    assert len(lines_of(next(joined))) == 15  # translations cached beside the test split's


def test_eval_passages_forced_measures_each_verse_alone_and_in_place(project, monkeypatch):
    monkeypatch.chdir(project.root)
    result = mtkit("eval", "--passages", "--forced", "--bootstrap", "50", "--out", "out/forced")
    assert result.code == 0, result
    assert "Teacher-forced loss" in result.stdout and "first" in result.stdout and "last" in result.stdout
    system = json.loads((project.root / "out/forced/passages_forced.json").read_text())["systems"][0]
    assert system["name"] == "tiny"
    assert [(p["k"], p["position"], p["verses"]) for p in system["losses"]] == [(2, "first", 5), (2, "last", 5)]
    for p in system["losses"]:
        assert p["alone"] > 0 and p["increase"] == pytest.approx(p["loss"] - p["alone"])
        assert p["ci_low"] <= p["increase"] <= p["ci_high"]
    assert_png(project.root / "out/forced/passages_forced.png")
    assert_user_error(mtkit("eval", "--forced"), "--forced measures the passage set's verses by position; add --passages")
    assert_user_error(mtkit("eval", "--passages", "--forced", "--hyp", "x.txt"), "drop --src/--ref/--hyp")


def test_eval_passages_of_a_run_without_them_says_how_to_get_them(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project.root)
    prepared = json.loads((project.root / "runs/tiny/data.json").read_text())["prepared"]
    table = Path(prepared) / "passages.tsv"
    saved = table.read_bytes()
    table.unlink()
    try:
        assert_user_error(mtkit("eval", "--passages"), "has no passage set; set data.passage_windows")
    finally:
        table.write_bytes(saved)


def test_eval_output_files_with_names(project, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    src, ref = ["a b c", "d e", "f g h i"], ["A B C", "D E", "F G H I"]
    for name, lines in {"s.txt": src, "r.txt": ref, "h1.txt": ref, "h2.txt": ["A B", "X", "F G H I"]}.items():
        (tmp_path / name).write_text("".join(line + "\n" for line in lines))
    result = mtkit("eval", "--src", "s.txt", "--ref", "r.txt", "--hyp", "h1.txt", "--hyp", "h2.txt",
                   "--name", "copy", "--name", "other", "--out", "res")
    assert result.code == 0, result
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith("copy ") and "BLEU 100.00" in first and "(3 lines)" in first
    assert second.startswith("other ") and "BLEU 100.00" not in second
    systems = json.loads((tmp_path / "res/scores.json").read_text())["systems"]
    assert [s["name"] for s in systems] == ["copy", "other"]
    assert (tmp_path / "res/scores.csv").is_file() and not (tmp_path / "res/bleu_by_length.png").exists()


def test_attention_of_a_sentence_with_words_and_text(project, monkeypatch):
    monkeypatch.chdir(project.root)
    sentence = lines_of(project.root / "data/train.src")[0]
    result = mtkit("attention", sentence, "--text", "--words", "--out", "att")
    assert result.code == 0, result
    translation, shown, *grid = result.stdout.splitlines()
    assert translation.strip() and shown == "weights: additive attention"
    assert any("┌" in line for line in grid) and grid[-1].startswith("shades:")
    assert sum("│" in line for line in grid) == len(translation.split())  # one grid row per target word
    for name in ("attention_heatmap.png", "attention_lines.png"):
        assert_png(project.root / "att" / name)


def test_translate_and_attention_of_a_transformer_layer_and_head(project, tiny_transformer, monkeypatch):
    monkeypatch.chdir(project.root)
    (project.root / "tf.txt").write_text("\n".join(lines_of(project.root / "data/train.src")[:3]) + "\n")
    run = str(tiny_transformer)
    result = mtkit("translate", "--run", run, "-i", "tf.txt", "-o", "out/tf.txt", "--attention", "out/tf.jsonl",
                   "--layer", "2", "--head", "1")
    assert result.code == 0, result
    records = [json.loads(line) for line in lines_of(project.root / "out/tf.jsonl")]
    assert [r["attention"] for r in records] == ["cross-attention, layer 2 of 2, head 1 of 2"] * 3
    shown = mtkit("attention", "--from-json", "out/tf.jsonl", "--line", "3", "--text", "--out", "out/tfplots")
    assert shown.code == 0, shown
    assert shown.stdout.splitlines()[:2] == [records[2]["translation"],
                                             "weights: cross-attention, layer 2 of 2, head 1 of 2"]
    assert_png(project.root / "out/tfplots/attention_heatmap.png")
    drawn = mtkit("attention", lines_of(project.root / "tf.txt")[0], "--run", run, "--layer", "1", "--out", "out/tf1")
    assert drawn.code == 0, drawn
    assert drawn.stdout.splitlines()[1] == "weights: cross-attention, layer 1 of 2, mean of 2 heads"


# User errors: one line, exit status 2, no traceback.


def test_unknown_config_key_says_did_you_mean(project, monkeypatch):
    monkeypatch.chdir(project.root)
    (project.root / "typo.yaml").write_text(CONFIG.replace("  dropout: 0.0", "  dropuot: 0.0"))
    assert_user_error(mtkit("prepare", "typo.yaml"), "typo.yaml", "`model.dropuot`: unknown key; did you mean `dropout`?")
    assert_user_error(mtkit("train", "c.yaml", "--set", "model.hiden_dim=8"), "did you mean `hidden_dim`?")


def test_bad_set_values(project, monkeypatch):
    monkeypatch.chdir(project.root)
    assert_user_error(mtkit("prepare", "c.yaml", "--set", "model.hidden_dim=abc"),
                      "`model.hidden_dim`: got 'abc'; expected an integer")
    assert_user_error(mtkit("prepare", "c.yaml", "--set", "model.dropout=2"), "must be between 0.0 and 0.99")
    assert_user_error(mtkit("prepare", "c.yaml", "--set", "model.dropout"), "write overrides as key=value")


def test_missing_config_file(project, monkeypatch):
    monkeypatch.chdir(project.root)
    assert_user_error(mtkit("prepare", "nope.yaml"), "nope.yaml: config file not found")
    assert_user_error(mtkit("train", "nope.yaml"), "nope.yaml: config file not found")


def test_translate_and_attention_with_no_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_user_error(mtkit("translate", input="hola\n"), "no run given and runs/latest does not exist")
    assert_user_error(mtkit("attention", "hola"), "no run given and runs/latest does not exist")
    assert_user_error(mtkit("eval"), "no run given and runs/latest does not exist")


def test_no_attention_model_refuses_attention_output(project, monkeypatch):
    monkeypatch.chdir(project.root)
    assert_user_error(mtkit("translate", "--run", "runs/none", "--attention", "a.jsonl", input="kafegi\n"),
                      "this model has no attention", "drop --attention")
    assert not (project.root / "a.jsonl").exists()
    assert_user_error(mtkit("attention", "kafegi feno", "--run", "runs/none"), "this model has no attention")


def test_layer_and_head_errors_name_the_option(project, tiny_transformer, monkeypatch):
    monkeypatch.chdir(project.root)
    tf = str(tiny_transformer)
    assert_user_error(mtkit("translate", "--run", tf, "--attention", "a.jsonl", "--layer", "3", input="kafegi\n"),
                      "--layer 3: this model has 2 layers (1-2)")
    assert_user_error(mtkit("translate", "--run", tf, "--attention", "a.jsonl", "--head", "0", input="kafegi\n"),
                      "--head 0: this model has 2 heads (1-2)")
    assert_user_error(mtkit("translate", "--run", tf, "--layer", "1", input="kafegi\n"), "add --attention FILE")
    assert_user_error(mtkit("translate", "--attention", "a.jsonl", "--layer", "1", input="kafegi\n"),
                      "--layer 1:", "this run is an RNN with one additive attention", "leave them out")
    assert not (project.root / "a.jsonl").exists()
    assert_user_error(mtkit("attention", "kafegi feno", "--run", tf, "--head", "9"), "--head 9: this model has 2 heads")
    assert_user_error(mtkit("attention", "kafegi feno", "--head", "1"), "--head 1:", "RNN")
    assert_user_error(mtkit("attention", "--from-json", "x.jsonl", "--layer", "1"), "--from-json record holds")


def test_translate_output_that_cannot_be_written(project, monkeypatch):
    monkeypatch.chdir(project.root)
    (project.root / "blocker").write_text("a file, not a directory\n")
    assert_user_error(mtkit("translate", "-o", "blocker/out.txt", input="kafegi\n"),
                      "--output blocker/out.txt: cannot write the file")
    assert_user_error(mtkit("translate", "-i", "missing.txt"), "--input missing.txt: no such file")
    assert_user_error(mtkit("translate", "--batch-size", "-1", input="kafegi\n"), "`decode.batch_size`: got -1; must be at least 1")


def test_eval_mismatched_line_counts_names_files_and_counts(tmp_path):
    for name, n in {"s.txt": 3, "r.txt": 3, "h.txt": 2}.items():
        (tmp_path / name).write_text("a b\n" * n)
    run = console(tmp_path, "eval", "--src", "s.txt", "--ref", "r.txt", "--hyp", "h.txt")
    stderr = run.stderr.decode()
    assert run.returncode == 2 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: System 'h.txt': line counts differ (src s.txt: 3 lines, hyp h.txt: 2 lines, ref r.txt: 3 lines); "
        "source, hypothesis and reference files must be line-aligned.")


def test_train_into_an_occupied_run_dir(project, monkeypatch):
    monkeypatch.chdir(project.root)
    before = (project.root / "runs/tiny/best.pt").stat().st_mtime_ns
    assert_user_error(mtkit("train", "c.yaml"), "runs/tiny already holds a run", "--resume", "--overwrite")
    assert (project.root / "runs/tiny/best.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("given, want", [
    ({}, {"GOMP_SPINCOUNT": "3000"}),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ({"GOMP_SPINCOUNT": "0"}, {"GOMP_SPINCOUNT": "0"}),
])
def test_openmp_threads_spin_briefly_unless_the_environment_says(given, want):
    from mtkit.runtime import wait_briefly

    environ = dict(given)
    wait_briefly(environ)
    assert environ == want


def test_importing_the_cli_changes_nothing_and_the_command_sets_the_spin_before_torch_loads():
    code = ("import os, sys; import mtkit.cli; before = os.environ.get('GOMP_SPINCOUNT'); sys.argv = ['mtkit', '--help']\n"
            "try:\n    mtkit.cli.main()\nexcept SystemExit:\n    pass\n"
            "print(before, os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split()[-3:] == ["None", "3000", "False"]


FAULTS = """
import resource
import mtkit.cli
mtkit.cli.tune_process()  # what the mtkit command does first
import torch
def step():  # a training step's pattern: a few large tensors, made, filled, freed together
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = [torch.ones(n) for n in (5_000_000, 12_000_000, 2_000_000, 20_000_000, 1_000_000)]  # 160 MB
    del held
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[step() for _ in range(8)])
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc's settings are glibc's")
def test_mtkit_command_keeps_freed_memory_for_the_next_step():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def page_faults_by_step(env: dict[str, str]) -> list[int]:
        out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, env=env, check=True).stdout
        return [int(n) for n in out.split()]

    kept = page_faults_by_step(env)
    fresh = page_faults_by_step({**env, "MALLOC_MMAP_THRESHOLD_": "131072"})  # the environment's own setting wins
    assert sum(kept[-3:]) < 1_000, kept  # the heap has grown to a step's size: nothing new to fault in
    # 160 MB is 39,000 pages of 4 KB, every step; glibc's own adaptive threshold (up to 32 MB) gives 31,000
    assert min(fresh) > 25_000, fresh
