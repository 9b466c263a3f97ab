"""Outputs: never an input, replaced only when ours, written whole or not at all, one writer at a time.

- ``check_not_input``: an output may not be, contain or lie inside any input of the command (paths are
  resolved first: symlinks, ``..``, relative paths), so no ``--overwrite`` can ever reach an input.
- The ownership mark: every output folder gets a small hidden file ``MARK_NAME`` naming the command that
  wrote it. ``--overwrite`` replaces or clears only a folder that carries it; any other non-empty folder is
  refused. Corpus folders are walked without descending into marked folders.
- ``atomic_output_dir``: work in a hidden temporary sibling ``.NAME.tmp-PID-XXXX``, rename it into place at
  the end, under a lock (``.NAME.lock`` next to the destination) that refuses a second writer; temporary
  folders of dead processes are swept on the next run.
- Folders and files are created with the user's umask (not ``mkdtemp``/``mkstemp``'s private 0700/0600).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StyleGRPOError

log = logging.getLogger(__name__)

MARK_NAME = ".stylegrpo-output"  # hidden: datasets' and PEFT's loaders ignore dot files
LOCK_SUFFIX = ".lock"
_TMP_INFIX = ".tmp-"
_OLD_INFIX = ".old-"
_HELD_LOCKS: dict[Path, int] = {}  # this process's locks (resolved destination -> depth), so they nest
Inputs = Iterable["tuple[str, str | os.PathLike[str] | None]"]  # (label for messages, path)


# -- paths ------------------------------------------------------------------------------------------
def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Absolute path with symlinks, ``~`` and ``..`` resolved (the parts that exist)."""
    return Path(os.path.expanduser(os.fspath(path))).resolve()


def check_not_input(output: str | os.PathLike[str] | None, inputs: Inputs, *, option: str = "output") -> None:
    """Refuse an ``output`` that equals, contains or lies inside one of the ``(label, path)`` inputs.

    Inputs that are not on disk (hub ids, ``tiny:`` specs, ``None``) are ignored: nothing there to destroy.
    """
    if output is None:
        return
    out = resolve_path(output)
    for label, path in inputs:
        if path is None or not os.path.lexists(os.path.expanduser(os.fspath(path))):
            continue
        inp = resolve_path(path)
        if out == inp:
            how = "is"
        elif out in inp.parents:
            how = "contains"
        elif inp in out.parents:
            how = "lies inside"
        else:
            continue
        raise StyleGRPOError(
            f"{option} {output} {how} the input {label} {path}; writing there could destroy it: "
            "choose an output outside every input"
        )


