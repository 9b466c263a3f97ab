"""Checks of a training configuration that need no model: run by ``build_trainer`` before anything loads.

* :func:`check_vllm_sampling` refuses vLLM + importance-sampling correction + truncated sampling.
  TRL 1.16 starts vLLM with ``logprobs_mode="processed_logprobs"``: with top-k / top-p / min-p (or an
  allowed-token list) the sampler's log-probs are renormalised over the kept tokens, while the trainer
  recomputes them over the whole vocabulary. Each token's IS ratio then equals the kept mass (< 1), and
  over ~600 speech tokens the sequence ratio goes to ~0: the policy-gradient term vanishes (TRL #6789).
* :func:`overlong_prompts` estimates, per prompt, the completion tokens its text needs at the slowest
  plausible rate of its style, so ``train`` can report, drop or refuse the prompts whose every rollout
  would be truncated at ``max_completion_length`` (see ``OVERLONG_RULES``).
* :func:`check_speaker_reward` holds the recipe's rewards against the dataset's reference speakers (issue
  14): ``speaker`` named on a split without references is refused (its weight would train nothing);
  references without the ``speaker`` reward, and styles left without references while others have them,
  are one warning line each.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stylegrpo.errors import StyleGRPOError
from stylegrpo.speech_time import DEFAULT_SLOWEST_SYLLABLES_PER_SECOND, needed_tokens, slowest_rates

log = logging.getLogger(__name__)

SAMPLING_KEYS = ("top_k", "top_p", "min_p")  # sampling settings that truncate the distribution

# What train does with prompts whose text cannot be spoken within max_completion_length:
#   drop   -> leave them out of training (counted per style in the report)
#   refuse -> stop with an error naming the counts (fix the data or raise the cap)
#   keep   -> train on them anyway (reported only); their rollouts are all truncated
OVERLONG_RULES = ("drop", "refuse", "keep")


def truncated_sampling(training_args: Any, speech_only_sampling: bool = False) -> list[str]:
    """The settings (``key=value``) that make the sampler keep only part of the vocabulary.

    ``generation_kwargs`` overrides the top-level keys (TRL passes it to SamplingParams last).
    """
    gen = dict(getattr(training_args, "generation_kwargs", None) or {})
    values = {k: gen.get(k, getattr(training_args, k, None)) for k in SAMPLING_KEYS}
    found = []
    top_k, top_p, min_p = values["top_k"], values["top_p"], values["min_p"]
    if top_k is not None and int(top_k) > 0:  # 0 (TRL) and -1 (vLLM) keep the whole vocabulary
        found.append(f"top_k={top_k}")
    if top_p is not None and float(top_p) < 1.0:
        found.append(f"top_p={top_p}")
    if min_p is not None and float(min_p) > 0.0:
        found.append(f"min_p={min_p}")
    if gen.get("allowed_token_ids") or speech_only_sampling:
        found.append("speech_only_sampling=true (vLLM allowed_token_ids)")
    return found


def check_vllm_sampling(training_args: Any, speech_only_sampling: bool = False) -> None:
    """Refuse use_vllm + vllm_importance_sampling_correction + truncated sampling (see the module doc)."""
    if not getattr(training_args, "use_vllm", False):
        return
    if not getattr(training_args, "vllm_importance_sampling_correction", False):
        return
    found = truncated_sampling(training_args, speech_only_sampling)
    if found:
        raise StyleGRPOError(
            f"use_vllm with vllm_importance_sampling_correction: true and truncated sampling ({', '.join(found)}): "
            "TRL's vLLM log-probs are renormalised over the kept tokens, so the importance ratios shrink the "
            "policy gradient to ~0. Either set vllm_importance_sampling_correction: false, or sample the whole "
            "vocabulary (top_k: 0, top_p: 1.0, min_p: 0.0, speech_only_sampling: false)"
        )


# ------------------------------------------------------------------------------------ overlong prompts


@dataclass
class OverlongReport:
    """Per style: prompts in the split and prompts whose text cannot fit the completion cap."""

    max_completion_length: int
    totals: dict[str, int]
    overlong: dict[str, int]
    rates: dict[str, float]
    keep: list[int]  # indices of the prompts that fit

    @property
    def n_overlong(self) -> int:
        return sum(self.overlong.values())

    def lines(self) -> list[str]:
        out = [
            f"completion cap {self.max_completion_length} tokens: prompts whose text cannot be spoken within it "
            "at the style's slowest rate"
        ]
        for style in sorted(self.totals):
            out.append(
                f"  {style:<20} {self.overlong.get(style, 0):5d} of {self.totals[style]:5d} cannot fit "
                f"(slowest rate {self.rates.get(style, DEFAULT_SLOWEST_SYLLABLES_PER_SECOND):.1f} syllables/s)"
            )
        return out


def overlong_prompts(
    texts: Sequence[str],
    styles: Sequence[str],
    rates: Mapping[str, float],
    max_completion_length: int,
    tokens_per_second: float,
) -> OverlongReport:
    """Which prompts' texts need more than ``max_completion_length`` tokens at their style's slowest rate."""
    totals: dict[str, int] = {}
    overlong: dict[str, int] = {}
    keep = []
    for i, (text, style) in enumerate(zip(texts, styles, strict=True)):
        totals[style] = totals.get(style, 0) + 1
        rate = rates.get(style, DEFAULT_SLOWEST_SYLLABLES_PER_SECOND)
        if needed_tokens(text, rate, tokens_per_second) > max_completion_length:
            overlong[style] = overlong.get(style, 0) + 1
        else:
            keep.append(i)
    return OverlongReport(max_completion_length, totals, overlong, dict(rates), keep)


def apply_overlong_rule(dataset: Any, catalog: Any, max_completion_length: int | None, rule: str) -> Any:
    """Report (log) per style how many prompts cannot fit the cap, then drop / refuse / keep them."""
    from stylegrpo.audio import CODEC_TOKENS_PER_SECOND

    if rule not in OVERLONG_RULES:
        raise StyleGRPOError(f"overlong_prompts: {rule!r} is not one of {', '.join(OVERLONG_RULES)}")
    if not max_completion_length:
        return dataset
    report = overlong_prompts(
        dataset["text"],
        dataset["style"],
        slowest_rates(catalog),
        max_completion_length,
        CODEC_TOKENS_PER_SECOND,
    )
    # the per-style table explains a drop or a refusal; with nothing to drop (or kept anyway, the warning
    # below names the counts) it is detail for -v
    detail = logging.INFO if report.n_overlong and rule != "keep" else logging.DEBUG
    for line in report.lines():
        log.log(detail, "%s", line)
    if report.n_overlong == 0:
        return dataset
    counts = ", ".join(f"{s} {n}" for s, n in sorted(report.overlong.items()))
    if rule == "refuse":
        raise StyleGRPOError(
            f"{report.n_overlong} prompt(s) cannot be spoken within max_completion_length "
            f"{max_completion_length} at their style's slowest rate ({counts}); raise max_completion_length, "
            "rebuild the data with `stylegrpo build --max-seconds S` (S x 50 tokens <= the cap), or set overlong_prompts: drop"
        )
    if rule == "keep":
        log.warning(
            "overlong_prompts: keep: %d prompt(s) train with every rollout truncated (%s)",
            report.n_overlong,
            counts,
        )
        return dataset
    if not report.keep:
        raise StyleGRPOError(
            f"every prompt is too long for max_completion_length {max_completion_length} ({counts}); raise it "
            "or rebuild the data with shorter texts"
        )
    log.info("overlong_prompts: drop: left out %d prompt(s) (%s)", report.n_overlong, counts)
    return dataset.select(report.keep)


# ------------------------------------------------------------------------------------ reference speakers

SPEAKER_REWARD = "speaker"  # the reward scoring the voice against the row's reference (training/rewards.py)
SPEAKER_README = 'README.md, "Train one LoRA for every style", "Reference speakers and the speaker reward"'
MAX_STYLES_NAMED = 8  # styles listed by name in the coverage line; more are counted


@dataclass
class ReferenceCoverage:
    """How many rows of a split carry a reference speaker (non-empty ``reference_codes``), overall and per
    style; ``speakers`` counts the distinct ``speaker_id`` among them (0 without that column)."""

    rows: int
    referenced: int
    speakers: int
    by_style: dict[str, tuple[int, int]]  # style -> (rows with a reference, rows)


def reference_coverage(dataset: Any) -> ReferenceCoverage:
    """Count the rows with a reference speaker, the rule of the ``speaker`` reward (an empty or None
    ``reference_codes`` is no reference; the prompt checks made sure text and codes come together)."""
    styles = list(dataset["style"])
    if "reference_codes" in dataset.column_names:
        import pyarrow.compute as pc

        codes = dataset.with_format("arrow")["reference_codes"]  # respects select(): no Python lists
        has = [bool(n) for n in pc.fill_null(pc.list_value_length(codes), 0).to_pylist()]
    else:
        has = [False] * len(styles)
    speakers = 0
    if "speaker_id" in dataset.column_names:
        ids = dataset["speaker_id"]
        speakers = len({str(s) for s, h in zip(ids, has, strict=True) if h and s})
    by_style: dict[str, tuple[int, int]] = {}
    for style, h in zip(styles, has, strict=True):
        ref, total = by_style.get(style, (0, 0))
        by_style[style] = (ref + h, total + 1)
    return ReferenceCoverage(len(styles), sum(has), speakers, by_style)


def check_speaker_reward(dataset: Any, catalog: Any, rewards: Sequence[str], where: str) -> ReferenceCoverage:
    """The recipe's rewards against the split's reference speakers, before any model loads:

    * ``speaker`` named but no row has a reference: refused (the reward is None for every row, so TRL
      leaves it out of every group and its weight trains nothing);
    * references but no ``speaker`` reward: one warning (nothing pulls the voice toward the reference; a
      user may want voice-cloning prompts without that reward, so it is not an error);
    * references for some non-identity styles but none for others: one warning naming the others (they
      train only in the sampler's voice, and the speaker reward never scores them). Identity styles get no
      reference from ``build --speakers`` on purpose, so they are left out of this count.
    """
    cov = reference_coverage(dataset)
    named = SPEAKER_REWARD in rewards
    if named and cov.referenced == 0:
        raise StyleGRPOError(
            f"{where}: rewards name {SPEAKER_REWARD!r} but none of its {cov.rows} row(s) has a reference speaker "
            "(columns reference_text/reference_codes): the reward would be None for every row, so its weight "
            f"trains nothing; remove {SPEAKER_REWARD!r} from rewards (and its reward_weights entry) or build "
            "the dataset with `stylegrpo build --speakers DIR`"
        )
    if cov.referenced == 0:
        return cov
    if not named:
        voices = f" from {cov.speakers} speaker(s)" if cov.speakers else ""
        log.warning(
            "%s: %d of %d row(s) carry a reference speaker%s, but the rewards (%s) do not include %r: the "
            "prompts start in the reference voice, but nothing rewards keeping it; to train speaker similarity, add it with a weight (rewards: [..., %s], reward_weights: "
            "[..., W]; see %s)",
            where,
            cov.referenced,
            cov.rows,
            voices,
            ", ".join(rewards),
            SPEAKER_REWARD,
            SPEAKER_REWARD,
            SPEAKER_README,
        )
    identity = {s.name for s in catalog if getattr(s, "identity", False)}
    covered = sorted(s for s, (ref, _) in cov.by_style.items() if ref and s not in identity)
    bare = sorted(s for s, (ref, _) in cov.by_style.items() if not ref and s not in identity)
    if covered and bare:
        shown = ", ".join(bare[:MAX_STYLES_NAMED]) + (
            f" and {len(bare) - MAX_STYLES_NAMED} more" if len(bare) > MAX_STYLES_NAMED else ""
        )
        log.warning(
            "%s: style(s) %s have no row with a reference speaker while %d other style(s) do (%s): they train "
            "only in the sampler's voice%s; rebuild with `stylegrpo build --speakers DIR`, which pairs every "
            "non-identity style",
            where,
            shown,
            len(covered),
            ", ".join(covered[:MAX_STYLES_NAMED]) + (" ..." if len(covered) > MAX_STYLES_NAMED else ""),
            f" and the {SPEAKER_REWARD} reward never scores them" if named else "",
        )
    return cov
