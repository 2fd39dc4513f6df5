"""Flow ``ingest``: scan local adapters (directories or weight files) into the store.

Each input becomes adapter ``local:<absolute path>`` of the given base, with revision sha =
the sha256 of its weights file (for inputs the scanner cannot read: of whatever files are
there, or of the path itself). Recording is idempotent on (repo_id, sha): ingesting the same
content twice updates one row. Per-input failures are recorded as revisions with a status and a
reason code and never stop the batch.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubaudit.models import ScanResult
from hubaudit.store import Store

LOCAL_PREFIX = "local:"
_HASH_CHUNK = 1 << 20
_MAX_HASHED_FILES = 64  # a directory of an unreadable "adapter" may be anything; hash its listing beyond this


@dataclass
class IngestItem:
    """What happened to one input."""

    path: str
    repo_id: str
    sha: str
    status: str  # revision status: scored | unsupported | error
    reason: str | None
    error: str | None
    score: float | None
    stratum: str | None
    revision_id: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class IngestSummary:
    """All items of one ingest run plus counts per status."""

    base: str
    items: list[IngestItem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(i.status for i in self.items)
        return {"inputs": len(self.items), **{k: c.get(k, 0) for k in ("scored", "unsupported", "error")}}

    @property
    def all_scored(self) -> bool:
        return all(i.status == "scored" for i in self.items)


def local_repo_id(path: Path) -> str:
    """``local:<absolute path>`` of an ingested or checked input. Path bytes that are not UTF-8 (they
    arrive as surrogate escapes) are written as ``\\xNN``: the store holds UTF-8 text only."""
    return LOCAL_PREFIX + os.fsencode(path).decode("utf-8", "backslashreplace")


def reason_code(scan: ScanResult) -> str | None:
    """A short machine reason for a scan that did not score (store contract reason codes)."""
    if scan.status == "ok":
        return None
    text = (scan.error or "").lower()
    if text.startswith(("no adapter_model", "no such file")) or text.endswith("is missing"):
        return "no_adapter_files"
    if "pickle" in text:
        return "pickle_format"
    if "over the" in text and "cap" in text:
        return "oversize"
    if scan.status == "unsupported":
        return "unsupported_peft_type" if scan.peft_type and scan.peft_type.upper() != "LORA" else "unsupported"
    return "malformed"


def _file_sha(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def file_digests(path: Path) -> list[dict[str, Any]]:
    """[{"name", "size", "sha256"}] of the input: the file itself, or a directory's regular files."""
    try:
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.is_symlink())[:_MAX_HASHED_FILES]
        else:
            return []
        out = []
        for p in files:
            size, digest = _file_sha(p)
            out.append({"name": p.name, "size": size, "sha256": digest})
        return out
    except OSError:
        return []


def content_sha(path: Path, scan: ScanResult, files: list[dict[str, Any]]) -> str:
    """The revision sha of a local input: weights sha256, else a hash of its files, else of its path."""
    if scan.content_sha256:
        return scan.content_sha256
    h = hashlib.sha256()
    if files:
        for f in files:
            h.update(f"{f['name']}\0{f['sha256']}\n".encode())
    else:
        h.update(str(path).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def ingest(
    store: Store,
    paths: Sequence[str | Path],
    base: str,
    *,
    on_item: Callable[[IngestItem], None] | None = None,
) -> IngestSummary:
    """Scan each of ``paths`` with hubaudit.stats.scan_path and record it under ``base``."""
    from hubaudit.stats import scan_path

    summary = IngestSummary(base=base)
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        try:
            scan = scan_path(path)
        except Exception as exc:  # noqa: BLE001 - a scanner bug on one input must not stop the batch
            scan = ScanResult(source=str(path), status="error", error=f"scanner failed: {type(exc).__name__}: {exc}")
        files = file_digests(path)
        sha = content_sha(path, scan, files)
        repo_id = local_repo_id(path)
        status = "scored" if scan.status == "ok" else scan.status
        reason = reason_code(scan)
        provenance = {"source": "local", "path": str(path), "config_sha256": scan.config_sha256,
                      "peft_type": scan.peft_type, "warnings": list(scan.warnings)}  # fmt: skip
        rid = store.record_revision(
            base=base, repo_id=repo_id, sha=sha, status=status, reason=reason, error=scan.error, files=files,
            declared_base=scan.base_model, provenance=provenance, scan=scan if scan.status == "ok" else None,
        )  # fmt: skip
        item = IngestItem(str(path), repo_id, sha, status, reason, scan.error, scan.score,
                          scan.stratum if scan.status == "ok" else None, rid)  # fmt: skip
        summary.items.append(item)
        if on_item is not None:
            on_item(item)
    return summary
