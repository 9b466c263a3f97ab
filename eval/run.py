"""Synthesis and scoring of the eval clips, resumable, then the final files.

The output folder is a working folder that an interrupted run picks up again:

    DIR/eval_config.json      what this eval is (models, adapter fingerprint, texts, styles, seed): written
                              first; a later run with the same settings resumes, other settings are refused
                              unless --overwrite (or no clip was made yet: a failed start blocks nothing)
    DIR/records/<id>.json     one record per clip, written atomically after its wav; gains the scores later
    DIR/clips/<id>.wav        16 kHz clips, and clips/metadata.csv (datasets' audiofolder layout)
    DIR/plots/*.png, DIR/metrics.json, DIR/metrics.csv, DIR/report.html   (final files, each atomic;
                              the report last)

A clip whose record exists is never synthesized again, a record with scores is never scored again, and a
model is loaded only when something is missing. Base and adapter clips of an item share the text, the
phrase and the sampling seed (the same batch, under the same seed), so a pair differs only by the adapter:
both come from one policy load, the base ones with the adapter switched off.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stylegrpo import __version__
from stylegrpo.audio import SAMPLE_RATE, read_wav, write_wav
from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import check_output_dir, is_marked, sweep_stale, write_mark
from stylegrpo.presets import MODEL_FIELDS, Preset
from stylegrpo.styles import Catalog, Reference, check_prompt_inputs
from stylegrpo.texts import read_text_lines
from stylegrpo.tiny import is_tiny

from .metrics import ADAPTER, BASE
from .results import CLIPS_DIR, write_json, write_results

log = logging.getLogger(__name__)

CONFIG_NAME = "eval_config.json"
RECORDS_DIR = "records"
RECORD_FORMAT = 1  # bump when the record layout changes: old working folders are then not resumed
DEFAULT_N_PER_STYLE = (
    16  # texts per style: 11 styles x 16 x 2 models = 352 clips, ~10 min for Llasa-1B on a GPU
)
DEFAULT_SEED = 0  # fixed: the same command gives the same clips
SCORE_CHUNK = 32  # clips scored (and their records saved) together: an interruption loses at most this many
MIN_SPEECH_S = 0.1  # less detected speech than this (or no speech token at all) counts as "no speech"
SPEAKER_ID = "speaker"  # the speaker_id of `eval --speaker`'s reference voice in the records


@dataclass(frozen=True)
class SpeakerReference:
    """The reference speaker of a dataset text: who speaks (``speaker_id``) and the voice prompt."""

    speaker_id: str
    reference: Reference


@dataclass(frozen=True)
class DatasetTexts:
    """What eval takes from a prompt dataset: the test split's texts, each text's reference speaker (see
    ``_dataset_references``), and the train split's speakers (None: no train split read)."""

    texts: list[str]
    references: dict[str, SpeakerReference]
    train_speakers: frozenset[str] | None


@dataclass
class EvalSettings:
    """Everything one eval needs (the CLI fills it from its arguments)."""

    out: Path
    catalog: Catalog
    texts: list[str]
    texts_source: str
    preset: Preset
    device: str = "auto"
    adapter: Path | None = None
    seed: int = DEFAULT_SEED
    batch_size: int | None = None  # prompts generated together (None: the preset's)
    judge_batch_size: int | None = None  # clips per judge forward pass (None: the judges' default)
    max_new_tokens: int | None = None  # generation cap per clip (None: the preset's)
    overwrite: bool = False
    training_dir: Path | None = None
    styles: list[str] = field(default_factory=list)  # empty: every style of the catalog
    # reference speakers: speaker_id -> its 16 kHz reference waveform; a record whose "speaker_id" is here
    # gets speaker_similarity (speaker judge cosine to that reference), every other record NaN
    references: dict[str, np.ndarray] = field(default_factory=dict)
    # `eval --speaker`: one reference voice (a stylegrpo.reference.ReferenceAudio) for every clip of every
    # style that does not name who speaks (identity styles are spoken without it), and its transcript
    # (None: transcribed by the preset's ASR judge before synthesis)
    speaker: Any = None
    speaker_text: str | None = None
    # `eval --dataset`: text -> the reference speaker of its test-split row (DatasetTexts.references); each
    # clip of a non-identity style is spoken with its text's reference and compared with it (unless --speaker)
    dataset_references: dict[str, SpeakerReference] = field(default_factory=dict)
    train_speakers: frozenset[str] | None = None  # the dataset's training speakers (None: unknown)

    @property
    def style_names(self) -> list[str]:
        return list(self.styles) or self.catalog.names

    @property
    def gen_batch_size(self) -> int:
        return int(self.batch_size or self.preset.batch_size)

    @property
    def gen_max_new_tokens(self) -> int:
        return int(self.max_new_tokens or self.preset.max_new_tokens)

    @property
    def tiny(self) -> bool:
        return bool(self.preset.random_weights) or any(is_tiny(getattr(self.preset, f)) for f in MODEL_FIELDS)


