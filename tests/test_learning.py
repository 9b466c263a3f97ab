"""THE learning proof (tiny, CPU): one LoRA learns two styles whose acoustic targets are opposite.

`voiced` (voiced_fraction in [0.85, 1]) and `whisper` ([0, 0.4]) are trained together through the real
`stylegrpo train` path (training/learning_demo.py). On HELD-OUT texts, with fixed seeds and many samples
per prompt, the adapter's mean reward must clearly beat the base model's for EACH style, and the measured
voiced fraction must move up for `voiced` and down for `whisper` from the same adapter. Tiny random
models: this proves the learning mechanics, not speech quality.

The proof must not depend on one training seed (issue 15), so it runs several, listed here and never
searched for: the default test trains seeds 1, 2 and 3 (120 steps each, the base model evaluated once)
and asserts the MEDIAN of each gain; the slow one trains five others for 200 steps and asserts that at
least four learn both styles, printing the per-seed table.
"""

import statistics

import pytest

from stylegrpo.training.learning_demo import FIELD_MARGIN, REWARD_MARGIN, failures, format_table, run_seeds

DEFAULT_SEEDS = (1, 2, 3)
SLOW_SEEDS = (4, 5, 6, 7, 42)

# Measured here (one torch thread, as the demo pins; 4 held-out texts x 16 samples per style; the base is
# the same for every seed: voiced reward 0.41, voiced fraction 0.58; whisper 0.33, 0.58), adapter:
#   steps seed  voiced reward  voiced fraction  whisper reward  whisper fraction
#   120   1     0.66           0.74             0.97            0.03
#   120   2     0.75           0.77             1.00            0.00
#   120   3     0.46           0.49             0.69            0.04   voiced not carried to held-out texts
#   medians of the gains: voiced reward +0.25, whisper reward +0.64, voiced fraction +0.16, whisper -0.55
#   120   4     0.70           0.83             0.99            0.01
#   120   5     0.70           0.72             0.99            0.02   voiced fraction +0.138: missed
#   120   6     0.70           0.87             0.94            0.06
#   120   7     0.57           0.82             0.64            0.35
#   120   42    0.68           0.72             0.95            0.05   voiced fraction +0.145: missed
#   200   4     0.70           0.81             0.98            0.01
#   200   5     0.65           0.89             0.60            0.39
#   200   6     0.70           0.81             0.98            0.01
#   200   7     0.71           0.82             0.79            0.20
#   200   42    0.74           0.86             0.75            0.22   (slow test: 5 of 5, 11.2 min)
# Budget: the default test is three 120-step runs and one base eval: measured 3.9 min on a quiet 2-core
# machine (6.2 min with other test suites running beside it). The slow test: five 200-step runs.


def gains(figures):
    """Per criterion, how far the adapter moved in the wanted direction (the margins apply to these)."""
    base, tuned, field = figures["base"], figures["adapter"], figures["field"]
    return {
        "voiced reward": tuned["voiced"]["reward"] - base["voiced"]["reward"],
        "whisper reward": tuned["whisper"]["reward"] - base["whisper"]["reward"],
        f"voiced {field} up": tuned["voiced"][field] - base["voiced"][field],
        f"whisper {field} down": base["whisper"][field] - tuned["whisper"][field],
    }


def test_one_lora_learns_two_opposite_styles_median_of_three_seeds(tmp_path):
    # The MEDIAN over three training seeds of each gain must clear its margin: one seed in three may miss
    # (seed 3 does, measured: its voiced side does not carry to the held-out texts), two may not.
    results = run_seeds(tmp_path, list(DEFAULT_SEEDS), steps=120, samples=16)
    table = format_table(results, REWARD_MARGIN, FIELD_MARGIN)
    print("\n" + table)
    per_seed = [gains(f) for f in results]
    for name in per_seed[0]:
        margin = REWARD_MARGIN if "reward" in name else FIELD_MARGIN
        median = statistics.median(g[name] for g in per_seed)
        assert median >= margin, f"median {name} gain {median:+.3f} < {margin}\n{table}"


@pytest.mark.slow
def test_one_lora_learns_two_opposite_styles_most_seeds(tmp_path):
    # Five other seeds, each on its own, 200 steps: at least four must learn both styles with the default
    # margins. At 120 steps three of these five did (5 and 42 missed voiced by +0.138 and +0.145); at 200
    # steps 5 and 42 learn both (voiced fraction +0.31 and +0.28).
    results = run_seeds(tmp_path, list(SLOW_SEEDS), steps=200, samples=16)
    table = format_table(results, REWARD_MARGIN, FIELD_MARGIN)
    print("\n" + table)
    passed = sum(not failures(f, REWARD_MARGIN, FIELD_MARGIN) for f in results)
    assert passed >= 4, table
