"""``stylegrpo audit``: labelled clips in, every style judge's per-style numbers out.

Inputs (one of):

- a folder with ``metadata.csv`` (``file_name``, ``style``, optionally ``text``): datasets' audiofolder
  layout, which eval writes (``EVAL_OUT/clips``; the eval folder itself is accepted too);
- a ``datasets`` audio dataset, by hub name or local folder (``--audio-column``, ``--style-column``, and
  ``--style-map`` to rename its labels to catalog styles);
- ``--synthesize N``: the policy (``--preset``, ``--adapter``) speaks N texts in every catalog style, with
  eval's synthesis code, and the clips are kept in the output (``clips/``, a folder a later audit can read).

Output folder (written whole or not at all, ``stylegrpo.outputs.atomic_output_dir``):
``audit.json``, ``audit.csv`` (one row per judge x style), ``clip_scores.csv`` (every clip's score per
judge and style), ``descriptions.csv`` (per paraphrase, judges with text embeddings), ``plots/*.png`` and
``report.html`` (last).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylegrpo import __version__
from stylegrpo.audio import SAMPLE_RATE, read_wav, resample
from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import atomic_output_dir, atomic_write_bytes
from stylegrpo.presets import MODEL_FIELDS, Preset
from stylegrpo.styles import Catalog, check_prompt_inputs
from stylegrpo.tiny import is_tiny

from . import audit
from .results import CLIPS_DIR, METADATA_NAME, write_json

log = logging.getLogger(__name__)

AUDIT_JSON, AUDIT_CSV, CLIP_SCORES_CSV, DESCRIPTIONS_CSV = (
    "audit.json",
    "audit.csv",
    "clip_scores.csv",
    "descriptions.csv",
)
SCORE_CHUNK = 32  # clips scored per judge call: the progress bar moves, memory stays bounded
DEFAULT_SPLIT = "train"  # a datasets split to read when none is named (most audio sets have only train)
DEFAULT_AUDIO_COLUMN = "audio"  # datasets' Audio feature column in audiofolder and most hub sets
DEFAULT_STYLE_COLUMN = "style"  # the column eval's metadata.csv uses
TEXT_COLUMN = "text"  # read when present: the acoustic judge's speaking rate needs the words
MAX_CLIP_S = 60.0  # longer clips are refused: judges window 10 s anyway, and memory stays bounded
# Texts spoken by --synthesize when no --texts file is given: the first Harvard sentences (IEEE 1969
# "Recommended practice for speech quality measurements"), phonetically balanced, the usual test texts.
AUDIT_TEXTS = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
)


class ClipAudio(Sequence):
    """The clips' audio, read when asked for (by index or slice), so that the audit holds one chunk of
    clips at a time, not the whole set: each judge reads them again (``score_judge``)."""

    def __init__(self, read: Callable[[int], np.ndarray], n: int):
        self._read = read
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._read(k) for k in range(*index.indices(self._n))]
        if not -self._n <= index < self._n:
            raise IndexError(index)
        return self._read(index % self._n)


@dataclass
class LabelledClips:
    """The audit's input: 16 kHz clips, their true styles, optionally their texts."""

    wavs: Sequence[np.ndarray]  # a list, or a ClipAudio that reads them on demand
    styles: list[str]
    names: list[str]  # a file name or row id per clip (clip_scores.csv)
    source: str  # what they are, for the report
    texts: list[str] | None = None
    clips_dir: str | None = None  # relative folder of the clips inside the output (synthesized), else None

    def __len__(self) -> int:
        return len(self.wavs)


@dataclass
class AuditSettings:
    out: Path
    catalog: Catalog
    judges: list[str]  # judge specs (stylegrpo.scorers.judges.build_judge)
    device: str = "auto"
    overwrite: bool = False
    judge_batch_size: int | None = None
    preset: Preset | None = None  # the policy's preset (--synthesize) or the one the judges came from
    inputs: list[tuple[str, Any]] = field(default_factory=list)  # (label, path) the output may not touch
    config: dict[str, Any] = field(default_factory=dict)  # shown in the report and audit.json
    strict_judges: bool = False  # judges the user named: one that cannot load is an error, not a skip


