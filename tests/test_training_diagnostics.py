"""Training diagnostics on known inputs: within-group rank correlation (trade-offs), each reward's share of
the weighted total's within-group variance (dominance), the ASR hallucination detector, and their wiring
into the rewards (hallucinated clips do not move CER; optional group drop)."""

import math

import numpy as np
import pytest

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers.asr import ErrorRates, cer
from stylegrpo.scorers.hallucination import LOOP, ON_SILENCE, TOO_LONG, active_share, detect
from stylegrpo.styles import parse_catalog
from stylegrpo.training.diagnostics import groups, spearman, tradeoffs, variance_shares
from stylegrpo.training.rewards import AudioCache, Judges, RewardContext, build_reward_functions


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # ranks, not values
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 12).astype(float), rng.normal(size=12)  # with ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)


def test_groups_and_tradeoffs_are_within_groups():
    keys = ["p", "p", "p", "q", "q", "q", "r"]
    gs = groups(keys)
    assert gs == [[0, 1, 2], [3, 4, 5]]  # a group of one has no within-group difference
    # Across groups a and b rise together, but within each group they pull apart
    a = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 0.5]
    b = [0.3, 0.2, 0.1, 0.9, 0.8, 0.7, 0.5]
    assert spearman(a[:6], b[:6]) > 0.5
    assert tradeoffs({"a": a, "b": b}, gs) == {"a~b": [pytest.approx(-1.0), pytest.approx(-1.0)]}


def test_variance_shares_known_inputs():
    gs = [[0, 1, 2, 3]]
    x = [0.0, 1.0, 2.0, 3.0]
    const = [0.5] * 4
    shares = variance_shares({"a": x, "b": const}, {"a": 1.0, "b": 1.0}, gs)
    assert shares == {"a": pytest.approx(1.0), "b": pytest.approx(0.0)}
    # the same reward twice at weights 1 and 3: it is all one direction, split by weight
    shares = variance_shares({"a": x, "b": x}, {"a": 1.0, "b": 3.0}, gs)
    assert shares == {"a": pytest.approx(0.25), "b": pytest.approx(0.75)}
    # raw (sum_then_normalize): a reward with 10x the spread dominates at equal weights
    big = [10 * v for v in x]
    noise = [0.0, 1.0, 0.0, 1.0]
    raw = variance_shares({"big": big, "small": noise}, {"big": 1.0, "small": 1.0}, gs, normalize=False)
    assert raw["big"] > 0.9 and sum(raw.values()) == pytest.approx(1.0)
    norm = variance_shares({"big": big, "small": noise}, {"big": 1.0, "small": 1.0}, gs)
    assert 0.4 < norm["big"] < 0.7  # normalised per group: the spread no longer decides
    # an anti-correlated reward works against the total: negative share
    anti = variance_shares({"a": x, "b": x[::-1]}, {"a": 2.0, "b": 1.0}, gs)
    assert anti["b"] < 0 < anti["a"] and sum(anti.values()) == pytest.approx(1.0)
    assert all(math.isnan(v) for v in variance_shares({"a": const}, {"a": 1.0}, gs).values())
    # None (a left-out value) contributes nothing
    with_none = variance_shares({"a": [0.0, 1.0, None, 3.0], "b": const}, {"a": 1.0, "b": 1.0}, gs)
    assert with_none["a"] == pytest.approx(1.0)


