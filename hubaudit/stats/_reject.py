"""The one exception the stats stage uses internally; ``scan_path`` turns it into a result value."""

from __future__ import annotations

from hubaudit.vocab import ScanStatus


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace (hostile names may hold newlines) and truncate, so a reason is one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def show_name(name: str, limit: int = 80) -> str:
    """A tensor or file name as it may appear in a message: repr'd (no control chars), truncated."""
    shown = repr(name)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


class Rejected(Exception):
    """An adapter that cannot be scored: ``status`` is ``error`` (malformed) or ``unsupported``."""

    def __init__(self, reason: str, status: ScanStatus = ScanStatus.ERROR) -> None:
        super().__init__(one_line(reason))
        self.reason = one_line(reason)
        self.status = status
