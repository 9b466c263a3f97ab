"""How long a text takes to speak, in seconds and in Llasa's speech tokens: one rule for build and train.

A text's speech time is its syllables (``count_syllables``) over a speaking rate; a style's slowest
plausible rate is the lower end of its ``speaking_rate`` target, or DEFAULT_SLOWEST_SYLLABLES_PER_SECOND
when it declares none. XCodec2 speaks CODEC_TOKENS_PER_SECOND (50) tokens a second, and a completion ends
with one <|SPEECH_GENERATION_END|> token. ``stylegrpo build --max-seconds`` drops texts the slowest style
cannot speak in time; ``stylegrpo train`` reports (and drops/refuses) prompts that cannot fit its
``max_completion_length``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .audio import CODEC_TOKENS_PER_SECOND

# The slowest plausible rate of a style that declares no speaking_rate target: slow, careful read speech
# (normal conversation is ~4-5 syllables/s; the slow styles of the bundled catalog go down to 2.5).
DEFAULT_SLOWEST_SYLLABLES_PER_SECOND = 3.0
END_TOKENS = 1  # the <|SPEECH_GENERATION_END|> token a completion needs after its speech


def slowest_rate(style: Any) -> float:
    """A style's slowest plausible speaking rate (syllables/s)."""
    target = style.targets.get("speaking_rate")  # (min, max) syllables/s
    return float(target[0]) if target else DEFAULT_SLOWEST_SYLLABLES_PER_SECOND


def slowest_rates(styles: Any) -> dict[str, float]:
    """Style name -> slowest plausible rate, for a catalog or an iterable of styles."""
    items: Iterable[Any] = getattr(styles, "styles", styles)
    return {s.name: slowest_rate(s) for s in items}


def speech_seconds(text: str, syllables_per_second: float) -> float:
    from .scorers.acoustic import count_syllables

    return count_syllables(text) / syllables_per_second


def needed_tokens(
    text: str, syllables_per_second: float, tokens_per_second: float = CODEC_TOKENS_PER_SECOND
) -> int:
    """Completion tokens to speak ``text`` at ``syllables_per_second`` (+ the end token)."""
    return int(math.ceil(speech_seconds(text, syllables_per_second) * tokens_per_second)) + END_TOKENS


def tokens_for_seconds(seconds: float, tokens_per_second: float = CODEC_TOKENS_PER_SECOND) -> int:
    """The completion cap that holds ``seconds`` of speech (+ the end token)."""
    return int(math.ceil(seconds * tokens_per_second)) + END_TOKENS