# -- inputs -----------------------------------------------------------------------------------------
def _check_style(label: Any, catalog: Catalog, where: str, hint: str = "") -> str:
    name = str(label).strip() if label is not None else ""
    if name not in catalog:
        raise StyleGRPOError(
            f"{where}: style {name!r} is not in the catalog {catalog.path or ''} (known: "
            f"{', '.join(catalog.names)}){hint}"
        )
    return name


def _warn_empty(clips: LabelledClips, empty: Sequence[str]) -> LabelledClips:
    if empty:  # e.g. an eval clip of a model that wrote no speech token: every judge scores it as silence
        log.warning(
            "%s: %d clip(s) hold no audio, e.g. %s; scored as silence", clips.source, len(empty), empty[0]
        )
    return clips


def _check_length(wav: np.ndarray, where: str) -> np.ndarray:
    if wav.size > MAX_CLIP_S * SAMPLE_RATE:
        raise StyleGRPOError(
            f"{where}: the clip is {wav.size / SAMPLE_RATE:.0f} s long; the audit takes clips up to "
            f"{MAX_CLIP_S:.0f} s (cut it into utterances)"
        )
    if not np.all(np.isfinite(wav)):
        raise StyleGRPOError(f"{where}: the audio holds NaN or infinite samples")
    return wav


def find_metadata(folder: str | os.PathLike[str]) -> Path:
    """``folder/metadata.csv``, or ``folder/clips/metadata.csv`` (an eval output folder)."""
    d = Path(folder)
    if not d.is_dir():
        raise StyleGRPOError(f"--clips {d}: not a folder; pass a folder holding metadata.csv and the audio")
    for cand in (d / METADATA_NAME, d / CLIPS_DIR / METADATA_NAME):
        if cand.is_file():
            return cand
    raise StyleGRPOError(
        f"--clips {d}: no {METADATA_NAME} (looked in the folder and in {CLIPS_DIR}/); it needs the columns "
        "file_name and style, one row per audio file"
    )


def read_metadata_folder(
    folder: str | os.PathLike[str], catalog: Catalog, where: Mapping[str, str] | None = None
) -> LabelledClips:
    """Clips listed in a ``metadata.csv`` (``file_name``, ``style``, optional ``text``) next to them.

    ``where``: keep only the rows whose columns have these values (e.g. ``{"model": "adapter"}`` for the
    adapter's clips of an eval folder, which lists base and adapter clips alike)."""
    meta = find_metadata(folder)
    root = meta.parent.resolve()
    try:
        with meta.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise StyleGRPOError(f"{meta}: cannot read it as CSV: {e}") from None
    missing = [c for c in ("file_name", DEFAULT_STYLE_COLUMN) if c not in columns]
    if missing:
        raise StyleGRPOError(
            f"{meta}: missing column(s) {', '.join(missing)} (columns: {', '.join(columns) or 'none'}); "
            "it needs file_name and style"
        )
    if not rows:
        raise StyleGRPOError(f"{meta}: no rows (one row per audio file)")
    lines = list(range(2, len(rows) + 2))  # 1 is the header
    for column, value in (where or {}).items():
        if column not in columns:
            raise StyleGRPOError(
                f"--where {column}={value}: {meta} has no column {column!r} (columns: {', '.join(columns)})"
            )
        keep = [k for k, r in enumerate(rows) if (r.get(column) or "").strip() == value]
        rows, lines = [rows[k] for k in keep], [lines[k] for k in keep]
    if not rows:
        raise StyleGRPOError(f"{meta}: no row has {', '.join(f'{k}={v}' for k, v in (where or {}).items())}")
    has_text = TEXT_COLUMN in columns
    paths, wheres, styles, names, texts, empty = [], [], [], [], [], []
    from stylegrpo.console import progress_bar

    def read(k: int) -> np.ndarray:
        try:
            wav = read_wav(paths[k])
        except Exception as e:  # noqa: BLE001 - soundfile/libsndfile raise several types for one cause
            raise StyleGRPOError(f"{wheres[k]}: cannot read audio {names[k]!r}: {e}") from None
        return _check_length(wav, f"{wheres[k]} ({names[k]})")

    for line, row in zip(lines, progress_bar(rows, desc="reading clips", unit="clip"), strict=True):
        where = f"{meta} line {line}"
        style = _check_style(row.get(DEFAULT_STYLE_COLUMN), catalog, where)
        name = (row.get("file_name") or "").strip()
        if not name:
            raise StyleGRPOError(f"{where}: empty file_name")
        path = (root / name).resolve()
        if Path(name).is_absolute() or root not in path.parents:
            raise StyleGRPOError(f"{where}: file_name {name!r} points outside {root}; give a path inside it")
        paths.append(path)
        wheres.append(where)
        styles.append(style)
        names.append(name)
        texts.append((row.get(TEXT_COLUMN) or "").strip())
        if read(len(paths) - 1).size == 0:  # every clip read and checked once now, before any judge loads
            empty.append(name)
    clips = LabelledClips(
        ClipAudio(read, len(paths)),
        styles,
        names,
        source=str(meta),
        texts=texts if has_text and all(texts) else None,
    )
    return _warn_empty(clips, empty)


