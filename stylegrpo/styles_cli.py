"""``stylegrpo styles``: show the catalog as a table, or ``--check`` it."""

from __future__ import annotations

import argparse

from .styles import TARGET_FIELDS, Catalog, load_catalog


def add_styles_argument(parser: argparse.ArgumentParser) -> None:
    """The one ``--styles FILE`` option, shared by every subcommand that reads the catalog."""
    parser.add_argument(
        "--styles",
        metavar="FILE",
        default=None,
        help="style catalog (default: $STYLEGRPO_STYLES, ./styles.yaml, or the bundled one)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_styles_argument(parser)
    parser.add_argument("--check", action="store_true", help="only validate; exit non-zero on an error")


def format_targets(targets: dict[str, tuple[float, float]]) -> str:
    return "\n".join(f"{k} {lo:g}..{hi:g} {TARGET_FIELDS[k][0]}" for k, (lo, hi) in targets.items()) or "-"


def print_table(catalog: Catalog) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(catalog)} styles in {catalog.path}", show_lines=False)
    # a style's name is what users type (--style NAME): never cut it; long target names fold, never end in "…"
    table.add_column(
        "style", style="bold", no_wrap=True, min_width=max((len(n) for n in catalog.names), default=5)
    )
    table.add_column("phrase (used by `say`)")
    table.add_column("descr.", justify="right")  # how many descriptions (paraphrases) the style has
    table.add_column("acoustic targets", overflow="fold")
    table.add_column(
        "identity"
    )  # identity: true: it names who speaks (a reference speaker's voice contradicts it)
    table.add_column("AudioSet labels", overflow="fold")  # classifier_labels: what the ast judge listens for
    for s in catalog:
        identity = "yes" if s.identity else ""
        labels = "\n".join(s.classifier_labels) or "-"
        table.add_row(
            s.name, s.phrase, str(len(s.descriptions)), format_targets(dict(s.targets)), identity, labels
        )
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    catalog = load_catalog(args.styles)
    if args.check:
        print(f"{catalog.path}: OK, {len(catalog)} styles: {', '.join(catalog.names)}")
        return 0
    print_table(catalog)
    return 0
