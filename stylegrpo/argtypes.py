"""argparse types shared by the subcommands: a bad number is refused by the parser, before anything runs."""

from __future__ import annotations

import argparse
import math

from .errors import quote

MAX_SEED = (
    2**32 - 1
)  # numpy's RandomState.seed accepts 0 .. 2**32 - 1; torch and random accept that range too


def seed(value: str) -> int:
    """A sampling / shuffling seed: an integer in [0, MAX_SEED]."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(value)} is not an integer") from None
    if not 0 <= n <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{n} is out of range: a seed is an integer from 0 to {MAX_SEED}")
    return n


def seconds(value: str) -> float:
    """A duration in seconds (``--max-seconds``): a finite number above 0 (nan and inf are refused)."""
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(value)} is not a number of seconds") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(
            f"{quote(value)} is not a duration: give a number of seconds above 0"
        )
    return x


def count(value: str) -> int:
    """A number of things (``--batch-size``, ``--n-per-style``, ``--synthesize``): an integer of at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{quote(value)} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is too small: give an integer of at least 1")
    return n
