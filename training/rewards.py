"""GRPO reward functions: thin adapters from TRL's reward call to the stylegrpo judges.

TRL 1.16 calls each reward function as ``f(prompts=, completions=, completion_ids=, **columns)`` where the
columns are the dataset's (``text``, ``style``, ``description``; one entry per completion) plus
``trainer_state``, ``log_extra`` and ``log_metric``. Completions arrive decoded with
``skip_special_tokens``, so speech is read from ``completion_ids``.

The audio of a batch is decoded ONCE: the first reward function of a batch asks the :class:`AudioCache`,
which turns every completion into codec ids, decodes them all in one batched codec call and applies the
guards; the other reward functions of the same batch get the same waveforms back. A completion that
fails a guard (no speech tokens, cut at the length cap, silent, or a duration far from what its text
needs) gets the LOWEST value of every reward function, never a crash and never NaN.

Every reward value lies in [0, 1] (its minimum 0 is also the guard value):

``style``              (1 + cos) / 2 of CLAP(audio) . CLAP(the item's OWN description)
``style_contrastive``  softmax over every catalog style of the audio-style similarity: P(own style)
``cer``                1 - min(CER, 1) of the ASR transcript against the item's text
``whisper_nll``        exp(-NLL / tau) of the item's text given the audio (Whisper, teacher-forced)
``acoustic``           stylegrpo.scorers.acoustic.target_score against the style's targets (1 inside)
``clean``              DNSMOS BAK mapped to [0, 1] (stylegrpo.scorers.quality.clean_score), per-style target
``style_classifier``   the second style judge (AudioSet classifier): P(the style's classifier_labels)

Metrics (through TRL's ``log_metric``; TRL averages the values given within a batch, across processes,
then over the logging window): ``rewards/<name>/<style>`` (one value per completion, so the mean per
style is exact), ``reward_by_style/<style>`` (the weighted sum of all rewards), ``acoustic/<field>/<style>``
(the measured property a style targets), ``guards/<flag>`` (share of completions failing each guard),
``guarded/<style>`` (share failing any guard), ``duration_s/<style>`` (seconds of speech codes),
``quality/<sig|bak|ovrl>/<style>`` (DNSMOS of the clips the clean reward scored),
``timing/decode_s`` and ``timing/reward/<name>_s`` (each reward's own scoring time), ``timing/rewards_sum_s``
(decode + the sum of those) beside ``timing/rewards_wall_s`` (from the batch's first reward call to its
last reward's end: below the sum when the rewards overlap, see :func:`overlap_rewards`); once a batch's weighted rewards are complete, the
diagnostics of training/diagnostics.py: ``tradeoff/<a>~<b>/<style>`` (within-group Spearman of two
rewards) and ``dominance/<name>/<style>`` (share of the within-group variance of the weighted total);
``asr_hallucinated/<style>`` (share of scored clips whose transcript is an ASR freak-out: their CER reward
is None, so TRL leaves them out of the CER term) and, with ``drop_group_cer_above``, ``dropped/<style>``
(share of completions in groups whose best CER is still above it: every reward is None for them, TRL gives
them no advantage).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from stylegrpo.audio import CODEC_TOKENS_PER_SECOND, SAMPLE_RATE
from stylegrpo.errors import StyleGRPOError

log = logging.getLogger(__name__)

# Guard flags, in the order they are checked; a completion carries the first one it fails.
TRUNCATED = "truncated"  # hit max_completion_length without <|SPEECH_GENERATION_END|>
NO_SPEECH = "no_speech"  # fewer than MIN_SPEECH_CODES <|s_N|> tokens before the end token
UNDECODABLE = "undecodable"  # the codec failed on it (never seen on valid codes; kept so it cannot crash)
SILENT = "silent"  # decodes to (near) silence
DURATION = "duration"  # far shorter or longer than the text could be spoken in
GUARD_FLAGS: tuple[str, ...] = (TRUNCATED, NO_SPEECH, UNDECODABLE, SILENT, DURATION)

# A completion needs this many speech codes to count as speech: 2 codes (40 ms) are shorter than any
# syllable, so this only removes non-speech.
MIN_SPEECH_CODES = 2

CACHE_BATCHES = 2  # decoded batches kept: the current one (+ one, e.g. an eval batch between train batches)
_RESERVED_METRIC_SUFFIXES = ("mean", "std")  # TRL's own rewards/<name>/mean|std: a style may not shadow them


@dataclass(frozen=True)
class GuardSettings:
    """Thresholds of the guards that give a completion the lowest reward."""

    silence_dbfs: float = -60.0  # RMS below -60 dBFS is silence (whispering is about -40 dBFS)
    min_syllables_per_second: float = 1.0  # slower than any speech (slow narration is ~2.5 syl/s)
    max_syllables_per_second: float = 12.0  # faster than any intelligible speech (fast news is ~7 syl/s)
    duration_slack_s: float = 1.0  # added on both sides: leading/trailing silence, short texts
    check_duration: bool = True  # False turns the duration guard off (e.g. texts of unknown length)

    def duration_bounds(self, syllables: int) -> tuple[float, float]:
        """Shortest and longest plausible durations (seconds) for a text of ``syllables`` syllables."""
        lo = syllables / self.max_syllables_per_second - self.duration_slack_s
        hi = syllables / self.min_syllables_per_second + self.duration_slack_s
        return max(0.0, lo), hi


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level of a whole clip in dB relative to full scale (-inf-safe: silence is about -240)."""
    if wav.size == 0:
        return -math.inf
    return float(20.0 * np.log10(np.sqrt(np.mean(np.square(wav, dtype=np.float64))) + 1e-12))


