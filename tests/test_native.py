"""native.c's loops give the same bits on one thread and on several (sizes large enough to be split)."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import Tensor

import mtkit.model.native as native
from conftest import on_threads

B, S, A, K, H = 16, 40, 32, 24, 64  # B·S·(A + K) and 32·H·16 are above MTK_SPLIT_MIN: the calls are split


pytestmark = pytest.mark.usefixtures("compiled")


def assert_same_bits_on(fn: Callable[[], list[Tensor]]) -> None:
    one = on_threads(1, fn)
    for threads in (2, 3):
        for i, (got, want) in enumerate(zip(on_threads(threads, fn), one)):
            assert torch.equal(got, want), f"output {i} differs on {threads} threads"


def attention_inputs(beams: int = 1) -> tuple[Tensor, ...]:
    torch.manual_seed(0)
    lengths = torch.randint(1, S + 1, (B,))
    mask = (torch.arange(S)[None] < lengths[:, None]).contiguous()
    return (torch.randn(B * beams, A), torch.randn(B, S, A), torch.randn(A), mask, torch.randn(B, S, K))


@pytest.mark.parametrize("beams", [1, 4])
def test_additive_forward_does_not_depend_on_threads(beams: int) -> None:
    q, keys, v, mask, states = attention_inputs(beams)

    def run() -> list[Tensor]:
        alpha, context = torch.full((B * beams, S), float("nan")), torch.full((B * beams, K), float("nan"))
        native.additive_forward(q, keys, v, mask, states, alpha, context)
        return [alpha, context]

    assert_same_bits_on(run)
    alpha, _ = run()
    torch.testing.assert_close(alpha.sum(1), torch.ones(B * beams))
    assert torch.all(alpha.view(B, beams, S).masked_select(~mask.unsqueeze(1)) == 0)


def test_additive_backward_does_not_depend_on_threads() -> None:
    q, keys, v, mask, states = attention_inputs()
    alpha, context = torch.empty(B, S), torch.empty(B, K)
    native.additive_forward(q, keys, v, mask, states, alpha, context)
    d_context, d_alpha = torch.randn(B, K), torch.randn(B, S)

    def run() -> list[Tensor]:
        d_q, d_v, de_sum, de_tanh2 = torch.empty(B, A), torch.zeros(B, A), torch.zeros(B, S), torch.zeros(B, S, A)
        for _ in range(3):  # three steps add into the same sums, as a recurrence's backward does
            native.additive_backward(q, keys, v, mask, states, alpha, d_context, d_alpha, d_q, d_v, de_sum, de_tanh2)
        return [d_q, d_v, de_sum, de_tanh2]

    assert_same_bits_on(run)
    assert run()[1].abs().sum() > 0


def test_gru_cell_does_not_depend_on_threads() -> None:
    torch.manual_seed(0)
    rows = 32
    gi, gh, s_prev, d_s = torch.randn(rows, 3 * H), torch.randn(rows, 3 * H), torch.randn(rows, H), torch.randn(rows, H)

    def run() -> list[Tensor]:
        rz, n, ghn, s = torch.empty(rows, 2 * H), torch.empty(rows, H), torch.empty(rows, H), torch.empty(rows, H)
        native.gru_forward(gi, gh, s_prev, rz, n, ghn, s)
        d_gi, d_gh, d_prev = torch.empty(rows, 3 * H), torch.empty(rows, 3 * H), torch.empty(rows, H)
        native.gru_backward(d_s, s_prev, rz, n, ghn, d_gi, d_gh, d_prev)
        return [rz, n, ghn, s, d_gi, d_gh, d_prev]

    assert_same_bits_on(run)


@pytest.mark.parametrize("grad", [True, False])
def test_cross_entropy_rows_do_not_depend_on_threads(grad: bool) -> None:
    torch.manual_seed(0)
    rows, vocab = 20, 3000  # not a multiple of the 256-column blocks grad_b is summed in
    logits, bias, target = torch.randn(rows, vocab) * 3, torch.randn(vocab), torch.randint(0, vocab, (rows,))

    def run() -> list[Tensor]:
        out, nll = logits.clone(), torch.empty(rows)
        grad_b = torch.full((vocab,), 0.5) if grad else None  # it adds to what is there
        native.cross_entropy_rows(out, bias, target, 0.1, nll, grad_b)
        return [out, nll] + ([grad_b] if grad else [])

    assert_same_bits_on(run)
    out, nll, *rest = run()
    want = torch.nn.functional.cross_entropy(logits + bias, target, reduction="none", label_smoothing=0.1)
    torch.testing.assert_close(nll, want, atol=1e-5, rtol=1e-5)
    if grad:
        torch.testing.assert_close(rest[0], 0.5 + out.sum(0), atol=1e-5, rtol=1e-5)
