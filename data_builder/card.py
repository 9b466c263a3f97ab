"""The dataset card (README.md): loading config for ``datasets``, counts, lengths, drops, the command."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from stylegrpo import __version__
from stylegrpo.styles import Catalog

from .cleaning import CHARS_PER_SECOND, LLASA_MAX_TOKENS, REASONS, worst_case_tokens
from .corpora import ReadOptions
from .writer import SCHEMA, SPEAKER_SCHEMA, split_file

if TYPE_CHECKING:
    from .build import BuildConfig, BuildResult

CARD_NAME = "README.md"
_COLUMN_DOCS = {
    "prompt": "chat messages `[user, assistant]` from `PromptTemplate.render(text, description)`; render with "
    "`tokenizer.apply_chat_template(prompt, continue_final_message=True)` (TRL does this for conversational data)",
    "text": "the words to speak, as cleaned (the reference of the intelligibility rewards)",
    "style": "style name in the catalog",
    "description": "the style paraphrase in this prompt (the reference of the style reward)",
    "source": "the corpus the text came from",
    "line": "1-based line (text files) or row (tables, datasets) in that corpus; for paragraphs, where it starts",
    "reference_text": "(`--speakers`) the words spoken in the row's reference clip; empty: no reference voice",
    "reference_codes": "(`--speakers`) the reference clip's XCodec2 codes (the voice the prompt continues in)",
    "speaker_id": "(`--speakers`) who speaks in the reference clip; test rows use held-out speakers",
}


def command_line(config: BuildConfig) -> str:
    """The `stylegrpo build` command that reproduces ``config``, every option spelled out."""
    args = ["stylegrpo", "build"]
    for c in config.corpora:
        args += ["--corpus", c]
    if config.styles:
        args += ["--styles", str(config.styles)]
    if config.styles_subset:
        args += ["--styles-subset", ",".join(config.styles_subset)]
    args += ["--out", str(config.out), "--pairing", config.pairing]
    if config.test_pairing:
        args += ["--test-pairing", config.test_pairing]
    args += ["--test-size", str(config.test_size), "--seed", str(config.seed)]
    r: ReadOptions = config.read
    if r.column:
        args += ["--column", r.column]
    if r.split != ReadOptions.split:
        args += ["--split", r.split]
    if r.hf_config:
        args += ["--hf-config", r.hf_config]
    args += ["--text-mode", r.text_mode]
    c = config.clean
    args += ["--min-chars", str(c.min_chars), "--max-chars", str(c.max_chars)]
    args += ["--min-words", str(c.min_words), "--max-words", str(c.max_words)]
    args += ["--min-letter-fraction", f"{c.min_letter_fraction:g}"]
    if config.max_texts:
        args += ["--max-texts", str(config.max_texts)]
    if r.strict:
        args.append("--strict")
    if getattr(config, "speakers", None):
        args += ["--speakers", str(config.speakers), "--test-speakers", f"{config.test_speakers:g}"]
        if config.codec:
            args += ["--codec", config.codec]
    return shlex.join(args)


def _table(header: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(out)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}".rstrip("0").rstrip(".")


# the Hub's size buckets (its `size_categories` values): upper bounds in rows
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]
EMBEDDED_CORPUS_LANGUAGE = "en"  # the embedded corpus: original English sentences
EMBEDDED_CORPUS_LICENSE = "apache-2.0"  # written for stylegrpo, under its license


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>100M")


def hub_data_meta(folder: Path, splits: list[str]) -> dict[str, object]:
    """``configs`` (the data files of each split) and ``dataset_info`` (features, rows and bytes per split) of
    the written parquet files, as the Hub and ``datasets.load_dataset`` read them.

    ``dataset_info`` is not only for display: with declared ``configs``, ``datasets`` caches a local folder
    under a key made of the card's metadata, not of the files' dates, so the row counts and byte sizes here
    are what makes a rebuilt folder load its new rows (tests/test_cards.py rebuilds and reloads).
    """
    import pyarrow.parquet as pq
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    infos, files, schema = SplitDict(), [], None
    download = 0
    for split in splits:
        path = folder / split_file(split)
        meta = pq.ParquetFile(path).metadata
        schema = schema or pq.read_schema(path)
        nbytes = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        infos.add(SplitInfo(name=split, num_bytes=nbytes, num_examples=meta.num_rows))
        files.append({"split": split, "path": split_file(split)})
        download += path.stat().st_size
    info = DatasetInfo(
        features=Features.from_arrow_schema(schema),
        splits=infos,
        download_size=download,
        dataset_size=sum(i.num_bytes for i in infos.values()),
    )
    card_data = DatasetCardData()
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    return {
        "configs": [{"config_name": "default", "data_files": files}],
        "dataset_info": card_data["dataset_info"],
    }


def render_card(
    config: BuildConfig, catalog: Catalog, result: BuildResult, data_meta: dict[str, object] | None = None
) -> str:
    """``data_meta``: :func:`hub_data_meta` of the written files (``write_card`` passes it)."""
    splits = result.splits
    embedded = not config.corpora  # the embedded corpus alone: its language and license are known
    meta = {
        "task_categories": ["text-to-speech"],
        **({"language": [EMBEDDED_CORPUS_LANGUAGE], "license": EMBEDDED_CORPUS_LICENSE} if embedded else {}),
        "size_categories": [size_category(sum(s.rows for s in splits.values()))],
        "pretty_name": "stylegrpo prompt dataset",
        "tags": ["stylegrpo", "llasa", "grpo", "speaking-style"],
        **(data_meta or {}),
    }
    parts = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", ""]
    total_rows = sum(s.rows for s in splits.values())
    total_texts = sum(s.texts for s in splits.values())
    parts += [
        "# stylegrpo prompt dataset",
        "",
        f"{total_rows} GRPO prompts for teaching a Llasa text-to-speech model {len(result.styles)} speaking styles "
        f"with one LoRA (stylegrpo), built from {total_texts} distinct texts. Each row asks "
        "Llasa to speak `text` in the style of `description`; the style reward judges the audio against that "
        "same description. Split by text: no text is in more than one split.",
        "",
        "```python",
        "from datasets import load_dataset",
        f"ds = load_dataset({str(config.out)!r})  # this folder, or its hub repo: a DatasetDict with "
        + ", ".join(splits),
        "```",
        "",
        "## Columns",
        "",
        _table(
            ["column", "type", "meaning"],
            [
                [f.name, f"`{f.type}`", _COLUMN_DOCS[f.name]]
                for f in (SPEAKER_SCHEMA if getattr(config, "speakers", None) else SCHEMA)
            ],
        ),
        "",
        "## Rows per style and split",
        "",
        f"Pairing: `{config.pairing}`"
        + (
            f" (test: `{config.test_pairing}`)"
            if config.test_pairing and config.test_pairing != config.pairing
            else ""
        )
        + f", seed {config.seed}, test size {config.test_size}.",
        "",
    ]
    names = result.styles
    header = ["style"] + list(splits)
    rows = [[n] + [int(s.style_rows[i]) for s in splits.values()] for i, n in enumerate(names)]
    rows.append(["**rows**"] + [s.rows for s in splits.values()])
    rows.append(["**texts**"] + [s.texts for s in splits.values()])
    parts += [_table(header, rows), ""]

    parts += [
        "## Lengths",
        "",
        f"Per distinct text. Seconds are estimated at a normal reading rate ({CHARS_PER_SECOND:g} characters/s, "
        "~150 words/min); slow styles take ~1.4x longer. The length limits keep the slowest style's longest item "
        f"under ~{worst_case_tokens(config.clean.max_chars)} tokens of Llasa's {LLASA_MAX_TOKENS}.",
        "",
    ]
    len_rows = []
    for k, s in splits.items():
        stats = s.lengths()
        for what in ("chars", "words", "seconds"):
            d = stats[what]
            len_rows.append([k, what] + [_fmt(d.get(q)) for q in ("min", "mean", "p50", "p95", "max")])
    parts += [_table(["split", "measure", "min", "mean", "median", "p95", "max"], len_rows), ""]

    c = config.clean
    parts += [
        "## Cleaning",
        "",
        "Each text was normalized (Unicode NFKC; curly quotes and dashes made straight; control, zero-width and "
        "format characters removed; whitespace collapsed to single spaces), then dropped for the first reason "
        f"that applies. Limits: {c.min_chars}-{c.max_chars} characters, {c.min_words}-{c.max_words} words, "
        f"letter fraction >= {c.min_letter_fraction:g}. De-duplication is exact, after normalization.",
        "",
    ]
    drop_rows = [[r, result.drops.get(r, 0), _escape(REASONS[r])] for r in REASONS if result.drops.get(r, 0)]
    kept = total_texts
    parts += [
        _table(
            ["reason", "dropped", "meaning"],
            drop_rows + [["**kept**", kept, "distinct texts in the dataset"]],
        ),
        "",
    ]
    if result.examples:
        parts += ["<details><summary>Examples of dropped lines</summary>", ""]
        for reason in REASONS:
            for ex in result.examples.get(reason, []):
                parts.append(f"- `{reason}` {_escape(ex)}")
        parts += ["", "</details>", ""]

    parts += ["## Sources", ""]
    src_rows = [
        [_escape(r.label), r.kind, _escape(r.detail or "-"), r.records, r.kept, sum(r.drops.values())]
        for r in result.sources
    ]
    parts += [_table(["source", "format", "read as", "records", "kept", "dropped"], src_rows), ""]

    parts += ["## Styles", ""]
    cat_path = catalog.path
    digest = (
        hashlib.sha256(Path(cat_path).read_bytes()).hexdigest()[:16]
        if cat_path and Path(cat_path).is_file()
        else "-"
    )
    parts += [f"Catalog: `{cat_path}` (sha256 {digest}...).", ""]
    style_rows = [[s.name, "; ".join(s.descriptions)] for s in catalog.styles if s.name in names]
    parts += [_table(["style", "descriptions (one drawn per item, each equally often)"], style_rows), ""]

    parts += [
        "## Reproduce",
        "",
        "```bash",
        config.command or command_line(config),
        "```",
        "",
        f"Built with stylegrpo {__version__}. The same corpora, catalog, options and seed give identical files.",
        "",
        "## Train on it",
        "",
        "```bash",
        train_command(config),
        "```",
        "",
    ]
    if not embedded:
        parts += [
            "Language and license are not declared in this card's metadata: the corpora are yours. Add "
            "`language:` and `license:` to the YAML header before pushing it to the Hub.",
            "",
        ]
    return "\n".join(parts)


TRAIN_RECIPE = "llasa-1b-24gb"  # the bundled recipe for one 24 GB GPU (stylegrpo train --list-recipes)


def train_command(config: BuildConfig) -> str:
    """The `stylegrpo train` command that trains on this dataset (with the catalog it was built with)."""
    args = ["stylegrpo", "train", "--config", TRAIN_RECIPE, "--dataset_path", str(config.out)]
    if config.styles:
        args += ["--styles", str(config.styles)]
    return shlex.join([*args, "--output-dir", f"runs/{Path(config.out).name}"])


def _escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def write_card(folder: Path, config: BuildConfig, catalog: Catalog, result: BuildResult) -> Path:
    path = folder / CARD_NAME
    text = render_card(config, catalog, result, hub_data_meta(folder, list(result.splits)))
    path.write_text(text, encoding="utf-8")
    return path
