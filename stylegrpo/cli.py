"""The ``stylegrpo`` command.

Each subcommand lives in a module that exposes ``add_arguments(parser)`` and ``run(args) -> int``. Modules
are imported only when their subcommand runs, so ``stylegrpo styles`` never imports torch. The pipeline
folders (data_builder, training, eval; installed as stylegrpo.data_builder, stylegrpo.training and
stylegrpo.eval) are named here by string only: the library does not import them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from . import __version__
from .errors import StyleGRPOError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "styles": ("stylegrpo.styles_cli", "list the styles of a catalog, or --check it"),
    "build": ("stylegrpo.data_builder.cli", "build a prompt dataset from text corpora and the style catalog"),
    "train": ("stylegrpo.training.cli", "train one LoRA for all styles with GRPO"),
    "eval": ("stylegrpo.eval.cli", "score base and adapter per style and write a report"),
    "say": ("stylegrpo.say", "synthesize speech in a style"),
    "audit": ("stylegrpo.eval.audit_cli", "how well each style judge sees each style: AUC, accuracy, report"),
    "app": ("stylegrpo.app", "a local page to hear base and adapter side by side, in any style"),
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylegrpo",
        description="Teach a Llasa TTS model many speaking styles with GRPO and one LoRA.",
    )
    parser.add_argument("--version", action="version", version=f"stylegrpo {__version__}")
    add_verbosity_arguments(parser)
    # -v/-q also work after the subcommand (`stylegrpo say -q ...`); SUPPRESS keeps one given before it
    common = argparse.ArgumentParser(add_help=False)
    add_verbosity_arguments(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def add_verbosity_arguments(parser: argparse.ArgumentParser, default: object = False) -> None:
    """``-v``/``-q``: the console policy of stylegrpo.console (normal when neither is given)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="also show debug lines, timestamps, library warnings and bars, each repeated warning",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="for scripts: only errors and the result lines (no bars, notes or warnings)",
    )


def verbosity_of(args: argparse.Namespace) -> int:
    from . import console

    if getattr(args, "quiet", False):
        return console.QUIET
    return console.VERBOSE if getattr(args, "verbose", False) else console.NORMAL


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: every ``finally``/``except BaseException`` clean-up runs (temp folders go)."""


SIGTERM_EXIT = 128 + signal.SIGTERM  # 143: the shell's code for "killed by SIGTERM"
INTERRUPT_EXIT = 128 + signal.SIGINT  # 130: Ctrl-C


REDELIVER_S = 0.05  # how soon a SIGTERM that landed inside a C callback is tried again (once out of it)


def _inside_c_callback(frame) -> bool:
    """Whether Python code called back from C (llvmlite, under numba's compiler) is running.

    An exception raised there is printed and dropped by ctypes ("Exception ignored on calling ctypes
    callback function"), so a SIGTERM raised as ``Terminated`` there would be lost and the command would
    run on to the end.
    """
    while frame is not None:
        if "llvmlite" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _raise_terminated(signum, frame) -> None:
    if _inside_c_callback(frame):
        # numba compiles our kernels on their first use (seconds, once per install): try again shortly
        retry = threading.Timer(REDELIVER_S, os.kill, (os.getpid(), signum))
        retry.daemon = True
        retry.start()
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not break the clean-up itself
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = _parser(command if command in COMMANDS else None).parse_args(argv)
    return run_command(args.command, COMMANDS[args.command][0], args)


def run_command(command: str, module_name: str, args: argparse.Namespace) -> int:
    """Run one subcommand under the console policy (stylegrpo.console); a user's mistake is one line, exit 2."""
    from . import console

    with console.session(verbosity_of(args)):
        try:
            module = importlib.import_module(module_name)
            with sigterm_as_interrupt():
                return int(module.run(args) or 0)
        except StyleGRPOError as e:
            print(f"stylegrpo {command}: error: {e}", file=sys.stderr)
            return 2
        except Terminated:
            print(f"stylegrpo {command}: terminated (SIGTERM)", file=sys.stderr)
            return SIGTERM_EXIT
        except KeyboardInterrupt:
            print(f"stylegrpo {command}: interrupted", file=sys.stderr)
            return INTERRUPT_EXIT


if __name__ == "__main__":
    sys.exit(main())
