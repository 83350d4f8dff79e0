"""Teacher-forced losses by position in a passage: a scorer with a known answer, and the model's own losses."""

from __future__ import annotations

import math

import pytest
import torch

from mtkit.data.batching import collate
from mtkit.errors import MtkitError
from mtkit.evaluate import position_losses
from mtkit.forced import VerseLoss, passage_verse_losses, position_of, token_nll
from mtkit.loss import target_loss
from mtkit.train import forward_features


class WordTokenizer:
    """One piece per whitespace word, ids from a growing table: pieces of a joined text are its parts' in a row."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def _encode(self, texts):
        return [[self.ids.setdefault(w, 4 + len(self.ids)) for w in t.split()] for t in texts]

    encode_src = encode_tgt = _encode


def passage_set(windows: int, size: int, max_k: int):
    """Return (srcs, refs, ks, windows, groups) of `windows` windows of `size` made-up 3-word verses."""
    rows = []
    for w in range(windows):
        verses = [f"v{w}x{i}a v{w}x{i}b v{w}x{i}c" for i in range(size)]
        for k in range(1, max_k + 1):
            for g in range(size // k):
                text = " ".join(verses[g * k:(g + 1) * k])
                rows.append((text, text, k, w, g))
    return [list(col) for col in zip(*rows)]


def forgetful(after: int, low: float = 0.1, high: float = 2.0):
    """A scorer that predicts the first `after` target pieces well and everything later badly (known answer)."""
    return lambda src_ids, tgt_ids: [[low if t < after else high for t in range(len(tgt) + 1)] for tgt in tgt_ids]


def test_a_model_that_forgets_after_one_verse_loses_the_later_verses_and_not_the_first():
    srcs, refs, ks, windows, groups = passage_set(20, 12, 4)
    records = passage_verse_losses(WordTokenizer(), forgetful(after=3), srcs, refs, ks, windows, groups)
    assert len(records) == 4 * 20 * 12  # every verse at k = 1..4
    assert {r.tokens for r in records} == {3}
    by = {(p.k, p.position): p for p in position_losses(records, n_boot=200)}
    assert sorted(by) == [(2, "first"), (2, "last"), (3, "first"), (3, "last"), (3, "middle"),
                          (4, "first"), (4, "last"), (4, "middle")]
    for (k, position), p in by.items():
        assert p.alone == pytest.approx(0.1)  # a verse alone is all within the first 3 pieces
        expected = 0.0 if position == "first" else 2.0 - 0.1
        assert p.increase == pytest.approx(expected) and p.ci_low == pytest.approx(expected)
        assert p.ci_high == pytest.approx(expected)  # every window the same: no spread
    assert by[(4, "middle")].verses == 3 * 2 * 20 and by[(3, "last")].verses == 4 * 20  # groups × verses × windows


def test_forgetting_midway_through_a_verse_splits_its_loss_and_the_interval_reflects_windows():
    srcs, refs, ks, windows, groups = passage_set(30, 12, 3)
    # forgets after 4 pieces: a pair's first verse is fine, its second loses 2 of 3 pieces
    records = passage_verse_losses(WordTokenizer(), forgetful(after=4), srcs, refs, ks, windows, groups)
    by = {(p.k, p.position): p for p in position_losses(records, n_boot=200)}
    assert by[(2, "last")].increase == pytest.approx((0.1 + 2 * 2.0) / 3 - 0.1)
    # Now half the windows forget and half do not: the increase halves and the interval widens around it.
    half = [r if r.window % 2 or r.k == 1 else r._replace(nll=0.1 * r.tokens) for r in records]
    p = {(q.k, q.position): q for q in position_losses(half, n_boot=500)}[(2, "last")]
    assert p.increase == pytest.approx(by[(2, "last")].increase / 2)
    assert p.ci_low < p.increase < p.ci_high and p.ci_low > 0


def test_positions_and_a_set_without_single_verses_are_refused():
    assert [position_of(j, 4) for j in range(4)] == ["first", "middle", "middle", "last"]
    assert position_of(0, 1) == "alone"
    srcs, refs, ks, windows, groups = passage_set(2, 6, 2)
    keep = [i for i, k in enumerate(ks) if k == 2]
    with pytest.raises(MtkitError, match="does not hold alone"):
        passage_verse_losses(WordTokenizer(), forgetful(3), *[[col[i] for i in keep]
                                                              for col in (srcs, refs, ks, windows, groups)])
    with pytest.raises(MtkitError, match="no loss alone"):
        position_losses([VerseLoss(0, 0, 2, "first", 1.0, 3)])


def test_token_nll_is_the_models_own_training_loss_split_by_piece(reversal_model):
    src_ids = [[5, 6, 7, 8], [9, 10, 11], [4, 12, 13, 5, 6]]
    tgt_ids = [list(reversed(s)) for s in src_ids]
    nll = token_nll(reversal_model, src_ids, tgt_ids, batch_tokens=5)  # small batches: order must come back
    assert [len(row) for row in nll] == [5, 4, 6]  # each piece and eos
    batch = collate(src_ids, tgt_ids, [0, 1, 2])
    with torch.inference_mode():
        total = float(target_loss(reversal_model.decoder, forward_features(reversal_model, batch), batch.tgt_out))
    assert math.fsum(x for row in nll for x in row) == pytest.approx(total, rel=1e-3, abs=1e-5)
    assert max(x for row in nll for x in row) < 1.0  # a trained reversal model predicts the reversal
