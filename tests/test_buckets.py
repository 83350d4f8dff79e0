import pytest

from mtkit.buckets import LengthBuckets
from mtkit.errors import MtkitError

EDGES = (10, 20, 30, 40, 50, 60)


@pytest.mark.parametrize("n, index, label", [(0, 0, "0-10"), (1, 0, "0-10"), (10, 0, "0-10"), (11, 1, "11-20"),
                                             (60, 5, "51-60"), (61, 6, "61+"), (500, 6, "61+")])
def test_edges_are_upper_inclusive_and_the_first_bucket_says_it_starts_at_0(n, index, label):
    buckets = LengthBuckets(EDGES)
    assert buckets.index(n) == index and buckets.labels[index] == label
    assert buckets.lows[index] <= n and (buckets.highs[index] is None or n <= buckets.highs[index])


def test_labels_bounds_and_a_line_s_bucket():
    buckets = LengthBuckets([1, 2, 5])
    assert len(buckets) == 4 and buckets.edges == (1, 2, 5)
    assert buckets.bounds() == [("0-1", 0, 1), ("2", 2, 2), ("3-5", 3, 5), ("6+", 6, None)]
    assert buckets.index_of("a b  c ") == 2 and buckets.index_of("") == 0


@pytest.mark.parametrize("edges, says", [((), "strictly increasing"), ((10, 10), "strictly increasing"),
                                         ((20, 10), "strictly increasing"), ((0, 10), "positive"),
                                         ((2.5, 10), "whole numbers"), ((True,), "whole numbers")])
def test_bad_edges_are_rejected(edges, says):
    with pytest.raises(MtkitError, match=says):
        LengthBuckets(edges)
