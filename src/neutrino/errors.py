"""The one error hierarchy of neutrino.

Every layer raises these; the API maps them to Neutron's error body and status, the CLI prints
them as one line and exits non-zero. Nothing else in the library calls ``sys.exit``.
"""

from __future__ import annotations


class NeutrinoError(Exception):
    """Base of every error neutrino raises on purpose.

    ``neutron_type`` is the exception class name Neutron itself would report for this error
    (``NetworkNotFound``, ``IpAddressGenerationFailure``...); the API puts it in the
    ``NeutronError`` body. ``None`` lets the API pick a generic name for the class.
    """

    neutron_type: str | None = None

    def __init__(self, *args: object, neutron_type: str | None = None) -> None:
        super().__init__(*args)
        if neutron_type is not None:
            self.neutron_type = neutron_type


class NotFound(NeutrinoError):
    """A named object does not exist."""


class Conflict(NeutrinoError):
    """The request conflicts with the current state (in use, duplicate, exhausted)."""


class InvalidInput(NeutrinoError):
    """The request or input is malformed or out of range."""


class NotAuthenticated(NeutrinoError):
    """No valid credentials or token (HTTP 401)."""


class NotAuthorized(NeutrinoError):
    """The caller is known but may not do this (HTTP 403)."""


class PreconditionFailed(Conflict):
    """A revision constraint (``If-Match: revision_number=N``) does not hold (HTTP 412)."""


class ParseError(InvalidInput):
    """Text in one of the tools' languages could not be read.

    ``source`` names the file (or ``<string>``), ``line`` is 1-based, ``expected`` says what the
    parser wanted to see. ``str()`` gives the one-line message the CLI prints.
    """

    def __init__(self, expected: str, *, text: str = "", line: int = 0, source: str = "<string>") -> None:
        self.expected = expected
        self.text = text
        self.line = line
        self.source = source
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.source if not self.line else f"{self.source}:{self.line}"
        got = f": {self.text.strip()[:80]!r}" if self.text.strip() else ""
        return f"{where}: expected {self.expected}{got}"

    def located(self, source: str, line_offset: int = 0) -> ParseError:
        """The same error, placed in ``source`` with its line shifted by ``line_offset``."""
        return ParseError(self.expected, text=self.text, line=self.line + line_offset if self.line else 0,
                          source=source)


class PlanError(NeutrinoError):
    """A planner cannot produce a host state from the cloud it was given."""


class ApplyError(NeutrinoError):
    """A realizer failed to apply a plan."""


class ConvergenceTimeout(NeutrinoError):
    """A condition awaited with a timeout did not come true in time."""
