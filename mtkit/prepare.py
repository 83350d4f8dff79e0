"""`mtkit prepare`: sources → clean corpus → splits → tokenizer → encoded, cached tensors.

The work is cached under `data.cache_dir/<fingerprint>/`, where the fingerprint hashes the data
and tokenizer settings, the seed and the bytes of the inputs: a second run with the same config
finds the cache and does nothing, a changed setting or input builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from mtkit.config import Config, DataConfig
from mtkit.data import corpus, sources
from mtkit.data.batching import batch_indices, padding_fraction
from mtkit.data.tokenizer import Tokenizer, train_tokenizer
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

PREPARE_VERSION = 2  # bump when the prepared format, the cleaning or the splitting changes
SPLITS = ("train", "dev", "test")


class EncodedSplit(NamedTuple):
    """One split as text and as piece ids (no bos/eos)."""

    src_text: list[str]
    tgt_text: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]


class Prepared(NamedTuple):
    """The prepared data of an experiment."""

    directory: Path
    fingerprint: str
    tokenizer: Tokenizer
    splits: dict[str, EncodedSplit]
    report: str  # what was read, dropped and kept; from `prepare`, also the batches of train.batch_tokens
    reused: bool


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
    stages.set_postfix_str(f"reading the {cfg.data.source} source")
    pairs, dropped_at_source = read_source(cfg.data)
    log.info("read %d pairs from the %s source", len(pairs), cfg.data.source)
    stages.update()
    stages.set_postfix_str("cleaning and splitting")
    cleaned = corpus.clean(pairs, min_len=cfg.data.min_len, max_len=cfg.data.max_len, max_ratio=cfg.data.max_ratio)
    kept = cleaned.pairs
    if cfg.data.max_sentences is not None:
        kept = kept[: cfg.data.max_sentences]
    if not kept:
        raise MtkitError(f"no sentence pairs left after cleaning ({corpus.format_dropped(cleaned.dropped)}); "
                         "check data.min_len / data.max_len / data.max_ratio")
    splits = _split(cfg, kept)
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
    encoded = {name: _encode(tokenizer, split) for name, split in splits.items()}
    stages.update()
    stages.set_postfix_str("writing the cache")
    report = _report(cfg, pairs, dropped_at_source, cleaned.dropped, splits, encoded, tokenizer)
    _save(directory, tokenizer, encoded, report)
    stages.update()
    stages.close()
    meta = {
        "fingerprint": fingerprint, "version": PREPARE_VERSION, "seconds": round(time.perf_counter() - start, 1),
        "data": asdict(cfg.data), "tokenizer": asdict(cfg.tokenizer), "seed": cfg.seed,
        "counts": {name: len(split.src_ids) for name, split in encoded.items()},
        "dropped": _merge_counts(dropped_at_source, cleaned.dropped),
    }
    done.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # written last: marks the cache complete
    log.info("prepared data in %s (%.1f s)", directory, meta["seconds"])
    # The batch line depends on train.batch_tokens, which the cache does not: it is added on every call.
    report += "\n" + _batch_report(cfg, encoded["train"])
    return Prepared(directory, fingerprint, tokenizer, encoded, report, reused=False)


def data_fingerprint(cfg: Config) -> str:
    """Return a hex digest of everything the prepared data depends on."""
    data = asdict(cfg.data)
    data.pop("cache_dir")
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


def read_source(data: DataConfig) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Return the raw pairs of the configured source and what the reader dropped (reason → count)."""
    if data.source == "text":
        return sources.read_parallel_text(Path(data.src_file), Path(data.tgt_file)), {}
    if data.source == "tsv":
        return sources.read_tsv(Path(data.tsv_file), data.src_column, data.tgt_column, header=data.tsv_header), {}
    bible = sources.read_bible(data.src_module, data.tgt_module, _maybe_path(data.module_dir))
    return bible.pairs, dict(bible.dropped)


