"""The style catalog (``styles.yaml``): loading, validation, and THE prompt function.

``PromptTemplate.render`` is the one place a Llasa prompt is built; the data builder (training prompts)
and ``stylegrpo say`` (inference) both call it, so training and inference can never disagree.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StyleGRPOError, quote
from .yamlload import at, line_of, load_yaml

STYLES_ENV = "STYLEGRPO_STYLES"  # environment variable naming a default catalog file
STYLES_FILENAME = "styles.yaml"
_REPO_ROOT = Path(__file__).resolve().parent.parent
# The wheel's copy of the top-level catalog (setup.py writes it at build time; absent in a checkout)
_SHIPPED_STYLES = Path(__file__).resolve().parent / STYLES_FILENAME

# Acoustic target fields: name -> (unit, lowest allowed, highest allowed). The single list of them:
# validation, the `styles` table, the acoustic reward and eval all read it from here.
TARGET_FIELDS: dict[str, tuple[str, float, float]] = {
    "speaking_rate": ("syllables/s", 0.5, 15.0),
    "pitch_median_hz": ("Hz", 40.0, 1000.0),
    "pitch_spread_semitones": ("semitones", 0.0, 24.0),
    "loudness_dbfs": ("dBFS", -100.0, 0.0),
    "voiced_fraction": ("fraction", 0.0, 1.0),
}

_PLACEHOLDER_RE = re.compile(r"\{style\}|\{text\}")
_ANY_PLACEHOLDER_RE = re.compile(r"\{(?:style|text|description)\}")  # the template's placeholders
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TOP_KEYS = {"prompt", "styles"}
_STYLE_KEYS = {"name", "phrase", "descriptions", "targets", "quality", "classifier_labels", "identity"}
_PROMPT_KEYS = {"user", "style", "assistant"}


class CatalogError(StyleGRPOError, ValueError):
    """A problem in a styles file; the message names the file, the style and the field."""


class PromptInputError(StyleGRPOError, ValueError):
    """A text or description that could put a control token of the model into the prompt."""


class ReferenceInputError(StyleGRPOError, ValueError):
    """A reference speaker (transcript + codec codes) that cannot go into a prompt."""


class UnknownStyleError(StyleGRPOError, KeyError):
    """A style name that is not in the catalog; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


# How a reference speaker enters the prompt, as in Llasa's public inference code (the HKUSTAudio model
# cards' "speech synthesis utilizing a given speech prompt", and the Llasa Space/servers built on it):
# ``input_text = prompt_text + ' ' + target_text`` inside the TEXT_UNDERSTANDING markers, and the reference's
# XCodec2 codes as ``<|s_N|>`` tokens right after ``<|SPEECH_GENERATION_START|>`` in the assistant turn.
REFERENCE_SEPARATOR = " "  # between the reference transcript and the text (Llasa's ``prompt_text + ' '``)
SPEECH_TOKEN_FORMAT = "<|s_{}|>"  # the token of XCodec2 code N (llasa.speech_token uses this too)
MAX_SPEECH_CODES = 65_536  # XCodec2's codebook (4^8 FSQ codes): the most <|s_N|> tokens any Llasa has


