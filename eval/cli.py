"""``stylegrpo eval``: per-style metrics of the base model and the adapter, and a report to read and listen to."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stylegrpo import argtypes, console
from stylegrpo.errors import StyleGRPOError
from stylegrpo.llasa import adapter_dataset, check_adapter_folder, check_adapter_styles
from stylegrpo.outputs import check_not_input, output_lock
from stylegrpo.presets import MODEL_FIELDS, add_model_arguments, preset_from_args
from stylegrpo.speech_time import tokens_for_seconds
from stylegrpo.styles import default_styles_path, load_catalog
from stylegrpo.styles_cli import add_styles_argument

from .run import DEFAULT_N_PER_STYLE, DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Synthesize held-out texts in every style of the catalog with the base model and with the adapter "
        "(same seeds), score every clip with the reward judges, and write metrics.json/csv, the clips "
        "(audiofolder), plots and report.html to --out. Re-running the same command resumes an interrupted "
        "eval. Example: stylegrpo eval --adapter runs/train/adapter --dataset data/prompts --training-dir runs/train "
        "--out runs/eval"
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset",
        metavar="DIR",
        help="prompt dataset from `stylegrpo build`: its test split's texts, and with `build --speakers` their "
        "reference speakers (default with --adapter: the dataset its recipe.yaml records)",
    )
    src.add_argument("--texts", metavar="FILE", help="UTF-8 file with one text to speak per line")
    parser.add_argument(
        "--adapter", metavar="DIR", help="LoRA adapter folder from `stylegrpo train` (none: base only)"
    )
    add_styles_argument(parser)
    parser.add_argument(
        "--only-styles", metavar="A,B", default=None, help="evaluate only these styles (default: every style)"
    )
    parser.add_argument(
        "--n-per-style",
        type=argtypes.count,
        default=DEFAULT_N_PER_STYLE,
        metavar="N",
        help=f"texts spoken in every style (default: {DEFAULT_N_PER_STYLE}; fewer when fewer texts are given)",
    )
    add_model_arguments(parser, overrides=MODEL_FIELDS)
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=DEFAULT_SEED,
        help=f"text choice and sampling seed, 0 to {argtypes.MAX_SEED} (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--batch-size",
        type=argtypes.count,
        default=None,
        metavar="N",
        help="prompts generated together (default: the preset's)",
    )
    parser.add_argument(
        "--max-seconds",
        type=argtypes.seconds,
        default=None,
        metavar="S",
        help="longest audio generated per clip (default: the preset's cap, 30 s for Llasa)",
    )
    parser.add_argument(
        "--judge-batch-size",
        type=argtypes.count,
        default=None,
        metavar="N",
        help="clips per judge forward pass (default: the judges' own)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (resumed when it holds this eval)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="discard an existing --out folder and start over"
    )
    parser.add_argument(
        "--speaker",
        metavar="WAV",
        help="speak every clip in the voice of this reference clip (as `say --speaker`), except the styles that "
        "name who speaks (identity: true); adds the speaker similarity to the reference per style; overrides "
        "a --dataset's own reference speakers",
    )
    parser.add_argument(
        "--speaker-text",
        metavar="TEXT",
        help="the words spoken in the --speaker clip (default: transcribed by the preset's ASR judge)",
    )
    parser.add_argument(
        "--training-dir",
        metavar="DIR",
        help="training output folder: plot its per-style reward curves (trainer_state.json)",
    )


MAX_SPEAKERS_SHOWN = 8  # speaker ids named in the summary line (the report and metrics.json list them all)


def run(args: argparse.Namespace) -> int:
    from .metrics import ADAPTER, BASE, OVERALL, find_row
    from .report import TINY_WARNING
    from .run import (
        EvalSettings,
        held_out_speakers,
        read_dataset,
        read_texts_file,
        reference_speakers,
        run_eval,
        select_texts,
        text_speakers,
    )

    if args.adapter and not args.dataset and not args.texts:
        check_adapter_folder(args.adapter)
        dataset, recipe = adapter_dataset(args.adapter)  # the adapter's own training data (its test split)
        args.dataset = str(dataset)
        console.note(f"texts: the test split of {dataset}, the dataset recorded in {recipe}")
    inputs = [
        ("--dataset", args.dataset),
        ("--texts", args.texts),
        ("--adapter", args.adapter),
        ("--training-dir", args.training_dir),
        ("--speaker", args.speaker),
        ("--styles", args.styles or default_styles_path()),
        *((f"--{f}", getattr(args, f, None)) for f in MODEL_FIELDS),
    ]
    check_not_input(args.out, inputs, option="--out")  # before reading or loading anything
    dataset = None
    if args.dataset:
        dataset = read_dataset(args.dataset)
        texts, source = dataset.texts, f"the test split of {args.dataset}"
    elif args.texts:
        texts, source = read_texts_file(args.texts), str(args.texts)
    else:
        raise StyleGRPOError("no texts to speak: pass --dataset DIR (its test split) or --texts FILE")
    if args.adapter:
        check_adapter_folder(args.adapter)  # named: a missing folder, a missing or broken adapter_config.json
    if args.training_dir and not Path(args.training_dir).exists():
        raise StyleGRPOError(f"--training-dir {args.training_dir}: not found")
    speaker, speaker_text = _speaker(args)
    settings = EvalSettings(
        out=Path(args.out),
        catalog=load_catalog(args.styles),
        texts=select_texts(texts, args.n_per_style, args.seed),
        texts_source=source,
        preset=preset_from_args(args),
        device=args.device,
        adapter=Path(args.adapter) if args.adapter else None,
        seed=args.seed,
        batch_size=args.batch_size,
        judge_batch_size=args.judge_batch_size,
        max_new_tokens=(tokens_for_seconds(args.max_seconds) if args.max_seconds else None),
        overwrite=args.overwrite,
        training_dir=Path(args.training_dir) if args.training_dir else None,
        styles=[s.strip() for s in args.only_styles.split(",") if s.strip()] if args.only_styles else [],
        speaker=speaker,
        speaker_text=speaker_text,
        dataset_references=dataset.references if dataset else {},
        train_speakers=dataset.train_speakers if dataset else None,
    )
    speakers = reference_speakers(settings)
    if speaker is not None and settings.dataset_references:
        n = len(text_speakers(settings))
        if n:
            console.note(
                f"--speaker {args.speaker} overrides the {n} reference speaker(s) of the dataset's test split: "
                "every clip is spoken in its voice"
            )
    if settings.adapter is not None:
        for s in settings.style_names:
            settings.catalog.get(s)  # an unknown --only-styles name is named first, with the catalog's styles
        check_adapter_styles(settings.adapter, settings.style_names, option="style(s)")  # before any model
    with output_lock(settings.out):  # a second eval into the same --out is refused while this one runs
        result = run_eval(settings)
    rows, flags = result.metrics["rows"], result.metrics["flags"]
    console.summarize_repeats()  # the results end the output
    print(
        f"{'resumed' if result.resumed else 'new'} eval: {result.synthesized} clips synthesized, "
        f"{result.scored} scored, in {result.out}"
    )
    names = ("style_correct", "clap_similarity", "cer", "whisper_nll", "target_score")
    if speakers:
        held = held_out_speakers(settings)
        held_txt = f", {len(held)} held out from training" if held is not None else ""
        shown = ", ".join(speakers[:MAX_SPEAKERS_SHOWN]) + (
            ", ..." if len(speakers) > MAX_SPEAKERS_SHOWN else ""
        )
        print(f"  reference speakers: {len(speakers)} of the test split{held_txt} ({shown})")
    for name in (*names, "speaker_similarity") if speaker is not None or speakers else names:
        parts = []
        for model in (BASE, ADAPTER):
            r = find_row(rows, OVERALL, model, name)
            if r and r["mean"] is not None:
                parts.append(f"{model} {r['mean']:.3f}")
        d = find_row(rows, OVERALL, ADAPTER, name)
        if d and d.get("diff_n"):
            parts.append(f"diff {d['diff_mean']:+.3f} [{d['diff_ci_low']:+.3f}, {d['diff_ci_high']:+.3f}]")
        print(f"  {name:16s} " + ", ".join(parts))
    for f in flags:
        worse = "worse" if f.get("severity") == "clear" else "possibly worse"
        print(f"  FLAG {f['style']}: intelligibility {worse} ({'; '.join(f['reasons'])})")
    if result.metrics.get("tiny"):
        console.note(f"  note: {TINY_WARNING}")
    print(f"report: {result.out / 'report.html'}")
    return 0


def _speaker(args: argparse.Namespace) -> tuple[Any, str | None]:
    """``--speaker``'s clip (read, trimmed, checked: one line naming the file) and ``--speaker-text``."""
    from stylegrpo.reference import check_speaker_text, load_reference_audio

    text = check_speaker_text(args.speaker, args.speaker_text)
    if not args.speaker:
        return None, None
    return load_reference_audio(args.speaker), text
