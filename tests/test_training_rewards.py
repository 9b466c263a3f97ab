"""Reward functions on the tiny twins: known values, guards, own-description scoring, the shared audio
cache (decoded once per batch), per-style metrics, and the reward registry."""

import math

import numpy as np
import pytest

from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import parse_catalog
from training.rewards import (
    GUARD_FLAGS,
    REWARD_NAMES,
    AudioCache,
    GuardSettings,
    Judges,
    RewardContext,
    build_reward_functions,
    check_reward_names,
    rms_dbfs,
    style_metric,
)

CATALOG_YAML = """
styles:
  - name: loud
    phrase: a man shouting
    descriptions: [a man shouting loudly, someone yelling]
    targets:
      loudness_dbfs: [-14, -3]
  - name: quiet
    phrase: a man whispering
    descriptions: [a quiet whisper, someone whispering softly]
    targets:
      loudness_dbfs: [-45, -25]
      speaking_rate: [1, 15]
  - name: mean
    phrase: a plain voice
    descriptions: [a plain voice]
"""
CAP = 40  # max_completion_length of these tests


@pytest.fixture(scope="module")
def catalog():
    return parse_catalog(CATALOG_YAML, "test-styles.yaml")


@pytest.fixture(scope="module")
def tokenizer():
    from stylegrpo.llasa import load_tokenizer

    return load_tokenizer("tiny:llasa")


@pytest.fixture(scope="module")
def judges():
    return Judges(clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper", batch_size=8)


def make_ctx(tokenizer, judges, catalog, **guards):
    cache = AudioCache(
        "tiny:xcodec2", tokenizer, max_completion_length=CAP, guards=GuardSettings(**guards), batch_size=8
    )
    weights = {"style": 1.0, "style_contrastive": 0.5, "cer": 0.5, "whisper_nll": 0.25, "acoustic": 1.0}
    return RewardContext(cache, judges, catalog, weights=weights)


def ids(tokenizer, codes, end=True):
    from stylegrpo.llasa import speech_tokens

    st = speech_tokens(tokenizer)
    return st.ids_from_codes(codes) + ([st.end_id] if end else [])


def rng_codes(n, seed):
    return np.random.default_rng(seed).integers(0, 64, n).tolist()


def call(fn, completion_ids, texts, styles, descriptions, metrics=None):
    log_metric = (lambda k, v: metrics.setdefault(k, []).append(v)) if metrics is not None else None
    return fn(
        prompts=[[{"role": "user", "content": "x"}]] * len(completion_ids),
        completions=[[{"role": "assistant", "content": ""}]] * len(completion_ids),
        completion_ids=completion_ids,
        text=texts,
        style=styles,
        description=descriptions,
        log_metric=log_metric,
    )


def test_registry_and_unknown_names():
    assert set(REWARD_NAMES) == {"style", "style_contrastive", "cer", "whisper_nll", "acoustic", "clean"}
    with pytest.raises(StyleGRPOError) as e:
        check_reward_names(["style", "clapp"])
    msg = str(e.value)
    assert "'clapp'" in msg and all(n in msg for n in REWARD_NAMES)
    with pytest.raises(StyleGRPOError, match="twice"):
        check_reward_names(["cer", "cer"])
    with pytest.raises(StyleGRPOError, match="no reward"):
        check_reward_names([])


def test_only_named_rewards_are_built_and_nothing_loads(tokenizer, judges, catalog):
    ctx = make_ctx(tokenizer, judges, catalog)
    fns = build_reward_functions(["cer", "acoustic"], ctx)
    assert [f.__name__ for f in fns] == ["cer", "acoustic"]  # TRL names metrics rewards/<__name__>/mean
    from trl.trainer.utils import get_callable_name

    assert [get_callable_name(f) for f in fns] == ["cer", "acoustic"]
    assert ctx.cache._codec is None  # codec and judges load lazily, on the first call
    assert "clap" not in vars(ctx.judges) and "asr" not in vars(ctx.judges)


def test_known_values_and_own_description(tokenizer, judges, catalog):
    """Each reward equals its judge's own number; neighbours with different descriptions are scored
    against their own description."""
    from stylegrpo.scorers.acoustic import measure, target_score
    from stylegrpo.scorers.clap import candidates_from_catalog

    ctx = make_ctx(tokenizer, judges, catalog)
    fns = {f.__name__: f for f in build_reward_functions(list(REWARD_NAMES), ctx)}
    codes = rng_codes(30, 0)
    batch_ids = [ids(tokenizer, codes), ids(tokenizer, codes), ids(tokenizer, rng_codes(25, 1))]
    texts = ["hello there", "hello there", "good morning"]
    styles = ["loud", "quiet", "quiet"]
    descs = ["a man shouting loudly", "a quiet whisper", "someone whispering softly"]
    out = {name: call(fn, batch_ids, texts, styles, descs) for name, fn in fns.items()}
    wavs = ctx.cache.last.wavs
    assert ctx.cache.last.flags == [None, None, None]

    sim = judges.clap.similarity(wavs, descs)
    np.testing.assert_allclose(out["style"], (1 + sim) / 2, atol=1e-5)
    # Same audio, different descriptions: different scores, each from its own description
    assert out["style"][0] != pytest.approx(out["style"][1], abs=1e-6)
    swapped = call(fns["style"], batch_ids[:2], texts[:2], styles[:2], descs[1::-1])
    np.testing.assert_allclose(swapped, out["style"][1::-1], atol=1e-5)

    probs = judges.clap.style_probabilities(wavs, candidates_from_catalog(catalog))
    col = {name: j for j, name in enumerate(catalog.names)}
    np.testing.assert_allclose(
        out["style_contrastive"], [probs[i, col[s]] for i, s in enumerate(styles)], atol=1e-5
    )

    rates = judges.asr.error_rates(wavs, texts)
    assert out["cer"] == pytest.approx([1 - min(r.cer, 1.0) for r in rates])

    nll = judges.whisper.nll(wavs, texts)
    np.testing.assert_allclose(out["whisper_nll"], np.exp(-nll / 3.0), rtol=1e-5)

    expected = [
        target_score(measure(w, t), catalog.get(s).targets)
        for w, t, s in zip(wavs, texts, styles, strict=True)
    ]
    assert out["acoustic"] == pytest.approx(expected)
    for values in out.values():
        assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in values)


