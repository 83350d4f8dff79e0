"""Runs in, results out: translate each run's test split (cached), score it with `evaluate`, write and plot.

This is what `mtkit eval` runs. It sits above `translate` (to run models), `evaluate` (to turn
strings into scores) and `plots` (to draw them), so those stay independent of each other.
Settings not given come from the first run's config (`length_edges` and `eval`; the defaults for output files).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import NamedTuple, Sequence

from mtkit.config import Config, load_config, update
from mtkit.data.textio import read_lines
from mtkit.errors import MtkitError
from mtkit.evaluate import PositionLoss, SystemScore, evaluate_passages, evaluate_system, position_losses
from mtkit.results import write_csv, write_json
from mtkit.forced import model_scorer, passage_verse_losses
from mtkit.runs import LATEST, prepared_dir, read_latest, resolve_checkpoint
from mtkit.translate import Translator

log = logging.getLogger(__name__)

# The name of a cached translation in RUN/eval/, as `_split_outputs` writes it (mtkit serve reads them too).
CACHED = re.compile(r"(?P<split>[a-z]+)\.(?P<ckpt>[^.]+)\.beam(?P<beam>\d+)\.lp(?P<lp>.+)\.hyp")


def run_test_outputs(run_dir: Path, checkpoint: str = "best", beam: int | None = None,
                     length_penalty: float | None = None) -> tuple[list[str], list[str], list[str]]:
    """Return (sources, hypotheses, references) of a run's test split, translating it when needed.

    Beam and length penalty left None come from the run's `decode` config. Translations are
    cached in `run_dir/eval/` and redone when the checkpoint is newer.
    """
    return _split_outputs(Path(run_dir), "test", checkpoint, beam, length_penalty)


class PassageOutputs(NamedTuple):
    """A run's passage inputs, its translations, the references and how many verses each input joins."""

    srcs: list[str]
    hyps: list[str]
    refs: list[str]
    ks: list[int]
    windows: list[int]  # the window each input was cut from


def run_passage_outputs(run_dir: Path, checkpoint: str = "best", beam: int | None = None,
                        length_penalty: float | None = None) -> PassageOutputs:
    """Return a run's passage set (`data.passage_windows`) with its translations, cached like the test split's."""
    rows = _passage_rows(run_dir)
    srcs, hyps, refs = _split_outputs(Path(run_dir), "passages", checkpoint, beam, length_penalty)
    return PassageOutputs(srcs, hyps, refs, [int(r[2]) for r in rows], [int(r[1]) for r in rows])


def _passage_rows(run_dir: Path) -> list[list[str]]:
    """Return the rows of a run's passages.tsv (columns: ref, window, k, group), one per passage input."""
    prepared = prepared_dir(run_dir)
    table = prepared / "passages.tsv"
    if not table.is_file():
        raise MtkitError(f"{run_dir}: its prepared data {prepared} has no passage set; set data.passage_windows "
                         "(e.g. 150) in the run's config, prepare and train again")
    return [row.split("\t") for row in read_lines(table)[1:]]


def _split_outputs(run_dir: Path, split: str, checkpoint: str, beam: int | None,
                   length_penalty: float | None) -> tuple[list[str], list[str], list[str]]:
    prepared = prepared_dir(run_dir)
    src_path, ref_path = prepared / f"{split}.src", prepared / f"{split}.tgt"
    if not src_path.is_file():
        raise MtkitError(f"{run_dir}: its prepared data {prepared} has no {split} split; run `mtkit prepare` on its config")
    srcs, refs = read_lines(src_path), read_lines(ref_path)
    if not srcs:
        raise MtkitError(f"{src_path}: the run's {split} split is empty; set data.test_size or data.test_src/test_tgt")
    ckpt = resolve_checkpoint(run_dir, checkpoint)
    translator = None
    if beam is None or length_penalty is None:
        translator = Translator.from_checkpoint(ckpt)
        settings = translator.settings(beam=beam, length_penalty=length_penalty)
        beam, length_penalty = settings.beam, settings.length_penalty
    cache = run_dir / "eval" / f"{split}.{ckpt.stem}.beam{beam}.lp{length_penalty:g}.hyp"  # read back by CACHED
    if cache.is_file() and cache.stat().st_mtime >= ckpt.stat().st_mtime:
        hyps = read_lines(cache)
        if len(hyps) == len(srcs):
            log.info("%s: using cached %s translations %s", run_dir, split, cache)
            return srcs, hyps, refs
    translator = translator or Translator.from_checkpoint(ckpt)
    log.info("%s: translating %d %s sentences (beam %d)", run_dir, len(srcs), split, beam)
    hyps = [t.text for t in translator.translate(srcs, beam=beam, length_penalty=length_penalty)]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    return srcs, hyps, refs