def count_syllables(text: str) -> int:
    """Syllables of a text, by the acoustic judge's counter (the one speaking_rate uses)."""
    from stylegrpo.scorers.acoustic import count_syllables as _count

    return int(_count(text))


@dataclass
class DecodedBatch:
    """The decoded audio of one batch of completions, shared by every reward function of the batch."""

    codes: list[list[int]]
    wavs: list[np.ndarray]  # 16 kHz float32; empty for completions that were not decoded
    flags: list[str | None]  # the first guard a completion fails, or None
    texts: list[str]
    styles: list[str | None]
    descriptions: list[str | None]
    decode_s: float
    memo: dict[str, Any] = field(
        default_factory=dict
    )  # per-batch shared features (CLAP audio embeddings, ...)
    rewards: dict[str, list[float]] = field(default_factory=dict)  # filled in by each reward function
    step: int | None = None  # trainer global step when decoded (None outside a trainer)
    first_call: float = math.inf  # perf_counter() when the first reward function of the batch was called
    elapsed: dict[str, float] = field(default_factory=dict)  # reward name -> its scoring seconds
    _locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False, compare=False)
    _locks_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def valid(self) -> list[int]:
        """Indices of completions that passed every guard (the ones the judges score)."""
        return [i for i, f in enumerate(self.flags) if f is None]

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """A per-batch value computed once (e.g. CLAP audio embeddings used by two rewards), also when
        reward functions run concurrently: one lock per key, so other keys are computed meanwhile."""
        if key in self.memo:
            return self.memo[key]
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self.memo:
                self.memo[key] = compute()
        return self.memo[key]


class AudioCache:
    """Decodes each batch of completions once (one batched codec call) and applies the guards.

    Keyed by the batch's completion ids (and texts, styles, descriptions): every reward function of a
    batch passes the same ``completion_ids``, so the second and later calls are cache hits. The codec
    loads on first use. ``decode_calls`` counts codec calls (tests check it stays one per batch). A lock
    makes concurrent calls (overlapped rewards) wait for the one decode instead of decoding again.
    """

    def __init__(
        self,
        codec: str | Any,
        tokenizer: Any,
        *,
        max_completion_length: int | None,
        device: Any = "cpu",
        guards: GuardSettings | None = None,
        batch_size: int = 16,
        exact: bool = True,
    ):
        self._codec_spec = codec if isinstance(codec, str) else None
        self._codec = None if isinstance(codec, str) else codec
        self.device = device
        self.batch_size = batch_size
        self.exact = exact
        self.max_completion_length = max_completion_length
        self.guards = guards or GuardSettings()
        from stylegrpo.llasa import speech_tokens

        self.speech = speech_tokens(tokenizer)
        self._batches: OrderedDict[Any, DecodedBatch] = OrderedDict()
        self.decode_calls = 0
        self.last: DecodedBatch | None = None
        self._lock = threading.Lock()

    @property
    def codec(self) -> Any:
        if self._codec is None:
            from stylegrpo.codec import Codec

            self._codec = Codec.load(self._codec_spec, self.device, batch_size=self.batch_size)
        return self._codec

    def get(
        self,
        completion_ids: Sequence[Sequence[int]],
        texts: Sequence[str],
        *,
        styles: Sequence[str | None] | None = None,
        descriptions: Sequence[str | None] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        step: int | None = None,
    ) -> DecodedBatch:
        """The decoded batch for these completions; decodes (and logs guard rates) only on the first call."""
        with self._lock:
            return self._get(completion_ids, texts, styles, descriptions, log_metric, step)

    def _get(
        self,
        completion_ids: Sequence[Sequence[int]],
        texts: Sequence[str],
        styles: Sequence[str | None] | None,
        descriptions: Sequence[str | None] | None,
        log_metric: Callable[[str, float], None] | None,
        step: int | None,
    ) -> DecodedBatch:
        ids = [list(map(int, c.tolist() if hasattr(c, "tolist") else c)) for c in completion_ids]
        n = len(ids)
        styles = list(styles) if styles is not None else [None] * n
        descriptions = list(descriptions) if descriptions is not None else [None] * n
        key = (tuple(tuple(c) for c in ids), tuple(texts), tuple(styles), tuple(descriptions))
        batch = self._batches.get(key)
        if batch is not None:
            self._batches.move_to_end(key)
            self.last = batch
            return batch
        batch = self._decode(ids, list(texts), step)
        batch.styles, batch.descriptions = styles, descriptions
        self._batches[key] = batch
        while len(self._batches) > CACHE_BATCHES:
            self._batches.popitem(last=False)
        self.last = batch
        if log_metric is not None:
            log_metric("timing/decode_s", batch.decode_s)
            for flag in GUARD_FLAGS:
                for f in batch.flags:  # one value per completion: TRL's mean is the exact share
                    log_metric(f"guards/{flag}", float(f == flag))
            for style, f, c in zip(batch.styles, batch.flags, batch.codes, strict=True):
                log_metric(style_metric("guarded", style), float(f is not None))
                log_metric(style_metric("duration_s", style), len(c) / CODEC_TOKENS_PER_SECOND)
        counts = {f: batch.flags.count(f) for f in GUARD_FLAGS if f in batch.flags}
        if counts:
            log.debug("guards failed in a batch of %d: %s", n, counts)
        return batch

    def _decode(self, ids: list[list[int]], texts: list[str], step: int | None) -> DecodedBatch:
        n = len(ids)
        codes = [self.speech.codes_from_ids(c) for c in ids]
        flags: list[str | None] = [None] * n
        cap = self.max_completion_length
        for i, c in enumerate(ids):
            ended = self.speech.end_id in c
            if not ended and cap is not None and len(c) >= cap:
                flags[i] = TRUNCATED
            elif len(codes[i]) < MIN_SPEECH_CODES:
                flags[i] = NO_SPEECH
        todo = [i for i in range(n) if flags[i] is None]
        wavs: list[np.ndarray] = [np.zeros(0, dtype=np.float32) for _ in range(n)]
        t0 = time.perf_counter()
        if todo:
            self.decode_calls += 1
            try:
                decoded = self.codec.decode([codes[i] for i in todo], exact=self.exact)
            except (RuntimeError, ValueError, IndexError) as e:
                log.warning("batched decode failed (%s); decoding one by one", e)
                decoded = [self._decode_one(codes[i]) for i in todo]
            for i, wav in zip(todo, decoded, strict=True):
                if wav is None:
                    flags[i] = UNDECODABLE
                    continue
                wav = np.asarray(wav, dtype=np.float32)
                if not np.all(np.isfinite(wav)):
                    wav = np.nan_to_num(wav, nan=0.0, posinf=0.0, neginf=0.0)
                wavs[i] = wav
            todo = [i for i in todo if flags[i] is None]
        decode_s = time.perf_counter() - t0
        g = self.guards
        for i in todo:
            if rms_dbfs(wavs[i]) < g.silence_dbfs:
                flags[i] = SILENT
            elif g.check_duration:
                lo, hi = g.duration_bounds(count_syllables(texts[i]))
                duration = len(wavs[i]) / SAMPLE_RATE
                if not lo <= duration <= hi:
                    flags[i] = DURATION
        return DecodedBatch(codes, wavs, flags, texts, [None] * n, [None] * n, decode_s, step=step)

    def _decode_one(self, codes: list[int]) -> np.ndarray | None:
        try:
            return self.codec.decode([codes], exact=self.exact)[0]
        except (RuntimeError, ValueError, IndexError) as e:
            log.warning("codec failed on a completion of %d codes: %s", len(codes), e)
            return None


