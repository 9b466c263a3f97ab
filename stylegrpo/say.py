"""``stylegrpo say``: speak a text (or every line of a file) in a style from the catalog."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

from . import argtypes, console
from .audio import write_wav
from .errors import StyleGRPOError
from .llasa import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, check_adapter_folder, check_adapter_styles
from .outputs import atomic_output_dir, check_not_input, check_output_dir, check_output_wav, output_lock
from .presets import add_model_arguments, preset_from_args, tune_cpu_threads
from .reference import MAX_REFERENCE_SECONDS, MIN_REFERENCE_SECONDS, check_speaker_text
from .speech_time import tokens_for_seconds
from .styles import PromptInputError, check_prompt_inputs, load_catalog
from .styles_cli import add_styles_argument, print_table
from .texts import read_text_lines

DEFAULT_OUTPUT = "out.wav"  # single-text output when -o is not given
DEFAULT_SEED = 0  # fixed by default so that running the same command twice gives the same audio
METADATA = "metadata.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Synthesize speech in a style of the catalog with Llasa (+ a trained adapter). "
        "Examples: stylegrpo say 'Hello there.' --style whispering -o hello.wav; "
        "stylegrpo say --input-file lines.txt --output-dir out/ --style excited"
    )
    parser.add_argument("text", nargs="?", help="the text to speak (or use --input-file)")
    parser.add_argument(
        "--style", metavar="NAME", help="style name from the catalog (default: Llasa's plain prompt)"
    )
    parser.add_argument(
        "-o", "--output", metavar="WAV", help=f"output wav for one text (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument("--input-file", metavar="TXT", help="speak each non-empty line of this UTF-8 file")
    parser.add_argument(
        "--output-dir", metavar="DIR", help="with --input-file: one wav per line plus metadata.csv here"
    )
    parser.add_argument("--list-styles", action="store_true", help="list the catalog's styles and exit")
    parser.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder written by `stylegrpo train`")
    parser.add_argument(
        "--speaker",
        metavar="WAV",
        help=f"speak in the voice of this reference clip (any sample rate; silence trimmed; at least "
        f"{MIN_REFERENCE_SECONDS:g} s of speech, at most {MAX_REFERENCE_SECONDS:g} s used); one reference for "
        "every line with --input-file",
    )
    parser.add_argument(
        "--speaker-text",
        metavar="TEXT",
        help="the words spoken in the --speaker clip (default: transcribed by the preset's ASR judge)",
    )
    add_model_arguments(parser, overrides=("policy", "codec"))
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=DEFAULT_SEED,
        help=f"sampling seed, 0 to {argtypes.MAX_SEED} (default: {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"sampling temperature, 0 = greedy (default: {DEFAULT_TEMPERATURE}, as Llasa's own inference)",
    )
    parser.add_argument(
        "--top-p", type=float, default=DEFAULT_TOP_P, help=f"nucleus sampling (default: {DEFAULT_TOP_P})"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="top-k sampling, 0 = off (default: the checkpoint's generation config, as Llasa's own inference)",
    )
    parser.add_argument(
        "--max-seconds",
        type=argtypes.seconds,
        default=None,
        help="longest audio to generate per text (default: the preset's cap, 30 s for Llasa)",
    )
    parser.add_argument(
        "--batch-size", type=argtypes.count, default=None, help="texts generated together (default: preset's)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file or folder")
    add_styles_argument(parser)


def _check_args(args: argparse.Namespace) -> None:
    if args.text is not None and args.input_file:
        raise StyleGRPOError("give either a text or --input-file, not both")
    if args.text is None and not args.input_file:
        raise StyleGRPOError('nothing to say: give a text (stylegrpo say "Hello.") or --input-file FILE')
    if args.text is not None and not args.text.strip():
        raise StyleGRPOError("the text is empty: give words to speak")
    if args.input_file and not args.output_dir:
        raise StyleGRPOError("--input-file needs --output-dir DIR (one wav per line goes there)")
    if args.output_dir and not args.input_file:
        raise StyleGRPOError("--output-dir is for --input-file; for one text use -o FILE.wav")
    if args.input_file and args.output:
        raise StyleGRPOError("-o is for a single text; with --input-file use --output-dir")
    if args.temperature < 0:
        raise StyleGRPOError(f"--temperature must be >= 0 (got {args.temperature})")
    if not 0 < args.top_p <= 1:
        raise StyleGRPOError(f"--top-p must be in (0, 1] (got {args.top_p})")
    if args.top_k is not None and args.top_k < 0:
        raise StyleGRPOError(f"--top-k must be >= 0 (got {args.top_k})")
    check_speaker_text(args.speaker, args.speaker_text)
    if args.adapter:
        check_adapter_folder(args.adapter)  # named: a missing or broken adapter_config.json


def _write_wav_atomic(path: Path, wav) -> None:
    """Write next to ``path`` under a temporary name, then rename: never a half-written wav."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.wav")
    try:
        write_wav(tmp, wav)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    if args.input_file and args.output_dir and not args.list_styles:
        with output_lock(args.output_dir):  # a second `say` into the same folder is refused before it starts
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.styles)
    if args.list_styles:
        print_table(catalog)
        return 0
    _check_args(args)
    # an unknown style (also an empty name) -> an error listing the known ones; with --adapter, so is a
    # style the adapter never learned (its own styles.yaml says which it knows)
    phrase = catalog.get(args.style).phrase if args.style is not None else None
    if args.adapter and args.style is not None:
        check_adapter_styles(args.adapter, [args.style])
    preset = preset_from_args(args)
    texts = [args.text.strip()] if args.text is not None else read_text_lines(args.input_file, "--input-file")
    # the prompt rule (no control tokens from the text), checked before any model loads
    check_prompt_inputs(
        catalog.template, texts, [phrase], f"--input-file {args.input_file}" if args.input_file else ""
    )
    output = Path(args.output or DEFAULT_OUTPUT) if args.input_file is None else None
    inputs = [
        ("--input-file", args.input_file),
        ("--adapter", args.adapter),
        ("--styles", catalog.path),
        ("--policy", args.policy),
        ("--codec", args.codec),
        ("--speaker", args.speaker),
    ]
    if output is not None:  # all checked before loading any model
        if output.suffix.lower() != ".wav":
            raise StyleGRPOError(f"{output}: the output must be a .wav file")
        check_not_input(output, inputs, option="-o")
        check_output_wav(output, args.overwrite)  # --overwrite replaces only a WAV file
    else:
        check_output_dir(args.output_dir, args.overwrite, inputs=inputs, option="--output-dir")

    audio = None
    if args.speaker:
        from .reference import load_reference_audio

        audio = load_reference_audio(
            args.speaker
        )  # unreadable, silent or too short: refused before any model
        style_obj = catalog.get(args.style) if args.style is not None else None
        if style_obj is not None and style_obj.identity:
            # warned, not refused: the reference fixes the voice, the style may still carry pace or manner
            print(
                f"warning: style {args.style!r} names who speaks ({phrase!r}, identity: true in "
                f"{catalog.path}); the reference voice {args.speaker} decides who speaks, so expect the "
                "reference's voice with this style's manner at best"
            )

    from .synth import Synthesizer

    max_new_tokens = None
    if args.max_seconds is not None:
        max_new_tokens = tokens_for_seconds(args.max_seconds)
    tune_cpu_threads(preset, args.device)
    if preset.random_weights:
        console.note(
            f"note: preset {preset.name!r} uses tiny models with RANDOM weights: the audio is noise-like; "
            "it proves the pipeline only. Use --preset llasa-1b for real speech."
        )
    synth = Synthesizer(
        preset,
        args.device,
        adapter=args.adapter,
        catalog=catalog,
        batch_size=args.batch_size,
        max_new_tokens=max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        encoder=audio is not None,
    )
    reference = None
    if audio is not None:
        reference = _reference(args, catalog, preset, synth, audio, texts, phrase)
    clips = synth.synthesize(
        texts, [phrase] * len(texts), seed=args.seed, references=[reference] * len(texts)
    )
    style = args.style or "(plain)"
    if output is not None:
        clip = clips[0]
        _write_wav_atomic(output, clip.wav)
        voice = f", voice of {args.speaker}" if args.speaker else ""
        print(f"wrote {output} ({clip.seconds:.2f} s, {len(clip.codes)} codes, style {style}{voice})")
        _warn_clip(clip)
        return 0
    width = max(4, len(str(len(clips))))
    with atomic_output_dir(args.output_dir, args.overwrite, command="say", inputs=inputs) as tmp:
        rows = []
        for i, clip in enumerate(clips, 1):
            name = f"{i:0{width}d}.wav"
            write_wav(tmp / name, clip.wav)
            rows.append(
                {
                    "file": name,
                    "text": clip.text,
                    "style": args.style or "",
                    "description": phrase or "",
                    "seconds": f"{clip.seconds:.3f}",
                    "num_codes": len(clip.codes),
                    "truncated": clip.truncated,
                    "seed": args.seed,
                    "preset": preset.name,
                    "adapter": os.fspath(args.adapter) if args.adapter else "",
                    "speaker": os.fspath(args.speaker) if args.speaker else "",
                    "speaker_text": reference.text if reference is not None else "",
                }
            )
        with open(tmp / METADATA, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    total = sum(c.seconds for c in clips)
    print(
        f"wrote {len(clips)} wav files ({total:.1f} s in all) and {METADATA} to {args.output_dir} (style {style})"
    )
    for i, clip in enumerate(clips, 1):
        _warn_clip(clip, f"line {i}: ")
    return 0


def _reference(args, catalog, preset, synth, audio, texts, phrase):
    """The reference speaker of ``--speaker``: transcribed when ``--speaker-text`` is not given, encoded by
    the codec, and checked against Llasa's token budget with every text."""
    from .llasa import check_reference_codes
    from .reference import check_token_budget, transcribe_reference
    from .speech_time import DEFAULT_SLOWEST_SYLLABLES_PER_SECOND, slowest_rate

    if args.speaker_text is not None:
        text = args.speaker_text.strip()
    else:
        from .scorers.asr import AsrScorer

        print(f"transcribing the reference {args.speaker} with {preset.asr} (pass --speaker-text to skip)")
        text = transcribe_reference(AsrScorer(preset.asr, device=synth.device), audio)
        print(f"reference transcript: {text!r}")
    reference = synth.encode_reference(audio, text)
    check_reference_codes(synth.tokenizer, reference, f"--speaker {args.speaker}")
    rate = (
        slowest_rate(catalog.get(args.style))
        if args.style is not None
        else DEFAULT_SLOWEST_SYLLABLES_PER_SECOND
    )
    for number, line in enumerate(texts, 1):
        where = f"--speaker {args.speaker}" + (
            f" with text #{number} of --input-file" if args.input_file else ""
        )
        try:
            prompt = catalog.template.render(line, phrase, reference)
        except PromptInputError as e:
            raise StyleGRPOError(f'--speaker {args.speaker}: {e}; pass --speaker-text "..."') from None
        check_token_budget(synth.tokenizer, prompt, line, rate, where=where)
    cut = f", cut to the first {MAX_REFERENCE_SECONDS:g} s" if audio.cut else ""
    print(f"reference voice: {audio.seconds:.2f} s{cut}, {len(reference.codes)} codes")
    return reference


def _warn_clip(clip, prefix: str = "") -> None:
    if not clip.codes:
        console.note(f"warning: {prefix}the model wrote no speech tokens; the wav is empty")
    elif clip.truncated:
        console.note(
            f"warning: {prefix}the speech reached the length cap before it ended; raise --max-seconds"
        )