def parse_where(value: str | None) -> dict[str, str]:
    """``"model=adapter"`` (comma-separated COLUMN=VALUE pairs) -> {"model": "adapter"}."""
    return _parse_pairs(value, "--where", "COLUMN=VALUE", empty_value=True)  # VALUE may be empty


def parse_style_map(value: str | None) -> dict[str, str]:
    """``"happy=excited,neutral=calm_narrator"`` -> {"happy": "excited", ...}."""
    return _parse_pairs(value, "--style-map", "LABEL=STYLE", empty_value=False)


def _parse_pairs(value: str | None, option: str, form: str, *, empty_value: bool) -> dict[str, str]:
    """Comma-separated KEY=VALUE pairs (stripped; empty parts skipped) -> {KEY: VALUE}; a part without
    ``=`` or a key (or, unless ``empty_value``, a value) is refused naming ``option`` and ``form``."""
    out: dict[str, str] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        key, eq, val = part.partition("=")
        if not eq or not key.strip() or not (empty_value or val.strip()):
            raise StyleGRPOError(f"{option}: {part.strip()!r} is not {form}")
        out[key.strip()] = val.strip()
    return out


def read_audio_dataset(
    name: str,
    catalog: Catalog,
    *,
    split: str = DEFAULT_SPLIT,
    audio_column: str = DEFAULT_AUDIO_COLUMN,
    style_column: str = DEFAULT_STYLE_COLUMN,
    style_map: Mapping[str, str] | None = None,
    load: Callable[..., Any] | None = None,
) -> LabelledClips:
    """A ``datasets`` audio dataset (hub name or folder) with a style label per row.

    The audio is decoded here (soundfile), not by datasets' Audio feature, which needs extra decoders.
    Labels go through ``style_map`` first; ClassLabel integers become their names.
    """
    import datasets

    style_map = dict(style_map or {})
    try:
        ds = (load or datasets.load_dataset)(name, split=split)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "cannot load that"
        raise StyleGRPOError(f"--dataset {name}: cannot load split {split!r}: {_root_cause(e)}") from None
    columns = list(ds.column_names)
    missing = [c for c in (audio_column, style_column) if c not in columns]
    if missing:
        raise StyleGRPOError(
            f"--dataset {name}: missing column(s) {', '.join(missing)} (columns: {', '.join(columns)}); "
            "name them with --audio-column / --style-column"
        )
    feature = ds.features.get(audio_column)
    if isinstance(feature, datasets.Audio):
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    label_feature = ds.features.get(style_column)
    names_of = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None
    has_text = TEXT_COLUMN in columns
    hint = "; map dataset labels to catalog styles with --style-map LABEL=STYLE,..."
    styles, ids, texts, empty = [], [], [], []
    from stylegrpo.console import progress_bar

    def read(k: int) -> np.ndarray:
        where = f"--dataset {name} row {k}"
        return _check_length(_decode_audio(ds[k][audio_column], where), where)

    for i, row in enumerate(progress_bar(ds, desc="reading clips", unit="clip")):
        where = f"--dataset {name} row {i}"
        label = row[style_column]
        if names_of is not None and isinstance(label, int):
            label = names_of[label]
        label = str(label).strip() if label is not None else ""
        styles.append(_check_style(style_map.get(label, label), catalog, where, hint))
        if _check_length(_decode_audio(row[audio_column], where), where).size == 0:  # checked once now
            empty.append(str(i))
        ids.append(str(i))
        texts.append(str(row.get(TEXT_COLUMN) or "").strip() if has_text else "")
    if not ids:
        raise StyleGRPOError(f"--dataset {name}: split {split!r} has no rows")
    clips = LabelledClips(
        ClipAudio(read, len(ids)),
        styles,
        ids,
        source=f"{name} ({split})",
        texts=texts if has_text and all(texts) else None,
    )
    return _warn_empty(clips, empty)


