"""The style catalog (``styles.yaml``): loading, validation, and THE prompt function.

``PromptTemplate.render`` is the one place a Llasa prompt is built; the data builder (training prompts)
and ``stylegrpo say`` (inference) both call it, so training and inference can never disagree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import StyleGRPOError

STYLES_ENV = "STYLEGRPO_STYLES"  # environment variable naming a default catalog file
STYLES_FILENAME = "styles.yaml"
_REPO_ROOT = Path(__file__).resolve().parent.parent

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
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TOP_KEYS = {"prompt", "styles"}
_STYLE_KEYS = {"name", "phrase", "descriptions", "targets"}
_PROMPT_KEYS = {"user", "style", "assistant"}


class CatalogError(StyleGRPOError, ValueError):
    """A problem in a styles file; the message names the file, the style and the field."""


class UnknownStyleError(StyleGRPOError, KeyError):
    """A style name that is not in the catalog; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class PromptTemplate:
    """How text and a style description become Llasa chat messages."""

    user: str = (
        "Convert the text to speech{style}:<|TEXT_UNDERSTANDING_START|>{text}<|TEXT_UNDERSTANDING_END|>"
    )
    style: str = " in the style of {description}"
    assistant: str = "<|SPEECH_GENERATION_START|>"

    def render(self, text: str, description: str | None = None) -> list[dict[str, str]]:
        """Chat messages for one item, in the conversational form TRL's GRPOTrainer takes.

        The last message is the assistant's opening, which the model continues (rendered with
        ``continue_final_message=True``). ``description`` None or empty gives Llasa's own prompt.
        """
        style = self.style.replace("{description}", description.strip()) if description else ""
        # One pass over the template, so braces inside the text or the description are never re-read.
        user = _PLACEHOLDER_RE.sub(lambda m: {"{style}": style, "{text}": text}[m.group(0)], self.user)
        return [{"role": "user", "content": user}, {"role": "assistant", "content": self.assistant}]


@dataclass(frozen=True)
class Style:
    name: str
    phrase: str
    descriptions: tuple[str, ...]
    targets: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    styles: tuple[Style, ...]
    template: PromptTemplate = PromptTemplate()
    path: Path | None = None

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
        raise UnknownStyleError(f"unknown style {name!r}{where}; known styles: {', '.join(self.names)}")

    def prompt(self, text: str, style: str | None = None) -> list[dict[str, str]]:
        """The inference prompt for ``text`` in the style named ``style`` (its ``phrase``), or none."""
        return self.template.render(text, self.get(style).phrase if style else None)


def default_styles_path() -> Path:
    """$STYLEGRPO_STYLES, else ./styles.yaml, else the catalog that ships with stylegrpo."""
    env = os.environ.get(STYLES_ENV)
    if env:
        return Path(env)
    local = Path.cwd() / STYLES_FILENAME
    if local.is_file():
        return local
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
    path = Path(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None and (mark is None or cmark.line != mark.line):
            # e.g. an unclosed '[' is only noticed at the end of the file: point at where it opened too
            problem += f" ({context} at line {cmark.line + 1})"
        raise CatalogError(f"{path}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping with a 'styles' list at the top level")
    _check_keys(data, _TOP_KEYS, f"{path}: top level")
    template = _parse_template(data.get("prompt"), path)
    raw_styles = data.get("styles")
    if not isinstance(raw_styles, list) or not raw_styles:
        raise CatalogError(f"{path}: 'styles' must be a non-empty list of styles")
    styles: list[Style] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_styles):
        style = _parse_style(raw, i, path)
        if style.name in seen:
            raise CatalogError(
                f"{path}: style #{i + 1} {style.name!r}: duplicate name (also style #{seen[style.name] + 1})"
            )
        seen[style.name] = i
        styles.append(style)
    return Catalog(tuple(styles), template, path)


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        raise CatalogError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _parse_template(raw: Any, path: Path) -> PromptTemplate:
    if raw is None:
        return PromptTemplate()
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: 'prompt' must be a mapping with keys user, style, assistant")
    _check_keys(raw, _PROMPT_KEYS, f"{path}: prompt")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise CatalogError(f"{path}: prompt.{key} must be a string")
    template = PromptTemplate(**raw)
    if "{text}" not in template.user:
        raise CatalogError(f"{path}: prompt.user must contain {{text}} (where the words to speak go)")
    if "{style}" not in template.user:
        raise CatalogError(f"{path}: prompt.user must contain {{style}} (where the style description goes)")
    if "{description}" not in template.style:
        raise CatalogError(f"{path}: prompt.style must contain {{description}}")
    return template


def _parse_style(raw: Any, index: int, path: Path) -> Style:
    where = f"{path}: style #{index + 1}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: each style must be a mapping with name, phrase, descriptions")
    name = raw.get("name")
    if isinstance(name, str):
        where = f"{path}: style #{index + 1} {name!r}"
    _check_keys(raw, _STYLE_KEYS, where)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CatalogError(
            f"{where}: field 'name' must be lower-case letters, digits, '_' or '-' (got {name!r})"
        )
    phrase = raw.get("phrase")
    if not isinstance(phrase, str) or not phrase.strip():
        raise CatalogError(f"{where}: field 'phrase' must be a non-empty string")
    descs = raw.get("descriptions")
    if not isinstance(descs, list) or not descs:
        raise CatalogError(f"{where}: field 'descriptions' must be a non-empty list of strings")
    for j, d in enumerate(descs):
        if not isinstance(d, str) or not d.strip():
            raise CatalogError(f"{where}: field 'descriptions' item {j + 1} is empty or not a string")
    targets = _parse_targets(raw.get("targets"), where)
    return Style(name, phrase.strip(), tuple(d.strip() for d in descs), targets)


def _parse_targets(raw: Any, where: str) -> dict[str, tuple[float, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: field 'targets' must be a mapping of target name to [min, max]")
    _check_keys(raw, set(TARGET_FIELDS), f"{where}: targets")
    out: dict[str, tuple[float, float]] = {}
    for key, value in raw.items():
        unit, lo_ok, hi_ok = TARGET_FIELDS[key]
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise CatalogError(f"{where}: targets.{key} must be [min, max] numbers ({unit}), got {value!r}")
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise CatalogError(f"{where}: targets.{key}: min {lo:g} is above max {hi:g}")
        if lo < lo_ok or hi > hi_ok:
            raise CatalogError(
                f"{where}: targets.{key}: [{lo:g}, {hi:g}] is outside the possible range "
                f"[{lo_ok:g}, {hi_ok:g}] {unit}"
            )
        out[key] = (lo, hi)
    return out