class Judges:
    """The scorer models, created on first use and shared by every reward function that needs them."""

    def __init__(
        self,
        *,
        clap: str,
        asr: str,
        whisper: str,
        quality: str = "speechmos",  # DNSMOS inside the speechmos wheel: the same real model in every preset
        wavlm: str = "microsoft/wavlm-base-plus-sv",  # the speaker judge (presets' default; the speaker reward)
        device: Any = "cpu",
        batch_size: int = 16,
        dtype: Any = None,
        asr_dtype: Any = None,
        whisper_dtype: Any = None,
        classifier: str = "ast",  # the style_classifier reward's style judge spec (stylegrpo.scorers.judges)
        classifier_device: Any = None,  # None: the judges' device
    ):
        self.classifier_spec = classifier
        self.classifier_device = device if classifier_device in (None, "auto") else classifier_device
        self.specs = {"clap": clap, "asr": asr, "whisper": whisper, "quality": quality, "wavlm": wavlm}
        self.device = device
        self.batch_size = batch_size
        self.dtype = dtype
        # per judge (recipe keys asr_dtype / whisper_dtype); None or "auto": the judge's own default dtype
        self.asr_dtype = dtype if asr_dtype in (None, "auto") else asr_dtype
        self.whisper_dtype = dtype if whisper_dtype in (None, "auto") else whisper_dtype

    @cached_property
    def clap(self) -> Any:
        from stylegrpo.scorers.clap import ClapScorer

        return ClapScorer(
            self.specs["clap"], device=self.device, batch_size=self.batch_size, dtype=self.dtype
        )

    @cached_property
    def asr(self) -> Any:
        from stylegrpo.scorers.asr import AsrScorer

        return AsrScorer(
            self.specs["asr"], device=self.device, batch_size=self.batch_size, dtype=self.asr_dtype
        )

    @cached_property
    def whisper(self) -> Any:
        from stylegrpo.scorers.whisper_nll import WhisperNllScorer

        return WhisperNllScorer(
            self.specs["whisper"], device=self.device, batch_size=self.batch_size, dtype=self.whisper_dtype
        )

    @cached_property
    def speaker(self) -> Any:
        from stylegrpo.scorers.speaker import SpeakerScorer

        return SpeakerScorer(self.specs["wavlm"], device=self.device, batch_size=self.batch_size)

    @cached_property
    def classifier(self) -> Any:
        """The style judge of the style_classifier reward (built from its spec; the model loads lazily)."""
        from stylegrpo.scorers.judges import build_judge

        return build_judge(self.classifier_spec, device=self.classifier_device, batch_size=self.batch_size)

    @cached_property
    def quality(self) -> Any:
        from stylegrpo.scorers.quality import QualityScorer

        # batch_size left to the judge: it counts 9 s windows and picks 1 on CPU, a full batch on CUDA
        return QualityScorer(self.specs["quality"], device=self.device)


def style_metric(prefix: str, style: str | None) -> str:
    """``prefix/<style>``; a style called like one of TRL's own suffixes (mean, std) gets ``_style``."""
    name = style if style is not None else "unknown"
    if name in _RESERVED_METRIC_SUFFIXES:
        name = f"{name}_style"
    return f"{prefix}/{name}"