@dataclass(frozen=True)
class Unit:
    """One synthesis call (one generation batch) for one model: (style, item) pairs under one seed."""

    model: str
    pairs: tuple[tuple[str, int], ...]
    seed: int

    def clip_ids(self) -> list[str]:
        return [clip_id(style, item, self.model) for style, item in self.pairs]


# -- texts ------------------------------------------------------------------------------------------
def read_texts_file(path: str | os.PathLike[str]) -> list[str]:
    """Texts to speak, one per line (the library's reader, shared with `say --input-file`)."""
    return read_text_lines(path, "--texts")


def read_dataset_texts(dataset: str | os.PathLike[str]) -> list[str]:
    """The ``text`` column of a prompt dataset's ``test`` split (parquet files, as `stylegrpo build` writes)."""
    return read_dataset(dataset).texts


def _split_files(d: Path, split: str) -> list[Path]:
    """The parquet files of one split in the layouts `stylegrpo build` and the hub use."""
    return sorted(
        {
            *d.glob(f"{split}.parquet"),
            *d.glob(f"{split}-*.parquet"),
            *d.glob(f"{split}_*.parquet"),
            *d.glob(f"*/{split}.parquet"),
            *d.glob(f"*/{split}-*.parquet"),
            *d.glob(f"{split}/*.parquet"),
            *d.glob(f"data/{split}*.parquet"),
        }
    )


def read_dataset(dataset: str | os.PathLike[str]) -> DatasetTexts:
    """A prompt dataset's ``test`` split: its texts and (columns ``reference_text``, ``reference_codes``,
    ``speaker_id`` of `stylegrpo build --speakers`) each text's reference speaker, plus the speakers of the
    ``train`` split (to tell held-out voices from training ones). A bad reference is one line naming the row."""
    import pandas as pd

    d = Path(dataset)
    if not d.is_dir():
        raise StyleGRPOError(f"--dataset {d}: not a folder; pass the folder `stylegrpo build` wrote")
    files = _split_files(d, "test")
    if files:
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    else:  # any layout datasets understands (e.g. a hub-style folder with a README split config)
        try:
            import datasets

            frame = datasets.load_dataset(str(d), split="test").to_pandas()
        except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "no test split here"
            raise StyleGRPOError(
                f"--dataset {d}: no test split found (looked for test*.parquet; datasets said: {e}); "
                "build one with `stylegrpo build` or pass --texts FILE"
            ) from None
    if "text" not in frame.columns:
        raise StyleGRPOError(
            f"--dataset {d}: the test split has no 'text' column (columns: {list(frame.columns)})"
        )
    texts = [str(t).strip() for t in frame["text"].tolist() if isinstance(t, str) and t.strip()]
    if not texts:
        raise StyleGRPOError(f"--dataset {d}: the test split has no texts")
    references = _dataset_references(d, frame)
    train_speakers = _train_speakers(d) if references else None
    return DatasetTexts(texts, references, train_speakers)


def _dataset_references(d: Path, frame: Any) -> dict[str, SpeakerReference]:
    """Text -> its reference speaker (empty: no reference columns): the reference of the first test row of
    that text that has one. A text whose rows have none (its row is of an identity style, which `build
    --speakers` leaves without a voice) is dealt the split's references in turn (the k-th such text, in row
    order, the k-th distinct reference, cycling), so every text is measured on a held-out voice. Every
    style of a text is then spoken by one voice, base and adapter alike."""
    from stylegrpo.styles import ReferenceInputError

    if "reference_codes" not in frame.columns:
        return {}
    out: dict[str, SpeakerReference] = {}
    ref_texts = frame["reference_text"].tolist() if "reference_text" in frame.columns else None
    speakers = frame["speaker_id"].tolist() if "speaker_id" in frame.columns else None
    for i, (text, codes) in enumerate(
        zip(frame["text"].tolist(), frame["reference_codes"].tolist(), strict=True)
    ):
        key = str(text).strip() if isinstance(text, str) else ""
        if not key or key in out:
            continue
        try:
            ref = Reference.from_columns(ref_texts[i] if ref_texts is not None else None, codes)
        except ReferenceInputError as e:
            raise StyleGRPOError(
                f"--dataset {d}: test row {i + 1}: {e}; rebuild the dataset with `stylegrpo build --speakers`"
            ) from None
        if ref is None:
            continue
        sid = speakers[i] if speakers is not None and isinstance(speakers[i], str) else ""
        if not sid.strip():  # codes without a speaker id: the reference is its own speaker
            sid = "reference-" + hashlib.sha256(repr(ref.codes).encode()).hexdigest()[:12]
        out[key] = SpeakerReference(sid.strip(), ref)
    pool = list({(r.speaker_id, r.reference.codes): r for r in out.values()}.values())
    if pool:
        bare = list(dict.fromkeys(str(t).strip() for t in frame["text"].tolist() if isinstance(t, str)))
        for k, text in enumerate(t for t in bare if t and t not in out):
            out[text] = pool[k % len(pool)]
    return out


