"""``stylegrpo build``: text corpora + the style catalog -> a prompt dataset for GRPO training."""

from __future__ import annotations

import argparse
from pathlib import Path

from stylegrpo import argtypes
from stylegrpo.styles_cli import add_styles_argument

from . import cleaning, pairing, segment, speakers
from .build import DEFAULT_SEED, DEFAULT_TEST_SIZE, BuildConfig, build_dataset, push_to_hub
from .card import command_line
from .cleaning import CleanOptions
from .corpora import DEFAULT_SPLIT, ReadOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Build a prompt dataset (parquet train/test + dataset card) from text corpora and the style catalog. "
        "Texts are normalized, filtered, de-duplicated, split by text and paired with styles."
    )
    src = parser.add_argument_group("corpora")
    src.add_argument(
        "--corpus",
        action="append",
        default=[],
        metavar="PATH",
        help="a .txt/.jsonl/.json/.csv/.tsv/.parquet file (or .gz of those), a folder of them, a save_to_disk "
        "dataset folder, or hf:NAME for a Hugging Face hub dataset; repeat for several (default: the embedded "
        "English corpus)",
    )
    src.add_argument(
        "--column",
        default=None,
        help="text column of tables and datasets (default: 'text', else the only text column)",
    )
    src.add_argument(
        "--split",
        default=DEFAULT_SPLIT,
        help=f"split of a Hugging Face dataset to read (default: {DEFAULT_SPLIT})",
    )
    src.add_argument(
        "--hf-config",
        default=None,
        metavar="NAME",
        help="configuration of a hub dataset (e.g. wikitext-103-raw-v1)",
    )
    src.add_argument(
        "--text-mode",
        choices=segment.TEXT_MODES,
        default=segment.AUTO,
        help="plain text: one sentence per line ('lines'), or paragraphs split into sentences; 'auto' detects "
        "it per file (default)",
    )
    src.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first undecodable or unparsable line instead of skipping it",
    )
    src.add_argument(
        "--max-texts",
        type=int,
        default=None,
        metavar="N",
        help="stop after N kept texts (e.g. to sample a large corpus)",
    )

    add_styles_argument(parser)
    pair = parser.add_argument_group("styles and splits")
    pair.add_argument(
        "--styles-subset", default=None, metavar="A,B", help="use only these styles (comma-separated names)"
    )
    pair.add_argument(
        "--pairing",
        choices=pairing.PAIRINGS,
        default="balanced",
        help="balanced: one style per text, styles equally represented (default); cross: every text with every "
        "style; random: a random style per text",
    )
    pair.add_argument(
        "--test-pairing",
        choices=pairing.PAIRINGS,
        default=None,
        help="pairing of the test split (default: --pairing)",
    )
    pair.add_argument(
        "--test-size",
        default=str(DEFAULT_TEST_SIZE),
        help=f"held-out texts: a fraction in [0, 1) or a count (default: {DEFAULT_TEST_SIZE}); 0 = no test split",
    )
    pair.add_argument(
        "--seed",
        type=argtypes.seed,
        default=DEFAULT_SEED,
        help=f"seed of the split and the pairing, 0 to {argtypes.MAX_SEED} (default: %(default)s)",
    )

    spk = parser.add_argument_group("reference speakers (the voice each prompt continues in)")
    spk.add_argument(
        "--speakers",
        default=None,
        metavar="DIR",
        help="a folder of reference clips with metadata.csv (file_name, text[, speaker_id]): every row of a "
        "non-identity style gets a reference voice, balanced over the speakers, seeded (README: build)",
    )
    spk.add_argument(
        "--test-speakers",
        type=float,
        default=speakers.DEFAULT_TEST_SPEAKERS,
        metavar="F",
        help="share of the speakers held out for the test split only (at least one; 0: the splits share "
        "every speaker; default: %(default)s)",
    )
    spk.add_argument(
        "--codec",
        default=None,
        metavar="SPEC",
        help="codec that encodes the references: hub id, folder or tiny:xcodec2 (default: the llasa-1b "
        "preset's XCodec2; it must be the codec of the model you train)",
    )
    spk.add_argument(
        "--device",
        default="auto",
        help="device the codec encodes on: auto, cpu, cuda or cuda:N (default: auto)",
    )

    clean = parser.add_argument_group(
        "cleaning (defaults fit Llasa's 2048-token budget; see the dataset card)"
    )
    clean.add_argument("--min-chars", type=int, default=cleaning.MIN_CHARS, help="default: %(default)s")
    clean.add_argument(
        "--max-chars",
        type=int,
        default=cleaning.MAX_CHARS,
        help="default: %(default)s (~18 s at a normal rate)",
    )
    clean.add_argument("--min-words", type=int, default=cleaning.MIN_WORDS, help="default: %(default)s")
    clean.add_argument("--max-words", type=int, default=cleaning.MAX_WORDS, help="default: %(default)s")
    clean.add_argument(
        "--max-seconds",
        type=argtypes.seconds,
        default=None,
        metavar="S",
        help="drop texts the slowest selected style (its speaking_rate target's minimum, else 3 syllables/s) "
        "would need more than S seconds to speak; match train's max_completion_length (S x 50 tokens), e.g. "
        "19.9 for the real recipes' 1000 (default: no limit)",
    )
    clean.add_argument(
        "--min-letter-fraction",
        type=float,
        default=cleaning.MIN_LETTER_FRACTION,
        help="drop lines where letters are less than this share of non-space, non-punctuation characters "
        "(default: %(default)s)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="output folder (parquet in DIR/data, card in DIR/README.md)",
    )
    out.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    out.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO",
        help="then upload DIR to this hub dataset repo (needs a token)",
    )
    out.add_argument("--private", action="store_true", help="create the hub repo as private")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    subset = args.styles_subset.split(",") if args.styles_subset is not None else None
    config = BuildConfig(
        out=args.out,
        corpora=list(args.corpus),
        styles=args.styles,
        styles_subset=subset,
        pairing=args.pairing,
        test_pairing=args.test_pairing,
        test_size=pairing.parse_test_size(args.test_size),
        seed=args.seed,
        max_seconds=args.max_seconds,
        clean=CleanOptions(
            min_chars=args.min_chars,
            max_chars=args.max_chars,
            min_words=args.min_words,
            max_words=args.max_words,
            min_letter_fraction=args.min_letter_fraction,
        ),
        read=ReadOptions(
            column=args.column,
            split=args.split,
            hf_config=args.hf_config,
            text_mode=args.text_mode,
            strict=args.strict,
        ),
        max_texts=args.max_texts,
        overwrite=args.overwrite,
        speakers=args.speakers,
        test_speakers=args.test_speakers,
        codec=args.codec,
        device=args.device,
    )
    config.command = command_line(config)
    return config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = build_dataset(config)
    print(result.summary())
    print(f"dataset card: {result.out / 'README.md'}")
    if args.push_to_hub:
        url = push_to_hub(result.out, args.push_to_hub, private=args.private)
        print(f"pushed to {url}")
    return 0
