"""Tiny twins of every model: the real transformers class, random weights, built offline.

A model spec is either a hub id / local folder (real models, loaded with ``from_pretrained``) or
``tiny:KIND``. ``resolve_model(spec)`` turns ``tiny:KIND`` into a local folder: the first time, the
model's own ``build_tiny(folder)`` constructs it from its transformers class with a fixed seed and saves
it with ``save_pretrained``; later calls reuse the folder. After that, real and tiny models go through
exactly the same loading code. Numbers from tiny models prove plumbing and learning mechanics, never
speech or style quality.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import StyleGRPOError

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny:"
CACHE_ENV = "STYLEGRPO_CACHE"  # where tiny models are kept (default ~/.cache/stylegrpo)
TINY_VERSION = "v1"  # bump when a builder changes, so stale tiny folders are rebuilt
TINY_SEED = 1234  # every tiny model is built from this seed: the same weights on every machine

# kind -> "module:function" that writes the tiny model (weights, config, tokenizer/processor) to a folder
TINY_BUILDERS: dict[str, str] = {
    "llasa": "stylegrpo.llasa:build_tiny",
    "xcodec2": "stylegrpo.codec:build_tiny",
    "clap": "stylegrpo.scorers.clap:build_tiny",
    "parakeet": "stylegrpo.scorers.asr:build_tiny",
    "parakeet-nemo": "stylegrpo.scorers.asr:build_tiny_nemo",
    "whisper": "stylegrpo.scorers.whisper_nll:build_tiny",
    "wavlm-sv": "stylegrpo.scorers.speaker:build_tiny",
    "ast": "stylegrpo.scorers.ast_classifier:build_tiny",
}


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "stylegrpo")


def is_tiny(spec: str) -> bool:
    return spec.startswith(TINY_PREFIX)


def resolve_model(spec: str) -> str:
    """A hub id or folder for ``from_pretrained``: ``tiny:KIND`` is built once into the cache."""
    if not is_tiny(spec):
        return spec
    kind = spec[len(TINY_PREFIX) :]
    if kind not in TINY_BUILDERS:
        raise StyleGRPOError(
            f"unknown tiny model {spec!r}; known: {', '.join(TINY_PREFIX + k for k in TINY_BUILDERS)}"
        )
    folder = cache_dir() / "tiny" / f"{kind}-{TINY_VERSION}"
    if (folder / ".complete").exists():
        return str(folder)
    module, func = TINY_BUILDERS[kind].split(":")
    build = getattr(importlib.import_module(module), func)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            build(tmp)
        (tmp / ".complete").write_text("built by stylegrpo.tiny with random weights\n")
        if folder.exists():  # an incomplete leftover, or a concurrent build that won the race
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built tiny %s model (random weights) in %s", kind, folder)
    return str(folder)
