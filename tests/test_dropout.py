"""mtkit's Dropout: torch's distribution from native.c's counter-based masks; the backward rebuilds the same mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mtkit.model.native as native
from mtkit.model.dropout import Dropout
from conftest import on_threads


def kept(p: float, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return Dropout(p)(torch.ones(shape)) != 0


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_each_element_is_kept_with_probability_1_minus_p_and_scaled(compiled: None, p: float) -> None:
    torch.manual_seed(0)
    x = torch.randn(500, 2000)
    y = Dropout(p)(x)
    keep = y != 0
    n = keep.numel()
    assert abs(keep.float().mean().item() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[keep], x[keep] / (1 - p))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1].item()


def test_masks_show_no_correlation_between_neighbours_rows_or_calls(compiled: None) -> None:
    mask = kept(0.5, (1000, 1000))
    bound = 5 / math.sqrt(mask.numel())  # five standard errors of a correlation of independent coins
    assert abs(correlation(mask[:, :-1], mask[:, 1:])) < bound  # along a row
    assert abs(correlation(mask[:-1], mask[1:])) < bound  # between rows
    torch.manual_seed(0)
    dropout = Dropout(0.5)
    first, second = dropout(torch.ones(1000, 1000)) != 0, dropout(torch.ones(1000, 1000)) != 0
    assert abs(correlation(first, second)) < bound  # consecutive calls draw new seeds


def test_torch_seed_decides_the_mask(compiled: None) -> None:
    assert torch.equal(kept(0.3, (64, 100), seed=1), kept(0.3, (64, 100), seed=1))
    assert not torch.equal(kept(0.3, (64, 100), seed=1), kept(0.3, (64, 100), seed=2))


def test_mask_follows_logical_order_not_memory_layout(compiled: None) -> None:
    base = torch.randn(30, 20, 16)
    for x in (base.transpose(0, 1), base.transpose(1, 2), base[:, ::2], base.view(5, 6, 20, 16)):
        torch.manual_seed(4)
        got = Dropout(0.4)(x)
        torch.manual_seed(4)
        want = Dropout(0.4)(x.contiguous())
        assert got.shape == x.shape
        assert torch.equal(got, want)


def test_gradient_is_the_forward_mask_scaled(compiled: None) -> None:
    x = torch.randn(20, 30, 16).transpose(0, 1).requires_grad_()  # time-major, as the decoder's features are
    torch.manual_seed(5)
    y = Dropout(0.25)(x)
    grad = torch.randn(30, 16, 20).permute(0, 2, 1)  # a gradient in yet another layout
    y.backward(grad)
    keep = y != 0
    assert torch.equal(x.grad != 0, keep)  # the same mask (no gradient element here is exactly 0)
    torch.testing.assert_close(x.grad, grad * keep / 0.75)
    assert 0.65 < keep.float().mean() < 0.85


def test_same_bits_on_any_thread_count(compiled: None) -> None:
    x = torch.randn(64, 50, 128)

    def drop() -> list[torch.Tensor]:
        torch.manual_seed(6)
        return [Dropout(0.2)(x)]

    want = on_threads(1, drop)[0]
    assert all(torch.equal(on_threads(threads, drop)[0], want) for threads in (2, 3))


def test_eval_mode_zero_and_one() -> None:
    x = torch.randn(8, 10)
    dropout = Dropout(0.3).eval()
    assert dropout(x) is x
    assert Dropout(0.0)(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)


def test_torch_dropout_where_native_is_off() -> None:
    native.set_enabled(False)
    try:
        torch.manual_seed(7)
        got = Dropout(0.3)(torch.ones(50, 40))
        torch.manual_seed(7)
        want = F.dropout(torch.ones(50, 40), 0.3, True)
    finally:
        native.set_enabled(True)
    assert torch.equal(got, want)