class RewardContext:
    """What the reward functions share: the audio cache, the judges, the catalog and the weights."""

    def __init__(
        self,
        cache: AudioCache,
        judges: Judges,
        catalog: Any,
        *,
        weights: Mapping[str, float] | None = None,
        nll_temperature: float = 3.0,
        normalize: bool = True,
        drop_group_cer_above: float | None = None,
    ):
        self.cache = cache
        self.judges = judges
        self.catalog = catalog
        self.weights = dict(weights or {})
        self.nll_temperature = nll_temperature
        self.normalize = normalize  # rewards normalised per group before the sum (normalize_then_sum)
        self.drop_group_cer_above = drop_group_cer_above  # None: never drop a group
        self.timings: dict[str, list[float]] = {}  # reward name -> seconds per call (bench reads these)
        # (wall, sum) seconds of each batch's rewards once all of reward_names have run (bench reads these)
        self.batch_timings: list[tuple[float, float]] = []
        self.reward_names: tuple[str, ...] = ()  # the reward functions built on this context
        self._lock = threading.Lock()  # report() may be called from several reward threads at once

    def targets(self, style: str | None) -> Mapping[str, tuple[float, float]]:
        if style is None:
            return {}
        return self.catalog.get(style).targets

    def quality(self, style: str | None) -> Any:
        """The style's ``quality:`` settings (defaults for an item without a style)."""
        from stylegrpo.styles import QualitySettings

        return QualitySettings() if style is None else self.catalog.get(style).quality

    def report(
        self,
        name: str,
        batch: DecodedBatch,
        values: list[float],
        elapsed: float,
        log_metric: Callable[[str, float], None] | None,
        called: float | None = None,
    ) -> None:
        with self._lock:
            self._report(name, batch, values, elapsed, log_metric, called)

    def _report(
        self,
        name: str,
        batch: DecodedBatch,
        values: list[float],
        elapsed: float,
        log_metric: Callable[[str, float], None] | None,
        called: float | None,
    ) -> None:
        self.timings.setdefault(name, []).append(elapsed)
        was_complete = bool(self.weights) and set(self.weights) <= set(batch.rewards)
        all_done = bool(self.reward_names) and set(self.reward_names) <= set(batch.rewards)
        batch.rewards[name] = values
        batch.elapsed[name] = elapsed
        if called is not None:
            batch.first_call = min(batch.first_call, called)
        if not all_done and self.reward_names and set(self.reward_names) <= set(batch.rewards):
            # the step's reward wall time (first call, decode included, to this last end) beside the sum
            wall = time.perf_counter() - batch.first_call
            total = batch.decode_s + sum(batch.elapsed[k] for k in self.reward_names)
            self.batch_timings.append((wall, total))
            if log_metric is not None and math.isfinite(wall):
                log_metric("timing/rewards_wall_s", wall)
                log_metric("timing/rewards_sum_s", total)
        if log_metric is None:
            return
        log_metric(f"timing/reward/{name}_s", elapsed)
        for style, value in zip(batch.styles, values, strict=True):
            if value is not None:  # None: left out of this reward (hallucinated transcript, dropped group)
                log_metric(style_metric(f"rewards/{name}", style), value)
        # When this call completes the set of weighted rewards of the batch: the weighted total per style
        if not was_complete and self.weights and set(self.weights) <= set(batch.rewards):
            for i, style in enumerate(batch.styles):
                parts = [(w, batch.rewards[k][i]) for k, w in self.weights.items()]
                if all(v is None for _, v in parts):
                    continue  # a dropped completion has no total
                log_metric(
                    style_metric("reward_by_style", style), sum(w * v for w, v in parts if v is not None)
                )
            self.log_diagnostics(batch, log_metric)

    def group_keys(self, batch: DecodedBatch) -> list[tuple]:
        """One key per completion: the rollouts of one prompt share it (text, style, description)."""
        return list(zip(batch.texts, batch.styles, batch.descriptions, strict=True))

    def log_diagnostics(self, batch: DecodedBatch, log_metric: Callable[[str, float], None]) -> None:
        """Trade-offs and dominance per style, over this batch's groups (see training/diagnostics.py)."""
        from .diagnostics import groups, tradeoffs, variance_shares

        keys = self.group_keys(batch)
        valid = set(batch.valid)
        by_style: dict[str | None, list[list[int]]] = {}
        for g in groups(keys):
            by_style.setdefault(batch.styles[g[0]], []).append(g)
        rewards = {k: batch.rewards[k] for k in self.weights}
        numeric = {k: [math.nan if v is None else v for v in vals] for k, vals in rewards.items()}
        for style, gs in by_style.items():
            # Trade-offs among the clips the judges scored: guarded clips are 0 in every reward, which
            # would make any two rewards look aligned. Dominance uses every clip, as the aggregation does.
            scored = [[i for i in g if i in valid] for g in gs]
            for pair, rhos in tradeoffs(numeric, [g for g in scored if len(g) > 1]).items():
                for rho in rhos:  # one value per group: the logged mean is the mean over groups
                    log_metric(style_metric(f"tradeoff/{pair}", style), rho)
            for name, share in variance_shares(rewards, self.weights, gs, normalize=self.normalize).items():
                if math.isfinite(share):
                    log_metric(style_metric(f"dominance/{name}", style), share)

    def dropped(self, batch: DecodedBatch, log_metric: Callable[[str, float], None] | None) -> set[int]:
        """Completions in groups whose best CER is above ``drop_group_cer_above`` (computed once a batch)."""
        if self.drop_group_cer_above is None:
            return set()

        def compute() -> set[int]:
            from .diagnostics import groups

            idx = batch.valid
            cers = np.ones(len(batch))  # guarded clips count as CER 1
            rates, flags = _asr_rates(self, batch, idx)
            for i, r, f in zip(idx, rates, flags, strict=True):
                cers[i] = 1.0 if f else min(max(r.cer, 0.0), 1.0)
            out = set()
            for g in groups(self.group_keys(batch)):
                if min(cers[g]) > self.drop_group_cer_above:
                    out.update(g)
            if log_metric is not None:
                for i, style in enumerate(batch.styles):
                    log_metric(style_metric("dropped", style), float(i in out))
            return out

        return batch.shared("dropped", compute)


