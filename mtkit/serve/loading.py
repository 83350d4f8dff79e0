"""The runs `mtkit serve` answers about, read once at start: each run's model, test split, cached test
translations and scores, and a results directory's scores. Nothing here is read again per request."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from mtkit.compare import CACHED
from mtkit.data.textio import read_lines
from mtkit.errors import MtkitError
from mtkit.model import describe
from mtkit.results import JSON_FORMAT, load_json
from mtkit.runs import CHECKPOINTS, prepared_dir, resolve_checkpoint
from mtkit.translate import Translation, Translator

log = logging.getLogger(__name__)

PASSAGE_FILES = ("eval/passages/passages_scores.json", "eval/passages_scores.json")  # in a run dir, as the study
# (`mtkit eval --passages --out RUN/eval/passages`) and `mtkit eval --passages` alone write them


@dataclass
class EvalOutputs:
    """A run's cached translations of its test split, as `mtkit eval` wrote them."""

    beam: int
    lines: list[str]


class ScoreFile(NamedTuple):
    """Scores read at start, with where they came from and the command that writes them with intervals."""

    where: str  # e.g. "bible_rnnsearch/eval/scores.json"
    command: str  # e.g. "mtkit eval --run runs/bible_rnnsearch --by-length"
    systems: list[Any]  # SystemScore for BLEU by length; plain dicts for passages (see `read_passages`)


@dataclass
class LoadedRun:
    """One served run: its model and what was read from its directory at start."""

    name: str
    run_dir: Path
    translator: Translator
    test_src: list[str] | None = None  # the run's test split (None: not found or unusable; see split_problem)
    test_ref: list[str] | None = None
    eval_outputs: EvalOutputs | None = None
    scores: ScoreFile | None = None  # from eval/scores.json
    passages: ScoreFile | None = None  # from the passage scores `mtkit eval --passages` wrote
    split_problem: str | None = None  # why the run has no test split to show
    lock: threading.Lock = field(default_factory=threading.Lock)

    def translate(self, sentences: list[str], beam: int, n_best: int = 1) -> list[Translation]:
        """Return the model's translations, entering the model only under this run's lock."""
        with self.lock:
            return self.translator.translate(sentences, beam=beam, n_best=n_best)

    def translate_shown(self, sentence: str, beam: int, n_best: int, layer: int | None = None,
                        head: int | None = None) -> tuple[Translation, str]:
        """Return the translation of `sentence` with the attention of `layer` and `head`, and that attention's label.

        Choosing the attention and translating happen under one hold of the lock, so a request never
        gets the weights another request chose (see `Translator.show_attention`).
        """
        with self.lock:
            label = self.translator.show_attention(layer, head)
            return self.translator.translate([sentence], beam=beam, n_best=n_best)[0], label


def load_runs(run_dirs: Sequence[Path], checkpoint: str = "best", device: str | None = None) -> list[LoadedRun]:
    """Return the runs in `run_dirs`, each with its model, test split, cached eval outputs and scores."""
    if not run_dirs:
        raise MtkitError("no runs to serve; pass --run DIR")
    if checkpoint not in CHECKPOINTS:
        raise MtkitError(f"--checkpoint {checkpoint}: choose one of {list(CHECKPOINTS)} (each run has its own)")
    names = _unique_names([Path(d) for d in run_dirs])
    runs = []
    for name, run_dir in zip(names, run_dirs):
        run_dir = Path(run_dir)
        ckpt = resolve_checkpoint(run_dir, checkpoint)
        translator = Translator.from_checkpoint(ckpt, device)
        src, ref, problem = _test_split(run_dir)
        cached = _eval_outputs(run_dir, ckpt, len(src) if src else 0, translator.cfg.decode.beam)
        shown = _shown_dir(run_dir)
        scores_path = run_dir / "eval" / "scores.json"
        scores = (_read_scores(scores_path, f"{name}/eval/scores.json", f"mtkit eval --run {shown} --by-length")
                  if scores_path.is_file() else None)
        passages = next((_read_scores(run_dir / p, f"{name}/{p}", f"mtkit eval --run {shown} --passages --by-length "
                                      f"--out {shown}/{Path(p).parent}", passages=True)
                         for p in PASSAGE_FILES if (run_dir / p).is_file()), None)
        log.info("%s: %s, %s, %d test sentences, %d scored systems%s", name, ckpt, describe(translator.model),
                 len(src or []), len(scores.systems) if scores else 0, ", passage scores" if passages else "")
        runs.append(LoadedRun(name, run_dir, translator, src, ref, cached, scores, passages, problem))
    return runs