@dataclass(frozen=True)
class Reference:
    """A reference speaker for Llasa's voice prompt: the clip's transcript and its XCodec2 codes.

    The codes are emitted into the prompt by our code only (never parsed from user text): each must be an
    int in ``0..MAX_SPEECH_CODES-1`` (the policy's own, smaller codebook is checked where the tokenizer is
    known: ``llasa.check_reference_codes``). Dataset columns ``reference_text``/``reference_codes`` map onto
    it with :meth:`from_columns` (empty or None: no reference).
    """

    text: str
    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise ReferenceInputError(
                "the reference speaker has no transcript; give the words spoken in the reference clip"
            )
        raw = self.codes.tolist() if hasattr(self.codes, "tolist") else self.codes
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not raw:
            raise ReferenceInputError("the reference speaker has no codec codes (an empty or non-list value)")
        if all(type(c) is int for c in raw) and min(raw) >= 0 and max(raw) < MAX_SPEECH_CODES:
            codes = tuple(raw)  # the common case (dataset columns, codec output), checked in bulk
        else:
            for k, c in enumerate(raw):
                if (
                    isinstance(c, bool)
                    or not isinstance(c, numbers.Integral)
                    or not 0 <= c < MAX_SPEECH_CODES
                ):
                    raise ReferenceInputError(
                        f"reference code #{k + 1} is {quote(c)}: codec codes are integers in "
                        f"0..{MAX_SPEECH_CODES - 1}"
                    )
            codes = tuple(int(c) for c in raw)
        object.__setattr__(self, "text", self.text.strip())
        object.__setattr__(self, "codes", codes)

    @classmethod
    def from_columns(cls, text: Any, codes: Any) -> Reference | None:
        """The reference of a dataset row (``reference_text``, ``reference_codes``); None when both are
        empty or None. One without the other is refused (a transcript must match its codes)."""
        has_codes = codes is not None and len(codes) > 0
        has_text = isinstance(text, str) and text.strip() != ""
        if not has_codes and not has_text:
            return None
        if not has_codes:
            raise ReferenceInputError("column 'reference_text' is set but 'reference_codes' is empty")
        return cls(text if isinstance(text, str) else "", codes)

    @functools.cached_property
    def speech(self) -> str:
        """The codes as Llasa speech tokens, in order: ``<|s_N|>...`` (built once per reference)."""
        return "".join(SPEECH_TOKEN_FORMAT.format(c) for c in self.codes)


@dataclass(frozen=True)
class PromptTemplate:
    """How text and a style description become Llasa chat messages."""

    user: str = (
        "Convert the text to speech{style}:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"
    )
    style: str = " in the style of {description}"
    assistant: str = "<|SPEECH_GENERATION_START|>"

    def render(
        self, text: str, description: str | None = None, reference: Reference | None = None
    ) -> list[dict[str, str]]:
        """Chat messages for one item, in the conversational form TRL's GRPOTrainer takes.

        The last message is the assistant's opening, which the model continues (rendered with
        ``continue_final_message=True``). ``description`` None or empty gives Llasa's own prompt.

        ``reference`` (a :class:`Reference`) makes it Llasa's voice-cloning prompt: its transcript, then
        REFERENCE_SEPARATOR, then the text, all inside the TEXT_UNDERSTANDING markers, and its codes as
        ``<|s_N|>`` tokens after the assistant's opening. The model continues after those codes, so a
        completion is only the new speech (the reference is part of the prompt, never of the output).

        The prompt is ours: only the template puts control tokens (``<|TEXT_UNDERSTANDING_END|>``,
        ``<|s_5|>``, ``<|eot_id|>``...) into it. Every control token of Llasa's tokenizer is written
        ``<|...|>`` and matched by its exact string, so a text or description is REFUSED (never silently
        changed) with :class:`PromptInputError` when it holds ``<|`` or ``|>``, also after the
        normalisation a tokenizer may apply (NFKC: full-width ``＜｜``; dropped control, format and
        combining characters: ``<`` + zero-width space + ``|``). And the ``<|...|>`` spans of the rendered
        prompt must be exactly those the template gives for a neutral text, so no input can complete a
        marker at its junction with the template (a text starting with ``|`` after a template's ``<``).
        Every path (``build``, ``train``, ``say``, ``eval``) goes through here, so the rule is the same
        everywhere; ``build`` already drops such lines while cleaning.
        """
        if reference is not None and not isinstance(reference, Reference):
            raise ReferenceInputError(
                f"reference must be a stylegrpo.styles.Reference, not {type(reference).__name__}"
            )
        ref_text = reference.text if reference is not None else None
        for what, value in (("text", text), ("description", description), ("reference transcript", ref_text)):
            problem = control_marker_problem(value) if value else None
            if problem:
                raise PromptInputError(f"the {what} {problem}")
        spoken = text if ref_text is None else ref_text + REFERENCE_SEPARATOR + text
        user = self._user(spoken, description)
        neutral_text = (
            _NEUTRAL_INPUT if ref_text is None else _NEUTRAL_INPUT + REFERENCE_SEPARATOR + _NEUTRAL_INPUT
        )
        neutral = self._user(neutral_text, _NEUTRAL_INPUT if description else None)
        spans, expected = _control_spans(user), [m.group(0) for m in _control_spans(neutral)]
        for k, span in enumerate(spans):
            if k >= len(expected) or span.group(0) != expected[k]:
                raise PromptInputError(
                    "the text or description joins with the prompt template into a control-token marker "
                    f"({_excerpt(span.string, span.start())}); remove the '<', '|' or '>' at its start or end"
                )
        if len(spans) != len(expected):
            raise PromptInputError(
                "the text or description breaks a control token of the prompt template "
                f"({_excerpt(tokenizer_view(user), 0)}); remove the '<', '|' or '>' at its start or end"
            )
        assistant = self.assistant if reference is None else self.assistant + reference.speech
        return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]

    def _user(self, text: str, description: str | None) -> str:
        style = self.style.replace("{description}", description.strip()) if description else ""
        # One pass over the template, so braces inside the text or the description are never re-read.
        return _PLACEHOLDER_RE.sub(lambda m: {"{style}": style, "{text}": text}[m.group(0)], self.user)