class AudioReward:
    """Base of the reward functions: decode (shared), guard, score the valid completions, log.

    Subclasses set ``name`` (the TRL metric name ``rewards/<name>/mean``) and implement ``score``.
    """

    name = "audio"
    minimum = 0.0  # every reward lies in [minimum, maximum]; the guards give the minimum
    maximum = 1.0
    lane = "judge"  # where overlap_rewards runs it: JUDGE_LANE (model judges) or CPU_LANE

    def __init__(self, ctx: RewardContext):
        self.ctx = ctx
        self.__name__ = self.name  # TRL names the function (and its metrics) by __name__

    def __repr__(self) -> str:
        return f"<reward {self.name}>"

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        if completion_ids is None:
            raise StyleGRPOError(f"reward {self.name!r} needs completion_ids (TRL passes them)")
        n = len(completion_ids)
        texts = _column(kwargs, "text", n, self.name)
        styles = kwargs.get("style") or [None] * n
        descriptions = kwargs.get("description") or [None] * n
        log_metric = kwargs.get("log_metric")
        state = kwargs.get("trainer_state")
        called = time.perf_counter()
        batch = self.ctx.cache.get(
            completion_ids,
            texts,
            styles=styles,
            descriptions=descriptions,
            log_metric=log_metric,
            step=getattr(state, "global_step", None),
        )
        rewards = np.full(n, self.minimum, dtype=np.float64)
        t0 = time.perf_counter()
        idx = batch.valid
        left_out: set[int] = set()
        if idx:
            values = np.asarray(self.score(batch, idx, kwargs), dtype=np.float64).reshape(-1)
            if values.shape[0] != len(idx):
                raise RuntimeError(f"reward {self.name}: scored {values.shape[0]} clips, expected {len(idx)}")
            # Never NaN into the loss: a non-finite score is the lowest reward
            values = np.where(np.isfinite(values), np.clip(values, self.minimum, self.maximum), self.minimum)
            rewards[idx] = values
            left_out = self.left_out(batch, idx)
        left_out |= self.not_applicable(batch, kwargs)
        left_out |= self.ctx.dropped(batch, log_metric)
        # None = "not applicable" for TRL: left out of this reward's group statistics, no advantage from it
        out: list[Any] = [None if i in left_out else float(r) for i, r in enumerate(rewards)]
        self.ctx.report(self.name, batch, out, time.perf_counter() - t0, log_metric, called)
        return out

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        """Rewards of the completions ``idx`` (all passed the guards), in that order."""
        raise NotImplementedError

    def left_out(self, batch: DecodedBatch, idx: list[int]) -> set[int]:
        """Completions (of ``idx``) this reward cannot judge: their value becomes None. None by default."""
        return set()

    def not_applicable(self, batch: DecodedBatch, columns: Mapping[str, Any]) -> set[int]:
        """Completions (any, guarded or not) this reward does not apply to, e.g. items without a reference
        speaker: None for every one of them, so TRL leaves them out of this reward. None by default."""
        return set()


def _column(kwargs: Mapping[str, Any], name: str, n: int, reward: str) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        raise StyleGRPOError(
            f"reward {reward!r} needs the dataset column {name!r}; build the dataset with `stylegrpo build` "
            "(columns prompt, text, style, description)"
        )
    if len(values) != n:
        raise StyleGRPOError(
            f"reward {reward!r}: column {name!r} has {len(values)} values for {n} completions"
        )
    return list(values)


def _asr_rates(ctx: RewardContext, batch: DecodedBatch, idx: list[int]) -> tuple[list[Any], list[str | None]]:
    """ASR error rates of the valid clips and each one's hallucination kind (None: a plausible
    transcript), computed once per batch for the CER reward and the group drop."""

    def compute() -> tuple[list[Any], list[str | None]]:
        from stylegrpo.scorers.hallucination import detect

        rates = ctx.judges.asr.error_rates([batch.wavs[i] for i in idx], [batch.texts[i] for i in idx])
        flags = [detect(r.hypothesis, batch.texts[i], batch.wavs[i]) for r, i in zip(rates, idx, strict=True)]
        return rates, flags

    return batch.shared("asr", compute)


def _clap_audio(ctx: RewardContext, batch: DecodedBatch, idx: list[int]) -> np.ndarray:
    """CLAP audio embeddings of the valid clips, computed once per batch for both CLAP rewards."""
    return batch.shared("clap_audio", lambda: ctx.judges.clap.audio_embeddings([batch.wavs[i] for i in idx]))


class StyleReward(AudioReward):
    """(1 + cosine) / 2 between CLAP(audio) and CLAP(the item's own description).

    The affine map keeps the ranking and GRPO's normalised advantages; it puts the value in [0, 1] so that
    the guard's 0 is the lowest possible value. An item is always scored against ITS description.
    """

    name = "style"

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        descriptions = _column(columns, "description", len(batch), self.name)
        audio = _clap_audio(self.ctx, batch, idx)
        text = self.ctx.judges.clap.text_embeddings([str(descriptions[i]) for i in idx])
        cosine = np.sum(audio * text, axis=1)
        return (1.0 + cosine) / 2.0


