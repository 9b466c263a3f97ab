"""The speaker judge (WavLM x-vector, tiny twin: plumbing), the `speaker` reward on items with and without a
reference voice, and eval's speaker similarity per style, base vs adapter."""

import math

import numpy as np
import pytest
from test_training_rewards import ids
from test_training_rewards import rng_codes as codes

from stylegrpo.audio import SAMPLE_RATE
from stylegrpo.scorers._base import ScorerError
from stylegrpo.scorers.speaker import MIN_SECONDS, SpeakerScorer, cosine
from stylegrpo.styles import parse_catalog
from stylegrpo.training.rewards import (
    REWARD_NAMES,
    AudioCache,
    GuardSettings,
    Judges,
    RewardContext,
    build_reward_functions,
)

CATALOG_YAML = """
styles:
  - name: calm
    phrase: a calm voice
    descriptions: [a calm voice]
  - name: fast
    phrase: a fast voice
    descriptions: [someone speaking fast]
"""
CAP = 40  # max_completion_length of the reward tests


def noise(seconds, seed, scale=0.1):
    return (np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE)) * scale).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def judge():
    return SpeakerScorer("tiny:wavlm-sv", device="cpu", batch_size=2)


def test_loads_lazily_and_embeds_unit_vectors(judge):
    fresh = SpeakerScorer("tiny:wavlm-sv")
    assert not fresh.loaded
    emb = judge.embeddings([noise(1.0, 0), noise(0.7, 1)])
    assert judge.loaded and emb.shape == (2, judge.dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert judge.embeddings([]).shape == (0, judge.dim)
    assert judge.model.device.type == "cpu"


def test_a_clip_scores_the_same_alone_and_in_any_batch(judge):
    """Equal-length batches only: a clip's embedding does not depend on its neighbours (zero padding would
    move it through WavLM's group norm)."""
    clips = [noise(1.3, 2), noise(0.8, 3), noise(1.3, 4), noise(2.0, 5), noise(1.3, 6)]
    together = judge.embeddings(clips)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(judge.embeddings([clip])[0], together[i], atol=1e-5)


def test_similarity_is_the_cosine_of_embeddings(judge):
    a, b, c = noise(1.0, 7), noise(1.2, 8, 0.3), noise(0.9, 9)
    sims = judge.similarity([a, b, c], [a, a, b])
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    emb = judge.embeddings([a, b, c])
    expected = [1.0, float(emb[1] @ emb[0]), float(emb[2] @ emb[1])]
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    # cached reference embeddings give the same numbers as reference waveforms
    np.testing.assert_allclose(judge.similarity([a, b, c], emb[[0, 0, 1]]), sims, atol=1e-6)
    assert sims[1] < 0.9999 and sims[2] < 0.9999  # different clips are not identical to the tiny twin either


def test_short_and_empty_clips_are_padded_not_crashed(judge):
    emb = judge.embeddings([np.zeros(0, np.float32), noise(0.05, 10)])
    assert np.all(np.isfinite(emb))
    padded = np.pad(noise(0.05, 10), (0, int(MIN_SECONDS * SAMPLE_RATE) - int(0.05 * SAMPLE_RATE)))
    np.testing.assert_allclose(judge.embeddings([padded])[0], emb[1], atol=1e-5)


def test_bad_input_is_a_scorer_error(judge):
    with pytest.raises(ScorerError, match="references"):
        judge.similarity([noise(1, 0)], [])
    with pytest.raises(ScorerError, match="shapes"):
        cosine(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ScorerError, match="cannot load speaker model"):
        SpeakerScorer("/nonexistent/speaker-model").embeddings([noise(1, 0)])


def test_cosine_of_a_zero_vector_is_zero():
    assert cosine(np.zeros((1, 4)), np.ones((1, 4)))[0] == 0.0


# -- the speaker reward ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from stylegrpo.llasa import load_tokenizer

    return load_tokenizer("tiny:llasa")


@pytest.fixture(scope="module")
def catalog():
    return parse_catalog(CATALOG_YAML, "test-styles.yaml")


def make_reward(tokenizer, catalog):
    cache = AudioCache(
        "tiny:xcodec2",
        tokenizer,
        max_completion_length=CAP,
        guards=GuardSettings(check_duration=False),
        batch_size=8,
    )
    judges = Judges(
        clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper", wavlm="tiny:wavlm-sv", batch_size=8
    )
    ctx = RewardContext(cache, judges, catalog, weights={"speaker": 1.0})
    (reward,) = build_reward_functions(["speaker"], ctx)
    return reward, ctx


def call(fn, completion_ids, metrics=None, **columns):
    n = len(completion_ids)
    log_metric = (lambda k, v: metrics.setdefault(k, []).append(v)) if metrics is not None else None
    return fn(
        prompts=[[{"role": "user", "content": "x"}]] * n,
        completions=[[{"role": "assistant", "content": ""}]] * n,
        completion_ids=completion_ids,
        text=["one two three"] * n,
        style=columns.pop("style", ["calm"] * n),
        description=["a calm voice"] * n,
        log_metric=log_metric,
        **columns,
    )


def test_speaker_is_a_registered_reward():
    assert "speaker" in REWARD_NAMES


def test_reward_is_the_cosine_to_the_decoded_reference_and_none_without_one(tokenizer, catalog):
    reward, ctx = make_reward(tokenizer, catalog)
    assert reward.__name__ == "speaker"
    ref_a, ref_b = codes(30, 1), codes(24, 2)
    gen = [codes(30, 1), codes(28, 3), codes(26, 4), codes(29, 5), []]  # the first equals reference A
    comp = [ids(tokenizer, c) for c in gen]
    refs = [ref_a, ref_a, ref_b, None, ref_b]  # item 3 has no reference; item 4 is guarded (no speech)
    speakers = ["a", "a", "b", "", "b"]
    metrics = {}
    out = call(
        reward, comp, metrics, reference_codes=refs, speaker_id=speakers, style=["calm"] * 4 + ["fast"]
    )
    assert out[3] is None  # no reference: not applicable (TRL: NaN, left out of this reward)
    assert out[4] == 0.0  # a reference but no speech: the guard's lowest value
    # the same codes as the reference: the same audio, so the same speaker embedding
    assert out[0] == pytest.approx(1.0, abs=1e-5)
    codec, judge = ctx.cache.codec, ctx.judges.speaker
    wavs = {i: codec.decode([gen[i]])[0] for i in (1, 2)}
    refs_wav = {"a": codec.decode([ref_a])[0], "b": codec.decode([ref_b])[0]}
    for i, sid in ((1, "a"), (2, "b")):
        cos = judge.similarity([wavs[i]], [refs_wav[sid]])[0]
        assert out[i] == pytest.approx((1 + cos) / 2, abs=1e-5)
        assert out[i] < 0.9999
    assert len(metrics["speaker_similarity/calm"]) == 3  # the raw cosine of each scored clip


def test_each_reference_is_decoded_once(tokenizer, catalog):
    reward, ctx = make_reward(tokenizer, catalog)
    calls = []
    real = ctx.cache.codec.decode

    def counting(batch, **kw):
        calls.append([len(c) for c in batch])
        return real(batch, **kw)

    ctx.cache.codec.decode = counting
    ref = codes(20, 7)
    for seed in (10, 11, 12):  # three batches (different completions), one reference speaker
        comp = [ids(tokenizer, codes(22, seed + k)) for k in range(2)]
        call(reward, comp, reference_codes=[ref, ref], speaker_id=["s1", "s1"])
    assert [c for c in calls if c == [20]] == [[20]]  # the reference: decoded in the first batch only
    assert len(calls) == 4  # three batch decodes + one reference decode


def test_a_dataset_without_references_gives_none_everywhere(tokenizer, catalog):
    reward, ctx = make_reward(tokenizer, catalog)
    comp = [ids(tokenizer, codes(25, s)) for s in range(3)]
    assert call(reward, comp) == [None, None, None]
    assert call(reward, comp, reference_codes=[[], None, []], speaker_id=["", "", ""]) == [None, None, None]
    assert "speaker" not in vars(ctx.judges)  # no reference anywhere: the speaker judge never loaded


def test_the_reward_judges_the_completion_not_the_reference(tokenizer, catalog):
    """Same reference, different completions -> different values; the same completion with another
    reference -> another value: the generated side is the completion alone."""
    reward, _ = make_reward(tokenizer, catalog)
    ref = codes(30, 20)
    same = call(reward, [ids(tokenizer, ref), ids(tokenizer, codes(30, 21))], reference_codes=[ref, ref])
    assert same[0] == pytest.approx(1.0, abs=1e-5) and same[1] < same[0] - 1e-4
    other = call(reward, [ids(tokenizer, ref)], reference_codes=[codes(30, 22)])
    assert other[0] < same[0] - 1e-4


# -- eval: similarity to the reference per style, base vs adapter -------------------------------------------


def test_eval_speaker_similarity_per_style_base_vs_adapter(tmp_path, catalog):
    from stylegrpo.eval.metrics import ADAPTER, BASE, summarize
    from stylegrpo.eval.run import EvalSettings, Judges
    from stylegrpo.presets import get_preset

    ref = noise(1.5, 30)
    settings = EvalSettings(
        out=tmp_path / "eval",
        catalog=catalog,
        texts=["a"],
        texts_source="test",
        preset=get_preset("tiny"),
        device="cpu",
        references={"spk": ref},
    )
    judges = Judges(settings)
    # base clips: other noise; adapter clips of "calm": the reference itself (similarity 1)
    records, wavs = [], []
    for style in ("calm", "fast"):
        for item in range(3):
            for model in (BASE, ADAPTER):
                wav = ref if (model == ADAPTER and style == "calm") else noise(1.2, 40 + item)
                records.append({"style": style, "item": item, "model": model, "speaker_id": "spk"})
                wavs.append(wav)
    records.append({"style": "fast", "item": 9, "model": BASE, "speaker_id": None})  # no reference voice
    wavs.append(noise(1.0, 50))
    sims = judges.speaker_similarity(records, wavs)
    assert math.isnan(sims[-1]) and np.all(np.isfinite(sims[:-1]))
    direct = judges.speaker.similarity(wavs[:-1], [ref] * (len(wavs) - 1))
    np.testing.assert_allclose(sims[:-1], direct, atol=1e-5)
    for r, s in zip(records, sims, strict=True):
        r["speaker_similarity"] = float(s)
    rows = {
        (r["style"], r["model"]): r
        for r in summarize(records, ["calm", "fast"], n_resamples=200)
        if r["metric"] == "speaker_similarity"
    }
    assert rows[("calm", ADAPTER)]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert rows[("calm", ADAPTER)]["diff_mean"] > 0  # the adapter's clips are the reference voice
    assert rows[("fast", ADAPTER)]["diff_mean"] == pytest.approx(0.0, abs=1e-6)  # the same clips both sides
    assert rows[("fast", BASE)]["n"] == 3  # the clip without a reference is left out


def test_eval_with_a_reference_voice(tmp_path, speak, capsys):
    """`eval --speaker`: every clip of a non-identity style is spoken after the reference (its transcript in
    the prompt) and gets a speaker similarity; identity styles are spoken without it (NaN)."""
    import json

    import soundfile as sf

    from stylegrpo.cli import main

    styles = tmp_path / "styles.yaml"
    styles.write_text(
        CATALOG_YAML + "  - name: child\n    phrase: a child speaking\n    descriptions: [a child]\n"
        "    identity: true\n"
    )
    texts = tmp_path / "texts.txt"
    texts.write_text("Good morning, everyone.\nPlease close the door.\n")
    ref = tmp_path / "ref.wav"
    sf.write(ref, speak("The garden is quiet this morning.", "-v", "en+f3"), SAMPLE_RATE)
    out = tmp_path / "eval"
    argv = ["eval", "--preset", "tiny", "--device", "cpu", "--styles", str(styles), "--texts", str(texts)]
    argv += ["--max-seconds", "1", "--out", str(out), "--speaker", str(ref)]
    argv += ["--speaker-text", "The garden is quiet this morning."]
    assert main(argv) == 0, capsys.readouterr().err
    assert "speaker_similarity" in capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    assert len(records) == 6
    for r in records:
        if r["style"] == "child":
            assert r["speaker_id"] == "" and r["speaker_similarity"] is None  # NaN, saved as null
            assert "The garden is quiet" not in r["prompt"]
        else:
            assert r["speaker_id"] == "speaker" and "The garden is quiet this morning. " in r["prompt"]
            assert r["no_speech"] or -1.0 <= r["speaker_similarity"] <= 1.0
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    sim = {r["style"]: r for r in rows if r["metric"] == "speaker_similarity" and r["model"] == "base"}
    assert sim["child"]["n"] == 0 and sim["calm"]["n"] + sim["fast"]["n"] > 0
    config = json.loads((out / "eval_config.json").read_text())
    assert config["identity"]["speaker"]["text"] == "The garden is quiet this morning."
    # another reference voice is another eval: the folder is not resumed with it
    sf.write(ref, speak("Another voice entirely here.", "-v", "en+m7"), SAMPLE_RATE)
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    # bad input: a silent reference is one line naming the file, nothing written
    sf.write(ref, np.zeros(2 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert main([*argv[:-4], "--out", str(tmp_path / "e2"), "--speaker", str(ref)]) == 2
    err = capsys.readouterr().err
    assert "ref.wav" in err and "silent" in err and not (tmp_path / "e2").exists()