class EvalSettings(NamedTuple):
    """How systems are scored: the length buckets' edges, the side they count, and the bootstrap."""

    edges: tuple[int, ...]
    length_of: str
    bootstrap: int
    bootstrap_seed: int


def eval_settings(runs: Sequence[Path] = (), edges: Sequence[int] | None = None, length_of: str | None = None,
                  bootstrap: int | None = None, seed: int | None = None) -> EvalSettings:
    """Return the first run's settings (the defaults without runs) with the given ones changed, checked by key."""
    config = Path(runs[0]) / "config.yaml" if runs else None
    base = load_config(config) if config is not None and config.is_file() else Config()
    changes = {"length_edges": list(edges) if edges is not None else None, "eval.length_of": length_of,
               "eval.bootstrap": bootstrap, "eval.bootstrap_seed": seed}
    cfg = update(base, changes)
    return EvalSettings(cfg.length_edges, cfg.eval.length_of, cfg.eval.bootstrap, cfg.eval.bootstrap_seed)


def compare(
    runs: Sequence[Path] = (),
    src: Path | None = None,
    ref: Path | None = None,
    hyps: Sequence[Path] = (),
    names: Sequence[str] = (),
    checkpoint: str = "best",
    beam: int | None = None,
    edges: Sequence[int] | None = None,
    length_of: str | None = None,
    bootstrap: int | None = None,
    seed: int | None = None,
) -> list[SystemScore]:
    """Return the scores of several systems: runs (on their test split) and/or output files.

    With neither runs nor files, the latest run is evaluated. Edges, length_of, bootstrap and seed
    left None come from the first run's config (see `eval_settings`).
    """
    if hyps and (src is None or ref is None):
        raise MtkitError("--hyp needs --src and --ref: the source (for its lengths) and the reference translations")
    if (src is not None or ref is not None) and not hyps:
        raise MtkitError("--src/--ref given without --hyp: name at least one system output file")
    if not runs and not hyps:
        runs = [read_latest()]
        log.info("evaluating the latest run, %s", runs[0])
    if names and len(names) != len(runs) + len(hyps):
        raise MtkitError(f"--name given {len(names)} times for {len(runs) + len(hyps)} systems; give one per run/--hyp")
    s = eval_settings(runs, edges, length_of, bootstrap, seed)
    labels = list(names) or [Path(r).resolve().name for r in runs] + [Path(h).name for h in hyps]
    systems = []
    for label, run in zip(labels, runs):
        srcs, outputs, refs = run_test_outputs(Path(run), checkpoint, beam)
        systems.append(evaluate_system(label, srcs, outputs, refs, s.edges, s.length_of, s.bootstrap, s.bootstrap_seed))
    if hyps:
        srcs, refs = read_lines(src, name=f"--src {src}"), read_lines(ref, name=f"--ref {ref}")
        for label, path in zip(labels[len(runs):], hyps):
            outputs = read_lines(path, name=f"--hyp {path}")
            systems.append(evaluate_system(label, srcs, outputs, refs, s.edges, s.length_of, s.bootstrap,
                                           s.bootstrap_seed, paths={"src": src, "hyp": path, "ref": ref}))
    return systems


