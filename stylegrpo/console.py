"""What a ``stylegrpo`` command prints: the console policy, at three verbosities.

Library code logs with ``logging`` and makes its bars with :func:`progress`; the CLI (``stylegrpo.cli.main``)
opens a :func:`session` around every subcommand, which decides what reaches the terminal:

- **normal** (default): our INFO lines as plain text (``warning: ...`` / ``error: ...`` for the louder
  levels), one bar per long stage (synthesis, scoring, training), and the result lines the CLI prints.
  Library chatter is kept back: transformers' and huggingface_hub's weight-loading / download bars and
  datasets' bars (switched off through their own APIs), known warnings of our dependencies that say
  nothing to a user (:data:`KNOWN_WARNINGS`, :data:`KNOWN_LOG_CHATTER`: each matched by its module or logger,
  category and message, never a blanket ignore), and a warning that repeats (the same logger and
  message template, e.g. one per batch) is shown once and summed up in one line with its count at the end.
- **verbose** (``-v``): timestamps, logger names and our DEBUG lines; every library bar and warning, each
  repeat on its own line; the trainer's raw log dictionaries.
- **quiet** (``-q``, for scripts): errors and the result lines only; no bars, no notes, no warnings.

Third-party libraries are configured when they are imported (an import hook), so ``stylegrpo styles`` still
imports neither transformers nor datasets. A session restores every setting it changed when it ends.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

QUIET, NORMAL, VERBOSE = -1, 0, 1

# Python warnings of our dependencies hidden at normal verbosity: (category, module regex, message regex,
# why it says nothing to a user). `module` is the module the warning is attributed to.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str, str, str], ...] = (
    (
        FutureWarning,
        r"transformers\.modeling_utils$",
        r"`is_gradient_checkpointing` is deprecated",
        "TRL 1.16 calls the old name on every generation; transformers keeps it until v6",
    ),
)

# Log records of our dependencies hidden at normal verbosity: (logger prefix, message start, why).
KNOWN_LOG_CHATTER: tuple[tuple[str, str, str], ...] = (
    (
        "transformers",
        "The tokenizer has new PAD/BOS/EOS tokens",
        "TRL aligns the generation config with the tokenizer we prepared; the values are ours",
    ),
)

# Loggers whose INFO lines are ours: shown without a logger name at normal verbosity.
OUR_LOGGERS = ("stylegrpo", "__main__")

_VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_VERBOSE_DATEFMT = "%H:%M:%S"
# %-style conversion specifications of a logging template (to print a varying argument as a range)
_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


@dataclass
class _State:
    verbosity: int = NORMAL
    active: bool = False
    folder: Any = None  # the running session's _Folder (normal verbosity)
    handler: Any = None


_state = _State()


def verbosity() -> int:
    """The verbosity of the running command: QUIET, NORMAL (also outside a command) or VERBOSE."""
    return _state.verbosity


def progress_enabled() -> bool:
    return _state.verbosity > QUIET


def progress_bar(*args: Any, disable: bool | None = False, **kwargs: Any) -> Any:
    """A tqdm bar for a long stage (``tqdm.auto.tqdm``'s arguments); none at all under ``-q``."""
    from tqdm.auto import tqdm

    return tqdm(*args, disable=True if not progress_enabled() else disable, **kwargs)


def note(text: str) -> None:
    """A line the CLI prints beside its results (a caveat, a hint); ``-q`` leaves it out."""
    if _state.verbosity > QUIET:
        print(text)


def trainer_progress(trainer: Any) -> None:
    """Give a transformers ``Trainer`` the console's training bar: one bar with loss and reward beside it
    (normal), none (``-q``), or transformers' own bar that prints every log dictionary (``-v``)."""
    if _state.verbosity == VERBOSE:
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    removed = False
    for cls in (ProgressCallback, PrinterCallback):
        while any(isinstance(cb, cls) for cb in trainer.callback_handler.callbacks):
            trainer.remove_callback(cls)
            removed = True
    if removed and progress_enabled() and not getattr(trainer.args, "disable_tqdm", False):
        trainer.add_callback(_training_bar_class()())


def _training_bar_class() -> type:
    from transformers import TrainerCallback

    class TrainingBar(TrainerCallback):
        """The training stage's bar; the last loss and mean reward as its postfix (the full logs go to the
        trackers, trainer_state.json and style_metrics.jsonl)."""

        bar: Any = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress_bar(
                    total=state.max_steps, desc="training", unit="step", dynamic_ncols=True
                )
                self.bar.update(state.global_step)  # a resumed run starts where it stopped

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs:
                shown = {k: f"{logs[k]:.4g}" for k in ("loss", "reward") if _number(logs.get(k))}
                if shown:
                    self.bar.set_postfix(shown, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingBar


def summarize_repeats() -> None:
    """Print the one-line summaries of repeated warnings now (a CLI calls it before its result lines, so
    they end the output); the session prints any later ones when it ends."""
    folder, handler = _state.folder, _state.handler
    if folder is None or handler is None:
        return
    for record in folder.summary():
        handler.emit(record)
    folder.seen.clear()


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUR_LOGGERS)


class _Formatter(logging.Formatter):
    def __init__(self, verbose: bool):
        super().__init__(_VERBOSE_FORMAT if verbose else "%(message)s", _VERBOSE_DATEFMT)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.verbose:
            return text
        where = "" if _ours(record.name) or record.name == "py.warnings" else f"{record.name}: "
        if record.levelno >= logging.ERROR:
            return f"error: {where}{text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {where}{text}"
        return f"{where}{text}"


class _Handler(logging.Handler):
    """Writes to the current ``sys.stderr`` (test capture included), through ``tqdm.write`` so bars stay whole."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    @staticmethod
    def write(text: str) -> None:
        tqdm = sys.modules.get("tqdm")  # no tqdm imported: no bar can be on screen
        if tqdm is not None:
            tqdm.tqdm.write(text, file=sys.stderr)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


@dataclass
class _Repeat:
    record: logging.LogRecord
    count: int = 1
    low: list[Any] = field(default_factory=list)
    high: list[Any] = field(default_factory=list)


class _Folder(logging.Filter):
    """Lets the first record of each (logger, template) warning through, counts the rest (see summary())."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, str], _Repeat] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        template = record.msg if isinstance(record.msg, str) else repr(record.msg)
        key = (record.name, template if record.args else record.getMessage())
        seen = self.seen.get(key)
        if seen is None:
            args = list(record.args) if isinstance(record.args, tuple) else []
            self.seen[key] = _Repeat(record, low=list(args), high=list(args))
            return True
        seen.count += 1
        if isinstance(record.args, tuple) and len(record.args) == len(seen.low):
            for i, value in enumerate(record.args):
                if _number(value) and _number(seen.low[i]):
                    seen.low[i], seen.high[i] = min(seen.low[i], value), max(seen.high[i], value)
        return False

    def summary(self) -> list[logging.LogRecord]:
        """One record per repeated warning: its message with varying numbers as ranges, and the count."""
        out = []
        for repeat in self.seen.values():
            if repeat.count < 2:
                continue
            record = logging.makeLogRecord(repeat.record.__dict__)
            record.msg, record.args = _ranged(repeat), None
            record.msg += f" ({repeat.count} times in all; -v shows each)"
            out.append(record)
        return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ranged(repeat: _Repeat) -> str:
    """The template with each argument that varied printed as 'low-high' (the first record's message if
    the template cannot be read that way)."""
    record = repeat.record
    first = record.getMessage()
    if not isinstance(record.msg, str) or not isinstance(record.args, tuple) or not record.args:
        return first
    specs = [m for m in _SPEC.finditer(record.msg) if m.group() != "%%"]
    if len(specs) != len(record.args) or any("(" in m.group() or "*" in m.group() for m in specs):
        return first
    try:
        parts, last = [], 0
        for m, value, low, high in zip(specs, record.args, repeat.low, repeat.high, strict=True):
            parts.append(record.msg[last : m.start()].replace("%%", "%"))
            spec = m.group()
            parts.append(spec % value if low == high else f"{spec % low}-{spec % high}")
            last = m.end()
        parts.append(record.msg[last:].replace("%%", "%"))
        return "".join(parts)
    except (TypeError, ValueError):
        return first


class _KnownChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for prefix, start, _why in KNOWN_LOG_CHATTER:
            if record.name == prefix or record.name.startswith(prefix + "."):
                with contextlib.suppress(Exception):
                    if record.getMessage().startswith(start):
                        return False
        return True


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings become one log line each (no source line echoed), so they fold and keep bars whole."""
    where = "/".join(str(filename).replace("\\", "/").split("/")[-2:])
    # no arguments: the text is the template, so each distinct warning folds on its own
    logging.getLogger("py.warnings").warning(f"{category.__name__}: {message} ({where}:{lineno})")


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a hook right after a named module is first imported (a library configured only if it is used)."""

    def __init__(self, hooks: dict[str, Callable[[ModuleType], None]]):
        self.hooks = dict(hooks)

    def find_spec(self, name, path, target=None):
        hook = self.hooks.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        self.hooks.pop(name, None)
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            hook(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _library_hooks(level: int, undo: list[Callable[[], None]]) -> dict[str, Callable[[ModuleType], None]]:
    bars = level == VERBOSE

    def hub(m: ModuleType) -> None:  # download bars: a long stage, left as they are unless -q
        if level == QUIET and not m.are_progress_bars_disabled():
            m.disable_progress_bars()
            undo.append(m.enable_progress_bars)

    def transformers(m: ModuleType) -> None:
        was_bar, was_level = m.is_progress_bar_enabled(), m.get_verbosity()
        hub_bars = not m.hf_hub_utils.are_progress_bars_disabled()
        (m.enable_progress_bar if bars else m.disable_progress_bar)()  # "Loading weights" bars
        if hub_bars:  # its switch also turns off huggingface_hub's download bars: a long stage, kept
            m.hf_hub_utils.enable_progress_bars()
        m.disable_default_handler()  # its records reach our handler: one format, folded, bars kept whole
        m.enable_propagation()
        m.set_verbosity(logging.ERROR if level == QUIET else logging.WARNING)

        def restore() -> None:
            (m.enable_progress_bar if was_bar else m.disable_progress_bar)()
            m.disable_propagation()
            m.enable_default_handler()
            m.set_verbosity(was_level)

        undo.append(restore)

    def datasets(m: ModuleType) -> None:
        was = m.are_progress_bars_disabled()
        (m.enable_progress_bars if bars else m.disable_progress_bars)()
        undo.append(m.disable_progress_bars if was else m.enable_progress_bars)

    return {
        "huggingface_hub.utils": hub,
        "transformers.utils.logging": transformers,
        "datasets.utils.tqdm": datasets,
    }


@contextlib.contextmanager
def session(level: int = NORMAL) -> Iterator[None]:
    """The console policy for one command; every setting it changes is restored on the way out."""
    undo: list[Callable[[], None]] = []
    root = logging.getLogger()
    ours = logging.getLogger("stylegrpo")
    saved = (_state.verbosity, _state.active, _state.folder, _state.handler, root.level, ours.level)
    handler = _Handler()
    handler.setFormatter(_Formatter(verbose=level == VERBOSE))
    folder = _Folder()
    if level == NORMAL:
        handler.addFilter(_KnownChatter())
        handler.addFilter(folder)
    root.addHandler(handler)
    # third-party INFO is chatter at every level but -v; their warnings are shown (known ones filtered)
    root.setLevel({QUIET: logging.ERROR, NORMAL: logging.WARNING, VERBOSE: logging.INFO}[level])
    ours.setLevel({QUIET: logging.ERROR, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}[level])
    _state.verbosity, _state.active, _state.folder, _state.handler = level, True, folder, handler
    tqdm_disable = os.environ.get("TQDM_DISABLE")
    if (
        level == QUIET
    ):  # bars made without progress() (tqdm reads it when first imported; children inherit it)
        os.environ["TQDM_DISABLE"] = "1"
    hooks = _library_hooks(level, undo)
    pending = {}
    for name, hook in hooks.items():
        if name in sys.modules:
            hook(sys.modules[name])
        else:
            pending[name] = hook
    finder = _AfterImport(pending)
    sys.meta_path.insert(0, finder)
    with warnings.catch_warnings():
        warnings.showwarning = _showwarning
        if level == NORMAL:
            for category, module, message, _why in KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category, module=module)
        try:
            yield
        finally:
            summarize_repeats()
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(finder)
            for restore in reversed(undo):
                with contextlib.suppress(Exception):
                    restore()
            root.removeHandler(handler)
            if tqdm_disable is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = tqdm_disable
            _state.verbosity, _state.active, _state.folder, _state.handler, level_root, level_ours = saved
            root.setLevel(level_root)
            ours.setLevel(level_ours)
