"""Style confusion matrices: rows are the style asked for, columns the style the judge heard (CLAP-nearest)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(true: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts ``[len(labels), len(labels)]``: ``m[i, j]`` = clips of style ``labels[i]`` heard as ``labels[j]``.

    Every label must be one of ``labels`` (a ValueError names the first one that is not).
    """
    if len(true) != len(predicted):
        raise ValueError(f"true and predicted labels differ in length ({len(true)} vs {len(predicted)})")
    index = {name: i for i, name in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be unique")
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, predicted, strict=True):
        for name in (t, p):
            if name not in index:
                raise ValueError(f"label {name!r} is not one of {', '.join(labels)}")
        m[index[t], index[p]] += 1
    return m


def row_normalize(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of a style's clips heard as each style); empty rows stay 0."""
    m = np.asarray(matrix, dtype=np.float64)
    totals = m.sum(axis=1, keepdims=True)
    return np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Diagonal share of each row (recall per true style); NaN for a style with no clips."""
    m = np.asarray(matrix, dtype=np.float64)
    totals = m.sum(axis=1)
    diag = np.diag(m)
    return np.divide(diag, totals, out=np.full_like(diag, np.nan), where=totals > 0)


def accuracy(matrix: np.ndarray) -> float:
    """Share of all clips on the diagonal (NaN when empty)."""
    m = np.asarray(matrix)
    total = m.sum()
    return float(np.trace(m) / total) if total else float("nan")


def most_confused(matrix: np.ndarray, labels: Sequence[str], top: int = 5) -> list[tuple[str, str, int]]:
    """The largest off-diagonal cells as (true, predicted, count), largest first, ties by label order."""
    m = np.asarray(matrix)
    cells = [
        (int(m[i, j]), i, j) for i in range(m.shape[0]) for j in range(m.shape[1]) if i != j and m[i, j] > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [(labels[i], labels[j], count) for count, i, j in cells[:top]]
