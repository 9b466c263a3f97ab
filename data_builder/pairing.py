"""Held-out split by text, and pairing of texts with styles and descriptions, all streaming and seeded.

Split: each distinct text gets a seeded 64-bit hash ``u``. With a fraction ``f``, after every batch the
cumulative number of test texts is brought to round(f * texts so far) by taking the batch's texts with
the smallest ``u``: exact overall, spread evenly over the corpus, O(batch) memory. With a count ``k``,
the ``k`` texts with the smallest ``u`` over the whole corpus are held back (a bottom-k sketch: a text is
released to train as soon as k smaller ones are seen), so memory is O(k). Either way a text lives in one
split only, so pairing it with several styles (``cross``) can never leak it into both.

Pairing (per split, so each split is balanced on its own): ``balanced`` walks through random
permutations of the styles (counts differ by at most one), ``cross`` gives every text every style,
``random`` draws a style uniformly per text. Each item's description is drawn from its style's
``descriptions`` the same way as balanced styles: every paraphrase is used equally often.
"""

from __future__ import annotations

import numpy as np

from stylegrpo.errors import StyleGRPOError

PAIRINGS = ("balanced", "cross", "random")
SPLITS = ("train", "test")
_STREAM_STYLE, _STREAM_DESC, _STREAM_RANDOM = 1, 2, 3  # independent RNG streams per purpose


def parse_test_size(value: str | float | int) -> float | int:
    """'0.1' -> fraction 0.1; '200' -> count 200; '0' -> no test split."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StyleGRPOError(
            f"--test-size: expected a fraction in [0, 1) or a count, got {value!r}"
        ) from None
    if number < 0 or np.isnan(number):
        raise StyleGRPOError(f"--test-size must not be negative, got {value!r}")
    if number < 1:
        return float(number)
    if number != int(number):
        raise StyleGRPOError(f"--test-size: a count must be a whole number, got {value!r}")
    return int(number)


class FractionSplitter:
    """Exact fraction of texts to test, chosen by seeded hash within each batch (see module docstring)."""

    def __init__(self, fraction: float):
        self.fraction = fraction
        self.seen = 0
        self.test = 0

    def assign(self, u: np.ndarray, last: bool) -> np.ndarray:
        """Boolean mask: which texts of this batch go to test."""
        n = len(u)
        self.seen += n
        target = int(np.floor(self.fraction * self.seen + 0.5))
        if last and self.fraction > 0:
            if target == 0 and self.seen >= 2:
                target = 1  # a requested test split is never empty when there is text to spare
            target = min(target, self.seen - 1)  # and never takes the whole corpus
        k = int(np.clip(target - self.test, 0, n))
        self.test += k
        return smallest(u, k)


def smallest(u: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` smallest values of ``u``, ties going to the earlier index: the first ``k``
    of ``np.argsort(u, kind="stable")``, found by selection in O(n) instead of a sort."""
    mask = np.zeros(len(u), dtype=bool)
    if k >= len(u):
        mask[:] = True
    elif k > 0:
        cut = np.partition(u, k - 1)[k - 1]
        mask = u < cut
        mask[np.flatnonzero(u == cut)[: k - int(mask.sum())]] = True
    return mask


class CountSplitter:
    """The ``k`` texts with the smallest seeded hash go to test (bottom-k); the rest stream to train."""

    def __init__(self, count: int):
        self.count = count

    def select(self, u: np.ndarray) -> np.ndarray:
        """Indices (into ``u``) of the texts that stay held: the ``count`` smallest."""
        if len(u) <= self.count:
            return np.arange(len(u))
        return np.sort(np.argsort(u, kind="stable")[: self.count])


class CyclingSampler:
    """Draws from range(n) by walking through seeded random permutations: counts differ by at most one."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n = n
        self.rng = rng
        self._buf = np.zeros(0, dtype=np.int64)

    def take(self, m: int) -> np.ndarray:
        if m > len(self._buf):
            rounds = (m - len(self._buf)) // self.n + 1
            perms = np.argsort(self.rng.random((rounds, self.n)), axis=1).ravel()
            self._buf = np.concatenate([self._buf, perms])
        out, self._buf = self._buf[:m], self._buf[m:]
        return out


class Pairer:
    """Assigns (style, description) to the texts of one split, batch after batch."""

    def __init__(self, mode: str, description_counts: list[int], seed: int, split: str):
        if mode not in PAIRINGS:
            raise StyleGRPOError(f"unknown pairing {mode!r}; choose one of {', '.join(PAIRINGS)}")
        self.mode = mode
        self.n_styles = len(description_counts)
        split_id = SPLITS.index(split)
        self._styles = CyclingSampler(self.n_styles, np.random.default_rng([seed, split_id, _STREAM_STYLE]))
        self._random = np.random.default_rng([seed, split_id, _STREAM_RANDOM])
        self._descs = [
            CyclingSampler(n, np.random.default_rng([seed, split_id, _STREAM_DESC, s]))
            for s, n in enumerate(description_counts)
        ]

    def pair(self, n_texts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text index, style index, description index within the style) for each output row."""
        if self.mode == "cross":
            text = np.repeat(np.arange(n_texts), self.n_styles)
            style = np.tile(np.arange(self.n_styles), n_texts)
        else:
            text = np.arange(n_texts)
            if self.mode == "balanced":
                style = self._styles.take(n_texts)
            else:
                style = self._random.integers(0, self.n_styles, size=n_texts)
        desc = np.zeros(len(style), dtype=np.int64)
        # each style's rows in row order (a stable radix sort of the small style indices)
        order = np.argsort(style.astype(np.uint8 if self.n_styles <= 256 else np.int64), kind="stable")
        counts = np.bincount(style, minlength=self.n_styles)
        for s, (lo, count) in enumerate(
            zip((np.cumsum(counts) - counts).tolist(), counts.tolist(), strict=True)
        ):
            if count:
                desc[order[lo : lo + count]] = self._descs[s].take(count)
        return text, style.astype(np.int64), desc
