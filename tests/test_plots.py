import struct
from dataclasses import replace

import numpy as np
import pytest

from mtkit.errors import MtkitError
from mtkit.evaluate import BucketScore, SystemScore
from mtkit.plots import (merge_subwords, plot_alignment_lines, plot_attention_heatmap,
                         plot_bleu_by_length, plot_length_study, text_grid)


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def system(name: str, bleus: list[float | None]) -> SystemScore:
    labels = ["1-10", "11-20", "21+"]
    bounds = [(0, 10), (11, 20), (21, None)]
    buckets = [BucketScore(label, low, high, 0 if b is None else 5, b,
                           None if b is None else b - 2, None if b is None else b + 2, b)
               for label, (low, high), b in zip(labels, bounds, bleus)]
    return SystemScore(name, 20.0, 40.0, "bleu-sig", "chrf-sig", 10, buckets, edges=(10, 20))


def attention(num_tgt: int, num_src: int, seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).random((num_tgt, num_src)) ** 4
    return w / w.sum(axis=1, keepdims=True)  # (T, S), rows sum to 1


def test_bleu_by_length_png(tmp_path):
    out = plot_bleu_by_length([system("a", [20.0, None, 15.0]), system("b", [18.0, 17.0, 10.0])],
                              tmp_path / "figs" / "bleu.png")
    assert out.exists() and png_size(out) == (1200, 750)  # 8 × 5 in at 150 dpi