def load_results(results_dir: Path) -> tuple[ScoreFile | None, ScoreFile | None]:
    """Return the BLEU-by-length and passage scores in a results directory (the study's `results/`), either None."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise MtkitError(f"--results {results_dir}: no such directory (give the --out of `mtkit eval --by-length`, "
                         "e.g. results/)")
    shown = _shown_dir(results_dir)
    scores, passages = (results_dir / "scores.json", results_dir / "passages_scores.json")
    found = (_read_scores(scores, f"{shown}/scores.json", f"mtkit eval --run RUN ... --by-length --out {shown}")
             if scores.is_file() else None,
             _read_scores(passages, f"{shown}/passages_scores.json",
                          f"mtkit eval --run RUN ... --passages --by-length --out {shown}", passages=True)
             if passages.is_file() else None)
    if found == (None, None):
        raise MtkitError(f"--results {results_dir}: neither scores.json nor passages_scores.json is there; write them "
                         "with `mtkit eval --run RUN ... --by-length [--passages] --out DIR`")
    return found


def _read_scores(path: Path, where: str, command: str, passages: bool = False) -> ScoreFile:
    return ScoreFile(where, command, read_passages(path) if passages else load_json(path))


def read_passages(path: Path) -> list[dict[str, Any]]:
    """Return each system of a passage scores file as {"name", "n_boot", "by_k", "paired"} (paired: None if absent).

    Read as plain JSON rather than through `results.load_json`, so that fields a newer `mtkit eval`
    adds (such as `paired`: each k against the same verses alone, with its interval) are kept when
    present and their absence is no error.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != JSON_FORMAT:
            raise ValueError(f"no \"format\": \"{JSON_FORMAT}\"")
        return [{"name": str(s["name"]), "n_boot": int(s.get("n_boot", 0)),
                 "by_k": [{key: b.get(key) for key in ("label", "count", "bleu", "ci_low", "ci_high", "chrf", "ratio")}
                          for b in s.get("by_k", [])],
                 "paired": [{key: p.get(key) for key in ("k", "ratio", "ci_low", "ci_high", "mean_src_words")}
                            for p in s["paired"]] if isinstance(s.get("paired"), list) and s["paired"] else None}
                for s in data["systems"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise MtkitError(f"{path}: not a passage scores file of `mtkit eval --passages` ({err})") from None


def _shown_dir(path: Path) -> str:
    """Return a directory as the user gave it when relative, else only its name (no absolute path leaves the server)."""
    return str(path) if not Path(path).is_absolute() else f".../{Path(path).name}"


def _unique_names(run_dirs: list[Path]) -> list[str]:
    """Return each run's directory name (as `mtkit eval` labels it), with -2, -3 … where names repeat."""
    names, seen = [], {}
    for d in run_dirs:
        base = d.resolve().name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _test_split(run_dir: Path) -> tuple[list[str] | None, list[str] | None, str | None]:
    """Return the run's test sources and references, or None, None and why there are none."""
    try:
        prepared = prepared_dir(run_dir)
    except MtkitError as err:
        log.warning("%s", err)
        return None, None, f"{run_dir.name}: {err}"
    src, ref = prepared / "test.src", prepared / "test.tgt"
    if not (src.is_file() and ref.is_file()):
        log.warning("%s: no test split in %s; no test sentences to pick from", run_dir, prepared)
        return None, None, f"{run_dir.name}: its prepared data has no test split"
    src_lines, ref_lines = read_lines(src), read_lines(ref)
    if len(src_lines) != len(ref_lines):
        problem = (f"{run_dir.name}: its test split is unusable: test.src has {len(src_lines):,} lines but test.tgt "
                   f"{len(ref_lines):,}; prepare the data again (mtkit prepare CONFIG)")
        log.warning("%s", problem)
        return None, None, problem
    return src_lines, ref_lines, None


def _eval_outputs(run_dir: Path, ckpt: Path, count: int, beam: int) -> EvalOutputs | None:
    """Return the newest usable test translations cached by `mtkit eval` (the run's own beam first), or None."""
    found = []
    for path in (run_dir / "eval").glob("test.*.hyp"):
        match = CACHED.fullmatch(path.name)  # the test translations `mtkit eval` cached
        if match and match["split"] == "test" and match["ckpt"] == ckpt.stem and path.stat().st_mtime >= ckpt.stat().st_mtime:
            found.append((int(match["beam"]) == beam, path.stat().st_mtime, int(match["beam"]), path))
    for _, _, cached_beam, path in sorted(found, reverse=True):
        lines = read_lines(path)
        if count and len(lines) == count:
            return EvalOutputs(cached_beam, lines)
    return None