def _split(cfg: Config, pairs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Return train/dev/test: explicit dev/test files where given, the others drawn from `pairs`."""
    data = cfg.data
    explicit = {name: _read_held_out(Path(src), Path(tgt))
                for name, src, tgt in (("dev", data.dev_src, data.dev_tgt), ("test", data.test_src, data.test_tgt))
                if src is not None and tgt is not None}
    held_out = {s for split in explicit.values() for s, _ in split}
    pool = [p for p in pairs if p[0] not in held_out]  # no dev/test source sentence is trained on
    if not pool:
        raise MtkitError(f"no training pairs left: every source sentence of the corpus is also in the "
                         f"{' / '.join(f'data.{name}_src' for name in explicit)} file(s)")
    dev_size = 0 if "dev" in explicit else data.dev_size
    test_size = 0 if "test" in explicit else data.test_size
    if dev_size + test_size >= len(pool):
        raise MtkitError(f"the corpus has {len(pool)} pairs after cleaning, too few for data.dev_size "
                         f"({dev_size}) + data.test_size ({test_size}) plus a training split; lower the sizes, "
                         "give data.dev_src/test_src files or add data")
    edges = data.length_edges if data.stratify and test_size else None
    split = corpus.split(pool, dev_size=dev_size, test_size=test_size, seed=cfg.seed, stratify_edges=edges)
    return {"train": split.train, "dev": explicit.get("dev", split.dev), "test": explicit.get("test", split.test)}


def _read_held_out(src: Path, tgt: Path) -> list[tuple[str, str]]:
    """Return the normalised pairs of an explicit dev/test file pair: only empty lines and duplicates dropped."""
    return corpus.clean(sources.read_parallel_text(src, tgt), max_len=10**6, max_ratio=10**6).pairs


def _encode(tokenizer: Tokenizer, pairs: list[tuple[str, str]]) -> EncodedSplit:
    src = [s for s, _ in pairs]
    tgt = [t for _, t in pairs]
    return EncodedSplit(src, tgt, tokenizer.encode_src(src), tokenizer.encode_tgt(tgt))


def _flat(seqs: list[list[int]]) -> dict[str, Tensor]:
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.tensor([i for s in seqs for i in s], dtype=torch.int32)
    return {"ids": ids, "lengths": lengths}


def _unflat(stored: dict[str, Tensor]) -> list[list[int]]:
    return [chunk.tolist() for chunk in torch.split(stored["ids"], stored["lengths"].tolist())]


def _save(directory: Path, tokenizer: Tokenizer, encoded: dict[str, EncodedSplit], report: str) -> None:
    tokenizer.save(directory)
    for name, split in encoded.items():
        (directory / f"{name}.src").write_text("".join(s + "\n" for s in split.src_text), encoding="utf-8")
        (directory / f"{name}.tgt").write_text("".join(t + "\n" for t in split.tgt_text), encoding="utf-8")
        torch.save({"src": _flat(split.src_ids), "tgt": _flat(split.tgt_ids)}, directory / f"{name}.pt")
    (directory / "report.txt").write_text(report + "\n", encoding="utf-8")


def load_prepared(directory: Path, reused: bool = False) -> Prepared:
    """Return the prepared data stored in `directory` (its report without the batch line `prepare` adds)."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise MtkitError(f"{directory}: no prepared data here (meta.json missing); run `mtkit prepare CONFIG`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tokenizer = Tokenizer.load(directory)
    splits = {}
    for name in SPLITS:
        stored = torch.load(directory / f"{name}.pt", weights_only=True)
        src_text = (directory / f"{name}.src").read_text(encoding="utf-8").splitlines()
        tgt_text = (directory / f"{name}.tgt").read_text(encoding="utf-8").splitlines()
        splits[name] = EncodedSplit(src_text, tgt_text, _unflat(stored["src"]), _unflat(stored["tgt"]))
    report = (directory / "report.txt").read_text(encoding="utf-8").rstrip("\n")
    return Prepared(directory, meta["fingerprint"], tokenizer, splits, report, reused)


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
        corpus.length_report(splits, cfg.data.length_edges),
        "",
        f"tokenizer: {'joint' if tokenizer.joint else 'separate'} {cfg.tokenizer.model_type}, "
        f"vocabulary {tokenizer.src_vocab} (src) / {tokenizer.tgt_vocab} (tgt); "
        f"{pieces / max(1, sum(len(t.split()) for t in train.tgt_text)):.2f} target pieces per word",
    ]
    return "\n".join(lines)


def _batch_report(cfg: Config, train: EncodedSplit) -> str:
    """Return the line on training batches and their padding under the config's train.batch_tokens."""
    src_lengths, tgt_lengths = [len(s) for s in train.src_ids], [len(t) for t in train.tgt_ids]
    batches = batch_indices(src_lengths, tgt_lengths, cfg.train.batch_tokens, seed=cfg.seed)
    pad = padding_fraction(src_lengths, tgt_lengths, batches)
    return f"training batches: {len(batches)} of ≤{cfg.train.batch_tokens} tokens, padding {pad:.1%}"