def test_hallucination_detector_on_crafted_transcripts():
    speech = 0.1 * np.sin(2 * np.pi * 200 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    hush = np.full(SAMPLE_RATE, 1e-4)  # -80 dBFS: near-silence the -60 dBFS guard may let pass
    assert detect("the cat sat on the mat", "The cat sat on the mat.", speech) is None
    assert detect("the cat sad on a mat", "The cat sat on the mat.", speech) is None  # errors, no freak-out
    assert detect("thank you thank you thank you thank you", "Good morning.", speech) == LOOP
    assert detect("the the the the the cat", "the cat", speech) == LOOP
    assert detect("no no no no", "No, no, no, no!", speech) is None  # the text itself repeats
    long_hyp = "and then we went down to the river and looked at all the boats"
    assert detect(long_hyp, "Hello there.", speech) == TOO_LONG
    assert detect("please call stella now", "Please call Stella now.", hush) == ON_SILENCE
    assert detect("hi", "Hi.", hush) is None  # one word on near-silence: a guess, not invented text
    assert detect("", "Hello there.", hush) is None
    assert active_share(speech) == 1.0 and active_share(hush) == 0.0
    assert (
        cer("thank you thank you thank you thank you", "Good morning.") == 1.0
    )  # capped: CER alone can't tell


class PreparedCodec:
    def __init__(self, wavs):
        self.wavs = wavs

    def decode(self, codes, exact=True):
        return [self.wavs[c[0]] for c in codes]


class ScriptedAsr:
    """An ASR that returns a scripted transcript per clip (looked up by the clip's length)."""

    def __init__(self, by_len):
        self.by_len = by_len

    def error_rates(self, wavs, refs):
        return [
            ErrorRates(cer(self.by_len[len(w)], r), 0.0, self.by_len[len(w)])
            for w, r in zip(wavs, refs, strict=True)
        ]


TEXT = "please call stella and ask her to bring these things"


def rig(transcripts, drop=None, guarded=0):
    """One group of len(transcripts) rollouts; clip k is k + 1 seconds of a tone, transcribed as given."""
    from stylegrpo.llasa import load_tokenizer, speech_tokens

    tok = load_tokenizer("tiny:llasa")
    st = speech_tokens(tok)
    wavs = [
        0.1 * np.sin(2 * np.pi * 200 * np.arange((k + 2) * SAMPLE_RATE) / SAMPLE_RATE)
        for k in range(len(transcripts))
    ]
    cache = AudioCache(PreparedCodec(wavs), tok, max_completion_length=400)
    judges = Judges(clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper")
    judges.asr = ScriptedAsr({len(w): t for w, t in zip(wavs, transcripts, strict=True)})
    catalog = parse_catalog(
        "styles:\n  - name: plain\n    phrase: p\n    descriptions: [p]\n    targets: {speaking_rate: [4, 6]}\n"
    )  # longer clips speak slower: the acoustic reward varies within the group
    ctx = RewardContext(
        cache, judges, catalog, weights={"cer": 1.0, "acoustic": 0.5}, drop_group_cer_above=drop
    )
    fns = build_reward_functions(["cer", "acoustic"], ctx)
    ids = [st.ids_from_codes([k] * 20) + [st.end_id] for k in range(len(transcripts))]
    ids += [[st.end_id]] * guarded  # no speech: 0 in every reward
    metrics = {}
    n = len(ids)
    out = {
        f.__name__: f(
            prompts=[None] * n,
            completions=[None] * n,
            completion_ids=ids,
            text=[TEXT] * n,
            style=["plain"] * n,
            description=["p"] * n,
            log_metric=lambda k, v: metrics.setdefault(k, []).append(v),
        )
        for f in fns
    }
    return out, metrics


def test_hallucinated_transcripts_do_not_move_cer_and_are_counted():
    out, metrics = rig([TEXT, "please call stella and ask her to bring things", "thank you " * 6, "cat dog"])
    assert out["cer"][0] == 1.0 and 0 < out["cer"][1] < 1 and out["cer"][3] < 0.5
    assert out["cer"][2] is None  # the loop: TRL leaves it out of the CER term
    assert all(v is not None for v in out["acoustic"])  # other rewards still judge it
    assert metrics["asr_hallucinated/plain"] == [0.0, 0.0, 1.0, 0.0]  # share per style
    assert len(metrics["rewards/cer/plain"]) == 3
    # diagnostics once the weighted rewards are complete: one trade-off value per group, shares sum to 1
    (rho,) = metrics["tradeoff/cer~acoustic/plain"]
    assert -1.0 <= rho <= 1.0
    shares = [metrics[k][0] for k in metrics if k.startswith("dominance/")]
    assert shares and sum(shares) == pytest.approx(1.0)


def test_groups_whose_best_cer_is_high_can_be_dropped():
    bad = ["completely wrong words here", "nothing like it at all", "zebra", "moon river"]
    kept, _ = rig(bad)
    assert all(v is not None for v in kept["cer"])  # off by default
    dropped, metrics = rig(bad, drop=0.5)
    assert dropped == {"cer": [None] * 4, "acoustic": [None] * 4}  # every reward None: no advantage
    assert metrics["dropped/plain"] == [1.0] * 4 and "reward_by_style/plain" not in metrics
    good, _ = rig([TEXT, *bad[1:]], drop=0.5)  # one rollout got it right: the group stays
    assert good["cer"][0] == 1.0 and all(v is not None for v in good["acoustic"])


def test_tradeoffs_leave_guarded_rollouts_out():
    transcripts = [TEXT, "please call stella and ask her", "cat dog", "please call"]
    _, plain = rig(transcripts)
    _, with_guarded = rig(transcripts, guarded=4)  # four zeros in both rewards would align them
    assert with_guarded["tradeoff/cer~acoustic/plain"] == pytest.approx(plain["tradeoff/cer~acoustic/plain"])
    assert len(with_guarded["asr_hallucinated/plain"]) == 4  # only scored clips are counted
