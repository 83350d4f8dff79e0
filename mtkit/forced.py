"""Teacher-forced losses of references: how well a model predicts each verse of a passage, with no search.

BLEU after beam search mixes what the model knows with search effects and the brevity penalty. Feeding the
reference instead and reading the negative log-likelihood (NLL) of each of its pieces measures the model
alone. For the passage set, each k-verse input's reference is split back into its verses, so every verse
gets its NLL alone (k = 1) and as the first, a middle or the last verse of a k-verse passage;
`mtkit.evaluate.position_losses` turns those records into paired increases over "alone".
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple, Sequence

import torch

from mtkit.data.batching import batch_indices, collate
from mtkit.data.tokenizer import Tokenizer
from mtkit.errors import MtkitError
from mtkit.model.seq2seq import Seq2Seq
from mtkit.train import forward_features

log = logging.getLogger(__name__)

# A scorer takes source and target piece ids and returns, per sentence, the NLL of each target piece and of
# the closing eos (len(tgt) + 1 values). `token_nll` is the model's; tests pass one whose answer is known.
Scorer = Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], list[list[float]]]


class VerseLoss(NamedTuple):
    """The summed NLL of one verse's reference pieces (its eos excluded) inside one input."""

    window: int
    verse: int  # place in its window (0, 1, ...)
    k: int  # verses in the input it was read in
    position: str  # "alone" (k = 1), "first", "middle" or "last"
    nll: float
    tokens: int


@torch.inference_mode()
def token_nll(model: Seq2Seq, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
              batch_tokens: int = 4000, device: torch.device = torch.device("cpu")) -> list[list[float]]:
    """Return, per sentence, the NLL (nats) of each target piece and of eos under teacher forcing (eval mode)."""
    model.eval()
    out: list[list[float]] = [[] for _ in src_ids]
    for index in batch_indices([len(s) for s in src_ids], [len(t) for t in tgt_ids], batch_tokens):
        batch = collate(src_ids, tgt_ids, index).to(device)
        features = forward_features(model, batch)                                   # (B, T, O)
        log_probs = model.decoder.logits(features).float().log_softmax(-1)          # (B, T, V)
        nll = -log_probs.gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)        # (B, T)
        for row, i in enumerate(index):
            out[i] = nll[row, : len(tgt_ids[i]) + 1].tolist()
    return out


def model_scorer(model: Seq2Seq, batch_tokens: int = 4000, device: torch.device = torch.device("cpu")) -> Scorer:
    """Return the Scorer that runs `model` (see `token_nll`)."""
    return lambda src_ids, tgt_ids: token_nll(model, src_ids, tgt_ids, batch_tokens, device)


def position_of(j: int, k: int) -> str:
    """Return where verse j (0-based) of a k-verse input stands: alone, first, middle or last."""
    return "alone" if k == 1 else "first" if j == 0 else "last" if j == k - 1 else "middle"


def passage_verse_losses(tokenizer: Tokenizer, scorer: Scorer, srcs: Sequence[str], refs: Sequence[str],
                         ks: Sequence[int], windows: Sequence[int], groups: Sequence[int]) -> list[VerseLoss]:
    """Return one VerseLoss per verse of every passage input (inputs as in the passage set: ks, windows, groups).

    Each verse's reference is the reference of its k = 1 input, and the pieces of a joined reference are its
    verses' pieces in a row (SentencePiece splits at spaces), which is checked: the first verse's pieces are
    the input's first pieces, and so on.
    """
    if not len(srcs) == len(refs) == len(ks) == len(windows) == len(groups):
        raise MtkitError(f"passage set: {len(srcs)} sources, {len(refs)} references, {len(ks)} sizes, "
                         f"{len(windows)} windows and {len(groups)} groups; give one of each per input")
    alone = {(w, g): ref for ref, k, w, g in zip(refs, ks, windows, groups) if k == 1}
    verse_ids = dict(zip(alone, tokenizer.encode_tgt(list(alone.values()))))
    src_ids, tgt_ids = tokenizer.encode_src(list(srcs)), tokenizer.encode_tgt(list(refs))
    nll = scorer(src_ids, tgt_ids)
    records = []
    for i, (k, w, g) in enumerate(zip(ks, windows, groups)):
        start = 0
        for j in range(k):
            verse = g * k + j
            if (w, verse) not in verse_ids:
                raise MtkitError(f"passage input {i + 1} (window {w}, k={k}) covers verse {verse}, which the set "
                                 "does not hold alone (k=1): the paired loss needs every verse alone")
            pieces = verse_ids[(w, verse)]
            if list(tgt_ids[i][start:start + len(pieces)]) != list(pieces):
                raise MtkitError(f"passage input {i + 1} (window {w}, k={k}): its reference's pieces are not its "
                                 f"verses' pieces in a row at verse {verse}; the tokenizer joins across spaces")
            records.append(VerseLoss(w, verse, k, position_of(j, k), float(sum(nll[i][start:start + len(pieces)])),
                                     len(pieces)))
            start += len(pieces)
        if start != len(tgt_ids[i]):
            raise MtkitError(f"passage input {i + 1} (window {w}, k={k}): {len(tgt_ids[i])} reference pieces, "
                             f"its verses have {start}")
    return records
