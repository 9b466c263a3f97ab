"""``stylegrpo train``: a YAML recipe plus command-line overrides, parsed the way TRL's scripts do.

    stylegrpo train --config tiny [--learning_rate 1e-3 ...] [--output-dir DIR]
    stylegrpo train --config path/to/my-recipe.yaml ...      (a file path works too)
    stylegrpo train --list-recipes                           (the bundled recipes, by name)

Every field of TRL's ``GRPOConfig`` and ``ModelConfig`` and of our ``ScriptArguments`` is an option and
a recipe key. Precedence: command line > recipe > defaults (TrlParser's rule). The same entry point runs
under accelerate on several GPUs::

    accelerate launch --config_file training/accelerate/ddp.yaml -m stylegrpo.training.cli --config RECIPE ...
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from stylegrpo import console
from stylegrpo.argtypes import MAX_SEED
from stylegrpo.errors import StyleGRPOError, clip, quote
from stylegrpo.outputs import check_not_input, output_lock

log = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"  # the bundled recipes (shipped in the wheel)
RECIPE_SUFFIX = ".yaml"


def bundled_recipes() -> dict[str, Path]:
    """The bundled recipes by name (file stem), sorted."""
    return {p.stem: p for p in sorted(RECIPES_DIR.glob(f"*{RECIPE_SUFFIX}"))}


def recipe_summary(path: Path) -> str:
    """A recipe's first comment line (what it is for), or "" when it has none."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    for line in lines:
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return ""


def resolve_recipe(config: str | os.PathLike[str] | None) -> Path | None:
    """``--config``: an existing file, else a bundled recipe's name (``tiny``); unknown names are refused
    with the list of known ones."""
    if config is None:
        return None
    path = Path(config)
    if path.exists():
        return path
    known = bundled_recipes()
    text = str(config)
    if text in known:
        return known[text]
    if "/" in text or os.sep in text or path.suffix:
        return path  # a path that does not exist: parse_config says "recipe not found"
    raise StyleGRPOError(
        f"--config {quote(text)}: no such recipe file or bundled recipe; bundled recipes: "
        f"{', '.join(known) or '(none)'} (see `stylegrpo train --list-recipes`), or pass a file path"
    )


def list_recipes() -> str:
    """The bundled recipes, one a line: name and first comment line."""
    known = bundled_recipes()
    width = max((len(n) for n in known), default=0)
    lines = [f"{name:<{width}}  {recipe_summary(path)}".rstrip() for name, path in known.items()]
    lines.append(f"(in {RECIPES_DIR}; use one with --config NAME, or copy it and pass --config FILE)")
    return "\n".join(lines)


def make_parser() -> Any:
    """TRL's parser over (ScriptArguments, GRPOConfig, ModelConfig)."""
    from trl import GRPOConfig, ModelConfig, TrlParser

    from .grpo import ScriptArguments

    return TrlParser((ScriptArguments, GRPOConfig, ModelConfig), add_help=False)


def _field_names(parser: Any) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != argparse.SUPPRESS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stylegrpo.styles_cli import add_styles_argument

    parser.add_argument(
        "--config",
        metavar="RECIPE",
        help="a bundled recipe's name (tiny, llasa-1b-24gb, ...: see --list-recipes) or a YAML recipe file",
    )
    parser.add_argument(
        "--list-recipes", action="store_true", help="list the bundled recipes with what each is for, and exit"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="clear an existing, non-empty output folder and train anew"
    )
    add_styles_argument(parser)
    trl_parser = make_parser()
    taken = set(parser._option_string_actions)
    for action in trl_parser._actions:
        if not action.option_strings or set(action.option_strings) & taken:
            continue
        # Only options given on the command line reach run(): recipe values must not be shadowed by defaults
        action.default = argparse.SUPPRESS
        action.help = (action.help or "").replace("%", "%%")
        parser._add_action(action)


