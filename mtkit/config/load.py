"""Reading a configuration: YAML files, `key=value` overrides, and checking every value against the schema.

This is the one place YAML is read. `load_config` checks every key and value against the types and
ranges in `mtkit.config.schema` and raises `MtkitError` with the full key path, the bad value and
what is allowed ("did you mean ...?" for misspelled keys); then the combinations no single key can
check (e.g. dot attention's sizes). Keys that older versions wrote are read under their new names.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import types
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from mtkit.buckets import LengthBuckets
from mtkit.config.schema import Config, ModelConfig, Range
from mtkit.errors import MtkitError

log = logging.getLogger(__name__)

# Keys older versions wrote, read as the key they became: both edges are now the one top-level `length_edges`
# (data's first, as the prepared split was drawn with it).
MOVED = {("data", "length_edges"): "length_edges", ("eval", "edges"): "length_edges"}


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Return the Config in YAML file `path` (defaults when None) with `key=value` overrides applied."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise MtkitError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise MtkitError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
        except UnicodeDecodeError as err:
            raise MtkitError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise MtkitError(f"{path}: a config must be a mapping of sections (data:, model:, ...)")
        raw = loaded
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MtkitError(f"--set {item!r}: write overrides as key=value, e.g. model.hidden_dim=256")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise MtkitError(f"--set {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                             "quote it, e.g. key='[x'") from None
        _set_path(raw, key.strip(), parsed)
    where = f"{path}: " if path is not None else ""
    cfg = _build(Config, _moved(raw, where), prefix="", where=where)
    _check_combinations(cfg, where)
    return cfg


def _check_combinations(cfg: Config, where: str) -> None:
    """Reject settings that are valid one by one but not together."""
    data = cfg.data
    needed = {"text": ("src_file", "tgt_file"), "tsv": ("tsv_file",), "bible": ()}[data.source]
    for key in needed:
        if getattr(data, key) is None:
            raise MtkitError(f"{where}`data.{key}` is required when `data.source` is {data.source!r}")
    if data.ref_column is not None and data.source != "tsv":
        raise MtkitError(f"{where}`data.ref_column` names a TSV column; it is read only when `data.source` is 'tsv' "
                         f"(here {data.source!r})")
    for split in ("dev", "test"):
        src, tgt = getattr(data, f"{split}_src"), getattr(data, f"{split}_tgt")
        if (src is None) != (tgt is None):
            raise MtkitError(f"{where}`data.{split}_src` and `data.{split}_tgt` must be given together")
    if data.min_len > data.max_len:
        raise MtkitError(f"{where}`data.min_len` ({data.min_len}) is larger than `data.max_len` ({data.max_len})")
    try:
        LengthBuckets(cfg.length_edges)
    except MtkitError as err:
        raise MtkitError(f"{where}`length_edges`: {err}") from None
    _check_model_combinations(cfg.model, where)
    _check_transformer_fit(cfg, where)


def check_model(cfg: ModelConfig, where: str = "") -> None:
    """Raise MtkitError naming the key of the first bad value or combination in a `model` section.

    `load_config` checks every key already; this is for a ModelConfig built in Python (tests, notebooks).
    """
    _build(ModelConfig, _plain(asdict(cfg)), prefix="model.", where=where)
    _check_model_combinations(cfg, where)


def _check_model_combinations(cfg: ModelConfig, where: str) -> None:
    if cfg.arch == "transformer":
        _check_transformer(cfg, where)
        return
    if cfg.init == "backward_first" and not cfg.bidirectional:
        raise MtkitError(f"{where}`model.init`: backward_first starts the decoder from the backward encoder's "
                         "first state, which needs model.bidirectional: true; set model.init to "
                         "last, mean or zero for a unidirectional encoder")
    key_dim = (2 if cfg.bidirectional else 1) * cfg.hidden_dim
    if cfg.attention.kind == "dot" and cfg.dec_hidden_dim != key_dim:
        raise MtkitError(
            f"{where}`model.attention.kind`: dot scores decoder states against encoder states directly, so "
            f"model.dec_hidden_dim ({cfg.dec_hidden_dim}) must equal the encoder state size, "
            f"model.hidden_dim × {'2 (bidirectional)' if cfg.bidirectional else '1'} = {key_dim}; "
            f"change one of them or use general, scaled_dot or additive attention")
    if cfg.decoder == "luong" and cfg.attention.kind == "none":
        raise MtkitError(f"{where}`model.decoder`: luong needs attention, but model.attention.kind is none; "
                         "for the no-attention baseline (RNNencdec) set model.decoder: bahdanau")
    if cfg.maxout and cfg.decoder != "bahdanau":
        raise MtkitError(f"{where}`model.maxout` applies to the bahdanau deep output only; "
                         "set model.maxout: false or model.decoder: bahdanau")
    if cfg.tie_embeddings and cfg.out_dim != cfg.emb_dim:
        raise MtkitError(f"{where}`model.tie_embeddings` needs model.out_dim ({cfg.out_dim}) == "
                         f"model.emb_dim ({cfg.emb_dim}); make them equal or set tie_embeddings: false")


def _check_transformer(cfg: ModelConfig, where: str) -> None:
    t = cfg.transformer
    if t.d_model % t.heads:
        raise MtkitError(f"{where}`model.transformer.heads`: d_model ({t.d_model}) must be divisible by heads "
                         f"({t.heads}), so that every head gets d_model / heads dimensions")
    if cfg.attention.kind == "none":
        raise MtkitError(f"{where}`model.attention.kind`: none asks for no attention, but the Transformer attends "
                         "everywhere (multi-head scaled dot product); model.attention applies to RNNs only, remove it "
                         "or set model.arch: rnn for the RNNencdec baseline")


def _check_transformer_fit(cfg: Config, where: str) -> None:
    """The Transformer against the other sections: shared embeddings need one tokenizer, and learned
    positions end at max_positions, so the longest source and output search may read must fit."""
    t, d = cfg.model.transformer, cfg.decode
    if cfg.model.arch != "transformer":
        return
    if t.share_embeddings and not cfg.tokenizer.joint:
        raise MtkitError(f"{where}`model.transformer.share_embeddings` needs one vocabulary for both languages; "
                         "set tokenizer.joint: true or share_embeddings: false")
    if t.positions != "learned":
        return
    longest = max(d.max_src_len, math.ceil(d.max_src_len * d.max_len_ratio) + d.max_len_extra)
    if t.max_positions < longest:
        raise MtkitError(f"{where}`model.transformer.max_positions`: got {t.max_positions}, but search may read "
                         f"{longest} positions (decode.max_src_len {d.max_src_len} × decode.max_len_ratio "
                         f"{d.max_len_ratio} + decode.max_len_extra {d.max_len_extra}); raise it or lower those")


def update(cfg: Config, changes: dict[str, Any], where: str = "") -> Config:
    """Return `cfg` with dotted keys set (e.g. {"decode.beam": 3}), checked as `load_config` checks a file.

    A value of None leaves the key as it is, so command-line options that were not given change nothing.
    """
    raw = config_to_dict(cfg)
    for key, value in changes.items():
        if value is not None:
            _set_path(raw, key, value)
    updated = _build(Config, _moved(raw, where), prefix="", where=where)
    _check_combinations(updated, where)
    return updated


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Return `cfg` as plain YAML-able data (tuples become lists)."""
    return _plain(asdict(cfg))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Return the Config stored by `config_to_dict` (e.g. inside a checkpoint)."""
    return _build(Config, _moved(data, ""), prefix="", where="")


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML (every value, defaults included)."""
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")


