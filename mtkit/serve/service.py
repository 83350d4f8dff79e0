"""What `mtkit serve` does, without HTTP: loaded runs in, plain dicts out.

`Service` holds the runs given at start (their models, test splits and evaluation scores, all
read once, when it is made) and answers four questions: which runs, translate this (with
pieces, words and weights, labelled with which attention they are: a Transformer's cross-attention
of a chosen layer and head, or the mean), BLEU by length, and test sentences of one length bucket. A request
names a run only by the name it got at start, so nothing a request says reaches the filesystem.

Each model has its own lock: the web server answers requests on many threads, and a model is
entered by one of them at a time (different models translate in parallel).

A mistake in a request raises `RequestError`, which names the field at fault; `app.py` turns it
into a 4xx JSON response.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mtkit.alignment import AttentionRecord, to_words
from mtkit.compare import CACHED
from mtkit.data.textio import read_lines
from mtkit.errors import MtkitError
from mtkit.evaluate import SystemScore, bucket_bounds, load_json
from mtkit.model import describe
from mtkit.runs import CHECKPOINTS, prepared_dir, resolve_checkpoint
from mtkit.translate import Translation, Translator

log = logging.getLogger(__name__)

MAX_BEAM = 20  # the config has no upper bound; a server must not spend minutes on one request
MAX_TEXT_CHARS = 100_000  # about 15,000 words: enough to show truncation, small enough to tokenize at once
MAX_EXAMPLES = 20  # test sentences per examples request
DIGITS = 5  # weights are rounded like `mtkit translate --attention` writes them



class RequestError(MtkitError):
    """A request the service cannot answer: names the field at fault and the HTTP status to answer with."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.field, self.status = field, status


@dataclass
class EvalOutputs:
    """A run's cached translations of its test split, as `mtkit eval` wrote them."""

    beam: int
    lines: list[str]


@dataclass
class LoadedRun:
    """One served run: its model and what was read from its directory at start."""

    name: str
    run_dir: Path
    translator: Translator
    test_src: list[str] | None = None  # the run's test split (None: not found)
    test_ref: list[str] | None = None
    eval_outputs: EvalOutputs | None = None
    scores: list[SystemScore] = field(default_factory=list)  # from eval/scores.json
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
        src, ref = _test_split(run_dir)
        cached = _eval_outputs(run_dir, ckpt, len(src) if src else 0, translator.cfg.decode.beam)
        scores_path = run_dir / "eval" / "scores.json"
        scores = load_json(scores_path) if scores_path.is_file() else []
        log.info("%s: %s, %s, %d test sentences, %d scored systems", name, ckpt, describe(translator.model),
                 len(src or []), len(scores))
        runs.append(LoadedRun(name, run_dir, translator, src, ref, cached, scores))
    return runs


def _unique_names(run_dirs: list[Path]) -> list[str]:
    """Return each run's directory name (as `mtkit eval` labels it), with -2, -3 … where names repeat."""
    names, seen = [], {}
    for d in run_dirs:
        base = d.resolve().name
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _test_split(run_dir: Path) -> tuple[list[str] | None, list[str] | None]:
    try:
        prepared = prepared_dir(run_dir)
    except MtkitError as err:
        log.warning("%s", err)
        return None, None
    src, ref = prepared / "test.src", prepared / "test.tgt"
    if not (src.is_file() and ref.is_file()):
        log.warning("%s: no test split in %s; no test sentences to pick from", run_dir, prepared)
        return None, None
    return read_lines(src), read_lines(ref)


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


