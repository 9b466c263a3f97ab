"""The `clean` reward (DNSMOS BAK) on REAL speech: bounds, guards, a style that opts out, a style that
lowers its target. The audio goes through the real reward path (AudioCache, guards, TRL's call
signature); only the codec is replaced by one that hands back prepared espeak-ng recordings."""

import numpy as np
import pytest

from stylegrpo.scorers.quality import QualityScorer, clean_score
from stylegrpo.styles import DEFAULT_BAK_TARGET, parse_catalog
from stylegrpo.training.rewards import AudioCache, Judges, RewardContext, build_reward_functions

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call Stella and ask her to bring these things with her from the store."
)
CATALOG_YAML = """
styles:
  - name: plain
    phrase: a plain voice
    descriptions: [a plain voice]
  - name: breathy
    phrase: a man whispering
    descriptions: [a man whispering]
    quality: {bak_target: 2.3}
  - name: lofi
    phrase: an old radio
    descriptions: [an old radio broadcast]
    quality: {clean: false}
"""


class PreparedCodec:
    """Decodes a code sequence to the prepared waveform named by its first code."""

    def __init__(self, wavs):
        self.wavs = wavs

    def decode(self, codes, exact=True):
        return [self.wavs[c[0]] for c in codes]


@pytest.fixture(scope="module")
def recordings(speak):
    out = {"clean": speak(TEXT), "whisper": speak(TEXT, "-v", "en+whisper")}
    clean = out["clean"]
    noise = np.random.default_rng(0).standard_normal(len(clean))
    out["noisy"] = (clean + noise * np.sqrt(np.mean(clean**2) / 10)).astype(np.float32)  # SNR 10 dB
    out["silence"] = np.zeros_like(clean)
    return out


@pytest.fixture(scope="module")
def tokenizer():
    from stylegrpo.llasa import load_tokenizer

    return load_tokenizer("tiny:llasa")


@pytest.fixture(scope="module")
def rig(tokenizer, recordings):
    """(reward function, ids of each recording, bak of each recording)."""
    from stylegrpo.llasa import speech_tokens

    names = list(recordings)
    cache = AudioCache(PreparedCodec([recordings[n] for n in names]), tokenizer, max_completion_length=400)
    judges = Judges(clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper")
    judges.quality = QualityScorer(threads=1)  # the real DNSMOS model, on one thread in the tests
    ctx = RewardContext(cache, judges, parse_catalog(CATALOG_YAML, "clean-styles.yaml"))
    (fn,) = build_reward_functions(["clean"], ctx)
    st = speech_tokens(tokenizer)
    ids = {n: st.ids_from_codes([k] * 20) + [st.end_id] for k, n in enumerate(names)}
    bak = dict(zip(names, judges.quality.bak(list(recordings.values())), strict=True))
    return fn, ids, bak, st


def run(fn, ids, cases, metrics=None):
    log_metric = (lambda k, v: metrics.setdefault(k, []).append(v)) if metrics is not None else None
    return fn(
        prompts=[None] * len(cases),
        completions=[None] * len(cases),
        completion_ids=[ids[c] for c, _ in cases],
        text=[TEXT] * len(cases),
        style=[s for _, s in cases],
        description=["x"] * len(cases),
        log_metric=log_metric,
    )


def test_known_values_bounds_and_order(rig):
    fn, ids, bak, _ = rig
    cases = [("clean", "plain"), ("noisy", "plain"), ("whisper", "plain")]
    metrics = {}
    values = run(fn, ids, cases, metrics)
    assert all(0.0 <= v <= 1.0 for v in values)
    for (clip, _), v in zip(cases, values, strict=True):
        assert v == pytest.approx(clean_score(bak[clip], DEFAULT_BAK_TARGET))
    assert values[0] > 0.9 > values[2] > values[1]  # clean > whisper > 10 dB noise
    assert metrics["quality/bak/plain"] == pytest.approx([bak[c] for c, _ in cases])
    assert len(metrics["quality/sig/plain"]) == len(metrics["quality/ovrl/plain"]) == 3


def test_a_style_with_a_lower_target_counts_whispering_as_clean(rig):
    fn, ids, bak, _ = rig
    whisper_plain, whisper_breathy, noisy_breathy = run(
        fn, ids, [("whisper", "plain"), ("whisper", "breathy"), ("noisy", "breathy")]
    )
    assert bak["whisper"] > 2.3 and whisper_breathy == 1.0 > whisper_plain
    assert noisy_breathy < 0.75  # noise is still penalised under the lower target


def test_a_style_that_opts_out_gets_a_constant(rig):
    fn, ids, _, st = rig
    values = run(fn, ids, [("clean", "lofi"), ("noisy", "lofi"), ("whisper", "lofi")])
    assert values == [1.0, 1.0, 1.0]  # constant within its groups: moves nothing


def test_guards_give_zero(rig):
    fn, ids, _, st = rig
    cut = {**ids, "cut": st.ids_from_codes([0] * 400), "none": [st.end_id]}  # truncated, no speech
    values = run(fn, cut, [("silence", "plain"), ("cut", "plain"), ("none", "lofi"), ("clean", "plain")])
    assert fn.ctx.cache.last.flags[:3] == ["silent", "truncated", "no_speech"]
    assert values[:3] == [0.0, 0.0, 0.0] and values[3] > 0.9  # an opted-out style's guarded clip too


def test_catalog_quality_field(repo_styles):
    from stylegrpo.styles import CatalogError

    cat = parse_catalog(CATALOG_YAML, "clean-styles.yaml")
    assert cat.get("plain").quality.clean and cat.get("plain").quality.bak_target == DEFAULT_BAK_TARGET
    assert not cat.get("lofi").quality.clean and cat.get("breathy").quality.bak_target == 2.3
    assert repo_styles.get("whispering").quality.bak_target < DEFAULT_BAK_TARGET  # the shipped catalog
    for bad, msg in [
        ("{bak_target: 9}", r"clean-styles.yaml:9: style #2 'breathy': quality.bak_target must be a number"),
        ("{clean: maybe}", "quality.clean must be true or false"),
        ("{weight: 0}", "quality: unknown key.*weight; allowed: bak_target, clean"),
        ("2.5", "field 'quality' must be a mapping"),
    ]:
        with pytest.raises(CatalogError, match=msg):
            parse_catalog(CATALOG_YAML.replace("{bak_target: 2.3}", bad), "clean-styles.yaml")