def parse_config(
    config: str | os.PathLike[str] | None, overrides: dict[str, Any]
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(script_args, training_args, model_args, recipe) from a YAML recipe and command-line overrides.

    ``recipe`` is the recipe's mapping with the overrides applied: what the adapter folder records.
    """
    from stylegrpo.yamlload import at, line_of, load_yaml, to_plain

    parser = make_parser()
    recipe: dict[str, Any] = {}
    path = resolve_recipe(config)
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise StyleGRPOError(
                f"{path}: recipe not found (bundled recipes: {', '.join(bundled_recipes())}; "
                "see `stylegrpo train --list-recipes`)"
            ) from None
        except UnicodeDecodeError as e:
            raise StyleGRPOError(
                f"{path}: not a text file (byte 0x{e.object[e.start]:02x} at offset {e.start} is not UTF-8); "
                "a recipe is a YAML file like training/recipes/tiny.yaml"
            ) from None
        except OSError as e:
            raise StyleGRPOError(f"{path}: cannot read the recipe: {e.strerror or e}") from None
        loaded = load_yaml(text, path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise StyleGRPOError(
                f"{at(path, line_of(loaded))}: a recipe is a mapping of option: value, "
                f"not a {'list' if isinstance(loaded, list) else type(loaded).__name__}"
            )
        env = loaded.pop("env", {}) or {}
        if not isinstance(env, dict):
            raise StyleGRPOError(f"{at(path, line_of(env))}: 'env' must be a mapping of VARIABLE: value")
        for key, value in env.items():
            os.environ[str(key)] = str(value)
        known = _field_names(parser)
        unknown = [k for k in loaded if k not in known]
        if unknown:
            shown = ", ".join(k if isinstance(k, str) and k.isidentifier() else quote(k) for k in unknown[:5])
            raise StyleGRPOError(
                f"{at(path, line_of(loaded, unknown[0]))}: unknown key(s) {shown}"
                f"{f' and {len(unknown) - 5} more' if len(unknown) > 5 else ''}; "
                "keys are the options of `stylegrpo train --help`"
            )
        recipe = to_plain(loaded)
    recipe.update(overrides)
    parser.set_defaults_with_config(**recipe)
    try:
        script_args, training_args, model_args = parser.parse_args_into_dataclasses(
            args=[], look_for_args_file=False
        )
    except (ValueError, TypeError, ZeroDivisionError) as e:
        hint = ""
        if "num_generations" in str(e):
            hint = (
                " (each step generates per_device_train_batch_size x processes x gradient_accumulation_steps "
                "completions, in groups of num_generations: num_generations must divide that number)"
            )
        raise StyleGRPOError(f"invalid training settings: {clip(str(e), 400)}{hint}") from None
    check_settings(script_args, training_args)
    return script_args, training_args, model_args, recipe


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _at_least(n: int) -> Any:
    return lambda v: isinstance(v, int) and v >= n


# (option, test, what it must be): checked before anything is created or loaded, so a bad value is one
# line here instead of a traceback from numpy, torch or generate() minutes later (and no output folder).
_SCRIPT_CHECKS = (
    (
        "max_train_samples",
        lambda v: v is None or (isinstance(v, int) and v >= 1),
        "at least 1 (or unset: all)",
    ),
    ("judge_batch_size", _at_least(1), "at least 1"),
    ("codec_batch_size", _at_least(1), "at least 1"),
    ("samples_every", _at_least(0), "0 (never) or more"),
    ("samples_per_style", _at_least(0), "0 or more"),
    ("nll_temperature", _positive, "a positive number"),
    ("min_syllables_per_second", _positive, "a positive number"),
    ("max_syllables_per_second", _positive, "a positive number"),
    ("duration_slack_s", lambda v: _positive(v) or v == 0, "0 or a positive number"),
)
_TRAINING_CHECKS = (
    ("seed", lambda v: isinstance(v, int) and 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
    ("data_seed", lambda v: v is None or (isinstance(v, int) and 0 <= v <= MAX_SEED), f"0 to {MAX_SEED}"),
    ("learning_rate", _positive, "a positive number (e.g. 1e-5)"),
    ("max_completion_length", _at_least(1), "at least 1 (completion tokens, 50 per second of speech)"),
    ("per_device_train_batch_size", _at_least(1), "at least 1"),
    ("gradient_accumulation_steps", _at_least(1), "at least 1"),
    ("temperature", _positive, "a positive number (1.0 samples the model as is)"),
    ("top_p", lambda v: _positive(v) and v <= 1, "in (0, 1]"),
    ("beta", lambda v: _positive(v) or v == 0, "0 (no KL term) or a positive number"),
)


def check_settings(script_args: Any, training_args: Any) -> None:
    """Refuse values that cannot work, naming the option; TRL's own checks (batch divisibility,
    num_generations >= 2) have already run in GRPOConfig.__post_init__."""
    for obj, checks in ((script_args, _SCRIPT_CHECKS), (training_args, _TRAINING_CHECKS)):
        for name, ok, requirement in checks:
            value = getattr(obj, name, None)
            if not ok(value):
                raise StyleGRPOError(f"--{name} must be {requirement} (got {quote(value)})")
    if script_args.min_syllables_per_second >= script_args.max_syllables_per_second:
        raise StyleGRPOError(
            f"--min_syllables_per_second ({script_args.min_syllables_per_second:g}) must be below "
            f"--max_syllables_per_second ({script_args.max_syllables_per_second:g})"
        )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe keys given on the command line (options left out are absent, so the recipe stands)."""
    fields = _field_names(make_parser())
    overrides = {k: v for k, v in vars(args).items() if k in fields and k != "styles"}
    if getattr(args, "styles", None) is not None:
        overrides["styles"] = args.styles
    return overrides


def check_inputs(config: str | None, script_args: Any, training_args: Any, model_args: Any) -> None:
    """The output folder may not be, contain or lie inside the recipe, dataset, catalog or a local model."""
    from stylegrpo.styles import default_styles_path

    inputs = [
        ("--config", config),
        ("--dataset_path", script_args.dataset_path),
        ("--styles", script_args.styles or default_styles_path()),
        ("--model_name_or_path", model_args.model_name_or_path),
        *((f"--{f}", getattr(script_args, f, None)) for f in ("codec", "clap", "asr", "whisper", "wavlm")),
    ]
    check_not_input(training_args.output_dir, inputs, option="--output-dir")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "list_recipes", False):
        print(list_recipes())
        return 0
    config = resolve_recipe(args.config)
    script_args, training_args, model_args, recipe = parse_config(config, overrides_from_args(args))
    check_inputs(config, script_args, training_args, model_args)  # before loading data or models
    from .grpo import main

    with contextlib.ExitStack() as held:
        if training_args.output_dir and os.environ.get("RANK", "0") == "0":  # one trainer per folder at once
            held.enter_context(output_lock(training_args.output_dir))
        adapter = main(script_args, training_args, model_args, recipe=recipe, overwrite=args.overwrite)
    if training_args.process_index == 0:
        console.summarize_repeats()  # the result ends the output
        print(f"adapter written to {adapter}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m stylegrpo.training.cli`` (e.g. under ``accelerate launch``)."""
    parser = argparse.ArgumentParser(
        prog="stylegrpo train", description="train one LoRA for all styles with GRPO"
    )
    from stylegrpo.cli import add_verbosity_arguments, run_command

    add_verbosity_arguments(parser)  # -v/-q: the same console policy as `stylegrpo train`
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_command("train", __name__, args)


if __name__ == "__main__":
    sys.exit(main())
