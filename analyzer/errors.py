"""Errors that end a run with a one-line message (never a traceback)."""


class AnalyzerError(Exception):
    """Base for errors reported to the user as one line."""

    exit_code = 1


class InputError(AnalyzerError):
    """An input file or stream that cannot be read as a capture."""

    exit_code = 3


class ConfigError(AnalyzerError):
    """A configuration file that cannot be used."""

    exit_code = 2


class OutputError(AnalyzerError):
    """An output directory or file that cannot be written."""

    exit_code = 4
