"""Compiled loops over the UTF-8 bytes of Arrow string arrays: one pass per job instead of several numpy
passes (numba, already a dependency of the pitch tracker; compiled on first use, cached on disk).

Each kernel is the exact equivalent of an Arrow/numpy formulation kept beside it in ``cleaning`` and
``prompts`` (and in ``tests/test_cleaning_equivalence.py``): same rows, same bytes.
"""

from __future__ import annotations

import numpy as np

# actions of the normalization table (one per Basic Multilingual Plane code point, see cleaning)
KEEP_CHAR, TO_SPACE, DROP, TO_QUOTE, TO_DQUOTE, TO_HYPHEN, TO_SPACED_HYPHEN = range(7)
BMP = 0x10000
FIELD_MAX = 0xFFFF  # bytes summed into 16-bit fields before they are flushed
_ASCII_OF = np.zeros(7, dtype=np.uint8)  # the character each one-character action writes
_ASCII_OF[[TO_QUOTE, TO_DQUOTE, TO_HYPHEN]] = [ord("'"), ord('"'), ord("-")]


def kernels():
    """The compiled functions (the ``_compiled`` module), compiled on first use and cached on disk."""
    from . import _compiled

    return _compiled
