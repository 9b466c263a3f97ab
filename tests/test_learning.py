"""THE learning proof (tiny, CPU): one LoRA learns two styles whose acoustic targets are opposite.

`voiced` (voiced_fraction in [0.85, 1]) and `whisper` ([0, 0.4]) are trained together through the real
`stylegrpo train` path (training/learning_demo.py). On HELD-OUT texts, with fixed seeds and many samples
per prompt, the adapter's mean reward must clearly beat the base model's for EACH style, and the measured
voiced fraction must move up for `voiced` and down for `whisper` from the same adapter. Tiny random
models: this proves the learning mechanics, not speech quality.

The default run takes about 90 s on an idle 2-core machine (120 steps); `-m slow` runs a longer one.
"""

import pytest

from training.learning_demo import FIELD, format_figures, run


def check(figures, reward_margin, field_margin):
    print("\n" + format_figures(figures))
    base, tuned = figures["base"], figures["adapter"]
    table = format_figures(figures)
    for style in ("voiced", "whisper"):
        assert tuned[style]["reward"] >= base[style]["reward"] + reward_margin, table
    assert tuned["voiced"][FIELD] >= base["voiced"][FIELD] + field_margin, table
    assert tuned["whisper"][FIELD] <= base["whisper"][FIELD] - field_margin, table
    # one adapter, two opposite behaviours
    assert tuned["voiced"][FIELD] - tuned["whisper"][FIELD] >= 2 * field_margin, table


def test_one_lora_learns_two_opposite_styles(tmp_path):
    # Measured here (training prompts rendered exactly as at inference): voiced reward 0.41 -> 0.68
    # (voiced fraction 0.58 -> 0.78), whisper 0.33 -> 0.86 (0.58 -> 0.14). The 120-step run is short and
    # seed-sensitive (training seed 7 learns voiced but not yet whisper): the slow test runs 250 steps.
    check(run(tmp_path, steps=120, samples=16), reward_margin=0.15, field_margin=0.15)


@pytest.mark.slow
def test_one_lora_learns_two_opposite_styles_long(tmp_path):
    # Measured here: voiced 0.48 -> 0.70 (voiced fraction 0.60 -> 0.76), whisper 0.32 -> 0.79 (0.60 -> 0.16).
    check(run(tmp_path, steps=250, samples=32), reward_margin=0.2, field_margin=0.15)