class Service:
    """The served runs, fixed at start, and the questions the web page asks of them."""

    def __init__(self, runs: list[LoadedRun]) -> None:
        if not runs:
            raise MtkitError("no runs to serve; pass --run DIR")
        self._runs = {run.name: run for run in runs}
        base = next((r for r in runs if r.test_src), None)
        self._base = base  # the run whose test split the examples come from
        self._edges, self._length_of = self._bucketing(runs)
        self._scored = {system.name for run in runs for system in run.scores}  # `mtkit eval` labels runs by name

    @classmethod
    def from_run_dirs(cls, run_dirs: Sequence[Path], checkpoint: str = "best",
                      device: str | None = None) -> "Service":
        """Return a Service over the runs in `run_dirs` (see `load_runs`)."""
        return cls(load_runs(run_dirs, checkpoint, device))

    # -- which runs ---------------------------------------------------------------------------------------------

    def runs(self) -> dict[str, Any]:
        """Return the served runs: names, model kinds, decoding defaults, and the request limits."""
        return {
            "runs": [self._describe(run) for run in self._runs.values()],
            "limits": {"max_beam": MAX_BEAM, "max_text_chars": MAX_TEXT_CHARS, "max_examples": MAX_EXAMPLES},
            "buckets": [{"label": label, "count": len(self._bucket_lines(label)) if self._base else 0}
                        for label, _, _ in bucket_bounds(self._edges)],
            "length_of": self._length_of, "test_split_of": self._base.name if self._base else None,
        }

    def _describe(self, run: LoadedRun) -> dict[str, Any]:
        """Return what the page shows of a run: an RNN's attention, decoder and cell; a Transformer's layers, heads."""
        cfg = run.translator.cfg
        shape = run.translator.attention_shape  # (layers, heads) of a Transformer's cross-attention; None: an RNN
        rnn = shape is None
        return {
            "name": run.name, "path": str(run.run_dir.resolve()), "arch": cfg.model.arch,
            "description": describe(run.translator.model), "attention": run.translator.has_attention,
            "attention_kind": cfg.model.attention.kind if rnn else "multi-head",
            "decoder": cfg.model.decoder if rnn else "transformer", "cell": cfg.model.cell if rnn else None,
            "layers": None if rnn else shape[0], "heads": None if rnn else shape[1],
            "parameters": sum(p.numel() for p in run.translator.model.parameters()),
            "beam": cfg.decode.beam, "max_src_len": cfg.decode.max_src_len,
            "test_sentences": len(run.test_src or []), "scored": run.name in self._scored,
        }

    # -- translate ----------------------------------------------------------------------------------------------

    def translate(self, text: Any, runs: Sequence[str] | None = None, beam: Any = None,
                  n_best: Any = 1, layer: Any = None, head: Any = None) -> dict[str, Any]:
        """Return every chosen run's translation of `text`: n-best hypotheses with pieces, words and weights.

        `runs` None means all runs; `beam` None means each run's own `decode.beam`. `layer` and
        `head` (1-based; None: the mean) choose a Transformer's cross-attention, and apply to
        Transformer runs only; each result's `attention_label` says which weights it holds. The text is
        one sentence (line breaks count as spaces); a source longer than the run's
        `decode.max_src_len` pieces is truncated, as `mtkit translate` does, and the result says so.
        Everything is checked before any model runs.
        """
        sentence = self._check_text(text)
        chosen = self._check_runs(runs)
        _check_int("n_best", n_best)
        for name, value in (("layer", layer), ("head", head)):
            if value is not None:
                _check_int(name, value)
        if beam is not None:
            _check_int("beam", beam, low=None)  # the lower bound is the run config's own (below)
            if beam > MAX_BEAM:
                raise RequestError("beam", f"beam: got {beam}; this server allows at most {MAX_BEAM} "
                                           "(each step scores beam × vocabulary hypotheses)")
        plans = []
        for run in chosen:
            try:
                settings = run.translator.settings(beam=beam)  # the run's own check: `decode.beam`: got 0; ...
            except MtkitError as err:
                raise RequestError("beam", f"beam: {err}") from None
            if not 1 <= n_best <= settings.beam:
                raise RequestError("n_best", f"n_best: got {n_best}; give between 1 and the beam size "
                                             f"({settings.beam} for run {run.name})")
            _check_choice(run, layer, head)
            plans.append((run, settings.beam))
        results = [self._translate_one(run, sentence, run_beam, n_best, layer, head) for run, run_beam in plans]
        return {"source": sentence, "n_best": n_best, "results": results}

    def _check_text(self, text: Any) -> str:
        if not isinstance(text, str):
            raise RequestError("text", f"text: give the sentence as a string (got {type(text).__name__})")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestError("text", f"text: {len(text):,} characters; this server takes at most "
                                       f"{MAX_TEXT_CHARS:,} (longer sources are truncated anyway)", status=413)
        sentence = " ".join(text.split())
        if not sentence:
            raise RequestError("text", "text: empty (or only whitespace); give a sentence to translate")
        return sentence

    def _check_runs(self, runs: Sequence[str] | None) -> list[LoadedRun]:
        if runs is None:
            return list(self._runs.values())
        if isinstance(runs, str) or not all(isinstance(r, str) for r in runs):
            raise RequestError("runs", f"runs: give a list of run names, e.g. {list(self._runs)[:2]}")
        if not runs:
            raise RequestError("runs", f"runs: empty; leave it out for all runs or choose from {list(self._runs)}")
        unknown = [r for r in runs if r not in self._runs]
        if unknown:
            raise RequestError("runs", f"runs: unknown run {unknown[0]!r}; this server has {list(self._runs)}",
                               status=404)
        return [self._runs[r] for r in dict.fromkeys(runs)]

    def _translate_one(self, run: LoadedRun, sentence: str, beam: int, n_best: int, layer: int | None,
                       head: int | None) -> dict[str, Any]:
        start = time.perf_counter()
        result, label = run.translate_shown(sentence, beam, n_best, layer, head)
        elapsed = time.perf_counter() - start
        tokenizer = run.translator.tokenizer
        note = None
        if result.truncated:
            limit = run.translator.cfg.decode.max_src_len
            total = len(tokenizer.encode_src([sentence])[0])
            note = (f"the source is {total:,} pieces long; {run.name} translated only its first {limit} "
                    f"(decode.max_src_len), as `mtkit translate` does")
        hypotheses = [self._hypothesis(run, result, hyp) for hyp in result.hypotheses]
        return {
            "run": run.name, "attention": run.translator.has_attention, "attention_label": label,
            "layer": layer, "head": head, "beam": beam,
            "translation": result.text, "truncated": result.truncated, "note": note,
            "source_pieces": result.src_pieces, "hypotheses": hypotheses, "elapsed_ms": round(elapsed * 1000, 1),
        }

    @staticmethod
    def _hypothesis(run: LoadedRun, result: Translation, hyp) -> dict[str, Any]:
        tokenizer = run.translator.tokenizer
        pieces = tokenizer.tgt_pieces(hyp.tokens)
        out: dict[str, Any] = {"text": tokenizer.decode_tgt(hyp.tokens), "score": round(hyp.score, 4),
                               "log_prob": round(hyp.log_prob, 4), "pieces": pieces, "weights": None, "words": None}
        if hyp.attention is not None and pieces:
            weights = hyp.attention.float().numpy()  # (T, S)
            words = to_words(AttentionRecord(result.src_pieces, pieces, weights, out["text"]))
            out["weights"] = _rounded(weights)
            out["words"] = {"source": words.source, "target": words.target, "weights": _rounded(words.weights)}
        return out

    # -- BLEU by length and test sentences -----------------------------------------------------------------------

    def scores(self) -> dict[str, Any]:
        """Return the BLEU-by-length results found in the runs' eval/scores.json at start (one entry per system)."""
        systems: dict[str, SystemScore] = {}
        for run in self._runs.values():
            for system in run.scores:
                systems.setdefault(system.name, system)
        return {
            "systems": [_system_dict(s, s.name if s.name in self._runs else None) for s in systems.values()],
            "buckets": [label for label, _, _ in bucket_bounds(self._edges)], "length_of": self._length_of,
            "note": None if systems else "no BLEU-by-length results: run `mtkit eval --run DIR ... --by-length`, "
                                         "then restart the server",
        }

    def examples(self, bucket: str | None = None, offset: int = 0, count: int = 5,
                 outputs: bool = True) -> dict[str, Any]:
        """Return test sentences of one length bucket (all when None) with references and each run's output.

        Outputs are the ones `mtkit eval` cached for the run when present, else translated now
        with the run's own beam. Runs tested on another split than the first run's get none.
        """
        _check_int("offset", offset, low=0)
        _check_int("count", count, low=1)
        if count > MAX_EXAMPLES:
            raise RequestError("count", f"count: got {count}; at most {MAX_EXAMPLES}")
        base = self._base
        if base is None:
            raise RequestError("bucket", "no served run has a test split to take examples from", status=404)
        lines = self._bucket_lines(bucket)
        page = lines[offset : offset + count]
        examples = [{"line": i + 1, "words": len(base.test_src[i].split()), "source": base.test_src[i],
                     "reference": base.test_ref[i], "outputs": {}} for i in page]
        other = [run.name for run in self._runs.values() if run.test_src != base.test_src]
        if outputs and page:
            for run in self._runs.values():
                if run.name in other:
                    continue
                texts, how, beam = self._outputs(run, page)
                for example, text in zip(examples, texts):
                    example["outputs"][run.name] = {"text": text, "from": how, "beam": beam}
        return {"bucket": bucket, "total": len(lines), "offset": offset, "examples": examples,
                "test_split_of": base.name, "other_test_split": other}

    def _bucket_lines(self, bucket: str | None) -> list[int]:
        base = self._base
        lines = range(len(base.test_src))
        if bucket is None:
            return list(lines)
        bounds = {label: (low, high) for label, low, high in bucket_bounds(self._edges)}
        if bucket not in bounds:
            raise RequestError("bucket", f"bucket: unknown bucket {bucket!r}; choose one of {list(bounds)}")
        low, high = bounds[bucket]
        side = base.test_src if self._length_of == "src" else base.test_ref
        return [i for i in lines if low <= len(side[i].split()) and (high is None or len(side[i].split()) <= high)]

    @staticmethod
    def _outputs(run: LoadedRun, lines: list[int]) -> tuple[list[str], str, int]:
        if run.eval_outputs is not None:
            beam = run.eval_outputs.beam
            return [run.eval_outputs.lines[i] for i in lines], f"mtkit eval, beam {beam}", beam
        beam = run.translator.cfg.decode.beam
        translations = run.translate([run.test_src[i] for i in lines], beam=beam)
        return [t.text for t in translations], f"translated now, beam {beam}", beam

    @staticmethod
    def _bucketing(runs: list[LoadedRun]) -> tuple[tuple[int, ...], str]:
        """Return the bucket edges and length side: the first scored system's, else the first run's eval config."""
        for run in runs:
            if run.scores:
                return tuple(run.scores[0].edges), run.scores[0].length_of
        cfg = runs[0].translator.cfg.eval
        return tuple(cfg.edges), cfg.length_of


