"""``stylegrpo train``: a YAML recipe plus command-line overrides, parsed the way TRL's scripts do.

    stylegrpo train --config training/recipes/tiny.yaml [--learning_rate 1e-3 ...] [--output-dir DIR]

Every field of TRL's ``GRPOConfig`` and ``ModelConfig`` and of our ``ScriptArguments`` is an option and
a recipe key. Precedence: command line > recipe > defaults (TrlParser's rule). The same entry point runs
under accelerate on several GPUs::

    accelerate launch --config_file training/accelerate/ddp.yaml -m training.cli --config RECIPE ...
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from stylegrpo.errors import StyleGRPOError
from stylegrpo.outputs import check_not_input, output_lock

log = logging.getLogger(__name__)


def make_parser() -> Any:
    """TRL's parser over (ScriptArguments, GRPOConfig, ModelConfig)."""
    from trl import GRPOConfig, ModelConfig, TrlParser

    from .grpo import ScriptArguments

    return TrlParser((ScriptArguments, GRPOConfig, ModelConfig), add_help=False)


def _field_names(parser: Any) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != argparse.SUPPRESS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stylegrpo.styles_cli import add_styles_argument

    parser.add_argument("--config", metavar="RECIPE", help="YAML recipe (training/recipes/*.yaml)")
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
    import yaml

    parser = make_parser()
    recipe: dict[str, Any] = {}
    if config is not None:
        path = Path(config)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StyleGRPOError(f"{path}: recipe not found (see training/recipes/)") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise StyleGRPOError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise StyleGRPOError(f"{path}: a recipe is a mapping of option: value")
        env = loaded.pop("env", {}) or {}
        if not isinstance(env, dict):
            raise StyleGRPOError(f"{path}: 'env' must be a mapping of VARIABLE: value")
        for key, value in env.items():
            os.environ[str(key)] = str(value)
        known = _field_names(parser)
        unknown = sorted(k for k in loaded if k not in known)
        if unknown:
            raise StyleGRPOError(
                f"{path}: unknown key(s) {', '.join(unknown)}; keys are the options of `stylegrpo train --help`"
            )
        recipe = dict(loaded)
    recipe.update(overrides)
    parser.set_defaults_with_config(**recipe)
    try:
        script_args, training_args, model_args = parser.parse_args_into_dataclasses(
            args=[], look_for_args_file=False
        )
    except (ValueError, TypeError) as e:
        raise StyleGRPOError(f"invalid training settings: {e}") from e
    return script_args, training_args, model_args, recipe


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
        *((f"--{f}", getattr(script_args, f, None)) for f in ("codec", "clap", "asr", "whisper")),
    ]
    check_not_input(training_args.output_dir, inputs, option="--output-dir")


def run(args: argparse.Namespace) -> int:
    script_args, training_args, model_args, recipe = parse_config(args.config, overrides_from_args(args))
    check_inputs(args.config, script_args, training_args, model_args)  # before loading data or models
    from .grpo import main

    with contextlib.ExitStack() as held:
        if training_args.output_dir and os.environ.get("RANK", "0") == "0":  # one trainer per folder at once
            held.enter_context(output_lock(training_args.output_dir))
        adapter = main(script_args, training_args, model_args, recipe=recipe, overwrite=args.overwrite)
    if training_args.process_index == 0:
        print(f"adapter written to {adapter}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m training.cli`` (e.g. under ``accelerate launch``)."""
    parser = argparse.ArgumentParser(
        prog="stylegrpo train", description="train one LoRA for all styles with GRPO"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from stylegrpo.cli import SIGTERM_EXIT, Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            return run(args)
    except StyleGRPOError as e:
        print(f"stylegrpo train: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("stylegrpo train: terminated (SIGTERM)", file=sys.stderr)
        return SIGTERM_EXIT


if __name__ == "__main__":
    sys.exit(main())