# The control tokens of Llasa's (Llama-3) tokenizer all open with "<|" and close with "|>".
CONTROL_MARKERS = ("<|", "|>")
# What a tokenizer's normaliser may drop: control (Cc), format (Cf: zero-width spaces, joiners, bidi marks)
# and combining characters (Mn, Me: a StripAccents normaliser removes them).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Mn", "Me"})
_CONTROL_SPAN_RE = re.compile(r"<\|.*?\|>", re.S)
_NEUTRAL_INPUT = "x"  # stands for any harmless text when the template's own markers are found
_EXCERPT_CHARS = 24  # characters shown on each side of an offending marker in a message


def tokenizer_view(value: str) -> str:
    """``value`` as a tokenizer's normaliser might see it: NFKC, without control, format and combining
    characters. ASCII without control characters is returned as is (NFKC leaves it unchanged)."""
    if value.isascii() and value.isprintable():
        return value
    value = unicodedata.normalize("NFKC", value)
    return "".join(ch for ch in value if unicodedata.category(ch) not in _DROPPED_CATEGORIES)


def control_marker_problem(value: str) -> str | None:
    """Why ``value`` may not go into a prompt (it could form a control token), or None when it may.

    The rule of :meth:`PromptTemplate.render`; readers of texts (``say --input-file``, ``eval --texts``)
    and the catalog use it to name the file, line or field before any model loads.
    """
    if value.isascii() and "|" not in value:
        return None  # fast path: no marker without '|', and NFKC leaves ASCII alone
    for marker in CONTROL_MARKERS:
        at = value.find(marker)
        if at >= 0:
            return (
                f"holds {marker!r} ({_excerpt(value, at)}), which could form a control token of the model "
                "(like <|TEXT_UNDERSTANDING_END|>); remove it"
            )
    view = tokenizer_view(value)
    for marker in CONTROL_MARKERS:
        at = view.find(marker)
        if at >= 0:
            return (
                f"holds characters that a tokenizer may read as {marker!r} (normalised it reads "
                f"{_excerpt(view, at)}: full-width or other look-alike forms, or invisible characters between "
                "them), which could form a control token of the model; remove them"
            )
    return None


def check_prompt_inputs(
    template: PromptTemplate,
    texts: Sequence[str],
    descriptions: Sequence[str | None] = (None,),
    where: str = "",
) -> None:
    """Render every text with every description once, before any model loads: a text or description that
    :meth:`PromptTemplate.render` refuses raises :class:`PromptInputError` naming ``where`` and its number."""
    for i, text in enumerate(texts):
        for description in descriptions:
            try:
                template.render(text, description)
            except PromptInputError as e:
                number = f"text #{i + 1}: " if len(texts) > 1 else ""
                prefix = f"{where}: {number}" if where else number
                raise PromptInputError(f"{prefix}{e}") from None


def _control_spans(value: str) -> list[re.Match[str]]:
    """The ``<|...|>`` spans of ``value`` as a tokenizer's normaliser might see it."""
    return list(_CONTROL_SPAN_RE.finditer(tokenizer_view(value)))


def _excerpt(value: str, at: int) -> str:
    """A short, one-line quote of ``value`` around position ``at``."""
    lo, hi = max(0, at - _EXCERPT_CHARS), at + _EXCERPT_CHARS
    piece = value[lo:hi]
    return repr(("..." if lo > 0 else "") + piece + ("..." if hi < len(value) else ""))


