"""What `mtkit serve` does, without HTTP: loaded runs in, plain dicts out.

`Service` holds the runs given at start (their models, test splits, cached test translations and
evaluation scores, read once by `loading.py` when it is made) and answers five questions: which runs,
translate this (with pieces, words and weights, labelled with which attention they are: a
Transformer's cross-attention of a chosen layer and head, or the mean), BLEU by length, the same
verses alone and inside passages, and test sentences of one length bucket. A request names a run
only by the name it got at start, so nothing a request says reaches the filesystem, and no answer
holds a path on disk.

Translating is split in two so the web app can queue each model's work on its own thread:
`check_translate` checks what a request asks of the runs (cheap; raises `RequestError`) and returns
a `TranslatePlan`; `translate_run` does one run's model work; `translate` does both, in turn, for
callers in Python. Each model also has its own lock, so that threads calling `translate` never
enter one model at once.

A request's fields are checked once, by its model in `requests.py` (types, the server's limits,
empty or broken text): the web app's routes receive them checked, and `translate` and `examples`
build them from their arguments, so a Python caller gets the same checks. Here are only the checks
that need the runs: a run's name, its beam, layers and heads, the attention weights an answer would
hold, a bucket's label. A refused request raises `RequestError`, which names the field at fault;
`app.py` turns it into a 4xx JSON response.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from pydantic import ValidationError

from mtkit.alignment import AttentionRecord, to_words
from mtkit.buckets import LengthBuckets
from mtkit.config import ServeConfig
from mtkit.errors import MtkitError
from mtkit.evaluate import SystemScore
from mtkit.model import describe
from mtkit.search import max_lengths
from mtkit.serve.loading import LoadedRun, ScoreFile, load_results, load_runs
from mtkit.serve.requests import ExamplesQuery, RequestError, TranslateRequest, request_error
from mtkit.translate import Translation, rounded_weights

log = logging.getLogger(__name__)

class TranslatePlan(NamedTuple):
    """A checked translate request: the sentence, what to show, and each chosen run with its beam."""

    source: str
    n_best: int
    layer: int | None
    head: int | None
    runs: list[tuple[str, int]]  # (run name, beam), in the order asked


class Service:
    """The served runs, fixed at start, and the questions the web page asks of them."""

    def __init__(self, runs: list[LoadedRun], limits: ServeConfig = ServeConfig(),
                 results: tuple[ScoreFile | None, ScoreFile | None] = (None, None)) -> None:
        if not runs:
            raise MtkitError("no runs to serve; pass --run DIR")
        self.limits = limits
        # The request models of these limits: the web app's routes take them, and the Python methods build them.
        self.translate_request = TranslateRequest.for_limits(limits)
        self.examples_query = ExamplesQuery.for_limits(limits)
        self._runs = {run.name: run for run in runs}
        self._base = next((r for r in runs if r.test_src), None)  # the run whose test split the examples come from
        self._edges, self._length_of = self._bucketing(runs, results[0])
        self._buckets = self._lines_by_bucket(LengthBuckets(self._edges))  # label → test lines
        # The results directory's files when given (the study's, scored together with intervals), else each run's.
        self._scores = [results[0]] if results[0] else [r.scores for r in runs if r.scores]
        self._passages = [results[1]] if results[1] else [r.passages for r in runs if r.passages]
        scored = {s.name for file in self._scores for s in file.systems}
        self._runs_info = {
            "runs": [self._describe(run, run.name in scored) for run in runs],
            "limits": {"max_beam": limits.max_beam, "max_text_chars": limits.max_text_chars,
                       "max_examples": limits.max_examples, "max_weights": limits.max_weights,
                       "queue": limits.queue, "timeout_s": limits.timeout},
            "buckets": [{"label": label, "count": len(lines)} for label, lines in self._buckets.items()],
            "length_of": self._length_of, "test_split_of": self._base.name if self._base else None,
        }

    @classmethod
    def from_run_dirs(cls, run_dirs: Sequence[Path], checkpoint: str = "best", device: str | None = None,
                      limits: ServeConfig = ServeConfig(), results: Path | None = None) -> "Service":
        """Return a Service over the runs in `run_dirs` (see `load_runs`) and the scores in `results` (`load_results`)."""
        loaded = load_results(results) if results is not None else (None, None)
        return cls(load_runs(run_dirs, checkpoint, device), limits, loaded)

    @property
    def run_names(self) -> list[str]:
        """Return the served runs' names, in the order given."""
        return list(self._runs)

    # -- which runs ---------------------------------------------------------------------------------------------

    def runs(self) -> dict[str, Any]:
        """Return the served runs (names, model kinds, languages, decoding defaults), the limits and the buckets."""
        return self._runs_info

    @staticmethod
    def _describe(run: LoadedRun, scored: bool) -> dict[str, Any]:
        """Return what the page shows of a run: an RNN's attention, decoder and cell; a Transformer's layers, heads."""
        cfg = run.translator.cfg
        shape = run.translator.attention_shape  # (layers, heads) of a Transformer's cross-attention; None: an RNN
        rnn = shape is None
        return {
            "name": run.name, "arch": cfg.model.arch,
            "description": describe(run.translator.model), "attention": run.translator.has_attention,
            "attention_kind": cfg.model.attention.kind if rnn else "multi-head",
            "decoder": cfg.model.decoder if rnn else "transformer", "cell": cfg.model.cell if rnn else None,
            "layers": None if rnn else shape[0], "heads": None if rnn else shape[1],
            "parameters": sum(p.numel() for p in run.translator.model.parameters()),
            "beam": cfg.decode.beam, "max_src_len": cfg.decode.max_src_len,
            "src_lang": cfg.data.src_lang, "tgt_lang": cfg.data.tgt_lang,
            "test_sentences": len(run.test_src or []), "scored": scored,
        }

    # -- translate ----------------------------------------------------------------------------------------------

    def translate(self, text: str, runs: Sequence[str] | None = None, beam: int | None = None,
                  n_best: int = 1, layer: int | None = None, head: int | None = None) -> dict[str, Any]:
        """Return every chosen run's translation of `text`: n-best hypotheses with pieces, words and weights.

        `runs` None means all runs; `beam` None means each run's own `decode.beam`. `layer` and
        `head` (1-based; None: the mean) choose a Transformer's cross-attention, and apply to
        Transformer runs only; each result's `attention_label` says which weights it holds. The text is
        one sentence (line breaks count as spaces); a source longer than the run's
        `decode.max_src_len` pieces is truncated, as `mtkit translate` does, and the result says so.
        Everything is checked before any model runs: the fields as the web app's are (`TranslateRequest`),
        then against the runs (`check_translate`).
        """
        try:
            request = self.translate_request(text=text, runs=runs, beam=beam,
                                             n_best=n_best, layer=layer, head=head)
        except ValidationError as err:
            raise request_error(err.errors()) from None
        plan = self.check_translate(request)
        return self.answer(plan, [self.translate_run(plan, name) for name, _ in plan.runs])

    def check_translate(self, request: TranslateRequest) -> TranslatePlan:
        """Return the plan of a request whose fields are checked, or raise RequestError naming the first field that
        does not fit the runs (no model runs)."""
        sentence, n_best, layer, head = request.text, request.n_best, request.layer, request.head
        chosen = self._check_runs(request.runs)
        plans = []
        for run in chosen:
            settings = run.translator.settings(beam=request.beam)  # the run's own beam when none is asked
            if n_best > settings.beam:
                raise RequestError("n_best", f"n_best: got {n_best}; give between 1 and the beam size "
                                             f"({settings.beam} for run {run.name})")
            _check_choice(run, layer, head)
            plans.append((run.name, settings.beam))
        for run in chosen:
            self._check_weights(run, sentence, n_best)
        return TranslatePlan(sentence, n_best, layer, head, plans)

    def translate_run(self, plan: TranslatePlan, name: str) -> dict[str, Any]:
        """Return one run's part of the answer to a checked request: the model's work (seconds, not microseconds)."""
        run = self._runs[name]
        beam = dict(plan.runs)[name]
        start = time.perf_counter()
        result, label = run.translate_shown(plan.source, beam, plan.n_best, plan.layer, plan.head)
        elapsed = time.perf_counter() - start
        note = None
        if result.truncated:
            limit = run.translator.cfg.decode.max_src_len
            total = len(run.translator.tokenizer.encode_src([plan.source])[0])
            note = (f"the source is {total:,} pieces long; {run.name} translated only its first {limit} "
                    f"(decode.max_src_len), as `mtkit translate` does")
        hypotheses = [self._hypothesis(run, result, hyp) for hyp in result.hypotheses]
        return {
            "run": run.name, "attention": run.translator.has_attention, "attention_label": label,
            "layer": plan.layer, "head": plan.head, "beam": beam,
            "translation": result.text, "truncated": result.truncated, "note": note,
            "source_pieces": result.src_pieces, "hypotheses": hypotheses, "elapsed_ms": round(elapsed * 1000, 1),
        }

    @staticmethod
    def answer(plan: TranslatePlan, results: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the answer to a translate request from its runs' results (`translate_run`), in the order asked."""
        return {"source": plan.source, "n_best": plan.n_best, "results": results}

    def _check_runs(self, runs: list[str] | None) -> list[LoadedRun]:
        if runs is None:
            return list(self._runs.values())
        unknown = [r for r in runs if r not in self._runs]
        if unknown:
            raise RequestError("runs", f"runs: unknown run {unknown[0]!r}; this server has {list(self._runs)}",
                               status=404)
        return [self._runs[r] for r in dict.fromkeys(runs)]

    def _check_weights(self, run: LoadedRun, sentence: str, n_best: int) -> None:
        """Refuse a request whose answer for `run` could hold more than `limits.max_weights` attention weights.

        Counted before decoding, at the longest output search may write: n_best × output pieces × source pieces.
        """
        if not run.translator.has_attention:
            return
        decode = run.translator.cfg.decode
        src_len = min(len(run.translator.tokenizer.encode_src([sentence])[0]), decode.max_src_len)
        tgt_len = int(max_lengths(torch.tensor([src_len]), decode.max_len_ratio, decode.max_len_extra)[0])
        weights = n_best * tgt_len * src_len
        if weights > self.limits.max_weights:
            field = "n_best" if n_best > 1 else "text"
            raise RequestError(field, f"{field}: {n_best} hypothes{'es' if n_best > 1 else 'is'} × up to {tgt_len} "
                                      f"target × {src_len} source pieces = {weights:,} attention weights from run "
                                      f"{run.name}; this server returns at most {self.limits.max_weights:,} a run: "
                                      + ("ask for fewer hypotheses" if n_best > 1 else "send a shorter text"),
                               status=422 if n_best > 1 else 413)

    @staticmethod
    def _hypothesis(run: LoadedRun, result: Translation, hyp) -> dict[str, Any]:
        tokenizer = run.translator.tokenizer
        pieces = tokenizer.tgt_pieces(hyp.tokens)
        out: dict[str, Any] = {"text": tokenizer.decode_tgt(hyp.tokens), "score": round(hyp.score, 4),
                               "log_prob": round(hyp.log_prob, 4), "pieces": pieces, "weights": None, "words": None}
        if hyp.attention is not None and pieces:
            weights = hyp.attention.float().numpy()  # (T, S)
            words = to_words(AttentionRecord(result.src_pieces, pieces, weights, out["text"]))
            out["weights"] = rounded_weights(weights)
            out["words"] = {"source": words.source, "target": words.target, "weights": rounded_weights(words.weights)}
        return out

    # -- scores, passages and test sentences ---------------------------------------------------------------------

    def scores(self) -> dict[str, Any]:
        """Return the BLEU-by-length results read at start (one entry per system), and a note on what is missing."""
        systems: dict[str, tuple[SystemScore, ScoreFile]] = {}
        for file in self._scores:
            for system in file.systems:
                systems.setdefault(system.name, (system, file))
        note = None
        if not systems:
            note = ("no BLEU-by-length results: run `mtkit eval --run DIR ... --by-length`, then restart the server "
                    "(or give it the study's results: mtkit serve --results results)")
        return {
            "systems": [_system_dict(s, self._run_of(s.name)) for s, _ in systems.values()],
            "buckets": list(self._buckets), "length_of": self._length_of, "note": note,
            "intervals_note": _intervals_note([file for _, file in systems.values() if file.systems and
                                               all(s.n_boot == 0 for s in file.systems)]),
        }

    def passages(self) -> dict[str, Any]:
        """Return the same verses alone (k=1) and inside passages of k verses, per system, when passage scores exist."""
        systems: dict[str, tuple[dict[str, Any], ScoreFile]] = {}
        for file in self._passages:
            for system in file.systems:
                systems.setdefault(system["name"], (system, file))
        note = None
        if not systems:
            note = ("no passage scores: `mtkit eval --run DIR --passages --by-length` scores a run with "
                    "data.passage_windows on its passage set (or serve the study's results: --results results)")
        return {
            "systems": [{**s, "run": self._run_of(s["name"])} for s, _ in systems.values()], "note": note,
            "intervals_note": _intervals_note([file for _, file in systems.values() if file.systems and
                                               all(s["n_boot"] == 0 for s in file.systems)]),
        }

    def _run_of(self, system: str) -> str | None:
        """Return the served run a scored system is: the same name, or a run named PREFIX_system (the study's labels)."""
        if system in self._runs:
            return system
        return next((name for name in self._runs if name.endswith(f"_{system}")), None)

    def examples(self, bucket: str | None = None, offset: int = 0, count: int = 5,
                 outputs: bool = True) -> dict[str, Any]:
        """Return test sentences of one length bucket (all when None); see `show_examples`."""
        try:
            query = self.examples_query(bucket=bucket, offset=offset, count=count, outputs=outputs)
        except ValidationError as err:
            raise request_error(err.errors()) from None
        return self.show_examples(query)

    def show_examples(self, query: ExamplesQuery) -> dict[str, Any]:
        """Return test sentences of one length bucket (all when None) with references and each run's cached output.

        Outputs are the test translations `mtkit eval` cached for the run; nothing is translated here,
        so the question stays cheap. Runs without a cache are listed in `uncached`; runs tested on
        another split than the first run's get none.
        """
        bucket, offset, count, outputs = query.bucket, query.offset, query.count, query.outputs
        base = self._base
        if base is None:
            why = "; ".join(r.split_problem for r in self._runs.values() if r.split_problem)
            raise RequestError("bucket", "no served run has a test split to take examples from"
                                         + (f" ({why})" if why else ""), status=404)
        if bucket is not None and bucket not in self._buckets:
            raise RequestError("bucket", f"bucket: unknown bucket {bucket!r}; choose one of {list(self._buckets)}")
        lines = self._buckets[bucket] if bucket is not None else range(len(base.test_src))
        page = lines[offset : offset + count]
        examples = [{"line": i + 1, "words": len(base.test_src[i].split()), "source": base.test_src[i],
                     "reference": base.test_ref[i], "outputs": {}} for i in page]
        other = [run.name for run in self._runs.values() if run.test_src != base.test_src]
        uncached = [run.name for run in self._runs.values() if run.name not in other and run.eval_outputs is None]
        if outputs:
            for run in self._runs.values():
                if run.name in other or run.eval_outputs is None:
                    continue
                beam = run.eval_outputs.beam
                for example, i in zip(examples, page):
                    example["outputs"][run.name] = {"text": run.eval_outputs.lines[i], "from": f"mtkit eval, beam {beam}",
                                                    "beam": beam}
        return {"bucket": bucket, "total": len(lines), "offset": offset, "examples": examples,
                "test_split_of": base.name, "src_lang": base.translator.cfg.data.src_lang,
                "tgt_lang": base.translator.cfg.data.tgt_lang, "other_test_split": other,
                "uncached": uncached if outputs else [],
                "uncached_note": (f"no cached test translations for {', '.join(uncached)}: `mtkit eval --run DIR` "
                                  "writes them (this server translates only on request, with POST /api/translate)")
                                 if outputs and uncached else None}

    def _lines_by_bucket(self, buckets: LengthBuckets) -> dict[str, list[int]]:
        """Return, per bucket label, the test lines of the base run whose length (source or reference side) is in it."""
        labels = buckets.labels
        lines: dict[str, list[int]] = {label: [] for label in labels}
        if self._base is not None:
            side = self._base.test_src if self._length_of == "src" else self._base.test_ref
            for i, line in enumerate(side):
                lines[labels[buckets.index_of(line)]].append(i)
        return lines

    @staticmethod
    def _bucketing(runs: list[LoadedRun], results: ScoreFile | None) -> tuple[tuple[int, ...], str]:
        """Return the bucket edges and length side: the first scored system's, else the first run's config."""
        for file in ([results] if results else []) + [r.scores for r in runs if r.scores]:
            if file.systems:
                return tuple(file.systems[0].edges), file.systems[0].length_of
        cfg = runs[0].translator.cfg
        return tuple(cfg.length_edges), cfg.eval.length_of


def _intervals_note(files: list[ScoreFile]) -> str | None:
    """Return a plain note naming each scores file written without a bootstrap, and the command that adds one."""
    shown = {file.where: file for file in files}
    if not shown:
        return None
    return " ".join(f"{file.where} has no 95% intervals (written without a bootstrap): `{file.command}` writes them."
                    for file in shown.values())


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


def _system_dict(system: SystemScore, run: str | None) -> dict[str, Any]:
    return {
        "name": system.name, "run": run, "bleu": system.bleu, "chrf": system.chrf, "count": system.count,
        "bleu_signature": system.bleu_signature, "n_boot": system.n_boot,
        "buckets": [{"label": b.label, "low": b.low, "high": b.high, "count": b.count, "bleu": b.bleu,
                     "ci_low": b.ci_low, "ci_high": b.ci_high, "chrf": b.chrf} for b in system.buckets],
    }