def compare_passages(runs: Sequence[Path] = (), names: Sequence[str] = (), checkpoint: str = "best",
                     beam: int | None = None, edges: Sequence[int] | None = None, length_of: str | None = None,
                     bootstrap: int | None = None, seed: int | None = None) -> list[SystemScore]:
    """Return each run's scores on its passage set: by input length, by verses joined (`SystemScore.by_k`) and
    each k against k = 1 with a window-paired interval (`SystemScore.paired`)."""
    runs = list(runs) or [read_latest()]
    if names and len(names) != len(runs):
        raise MtkitError(f"--name given {len(names)} times for {len(runs)} runs; give one per run")
    s = eval_settings(runs, edges, length_of, bootstrap, seed)
    labels = list(names) or [Path(r).resolve().name for r in runs]
    systems = []
    for label, run in zip(labels, runs):
        out = run_passage_outputs(Path(run), checkpoint, beam)
        systems.append(evaluate_passages(label, out.srcs, out.hyps, out.refs, out.ks, out.windows, s.edges,
                                         s.length_of, s.bootstrap, s.bootstrap_seed))
    return systems


def compare_passage_losses(runs: Sequence[Path] = (), names: Sequence[str] = (), checkpoint: str = "best",
                           bootstrap: int | None = None, seed: int | None = None) -> dict[str, list[PositionLoss]]:
    """Return each run's teacher-forced loss increase per k and position in a passage over the same verses alone.

    No search is involved: each passage input's reference is fed to the model and the NLL of each of its verses'
    pieces read off (see `mtkit.forced`). Intervals resample windows (`eval.bootstrap` resamples).
    """
    runs = list(runs) or [read_latest()]
    if names and len(names) != len(runs):
        raise MtkitError(f"--name given {len(names)} times for {len(runs)} runs; give one per run")
    s = eval_settings(runs, bootstrap=bootstrap, seed=seed)
    labels = list(names) or [Path(r).resolve().name for r in runs]
    losses = {}
    for label, run in zip(labels, runs):
        rows, prepared = _passage_rows(run), prepared_dir(run)
        translator = Translator.from_checkpoint(resolve_checkpoint(run, checkpoint))
        scorer = model_scorer(translator.model, translator.cfg.train.batch_tokens, translator.device)
        log.info("%s: teacher-forced losses of %d passage inputs", run, len(rows))
        records = passage_verse_losses(translator.tokenizer, scorer, read_lines(prepared / "passages.src"),
                                       read_lines(prepared / "passages.tgt"), [int(r[2]) for r in rows],
                                       [int(r[1]) for r in rows], [int(r[3]) for r in rows])
        losses[label] = position_losses(records, s.bootstrap, s.bootstrap_seed)
    return losses


def default_out_dir(runs: Sequence[Path], hyps: Sequence[Path] = ()) -> Path:
    """Return where results go: the first run's eval/ (the latest run's when none), else results/eval."""
    if runs:
        return Path(runs[0]) / "eval"
    if not hyps and LATEST.is_file():
        return read_latest() / "eval"
    return Path("results") / "eval"


def write_results(systems: Sequence[SystemScore], out_dir: Path, plot: bool = True, prefix: str = "") -> list[Path]:
    """Write PREFIXscores.json, PREFIXscores.csv and (with `plot`) PREFIXbleu_by_length.png into `out_dir`.

    Returns the paths. The study writes its verse scores without a prefix and its passage scores
    with "passages_".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_json(systems, out_dir / f"{prefix}scores.json"), write_csv(systems, out_dir / f"{prefix}scores.csv")]
    if plot:
        from mtkit.plots import plot_bleu_by_length  # matplotlib only when a figure is wanted

        side = "source" if systems[0].length_of == "src" else "reference"
        what = "input" if systems[0].by_k else "sentence"
        paths.append(plot_bleu_by_length(list(systems), out_dir / f"{prefix}bleu_by_length.png",
                                         title=f"BLEU by {side} {what} length"
                                               + (" (passages of consecutive verses)" if systems[0].by_k else "")))
    return paths