def _root_cause(e: BaseException) -> str:
    """The message of an exception and of the innermost cause it wraps (datasets hides the useful one)."""
    inner = e
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    return str(e) if inner is e else f"{e} ({type(inner).__name__}: {inner})"


def _decode_audio(value: Any, where: str) -> np.ndarray:
    """A datasets audio cell ({bytes, path} undecoded, {array, sampling_rate} decoded, or a path)."""
    import soundfile as sf

    try:
        if isinstance(value, Mapping) and value.get("array") is not None:
            wav = np.asarray(value["array"], dtype=np.float32)
            wav = wav.mean(axis=-1) if wav.ndim > 1 else wav
            return resample(wav, int(value["sampling_rate"]), SAMPLE_RATE)
        if isinstance(value, Mapping) and value.get("bytes"):
            wav, sr = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=True)
            return resample(wav.mean(axis=1), sr, SAMPLE_RATE)
        path = value.get("path") if isinstance(value, Mapping) else value
        if path:
            return read_wav(path)
    except Exception as e:  # noqa: BLE001 - soundfile/libsndfile raise several types for one cause
        raise StyleGRPOError(f"{where}: cannot read the audio: {e}") from None
    raise StyleGRPOError(f"{where}: no audio in the cell (expected bytes, a path or an array)")


def synthesize_clips(
    out: Path,
    catalog: Catalog,
    n: int,
    *,
    preset: Preset,
    texts: Sequence[str],
    texts_source: str,
    device: str = "auto",
    adapter: Path | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    make_synthesizer: Callable[[], Any] | None = None,
) -> LabelledClips:
    """The policy speaks ``n`` texts in every catalog style (eval's synthesis: same prompts, same seeds),
    into ``out/clips`` with a ``metadata.csv``; with ``adapter``, the adapter's clips only."""
    from .metrics import ADAPTER, BASE
    from .results import write_csv
    from .run import EvalSettings, Workdir, plan, select_texts, synthesize_missing

    chosen = select_texts(texts, n, seed)
    if len(chosen) < n:
        log.warning("--synthesize %d: only %d distinct texts; %d per style", n, len(chosen), len(chosen))
    check_prompt_inputs(catalog.template, chosen, [s.phrase for s in catalog], texts_source)
    settings = EvalSettings(
        out=out,
        catalog=catalog,
        texts=chosen,
        texts_source=texts_source,
        preset=preset,
        device=device,
        adapter=adapter,
        seed=seed,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
    )
    model = ADAPTER if adapter else BASE
    units = [u for u in plan(settings) if u.model == model]
    work = Workdir(out)
    work.clips.mkdir(parents=True, exist_ok=True)
    work.records.mkdir(parents=True, exist_ok=True)
    synthesize_missing(settings, work, units, make_synthesizer)
    records = [work.load(c) for u in units for c in u.clip_ids()]
    import pandas as pd

    keep = [
        "file_name",
        "style",
        "text",
        "model",
        "item",
        "seed",
        "phrase",
        "num_codes",
        "truncated",
        "duration_s",
    ]
    write_csv(work.clips / METADATA_NAME, pd.DataFrame([{k: r[k] for k in keep} for r in records]))
    import shutil

    shutil.rmtree(work.records)  # the eval-style records are working files; metadata.csv holds what matters
    empty = [r["file_name"] for r in records if read_wav(work.clips / r["file_name"]).size == 0]
    if empty:
        log.warning("%d synthesized clip(s) hold no audio (no speech token), e.g. %s", len(empty), empty[0])
    return LabelledClips(
        ClipAudio(lambda k: read_wav(work.clips / records[k]["file_name"]), len(records)),
        [r["style"] for r in records],
        [r["file_name"] for r in records],
        source=f"{len(records)} clips synthesized by the {preset.name} policy"
        + (f" with the adapter {adapter}" if adapter else " (base model)")
        + f" from {texts_source}",
        texts=[r["text"] for r in records],
        clips_dir=CLIPS_DIR,
    )


