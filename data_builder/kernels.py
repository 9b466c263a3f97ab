"""Compiled loops over the UTF-8 bytes of Arrow string arrays: one pass per job instead of several numpy
passes (numba, already a dependency of the pitch tracker; compiled on first use, cached on disk).

Each kernel is tested to give exactly what a direct formulation gives: the Arrow/numpy passes and regexes
(``tests/test_cleaning_equivalence.py``), Arrow's take, pandas' hashes, ``PromptTemplate.render`` row by
row (``tests/test_data_builder_units.py``): same rows, same bytes.
"""

from __future__ import annotations

import functools
import gc

import numpy as np

# actions of the normalization table (one per Basic Multilingual Plane code point, see cleaning)
KEEP_CHAR, TO_SPACE, DROP, TO_QUOTE, TO_DQUOTE, TO_HYPHEN, TO_SPACED_HYPHEN = range(7)
BMP = 0x10000
FIELD_MAX = 0xFFFF  # bytes summed into 16-bit fields before they are flushed
FAST_ROW_MAX = 0xFFF  # longest printable-ASCII row counted in 12-bit fields while rewritten (5 fields)
_ASCII_OF = np.zeros(7, dtype=np.uint8)  # the character each one-character action writes
_ASCII_OF[[TO_QUOTE, TO_DQUOTE, TO_HYPHEN]] = [ord("'"), ord('"'), ord("-")]


@functools.cache
def kernels():
    """The compiled functions (the ``_compiled`` module), compiled on first use and cached on disk.

    The first call of any numba function, even one loaded from the disk cache, builds numba's typing and
    lowering registries (~0.2 s of CPU, once per process); it is made here with the cyclic garbage
    collector paused, which would otherwise scan the whole heap several times meanwhile (~0.05 s)."""
    from . import _compiled

    paused = gc.isenabled()
    gc.disable()
    try:  # the types of the reader's call: one compiled signature
        _compiled.without(np.frombuffer(b"a\n", dtype=np.uint8), np.ones(1, dtype=np.int64))
    finally:
        if paused:
            gc.enable()
    return _compiled