# The `quality:` block of a style: how the `clean` reward (DNSMOS BAK) treats it. Keys -> meaning.
QUALITY_KEYS = {"clean": "false: no clean reward for this style", "bak_target": "BAK counted fully clean"}
DEFAULT_BAK_TARGET = 4.0  # DNSMOS BAK of clean read speech is ~3.9-4.1 (espeak-ng clean: 3.90)
BAK_TARGET_RANGE = (1.5, 5.0)  # BAK is a 1-5 opinion scale; below 1.5 even heavy noise would count as clean


@dataclass(frozen=True)
class QualitySettings:
    """A style's `quality:` block: ``clean`` False opts the style out of the clean reward (every clip of
    it gets the same value, so it moves nothing); ``bak_target`` is the DNSMOS BAK at and above which a
    clip counts as fully clean (lower for a style that is legitimately breathy, e.g. whispering)."""

    clean: bool = True
    bak_target: float = DEFAULT_BAK_TARGET


@dataclass(frozen=True)
class Style:
    name: str
    phrase: str
    descriptions: tuple[str, ...]
    targets: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    quality: QualitySettings = field(default_factory=QualitySettings)
    # AudioSet labels that define the style for the classifier judge (stylegrpo.scorers.ast_classifier);
    # empty: that judge does not judge this style. Names are checked against the model when it is built.
    classifier_labels: tuple[str, ...] = ()
    # True: the style names WHO speaks (an elderly woman, a child, a deep-voiced man), which a reference
    # speaker's voice contradicts: `say --speaker` warns on the combination and reference pairing skips it.
    identity: bool = False


@dataclass(frozen=True)
class Catalog:
    styles: tuple[Style, ...]
    template: PromptTemplate = PromptTemplate()
    path: Path | None = None

    def __post_init__(self) -> None:
        """The prompt rule of :meth:`PromptTemplate.render` for every phrase and description, at load time
        (so ``stylegrpo styles --check`` finds them, not the first prompt that uses them)."""
        for i, style in enumerate(self.styles):
            fields = [("phrase", "", style.phrase)]
            fields += [("descriptions", f" item {j + 1}", d) for j, d in enumerate(style.descriptions)]
            for name, item, value in fields:
                try:
                    self.template.render(_NEUTRAL_INPUT, value)
                except PromptInputError as e:
                    raise CatalogError(
                        f"{self.path or '<styles>'}: style #{i + 1} {style.name!r}: field {name!r}{item}: {e}"
                    ) from None

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.styles]

    def __iter__(self) -> Iterator[Style]:
        return iter(self.styles)

    def __len__(self) -> int:
        return len(self.styles)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.styles)

    def get(self, name: str) -> Style:
        for s in self.styles:
            if s.name == name:
                return s
        where = f" in {self.path}" if self.path else ""
        raise UnknownStyleError(f"unknown style {quote(name)}{where}; known styles: {', '.join(self.names)}")

    def prompt(
        self, text: str, style: str | None = None, reference: Reference | None = None
    ) -> list[dict[str, str]]:
        """The inference prompt for ``text`` in the style named ``style`` (its ``phrase``), or none, in the
        voice of ``reference`` when given."""
        return self.template.render(text, self.get(style).phrase if style else None, reference)


def default_styles_path() -> Path:
    """$STYLEGRPO_STYLES, else ./styles.yaml, else the catalog that ships with stylegrpo."""
    env = os.environ.get(STYLES_ENV)
    if env:
        return Path(env)
    local = Path.cwd() / STYLES_FILENAME
    if local.is_file():
        return local
    return bundled_styles_path()


def bundled_styles_path() -> Path:
    """The catalog that ships with stylegrpo: the installed copy, else the checkout's top-level file."""
    # The installed copy first: in site-packages the "repository root" is site-packages itself, where
    # another project's styles.yaml could lie.
    if _SHIPPED_STYLES.is_file():
        return _SHIPPED_STYLES
    return _REPO_ROOT / STYLES_FILENAME


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Read and validate a styles file; raise CatalogError naming file, style and field on any problem."""
    p = Path(path) if path is not None else default_styles_path()
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogError(f"{p}: styles file not found (pass --styles FILE)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(f"{p}: cannot read styles file: {e}") from None
    return parse_catalog(text, p)


def parse_catalog(text: str, path: Path | str = "<styles>") -> Catalog:
    """Validate a catalog's text; every problem raises CatalogError naming ``path:line``, style and field."""
    path = Path(path)
    data = load_yaml(text, path, CatalogError)
    if not isinstance(data, dict):
        raise CatalogError(
            f"{at(path, line_of(data))}: expected a mapping with a 'styles' list at the top level"
        )
    _check_keys(data, _TOP_KEYS, path, "top level")
    template = _parse_template(data.get("prompt"), path, line_of(data, "prompt"))
    raw_styles = data.get("styles")
    if not isinstance(raw_styles, list) or not raw_styles:
        raise CatalogError(
            f"{at(path, line_of(data, 'styles'))}: 'styles' must be a non-empty list of styles"
        )
    styles: list[Style] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_styles):
        style = _parse_style(raw, i, path, line_of(raw_styles, i))
        if style.name in seen:
            raise CatalogError(
                f"{at(path, line_of(raw, 'name'))}: style #{i + 1} {quote(style.name)}: duplicate name "
                f"(also style #{seen[style.name] + 1})"
            )
        seen[style.name] = i
        styles.append(style)
    return Catalog(tuple(styles), template, path)


