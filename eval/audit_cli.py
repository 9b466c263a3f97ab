"""``stylegrpo audit``: how well does each style judge see each style of the catalog?"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from stylegrpo import argtypes
from stylegrpo.console import note
from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import check_output_dir
from stylegrpo.presets import MODEL_FIELDS, add_model_arguments, preset_from_args
from stylegrpo.speech_time import tokens_for_seconds
from stylegrpo.styles import default_styles_path, load_catalog
from stylegrpo.styles_cli import add_styles_argument
from stylegrpo.tiny import is_tiny

from .run import DEFAULT_SEED

AUDIT_SEED = DEFAULT_SEED  # eval's seed: the same command gives the same clips


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score labelled clips with every style judge (CLAP, acoustic targets, DNSMOS quality, the AudioSet "
        "classifier) and write, per judge and style, top-1 accuracy, ROC-AUC own vs other styles, the "
        "confusion matrix, the score's spread within a style and a verdict, plus per-description geometry "
        "(CLAP): audit.json, audit.csv, plots and report.html in --out. Examples: "
        "stylegrpo audit --synthesize 4 --preset tiny --out runs/audit; "
        "stylegrpo audit --clips runs/eval/clips --out runs/eval-audit"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--clips",
        metavar="DIR",
        help="folder with metadata.csv (file_name, style[, text]) and the audio, e.g. an eval's clips/",
    )
    src.add_argument(
        "--dataset",
        metavar="NAME_OR_DIR",
        help="a datasets audio dataset (hub name or local folder) with an audio and a style column",
    )
    src.add_argument(
        "--synthesize",
        type=argtypes.count,
        metavar="N",
        help="the policy (--preset, --adapter) speaks N texts in every catalog style; the audit scores those",
    )
    parser.add_argument(
        "--where",
        metavar="COLUMN=VALUE,...",
        help="--clips: only the rows of metadata.csv with these values, e.g. model=adapter (an eval folder "
        "lists base and adapter clips)",
    )
    parser.add_argument("--split", default="train", help="--dataset: the split to read (default: train)")
    parser.add_argument("--audio-column", default="audio", help="--dataset: audio column (default: audio)")
    parser.add_argument(
        "--style-column", default="style", help="--dataset: style label column (default: style)"
    )
    parser.add_argument(
        "--style-map",
        metavar="LABEL=STYLE,...",
        help="--dataset: rename its labels to catalog styles, e.g. happy=excited,neutral=calm_narrator",
    )
    parser.add_argument(
        "--texts",
        metavar="FILE",
        help="--synthesize: texts to speak, one per line (default: Harvard sentences)",
    )
    parser.add_argument(
        "--adapter", metavar="DIR", help="--synthesize: LoRA adapter of the policy (none: base)"
    )
    parser.add_argument(
        "--judges",
        metavar="SPEC,...",
        help="style judges to audit (default: every registered one, CLAP and AST with the preset's models: "
        "clap, acoustic, quality, ast; a default judge that cannot load is skipped, a named one is an error)",
    )
    add_styles_argument(parser)
    add_model_arguments(parser, overrides=MODEL_FIELDS)
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=AUDIT_SEED,
        help=f"--synthesize: text choice and sampling seed (default: {AUDIT_SEED})",
    )
    parser.add_argument(
        "--batch-size", type=argtypes.count, default=None, metavar="N", help="--synthesize: prompts per batch"
    )
    parser.add_argument(
        "--max-seconds",
        type=argtypes.seconds,
        default=None,
        metavar="S",
        help="--synthesize: longest clip generated",
    )
    parser.add_argument(
        "--judge-batch-size",
        type=argtypes.count,
        default=None,
        metavar="N",
        help="clips per judge forward pass",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder that an audit wrote"
    )


def _num(value: float) -> str:
    return f"{value:.2f}" if isinstance(value, float) and math.isfinite(value) else "n/a"


def _judge_specs(value: str | None, preset) -> list[str]:
    from stylegrpo.scorers.judges import judge_class, split_spec

    from .audit_run import default_judges

    specs = [s.strip() for s in value.split(",") if s.strip()] if value else default_judges(preset)
    if not specs:
        raise StyleGRPOError("--judges: no judge named; e.g. --judges clap,acoustic")
    for spec in specs:
        judge_class(split_spec(spec)[0])  # an unknown prefix is named with the valid ones, before any work
    return list(dict.fromkeys(specs))


def run(args: argparse.Namespace) -> int:
    from stylegrpo.llasa import check_adapter_folder, check_adapter_styles

    from .audit_report import REPORT_NAME, TINY_AUDIO_WARNING
    from .audit_run import (
        AUDIT_TEXTS,
        AuditSettings,
        parse_style_map,
        parse_where,
        read_audio_dataset,
        read_metadata_folder,
        run_audit,
        synthesize_clips,
    )
    from .run import read_texts_file

    dataset_path = args.dataset if args.dataset and Path(args.dataset).exists() else None
    inputs = [
        ("--clips", args.clips),
        ("--dataset", dataset_path),
        ("--texts", args.texts),
        ("--adapter", args.adapter),
        ("--styles", args.styles or default_styles_path()),
        *((f"--{f}", getattr(args, f, None)) for f in MODEL_FIELDS),
    ]
    check_output_dir(args.out, args.overwrite, inputs=inputs, option="--out")  # before reading anything
    if args.where and not args.clips:
        raise StyleGRPOError("--where filters the rows of --clips' metadata.csv")
    if not args.synthesize:
        for opt in ("texts", "adapter"):
            if getattr(args, opt):
                raise StyleGRPOError(f"--{opt} is for --synthesize (the clips given are scored as they are)")
    catalog = load_catalog(args.styles)
    preset = preset_from_args(args)
    judges = _judge_specs(args.judges, preset)
    tiny_policy = False
    if args.synthesize:
        adapter = Path(args.adapter) if args.adapter else None
        if adapter is not None:
            check_adapter_folder(adapter)
            check_adapter_styles(adapter, catalog.names, option="style(s)")
        texts = read_texts_file(args.texts) if args.texts else list(AUDIT_TEXTS)
        source = str(args.texts) if args.texts else "the built-in Harvard sentences"
        tiny_policy = bool(preset.random_weights) or is_tiny(preset.policy)
        max_new = tokens_for_seconds(args.max_seconds) if args.max_seconds else None

        def get_clips(tmp: Path):
            return synthesize_clips(
                tmp, catalog, args.synthesize, preset=preset, texts=texts, texts_source=source,
                device=args.device, adapter=adapter, seed=args.seed, batch_size=args.batch_size,
                max_new_tokens=max_new,
            )  # fmt: skip
    else:
        if args.clips:
            clips = read_metadata_folder(
                args.clips, catalog, where=parse_where(args.where)
            )  # every error named before the output exists
        else:
            clips = read_audio_dataset(
                args.dataset, catalog, split=args.split, audio_column=args.audio_column,
                style_column=args.style_column, style_map=parse_style_map(args.style_map),
            )  # fmt: skip

        def get_clips(tmp: Path):
            return clips

    settings = AuditSettings(
        out=Path(args.out),
        catalog=catalog,
        judges=judges,
        device=args.device,
        overwrite=args.overwrite,
        judge_batch_size=args.judge_batch_size,
        preset=preset,
        inputs=inputs,
        strict_judges=bool(args.judges),  # named by the user: a judge that cannot load is an error
        config={
            "adapter": args.adapter,
            "seed": args.seed if args.synthesize else None,
            "synthesize": args.synthesize,
            "tiny_policy": tiny_policy,
        },
    )
    out, data = run_audit(settings, get_clips)
    print(f"audit of {data['n_clips']} clips ({data['source']}) in {out}")
    for name, res in data["judges"].items():
        rows = res["styles"]
        good = [st for st in res["applies_to"] if rows[st]["verdict_kind"] == "separates"]
        print(
            f"  {name}: scores {len(res['applies_to'])} of {len(catalog)} styles, mean AUC "
            f"{_num(res['mean_auc'])}, top-1 accuracy {_num(res['accuracy'])}; separates {len(good)}"
            + (": " + ", ".join(good) if good else "")
            + ("  (tiny: random weights, plumbing only)" if res.get("tiny") else "")
        )
        if not (res.get("tiny") or tiny_policy):  # random judges or noise clips: their verdicts mean nothing
            for st in res["applies_to"]:
                if rows[st]["verdict_kind"] != "separates" or rows[st]["flat"]:
                    print(f"    {st}: {rows[st]['verdict']}")
    for spec, why in data["skipped_judges"].items():
        print(f"  {spec}: skipped ({why})")
    for name, d in data["descriptions"].items():
        if d["verdicts"]:
            print(f"  {name}: {len(d['verdicts'])} of {len(d['rows'])} descriptions sit nearer another style")
    if tiny_policy:
        note(f"  note: {TINY_AUDIO_WARNING}")
    print(f"report: {out / REPORT_NAME}")
    return 0
