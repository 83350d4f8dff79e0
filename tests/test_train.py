"""Training behaviour: learning, budgets, early stopping, checkpoints, resume, NaN, overwrite guard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtkit.checkpoint import load_checkpoint
from mtkit.config import TrainConfig, load_config
from mtkit.data.synthetic import make_pairs, write_pairs
from mtkit.errors import MtkitError
from mtkit.runs import LATEST
from mtkit.train import make_optimizer, train

TINY = [
    "tokenizer.vocab_size=40", "model.emb_dim=16", "model.hidden_dim=24", "model.dec_hidden_dim=32",
    "model.out_dim=24", "model.attention.dim=24", "train.batch_tokens=400", "train.log_every=1",
    "train.valid_bleu_sentences=20", "train.attention_samples=0", "decode.beam=2",
    "data.dev_size=30", "data.test_size=30", "train.lr=0.005",
]
# The same task for a Transformer: the RNN keys above do not apply to it.
TRANSFORMER = ["model.arch=transformer", "model.transformer.d_model=32", "model.transformer.heads=4",
               "model.transformer.ff_dim=64", "model.transformer.enc_layers=2", "model.transformer.dec_layers=2"]
ARCHS = {"rnn": [], "transformer": TRANSFORMER}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with a synthetic corpus; runs/ and the latest pointer live here."""
    monkeypatch.chdir(tmp_path)
    write_pairs(make_pairs(600, "reverse", 2, 6, vocab_size=12, seed=0), tmp_path / "c.src", tmp_path / "c.tgt")
    (tmp_path / "c.yaml").write_text(
        "run_dir: runs/tiny\nlength_edges: [3, 6]\ndata:\n  source: text\n  src_file: c.src\n  tgt_file: c.tgt\n",
        encoding="utf-8")
    return tmp_path


def config(*overrides: str):
    return load_config(Path("c.yaml"), [*TINY, *overrides])