# -- judges -----------------------------------------------------------------------------------------
def default_judges(preset: Preset | None) -> list[str]:
    """Every registered style judge, the model-backed ones with the preset's models (tiny twins for tiny)."""
    from stylegrpo.scorers.judges import JUDGES

    tiny = preset is not None and bool(preset.random_weights)
    specs = []
    for prefix in JUDGES:
        if prefix == "clap" and preset is not None:
            specs.append(f"clap:{preset.clap}")
        elif prefix == "ast" and tiny:
            specs.append("ast:tiny:ast")
        else:
            specs.append(prefix)
    return specs


def judge_is_tiny(spec: str) -> bool:
    _, _, model = spec.partition(":")
    return bool(model) and is_tiny(model)


def score_judge(judge: Any, clips: LabelledClips, catalog: Catalog, chunk: int = SCORE_CHUNK) -> np.ndarray:
    """``[n_clips, n_styles]`` scores of one judge, in chunks with a progress bar."""
    from stylegrpo.console import progress_bar

    styles = list(catalog.styles)
    out = np.full((len(clips), len(styles)), np.nan)
    with progress_bar(total=len(clips), desc=f"judge {judge.name}", unit="clip") as bar:
        for start in range(0, len(clips), chunk):
            stop = min(len(clips), start + chunk)
            texts = clips.texts[start:stop] if clips.texts is not None else None
            out[start:stop] = judge.style_scores(clips.wavs[start:stop], styles, texts=texts)
            bar.update(stop - start)
    return out


def text_embeddings(judge: Any, catalog: Catalog) -> dict[str, np.ndarray] | None:
    """Each style's description embeddings, for a judge that embeds text (CLAP: ``judge.scorer``)."""
    scorer = getattr(judge, "scorer", None)
    embed = getattr(scorer, "text_embeddings", None)
    if embed is None:
        return None
    return {s.name: np.asarray(embed(list(s.descriptions))) for s in catalog if judge.applies_to(s)}


