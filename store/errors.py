"""Errors the store raises; each carries a message fit to show a user as is."""


class TunedeckError(Exception):
    """Base for every error tunedeck reports to a user without a traceback."""


class NotFound(TunedeckError):
    """A named or numbered thing does not exist."""


class AlreadyExists(TunedeckError):
    """A name is taken."""


class InvalidName(TunedeckError):
    """A user-supplied name cannot be used."""


class Refused(TunedeckError):
    """The request is valid but would lose data or break a rule; nothing was done."""


class IllegalTransition(TunedeckError):
    """A job status change that the job state machine does not allow."""


class SchemaError(TunedeckError):
    """The database's schema cannot be used by this version of tunedeck."""


def first_line(text: str, default: str = "") -> str:
    """The first non-blank line of `text`, stripped: a one-line reason from a multi-line message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), default)
