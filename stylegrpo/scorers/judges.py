"""Style judges: one small interface over every judge that can say how much a clip sounds like a style.

A :class:`StyleJudge` scores a batch of 16 kHz clips against a list of catalog styles and returns a
matrix ``[n_clips, n_styles]`` (higher = more like that style; NaN where the judge cannot judge that
style, ``applies_to(style)`` False). It loads its model lazily (on the first score), runs on the device
it was built for, and wraps the judge code that the rewards and eval already use, never a copy of it:

=============  ======================================================================================
spec           score of clip x for style s
=============  ======================================================================================
``clap``       cosine of CLAP(x) with s's prototype (the re-normalised mean of its descriptions'
               embeddings, ``ClapScorer.style_similarities``); ``clap:NAME`` picks the checkpoint.
               ``score="probability"``: the softmax over the styles asked for, as ``style_contrastive``.
``acoustic``   ``acoustic.target_score`` of x's measures against s's targets (what the ``acoustic``
               reward gives); applies to styles with targets. Without ``texts`` the speaking rate
               cannot be measured: that target is left out (a style with only it does not apply).
``quality``    ``quality.clean_score`` of x's DNSMOS BAK against s's ``quality.bak_target`` (what the
               ``clean`` reward gives); applies to styles that declare a ``quality:`` block and keep
               the clean reward on. A condition judge (is the signal as clean as the style wants?),
               not a discriminator between styles.
``ast``        AudioSet classifier (``stylegrpo.scorers.ast_classifier``): the probability mass on
               the AudioSet labels a style names in ``classifier_labels``; applies to styles that do.
=============  ======================================================================================

``build_judge(spec)`` takes ``PREFIX`` or ``PREFIX:MODEL`` (``clap:laion/larger_clap_general``,
``ast:tiny:ast``, ``quality:/folder/with/dnsmos``); the part after the first ``:`` is the judge's model
spec (a hub id, a folder or ``tiny:KIND``), none: the judge's default. ``JUDGES`` maps each prefix to
the ``module:Class`` that implements it: adding a judge is one file with a ``StyleJudge`` subclass and
one line here.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base import DEFAULT_BATCH_SIZE, ScorerError, as_waveforms

log = logging.getLogger(__name__)

# prefix -> "module:Class" of its StyleJudge (imported only when that judge is built)
JUDGES: dict[str, str] = {
    "clap": "stylegrpo.scorers.judges:ClapJudge",
    "acoustic": "stylegrpo.scorers.judges:AcousticJudge",
    "quality": "stylegrpo.scorers.judges:QualityJudge",
    "ast": "stylegrpo.scorers.ast_classifier:AstJudge",
}
TEXT_FIELDS = frozenset({"speaking_rate"})  # acoustic targets that need the clip's text to be measured


class StyleJudge:
    """How much each clip sounds like each style. Subclasses set ``prefix`` and implement ``applies_to``
    and ``_scores`` (called with the applicable styles only); ``style_scores`` fills the rest with NaN.

    ``name`` is the spec the judge was built from (``clap:tiny:clap``): what an audit or a log shows.
    ``model_spec`` is the part after the prefix (None: the judge's default model, or no model at all).
    """

    prefix: str = ""
    description: str = ""  # one line for list_judges() and help texts
    scorer: Any = None  # the model-backed judges' scorer (LazyScorer); None for model-free judges
    score_range: tuple[float, float] = (
        0.0,
        1.0,
    )  # lowest and highest possible score (a reward maps it to 0..1)

    def __init__(
        self, model: str | None = None, *, device: Any = "auto", batch_size: int = DEFAULT_BATCH_SIZE
    ):
        self.model_spec = model or None
        self.device = device
        self.batch_size = int(batch_size)
        self.name = self.prefix if self.model_spec is None else f"{self.prefix}:{self.model_spec}"

    def __repr__(self) -> str:
        return f"<style judge {self.name} on {self.device}>"

    @property
    def loaded(self) -> bool:
        """Whether the judge's model has been loaded (False until the first score; True for model-free)."""
        return self.scorer is None or self.scorer.loaded

    def applies_to(self, style: Any) -> bool:  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def style_scores(
        self, wavs16k: Sequence[Any], styles: Sequence[Any], *, texts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Scores [n_clips, n_styles] (float64) of 16 kHz clips against ``styles`` (catalog ``Style``
        objects), NaN in the columns of styles the judge does not apply to. ``texts``: the words each
        clip speaks, where known (only judges that measure against the text use them)."""
        wavs = as_waveforms(wavs16k)
        styles = list(styles)
        if texts is not None and len(texts) != len(wavs):
            raise ScorerError(f"got {len(wavs)} clips but {len(texts)} texts; give one per clip")
        out = np.full((len(wavs), len(styles)), np.nan, dtype=np.float64)
        cols = [j for j, s in enumerate(styles) if self._applies(s, texts)]
        if wavs and cols:
            scores = np.asarray(self._scores(wavs, [styles[j] for j in cols], texts), dtype=np.float64)
            if scores.shape != (len(wavs), len(cols)):
                raise ScorerError(
                    f"judge {self.name}: scored {scores.shape}, expected {(len(wavs), len(cols))}"
                )
            out[:, cols] = scores
        return out

    def _applies(self, style: Any, texts: Sequence[str] | None) -> bool:
        return self.applies_to(style)

    def _scores(
        self, wavs: list[np.ndarray], styles: list[Any], texts: Sequence[str] | None
    ) -> np.ndarray:  # pragma: no cover - every subclass implements it
        raise NotImplementedError


class ClapJudge(StyleJudge):
    """CLAP: cosine of each clip with each style's prototype (mean of its descriptions' embeddings).

    ``score="probability"`` gives the softmax over the styles asked for, at CLAP's learned temperature
    (``ClapScorer.style_probabilities``: what the ``style_contrastive`` reward and eval's ``style_prob``
    take). ``scorer`` is the underlying :class:`~stylegrpo.scorers.clap.ClapScorer` (text embeddings,
    prototypes) for tools that look inside the judge, e.g. the audit's per-description geometry.
    """

    prefix = "clap"
    description = "CLAP audio-text cosine with the style's descriptions (prototype of its paraphrases)"
    SCORES = ("cosine", "probability")

    def __init__(
        self,
        model: str | None = None,
        *,
        device: Any = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        dtype: Any = None,
        score: str = "cosine",
        scorer: Any = None,
    ):
        super().__init__(model, device=device, batch_size=batch_size)
        if score not in self.SCORES:
            raise ScorerError(f"clap judge: score must be one of {', '.join(self.SCORES)} (got {score!r})")
        self.score = score
        self.score_range = (-1.0, 1.0) if score == "cosine" else (0.0, 1.0)
        if scorer is None:
            from .clap import ClapScorer

            scorer = ClapScorer(self.model_spec, device=device, batch_size=batch_size, dtype=dtype)
        self.scorer = scorer  # an existing ClapScorer may be shared (the rewards' or eval's own)

    def applies_to(self, style: Any) -> bool:
        return bool(getattr(style, "descriptions", ()))

    def _scores(self, wavs: list[np.ndarray], styles: list[Any], texts: Sequence[str] | None) -> np.ndarray:
        candidates = {s.name: tuple(s.descriptions) for s in styles}
        if self.score == "probability":
            return self.scorer.style_probabilities(wavs, candidates)
        return self.scorer.style_similarities(wavs, candidates)


class AcousticJudge(StyleJudge):
    """Model-free: ``acoustic.target_score`` of each clip's measures against each style's targets (1 inside
    every range, decaying outside), as the ``acoustic`` reward. Runs on the CPU whatever ``device`` says.

    Without ``texts``, targets that need the text (the speaking rate) are left out of the score, and a
    style whose only target is one of them does not apply (NaN column)."""

    prefix = "acoustic"
    description = "closeness to the style's acoustic targets in styles.yaml (model-free measures)"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: Any = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int = 1,
    ):
        if model:
            raise ScorerError(
                f"the acoustic judge has no model; use the spec 'acoustic' (got 'acoustic:{model}')"
            )
        super().__init__(None, device=device, batch_size=batch_size)
        self.workers = int(workers)

    def applies_to(self, style: Any) -> bool:
        return bool(getattr(style, "targets", None))

    def _applies(self, style: Any, texts: Sequence[str] | None) -> bool:
        return bool(self._targets(style, texts))

    @staticmethod
    def _targets(style: Any, texts: Sequence[str] | None) -> dict[str, tuple[float, float]]:
        targets = dict(getattr(style, "targets", None) or {})
        if texts is None:
            targets = {k: v for k, v in targets.items() if k not in TEXT_FIELDS}
        return targets

    def _scores(self, wavs: list[np.ndarray], styles: list[Any], texts: Sequence[str] | None) -> np.ndarray:
        from .acoustic import measure_batch, target_score

        measures = measure_batch(wavs, list(texts) if texts is not None else None, workers=self.workers)
        targets = [self._targets(s, texts) for s in styles]
        return np.asarray([[target_score(m, t) for t in targets] for m in measures], dtype=np.float64)


class QualityJudge(StyleJudge):
    """DNSMOS BAK of each clip mapped by ``clean_score`` onto [0, 1] against the style's ``bak_target``
    (what the ``clean`` reward gives). Applies to styles that declare a ``quality:`` block (settings other
    than the defaults) and do not opt out with ``clean: false``."""

    prefix = "quality"
    description = "DNSMOS BAK against the style's quality.bak_target (styles with a quality: block)"

    def __init__(
        self,
        model: str | None = None,
        *,
        device: Any = "auto",
        batch_size: int | None = None,
        threads: int | None = None,
        scorer: Any = None,
    ):
        super().__init__(model, device=device, batch_size=batch_size or DEFAULT_BATCH_SIZE)
        if scorer is None:
            from .quality import QualityScorer

            scorer = QualityScorer(self.model_spec, device=device, batch_size=batch_size, threads=threads)
        self.scorer = scorer

    def applies_to(self, style: Any) -> bool:
        from ..styles import QualitySettings

        quality = getattr(style, "quality", None)
        return quality is not None and quality != QualitySettings() and bool(quality.clean)

    def _scores(self, wavs: list[np.ndarray], styles: list[Any], texts: Sequence[str] | None) -> np.ndarray:
        from .quality import clean_score

        bak = self.scorer.bak(wavs)
        return np.asarray(
            [[clean_score(float(b), s.quality.bak_target) for s in styles] for b in bak], dtype=np.float64
        )


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"clap:laion/x"`` -> (``"clap"``, ``"laion/x"``); ``"ast"`` -> (``"ast"``, None)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ScorerError(f"a judge spec must be PREFIX or PREFIX:MODEL; valid prefixes: {', '.join(JUDGES)}")
    prefix, _, model = spec.strip().partition(":")
    return prefix.strip().lower(), (model.strip() or None)


def judge_class(prefix: str) -> type[StyleJudge]:
    """The StyleJudge class registered under ``prefix``."""
    if prefix not in JUDGES:
        raise ScorerError(f"unknown style judge {prefix!r}; valid judges: {', '.join(JUDGES)}")
    module, attr = JUDGES[prefix].split(":")
    return getattr(importlib.import_module(module), attr)


def build_judge(spec: str, *, device: Any = "auto", **kw: Any) -> StyleJudge:
    """The style judge a spec names (``clap``, ``clap:MODEL``, ``ast:MODEL``, ``acoustic``, ``quality``).

    Nothing is loaded yet (models load on the first score). ``kw`` goes to the judge (``batch_size``,
    ``dtype``, ``score``...); one it does not take is a ScorerError naming it."""
    prefix, model = split_spec(spec)
    cls = judge_class(prefix)
    try:
        return cls(model, device=device, **kw)
    except TypeError as e:
        raise ScorerError(f"judge {spec!r}: {e}") from None


def list_judges() -> list[tuple[str, str]]:
    """(prefix, one-line description) of every registered judge, in registry order."""
    return [(prefix, judge_class(prefix).description) for prefix in JUDGES]


def own_style_scores(scores: np.ndarray, styles: Sequence[Any], own: Sequence[str]) -> np.ndarray:
    """Each clip's score for its own style (``own[i]`` a style name among ``styles``), NaN where none."""
    names = [getattr(s, "name", s) for s in styles]
    out = np.full(len(own), math.nan)
    for i, name in enumerate(own):
        if name in names:
            out[i] = scores[i, names.index(name)]
    return out
