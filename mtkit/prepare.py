"""`mtkit prepare`: sources → clean corpus → splits → tokenizer → encoded, cached tensors.

Every pair keeps its reference (a Bible verse, or a line number) through cleaning, splitting and the cache. With
`data.passage_windows`, windows of consecutive pairs are drawn from the seed before the split and held out of
train, dev and test as a passage test set (the same pairs joined k = 1…K at a time); with
`data.join_train_max_k`, training also gets consecutive training pairs joined into longer inputs.

The work is cached under `data.cache_dir/<fingerprint>/`, where the fingerprint hashes the data
and tokenizer settings, the seed and the bytes of the inputs: a second run with the same config
finds the cache and does nothing, a changed setting or input builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from mtkit.buckets import LengthBuckets
from mtkit.config import Config, DataConfig
from mtkit.data import corpus, sources
from mtkit.data.batching import batch_indices, padding_fraction
from mtkit.data.textio import read_lines
from mtkit.data.tokenizer import Tokenizer, train_tokenizer
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

PREPARE_VERSION = 3  # bump when the prepared format, the cleaning or the splitting changes
SPLITS = ("train", "dev", "test")


class EncodedSplit(NamedTuple):
    """One split as text and as piece ids (no bos/eos)."""

    src_text: list[str]
    tgt_text: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]


class Passages(NamedTuple):
    """The passage test set: inputs of k = 1…K consecutive held-out pairs, every k covering the same pairs."""

    split: EncodedSplit  # ordered by k, then window, then group
    refs: list[str]  # the references of an input's pairs joined by "+" ("Gen 1:1+Gen 1:2")
    window: list[int]  # window of each input (0, 1, … in corpus order)
    k: list[int]  # pairs joined in each input
    group: list[int]  # place of each input among its window's groups of k


class Prepared(NamedTuple):
    """The prepared data of an experiment."""

    directory: Path
    fingerprint: str
    tokenizer: Tokenizer
    splits: dict[str, EncodedSplit]
    report: str  # what was read, dropped and kept; from `prepare`, also the batches of train.batch_tokens
    reused: bool
    # The reference of every pair, parallel to splits[name]: "Gen 1:1", a line number, or for a joined training
    # input its pairs' references joined by "+". None for a cache written before references were kept.
    refs: dict[str, list[str]] | None = None
    passages: Passages | None = None  # None unless data.passage_windows is set


class SourceCorpus(NamedTuple):
    """The raw pairs of the configured source, their references and what the reader dropped (reason → count)."""

    pairs: list[tuple[str, str]]
    refs: list[str]
    dropped: dict[str, int]


class _Drawn(NamedTuple):
    splits: dict[str, list[tuple[str, str]]]  # train (single pairs), dev, test
    refs: dict[str, list[str]]
    passages: list[corpus.Passage]
    n_windows: int
    shared_source: int  # pairs left out of every split because their source is also a passage pair's


def prepare(cfg: Config, force: bool = False) -> Prepared:
    """Return the prepared data for `cfg`, building it unless an up-to-date cache exists."""
    fingerprint = data_fingerprint(cfg)
    directory = Path(cfg.data.cache_dir) / fingerprint[:16]
    done = directory / "meta.json"
    if done.is_file() and not force:
        log.info("prepared data is up to date (fingerprint %s) in %s: nothing to do", fingerprint[:16], directory)
        prepared = load_prepared(directory, reused=True)
        return prepared._replace(report=prepared.report + "\n" + _batch_report(cfg, prepared.splits["train"]))
    start = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    stages = tqdm(total=5, desc="prepare", unit="stage", disable=None, leave=False)
    source, cleaned, kept, kept_refs = _read_and_clean(cfg.data, stages)
    pairs, dropped_at_source = source.pairs, source.dropped
    drawn = _split(cfg, kept, kept_refs)
    splits, refs = drawn.splits, drawn.refs
    # Running text: joined inputs of consecutive training pairs, appended after the single pairs. The tokenizer
    # is trained before, on the single pairs only, so joining does not change the vocabulary.
    joined = corpus.join_consecutive(splits["train"], refs["train"], cfg.data.join_train_max_k, cfg.data.max_len,
                                     cfg.seed)
    stages.update()
    stages.set_postfix_str("training SentencePiece")
    tokenizer = train_tokenizer(
        [s for s, _ in splits["train"]], [t for _, t in splits["train"]],
        vocab_size=cfg.tokenizer.vocab_size, model_type=cfg.tokenizer.model_type, joint=cfg.tokenizer.joint,
        character_coverage=cfg.tokenizer.character_coverage,
        max_sentences=cfg.tokenizer.max_train_sentences, seed=cfg.seed,
    )
    stages.update()
    stages.set_postfix_str("encoding")
    verses = splits["train"]
    splits = {**splits, "train": verses + joined.pairs}
    refs = {**refs, "train": refs["train"] + joined.refs}
    encoded = {name: _encode(tokenizer, split) for name, split in splits.items()}
    passages = _encode_passages(tokenizer, drawn.passages) if cfg.data.passage_windows else None
    stages.update()
    stages.set_postfix_str("writing the cache")
    report = _report(cfg, pairs, dropped_at_source, cleaned.dropped, drawn.splits, encoded, tokenizer)
    extra = _running_text_report(cfg, drawn, joined, len(verses))
    report += "\n" + extra if extra else ""
    _save(directory, tokenizer, encoded, report, refs, passages)
    stages.update()
    stages.close()
    meta = {
        "fingerprint": fingerprint, "version": PREPARE_VERSION, "seconds": round(time.perf_counter() - start, 1),
        "data": asdict(cfg.data), "tokenizer": asdict(cfg.tokenizer), "seed": cfg.seed,
        "counts": {name: len(split.src_ids) for name, split in encoded.items()},
        "dropped": _merge_counts(dropped_at_source, cleaned.dropped),
        "joined_train": len(joined.pairs), "passage_windows": drawn.n_windows,
        "passage_inputs": {k: passages.k.count(k) for k in sorted(set(passages.k))} if passages else {},
    }
    done.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # written last: marks the cache complete
    log.info("prepared data in %s (%.1f s)", directory, meta["seconds"])
    # The batch line depends on train.batch_tokens, which the cache does not: it is added on every call.
    report += "\n" + _batch_report(cfg, encoded["train"])
    return Prepared(directory, fingerprint, tokenizer, encoded, report, reused=False, refs=refs, passages=passages)


def _read_and_clean(data: DataConfig, stages: tqdm) -> tuple[SourceCorpus, corpus.Cleaned, list, list[str]]:
    """Return the source as read, its cleaning, and the kept pairs with their references (data.max_sentences applied)."""
    stages.set_postfix_str(f"reading the {data.source} source")
    source = read_source(data)
    log.info("read %d pairs from the %s source", len(source.pairs), data.source)
    stages.update()
    stages.set_postfix_str("cleaning and splitting")
    cleaned = corpus.clean(source.pairs, min_len=data.min_len, max_len=data.max_len, max_ratio=data.max_ratio)
    kept = cleaned.pairs
    kept_refs = [source.refs[i] for i in cleaned.kept_indices]
    if data.max_sentences is not None:
        kept, kept_refs = kept[: data.max_sentences], kept_refs[: data.max_sentences]
    if not kept:
        raise MtkitError(f"no sentence pairs left after cleaning ({corpus.format_dropped(cleaned.dropped)}); "
                         "check data.min_len / data.max_len / data.max_ratio")
    return source, cleaned, kept, kept_refs


def data_fingerprint(cfg: Config) -> str:
    """Return a hex digest of everything the prepared data depends on."""
    data = asdict(cfg.data)
    for label in ("cache_dir", "src_lang", "tgt_lang"):  # where the cache lives and what the sides are called
        data.pop(label)
    data["length_edges"] = cfg.length_edges  # the stratified split depends on them; hashed where they used to live
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": PREPARE_VERSION, "data": data, "tokenizer": asdict(cfg.tokenizer),
                              "seed": cfg.seed}, sort_keys=True).encode())
    for path in _input_files(cfg.data):
        digest.update(str(path).encode())
        try:
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            raise MtkitError(f"{path}: input file not found or unreadable (named in the config's data section)") from None
    return digest.hexdigest()


def _input_files(data: DataConfig) -> list[Path]:
    files = [data.src_file, data.tgt_file] if data.source == "text" else [data.tsv_file] if data.source == "tsv" else []
    files += [data.dev_src, data.dev_tgt, data.test_src, data.test_tgt]
    paths = [Path(f) for f in files if f is not None]
    if data.source == "bible":
        paths += sources.bible_module_files(data.src_module, data.tgt_module, _maybe_path(data.module_dir))
    return paths


def _maybe_path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def read_source(data: DataConfig) -> SourceCorpus:
    """Return the raw pairs of the configured source, a reference for each, and what the reader dropped.

    References: "Gen 1:1" for the Bible; for text files the line number; for a TSV the `data.ref_column` value,
    else the line number. Neighbours (for passages and joined inputs) follow from them, so in a text or TSV
    corpus without a reference column, neighbouring lines count as running text.
    """
    if data.source == "text":
        pairs = sources.read_parallel_text(Path(data.src_file), Path(data.tgt_file))
        return SourceCorpus(pairs, sources.line_refs(len(pairs)), {})
    if data.source == "tsv":
        path = Path(data.tsv_file)
        pairs = sources.read_tsv(path, data.src_column, data.tgt_column, header=data.tsv_header)
        return SourceCorpus(pairs, sources.read_tsv_refs(path, data.ref_column, header=data.tsv_header), {})
    bible = sources.read_bible(data.src_module, data.tgt_module, _maybe_path(data.module_dir))
    return SourceCorpus(bible.pairs, bible.refs, dict(bible.dropped))


def _split(cfg: Config, pairs: list[tuple[str, str]], refs: list[str]) -> _Drawn:
    """Return train/dev/test with their references and the passage inputs.

    Explicit dev/test files are used where given. Passage windows are drawn next, from the pairs whose source is
    in no explicit file; the pairs left over (less any that share a source with a passage pair) are split.
    """
    data = cfg.data
    explicit = {name: _read_held_out(Path(src), Path(tgt))
                for name, src, tgt in (("dev", data.dev_src, data.dev_tgt), ("test", data.test_src, data.test_tgt))
                if src is not None and tgt is not None}
    held_out = {s for split, _ in explicit.values() for s, _ in split}
    keep = [i for i, p in enumerate(pairs) if p[0] not in held_out]  # no dev/test source sentence is trained on
    pairs, refs = [pairs[i] for i in keep], [refs[i] for i in keep]
    passages, windows, shared = [], [], 0
    if data.passage_windows:
        # Drawn before the split and from the seed alone, so the set is the same for every model and every split.
        windows = corpus.draw_windows(pairs, refs, data.passage_windows, data.passage_max_k, data.max_len, cfg.seed)
        passages = corpus.passage_inputs(pairs, refs, windows, data.passage_max_k)
        in_window = {i for window in windows for i in window}
        passage_sources = {pairs[i][0] for i in in_window}
        keep = [i for i, p in enumerate(pairs) if i not in in_window and p[0] not in passage_sources]
        shared = len(pairs) - len(in_window) - len(keep)
        pairs, refs = [pairs[i] for i in keep], [refs[i] for i in keep]
    pool = pairs
    if not pool:
        where = [f"data.{name}_src" for name in explicit] + (["a passage window"] if windows else [])
        raise MtkitError(f"no training pairs left: every source sentence of the corpus is also in "
                         f"{' / '.join(where)}; lower data.passage_windows or use other held-out files")
    dev_size = 0 if "dev" in explicit else data.dev_size
    test_size = 0 if "test" in explicit else data.test_size
    if dev_size + test_size >= len(pool):
        raise MtkitError(f"the corpus has {len(pool)} pairs after cleaning, too few for data.dev_size "
                         f"({dev_size}) + data.test_size ({test_size}) plus a training split; lower the sizes, "
                         "give data.dev_src/test_src files or add data")
    buckets = LengthBuckets(cfg.length_edges) if data.stratify and test_size else None
    split = corpus.split(pool, dev_size=dev_size, test_size=test_size, seed=cfg.seed, stratify=buckets)
    drawn = {"train": (split.train, [refs[i] for i in split.train_idx]),
             "dev": explicit.get("dev", (split.dev, [refs[i] for i in split.dev_idx])),
             "test": explicit.get("test", (split.test, [refs[i] for i in split.test_idx]))}
    return _Drawn({name: p for name, (p, _) in drawn.items()}, {name: r for name, (_, r) in drawn.items()},
                  passages, len(windows), shared)


def _read_held_out(src: Path, tgt: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the normalised pairs of an explicit dev/test file pair (only empty lines and duplicates dropped)
    and their line numbers as references."""
    cleaned = corpus.clean(sources.read_parallel_text(src, tgt), max_len=10**6, max_ratio=10**6)
    return cleaned.pairs, [str(i + 1) for i in cleaned.kept_indices]