def _check_keys(data: Mapping[Any, Any], allowed: set[str], path: Path, where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        shown = ", ".join(k if isinstance(k, str) and _NAME_RE.match(k) else quote(k) for k in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise CatalogError(
            f"{at(path, line_of(data, unknown[0]))}: {where}: unknown key(s) {shown}{more}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _parse_template(raw: Any, path: Path, line: int) -> PromptTemplate:
    if raw is None:
        return PromptTemplate()
    if not isinstance(raw, dict):
        raise CatalogError(f"{at(path, line)}: 'prompt' must be a mapping with keys user, style, assistant")
    _check_keys(raw, _PROMPT_KEYS, path, "prompt")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise CatalogError(f"{at(path, line_of(raw, key))}: prompt.{key} must be a string")
    template = PromptTemplate(**raw)
    if "{text}" not in template.user:
        raise CatalogError(
            f"{at(path, line_of(raw, 'user'))}: prompt.user must contain {{text}} (where the words to speak go)"
        )
    if "{style}" not in template.user:
        raise CatalogError(
            f"{at(path, line_of(raw, 'user'))}: prompt.user must contain {{style}} "
            "(where the style description goes)"
        )
    if "{description}" not in template.style:
        raise CatalogError(f"{at(path, line_of(raw, 'style'))}: prompt.style must contain {{description}}")
    return template


def _check_no_placeholder(value: str, where: str) -> None:
    found = _ANY_PLACEHOLDER_RE.search(value)
    if found:
        raise CatalogError(
            f"{where} holds the placeholder {found.group(0)}, which only the prompt template may use; "
            "remove it (write the style in plain words)"
        )


def _parse_style(raw: Any, index: int, path: Path, line: int) -> Style:
    label = f"style #{index + 1}"
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{at(path, line)}: {label}: each style must be a mapping with name, phrase, descriptions"
        )
    name = raw.get("name")
    if isinstance(name, str):
        label = f"style #{index + 1} {quote(name)}"
    _check_keys(raw, _STYLE_KEYS, path, label)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CatalogError(
            f"{at(path, line_of(raw, 'name'))}: {label}: field 'name' must be lower-case letters, digits, "
            f"'_' or '-' (got {quote(name)})"
        )
    phrase = raw.get("phrase")
    if not isinstance(phrase, str) or not phrase.strip():
        raise CatalogError(
            f"{at(path, line_of(raw, 'phrase'))}: {label}: field 'phrase' must be a non-empty string"
        )
    _check_no_placeholder(phrase, f"{at(path, line_of(raw, 'phrase'))}: {label}: field 'phrase'")
    descs = raw.get("descriptions")
    if not isinstance(descs, list) or not descs:
        raise CatalogError(
            f"{at(path, line_of(raw, 'descriptions'))}: {label}: field 'descriptions' must be a non-empty "
            "list of strings"
        )
    for j, d in enumerate(descs):
        where = f"{at(path, line_of(descs, j))}: {label}: field 'descriptions' item {j + 1}"
        if not isinstance(d, str) or not d.strip():
            raise CatalogError(f"{where} is empty or not a string")
        _check_no_placeholder(d, where)
    targets = _parse_targets(raw.get("targets"), path, label, line_of(raw, "targets"))
    quality = _parse_quality(raw.get("quality"), path, label, line_of(raw, "quality"))
    labels = _parse_classifier_labels(
        raw.get("classifier_labels"), path, label, line_of(raw, "classifier_labels")
    )
    identity = raw.get("identity", False)
    if not isinstance(identity, bool):
        raise CatalogError(
            f"{at(path, line_of(raw, 'identity'))}: {label}: field 'identity' must be true or false "
            f"(true: the style names who speaks), got {quote(identity)}"
        )
    return Style(
        name,
        phrase.strip(),
        tuple(d.strip() for d in descs),
        targets,
        quality,
        classifier_labels=labels,
        identity=identity,
    )


MAX_CLASSIFIER_LABELS = 16  # a style defined by more labels than this is not a style (AudioSet has 527)
MAX_LABEL_CHARS = 100  # AudioSet's longest display name is under 60 characters


def _parse_classifier_labels(raw: Any, path: Path, label: str, line: int) -> tuple[str, ...]:
    """``classifier_labels``: a non-empty list of distinct label names (strings). Whether the classifier
    knows them is checked when the judge is built (only the model's config lists its labels)."""
    if raw is None:
        return ()
    where = f"{at(path, line)}: {label}: field 'classifier_labels'"
    if not isinstance(raw, list) or not raw:
        raise CatalogError(f"{where} must be a non-empty list of AudioSet label names, e.g. [Whispering]")
    if len(raw) > MAX_CLASSIFIER_LABELS:
        raise CatalogError(f"{where} names {len(raw)} labels; at most {MAX_CLASSIFIER_LABELS}")
    out: list[str] = []
    for j, value in enumerate(raw):
        item = f"{at(path, line_of(raw, j))}: {label}: field 'classifier_labels' item {j + 1}"
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL_CHARS:
            raise CatalogError(
                f"{item} must be an AudioSet label name (a non-empty string of at most {MAX_LABEL_CHARS} "
                f"characters), got {quote(value)}"
            )
        if value.strip() in out:
            raise CatalogError(f"{item}: {quote(value.strip())} is named twice")
        out.append(value.strip())
    return tuple(out)


def _parse_quality(raw: Any, path: Path, label: str, line: int) -> QualitySettings:
    if raw is None:
        return QualitySettings()
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{at(path, line)}: {label}: field 'quality' must be a mapping, e.g. {{clean: false}} or "
            "{bak_target: 2.5}"
        )
    _check_keys(raw, set(QUALITY_KEYS), path, f"{label}: quality")
    clean = raw.get("clean", True)
    if not isinstance(clean, bool):
        raise CatalogError(
            f"{at(path, line_of(raw, 'clean'))}: {label}: quality.clean must be true or false, got {quote(clean)}"
        )
    target = raw.get("bak_target", DEFAULT_BAK_TARGET)
    lo, hi = BAK_TARGET_RANGE
    if (
        not isinstance(target, (int, float))
        or isinstance(target, bool)
        or not math.isfinite(target)
        or not lo <= target <= hi
    ):
        raise CatalogError(
            f"{at(path, line_of(raw, 'bak_target'))}: {label}: quality.bak_target must be a number in "
            f"[{lo:g}, {hi:g}] (DNSMOS BAK), got {quote(target)}"
        )
    return QualitySettings(clean, float(target))


def _parse_targets(raw: Any, path: Path, label: str, line: int) -> dict[str, tuple[float, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{at(path, line)}: {label}: field 'targets' must be a mapping of target name to [min, max]"
        )
    _check_keys(raw, set(TARGET_FIELDS), path, f"{label}: targets")
    out: dict[str, tuple[float, float]] = {}
    for key, value in raw.items():
        unit, lo_ok, hi_ok = TARGET_FIELDS[key]
        where = f"{at(path, line_of(raw, key))}: {label}: targets.{key}"
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise CatalogError(f"{where} must be [min, max] numbers ({unit}), got {quote(value)}")
        lo, hi = float(value[0]), float(value[1])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CatalogError(f"{where}: [{lo:g}, {hi:g}] must be finite numbers ({unit}), not nan or inf")
        if lo > hi:
            raise CatalogError(f"{where}: min {lo:g} is above max {hi:g}")
        if lo < lo_ok or hi > hi_ok:
            raise CatalogError(
                f"{where}: [{lo:g}, {hi:g}] is outside the possible range [{lo_ok:g}, {hi_ok:g}] {unit}"
            )
        out[key] = (lo, hi)
    return out
