"""eval statistics, confusion matrices and per-style summaries on known numbers (no models)."""

import math

import numpy as np
import pytest

from stylegrpo.eval import confusion, stats
from stylegrpo.eval.metrics import (
    ADAPTER,
    BASE,
    CER_WORSE_THRESHOLD,
    OVERALL,
    find_row,
    flag_styles,
    summarize,
)


def test_bootstrap_contains_mean_and_is_reproducible():
    x = np.random.default_rng(1).normal(3.0, 1.0, size=40)
    iv = stats.bootstrap_mean(x)
    assert iv.n == 40
    assert iv.mean == pytest.approx(x.mean())
    assert iv.low < iv.mean < iv.high
    assert iv.contains(3.0)  # the true mean, for this seed
    assert stats.bootstrap_mean(x) == iv  # fixed resampling seed: same data, same interval
    assert stats.bootstrap_mean(x, seed=7) != iv


def test_bootstrap_interval_narrows_with_n():
    rng = np.random.default_rng(2)
    widths = [stats.bootstrap_mean(rng.normal(0, 1, size=n)).width for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2]
    # the standard error shrinks like 1/sqrt(n): a 100x larger sample gives a ~10x narrower interval
    assert widths[0] / widths[2] == pytest.approx(10, rel=0.35)


def test_bootstrap_width_matches_normal_theory():
    x = np.random.default_rng(3).normal(0, 2.0, size=400)
    iv = stats.bootstrap_mean(x)
    expected = 2 * 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert iv.width == pytest.approx(expected, rel=0.1)


def test_bootstrap_edge_cases():
    empty = stats.bootstrap_mean([])
    assert empty.n == 0 and math.isnan(empty.mean)
    one = stats.bootstrap_mean([2.5])
    assert one.n == 1 and one.mean == 2.5 and math.isnan(one.low) and math.isnan(one.high)
    const = stats.bootstrap_mean([4.0] * 9)
    assert (const.mean, const.low, const.high) == (4.0, 4.0, 4.0)
    with_nan = stats.bootstrap_mean([1.0, float("nan"), 3.0, float("inf")])
    assert with_nan.n == 2 and with_nan.mean == 2.0
    with pytest.raises(ValueError):
        stats.bootstrap_mean([1, 2], confidence=1.5)


def test_paired_difference_of_identical_arrays_is_zero_width():
    x = np.random.default_rng(4).uniform(size=30)
    d = stats.paired_difference(x, x.copy())
    assert (d.mean, d.low, d.high, d.n) == (0.0, 0.0, 0.0, 30)
    assert stats.excludes_zero(d) == 0


def test_paired_difference_detects_a_known_shift_that_unpaired_intervals_miss():
    rng = np.random.default_rng(5)
    base = rng.normal(0.0, 1.0, size=25)  # large item-to-item spread ...
    noise = rng.normal(0.0, 0.1, size=25)
    adapter = base + 0.3 + (noise - noise.mean())  # ... and a small, consistent shift of exactly 0.3
    d = stats.paired_difference(adapter, base)
    assert d.mean == pytest.approx(0.3)
    assert stats.excludes_zero(d) == 1 and d.contains(0.3)
    # the two means' own intervals overlap: only pairing sees the shift
    a, b = stats.bootstrap_mean(adapter), stats.bootstrap_mean(base)
    assert a.low < b.high
    assert stats.excludes_zero(stats.paired_difference(base, adapter)) == -1


def test_paired_difference_drops_incomplete_pairs_and_checks_lengths():
    d = stats.paired_difference([1.0, 2.0, float("nan"), 4.0], [0.0, 1.0, 5.0, float("nan")])
    assert d.n == 2 and d.mean == 1.0
    with pytest.raises(ValueError):
        stats.paired_difference([1, 2, 3], [1, 2])