def audit_clips(
    clips: LabelledClips,
    catalog: Catalog,
    judge_specs: Sequence[str],
    *,
    device: str = "auto",
    judge_batch_size: int | None = None,
    build: Callable[..., Any] | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Score ``clips`` with every judge and audit each: {"judges", "descriptions", "skipped", "scores"}."""
    from stylegrpo.scorers.judges import build_judge

    build = build or build_judge
    names = catalog.names
    judges, descriptions, skipped, scores = {}, {}, {}, {}
    for spec in judge_specs:
        kw = {"batch_size": judge_batch_size} if judge_batch_size else {}
        try:
            judge = build(spec, device=device, **kw)
            applies = [bool(judge.applies_to(s)) for s in catalog]
            if not any(applies):
                skipped[spec] = "applies to no style of the catalog"
                log.info("judge %s applies to no style of the catalog: skipped", spec)
                continue
            s = score_judge(judge, clips, catalog)
            emb = text_embeddings(judge, catalog)
        except StyleGRPOError as e:  # a judge that cannot load or run here (e.g. no hub access): said so
            if strict:
                raise StyleGRPOError(f"judge {spec}: {e}") from None
            skipped[spec] = str(e)
            log.warning("judge %s skipped: %s", spec, e)
            continue
        applies = list(np.isfinite(s).any(axis=0) & np.asarray(applies))
        res = audit.audit_judge(s, clips.styles, names, name=judge.name, applies=applies)
        res["tiny"] = judge_is_tiny(judge.name)
        res["spec"] = spec
        judges[judge.name] = res
        scores[judge.name] = s
        if emb:
            rows = audit.description_audit({st: catalog.get(st).descriptions for st in emb}, emb)
            descriptions[judge.name] = {
                "rows": rows,
                "verdicts": audit.description_verdicts(rows, judge.name),
            }
        del judge
    if not judges:
        raise StyleGRPOError(
            "no judge could score these clips: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return {"judges": judges, "descriptions": descriptions, "skipped": skipped, "scores": scores}


# -- outputs ----------------------------------------------------------------------------------------
def style_rows(judges: Mapping[str, Mapping[str, Any]], styles: Sequence[str]) -> list[dict[str, Any]]:
    """One flat row per judge x style (audit.csv)."""
    keys = ("applies", "n_clips", "auc", "auc_low", "auc_high", "accuracy", "least_separated", "least_separated_auc", "own_mean",
            "own_std", "own_iqr", "flat", "verdict")  # fmt: skip
    return [
        {"judge": name, "style": st, **{k: res["styles"][st].get(k) for k in keys}}
        for name, res in judges.items()
        for st in styles
    ]


def write_audit(
    out: Path,
    clips: LabelledClips,
    catalog: Catalog,
    result: Mapping[str, Any],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """audit.json, audit.csv, clip_scores.csv, descriptions.csv, plots/, then report.html into ``out``."""
    import pandas as pd

    from .audit_report import render_audit_report, write_plots
    from .results import write_csv

    styles = catalog.names
    counts = {st: clips.styles.count(st) for st in styles}
    tiny_judges = [n for n, r in result["judges"].items() if r["tiny"]]
    data = {
        "config": dict(config),
        "source": clips.source,
        "n_clips": len(clips),
        "clips_per_style": counts,
        "texts_known": clips.texts is not None,
        "tiny_judges": tiny_judges,
        "tiny_audio": bool(config.get("tiny_policy")),
        "thresholds": audit.THRESHOLDS,
        "judges": result["judges"],
        "descriptions": result["descriptions"],
        "skipped_judges": result["skipped"],
        "stylegrpo_version": __version__,
    }
    write_json(out / AUDIT_JSON, data)
    write_csv(out / AUDIT_CSV, pd.DataFrame(style_rows(result["judges"], styles)))
    rows = []
    for name, s in result["scores"].items():
        for i in range(len(clips)):
            rows.append(
                {"judge": name, "clip": clips.names[i], "style": clips.styles[i],
                 **{st: (float(v) if math.isfinite(v) else None) for st, v in zip(styles, s[i], strict=True)}}
            )  # fmt: skip
    write_csv(out / CLIP_SCORES_CSV, pd.DataFrame(rows))
    desc_rows = [{"judge": j, **r} for j, d in result["descriptions"].items() for r in d["rows"]]
    if desc_rows:
        write_csv(out / DESCRIPTIONS_CSV, pd.DataFrame(desc_rows))
    plots = write_plots(out, data, styles)
    page = render_audit_report(data, catalog, plots)
    from .audit_report import REPORT_NAME

    atomic_write_bytes(out / REPORT_NAME, page.encode("utf-8"))
    return data


def run_audit(
    settings: AuditSettings,
    get_clips: Callable[[Path], LabelledClips],
    *,
    build: Callable[..., Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Into a temporary folder beside ``settings.out``: the clips (``get_clips(tmp)``; synthesis writes
    there), every judge's audit, the files; renamed into place at the end (nothing half-written)."""
    with atomic_output_dir(settings.out, settings.overwrite, command="audit", inputs=settings.inputs) as tmp:
        clips = get_clips(tmp)
        if len(set(clips.styles)) < 2:
            raise StyleGRPOError(
                f"{clips.source}: every clip has the style {clips.styles[0]!r}; an audit needs clips of at "
                "least two styles (own style against the others)"
            )
        result = audit_clips(
            clips,
            settings.catalog,
            settings.judges,
            device=settings.device,
            judge_batch_size=settings.judge_batch_size,
            build=build,
            strict=settings.strict_judges,
        )
        config = dict(settings.config)
        if settings.preset is not None:
            config.setdefault("preset", settings.preset.name)
            config.setdefault("models", {f: getattr(settings.preset, f) for f in MODEL_FIELDS})
        config["judges"] = list(settings.judges)
        config["device"] = str(settings.device)
        data = write_audit(tmp, clips, settings.catalog, result, config)
    return settings.out, data


__all__ = [
    "AUDIT_TEXTS",
    "AuditSettings",
    "LabelledClips",
    "audit_clips",
    "default_judges",
    "read_audio_dataset",
    "read_metadata_folder",
    "run_audit",
    "synthesize_clips",
    "write_audit",
]