def _check_int(name: str, value: Any, low: int | None = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"{name}: give a whole number (got {value!r})")
    if low is not None and value < low:
        raise RequestError(name, f"{name}: got {value}; must be at least {low}")


def _check_choice(run: LoadedRun, layer: int | None, head: int | None) -> None:
    """Refuse a layer or head that `run` does not have: past its count, or any at all for an RNN."""
    shape = run.translator.attention_shape  # (layers, heads); None: an RNN
    for name, value, noun, index in (("layer", layer, "decoder layers", 0), ("head", head, "heads", 1)):
        if value is None:
            continue
        if shape is None:
            raise RequestError(name, f"{name}: run {run.name} is an RNN, with one attention and no layers or heads "
                                     f"to choose; layer and head apply to Transformer runs only, so leave {name} out")
        if value > shape[index]:
            raise RequestError(name, f"{name}: got {value}; run {run.name} has {shape[index]} {noun} "
                                     f"(1-{shape[index]})")


def _rounded(matrix) -> list[list[float]]:
    return [[round(float(w), DIGITS) for w in row] for row in matrix]


def _system_dict(system: SystemScore, run: str | None) -> dict[str, Any]:
    return {
        "name": system.name, "run": run, "bleu": system.bleu, "chrf": system.chrf, "count": system.count,
        "bleu_signature": system.bleu_signature, "n_boot": system.n_boot,
        "buckets": [{"label": b.label, "low": b.low, "high": b.high, "count": b.count, "bleu": b.bleu,
                     "ci_low": b.ci_low, "ci_high": b.ci_high, "chrf": b.chrf} for b in system.buckets],
    }