class StyleContrastiveReward(AudioReward):
    """Probability of the item's own style among every catalog style (softmax of CLAP similarities).

    It rewards sounding like THIS style rather than generic speech. Each style is the normalised mean of
    its descriptions' embeddings; the softmax uses CLAP's own learned scale, as
    ``ClapScorer.style_probabilities`` does (here on the batch's shared audio embeddings).
    """

    name = "style_contrastive"

    @cached_property
    def _styles(self) -> tuple[list[str], np.ndarray]:
        from stylegrpo.scorers.clap import candidates_from_catalog

        candidates = candidates_from_catalog(self.ctx.catalog)
        return list(candidates), self.ctx.judges.clap.style_embeddings(candidates)

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        styles = _column(columns, "style", len(batch), self.name)
        names, protos = self._styles
        audio = _clap_audio(self.ctx, batch, idx)
        logits = (audio @ protos.T).astype(np.float64) / self.ctx.judges.clap.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        own = []
        for row, i in enumerate(idx):
            if styles[i] not in names:
                self.ctx.catalog.get(styles[i])  # raises UnknownStyleError listing the known styles
            own.append(probs[row, names.index(styles[i])])
        return own


class CerReward(AudioReward):
    """1 - min(CER, 1) of the ASR transcript against the item's text.

    Linear in the character error rate: the share of characters right, easy to read in the logs. The cap
    keeps ASR hallucinations (loops, CER > 1) from dominating a group; CER rather than WER because it is
    smoother (one wrong letter is not one wrong word), which the origin post found steadier.
    """

    name = "cer"

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        rates, flags = _asr_rates(self.ctx, batch, idx)
        log_metric = columns.get("log_metric")
        if log_metric is not None:
            for i, f in zip(idx, flags, strict=True):  # one value per scored clip: the mean is the share
                log_metric(style_metric("asr_hallucinated", batch.styles[i]), float(f is not None))
        return [1.0 - min(max(r.cer, 0.0), 1.0) for r in rates]

    def left_out(self, batch: DecodedBatch, idx: list[int]) -> set[int]:
        """Clips whose transcript is an ASR freak-out (stylegrpo.scorers.hallucination): their CER is the
        recogniser's noise, not the policy's, so they do not move the CER reward."""
        _, flags = _asr_rates(self.ctx, batch, idx)
        return {i for i, f in zip(idx, flags, strict=True) if f is not None}


class WhisperNllReward(AudioReward):
    """exp(-NLL / tau) of the item's text given the audio: bounded in (0, 1], 1 at a perfect fit.

    tau = 3 nats as in the public Llasa GRPO recipe: a typical intelligible clip (NLL ~0.3-1) scores
    0.7-0.9, garbled audio (NLL > 5) under 0.2, so an unbounded NLL never dominates the sum.
    """

    name = "whisper_nll"

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        nll = self.ctx.judges.whisper.nll([batch.wavs[i] for i in idx], [batch.texts[i] for i in idx])
        return np.exp(-np.asarray(nll, dtype=np.float64) / self.ctx.nll_temperature)


class AcousticReward(AudioReward):
    """How well the measured speaking rate, pitch, loudness and voicing fit the style's targets.

    ``target_score`` is 1 inside every declared range and decays smoothly outside; a style without
    targets scores 1 everywhere (a constant per group, which GRPO ignores). The measured value of every
    targeted field is logged per style (``acoustic/<field>/<style>``), so a run shows the property move.
    """

    name = "acoustic"
    lane = "cpu"  # model-free numpy/numba measures (the pYIN kernels release the GIL)

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        from stylegrpo.scorers.acoustic import measure_batch, target_score

        styles = _column(columns, "style", len(batch), self.name)
        measures = batch.shared(
            "acoustic", lambda: measure_batch([batch.wavs[i] for i in idx], [batch.texts[i] for i in idx])
        )
        log_metric = columns.get("log_metric")
        out = []
        for m, i in zip(measures, idx, strict=True):
            targets = self.ctx.targets(styles[i])
            out.append(target_score(m, targets))
            if log_metric is not None:
                for key in targets:
                    value = getattr(m, key, None)
                    if value is not None and math.isfinite(value):
                        log_metric(style_metric(f"acoustic/{key}", styles[i]), float(value))
        return out