def _train_speakers(d: Path) -> frozenset[str] | None:
    """The speaker ids of the dataset's train split (only that column is read); None without a train split."""
    import pyarrow.parquet as pq

    files = _split_files(d, "train")
    if not files:
        return None
    ids: set[str] = set()
    for f in files:
        try:
            column = pq.read_table(f, columns=["speaker_id"]).column("speaker_id").to_pylist()
        except (OSError, KeyError, ValueError) as e:
            log.info("%s: no speaker ids read (%s); held-out speakers are not counted", f, e)
            return None
        ids.update(s for s in column if isinstance(s, str) and s)
    return frozenset(ids)


def select_texts(texts: Sequence[str], n: int, seed: int) -> list[str]:
    """The unique texts; when there are more than ``n``, a seeded random ``n`` of them in their original order."""
    if n < 1:
        raise StyleGRPOError(f"--n-per-style must be at least 1 (got {n})")
    unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(unique) <= n:
        return unique
    keep = np.sort(np.random.default_rng(seed).choice(len(unique), size=n, replace=False))
    return [unique[i] for i in keep]


# -- identity, folder ---------------------------------------------------------------------------------
def adapter_fingerprint(adapter: Path) -> str:
    """sha256 over the adapter's config and weight files: a retrained adapter in the same folder differs."""
    if not (adapter / "adapter_config.json").is_file():
        raise StyleGRPOError(
            f"--adapter {adapter}: not a PEFT adapter folder (no adapter_config.json); pass the folder "
            "`stylegrpo train` wrote"
        )
    h = hashlib.sha256()
    for f in sorted(adapter.iterdir()):
        if f.is_file() and (f.name == "adapter_config.json" or f.name.startswith("adapter_model")):
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def identity(settings: EvalSettings) -> dict[str, Any]:
    """What makes two runs the same eval (a working folder is resumed only when this matches exactly)."""
    cat = settings.catalog
    p = settings.preset
    ident = {
        **({"speaker": _speaker_identity(settings)} if settings.speaker is not None else {}),
        # the dataset's reference speakers are part of what a clip is (only when they are used)
        **({"references": _references_identity(settings)} if reference_speakers(settings) else {}),
        "record_format": RECORD_FORMAT,
        "models": {f: getattr(p, f) for f in MODEL_FIELDS},
        "max_new_tokens": settings.gen_max_new_tokens,
        "batch_size": settings.gen_batch_size,
        "adapter": str(settings.adapter.resolve()) if settings.adapter else None,
        "adapter_sha256": adapter_fingerprint(settings.adapter) if settings.adapter else None,
        "texts": list(settings.texts),
        "seed": settings.seed,
        "styles": settings.style_names,
        "prompt_template": {
            "user": cat.template.user,
            "style": cat.template.style,
            "assistant": cat.template.assistant,
        },
        "catalog": [
            {
                "name": s.name,
                "phrase": s.phrase,
                "descriptions": list(s.descriptions),
                "targets": {k: list(v) for k, v in dict(s.targets).items()},
            }
            for s in cat
        ],
    }
    return json.loads(json.dumps(ident))


def dataset_reference(settings: EvalSettings, style: str, item: int) -> SpeakerReference | None:
    """The dataset reference speaker a clip is spoken with: its text's, except for identity styles (their
    voice is the style) and under ``--speaker`` (one voice for every clip); None otherwise."""
    if settings.speaker is not None or getattr(settings.catalog.get(style), "identity", False):
        return None
    return settings.dataset_references.get(settings.texts[item])


def reference_speakers(settings: EvalSettings) -> list[str]:
    """The dataset speaker ids this eval's clips are spoken with (sorted; empty under ``--speaker``)."""
    return sorted(
        {
            ref.speaker_id
            for style in settings.style_names
            for item in range(len(settings.texts))
            if (ref := dataset_reference(settings, style, item)) is not None
        }
    )


def held_out_speakers(settings: EvalSettings) -> list[str] | None:
    """The used reference speakers that the dataset's train split never has (None: train split unknown)."""
    if settings.train_speakers is None:
        return None
    return [s for s in reference_speakers(settings) if s not in settings.train_speakers]


