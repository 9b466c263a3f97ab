"""The `style_classifier` reward (the second style judge as a GRPO reward) on the tiny twins: its values are
the judge's own-style scores, styles without classifier_labels are left out (None), a misspelt label stops
the reward from being built, and a tiny GRPO run trains with it and logs it per style."""

import numpy as np
import pytest
from test_training_rewards import ids
from test_training_run import settings as tiny_settings

from stylegrpo.scorers import ScorerError
from stylegrpo.styles import parse_catalog
from stylegrpo.training.rewards import (
    AudioCache,
    GuardSettings,
    Judges,
    RewardContext,
    build_reward_functions,
)

CATALOG = """
styles:
  - name: quiet
    phrase: a man whispering
    descriptions: [a quiet whisper]
    classifier_labels: [Whispering]
  - name: loud
    phrase: a man shouting
    descriptions: [a man shouting loudly]
    classifier_labels: [Shout, Yell]
  - name: plain
    phrase: a plain voice
    descriptions: [a plain voice]
"""
CAP = 40


@pytest.fixture(scope="module")
def tokenizer():
    from stylegrpo.llasa import load_tokenizer

    return load_tokenizer("tiny:llasa")


def _ctx(tokenizer, catalog, classifier="ast:tiny:ast"):
    cache = AudioCache(
        "tiny:xcodec2", tokenizer, max_completion_length=CAP, guards=GuardSettings(), batch_size=8
    )
    judges = Judges(clap="tiny:clap", asr="tiny:parakeet", whisper="tiny:whisper", classifier=classifier)
    return RewardContext(cache, judges, catalog, weights={"style_classifier": 1.0})


def test_values_are_the_judges_own_style_scores(tokenizer):
    catalog = parse_catalog(CATALOG)
    ctx = _ctx(tokenizer, catalog)
    (fn,) = build_reward_functions(["style_classifier"], ctx)
    assert (
        fn.__name__ == "style_classifier" and not ctx.judges.classifier.loaded
    )  # lazy until the first batch
    rng = np.random.default_rng(0)
    batch = [ids(tokenizer, rng.integers(0, 64, n).tolist()) for n in (30, 30, 25, 35)]
    styles = ["quiet", "loud", "plain", "loud"]
    metrics = {}
    out = fn(
        completion_ids=batch,
        text=["hello there"] * 4,
        style=styles,
        description=[catalog.get(s).phrase for s in styles],
        log_metric=lambda k, v: metrics.setdefault(k, []).append(v),
    )
    assert ctx.cache.last.flags == [None] * 4
    wavs = ctx.cache.last.wavs
    expected = ctx.judges.classifier.style_scores(wavs, catalog.styles)
    own = {"quiet": 0, "loud": 1}
    for i, s in enumerate(styles):
        if s == "plain":
            assert out[i] is None  # no classifier_labels: left out of this reward, not a low score
        else:
            assert out[i] == pytest.approx(expected[i, own[s]], abs=1e-9) and 0.0 < out[i] < 1.0
    assert (
        len(metrics["rewards/style_classifier/loud"]) == 2 and "rewards/style_classifier/plain" not in metrics
    )


def test_a_misspelt_label_stops_the_reward_before_training(tokenizer):
    catalog = parse_catalog(CATALOG.replace("[Whispering]", "[Whisper]"))
    with pytest.raises(
        ScorerError, match="style 'quiet': classifier_labels entry 'Whisper'.*closest: 'Whispering'"
    ):
        build_reward_functions(["style_classifier"], _ctx(tokenizer, catalog))


def test_another_judge_can_back_the_reward(tokenizer):
    """The reward takes any style judge spec: here CLAP's prototype cosine (applies to every style)."""
    catalog = parse_catalog(CATALOG)
    ctx = _ctx(tokenizer, catalog, classifier="clap:tiny:clap")
    (fn,) = build_reward_functions(["style_classifier"], ctx)
    batch = [ids(tokenizer, np.random.default_rng(1).integers(0, 64, 30).tolist())] * 2
    out = fn(completion_ids=batch, text=["hello there"] * 2, style=["plain", "quiet"])
    sims = ctx.judges.classifier.scorer.style_similarities(
        ctx.cache.last.wavs, {s.name: s.descriptions for s in catalog}
    )
    # the cosine mapped onto [0, 1] as the `style` reward maps it: (1 + cos) / 2
    assert out == pytest.approx([(1 + sims[0, 2]) / 2, (1 + sims[1, 0]) / 2], abs=1e-6)


def test_grpo_tiny_run_with_the_style_classifier_reward(tmp_path):
    from stylegrpo.training.cli import parse_config
    from stylegrpo.training.grpo import build_trainer
    from stylegrpo.training.learning_demo import write_demo_data

    styles, dataset = write_demo_data(tmp_path / "data")
    text = styles.read_text()
    assert "  - name: whisper\n" in text
    styles.write_text(
        text.replace("  - name: whisper\n", "  - name: whisper\n    classifier_labels: [Whispering]\n")
    )
    settings = tiny_settings(
        (styles, dataset),
        tmp_path / "run",
        rewards=["acoustic", "style_classifier"],
        reward_weights=[1.0, 0.5],
        max_steps=2,
    )
    s, t, m, _ = parse_config("tiny", settings)
    assert s.style_classifier is None  # default: the AudioSet classifier, its tiny twin for the tiny preset
    run = build_trainer(s, t, m)
    assert run.rewards.judges.classifier.name == "ast:tiny:ast"
    run.trainer.train()
    logged = {k for entry in run.trainer.state.log_history for k in entry}
    assert {"rewards/style_classifier/mean", "rewards/style_classifier/whisper"} <= logged
    voiced = [
        e["rewards/style_classifier/voiced"]
        for e in run.trainer.state.log_history
        if "rewards/style_classifier/voiced" in e
    ]
    assert not voiced  # 'voiced' names no AudioSet label: its rollouts are left out (None), even guarded ones
    assert "timing/reward/style_classifier_s" in logged