def _silent_code(codec):
    """A code whose repetition decodes to silence in the tiny codec, if it has one."""
    wavs = codec.decode([[k] * 20 for k in range(codec.num_codes)])
    quiet = [k for k, w in enumerate(wavs) if rms_dbfs(w) < -60]
    return quiet[0] if quiet else None


def test_guards_give_the_lowest_reward_never_nan(tokenizer, judges, catalog):
    ctx = make_ctx(tokenizer, judges, catalog)
    fns = build_reward_functions(list(REWARD_NAMES), ctx)
    long_text = " ".join(["international"] * 15)  # 75 syllables: needs several seconds of speech
    cases = {
        "ok": (ids(tokenizer, rng_codes(30, 2)), "hello there"),
        "no_speech": (ids(tokenizer, []), "hello there"),
        "one_code": (ids(tokenizer, [5]), "hello there"),
        "truncated": (ids(tokenizer, rng_codes(CAP, 3), end=False), "hello there"),
        "duration": (ids(tokenizer, rng_codes(20, 4)), long_text),
    }
    silent = _silent_code(ctx.cache.codec)
    if silent is not None:
        cases["silent"] = (ids(tokenizer, [silent] * 20), "hello there")
    names = list(cases)
    batch_ids = [cases[n][0] for n in names]
    texts = [cases[n][1] for n in names]
    styles = ["quiet"] * len(names)
    descs = ["a quiet whisper"] * len(names)
    metrics = {}
    results = {f.__name__: call(f, batch_ids, texts, styles, descs, metrics) for f in fns}
    flags = dict(zip(names, ctx.cache.last.flags, strict=True))
    assert flags == {
        "ok": None,
        "no_speech": "no_speech",
        "one_code": "no_speech",
        "truncated": "truncated",
        "duration": "duration",
        **({"silent": "silent"} if silent is not None else {}),
    }
    for fn in fns:
        values = dict(zip(names, results[fn.__name__], strict=True))
        assert all(math.isfinite(v) for v in values.values())
        for name, v in values.items():
            if name != "ok":
                assert v == fn.minimum == 0.0, (fn.__name__, name)
    # guard shares are logged once per batch, one value per completion (TRL averages them)
    assert np.mean(metrics["guards/truncated"]) == pytest.approx(1 / len(names))
    assert len(metrics["guards/no_speech"]) == len(names)
    assert set(GUARD_FLAGS) <= {k.split("/")[1] for k in metrics if k.startswith("guards/")}


