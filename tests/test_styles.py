"""The style catalog: validation errors name the file, style and field; `stylegrpo styles --check` exit codes."""

from __future__ import annotations

import textwrap

import pytest

from stylegrpo.cli import main
from stylegrpo.errors import StyleGRPOError
from stylegrpo.styles import (
    _STYLE_KEYS,
    STYLES_ENV,
    TARGET_FIELDS,
    CatalogError,
    PromptTemplate,
    UnknownStyleError,
    default_styles_path,
    load_catalog,
    parse_catalog,
)

GOOD = """
styles:
  - name: whispering
    phrase: a man whispering
    descriptions:
      - a man whispering
      - someone whispering softly
    targets:
      loudness_dbfs: [-45, -25]
  - name: child
    phrase: a young child speaking
    descriptions: [a young child speaking]
"""


def write(tmp_path, text: str, name: str = "styles.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def error(tmp_path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(CatalogError) as e:
        load_catalog(p)
    msg = str(e.value)
    assert msg.startswith(str(p)), msg  # every message names the file
    return msg


def test_good_catalog_and_lookup(tmp_path):
    cat = load_catalog(write(tmp_path, GOOD))
    assert cat.names == ["whispering", "child"] and len(cat) == 2 and "child" in cat
    assert cat.get("whispering").descriptions == ("a man whispering", "someone whispering softly")
    assert cat.get("whispering").targets == {"loudness_dbfs": (-45.0, -25.0)}
    assert cat.get("child").targets == {}
    assert cat.template == PromptTemplate()
    with pytest.raises(
        UnknownStyleError, match=r"unknown style 'pirate' in .*; known styles: whispering, child"
    ):
        cat.get("pirate")
    assert isinstance(UnknownStyleError("x"), StyleGRPOError)


def test_repo_catalog_is_valid(repo_styles):
    assert len(repo_styles) >= 10
    for style in repo_styles:
        assert style.descriptions and set(style.targets) <= set(TARGET_FIELDS)


def test_unknown_keys(tmp_path):
    assert "top level: unknown key(s) extra; allowed: prompt, styles" in error(tmp_path, GOOD + "extra: 1\n")
    msg = error(
        tmp_path,
        GOOD.replace("    phrase: a man whispering", "    phrase: a man whispering\n    colour: red"),
    )
    allowed = ", ".join(sorted(_STYLE_KEYS))  # every optional field (quality, classifier_labels, ...)
    assert f"style #1 'whispering': unknown key(s) colour; allowed: {allowed}" in msg
    assert {"name", "phrase", "descriptions", "targets", "quality", "classifier_labels"} <= _STYLE_KEYS
    msg = error(tmp_path, GOOD.replace("loudness_dbfs:", "loudness:"))
    assert "style #1 'whispering': targets: unknown key(s) loudness; allowed:" in msg
    assert "prompt: unknown key(s) system" in error(tmp_path, "prompt:\n  system: x\n" + GOOD)


def test_duplicate_names(tmp_path):
    msg = error(tmp_path, GOOD.replace("name: child", "name: whispering"))
    assert "style #2 'whispering': duplicate name (also style #1)" in msg


def test_empty_descriptions(tmp_path):
    msg = error(tmp_path, GOOD.replace("descriptions: [a young child speaking]", "descriptions: []"))
    assert "style #2 'child': field 'descriptions' must be a non-empty list of strings" in msg
    msg = error(tmp_path, GOOD.replace("      - someone whispering softly", "      - '  '"))
    assert "style #1 'whispering': field 'descriptions' item 2 is empty or not a string" in msg
    msg = error(tmp_path, GOOD.replace("    phrase: a young child speaking\n", ""))
    assert "style #2 'child': field 'phrase' must be a non-empty string" in msg


def test_bad_names_and_shapes(tmp_path):
    assert "field 'name' must be lower-case" in error(
        tmp_path, GOOD.replace("name: child", "name: Child Voice")
    )
    assert "'styles' must be a non-empty list" in error(tmp_path, "styles: []\n")
    assert "expected a mapping with a 'styles' list" in error(tmp_path, "- just a list\n")
    assert "style #1: each style must be a mapping" in error(tmp_path, "styles:\n  - whispering\n")


def test_template_placeholders(tmp_path):
    msg = error(tmp_path, 'prompt:\n  user: "Convert{style}: <|TEXT_UNDERSTANDING_START|>"\n' + GOOD)
    assert "prompt.user must contain {text}" in msg
    assert "prompt.user must contain {style}" in error(tmp_path, 'prompt:\n  user: "Say {text}"\n' + GOOD)
    assert "prompt.style must contain {description}" in error(
        tmp_path, 'prompt:\n  style: " styled"\n' + GOOD
    )
    assert "prompt.assistant must be a string" in error(tmp_path, "prompt:\n  assistant: 3\n" + GOOD)


def test_impossible_target_ranges(tmp_path):
    msg = error(tmp_path, GOOD.replace("[-45, -25]", "[-25, -45]"))
    assert "style #1 'whispering': targets.loudness_dbfs: min -25 is above max -45" in msg
    msg = error(tmp_path, GOOD.replace("loudness_dbfs: [-45, -25]", "voiced_fraction: [0.2, 1.5]"))
    assert "targets.voiced_fraction: [0.2, 1.5] is outside the possible range [0, 1] fraction" in msg
    msg = error(tmp_path, GOOD.replace("[-45, -25]", "[-45]"))
    assert "targets.loudness_dbfs must be [min, max] numbers (dBFS), got [-45]" in msg
    assert "must be [min, max] numbers" in error(tmp_path, GOOD.replace("[-45, -25]", "[true, 3]"))


def _line_of(text: str, needle: str) -> int:
    return next(i for i, s in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in s)


def test_bad_yaml_names_its_line(tmp_path):
    tab = GOOD.replace("  - name: child", "\t- name: child")
    msg = error(tmp_path, tab)
    assert f"styles.yaml:{_line_of(tab, 'name: child')}:1: invalid YAML: found character" in msg
    colon = GOOD.replace("phrase: a young child speaking", "phrase: a young: child speaking")
    msg = error(tmp_path, colon)
    assert (
        f"styles.yaml:{_line_of(colon, 'a young: child')}:" in msg and "mapping values are not allowed" in msg
    )
    # an unclosed bracket is noticed (and reported) where the file ends
    unclosed = GOOD.replace("[a young child speaking]", "[a young child speaking")
    msg = error(tmp_path, unclosed)
    assert f"styles.yaml:{len(textwrap.dedent(unclosed).splitlines()) + 1}:1: invalid YAML" in msg


def test_missing_file_and_default_lookup(tmp_path, monkeypatch):
    with pytest.raises(CatalogError, match=r"nope.yaml: styles file not found \(pass --styles FILE\)"):
        load_catalog(tmp_path / "nope.yaml")
    p = write(tmp_path, GOOD, "mine.yaml")
    monkeypatch.setenv(STYLES_ENV, str(p))
    assert default_styles_path() == p and load_catalog().names == ["whispering", "child"]
    monkeypatch.delenv(STYLES_ENV)
    monkeypatch.chdir(tmp_path)
    write(tmp_path, GOOD)
    assert default_styles_path() == tmp_path / "styles.yaml"


def test_utf8_bom_is_accepted(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(GOOD).encode())
    assert parse_catalog(p.read_text(encoding="utf-8-sig"), p).names == load_catalog(p).names


def test_styles_check_exit_codes(tmp_path, capsys, repo_styles):
    assert main(["styles", "--check", "--styles", str(repo_styles.path)]) == 0
    out = capsys.readouterr().out
    assert f"{repo_styles.path}: OK, {len(repo_styles)} styles: whispering" in out
    bad = write(tmp_path, GOOD.replace("name: child", "name: whispering"), "bad.yaml")
    assert main(["styles", "--check", "--styles", str(bad)]) == 2
    err = capsys.readouterr().err
    line = _line_of(GOOD, "name: child")
    assert err.startswith(f"stylegrpo styles: error: {bad}:{line}: style #2 'whispering': duplicate name")
    assert main(["styles", "--check", "--styles", str(tmp_path / "missing.yaml")]) == 2
    assert "styles file not found" in capsys.readouterr().err
    assert main(["styles", "--styles", str(repo_styles.path)]) == 0
    table = capsys.readouterr().out
    assert "whispering" in table and "robotic" in table


# --- line numbers, bounded YAML, values that would poison training (issue 9) ---------------------------


def test_semantic_errors_name_their_line(tmp_path):
    """The line of the offending key or item, as the README promises (`styles.yaml:42: style #3 ...`)."""
    text = GOOD.replace("      - someone whispering softly", "      - '  '")
    msg = error(tmp_path, text)
    line = _line_of(text, "- '  '")
    assert f"styles.yaml:{line}: style #1 'whispering': field 'descriptions' item 2 is empty" in msg
    text = GOOD.replace("[-45, -25]", "[-25, -45]")
    assert f"styles.yaml:{_line_of(text, 'loudness_dbfs')}: style #1 'whispering': targets.loudness_dbfs" in (
        error(tmp_path, text)
    )
    text = GOOD.replace("name: child", "name: Child")
    assert f"styles.yaml:{_line_of(text, 'name: Child')}: style #2 'Child': field 'name'" in error(
        tmp_path, text
    )
    text = GOOD.replace("    phrase: a man whispering", "    phrase: a man whispering\n    colour: red")
    assert f"styles.yaml:{_line_of(text, 'colour')}: style #1 'whispering': unknown key(s) colour" in (
        error(tmp_path, text)
    )
    text = GOOD.replace("descriptions: [a young child speaking]", "descriptions: []")
    assert f"styles.yaml:{_line_of(text, 'descriptions: []')}: style #2 'child'" in error(tmp_path, text)


def _bomb(levels: int = 9) -> str:
    lines = ["laughs:", "  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["name", "targets"])
def test_alias_bomb_is_refused_at_once_with_a_short_message(tmp_path, capsys, where):
    """Billion laughs: 9 aliases of 9 aliases... MemoryError after 28 s before; now refused after parsing."""
    body = GOOD.replace("name: child", "name: *l8") if where == "name" else GOOD.replace("[-45, -25]", "*l8")
    p = write(tmp_path, "x-laughs: &top\n" + _bomb().replace("laughs:\n", "") + body)
    # the bomb is hidden in an unknown key and used by a field: refused before any field is looked at
    rc = main(["styles", "--check", "--styles", str(p)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err) < 400, err
    assert f"{p}:" in err and "aliases (*name) expand to" in err and "write the values out" in err


def test_small_aliases_are_fine_and_recursive_ones_are_refused(tmp_path):
    text = GOOD.replace("[-45, -25]", "&quiet [-45, -25]").replace(
        "    descriptions: [a young child speaking]",
        "    descriptions: [a young child speaking]\n    targets: {loudness_dbfs: *quiet}",
    )
    assert load_catalog(write(tmp_path, text)).get("child").targets == {"loudness_dbfs": (-45.0, -25.0)}
    msg = error(tmp_path, GOOD.replace("descriptions: [a young child speaking]", "descriptions: &d [*d]"))
    assert "refers to the value that contains it" in msg


def test_long_values_are_quoted_short(tmp_path):
    msg = error(tmp_path, GOOD.replace("name: child", "name: " + "X" * 100_000))
    assert "field 'name' must be lower-case" in msg and len(msg) < 500
    msg = error(tmp_path, GOOD.replace("[-45, -25]", "[" + ", ".join(["1"] * 10_000) + "]"))
    assert "targets.loudness_dbfs must be [min, max] numbers" in msg and len(msg) < 500


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf", ".NaN"])
def test_nan_and_inf_targets_are_refused(tmp_path, bad):
    """A NaN bound passed every comparison, and then every clip scored NaN."""
    msg = error(tmp_path, GOOD.replace("[-45, -25]", f"[{bad}, -25]"))
    assert "targets.loudness_dbfs: [" in msg and "must be finite numbers (dBFS), not nan or inf" in msg


@pytest.mark.parametrize("placeholder", ["{text}", "{style}", "{description}"])
def test_placeholders_in_phrases_and_descriptions_are_refused(tmp_path, placeholder):
    text = GOOD.replace("phrase: a man whispering", f"phrase: 'a man whispering {placeholder}'")
    msg = error(tmp_path, text)
    assert f"styles.yaml:{_line_of(text, 'phrase:')}: style #1 'whispering': field 'phrase' holds" in msg
    assert placeholder in msg and "only the prompt template may use" in msg
    text = GOOD.replace("      - someone whispering softly", f"      - 'someone {placeholder} softly'")
    msg = error(tmp_path, text)
    assert f"field 'descriptions' item 2 holds the placeholder {placeholder}" in msg
    # other braces are just text
    assert load_catalog(write(tmp_path, GOOD.replace("a man whispering\n", "a man {quietly} whispering\n")))
