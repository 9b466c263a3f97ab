"""The one exception family the CLI turns into a clear message and a non-zero exit, and how messages quote."""

from __future__ import annotations

import reprlib

QUOTE_CHARS = 60  # the most characters of a user's value any message quotes: a message stays one short line


class StyleGRPOError(Exception):
    """A problem the user can fix (bad input, missing file, existing output). The message says what to do."""


class _Repr(reprlib.Repr):
    def repr1(self, x: object, level: int) -> str:
        # reprlib falls back to the full builtin repr for unknown types: keep subclasses (the YAML
        # loader's line-tracking dicts and lists) on the bounded container paths
        for base, method in ((dict, self.repr_dict), (list, self.repr_list), (str, self.repr_str)):
            if isinstance(x, base) and type(x) is not base:
                return method(base(x) if base is str else x, level)
        return super().repr1(x, level)


_repr = _Repr()
_repr.maxstring = QUOTE_CHARS
_repr.maxother = QUOTE_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 4
_repr.maxlevel = 2


def quote(value: object) -> str:
    """``repr(value)``, bounded: long strings are cut in the middle, big or deep containers elided.

    Every message that shows a user's value goes through here, so no input (a 1 MB line, a YAML alias
    bomb) can make an error message itself huge.
    """
    return _repr.repr(value)


def clip(text: str, limit: int = QUOTE_CHARS * 2) -> str:
    """Plain text (e.g. a parser's own message) cut to ``limit`` characters, on one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