class CleanReward(AudioReward):
    """How clean the signal is: DNSMOS P.835 BAK (background intrusiveness) mapped onto [0, 1].

    Why BAK alone. DNSMOS rates whispering like noise on SIG and OVRL (espeak-ng's whisper voice: SIG
    1.02, OVRL 1.24, i.e. worse than speech under 0 dB white noise), so a reward on SIG or OVRL would push
    whispering, breathy or rough styles towards normal voicing: it fights the style reward. BAK orders
    added noise and reverberation just as well (clean 3.90, SNR 20/10/0 dB 2.36/1.86/1.27, RT60
    0.3/0.6/1.2 s 3.69/2.24/1.18) and spares whispering (2.74, cleaner than 20 dB noise), which is what
    catches the origin's "reverb artefact" without punishing a style.

    Mapping: ``clean_score(BAK, target)`` = (BAK - 1) / (target - 1) clipped to [0, 1]: linear on the
    opinion scale, 0 at the scale's floor (pure noise scores ~1.1), 1 at the style's ``quality.bak_target``
    (default 4.0, clean read speech) and above, so a group of clean clips is constant and moves nothing.
    A style with ``quality: {clean: false}`` gets 1 for every clip that passes the guards (no pressure).
    SIG, BAK and OVRL of every scored clip are logged as ``quality/<field>/<style>`` (also for opted-out
    styles: the alarm still sees them).
    """

    name = "clean"

    @property
    def lane(self) -> str:  # type: ignore[override]
        """CPU_LANE unless DNSMOS runs on CUDA (onnxruntime-gpu and a CUDA judge device)."""
        from stylegrpo.scorers._base import resolve_torch_device

        if resolve_torch_device(self.ctx.judges.device).type != "cuda":
            return CPU_LANE
        try:
            import onnxruntime as ort
        except ImportError:
            return CPU_LANE
        return JUDGE_LANE if "CUDAExecutionProvider" in ort.get_available_providers() else CPU_LANE

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        from stylegrpo.scorers.quality import QUALITY_FIELDS, clean_score

        styles = _column(columns, "style", len(batch), self.name)
        scores = batch.shared("quality", lambda: self.ctx.judges.quality.scores([batch.wavs[i] for i in idx]))
        log_metric = columns.get("log_metric")
        out = []
        for q, i in zip(scores, idx, strict=True):
            settings = self.ctx.quality(styles[i])
            out.append(clean_score(q.bak, settings.bak_target) if settings.clean else self.maximum)
            if log_metric is not None:
                for key in QUALITY_FIELDS:
                    log_metric(style_metric(f"quality/{key}", styles[i]), float(getattr(q, key)))
        return out


class SpeakerReward(AudioReward):
    """(1 + cos) / 2 between the speaker embedding of the GENERATED clip and that of the item's reference.

    Only for items with a reference speaker (dataset columns ``reference_codes``, ``speaker_id``): every
    completion of an item without one (or of a dataset without the columns) gets None, which TRL reads as
    "not applicable" (NaN, left out of this reward's group statistics and of the weighted sum), so
    reference-free items are trained exactly as before. The generated side is the completion alone:
    ``completion_ids`` hold only what the policy wrote after the prompt, whose reference codes are never
    part of them.

    The reference side is the reference's CODES decoded by the same codec (once per reference, cached by
    ``speaker_id`` and the codes), then embedded once (cached too): the dataset holds codes, not the clip,
    and both sides then pass through XCodec2, so the codec's own colouring is no difference between them.
    Embeddings by the speaker judge (stylegrpo.scorers.speaker, WavLM x-vector). The raw cosine of every
    scored clip is logged as ``speaker_similarity/<style>``.
    """

    name = "speaker"
    max_references = 4096  # cached reference embeddings (a 512-d float32 each: 8 MB at most)

    def __init__(self, ctx: RewardContext):
        super().__init__(ctx)
        from stylegrpo.scorers.speaker import ReferenceEmbeddings

        # the reference side, shared with eval's speaker_similarity: decoded by the rollouts' codec, embedded once
        self._refs = ReferenceEmbeddings(
            lambda codes: self.ctx.cache.codec.decode([codes], exact=self.ctx.cache.exact)[0],
            lambda wavs: self.ctx.judges.speaker.embeddings(wavs),
            max_items=self.max_references,
        )

    @staticmethod
    def reference_codes(columns: Mapping[str, Any], n: int) -> list[list[int] | None]:
        """Each item's reference codes, or None (no column, None, or an empty list)."""
        values = columns.get("reference_codes")
        if values is None:
            return [None] * n
        if len(values) != n:
            raise StyleGRPOError(
                f"reward 'speaker': column 'reference_codes' has {len(values)} values for {n} completions"
            )
        out: list[list[int] | None] = []
        for v in values:
            codes = v.tolist() if hasattr(v, "tolist") else v
            out.append([int(c) for c in codes] if codes is not None and len(codes) > 0 else None)
        return out

    def not_applicable(self, batch: DecodedBatch, columns: Mapping[str, Any]) -> set[int]:
        return {i for i, c in enumerate(self.reference_codes(columns, len(batch))) if c is None}

    def reference_embedding(self, speaker_id: Any, codes: Sequence[int]) -> np.ndarray:
        """The embedding of one reference (decoded from its codes), computed once per reference."""
        return self._refs.get(speaker_id, codes)

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        refs = self.reference_codes(columns, len(batch))
        speakers = columns.get("speaker_id") or [None] * len(batch)
        scored = [i for i in idx if refs[i] is not None]
        out = dict.fromkeys(idx, self.minimum)  # items without a reference: None (not_applicable)
        if scored:
            gen = self.ctx.judges.speaker.embeddings([batch.wavs[i] for i in scored])
            ref = np.stack([self.reference_embedding(speakers[i], refs[i]) for i in scored])
            from stylegrpo.scorers.speaker import cosine

            cos = cosine(gen, ref)
            log_metric = columns.get("log_metric")
            for i, c in zip(scored, cos, strict=True):
                out[i] = (1.0 + float(c)) / 2.0
                if log_metric is not None:
                    log_metric(style_metric("speaker_similarity", batch.styles[i]), float(c))
        return [out[i] for i in idx]