def test_confusion_matrix_on_known_labels():
    labels = ["a", "b", "c"]
    true = ["a", "a", "a", "b", "b", "c", "c", "c"]
    pred = ["a", "a", "b", "b", "c", "c", "c", "a"]
    m = confusion.confusion_matrix(true, pred, labels)
    assert m.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert confusion.accuracy(m) == pytest.approx(5 / 8)
    np.testing.assert_allclose(confusion.per_class_accuracy(m), [2 / 3, 1 / 2, 2 / 3])
    np.testing.assert_allclose(confusion.row_normalize(m).sum(axis=1), [1, 1, 1])
    assert confusion.most_confused(m, labels, top=2) == [("a", "b", 1), ("b", "c", 1)]
    with pytest.raises(ValueError, match="'z'"):
        confusion.confusion_matrix(["a"], ["z"], labels)
    empty_row = confusion.confusion_matrix(["a"], ["a"], labels)
    assert math.isnan(confusion.per_class_accuracy(empty_row)[1])


def _records(cer_shift: float, n: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    recs = []
    for style in ("calm", "loud"):
        for item in range(n):
            base_cer = float(rng.uniform(0.1, 0.3))
            for model, cer in (
                (BASE, base_cer),
                (ADAPTER, base_cer + (cer_shift if style == "loud" else 0.0)),
            ):
                recs.append(
                    {
                        "style": style,
                        "model": model,
                        "item": item,
                        "cer": cer,
                        "style_correct": float(model == ADAPTER),
                        "truncated": False,
                    }
                )
    return recs


def test_summarize_rows_and_paired_columns():
    rows = summarize(_records(0.2), ["calm", "loud"])
    r = find_row(rows, "loud", ADAPTER, "cer")
    assert r["n"] == 12 and r["diff_n"] == 12
    assert r["diff_mean"] == pytest.approx(0.2) and r["diff_ci_low"] == pytest.approx(0.2)  # a constant shift
    calm = find_row(rows, "calm", ADAPTER, "cer")
    assert (calm["diff_mean"], calm["diff_ci_low"], calm["diff_ci_high"]) == (0.0, 0.0, 0.0)
    base = find_row(rows, "calm", BASE, "cer")
    assert math.isnan(base["diff_mean"]) and base["diff_n"] == 0
    overall = find_row(rows, OVERALL, ADAPTER, "style_correct")
    assert overall["mean"] == 1.0 and overall["n"] == 24 and overall["diff_mean"] == 1.0
    assert find_row(rows, OVERALL, BASE, "truncated")["mean"] == 0.0  # booleans are counted as 0/1
    assert find_row(rows, "calm", BASE, "whisper_nll")["n"] == 0  # a metric absent from the records


def test_flags_mark_only_styles_whose_cer_got_worse():
    flags = flag_styles(summarize(_records(0.2), ["calm", "loud"]))
    assert {f["style"] for f in flags} == {"loud", OVERALL}
    assert any("entirely above 0" in reason for reason in flags[0]["reasons"])
    assert {f["severity"] for f in flags} == {"clear"}
    assert flag_styles(summarize(_records(-0.1), ["calm", "loud"])) == []  # better is never flagged
    small = flag_styles(summarize(_records(CER_WORSE_THRESHOLD / 2), ["calm", "loud"]))
    assert small and all("entirely above 0" in f["reasons"][0] for f in small)  # consistent small rise
    # a large rise on one noisy item: the interval includes 0, but the mean passes the threshold
    noisy = _records(0.0)
    noisy[-1]["cer"] += 12 * 2 * CER_WORSE_THRESHOLD  # last loud adapter item; mean rise = 2 x threshold
    loud = [f for f in flag_styles(summarize(noisy, ["calm", "loud"])) if f["style"] == "loud"]
    assert (
        loud
        and loud[0]["severity"] == "large"
        and loud[0]["diff_mean"] == pytest.approx(2 * CER_WORSE_THRESHOLD)
    )
    base_only = [r for r in _records(0.2) if r["model"] == BASE]
    assert flag_styles(summarize(base_only, ["calm", "loud"])) == []
