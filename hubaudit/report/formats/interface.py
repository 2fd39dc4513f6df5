"""The ReportFormat seam: every output format is one sibling class in this package."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from hubaudit.report.model import Report


class ReportFormat(ABC):
    """Render a :class:`Report` as text (the CLI writes it to stdout or, atomically, to ``-o FILE``)."""

    name: ClassVar[str]  # the --format value
    suffix: ClassVar[str]  # conventional file extension, for docs and default file names
    media_type: ClassVar[str]

    @abstractmethod
    def render(self, report: Report) -> str:
        """The whole document; ends with a newline."""
