"""Flow ``ingest``: scan local adapters (directories or weight files) into the store.

Each input becomes adapter ``local:<absolute path>`` of the given base, with revision sha =
the sha256 of its weights file (for inputs the scanner cannot read: of whatever files are
there, or of the path itself). Recording is idempotent on (repo_id, sha): ingesting the same
content twice updates one row. Per-input failures are recorded as revisions with a status and a
reason code and never stop the batch.

What counts as an adapter (:func:`skip_reason`): a folder that holds ``adapter_config.json``,
``adapter_model.safetensors`` or ``adapter_model.bin`` (even a broken one: that is recorded as an
error, a finding-worthy outcome), or a ``.safetensors``/``.bin`` weights file. Anything else a shell
glob brings along (a README.md, a folder of folders) is skipped with a note and never stored.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_SAFETENSORS
from hubaudit.models import ScanResult
from hubaudit.store import Store
from hubaudit.vocab import RevisionStatus, ScanStatus, revision_status

LOCAL_PREFIX = "local:"
_HASH_CHUNK = 1 << 20
_MAX_HASHED_FILES = 64  # a directory of an unreadable "adapter" may be anything; hash its listing beyond this
#: A folder holding any of these is an adapter (possibly a broken one, which is then recorded as such).
ADAPTER_MARKERS = (ADAPTER_CONFIG, ADAPTER_SAFETENSORS, ADAPTER_PICKLE)
#: A file named on the command line is an adapter's weights only with one of these suffixes.
WEIGHTS_SUFFIXES = (".safetensors", ".bin")
_MAX_CHILDREN_LOOKED_AT = 1000  # for the "it holds adapter folders" hint only
NOT_AN_ADAPTER = "not_an_adapter"
# The statuses an ingest summary counts (a retry never happens: nothing is fetched).
INGEST_COUNTED = (RevisionStatus.SCORED, RevisionStatus.UNSUPPORTED, RevisionStatus.ERROR, RevisionStatus.SKIPPED)


@dataclass
class IngestItem:
    """What happened to one input."""

    path: str
    repo_id: str | None  # None: skipped, not stored
    sha: str | None
    status: RevisionStatus  # scored | unsupported | error (stored), or skipped (not an adapter, not stored)
    reason: str | None
    error: str | None  # for a skipped input: why it is not an adapter
    score: float | None
    stratum: str | None
    revision_id: int | None
    declared_base: str | None = None  # adapter_config base_model_name_or_path
    base_mismatch: bool = False  # declared_base is set and differs from the base it was ingested under

    @property
    def stored(self) -> bool:
        return self.revision_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "stored": self.stored}


@dataclass
class IngestSummary:
    """All items of one ingest run plus counts per status."""

    base: str
    items: list[IngestItem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(i.status for i in self.items)
        return {"inputs": len(self.items), **{k: c.get(k, 0) for k in INGEST_COUNTED}}

    @property
    def all_scored(self) -> bool:
        """Every stored input was scored (skipped inputs are not adapters and do not count)."""
        return all(i.status == RevisionStatus.SCORED for i in self.items if i.stored)


def local_repo_id(path: Path) -> str:
    """``local:<absolute path>`` of an ingested or checked input. Path bytes that are not UTF-8 (they
    arrive as surrogate escapes) are written as ``\\xNN``: the store holds UTF-8 text only."""
    return LOCAL_PREFIX + os.fsencode(path).decode("utf-8", "backslashreplace")


def is_adapter_dir(path: Path) -> bool:
    """A folder that holds adapter_config.json or an adapter weights file (links count: the scanner refuses them)."""
    return any(os.path.lexists(path / name) for name in ADAPTER_MARKERS)


def skip_reason(path: Path) -> str | None:
    """Why ``path`` is not an adapter input (one line), or None when it is one, or may be.

    Adapters: a folder with any of ADAPTER_MARKERS, a ``.safetensors``/``.bin`` file, and anything
    that cannot be told apart (a missing path, an unreadable folder): the scanner records those.
    """
    try:
        if path.is_dir():
            if is_adapter_dir(path) or not os.access(path, os.R_OK | os.X_OK):
                return None
            why = f"not an adapter: no {ADAPTER_CONFIG}, {ADAPTER_SAFETENSORS} or {ADAPTER_PICKLE} in the folder"
            if _holds_adapter_dirs(path):
                why += " (it holds adapter folders: name them, e.g. DIR/*)"
            return why
        if not os.path.lexists(path):
            return None
        if path.is_file():
            if path.name.lower().endswith(WEIGHTS_SUFFIXES):
                return None
            return "not an adapter: a file that is neither a folder nor .safetensors/.bin weights"
        return "not an adapter: neither a folder nor a regular file"
    except OSError:  # cannot be told apart: scan it, and record whatever the scanner says
        return None


def _holds_adapter_dirs(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            for n, entry in enumerate(it):
                if n >= _MAX_CHILDREN_LOOKED_AT:
                    return False
                if entry.is_dir(follow_symlinks=False) and is_adapter_dir(Path(entry.path)):
                    return True
    except OSError:
        return False
    return False


def reason_code(scan: ScanResult) -> str | None:
    """A short machine reason for a scan that did not score (store contract reason codes)."""
    if scan.status == ScanStatus.OK:
        return None
    text = (scan.error or "").lower()
    if text.startswith(("no adapter_model", "no such file")) or text.endswith("is missing"):
        return "no_adapter_files"
    if "pickle" in text:
        return "pickle_format"
    if "over the" in text and "cap" in text:
        return "oversize"
    if scan.status == ScanStatus.UNSUPPORTED:
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
    allow_pickle: bool = False,
) -> IngestSummary:
    """Scan each adapter of ``paths`` with hubaudit.stats.scan_path and record it under ``base``.

    Inputs that are not adapters (:func:`skip_reason`) become ``skipped`` items and are not stored.
    ``allow_pickle``: load ``adapter_model.bin`` with torch.load(weights_only=True) in a sandboxed
    subprocess (check ``hubaudit.stats.require_torch`` first); without it such an adapter is
    recorded ``unsupported`` (reason ``pickle_format``).
    """
    from hubaudit.stats import scan_path

    summary = IngestSummary(base=base)
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        skip = skip_reason(path)
        if skip is not None:
            item = IngestItem(str(path), None, None, RevisionStatus.SKIPPED, NOT_AN_ADAPTER, skip, None, None, None)
            summary.items.append(item)
            if on_item is not None:
                on_item(item)
            continue
        try:
            scan = scan_path(path, allow_pickle=allow_pickle)
        except Exception as exc:  # noqa: BLE001 - a scanner bug on one input must not stop the batch
            scan = ScanResult(source=str(path), status=ScanStatus.ERROR,
                              error=f"scanner failed: {type(exc).__name__}: {exc}")
        files = file_digests(path)
        sha = content_sha(path, scan, files)
        repo_id = local_repo_id(path)
        status = revision_status(scan.status)
        reason = reason_code(scan)
        provenance = {"source": "local", "path": str(path), "config_sha256": scan.config_sha256,
                      "peft_type": scan.peft_type, "warnings": list(scan.warnings)}  # fmt: skip
        rid = store.record_revision(
            base=base, repo_id=repo_id, sha=sha, status=status, reason=reason, error=scan.error, files=files,
            declared_base=scan.base_model, provenance=provenance, scan=scan if scan.status == ScanStatus.OK else None,
        )  # fmt: skip
        declared = scan.base_model
        item = IngestItem(str(path), repo_id, sha, status, reason, scan.error, scan.score,
                          scan.stratum if scan.status == ScanStatus.OK else None, rid, declared_base=declared,
                          base_mismatch=bool(declared) and declared != base)  # fmt: skip
        summary.items.append(item)
        if on_item is not None:
            on_item(item)
    return summary
