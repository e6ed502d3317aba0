"""How an audit fails: :class:`AuditError` (rerun to resume), the crash tests inject into a worker, and the
line of a worker's error that a user should read."""

from __future__ import annotations

import re

from ..errors import SensmapError


class AuditError(SensmapError):
    """The audit stopped before the end (a worker died, an injected crash…); rerun it to resume."""


class _InjectedCrash(RuntimeError):
    pass


# A worker's exception reaches the driver as Ray's text, whose last lines name it by module path.
_CRASH_NAME = re.escape(f"{_InjectedCrash.__module__}.{_InjectedCrash.__qualname__}")
_OWN_ERROR = re.compile(rf"(?:sensmap\.errors\.\w+|{_CRASH_NAME}|ModelError|WeightsError): (.+)")


def _first_line(exc: BaseException) -> str:
    """The message that matters in a Ray error: sensmap's own error when a worker raised one, else the first line."""
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        found = _OWN_ERROR.search(line)
        if found:
            return found.group(1).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
