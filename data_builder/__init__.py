"""Text corpora + the style catalog -> a prompt dataset for stylegrpo (``stylegrpo build``).

Library use::

    from stylegrpo.data_builder import BuildConfig, build_dataset
    result = build_dataset(BuildConfig(out=Path("data/prompts"), corpora=["my_corpus.txt"]))
"""

from .build import BuildConfig, BuildResult, build_dataset, push_to_hub, select_styles
from .cleaning import CleanOptions
from .corpora import ReadOptions, default_corpus_path

__all__ = [
    "BuildConfig",
    "BuildResult",
    "CleanOptions",
    "ReadOptions",
    "build_dataset",
    "default_corpus_path",
    "push_to_hub",
    "select_styles",
]