def _encode(tokenizer: Tokenizer, pairs: list[tuple[str, str]]) -> EncodedSplit:
    src = [s for s, _ in pairs]
    tgt = [t for _, t in pairs]
    return EncodedSplit(src, tgt, tokenizer.encode_src(src), tokenizer.encode_tgt(tgt))


def _encode_passages(tokenizer: Tokenizer, inputs: list[corpus.Passage]) -> Passages:
    return Passages(_encode(tokenizer, [(p.src, p.tgt) for p in inputs]), [p.ref for p in inputs],
                    [p.window for p in inputs], [p.k for p in inputs], [p.group for p in inputs])


def _flat(seqs: list[list[int]]) -> dict[str, Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.tensor([i for s in seqs for i in s], dtype=torch.int32)
    return {"ids": ids, "lengths": lengths}


def _unflat(stored: dict[str, Tensor]) -> list[list[int]]:
    return [chunk.tolist() for chunk in torch.split(stored["ids"], stored["lengths"].tolist())]


def _save(directory: Path, tokenizer: Tokenizer, encoded: dict[str, EncodedSplit], report: str,
          refs: dict[str, list[str]], passages: Passages | None) -> None:
    tokenizer.save(directory)
    for name, split in {**encoded, **({"passages": passages.split} if passages else {})}.items():
        (directory / f"{name}.src").write_text("".join(s + "\n" for s in split.src_text), encoding="utf-8")
        (directory / f"{name}.tgt").write_text("".join(t + "\n" for t in split.tgt_text), encoding="utf-8")
        torch.save({"src": _flat(split.src_ids), "tgt": _flat(split.tgt_ids)}, directory / f"{name}.pt")
    for name, split_refs in refs.items():
        _write_lines(directory / f"{name}.ref", split_refs)
    if passages:
        _write_lines(directory / "passages.tsv", ["ref\twindow\tk\tgroup"] + [
            f"{r}\t{w}\t{k}\t{g}" for r, w, k, g in zip(passages.refs, passages.window, passages.k, passages.group)])
    (directory / "report.txt").write_text(report + "\n", encoding="utf-8")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _load_split(directory: Path, name: str) -> EncodedSplit:
    stored = torch.load(directory / f"{name}.pt", weights_only=True)
    src_text, tgt_text = read_lines(directory / f"{name}.src"), read_lines(directory / f"{name}.tgt")
    return EncodedSplit(src_text, tgt_text, _unflat(stored["src"]), _unflat(stored["tgt"]))


def load_prepared(directory: Path, reused: bool = False) -> Prepared:
    """Return the prepared data stored in `directory` (its report without the batch line `prepare` adds)."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise MtkitError(f"{directory}: no prepared data here (meta.json missing); run `mtkit prepare CONFIG`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tokenizer = Tokenizer.load(directory)
    splits = {name: _load_split(directory, name) for name in SPLITS}
    refs = {name: read_lines(directory / f"{name}.ref") for name in SPLITS} \
        if all((directory / f"{name}.ref").is_file() for name in SPLITS) else None
    passages = None
    if (directory / "passages.tsv").is_file():
        rows = [line.split("\t") for line in read_lines(directory / "passages.tsv")[1:]]
        passages = Passages(_load_split(directory, "passages"), [r for r, _, _, _ in rows],
                            *([int(row[c]) for row in rows] for c in (1, 2, 3)))
    report = (directory / "report.txt").read_text(encoding="utf-8").rstrip("\n")
    return Prepared(directory, meta["fingerprint"], tokenizer, splits, report, reused, refs, passages)


def shorter_pairs(split: EncodedSplit, max_len: int) -> EncodedSplit:
    """Return the pairs of `split` with at most `max_len` words on each side (Bahdanau et al.'s -30 and -50 models)."""
    keep = [i for i, (src, tgt) in enumerate(zip(split.src_text, split.tgt_text))
            if len(src.split()) <= max_len and len(tgt.split()) <= max_len]
    if not keep:
        raise MtkitError(f"`train.max_len` = {max_len} leaves no training pair; raise it or leave it unset")
    log.info("training on %d of %d pairs: at most %d words a side (train.max_len)", len(keep), len(split.src_text),
             max_len)
    return EncodedSplit(*([part[i] for i in keep] for part in split))


def _merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for reason, n in count.items():
            merged[reason] = merged.get(reason, 0) + n
    return merged


def _report(cfg: Config, raw: list, dropped_at_source: dict[str, int], dropped: dict[str, int],
            splits: dict[str, list], encoded: dict[str, EncodedSplit], tokenizer: Tokenizer) -> str:
    train = encoded["train"]
    pieces = sum(len(t) for t in train.tgt_ids)
    lines = [
        f"source: {cfg.data.source}; {len(raw)} pairs read",
        f"dropped: {corpus.format_dropped(_merge_counts(dropped_at_source, dropped))}",
        f"kept: {sum(len(v) for v in splits.values())} pairs "
        + " / ".join(f"{name} {len(v)}" for name, v in splits.items()),
        "",
        corpus.length_report(splits, LengthBuckets(cfg.length_edges)),
        "",
        f"tokenizer: {'joint' if tokenizer.joint else 'separate'} {cfg.tokenizer.model_type}, "
        f"vocabulary {tokenizer.src_vocab} (src) / {tokenizer.tgt_vocab} (tgt); "
        f"{pieces / max(1, sum(len(t.split()) for t in train.tgt_text)):.2f} target pieces per word",
    ]
    return "\n".join(lines)


def _running_text_report(cfg: Config, drawn: _Drawn, joined: corpus.Joined, n_single: int) -> str:
    """Return the lines on the passage test set and the joined training inputs ("" when both are off)."""
    data = cfg.data
    lines = []
    if data.passage_windows:
        size = corpus.window_size(data.passage_max_k)
        by_k = {f"k={k}": [(p.src, p.tgt) for p in drawn.passages if p.k == k]
                for k in range(1, data.passage_max_k + 1)}
        lines += ["", f"passages: {drawn.n_windows} windows of {size} consecutive pairs ({drawn.n_windows * size} "
                      f"pairs held out of train, dev and test; {drawn.shared_source} more left out as they share a "
                      f"source with one), each cut into inputs of k = 1…{data.passage_max_k} pairs:",
                  corpus.length_report(by_k, LengthBuckets(cfg.length_edges))]
    if data.join_train_max_k > 1:
        sizes = Counter(joined.k)
        lines += ["", f"running text: {len(joined.pairs)} joined training inputs added to the {n_single} single "
                      f"pairs ({', '.join(f'{sizes[k]} of {k}' for k in sorted(sizes))} pairs); {joined.too_long} "
                      f"over data.max_len ({data.max_len}) words left out"]
    return "\n".join(lines)


def _batch_report(cfg: Config, train: EncodedSplit) -> str:
    """Return the line on training batches and their padding under the config's train.batch_tokens."""
    src_lengths, tgt_lengths = [len(s) for s in train.src_ids], [len(t) for t in train.tgt_ids]
    batches = batch_indices(src_lengths, tgt_lengths, cfg.train.batch_tokens, seed=cfg.seed)
    pad = padding_fraction(src_lengths, tgt_lengths, batches)
    return f"training batches: {len(batches)} of ≤{cfg.train.batch_tokens} tokens, padding {pad:.1%}"
