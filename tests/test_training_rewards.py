"""Reward functions on the tiny twins: known values, guards, own-description scoring, the shared audio
cache (decoded once per batch), per-style metrics, and the reward registry."""

import math
from pathlib import Path

import numpy as np
import pytest

from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import parse_catalog
from stylegrpo.training.rewards import (
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
# every reward that scores items without a reference voice (speaker: tests/test_speaker.py) and every
# style of this catalog (style_classifier judges only styles with classifier_labels: tests/test_ast_judge.py)
SCORED = [n for n in REWARD_NAMES if n not in ("speaker", "style_classifier")]


@pytest.fixture(scope="module")
def catalog():
    return parse_catalog(CATALOG_YAML, "test-styles.yaml")


@pytest.fixture(scope="module")
def tokenizer():
    from stylegrpo.llasa import load_tokenizer

    return load_tokenizer("tiny:llasa")


@pytest.fixture(scope="module")
def judges():
    return Judges(
        clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper", classifier="ast:tiny:ast", batch_size=8
    )


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
    assert set(REWARD_NAMES) == {
        "style",
        "style_contrastive",
        "cer",
        "whisper_nll",
        "acoustic",
        "clean",
        "speaker",
        "style_classifier",
    }
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
    fns = {f.__name__: f for f in build_reward_functions(SCORED, ctx)}
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
    fns = build_reward_functions(SCORED, ctx)
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
    fns = build_reward_functions(SCORED, ctx)
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
    fns = build_reward_functions(SCORED, ctx)
    batch_ids = [ids(tokenizer, rng_codes(20 + i, 10 + i)) for i in range(4)]
    styles = ["loud", "quiet", "quiet", "mean"]
    descs = ["a man shouting loudly", "a quiet whisper", "someone whispering softly", "a plain voice"]
    metrics = {}
    outs = {f.__name__: call(f, batch_ids, ["hello there"] * 4, styles, descs, metrics) for f in fns}
    for name in SCORED:
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


# ------------------------------------------------------------------ overlapped (concurrent) reward functions

OVERLAP_NAMES = ["style", "style_contrastive", "cer", "whisper_nll", "acoustic"]


def overlap_batch(tokenizer):
    """Two valid clips of different lengths, one with no speech (guarded): None/minimum paths too."""
    batch_ids = [ids(tokenizer, rng_codes(30, 3)), ids(tokenizer, rng_codes(22, 4)), ids(tokenizer, [])]
    texts = ["hello there", "good morning", "hi"]
    styles = ["loud", "quiet", "mean"]
    descs = ["a man shouting loudly", "a quiet whisper", "a plain voice"]
    return batch_ids, texts, styles, descs


def run_overlapped(fns, batch_ids, texts, styles, descs, metrics):
    """What TRL 1.16 does with async reward functions: asyncio.gather of every call, on one event loop."""
    import asyncio

    async def gather():
        return await asyncio.gather(*(call(fn, batch_ids, texts, styles, descs, metrics) for fn in fns))

    return asyncio.run(gather())


def test_overlapped_rewards_equal_sequential_decode_once_and_log_wall_and_sum(
    tokenizer, judges, catalog, monkeypatch
):
    """Overlapped: the same values and metrics as one-after-another calls, one decode, acoustic really
    beside the judges (whisper_nll waits for it), and wall <= sum logged once per batch."""
    import inspect
    import threading

    from stylegrpo.training.rewards import AcousticReward, overlap_rewards

    batch = overlap_batch(tokenizer)
    seq_ctx = make_ctx(tokenizer, judges, catalog)
    seq_metrics: dict = {}
    sequential = [call(fn, *batch, seq_metrics) for fn in build_reward_functions(OVERLAP_NAMES, seq_ctx)]

    ctx = make_ctx(tokenizer, judges, catalog)
    fns = overlap_rewards(build_reward_functions(OVERLAP_NAMES, ctx))
    assert all(inspect.iscoroutinefunction(f.__call__) for f in fns)  # TRL's test: it gathers these
    assert [f.__name__ for f in fns] == OVERLAP_NAMES
    lanes = {f.__name__: f.executor for f in fns}
    assert lanes["acoustic"] is not lanes["style"] and lanes["style"] is lanes["whisper_nll"]

    # Proof of overlap without timing: whisper_nll (judge thread) blocks until acoustic (its own
    # thread) has scored; sequential execution would run acoustic only after whisper_nll returned.
    acoustic_done = threading.Event()
    score = AcousticReward.score

    def acoustic_score(self, *a, **k):
        out = score(self, *a, **k)
        acoustic_done.set()
        return out

    nll = judges.whisper.nll

    def waiting_nll(*a, **k):
        assert acoustic_done.wait(60), "acoustic did not run while whisper_nll was running"
        return nll(*a, **k)

    monkeypatch.setattr(AcousticReward, "score", acoustic_score)
    monkeypatch.setattr(judges.whisper, "nll", waiting_nll)
    metrics: dict = {}
    overlapped = run_overlapped(fns, *batch, metrics)

    assert overlapped == sequential  # exact, None (left out) and guard minimum included
    assert sequential[0][2] == 0.0  # the no-speech clip got the minimum in both
    assert ctx.cache.decode_calls == 1 and seq_ctx.cache.decode_calls == 1
    timing = {k for k in seq_metrics if k.startswith("timing/")}
    assert {k for k in metrics if not k.startswith("timing/")} == set(seq_metrics) - timing
    for key, values in seq_metrics.items():
        if not key.startswith("timing/"):
            assert sorted(metrics[key]) == sorted(values), key  # same values (any order across threads)

    for m, c in ((seq_metrics, seq_ctx), (metrics, ctx)):
        (wall,), (total,) = m["timing/rewards_wall_s"], m["timing/rewards_sum_s"]
        parts = m["timing/decode_s"] + [m[f"timing/reward/{n}_s"][0] for n in OVERLAP_NAMES]
        assert total == pytest.approx(sum(parts))  # the sum is decode + each reward's own time
        assert wall > 0
        assert c.batch_timings == [(wall, total)]
    wall, total = ctx.batch_timings[0]
    assert wall <= total + 0.05  # overlapped: never the sum plus more than scheduling noise


def test_concurrent_calls_decode_once_and_share_features_once(tokenizer, judges, catalog):
    """Many threads asking for the same batch at once: one codec call, one CLAP audio pass."""
    from concurrent.futures import ThreadPoolExecutor

    ctx = make_ctx(tokenizer, judges, catalog)
    (style,) = build_reward_functions(["style"], ctx)
    calls = []
    embed = judges.clap.audio_embeddings

    def counted(wavs):
        calls.append(len(wavs))
        return embed(wavs)

    batch = overlap_batch(tokenizer)
    try:
        judges.clap.audio_embeddings = counted
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: call(style, *batch), range(4)))
    finally:
        del judges.clap.audio_embeddings
    assert all(r == results[0] for r in results)
    assert ctx.cache.decode_calls == 1 and calls == [2]


def test_overlap_is_the_default_and_clean_on_cpu_is_a_cpu_reward(judges, tokenizer, catalog):
    from stylegrpo.training.cli import parse_config
    from stylegrpo.training.grpo import ScriptArguments
    from stylegrpo.training.rewards import CPU_LANE, JUDGE_LANE, REWARD_CLASSES

    assert ScriptArguments().overlap_rewards is True
    recipes = Path(__file__).resolve().parent.parent / "training" / "recipes"
    script_args, _, _, _ = parse_config(recipes / "tiny.yaml", {"overlap_rewards": False})
    assert script_args.overlap_rewards is False
    ctx = make_ctx(tokenizer, judges, catalog)
    lanes = {n: REWARD_CLASSES[n](ctx).lane for n in REWARD_NAMES}
    assert lanes == {n: CPU_LANE if n in ("acoustic", "clean") else JUDGE_LANE for n in REWARD_NAMES}
