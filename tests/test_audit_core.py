"""The audit's numbers on hand-built score matrices whose answers are known (no models, no audio)."""

import itertools
import math

import numpy as np
import pytest

from stylegrpo.eval import audit


def brute_auc(pos, neg):
    pairs = list(itertools.product(pos, neg))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_rank_auc_known_values_and_ties():
    assert audit.rank_auc([3, 4], [1, 2]) == 1.0
    assert audit.rank_auc([1, 2], [3, 4]) == 0.0
    assert audit.rank_auc([1, 1], [1, 1]) == 0.5
    assert audit.rank_auc([2], [1, 2, 3]) == 0.5  # one win, one tie, one loss
    assert audit.rank_auc([2, 2, 5], [2, 1]) == pytest.approx(brute_auc([2, 2, 5], [2, 1]))
    assert math.isnan(audit.rank_auc([], [1.0]))
    assert math.isnan(audit.rank_auc([np.nan], [1.0]))  # non-finite values are left out
    assert audit.rank_auc([np.nan, 3.0], [1.0, np.inf]) == 1.0


def test_rank_auc_matches_pair_counting_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = rng.integers(0, 4, size=rng.integers(1, 9)).astype(float)
        neg = rng.integers(0, 4, size=rng.integers(1, 9)).astype(float)
        assert audit.rank_auc(pos, neg) == pytest.approx(brute_auc(pos, neg))