def test_a_truncated_completion_that_ended_exactly_at_the_cap_is_not_truncated(tokenizer, judges, catalog):
    ctx = make_ctx(tokenizer, judges, catalog, check_duration=False)
    ended = ids(tokenizer, rng_codes(CAP - 1, 5))  # CAP tokens including the end token
    assert len(ended) == CAP
    ctx.cache.get([ended], ["hi"])
    assert ctx.cache.last.flags == [None]


def test_duration_guard_bounds():
    g = GuardSettings(min_syllables_per_second=1.0, max_syllables_per_second=12.0, duration_slack_s=1.0)
    assert g.duration_bounds(24) == (1.0, 25.0)
    assert g.duration_bounds(3) == (0.0, 4.0)


def test_audio_is_decoded_once_per_batch(tokenizer, judges, catalog):
    ctx = make_ctx(tokenizer, judges, catalog)
    fns = build_reward_functions(list(REWARD_NAMES), ctx)
    codec = ctx.cache.codec
    calls = []
    real_decode = codec.decode

    def spy(codes_batch, **kw):  # the real decode, counted
        calls.append(len(codes_batch))
        return real_decode(codes_batch, **kw)

    codec.decode = spy
    batch_ids = [ids(tokenizer, rng_codes(n, n)) for n in (12, 20, 12, 31)]
    texts = ["hello there"] * 4
    for fn in fns:
        call(fn, batch_ids, texts, ["loud", "quiet"] * 2, ["a man shouting loudly", "a quiet whisper"] * 2)
    assert calls == [4]  # one batched codec call for all five reward functions
    assert ctx.cache.decode_calls == 1
    call(fns[0], batch_ids[:2], texts[:2], ["loud", "quiet"], ["x", "y"])  # a new batch decodes again
    assert calls == [4, 2] and ctx.cache.decode_calls == 2


def test_per_style_metrics(tokenizer, judges, catalog):
    ctx = make_ctx(tokenizer, judges, catalog)
    fns = build_reward_functions(list(REWARD_NAMES), ctx)
    batch_ids = [ids(tokenizer, rng_codes(20 + i, 10 + i)) for i in range(4)]
    styles = ["loud", "quiet", "quiet", "mean"]
    descs = ["a man shouting loudly", "a quiet whisper", "someone whispering softly", "a plain voice"]
    metrics = {}
    outs = {f.__name__: call(f, batch_ids, ["hello there"] * 4, styles, descs, metrics) for f in fns}
    for name in REWARD_NAMES:
        assert metrics[f"rewards/{name}/loud"] == [outs[name][0]]
        assert metrics[f"rewards/{name}/quiet"] == outs[name][1:3]  # one value per completion: exact mean
        assert f"rewards/{name}/mean_style" in metrics  # a style named 'mean' cannot shadow TRL's mean
        assert f"rewards/{name}/mean" not in metrics
        assert len(metrics[f"timing/reward/{name}_s"]) == 1
    assert len(metrics["timing/decode_s"]) == 1
    total = sum(w * outs[k][0] for k, w in ctx.weights.items())
    assert metrics["reward_by_style/loud"] == [pytest.approx(total)]
    assert "acoustic/loudness_dbfs/loud" in metrics and "acoustic/speaking_rate/quiet" in metrics
    assert "acoustic/speaking_rate/loud" not in metrics  # only the fields a style targets
    assert metrics["duration_s/loud"] == [pytest.approx(20 / 50)]
    assert style_metric("rewards/cer", "std") == "rewards/cer/std_style"


def test_missing_column_is_a_clear_error(tokenizer, judges, catalog):
    ctx = make_ctx(tokenizer, judges, catalog)
    (fn,) = build_reward_functions(["cer"], ctx)
    with pytest.raises(StyleGRPOError, match="column 'text'"):
        fn(prompts=[], completions=[], completion_ids=[ids(tokenizer, [1, 2, 3])])
