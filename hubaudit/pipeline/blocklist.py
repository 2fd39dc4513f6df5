"""Flows ``blocklist import`` / ``blocklist export``: exchange fingerprints of known-bad adapters.

The file (``hubaudit-blocklist`` version 1, JSON)::

    {"format": "hubaudit-blocklist", "version": 1, "base": "Qwen/Qwen2.5-1.5B",
     "entries": [{"label": "org/name@<sha>", "reason": "...", "fingerprint_version": "fp-1",
                  "n_modules": 196, "fingerprint": "<base64 of the float16 little-endian vector>"}]}

An export holds the fingerprints of the base's current findings that other teams can act on: every
probe-confirmed revision and every revision derived from a known-bad source (weight flags are
triage, not evidence, and are not exported). An imported entry becomes a source for ``report`` and
``check`` (pipeline/lineage.py).

The file is untrusted input: at most MAX_FILE_BYTES, parsed by the bounded JSON loader (no NaN,
no duplicate keys, no unknown keys), labels of at most MAX_LABEL characters from a small charset,
strict canonical base64, the fingerprint version and dimension of this hubaudit and this store, finite
values, re-normalised to unit length. Any bad entry rejects the whole file (InputError, exit 2) and
nothing is imported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from hubaudit import safejson
from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.errors import InputError
from hubaudit.models import Fingerprint
from hubaudit.pipeline.lineage import derived_map, label_of
from hubaudit.store import Store
from hubaudit.textsafe import json_dumps, terminal

FORMAT = "hubaudit-blocklist"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 20_000
MAX_LABEL = 200
MAX_REASON = 500
MAX_MODULES = 1_000_000
MAX_BASE = 200
# A label is data shown in every report format: letters, digits and . _ / @ : + - only (a Hub
# "repo@sha" fits), starting with a letter or digit.
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@:+-]*", re.ASCII)
_TOP_KEYS = {"format", "version", "base", "entries"}
_ENTRY_KEYS = {"label", "reason", "fingerprint_version", "n_modules", "fingerprint"}
_HUB_SHA = re.compile(r"[0-9a-f]{7,64}", re.ASCII)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def expected_dim(store: Store, base: str) -> int:
    """The fingerprint dimension an import must have: the base's stored fingerprints', else its
    blocklist's, else this hubaudit's sketch."""
    dim = store.fingerprint_dim(base)  # one row, not the base's whole population of fingerprints
    if dim is not None:
        return dim
    entries = store.blocklist(base)
    if entries:
        return entries[0].fingerprint.dim
    from hubaudit.stats.fingerprint import DIM

    return int(DIM)


def _entry(i: int, e: Any, dim: int) -> dict[str, Any]:
    where = f"entry {i}"
    if not isinstance(e, dict):
        raise InputError(f"{where} is not an object")
    if set(e) != _ENTRY_KEYS:
        missing, extra = sorted(_ENTRY_KEYS - set(e)), sorted(set(e) - _ENTRY_KEYS)
        raise InputError(f"{where}: " + (f"missing {', '.join(missing)}" if missing
                                         else f"unknown key(s) {', '.join(map(repr, extra))}"))
    label = e["label"]
    if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL or not LABEL_RE.fullmatch(label):
        raise InputError(f"{where}: label must be 1-{MAX_LABEL} characters of letters, digits and ._/@:+- "
                         "(e.g. org/name@sha)")
    reason = e["reason"]
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable()):
        raise InputError(f"{where}: reason must be null or one printable line of at most {MAX_REASON} characters")
    if e["fingerprint_version"] != FINGERPRINT_VERSION:
        raise InputError(f"{where}: fingerprint_version must be {FINGERPRINT_VERSION!r} (this hubaudit's)")
    n_modules = e["n_modules"]
    if isinstance(n_modules, bool) or not isinstance(n_modules, int) or not 0 < n_modules <= MAX_MODULES:
        raise InputError(f"{where}: n_modules must be an integer from 1 to {MAX_MODULES}")
    text = e["fingerprint"]
    if not isinstance(text, str) or len(text) != 4 * math.ceil(2 * dim / 3):
        raise InputError(f"{where}: fingerprint must be the base64 of {dim} float16 values ({2 * dim} bytes)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{where}: fingerprint is not strict base64") from None
    if len(raw) != 2 * dim or base64.b64encode(raw).decode("ascii") != text:
        raise InputError(f"{where}: fingerprint is not the canonical base64 of {2 * dim} bytes")
    vec = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if not np.isfinite(vec).all():
        raise InputError(f"{where}: fingerprint holds non-finite values")
    norm = float(np.linalg.norm(vec))
    if norm < 0.5 or norm > 2.0:  # stored unit vectors; float16 moves the norm by ~1e-3
        raise InputError(f"{where}: fingerprint norm {norm:.3g} is not that of a unit vector")
    fp = Fingerprint(FINGERPRINT_VERSION, (vec / norm).astype(np.float32), n_modules)
    return {"label": label, "reason": reason, "fingerprint": fp}


def parse_blocklist(data: bytes, *, base: str, dim: int) -> list[dict[str, Any]]:
    """The entries of a blocklist file for ``base`` with ``dim``-dimensional fingerprints (module
    docstring); raises InputError (one line) on anything else."""
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"over the {MAX_FILE_BYTES // 2**20} MiB cap for a blocklist file")
    try:
        doc = safejson.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text") from None
    except ValueError as exc:
        raise InputError(f"not valid JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"not a {FORMAT} file (its \"format\" must be {FORMAT!r})")
    if set(doc) != _TOP_KEYS:
        raise InputError(f"the top level must hold exactly {', '.join(sorted(_TOP_KEYS))}")
    if type(doc["version"]) is not int or doc["version"] != VERSION:  # not True, not 1.0
        raise InputError(f"unsupported {FORMAT} version (this hubaudit reads version {VERSION})")
    if not isinstance(doc["base"], str) or len(doc["base"]) > MAX_BASE:
        raise InputError("base must be a model id")
    if doc["base"] != base:
        raise InputError(f"the file is for base {doc['base']!r}, not {base!r}")
    entries = doc["entries"]
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise InputError(f"entries must be a list of at most {MAX_ENTRIES}")
    out = [_entry(i, e, dim) for i, e in enumerate(entries)]
    labels = [e["label"] for e in out]
    if len(set(labels)) != len(labels):
        raise InputError("a label appears twice")
    return out


def import_blocklist(store: Store, base: str, path: str | Path) -> tuple[int, int]:
    """Import the blocklist file at ``path`` into ``base``: (entries, of them new). All or nothing."""
    p = Path(path).expanduser()
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    try:
        entries = parse_blocklist(data, base=base, dim=expected_dim(store, base))
    except InputError as exc:
        raise InputError(f"{path}: {exc}", hint="nothing was imported") from None
    source = f"import sha256:{hashlib.sha256(data).hexdigest()[:16]}"  # the file's digest, never its path
    new = store.add_blocklist_entries(base, [e | {"source": source} for e in entries])
    return len(entries), new


def _label(repo_id: str, sha: str) -> str | None:
    """``repo@sha`` for a Hub revision, ``local@sha`` for a local one (a local repo id names a path)."""
    label = label_of(repo_id, sha)
    return label if len(label) <= MAX_LABEL and LABEL_RE.fullmatch(label) and _HUB_SHA.fullmatch(sha) else None


def export_blocklist(store: Store, base: str) -> tuple[dict[str, Any], dict[str, int]]:
    """(the blocklist document of ``base``'s current findings, counts of the findings left out:
    ``no_fingerprint`` (none stored, or a zero one) and ``label`` (a repo id outside the label charset))."""
    fps = store.fingerprints(base)
    index = {rid: i for i, rid in enumerate(fps.revision_ids.tolist())}
    reasons: dict[int, str] = {rid: "behavioural probe confirmed a backdoor" for rid in store.probe_confirmed(base)}
    latest = [r.revision_id for r in store.audit_rows(base)]
    _, derived = derived_map(store, base, latest, store.active_threshold_set(base))
    for rid, d in derived.items():
        reasons.setdefault(rid, d.reason)
    entries, left_out = [], {"no_fingerprint": 0, "label": 0}
    for rid in sorted(reasons):
        i = index.get(rid)
        fp = fps.fingerprint(i) if i is not None else None
        if fp is None or float(np.linalg.norm(fp.vec)) < 0.5:
            left_out["no_fingerprint"] += 1
            continue
        label = _label(fps.repo_ids[i], fps.shas[i])  # type: ignore[index]
        if label is None:
            left_out["label"] += 1
            continue
        entries.append({"label": label, "reason": terminal(reasons[rid])[:MAX_REASON],
                        "fingerprint_version": fp.version, "n_modules": min(MAX_MODULES, max(1, fp.n_modules)),
                        "fingerprint": base64.b64encode(fp.to_bytes()).decode("ascii")})  # fmt: skip
    return {"format": FORMAT, "version": VERSION, "base": base, "entries": entries}, left_out


def render(doc: dict[str, Any]) -> str:
    return json_dumps(doc, indent=1) + "\n"