def test_auc_interval_brackets_and_matches_resampling_by_hand():
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(1.0, 1.0, 12), rng.normal(0.0, 1.0, 30)
    lo, hi = audit.auc_interval(pos, neg, n_resamples=4000)
    auc = audit.rank_auc(pos, neg)
    assert lo < auc < hi and 0.15 < hi - lo < 0.6
    # the same percentiles from explicit resamples (stratified: own and other drawn separately)
    draws = [audit.rank_auc(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(4000)]
    assert np.quantile(draws, [0.025, 0.975]) == pytest.approx([lo, hi], abs=0.03)
    assert audit.auc_interval(pos, neg) == audit.auc_interval(pos, neg)  # seeded
    assert audit.auc_interval([1.0, 2.0], [0.0, 0.5]) == (1.0, 1.0)  # perfect separation every time
    assert all(math.isnan(v) for v in audit.auc_interval([1.0], [0.0, 0.5]))
    # beyond the bootstrap's size: the normal approximation, close to the bootstrap at moderate n
    hm = audit._hanley_mcneil(auc, pos.size, neg.size, 0.95)
    assert hm == pytest.approx((lo, hi), abs=0.05)


def test_top1_shares_split_ties_and_skip_nan():
    s = np.array([[1.0, 1.0, 0.0], [0.2, np.nan, 0.9], [np.nan, np.nan, np.nan]])
    shares = audit.top1_shares(s, [0, 1, 2])
    np.testing.assert_allclose(shares, [[0.5, 0.5, 0.0], [0, 0, 1.0], [0, 0, 0]])
    np.testing.assert_allclose(audit.top1_shares(s, [0, 1]), [[0.5, 0.5], [1.0, 0.0], [0, 0]])


STYLES = ["fast", "slow", "robotic"]
LABELS = ["fast"] * 4 + ["slow"] * 4 + ["robotic"] * 4


def matrix():
    """fast: its column ranks fast clips top, with spread. slow: its column is 1.0 for slow AND robotic
    clips (a judge that cannot tell the two). robotic: the judge does not score it (NaN column)."""
    fast = [0.9, 0.8, 0.95, 0.7] + [0.1, 0.2, 0.3, 0.15] + [0.2, 0.1, 0.25, 0.3]
    slow = [0.1, 0.0, 0.2, 0.1] + [1.0] * 4 + [1.0] * 4
    robotic = [np.nan] * 12
    return np.column_stack([fast, slow, robotic])


def test_audit_judge_separation_confusion_and_flat():
    res = audit.audit_judge(matrix(), LABELS, STYLES, name="acoustic")
    fast, slow, robotic = (res["styles"][s] for s in STYLES)
    assert res["applies_to"] == ["fast", "slow"]
    assert fast["auc"] == 1.0 and fast["accuracy"] == 1.0
    assert fast["flat"] is False and fast["own_std"] > 0.05
    assert "separates this style: AUC 1.00 [95 % interval 1.00-1.00]" in fast["verdict"]
    assert fast["auc_low"] == fast["auc_high"] == 1.0
    # slow vs robotic: every pair tied -> pairwise AUC 0.5; vs fast clips perfect
    assert slow["pair_auc"] == {"fast": 1.0, "robotic": 0.5}
    assert slow["auc"] == pytest.approx((16 * 1.0 + 16 * 0.5) / 32)
    assert slow["least_separated"] == "robotic"
    assert slow["flat"] is True  # every slow clip scores exactly 1.0
    assert "cannot tell `slow` from `robotic`" in slow["verdict"]
    assert "consider merging, rewording, or acoustic targets" in slow["verdict"]
    assert "barely varies" in slow["verdict"]
    assert slow["accuracy"] == 1.0
    assert robotic["applies"] is False and math.isnan(robotic["auc"])
    assert "does not score `robotic`" in robotic["verdict"]
    conf = np.array(res["confusion"]["matrix"])
    assert res["confusion"]["columns"] == ["fast", "slow"]
    np.testing.assert_allclose(conf, [[4, 0], [0, 4], [0, 4]])  # robotic clips are all heard as slow
    assert res["accuracy"] == 1.0  # over the styles it applies to
    assert res["mean_auc"] == pytest.approx((1.0 + 0.75) / 2)


def test_ties_between_styles_split_accuracy():
    s = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    res = audit.audit_judge(s, ["a", "a", "b", "b"], ["a", "b"])
    assert res["styles"]["a"]["accuracy"] == 0.5  # tied with b: half credit, not catalog order's full
    assert res["styles"]["b"]["accuracy"] == 1.0
    np.testing.assert_allclose(res["confusion"]["matrix"], [[1, 1], [0, 2]])
    assert res["accuracy"] == 0.75


def test_chance_judge_and_few_clips():
    rng = np.random.default_rng(1)
    labels = ["a"] * 50 + ["b"] * 50
    s = rng.normal(size=(100, 2))
    res = audit.audit_judge(s, labels, ["a", "b"], name="noise")
    assert 0.35 < res["styles"]["a"]["auc"] < 0.65
    assert "cannot tell `a` from `b`" in res["styles"]["a"]["verdict"]
    few = audit.audit_judge(np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"], ["a", "b"], name="j")
    assert "too few" in few["styles"]["a"]["verdict"]
    assert few["styles"]["a"]["auc"] == 1.0


def test_accuracy_needs_two_styles_to_choose_from():
    s = np.array([[0.9, np.nan], [0.2, np.nan], [0.3, np.nan]])  # the judge scores style a only
    res = audit.audit_judge(s, ["a", "b", "b"], ["a", "b"])
    assert res["styles"]["a"]["auc"] == 1.0
    assert math.isnan(res["styles"]["a"]["accuracy"]) and math.isnan(res["accuracy"])


def test_bad_shapes_and_labels_are_named():
    with pytest.raises(ValueError, match="scores must be"):
        audit.audit_judge(np.zeros((2, 3)), ["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="labels zzz are not among"):
        audit.audit_judge(np.zeros((2, 2)), ["a", "zzz"], ["a", "b"])


def test_spread_std_and_iqr():
    sp = audit.spread([1.0, 2.0, 3.0, 4.0, np.nan])
    assert sp["n"] == 4 and sp["std"] == pytest.approx(np.std([1, 2, 3, 4]))
    assert sp["iqr"] == pytest.approx(np.percentile([1, 2, 3, 4], 75) - np.percentile([1, 2, 3, 4], 25))
    assert math.isnan(audit.spread([])["std"])


def test_description_audit_names_a_paraphrase_pointing_elsewhere():
    descriptions = {"calm": ["calm one", "calm two", "actually sad"], "sad": ["sad one", "sad two"]}
    emb = {
        "calm": np.array([[1.0, 0.0], [0.95, 0.05], [0.1, 1.0]]),
        "sad": np.array([[0.0, 1.0], [0.05, 0.95]]),
    }
    rows = audit.description_audit(descriptions, emb)
    by = {r["description"]: r for r in rows}
    assert by["actually sad"]["points_elsewhere"] is True
    assert by["actually sad"]["nearest_other"] == "sad"
    assert by["actually sad"]["distance_nearest_other"] < by["actually sad"]["distance_own"]
    assert not by["calm one"]["points_elsewhere"] and not by["sad one"]["points_elsewhere"]
    # leave-one-out: "calm one" is compared with the mean of "calm two" and "actually sad"
    rest = np.array([0.95, 0.05]) / np.linalg.norm([0.95, 0.05]) + np.array([0.1, 1.0]) / np.linalg.norm(
        [0.1, 1]
    )
    rest /= np.linalg.norm(rest)
    assert by["calm one"]["distance_own"] == pytest.approx(1 - rest[0])
    lines = audit.description_verdicts(rows, "clap")
    assert len(lines) == 1 and "actually sad" in lines[0] and "`sad`" in lines[0]
    single = audit.description_audit({"a": ["x"], "b": ["y"]}, {"a": np.eye(2)[:1], "b": np.eye(2)[1:]})
    assert math.isnan(single[0]["distance_own"]) and single[0]["points_elsewhere"] is False


def test_where_and_style_map_parse_key_value_pairs():
    from stylegrpo.errors import StyleGRPOError
    from stylegrpo.eval.audit_run import parse_style_map, parse_where

    assert parse_where(None) == {} and parse_style_map("") == {}
    assert parse_where(" model = adapter ,, speaker=") == {"model": "adapter", "speaker": ""}  # empty VALUE
    assert parse_style_map("happy=excited, neutral=calm") == {"happy": "excited", "neutral": "calm"}
    for parse, value, message in [
        (parse_where, "model", "--where: 'model' is not COLUMN=VALUE"),
        (parse_where, "=x", "--where: '=x' is not COLUMN=VALUE"),
        (parse_style_map, "happy=", "--style-map: 'happy=' is not LABEL=STYLE"),
        (parse_style_map, "a=b,=c", "--style-map: '=c' is not LABEL=STYLE"),
    ]:
        with pytest.raises(StyleGRPOError) as e:
            parse(value)
        assert str(e.value) == message