# -- the ownership mark -----------------------------------------------------------------------------
def is_marked(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` carries the mark of a folder this tool wrote."""
    return Path(folder, MARK_NAME).is_file()


def write_mark(folder: str | os.PathLike[str], command: str) -> None:
    """Mark ``folder`` as written by ``stylegrpo <command>`` (kept if it is already there)."""
    mark = Path(folder, MARK_NAME)
    if mark.is_file():
        return
    from . import __version__

    info = {"written_by": f"stylegrpo {command}".strip(), "version": __version__, "created": time.time()}
    mark.write_text(json.dumps(info) + "\n", encoding="utf-8")
    _apply_umask(mark, 0o666)


def _not_ours(out: Path) -> StyleGRPOError:
    return StyleGRPOError(
        f"{out}: exists, is not empty and was not written by stylegrpo (no {MARK_NAME}); refusing to replace "
        "it even with --overwrite; choose another output"
    )


def check_output_dir(
    out: str | os.PathLike[str], overwrite: bool = False, *, inputs: Inputs = (), option: str = "output"
) -> Path:
    """Refuse an output that is an input, or that exists non-empty (unless ``overwrite`` and ours)."""
    check_not_input(out, inputs, option=option)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StyleGRPOError(f"{out}: exists and is not a folder; choose another output path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise StyleGRPOError(
                f"{out}: output folder exists and is not empty; pass --overwrite or choose another"
            )
        if not is_marked(out):
            raise _not_ours(out)
    return out


def clear_output_dir(out: str | os.PathLike[str], command: str) -> None:
    """Empty an output folder this tool wrote (refuses one without the mark), keeping the mark."""
    out = Path(out)
    if not out.is_dir():
        return
    if any(out.iterdir()) and not is_marked(out):
        raise _not_ours(out)
    for child in out.iterdir():
        if child.name == MARK_NAME:
            continue
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    write_mark(out, command)


def is_wav_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a regular file that starts like a WAV file (``RIFF <size> WAVE``)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def check_output_wav(path: str | os.PathLike[str], overwrite: bool, *, option: str = "-o") -> None:
    """A single wav output: refused if it exists, unless ``overwrite`` and it is a WAV file.

    Files carry no mark, so the rule is the format: ``--overwrite`` replaces only a WAV file (what this tool
    writes), never another kind of file that happens to have the name.
    """
    p = Path(path)
    if p.is_dir():
        raise StyleGRPOError(f"{option} {p}: is a folder; give a .wav file path")
    if not os.path.lexists(p):
        return
    if not overwrite:
        raise StyleGRPOError(f"{option} {p}: exists; pass --overwrite or choose another {option}")
    if not is_wav_file(p):
        raise StyleGRPOError(
            f"{option} {p}: exists and is not a WAV file; --overwrite replaces only WAV files; choose another {option}"
        )


# -- umask ------------------------------------------------------------------------------------------
def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _apply_umask(path: str | os.PathLike[str], mode: int) -> None:
    os.chmod(path, mode & ~current_umask())


# -- the lock ---------------------------------------------------------------------------------------
def lock_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}{LOCK_SUFFIX}")


@contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of destination ``out`` (``.NAME.lock`` beside it); refuse if another process holds it.

    Nested use in the same process is fine. The lock is an ``flock`` (released by the kernel if the process
    dies, even by SIGKILL); the file is removed on release and holds the owner's process id.
    """
    key = resolve_path(out)
    if key in _HELD_LOCKS:
        _HELD_LOCKS[key] += 1
        try:
            yield
        finally:
            _HELD_LOCKS[key] -= 1
        return
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            owner = _read_pid(path)
            who = f"process {owner}" if owner else "another process"
            raise StyleGRPOError(
                f"{out}: {who} is writing this output right now (lock {path}); wait for it to finish or choose "
                "another output"
            ) from None
        try:  # the file we locked may have been removed by its previous owner meanwhile: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCKS[key] = 1
    try:
        yield
    finally:
        del _HELD_LOCKS[key]
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


# -- stale temporary folders ------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True unless process ``pid`` surely does not exist (a process of another user counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(out: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.NAME.tmp-PID-*`` / ``.NAME.old-PID*`` siblings of ``out`` left by processes that are dead."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    name = re.escape(out.name)
    pattern = re.compile(rf"^\.{name}(?:{re.escape(_TMP_INFIX)}(\d+)-.*|{re.escape(_OLD_INFIX)}(\d+))$")
    removed = []
    for p in out.parent.iterdir():
        m = pattern.match(p.name)
        pid = int(m.group(1) or m.group(2)) if m else 0
        if not m or pid == os.getpid() or pid_alive(pid):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted run (process %d)", p, pid)
        removed.append(p)
    return removed


# -- writing ----------------------------------------------------------------------------------------
@contextmanager
def atomic_output_dir(
    out: str | os.PathLike[str], overwrite: bool = False, *, command: str = "", inputs: Inputs = ()
) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out``, on error it is removed.

    Nothing is ever half-written at ``out``: a reader sees the old folder (or none) until the new one is
    complete. The old folder is removed only after the new one is fully written, and only if it is ours.
    The temporary folder is marked as written by ``stylegrpo <command>`` and gets the umask's permissions.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        out = check_output_dir(out, overwrite, inputs=inputs)
        sweep_stale(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_TMP_INFIX}{os.getpid()}-", dir=out.parent))
        try:
            _apply_umask(tmp, 0o777)
            write_mark(tmp, command)
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        try:
            if out.exists():
                old = out.with_name(f".{out.name}{_OLD_INFIX}{os.getpid()}")
                out.rename(old)
            tmp.rename(out)
        except BaseException:
            if old is not None and not out.exists():
                old.rename(out)  # put the previous output back
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    log.debug("wrote %s", out)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file via a temporary sibling and an atomic rename (with the umask's permissions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _apply_umask(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
