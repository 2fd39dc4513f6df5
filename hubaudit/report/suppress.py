"""Suppression files: accept a reviewed finding, with a reason and an expiry date.

TOML (always) or YAML (when PyYAML is installed), chosen by the file extension::

    [[suppress]]
    repo = "acme/sentiment-lora"          # required: the adapter repo id
    sha = "3f2a9c1"                       # optional: one revision (full sha or a >= 7-char prefix)
    reason = "reviewed 2026-11-20: high score from lr=1e-3, probes clean"   # required
    expires = 2027-01-31                  # required: last day it is honoured (UTC)

An entry without ``sha`` covers every revision of the repo, so a new push to a suppressed repo stays
suppressed until the entry expires; pin ``sha`` to re-alert on any new revision (an allowlist
keyed on the content an attacker cannot reuse). Expired entries suppress nothing and
are reported (stderr warning and the JSON ``suppressions.expired`` list), so a review is re-triggered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from hubaudit.errors import ConfigError
from hubaudit.report.model import Suppression

_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
_KEYS = {"repo", "sha", "reason", "expires"}


def _as_date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: 'expires' must be a date like 2027-01-31, got {value!r}")


def _entry(raw: Any, where: str) -> Suppression:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each suppression must be a table/mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_KEYS))})")
    repo = raw.get("repo")
    reason = raw.get("reason")
    if not isinstance(repo, str) or not repo.strip():
        raise ConfigError(f"{where}: 'repo' is required")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"{where}: 'reason' is required (say why this finding is accepted)")
    if "expires" not in raw:
        raise ConfigError(f"{where}: 'expires' is required (suppressions must be reviewed again)")
    sha = raw.get("sha")
    if sha is not None and (not isinstance(sha, str) or not _SHA_RE.match(sha)):
        raise ConfigError(f"{where}: 'sha' must be a hex commit sha (>= 7 characters), got {sha!r}")
    return Suppression(
        repo=repo.strip(), reason=reason.strip(), expires=_as_date(raw["expires"], where), sha=sha, origin=where
    )


def parse_suppressions(text: str, *, fmt: str, origin: str = "<suppressions>") -> list[Suppression]:
    """Parse suppression entries from TOML or YAML text (``fmt`` is ``"toml"`` or ``"yaml"``)."""
    if fmt == "toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{origin}: invalid TOML: {exc}") from None
    elif fmt == "yaml":
        try:
            import yaml
        except ModuleNotFoundError:
            raise ConfigError(
                f"{origin}: YAML suppression files need PyYAML",
                hint="pip install 'hubaudit[yaml]', or write the file as TOML"
            ) from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{origin}: invalid YAML: {str(exc).splitlines()[0]}") from None
    else:
        raise ConfigError(f"{origin}: unknown suppression file format {fmt!r}")
    if isinstance(data, list):  # YAML may be a bare list of entries
        items = data
    elif isinstance(data, dict):
        items = data.get("suppress", [])
        extra = set(data) - {"suppress"}
        if extra:
            raise ConfigError(f"{origin}: unknown top-level key(s) {', '.join(sorted(extra))} (expected 'suppress')")
    else:
        raise ConfigError(f"{origin}: expected a 'suppress' list")
    if not isinstance(items, list):
        raise ConfigError(f"{origin}: 'suppress' must be a list of entries")
    return [_entry(raw, f"{origin}: entry {i}") for i, raw in enumerate(items, start=1)]


def load_suppressions(path: str | Path) -> list[Suppression]:
    """Read a suppression file; ``.yaml``/``.yml`` as YAML, anything else as TOML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read suppression file {p}: {exc.strerror or exc}") from None
    fmt = "yaml" if p.suffix.lower() in (".yaml", ".yml") else "toml"
    return parse_suppressions(text, fmt=fmt, origin=p.name)


def match_suppression(
    suppressions: Sequence[Suppression], repo_id: str, sha: str | None, today: date
) -> Suppression | None:
    """The live entry covering (repo_id, sha), a sha-pinned one before a repo-wide one; None if none."""
    live = [s for s in suppressions if not s.is_expired(today) and s.matches(repo_id, sha)]
    live.sort(key=lambda s: s.sha is None)
    return live[0] if live else None