class StyleClassifierReward(AudioReward):
    """The second style judge: the probability that the clip carries its style's AudioSet labels.

    The judge is ``Judges.classifier`` (a style judge spec, recipe key ``style_classifier``: by default the
    AudioSet classifier ``ast``, whose score for a style is the noisy-OR of the sigmoid probabilities of the
    labels the style names in ``classifier_labels``; see stylegrpo/scorers/ast_classifier.py; another judge's
    score is mapped from its ``score_range`` onto [0, 1]). A style the
    judge does not apply to (no ``classifier_labels``) gets None: TRL leaves it out of this reward's term,
    so only the styles AudioSet can name are pushed by it. Two judges that fail differently (CLAP's
    audio-text embedding, a label classifier) are harder to game together than one. The labels are checked
    against the model's config when the reward is built (before training), with the closest names.
    """

    name = "style_classifier"

    def __init__(self, ctx: RewardContext):
        super().__init__(ctx)
        check = getattr(ctx.judges.classifier, "check_styles", None)
        if check is not None:
            check(ctx.catalog.styles)  # a misspelt label fails here, not at the first batch

    def score(self, batch: DecodedBatch, idx: list[int], columns: Mapping[str, Any]) -> Sequence[float]:
        styles = _column(columns, "style", len(batch), self.name)
        catalog = list(self.ctx.catalog.styles)
        names = [s.name for s in catalog]
        for i in idx:
            if styles[i] not in names:
                self.ctx.catalog.get(styles[i])  # raises UnknownStyleError listing the known styles
        wanted = sorted({names.index(styles[i]) for i in idx})
        scores = self.ctx.judges.classifier.style_scores(
            [batch.wavs[i] for i in idx], [catalog[j] for j in wanted], texts=[batch.texts[i] for i in idx]
        )
        col = {j: k for k, j in enumerate(wanted)}
        # onto [0, 1]: a CLAP cosine as the style reward maps it
        lo, hi = self.ctx.judges.classifier.score_range
        return [(scores[row, col[names.index(styles[i])]] - lo) / (hi - lo) for row, i in enumerate(idx)]

    def left_out(self, batch: DecodedBatch, idx: list[int]) -> set[int]:
        """Clips whose style the judge does not apply to (no classifier labels): None, not a low score; also
        the guarded ones of such a style (the other rewards give them their lowest value)."""
        judge = self.ctx.judges.classifier
        styles = set(batch.styles)
        skip = {s for s in styles if s is None or not judge.applies_to(self.ctx.catalog.get(s))}
        return {i for i, s in enumerate(batch.styles) if s in skip}


REWARD_CLASSES: dict[str, type[AudioReward]] = {
    cls.name: cls
    for cls in (
        StyleReward,
        StyleContrastiveReward,
        CerReward,
        WhisperNllReward,
        AcousticReward,
        CleanReward,
        SpeakerReward,
        StyleClassifierReward,
    )
}
REWARD_NAMES: tuple[str, ...] = tuple(REWARD_CLASSES)


def check_reward_names(names: Sequence[str]) -> list[str]:
    """The names, checked: each known and used once; raises StyleGRPOError listing the valid names."""
    names = list(names or [])
    if not names:
        raise StyleGRPOError(f"no reward functions named; choose from: {', '.join(REWARD_NAMES)}")
    unknown = [n for n in names if n not in REWARD_CLASSES]
    if unknown:
        raise StyleGRPOError(
            f"unknown reward function(s) {', '.join(map(repr, unknown))}; valid names: {', '.join(REWARD_NAMES)}"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StyleGRPOError(f"reward function(s) named twice: {', '.join(dupes)}")
    return names


def build_reward_functions(names: Sequence[str], ctx: RewardContext) -> list[AudioReward]:
    """One reward function per name, in order. Only the named ones are built; judges load on first use."""
    funcs = [REWARD_CLASSES[n](ctx) for n in check_reward_names(names)]
    ctx.reward_names = tuple(f.name for f in funcs)
    return funcs


JUDGE_LANE = "judge"  # the model judges (CLAP, ASR, Whisper; DNSMOS on CUDA): one thread, in order, as before
CPU_LANE = "cpu"  # CPU-bound rewards (acoustic; DNSMOS on CPU): beside the judges, one thread each


class OverlappedReward:
    """A reward function TRL runs concurrently with the others: its ``__call__`` is async (TRL 1.16 gathers
    async reward functions with ``asyncio.gather`` on its event-loop thread), and awaits the wrapped
    reward run on its lane's thread. Values, metrics and timings are the wrapped reward's own."""

    def __init__(self, reward: AudioReward, executor: Executor):
        self.reward = reward
        self.executor = executor
        self.__name__ = reward.__name__  # TRL names the function (and its metrics) by __name__

    def __repr__(self) -> str:
        return f"<overlapped reward {self.reward.name} ({self.reward.lane})>"

    async def __call__(self, *args: Any, **kwargs: Any) -> list[float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(self.reward, *args, **kwargs))


def overlap_rewards(funcs: Sequence[AudioReward]) -> list[OverlappedReward]:
    """The reward functions made concurrent: the CPU-bound ones (``lane`` CPU_LANE) each on a thread of
    their own, beside ONE thread that runs the model judges one after another (as sequential execution
    does: no two judges' activations on the device at once). The batch is decoded once (AudioCache's lock:
    the first call decodes, the others wait for it), shared features once (DecodedBatch.shared's locks).
    The values are those of sequential calls; ``timing/rewards_wall_s`` against ``timing/rewards_sum_s``
    shows the overlap."""
    judges = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylegrpo-judges")
    n_cpu = sum(f.lane == CPU_LANE for f in funcs)
    cpu = ThreadPoolExecutor(max_workers=max(1, n_cpu), thread_name_prefix="stylegrpo-cpu-reward")
    return [OverlappedReward(f, cpu if f.lane == CPU_LANE else judges) for f in funcs]
