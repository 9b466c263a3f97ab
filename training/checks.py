"""Checks of a training configuration that need no model: run by ``build_trainer`` before anything loads.

* :func:`check_vllm_sampling` refuses vLLM + importance-sampling correction + truncated sampling.
  TRL 1.16 starts vLLM with ``logprobs_mode="processed_logprobs"``: with top-k / top-p / min-p (or an
  allowed-token list) the sampler's log-probs are renormalised over the kept tokens, while the trainer
  recomputes them over the whole vocabulary. Each token's IS ratio then equals the kept mass (< 1), and
  over ~600 speech tokens the sequence ratio goes to ~0: the policy-gradient term vanishes (TRL #6789).
* :func:`overlong_prompts` estimates, per prompt, the completion tokens its text needs at the slowest
  plausible rate of its style, so ``train`` can report, drop or refuse the prompts whose every rollout
  would be truncated at ``max_completion_length`` (see ``OVERLONG_RULES``).
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
