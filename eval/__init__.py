"""Evaluation per style: base vs adapter, bootstrap intervals, confusion matrices, and an HTML report.

``stylegrpo eval`` (see :mod:`eval.cli`) synthesizes held-out texts in every style with the base model
and the adapter, scores each clip with the same judges the rewards use, and writes metrics, clips, plots
and ``report.html`` (see :mod:`eval.run` for the folder layout and resuming).
"""