def _moved(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Return `raw` with the keys of older versions (MOVED) under their new names."""
    found: dict[str, Any] = {}
    raw = dict(raw)
    for (section, key), new in MOVED.items():
        part = raw.get(section)
        if isinstance(part, dict) and key in part:
            raw[section] = {k: v for k, v in part.items() if k != key}
            found.setdefault(new, []).append((f"{section}.{key}", part[key]))
    for new, olds in found.items():
        if new in raw:
            continue  # the new key wins over the old ones
        raw[new] = olds[0][1]
        if any(value != olds[0][1] for _, value in olds):
            log.warning("%s%s: one key, `%s`, replaces them; using %s = %s", where,
                        " and ".join(f"`{k}` = {v}" for k, v in olds), new, olds[0][0], olds[0][1])
    return raw


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MtkitError(f"--set {dotted}: `{part}` is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, where: str) -> Any:
    section = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise MtkitError(f"{where}`{section}` must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f"; valid keys: {', '.join(fields)}"
            raise MtkitError(f"{where}`{full}`: unknown key{hint}")
        values[key] = _check(hints[key], value, full, where, fields[key].metadata.get("range"))
    return cls(**values)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list of " + _type_name(typing.get_args(tp)[0])
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _check(tp: Any, value: Any, key: str, where: str, bounds: Range | None = None) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, prefix=f"{key}.", where=where)
    try:
        result = _coerce(tp, value)
    except (TypeError, ValueError):
        raise MtkitError(f"{where}`{key}`: got {value!r}; expected {_type_name(tp)}") from None
    if bounds is not None and isinstance(result, (int, float)) and not isinstance(result, bool):
        low, high = bounds
        if (low is not None and result < low) or (high is not None and result > high):
            allowed = f"at least {low}" if high is None else f"between {low} and {high}"
            raise MtkitError(f"{where}`{key}`: got {value!r}; must be {allowed}")
    return result


def _coerce(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ValueError
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value)
            except (TypeError, ValueError):
                continue
        raise ValueError
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError
        item = typing.get_args(tp)[0]
        return tuple(_coerce(item, v) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError
    raise TypeError(f"unsupported config type {tp}")
