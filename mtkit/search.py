"""Greedy and batched beam search over a Seq2Seq, calling the same decoder step training uses.

Both work on a padded source batch and return small records. Scores are sums of log
probabilities (eos included); beam search ranks finished hypotheses by
`log_prob / length ** length_penalty` and stops a sentence once it holds `beam` finished ones.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from mtkit.config import DecodeConfig
from mtkit.data.batching import pad_sequences
from mtkit.data.tokenizer import BOS, EOS
from mtkit.model import Seq2Seq, select


class Hypothesis(NamedTuple):
    """One output sentence."""

    tokens: list[int]  # target ids, without bos/eos
    score: float  # ranking score: log_prob / length ** length_penalty
    attention: Tensor | None  # (T, S) weights for the emitted tokens; None without attention
    log_prob: float  # model score: sum of token log probabilities, eos included


def max_lengths(src_len: Tensor, ratio: float, extra: int) -> Tensor:
    """Return the output length limit of each sentence: ratio × source length + extra."""
    return (src_len.float() * ratio).ceil().long() + extra  # (B,)


def _log_probs(model: Seq2Seq, prev: Tensor, state: Any, memory: Any) -> tuple[Tensor, Any, Tensor | None]:
    out = model.decoder.step(prev, state, memory)
    return model.decoder.logits(out.features).float().log_softmax(-1), out.state, out.attention  # (N, V)


@torch.inference_mode()
def greedy(model: Seq2Seq, src: Tensor, src_len: Tensor, max_len: Tensor) -> list[Hypothesis]:
    """Return the greedy (most probable next token) output for each source sentence.

    Finished sentences leave the batch, a quarter of the rows at a time, so that the short
    outputs do not run as many steps as the longest one; copying the memory of the survivors
    costs less than computing the finished rows.
    """
    batch, device = src.size(0), src.device
    max_steps = int(max_len.max())
    state, memory = model.encode(src, src_len)
    limits = max_len.to(device)
    rows = torch.arange(batch, device=device)  # the sentence of each row still in the batch (N,)
    prev = torch.full((batch,), BOS, dtype=torch.long, device=device)  # (N,)
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # (N,)
    log_prob = torch.zeros(batch, device=device)  # (B,)
    out = torch.full((batch, max_steps), EOS, dtype=torch.long, device=device)  # (B, T)
    attn: Tensor | None = None  # (B, T, S), zeros after a sentence leaves
    for t in range(max_steps):
        lp, state, weights = _log_probs(model, prev, state, memory)  # (N, V)
        best_lp, prev = lp.max(-1)  # (N,), (N,)
        log_prob.index_add_(0, rows, best_lp.masked_fill(done, 0.0))
        out[rows, t] = prev.masked_fill(done, EOS)
        if weights is not None:
            if attn is None:
                attn = torch.zeros(batch, max_steps, weights.size(-1), device=device)
            attn[rows, t] = weights.float()
        done |= (prev == EOS) | (t + 1 >= limits[rows])
        if bool(done.all()):
            break
        if 4 * int(done.sum()) >= done.numel():  # drop the finished rows
            keep = (~done).nonzero().squeeze(1)  # (N',)
            rows, prev, done = rows[keep], prev[keep], done[keep]
            state, memory = select(state, keep), select(memory, keep)
    tokens = out[:, : t + 1].tolist()  # (B, T)
    attn = attn[:, : t + 1].cpu() if attn is not None else None  # (B, T, S)
    hyps = []
    for i, row in enumerate(tokens):
        n = row.index(EOS) if EOS in row else len(row)
        lp = float(log_prob[i])
        weights = attn[i, :n, : int(src_len[i])] if attn is not None else None
        hyps.append(Hypothesis(row[:n], lp, weights, lp))
    return hyps


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_len: Tensor,
    max_len: Tensor,
    beam: int,
    length_penalty: float,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Return the `n_best` hypotheses of each sentence, best first, from a batched beam search.

    All sentences of the batch and their `beam` hypotheses run as one (B·K) batch; a sentence
    leaves the batch once it has `beam` finished hypotheses. A beam of 1 reproduces `greedy`.
    Attention weights are kept per step with each row's parent row, and followed back only for the
    hypotheses returned: reordering a whole (B·K, t, S) history at every step costs O(t²).
    The step loop stays in one piece on purpose: scores, history, state, memory and the active
    sentences change together at every step, and pieces of it would pass all of them in and out.
    """
    batch, k, device = src.size(0), beam, src.device
    n_best = min(n_best, beam)
    state, memory = model.encode(src, src_len)
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B·K,)
    state = select(state, rows)  # memory keeps one row per sentence: its K beams read that row
    active = torch.arange(batch, device=device)  # original index of each active sentence (A,)
    scores = torch.full((batch, k), -math.inf, device=device)  # (A, K) summed log probs
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step does not pick duplicates
    history = torch.full((batch * k, 0), BOS, dtype=torch.long, device=device)  # (A·K, t)
    attn_steps: list[Tensor] = []  # step t: (A·K, S) weights of that step's rows
    parents: list[list[int]] = []  # step t: the row of step t each row of step t+1 continues
    prev = torch.full((batch * k,), BOS, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    ends_at: list[list[tuple[int, int]]] = [[] for _ in range(batch)]  # (step, row) of each finished one
    limits = max_len.to(device)

    for t in range(int(limits.max())):
        lp, state, weights = _log_probs(model, prev, state, memory)  # (A·K, V)
        vocab = lp.size(-1)
        candidates = (scores.unsqueeze(-1) + lp.view(-1, k, vocab)).view(-1, k * vocab)  # (A, K·V)
        top_scores, top_ids = candidates.topk(2 * k, dim=-1)  # (A, 2K)
        origin, token = top_ids // vocab, top_ids % vocab  # beam index, token id (A, 2K)
        is_eos = token == EOS
        last = (t + 1) >= limits[active]  # (A,) sentences at their length limit
        # Finished: eos among the top K candidates, or any live beam at the length limit.
        rank = torch.arange(2 * k, device=device).expand_as(token)
        ends = (is_eos & (rank < k)) | (last.unsqueeze(1) & (rank < k))
        ends &= top_scores > -math.inf
        if weights is not None:
            attn_steps.append(weights.float())  # (A·K, S)
        for a, j in ends.nonzero().tolist():
            sent = int(active[a])
            if len(finished[sent]) < k:
                flat = a * k + int(origin[a, j])
                finished[sent].append(_ended(history[flat].tolist(), int(token[a, j]), float(top_scores[a, j]),
                                             length_penalty))
                ends_at[sent].append((t, flat))
        # Continue with the K best candidates that did not end (stable: lower rank first).
        order = (is_eos.long() * 2 * k + rank).argsort(dim=-1)[:, :k]  # (A, K)
        scores = top_scores.gather(1, order)
        scores = scores.masked_fill(is_eos.gather(1, order), -math.inf)
        src_beam = origin.gather(1, order)  # (A, K)
        prev = token.gather(1, order).view(-1)  # (A·K,)
        done = last | torch.tensor([len(finished[s]) >= k for s in active.tolist()], device=device)
        flat_src = (torch.arange(active.numel(), device=device).unsqueeze(1) * k + src_beam).view(-1)  # (A·K,)
        keep = (~done).nonzero().squeeze(1)  # (A',)
        if keep.numel() == 0:
            break
        flat_keep = (keep.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)  # (A'·K,)
        reorder = flat_src.index_select(0, flat_keep)  # rows of the current batch to keep, in new order
        prev = prev.index_select(0, flat_keep)
        history = torch.cat([history.index_select(0, reorder), prev.unsqueeze(1)], 1)  # (A'·K, t+1)
        parents.append(reorder.tolist())
        state = select(state, reorder)
        if keep.numel() < active.numel():  # only leaving sentences change the memory
            memory = select(memory, keep)
        scores = scores.index_select(0, keep)
        active = active.index_select(0, keep)

    return [_best(hyps, ends, attn_steps, parents, int(n_src), n_best)
            for hyps, ends, n_src in zip(finished, ends_at, src_len.tolist())]


def _best(hyps: list[Hypothesis], ends_at: list[tuple[int, int]], attn_steps: list[Tensor],
          parents: list[list[int]], n_src: int, n_best: int) -> list[Hypothesis]:
    """Return a sentence's `n_best` finished hypotheses, best first, each with its attention (T, S) when kept."""
    best = sorted(range(len(hyps)), key=lambda i: -hyps[i].score)[:n_best]
    if not attn_steps:
        return [hyps[i] for i in best]
    # the weights of each emitted token, eos excluded
    return [hyps[i]._replace(attention=_attention_path(attn_steps, parents, *ends_at[i])
                             [: len(hyps[i].tokens), :n_src].cpu()) for i in best]


def _ended(history: list[int], token: int, log_prob: float, length_penalty: float) -> Hypothesis:
    """Return the hypothesis that ends with `token` after `history` (eos is scored but not kept)."""
    tokens = history if token == EOS else history + [token]
    length = len(history) + 1  # eos counts towards the length it is normalised by
    return Hypothesis(tokens, log_prob / (max(length, 1) ** length_penalty), None, log_prob)  # attention: later


def _attention_path(steps: list[Tensor], parents: list[list[int]], t: int, row: int) -> Tensor:
    """Return the weights (t+1, S) of steps 0..t along the beam that is row `row` at step t."""
    rows = [row]
    for step in range(t, 0, -1):
        rows.append(parents[step - 1][rows[-1]])  # the row it continued at the step before
    return torch.stack([steps[step][r] for step, r in enumerate(reversed(rows))])  # (t+1, S)


def decode(
    model: Seq2Seq,
    src_ids: list[list[int]],
    settings: DecodeConfig = DecodeConfig(),
    n_best: int = 1,
    device: torch.device | str = "cpu",
) -> list[list[Hypothesis]]:
    """Return n-best lists for many id sequences, decoded in batches of similar length, in input order.

    `settings` gives the beam, length penalty, output length limits and batch size (a run's
    `cfg.decode`; greedy is `replace(cfg.decode, beam=1)`). Sorting by length keeps padding (and
    wasted steps) small; the original order is restored. An empty sequence gets an empty
    hypothesis without running the model.
    """
    model.eval()
    results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, None, 0.0)] for _ in src_ids]
    order = sorted((i for i, s in enumerate(src_ids) if s), key=lambda i: len(src_ids[i]))
    for start in range(0, len(order), settings.batch_size):
        index = order[start : start + settings.batch_size]
        src, src_len = pad_sequences([src_ids[i] for i in index])
        src, src_len = src.to(device), src_len.to(device)
        limits = max_lengths(src_len, settings.max_len_ratio, settings.max_len_extra)
        if settings.beam == 1 and n_best == 1:
            hyps = [[h] for h in greedy(model, src, src_len, limits)]
        else:
            hyps = beam_search(model, src, src_len, limits, settings.beam, settings.length_penalty, n_best)
        for i, h in zip(index, hyps):
            results[i] = h
    return results