def records(run: str = "runs/tiny", kind: str | None = None) -> list[dict]:
    lines = Path(run, "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if kind is None or r["kind"] == kind]


def cli(*args: str) -> int:
    """Run the `mtkit` console entry point in this process; return its exit status."""
    from mtkit.cli import main

    argv, sys.argv = sys.argv, ["mtkit", *args]
    try:
        main()
        return 0
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = argv


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_learns_through_the_cli_and_writes_run_files(workdir, arch):
    sets = [a for o in [*TINY, *ARCHS[arch], "train.epochs=12", "train.valid_every=0"] for a in ("--set", o)]
    assert cli("train", "c.yaml", *sets) == 0
    state = load_checkpoint(workdir / "runs/tiny/last.pt").state
    valid = records(kind="valid")
    assert valid[-1]["dev_loss"] < 0.5 * valid[0]["dev_loss"]
    assert max(r["dev_bleu"] for r in valid) > 25  # the untrained model scores about 0
    for name in ("best.pt", "last.pt", "config.yaml", "environment.json", "train.log", "data.json"):
        assert (workdir / "runs/tiny" / name).is_file(), name
    env = json.loads((workdir / "runs/tiny/environment.json").read_text())
    assert env["seed"] == 1234 and env["torch"] == torch.__version__
    assert Path(LATEST.read_text().strip()) == (workdir / "runs/tiny").resolve()
    assert state.finished and "epochs" in state.stop_reason


def test_best_is_the_best_validation_and_last_the_final_state(workdir):
    state = train(config("train.epochs=3", "train.valid_every=5"))
    valid = records(kind="valid")
    best_record = min(valid, key=lambda r: r["dev_loss"])
    best, last = load_checkpoint(workdir / "runs/tiny/best.pt"), load_checkpoint(workdir / "runs/tiny/last.pt")
    assert best.state.step == best_record["step"] == state.best_step
    assert last.state.step == state.step == valid[-1]["step"]


def test_step_budget_and_early_stopping(workdir):
    assert train(config("train.max_steps=7", "train.valid_every=0")).step == 7
    state = train(config("train.epochs=50", "train.valid_every=3", "train.patience=2", "train.lr=0.0"), overwrite=True)
    assert "early stopping" in state.stop_reason
    assert len(records(kind="valid")) == 3  # the first sets the best, two more without improvement stop it



def test_cpu_budget_counts_this_processs_cpu_time_and_survives_a_resume(workdir):
    state = train(config("train.epochs=1000", "train.valid_every=0", "train.max_cpu_minutes=0.02"))
    assert state.stop_reason == "reached train.max_cpu_minutes = 0.02"
    assert 1.2 <= state.cpu_seconds < 1.2 + 5  # stops at the first step after 1.2 CPU-seconds
    saved = load_checkpoint(workdir / "runs/tiny/last.pt").state
    assert saved.cpu_seconds == state.cpu_seconds and saved.step == state.step
    # Resumed with a larger budget it goes on from the CPU time already spent, not from zero.
    more = train(config("train.epochs=1000", "train.valid_every=0", "train.max_cpu_minutes=0.04"), resume=True)
    assert more.step > state.step and 2.4 <= more.cpu_seconds < 2.4 + 5
    spent_here = more.cpu_seconds - state.cpu_seconds
    assert spent_here < 2.4  # had the resume started the clock from zero, it would have spent 2.4 s here
@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_losses(workdir, arch):
    train(config("train.max_steps=12", "train.valid_every=0", "model.dropout=0.3", *ARCHS[arch]))
    first = [r["loss"] for r in records(kind="train")]
    train(config("train.max_steps=12", "train.valid_every=0", "model.dropout=0.3", *ARCHS[arch]), overwrite=True)
    assert [r["loss"] for r in records(kind="train")] == first


def test_train_seed_changes_the_weights_but_not_the_data(workdir):
    train(config("train.max_steps=6", "train.valid_every=0"))
    first = [r["loss"] for r in records(kind="train")]
    data = json.loads(Path("runs/tiny/data.json").read_text())["prepared"]
    train(config("train.max_steps=6", "train.valid_every=0", "train.seed=1234"), overwrite=True)  # = the top-level seed
    assert [r["loss"] for r in records(kind="train")] == first
    train(config("train.max_steps=6", "train.valid_every=0", "train.seed=7"), overwrite=True)
    assert [r["loss"] for r in records(kind="train")] != first
    assert json.loads(Path("runs/tiny/data.json").read_text())["prepared"] == data  # the same prepared split


def test_overwrite_guard_and_resume_without_checkpoint(workdir):
    train(config("train.max_steps=2"))
    with pytest.raises(MtkitError, match="already holds a run; pass --resume"):
        train(config("train.max_steps=2"))
    with pytest.raises(MtkitError, match="does not exist; start the run without --resume"):
        train(config("run_dir=runs/other"), resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(workdir, monkeypatch):
    import mtkit.train as training

    train(config("train.max_steps=4", "train.valid_every=2"))
    good = (workdir / "runs/tiny/last.pt").read_bytes()
    real_step = training.train_step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        return (float("nan"), 1) if calls["n"] == 3 else real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", poisoned)
    with pytest.raises(MtkitError, match="step 7: the training loss is nan.*last good checkpoint"):
        train(config("train.max_steps=20", "train.valid_every=2"), resume=True)
    assert load_checkpoint(workdir / "runs/tiny/last.pt").state.step == 6  # validated before the NaN
    assert (workdir / "runs/tiny/last.pt").read_bytes() != good


def test_nan_through_the_fused_kernels_stops_training_with_its_one_line_error(workdir, monkeypatch, compiled):
    """A NaN weight reaches the loss through the C loops (encoder GRU, attention, loss rows) as NaN, not as a
    number -ffast-math could have made of it, and the run stops with its one-line error."""
    import mtkit.kernels as kernels
    import mtkit.train as training

    real_step = training.train_step
    calls = {"n": 0}

    def poisoned(model, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                model.encoder.embed.weight[5:].fill_(float("nan"))  # the source words; pad, unk, bos, eos stay
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(training, "train_step", poisoned)
    assert kernels.mode() == "fused"
    with pytest.raises(MtkitError) as stopped:
        train(config("train.max_steps=20", "model.dropout=0.2", "train.label_smoothing=0.1"))
    assert "\n" not in str(stopped.value)
    assert str(stopped.value).startswith("step 3: the training loss is nan; stopped, and the last good checkpoint")


def _train_process(workdir: Path, run: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "mtkit.cli", "train", "c.yaml", *[a for o in TINY for a in ("--set", o)],
            "--set", f"run_dir={run}", "--set", "model.dropout=0.2", "--set", "train.max_steps=60",
            "--set", "train.valid_every=10", *extra]
    return subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(workdir: Path, run: str, proc: subprocess.Popen, step: int) -> None:
    path = workdir / run / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and any(json.loads(line)["step"] >= step for line in path.read_text().splitlines()):
            return
        time.sleep(0.01)
    raise AssertionError(f"training never reached step {step}: {proc.communicate()[1][-2000:]}")


@pytest.mark.parametrize("arch", ARCHS)
def test_killed_run_resumes_to_the_same_losses(workdir, arch):
    arch_sets = [a for o in ARCHS[arch] for a in ("--set", o)]
    reference = _train_process(workdir, "runs/whole", *arch_sets)
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-2000:]
    expected = {r["step"]: r["loss"] for r in records("runs/whole", "train")}
    expected_valid = {r["step"]: r["dev_loss"] for r in records("runs/whole", "valid")}

    killed = _train_process(workdir, "runs/killed", *arch_sets)
    _wait_for_step(workdir, "runs/killed", killed, 25)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert load_checkpoint(workdir / "runs/killed/last.pt").state.step < 60
    resumed = _train_process(workdir, "runs/killed", "--resume", *arch_sets)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    got = {r["step"]: r["loss"] for r in records("runs/killed", "train")}
    assert sorted(got) == sorted(expected)
    assert all(abs(got[s] - expected[s]) < 1e-4 for s in expected), (got, expected)
    got_valid = {r["step"]: r["dev_loss"] for r in records("runs/killed", "valid")}
    assert sorted(got_valid) == sorted(expected_valid)
    assert all(abs(got_valid[s] - expected_valid[s]) < 1e-4 for s in expected_valid)


def test_sigterm_saves_last_and_exits_cleanly(workdir):
    proc = _train_process(workdir, "runs/term")
    _wait_for_step(workdir, "runs/term", proc, 15)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "SIGTERM received" in err and "Traceback" not in err
    step = load_checkpoint(workdir / "runs/term/last.pt").state.step
    assert step >= 15 and f"at step {step}" in err
    resumed = _train_process(workdir, "runs/term", "--resume")
    assert resumed.wait(timeout=300) == 0
    assert load_checkpoint(workdir / "runs/term/last.pt").state.step == 60


def test_two_processes_stay_in_sync_and_learn(workdir):
    state = train(config("train.max_steps=30", "train.valid_every=10", "model.dropout=0.2"), nproc=2)
    assert state.step == 30
    sync = records(kind="sync")
    assert sync and sync[0]["processes"] == 2 and sync[0]["max_param_diff"] == 0.0
    losses = [r["loss"] for r in records(kind="train")]
    assert sum(losses[-5:]) < sum(losses[:5])
    valid = records(kind="valid")
    assert valid[-1]["dev_loss"] < valid[0]["dev_loss"]
    assert json.loads((workdir / "runs/tiny/environment.json").read_text())["processes"] == 2


def test_max_len_keeps_only_pairs_short_on_both_sides():
    from mtkit.prepare import EncodedSplit, shorter_pairs

    split = EncodedSplit(["a b", "a b c d", "a", "a b c"], ["x", "x y", "x y z w", "x y z"],
                         [[4, 5], [4, 5, 6, 7], [4], [4, 5, 6]], [[8], [8, 9], [8, 9, 10, 11], [8, 9, 10]])
    kept = shorter_pairs(split, 3)
    assert kept.src_text == ["a b", "a b c"] and kept.tgt_ids == [[8], [8, 9, 10]]
    with pytest.raises(MtkitError, match="train.max_len"):
        shorter_pairs(split, 0)
    assert load_config(None, ["train.max_len=30"]).train.max_len == 30
    with pytest.raises(MtkitError, match="train.max_len"):
        load_config(None, ["train.max_len=0"])


def test_attention_samples_are_titled_with_the_attention_they_draw(workdir, monkeypatch):
    from mtkit import plots

    titles = []
    monkeypatch.setattr(plots, "plot_attention_heatmap", lambda *args, title=None, **kwargs: titles.append(title))
    train(config("train.attention_samples=1", "train.max_steps=2", "train.valid_every=2", "model.arch=transformer",
                 "model.transformer.d_model=16", "model.transformer.heads=2", "model.transformer.ff_dim=32",
                 "model.transformer.enc_layers=1", "model.transformer.dec_layers=2"))
    assert titles and all(t.endswith("\ncross-attention, mean of 2 layers, mean of 2 heads") for t in titles)


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_runs_fused_and_takes_the_same_steps_as_torchs_default(kind):
    """make_optimizer's fused Adam (one kernel over every element) moves the weights as the op-by-op default does."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    twin.load_state_dict(model.state_dict())
    cfg = TrainConfig(optimizer=kind, lr=0.01, weight_decay=0.01)
    ours = make_optimizer(model, cfg)
    assert ours.defaults["fused"]
    default = (torch.optim.Adam if kind == "adam" else torch.optim.AdamW)(twin.parameters(), lr=0.01, weight_decay=0.01)
    x, y = torch.randn(32, 6), torch.randn(32, 3)
    start = model[0].weight.detach().clone()
    for _ in range(20):
        for net, opt in ((model, ours), (twin, default)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert (model[0].weight - start).abs().max() > 0.05  # the weights did move