def paired_system(name: str, bleus: list[float], intervals: list[tuple[float, float]]) -> SystemScore:
    from mtkit.evaluate import PairedRatio

    paired = [PairedRatio(k, 120 // k, 22.0 * k, b, b / bleus[0], lo, hi, None, None, None)
              for k, b, (lo, hi) in zip((1, 2, 3), bleus, intervals)]
    return replace(system(name, bleus), paired=paired, windows=10)


def test_length_study_has_two_panels_side_by_side_and_draws_the_paired_curve(tmp_path):
    verses = [system("a", [20.0, 18.0, 15.0]), system("b", [30.0, 31.0, 29.0])]
    passages = [paired_system("a", [20.0, 15.0, 10.0], [(1, 1), (0.7, 0.8), (0.45, 0.55)]),
                paired_system("b", [30.0, 29.0, 29.5], [(1, 1), (0.95, 0.99), (0.96, 1.01)])]
    out = plot_length_study(verses, passages, tmp_path / "study.png")
    assert png_size(out) == (2100, 750)  # 14 × 5 in at 150 dpi
    from matplotlib.figure import Figure

    from mtkit.plots import _draw_paired

    ax = Figure().subplots()
    _draw_paired(ax, passages)
    # x: mean source words at each k, y: BLEU of the same verses; the band is BLEU(k=1) × the ratio's interval
    assert ax.lines[0].get_xydata().tolist() == [[22.0, 20.0], [44.0, 15.0], [66.0, 10.0]]
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(20.0 * 0.45) and band[:, 1].max() == pytest.approx(20.0)
    with pytest.raises(MtkitError, match="paired ratios"):
        plot_length_study(verses, [system("a", [1.0, 2.0, 3.0])], tmp_path / "none.png")


def test_heatmap_png_grows_with_tokens(tmp_path):
    small = plot_attention_heatmap(["a", "b"], ["x", "y", "z"], attention(3, 2), tmp_path / "s.png")
    large = plot_attention_heatmap([f"src{i}" for i in range(30)], [f"tgt{i}" for i in range(25)],
                                   attention(25, 30), tmp_path / "l.png", title="t")
    (sw, sh), (lw, lh) = png_size(small), png_size(large)
    assert lw > 2 * sw and lh > 2 * sh


@pytest.mark.parametrize("plot", [plot_attention_heatmap, plot_alignment_lines])
def test_a_two_line_title_gets_room_for_both_lines_and_its_longest(tmp_path, plot):
    label = "cross-attention, mean of 3 layers, mean of 4 heads"  # what `mtkit attention` puts on line two
    tgt = [f"x{i}" for i in range(8)]  # tall enough to be above the heatmap's smallest height
    one = plot(["a", "b"], tgt, attention(8, 2), tmp_path / "one.png", title="Attention: x")
    two = plot(["a", "b"], tgt, attention(8, 2), tmp_path / "two.png", title=f"Attention: x\n{label}")
    (w1, h1), (w2, h2) = png_size(one), png_size(two)
    assert h2 > h1 and w2 >= len(label) * 12 * 0.5 / 72 * 150  # about half an em a character at 12 pt


def test_alignment_lines_png(tmp_path):
    out = plot_alignment_lines(["le", "chat", "noir"], ["the", "black", "cat"],
                               np.eye(3)[[0, 2, 1]], tmp_path / "lines.png", title="t")
    width, height = png_size(out)
    assert width >= 600 and height >= 300


def test_weights_must_match_tokens(tmp_path):
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        plot_attention_heatmap(["a", "b", "c"], ["x"], attention(2, 3), tmp_path / "x.png")


def test_merge_subwords_hand_example():
    src = ["▁the", "▁ze", "bra", "</s>"]
    tgt = ["▁le", "▁zè", "bre", "</s>"]
    weights = np.array([[0.7, 0.1, 0.1, 0.1],
                        [0.0, 0.6, 0.4, 0.0],
                        [0.0, 0.2, 0.6, 0.2],
                        [0.1, 0.0, 0.0, 0.9]])
    src_words, tgt_words, merged = merge_subwords(src, tgt, weights)
    assert src_words == ["the", "zebra", "</s>"]
    assert tgt_words == ["le", "zèbre", "</s>"]
    expected = np.array([[0.7, 0.2, 0.1],
                         [0.0, 0.9, 0.1],   # mean of rows (0, 1.0, 0) and (0, 0.8, 0.2)
                         [0.1, 0.0, 0.9]])
    np.testing.assert_allclose(merged, expected)


def test_merge_subwords_rows_sum_to_one():
    src = ["▁a", "b", "c", "▁d", "▁e", "f", "."]
    tgt = ["▁x", "y", "▁z", "▁w", "v", "u"]
    _, _, merged = merge_subwords(src, tgt, attention(len(tgt), len(src)).tolist())
    assert merged.shape == (3, 3)
    np.testing.assert_allclose(merged.sum(axis=1), np.ones(3))


def test_text_grid_one_row_per_target_token():
    src = ["the", "federal", "court", "decided", "yesterday"]
    tgt = ["das", "Bundesgericht", "entschied", "gestern", "</s>"]
    weights = attention(len(tgt), len(src))
    weights[0] = [1.0, 0, 0, 0, 0]
    grid = text_grid(src, tgt, weights)
    rows = [line for line in grid.splitlines() if "│" in line]
    assert len(rows) == len(tgt)
    # Labels are cut at 12 characters ("Bundesgeric…"), so rows are indented to 12.
    assert rows[0] == "das".rjust(12) + " │" + "██" + "  " * 4
    assert rows[1].startswith("Bundesgeric…")
    assert max(len(line) for line in grid.splitlines()) <= 120


def test_training_curves_draw_bleu_and_loss_against_minutes(tmp_path):
    from mtkit.plots import Curve, plot_training_curves

    curves = [Curve("a", [5.0, 10.0], [1.0, 8.0], [4.0, 3.0]), Curve("b", [6.0], [2.0], [3.5])]
    out = plot_training_curves(curves, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one run"):
        plot_training_curves([], tmp_path / "none.png")


def test_importing_and_drawing_leave_the_processs_matplotlib_backend_alone(tmp_path):
    import subprocess
    import sys

    code = ("import sys, matplotlib; from mtkit.plots import plot_bleu_by_length; "
            "from mtkit.evaluate import BucketScore, SystemScore; "
            f"plot_bleu_by_length([SystemScore('a', 1.0, 1.0, 's', 's', 1, [BucketScore('1-10', 0, None, 1, 1.0, None, None, 1.0)])], {str(tmp_path / 'b.png')!r}); "
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**__import__("os").environ, "MPLBACKEND": "svg"})
    assert done.stdout.split() == ["svg", "False"]  # a notebook's backend survives; pyplot is never loaded
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_attention_samples_of_a_training_step_are_drawn_one_file_each_skipping_none(tmp_path):
    from mtkit.plots import AttentionSample, plot_attention_samples

    sample = AttentionSample(["▁a", "▁b"], ["▁x", "▁y", "</s>"], np.full((3, 2), 0.5))
    paths = plot_attention_samples([sample, None, sample], tmp_path / "attention", 40, "additive attention")
    assert [p.name for p in paths] == ["dev0_step0000040.png", "dev2_step0000040.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