def _references_identity(settings: EvalSettings) -> list[dict[str, Any] | None]:
    """Per text: its reference speaker (id, transcript, sha256 of the codes), or None."""
    out: list[dict[str, Any] | None] = []
    for text in settings.texts:
        ref = settings.dataset_references.get(text)
        if ref is None:
            out.append(None)
            continue
        codes = np.asarray(ref.reference.codes, dtype=np.int64)
        out.append(
            {
                "speaker_id": ref.speaker_id,
                "text": ref.reference.text,
                "codes_sha256": hashlib.sha256(codes.tobytes()).hexdigest(),
            }
        )
    return out


def _differences(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def prepare_out_dir(out: Path, ident: dict, overwrite: bool) -> bool:
    """Create or reuse the working folder; True when resuming an earlier run of the same eval."""
    if out.exists() and not out.is_dir():
        raise StyleGRPOError(f"--out {out}: exists and is not a folder; choose another output path")
    cfg = out / CONFIG_NAME
    sweep_stale(out)  # .NAME.old-PID folders of an --overwrite that was killed
    if out.is_dir() and any(out.iterdir()):
        if overwrite:
            check_output_dir(out, overwrite=True, option="--out")  # refuses a folder stylegrpo did not write
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            shutil.rmtree(old, ignore_errors=True)
            log.info("--overwrite: removed the old %s", out)
        elif not cfg.is_file():
            raise StyleGRPOError(
                f"--out {out}: folder exists, is not empty and is not a stylegrpo eval folder (no {CONFIG_NAME}); "
                + ("choose another --out or pass --overwrite" if is_marked(out) else "choose another --out")
            )
        else:
            fresh = _nothing_made(out)  # a start that failed before its first clip blocks nothing
            try:
                old_ident = json.loads(cfg.read_text()).get("identity", {})
            except (OSError, ValueError, AttributeError) as e:
                if not fresh:
                    raise StyleGRPOError(f"{cfg}: unreadable ({e}); pass --overwrite to start over") from None
                old_ident = None
            diff = _differences(old_ident, ident) if old_ident is not None else ["unreadable"]
            if not diff:
                write_mark(out, "eval")  # an eval folder of an earlier version: it is ours
                return True
            if not fresh:
                raise StyleGRPOError(
                    f"--out {out}: holds an eval with different settings ({', '.join(diff)}); pass --overwrite "
                    "to start over, or choose another --out"
                )
            log.info("--out %s: an earlier start stopped before its first clip; starting afresh", out)
    out.mkdir(parents=True, exist_ok=True)
    write_mark(out, "eval")  # --overwrite may replace it later: it is ours
    write_json(cfg, {"identity": ident, "stylegrpo_version": __version__})
    return False


def _nothing_made(out: Path) -> bool:
    """True when ``out`` holds only what a start leaves before its first clip: the config, empty clips/
    and records/ folders (hidden files aside: the ownership mark, a killed clip's temporary wav)."""
    for entry in out.iterdir():
        if entry.name.startswith(".") or entry.name == CONFIG_NAME:
            continue
        if entry.name not in (CLIPS_DIR, RECORDS_DIR) or not entry.is_dir() or entry.is_symlink():
            return False
        if any(not f.name.startswith(".") for f in entry.iterdir()):
            return False
    return True


# -- plan -------------------------------------------------------------------------------------------
def unit_seed(seed: int, chunk: int) -> int:
    """The sampling seed of generation batch ``chunk`` (well spread, so neighbouring batches are unrelated)."""
    digest = hashlib.sha256(f"stylegrpo-eval/{seed}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def clip_id(style: str, item: int, model: str) -> str:
    return f"{style}-{item:03d}-{model}"


def plan(settings: EvalSettings) -> list[Unit]:
    """Generation batches: every (style, item) pair, style by style, cut into full batches.

    Both models get the SAME batches under the same seeds, so each base/adapter pair shares its batch
    neighbours, its padding and its random stream: the pair differs only by the adapter.
    """
    models = [BASE, ADAPTER] if settings.adapter else [BASE]
    bs = settings.gen_batch_size
    pairs = [(style, item) for style in settings.style_names for item in range(len(settings.texts))]
    chunks = [tuple(pairs[i : i + bs]) for i in range(0, len(pairs), bs)]
    return [Unit(m, c, unit_seed(settings.seed, k)) for m in models for k, c in enumerate(chunks)]


class Workdir:
    """Paths and record I/O of the working folder."""

    def __init__(self, out: Path):
        self.out = out
        self.clips = out / CLIPS_DIR
        self.records = out / RECORDS_DIR

    def record_path(self, cid: str) -> Path:
        return self.records / f"{cid}.json"

    def load(self, cid: str) -> dict | None:
        path = self.record_path(cid)
        if not path.is_file() or not (self.clips / f"{cid}.wav").is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("%s: unreadable record; the clip is made again", path)
            return None

    def save(self, record: dict) -> None:
        write_json(self.record_path(record["clip_id"]), record)

    def write_clip(self, cid: str, wav: np.ndarray) -> None:
        # written next to the records (same file system), then renamed: clips/ only ever holds whole wavs
        tmp = self.records / f".{cid}.tmp.wav"
        write_wav(tmp, wav)
        os.replace(tmp, self.clips / f"{cid}.wav")


# -- synthesis --------------------------------------------------------------------------------------
def synthesize_missing(
    settings: EvalSettings,
    work: Workdir,
    units: Sequence[Unit],
    make_synthesizer: Callable[[], Any] | None = None,
) -> int:
    """Synthesize every clip that has no record yet; return how many were made."""
    from stylegrpo.console import progress_bar

    todo = [u for u in units if any(work.load(c) is None for c in u.clip_ids())]
    n_clips = sum(len(u.pairs) for u in todo)
    if not todo:
        log.info("synthesis: all %d clips already present", sum(len(u.pairs) for u in units))
        return 0
    log.info("synthesis: %d clips to make (%d batches)", n_clips, len(todo))
    synth = make_synthesizer() if make_synthesizer else _synthesizer(settings)
    reference = _encode_speaker(settings, synth) if settings.speaker is not None else None
    made = 0
    try:
        with progress_bar(total=n_clips, desc="synthesizing", unit="clip") as bar:
            for u in todo:
                # the style's phrase is the description: the prompt comes from the catalog's one template
                phrases = [settings.catalog.get(style).phrase for style, _ in u.pairs]
                texts = [settings.texts[item] for _, item in u.pairs]
                refs, speaker_ids = [], []
                for style, item in u.pairs:
                    if getattr(settings.catalog.get(style), "identity", False):
                        refs.append(None)  # identity styles name who speaks: no reference voice for them
                        speaker_ids.append("")
                    elif reference is not None:  # --speaker: one voice for every clip
                        refs.append(reference)
                        speaker_ids.append(SPEAKER_ID)
                    else:  # the dataset's reference speaker of this text, if any
                        ds_ref = dataset_reference(settings, style, item)
                        refs.append(ds_ref.reference if ds_ref else None)
                        speaker_ids.append(ds_ref.speaker_id if ds_ref else "")
                ctx = synth.adapter_disabled() if (u.model == BASE and settings.adapter) else nullcontext()
                with ctx:
                    clips = synth.synthesize(texts, phrases, seed=u.seed, progress=False, references=refs)
                for pos, ((style, item), phrase, clip, sid) in enumerate(
                    zip(u.pairs, phrases, clips, speaker_ids, strict=True)
                ):
                    cid = clip_id(style, item, u.model)
                    if work.load(cid) is not None:
                        continue
                    wav = np.asarray(clip.wav, dtype=np.float32)
                    work.write_clip(cid, wav)
                    work.save(
                        {
                            "clip_id": cid,
                            "file_name": f"{cid}.wav",
                            "style": style,
                            "model": u.model,
                            "item": item,
                            "text": settings.texts[item],
                            "phrase": phrase,
                            "seed": u.seed,
                            "batch_position": pos,
                            "prompt": clip.prompt[0]["content"] if clip.prompt else "",
                            "num_codes": len(clip.codes),
                            "truncated": bool(clip.truncated),
                            "num_samples": int(wav.size),
                            "duration_s": wav.size / SAMPLE_RATE,
                            "speaker_id": sid,
                        }
                    )
                    made += 1
                bar.update(len(u.pairs))
    finally:
        del synth
        _free_memory()
    return made


def _synthesizer(settings: EvalSettings) -> Any:
    from stylegrpo.synth import Synthesizer

    # merge=False: one policy load serves both models (base clips with the adapter switched off)
    return Synthesizer(
        settings.preset,
        settings.device,
        adapter=settings.adapter,
        catalog=settings.catalog,
        merge=False,
        batch_size=settings.gen_batch_size,
        max_new_tokens=settings.gen_max_new_tokens,
        encoder=settings.speaker is not None,  # the reference voice is encoded with the codec's encoder
    )


def _speaker_identity(settings: EvalSettings) -> dict[str, Any]:
    """What identifies `--speaker`'s voice in eval_config.json: the prepared clip's samples and the transcript."""
    wav = np.ascontiguousarray(settings.speaker.wav, dtype=np.float32)
    return {
        "source": settings.speaker.source,
        "sha256": hashlib.sha256(wav.tobytes()).hexdigest(),
        "text": settings.speaker_text,
    }


def _encode_speaker(settings: EvalSettings, synth: Any) -> Any:
    """`--speaker`'s reference (transcript + codes): transcribed when no text was given, then encoded."""
    from stylegrpo.llasa import check_reference_codes
    from stylegrpo.reference import transcribe_reference

    text = settings.speaker_text
    if text is None:
        from stylegrpo.scorers.asr import AsrScorer

        text = transcribe_reference(AsrScorer(settings.preset.asr, device=synth.device), settings.speaker)
    reference = synth.encode_reference(settings.speaker, text)
    check_reference_codes(synth.tokenizer, reference, settings.speaker.source)
    return reference


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


# -- scoring ----------------------------------------------------------------------------------------
class Judges:
    """The reward judges (stylegrpo.scorers), each loaded on first use."""

    def __init__(self, settings: EvalSettings):
        from stylegrpo.presets import resolve_device
        from stylegrpo.scorers.asr import AsrScorer
        from stylegrpo.scorers.clap import ClapScorer, candidates_from_catalog
        from stylegrpo.scorers.quality import QualityScorer
        from stylegrpo.scorers.speaker import SpeakerScorer
        from stylegrpo.scorers.whisper_nll import WhisperNllScorer

        device = resolve_device(settings.device)
        kw = {"batch_size": settings.judge_batch_size} if settings.judge_batch_size else {}
        p = settings.preset
        self.clap = ClapScorer(p.clap, device, **kw)
        self.asr = AsrScorer(p.asr, device, **kw)
        self.whisper = WhisperNllScorer(p.whisper, device, **kw)
        self.quality = QualityScorer(device=device)  # DNSMOS: real weights in every preset (batch: its own)
        self.candidates = candidates_from_catalog(settings.catalog)  # every catalog style competes
        self.names = list(self.candidates)
        self.speaker = SpeakerScorer(p.wavlm, device, **kw)  # loads only when a record has a reference
        from stylegrpo.scorers.judges import build_judge

        # the second style judge (the style_classifier reward's default); loads only for styles with labels
        self.classifier = build_judge("ast:tiny:ast" if p.random_weights else "ast", device=device, **kw)
        self.references = dict(settings.references)
        if settings.speaker is not None:  # `--speaker`: the clips are compared with the reference clip itself
            self.references[SPEAKER_ID] = np.asarray(settings.speaker.wav, dtype=np.float32)
        self._reference_embeddings: dict[str, np.ndarray] = {}
        from stylegrpo.scorers.speaker import ReferenceEmbeddings

        # dataset references (codes): decoded by the codec once per reference, as the training speaker reward
        self.dataset_references = dict(settings.dataset_references) if settings.speaker is None else {}
        self._codec_spec, self._device, self._codec = p.codec, device, None
        self.reference_embeddings = ReferenceEmbeddings(
            self._decode_reference, lambda wavs: self.speaker.embeddings(wavs)
        )

    def _decode_reference(self, codes: list[int]) -> np.ndarray:
        if self._codec is None:  # loaded only when a clip has a dataset reference to compare with
            from stylegrpo.codec import Codec

            self._codec = Codec.load(self._codec_spec, self._device, decode_only=True)
        return self._codec.decode([codes])[0]  # exact, as the clips themselves were decoded

    def score(self, records: Sequence[dict], wavs: Sequence[np.ndarray], catalog: Catalog) -> list[dict]:
        from stylegrpo.scorers import acoustic
        from stylegrpo.scorers.hallucination import detect

        texts = [r["text"] for r in records]
        emb = self.clap.audio_embeddings(wavs)  # one pass of the audio model for both CLAP scores
        sims = self.clap.similarity(wavs, [r["phrase"] for r in records], embeddings=emb)
        probs = self.clap.style_probabilities(wavs, self.candidates, embeddings=emb)
        rates = self.asr.error_rates(wavs, texts)
        nll = self.whisper.nll(wavs, texts)
        measures = acoustic.measure_batch(wavs, texts)
        targets = [dict(catalog.get(r["style"]).targets) for r in records]
        quality = self.quality.scores(wavs)
        speaker = self.speaker_similarity(records, wavs)
        classifier = self.classifier_scores(records, wavs, catalog)
        out = []
        for k, r in enumerate(records):
            own = self.names.index(r["style"])
            pred = self.names[int(np.argmax(probs[k]))]
            m = measures[k]
            mdict = _measures_dict(m)
            speech_s = mdict.get("speech_duration_s")
            no_speech = (
                r["num_codes"] == 0
                or r["num_samples"] == 0
                or (speech_s is not None and np.isfinite(speech_s) and speech_s < MIN_SPEECH_S)
            )
            out.append(
                {
                    **r,
                    **{name: v for name, v in mdict.items() if name not in r},  # duration_s: already known
                    "clap_similarity": float(sims[k]),
                    "style_prob": float(probs[k][own]),
                    "predicted_style": pred,
                    "style_correct": float(pred == r["style"]),
                    "cer": float(rates[k].cer),
                    "wer": float(rates[k].wer),
                    "hypothesis": rates[k].hypothesis,
                    # an ASR freak-out (loop, far too long, text on near-silence): its CER is the recogniser's
                    "asr_hallucinated": detect(rates[k].hypothesis, r["text"], wavs[k]) is not None,
                    "whisper_nll": float(nll[k]),
                    "target_score": float(acoustic.target_score(m, targets[k])),
                    **{f"target_{f}": float(v) for f, v in acoustic.field_scores(m, targets[k]).items()},
                    **_quality_dict(quality[k], catalog.get(r["style"]).quality, no_speech),
                    "no_speech": bool(no_speech),
                    "speaker_similarity": math.nan if no_speech else float(speaker[k]),
                    "classifier_prob": math.nan if no_speech else float(classifier[k]),
                    "scored": True,  # the record is complete (resume skips it)
                }
            )
        return out

    def classifier_scores(
        self, records: Sequence[dict], wavs: Sequence[np.ndarray], catalog: Catalog
    ) -> np.ndarray:
        """The second style judge's score of each clip for its own style (the AudioSet classifier: the
        probability of the style's classifier_labels); NaN for a style without labels."""
        from stylegrpo.scorers.judges import own_style_scores

        styles = [catalog.get(name) for name in dict.fromkeys(r["style"] for r in records)]
        scores = self.classifier.style_scores(wavs, styles)
        return own_style_scores(scores, styles, [r["style"] for r in records])

    def speaker_similarity(self, records: Sequence[dict], wavs: Sequence[np.ndarray]) -> np.ndarray:
        """Cosine of each clip's speaker embedding with its record's reference speaker: a waveform
        (``speaker_id`` in ``settings.references``, e.g. ``--speaker``'s clip) or the dataset reference of
        the clip's text (its codes decoded by the codec); NaN for a clip without one. Each reference is
        embedded once."""
        out = np.full(len(records), np.nan)
        refs: dict[int, np.ndarray] = {}
        for k, r in enumerate(records):
            sid = r.get("speaker_id")
            if not sid:
                continue
            if sid in self.references:
                if sid not in self._reference_embeddings:
                    self._reference_embeddings[sid] = self.speaker.embeddings([self.references[sid]])[0]
                refs[k] = self._reference_embeddings[sid]
            elif (ds := self.dataset_references.get(r.get("text"))) is not None and ds.speaker_id == sid:
                refs[k] = self.reference_embeddings.get(sid, ds.reference.codes)
        idx = sorted(refs)
        if not idx:
            return out
        gen = self.speaker.embeddings([wavs[k] for k in idx])
        ref = np.stack([refs[k] for k in idx])
        from stylegrpo.scorers.speaker import cosine

        out[idx] = cosine(gen, ref)
        return out


def _quality_dict(q: Any, settings: Any, no_speech: bool) -> dict[str, float]:
    """DNSMOS columns of a clip and its clean reward; NaN for a clip with no speech (DNSMOS rates
    silence as a clean background: BAK ~3.5, which would flatter a model that says nothing)."""
    from stylegrpo.scorers.quality import clean_score

    if no_speech:
        return {"dnsmos_sig": math.nan, "dnsmos_bak": math.nan, "dnsmos_ovrl": math.nan, "clean": math.nan}
    clean = clean_score(q.bak, settings.bak_target) if settings.clean else 1.0
    return {"dnsmos_sig": q.sig, "dnsmos_bak": q.bak, "dnsmos_ovrl": q.ovrl, "clean": clean}


def _measures_dict(m: Any) -> dict[str, float]:
    import dataclasses

    raw = dataclasses.asdict(m) if dataclasses.is_dataclass(m) else dict(m)
    out = {}
    for k, v in raw.items():
        if isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out[k] = float(v)
    return out


def score_missing(
    settings: EvalSettings, work: Workdir, cids: Sequence[str], judges: Judges | None = None
) -> int:
    """Score every clip whose record has no scores; return how many were scored."""
    from stylegrpo.console import progress_bar

    todo = [c for c in cids if not (work.load(c) or {}).get("scored")]
    if not todo:
        log.info("scoring: all %d clips already scored", len(cids))
        return 0
    judges = judges or Judges(settings)
    with progress_bar(total=len(todo), desc="scoring", unit="clip") as bar:
        for start in range(0, len(todo), SCORE_CHUNK):
            chunk = todo[start : start + SCORE_CHUNK]
            records = [work.load(c) for c in chunk]
            wavs = [read_wav(work.clips / r["file_name"]) for r in records]
            for rec in judges.score(records, wavs, settings.catalog):
                work.save(rec)
            bar.update(len(chunk))
    del judges
    _free_memory()
    return len(todo)


# -- the whole eval ---------------------------------------------------------------------------------
@dataclass
class EvalResult:
    out: Path
    resumed: bool
    synthesized: int
    scored: int
    metrics: dict


def text_speakers(settings: EvalSettings) -> set[str]:
    """The dataset speaker ids of the eval's texts (whether or not --speaker replaced them)."""
    return {r.speaker_id for t in settings.texts if (r := settings.dataset_references.get(t)) is not None}


def report_config(settings: EvalSettings) -> dict[str, Any]:
    """The settings shown in the report and saved in metrics.json."""
    p = settings.preset
    return {
        "preset": p.name,
        "models": {f: getattr(p, f) for f in MODEL_FIELDS},
        "max_new_tokens": settings.gen_max_new_tokens,
        "batch_size": settings.gen_batch_size,
        "device": str(settings.device),
        "adapter": str(settings.adapter) if settings.adapter else None,
        "texts_source": settings.texts_source,
        "n_texts": len(settings.texts),
        "seed": settings.seed,
        "styles": [{"name": s, "phrase": settings.catalog.get(s).phrase} for s in settings.style_names],
        "stylegrpo_version": __version__,
        **({"speaker": settings.speaker.source} if settings.speaker is not None else {}),
        # the dataset's reference speakers the clips were spoken with (held out: not in its train split)
        **(
            {
                "reference_speakers": reference_speakers(settings),
                "held_out_speakers": held_out_speakers(settings),
            }
            if reference_speakers(settings)
            else {}
        ),
        # --speaker replaced the dataset's own reference speakers (how many the test texts had)
        **(
            {"dataset_speakers_overridden": len(overridden)}
            if settings.speaker is not None and (overridden := text_speakers(settings))
            else {}
        ),
    }


def run_eval(
    settings: EvalSettings, *, make_synthesizer: Callable[[], Any] | None = None, judges: Judges | None = None
) -> EvalResult:
    """Synthesize (what is missing), score (what is unscored), then write metrics, plots and the report."""
    for s in settings.style_names:
        settings.catalog.get(s)  # unknown style -> UnknownStyleError listing the known ones
    if not settings.texts:
        raise StyleGRPOError("no texts to evaluate")
    if settings.adapter is not None:
        settings.adapter = Path(settings.adapter)
    # the prompt rule (no control tokens from a text or phrase), before the folder or any model
    phrases = [settings.catalog.get(s).phrase for s in settings.style_names]
    check_prompt_inputs(settings.catalog.template, settings.texts, phrases, settings.texts_source)
    for k, text in enumerate(settings.texts):  # and a dataset reference's transcript goes into the prompt too
        ref = settings.dataset_references.get(text) if settings.speaker is None else None
        if ref is not None:
            try:
                settings.catalog.template.render(text, None, ref.reference)
            except StyleGRPOError as e:
                raise StyleGRPOError(
                    f"{settings.texts_source}: text #{k + 1}'s reference speaker {ref.speaker_id!r}: {e}"
                ) from None
    out = Path(settings.out)
    resumed = prepare_out_dir(out, identity(settings), settings.overwrite)
    work = Workdir(out)
    work.clips.mkdir(parents=True, exist_ok=True)
    work.records.mkdir(parents=True, exist_ok=True)
    if resumed:
        log.info("resuming the eval in %s", out)
    if settings.tiny:
        log.warning("tiny preset: random models; the numbers prove plumbing, not quality")
    units = plan(settings)
    made = synthesize_missing(settings, work, units, make_synthesizer)
    cids = [c for u in units for c in u.clip_ids()]
    scored = score_missing(settings, work, cids, judges)
    records = [work.load(c) for c in cids]
    missing = [c for c, r in zip(cids, records, strict=True) if r is None or not r.get("scored")]
    if missing:  # pragma: no cover - only when files vanish while we run
        raise StyleGRPOError(
            f"{out}: {len(missing)} clip(s) missing after synthesis/scoring, e.g. {missing[0]}"
        )
    metrics = write_results(
        out,
        records,
        report_config(settings),
        settings.catalog,
        tiny=settings.tiny,
        training_dir=settings.training_dir,
    )
    return EvalResult(out, resumed, made, scored, metrics)


__all__ = [
    "DEFAULT_N_PER_STYLE",
    "DatasetTexts",
    "EvalResult",
    "EvalSettings",
    "Judges",
    "SpeakerReference",
    "read_dataset",
    "read_dataset_texts",
    "read_texts_file",
    "run_eval",
    "select_texts",
]
