"""Writing outputs whole or not at all: work in a temporary sibling folder, rename into place at the end."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StyleGRPOError

log = logging.getLogger(__name__)


def check_output_dir(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse an existing, non-empty output folder unless ``overwrite``; return the path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StyleGRPOError(f"{out}: exists and is not a folder; choose another output path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise StyleGRPOError(
            f"{out}: output folder exists and is not empty; pass --overwrite or choose another"
        )
    return out


@contextmanager
def atomic_output_dir(out: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``out``; on success it replaces ``out``, on error it is removed.

    Nothing is ever half-written at ``out``: a reader sees the old folder (or none) until the new one is
    complete. The old folder is removed only after the new one is fully written.
    """
    out = check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.debug("wrote %s", out)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file via a temporary sibling and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
