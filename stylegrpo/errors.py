"""The one exception family the CLI turns into a clear message and a non-zero exit."""


class StyleGRPOError(Exception):
    """A problem the user can fix (bad input, missing file, existing output). The message says what to do."""
