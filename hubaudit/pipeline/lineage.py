"""Lineage glue: store fingerprints, known-bad sources and thresholds → the lineage stage → report values.

Sources (the adapters a verdict propagates from) are

- **probe-confirmed** revisions: the revision's latest probe result flagged a backdoor, and
- **imported blocklist entries** of the base (``hubaudit blocklist import``).

Weight-flagged adapters are not sources: a weight flag is a triage verdict with a calibrated
false-positive rate, and propagating it would turn every false positive into several (one per
adapter that happens to resemble it), while a copy of a weight-flagged adapter carries the same
weights and is weight-flagged on its own account. Suppressions do not touch sources either: a copy
of a suppressed adapter is still a finding unless a suppression names the copy itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.lineage import (
    Match,
    Thresholds,
    default_thresholds,
    propagate,
    similarity_thresholds,
)
from hubaudit.models import Fingerprint
from hubaudit.report.model import DerivedFrom, SimilarityThresholds
from hubaudit.store import Store

_LABEL_SHA = re.compile(r"[0-9a-f]{7,64}", re.ASCII)


@dataclass(frozen=True)
class Sources:
    """Known-bad fingerprints of one base: row i is ``repo_ids[i]@shas[i]``, bad because ``kinds[i]``
    ("probe_confirmed" | "blocklist"); ``revision_ids[i]`` is -1 for a blocklist entry."""

    matrix: np.ndarray
    revision_ids: np.ndarray
    repo_ids: tuple[str, ...]
    shas: tuple[str | None, ...]
    kinds: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.revision_ids.shape[0])

    def derived_from(self, i: int, similarity: float, kind: str, threshold: float) -> DerivedFrom:
        return DerivedFrom(source_repo_id=self.repo_ids[i], source_sha=self.shas[i], similarity=similarity,
                           kind=kind, source_kind=self.kinds[i], threshold=threshold)  # fmt: skip


def split_label(label: str) -> tuple[str, str | None]:
    """A blocklist label ``repo@sha`` as (repo, sha); a label without a hex sha is all repo."""
    repo, at, sha = label.rpartition("@")
    if at and repo and _LABEL_SHA.fullmatch(sha):
        return repo, sha
    return label, None


def thresholds_in_force(threshold_set: Any | None) -> Thresholds:
    """The similarity thresholds of the active threshold set (its ``params["similarity"]``), else the defaults."""
    params = getattr(threshold_set, "params", None) or {}
    found = Thresholds.from_params(params.get("similarity")) if isinstance(params, dict) else None
    return found or default_thresholds()


def report_thresholds(t: Thresholds) -> SimilarityThresholds:
    return SimilarityThresholds(copy=t.copy, derivative=t.derivative, source=t.source, null_pairs=t.null_pairs,
                                null_max=t.null_max)  # fmt: skip


def calibrate_similarity(store: Store, base: str, population: Iterable[Any]) -> Thresholds:
    """Copy/derivative thresholds of ``base`` from the fingerprints of its calibration population (the
    latest scored revision of each adapter, with its stratum)."""
    stratum_of = {int(r.revision_id): r.stratum for r in population}
    fps = store.fingerprints(base)
    rows = [i for i, rid in enumerate(fps.revision_ids.tolist()) if rid in stratum_of]
    if not rows:
        return default_thresholds()
    return similarity_thresholds(fps.matrix[rows], [stratum_of[int(fps.revision_ids[i])] for i in rows])


def label_of(repo_id: str, sha: str) -> str:
    """The blocklist label of a stored revision (a local repo id names a path: ``local@sha``)."""
    return f"{'local' if repo_id.startswith('local:') else repo_id}@{sha}"


def known_bad(store: Store, base: str, fps: Any, dim: int) -> Sources:
    """Sources of ``base`` of fingerprint dimension ``dim`` (``fps``: the base's FingerprintSet).

    A blocklist entry labelled as a probe-confirmed revision of this store is that revision (not a
    second source); one labelled as another stored revision carries that revision's id, so that
    revision is matched against it only when nothing else matches (:func:`best_matches`)."""
    confirmed = set(store.probe_confirmed(base))
    rows = [i for i, rid in enumerate(fps.revision_ids.tolist()) if rid in confirmed]
    own = {label_of(fps.repo_ids[i], fps.shas[i]) for i in rows}
    stored = {label_of(r, sha): int(rid) for r, sha, rid in zip(fps.repo_ids, fps.shas, fps.revision_ids.tolist())}
    entries = [b for b in store.blocklist(base) if b.label not in own and b.fingerprint.dim == dim]
    parts = [np.asarray(fps.matrix[rows], dtype=np.float32).reshape(len(rows), dim) if rows
             else np.zeros((0, dim), np.float32)]
    parts += [b.fingerprint.vec.reshape(1, dim) for b in entries]
    labels = [split_label(b.label) for b in entries]
    ids = [int(fps.revision_ids[i]) for i in rows] + [stored.get(b.label, -1) for b in entries]
    return Sources(
        matrix=np.concatenate(parts).astype(np.float32),
        revision_ids=np.asarray(ids, dtype=np.int64),
        repo_ids=tuple([fps.repo_ids[i] for i in rows] + [r for r, _ in labels]),
        shas=tuple([fps.shas[i] for i in rows] + [s for _, s in labels]),
        kinds=tuple(["probe_confirmed"] * len(rows) + ["blocklist"] * len(entries)),
    )


def best_matches(pop: np.ndarray, pop_ids: np.ndarray | None, src: Sources, thr: Thresholds) -> list[Match | None]:
    """The best source of each population row (lineage.propagate; a row never matches its own revision).

    A revision that a blocklist entry names (``repo@sha``) and that matches no other source is matched
    against that entry alone: another team's list naming this very revision flags it, and re-importing
    one's own export does not replace a derived finding's real source by its own entry."""
    matches = propagate(pop, src.matrix, thr, population_ids=pop_ids,
                        source_ids=None if pop_ids is None else src.revision_ids)
    if pop_ids is None:
        return matches
    named = {rid: k for k, rid in enumerate(src.revision_ids.tolist()) if rid >= 0 and src.kinds[k] == "blocklist"}
    for j, rid in enumerate(pop_ids.tolist()):
        if matches[j] is None and rid in named:
            k = named[rid]
            (m,) = propagate(pop[j:j + 1], src.matrix[k:k + 1], thr)
            if m is not None:
                matches[j] = Match(k, m.similarity, m.kind, m.threshold)
    return matches


def derived_map(store: Store, base: str, revision_ids: Iterable[int], threshold_set: Any | None
                ) -> tuple[Thresholds, dict[int, DerivedFrom]]:
    """(thresholds in force, {revision id: DerivedFrom}) for the fingerprinted ones of ``revision_ids``."""
    thr = thresholds_in_force(threshold_set)
    fps = store.fingerprints(base)
    wanted = set(revision_ids)
    rows = [i for i, rid in enumerate(fps.revision_ids.tolist()) if rid in wanted]
    if not rows:
        return thr, {}
    dim = int(fps.matrix.shape[1])
    src = known_bad(store, base, fps, dim)
    if not len(src):
        return thr, {}
    pop_ids = fps.revision_ids[rows]
    matches = best_matches(fps.matrix[rows], pop_ids, src, thr)
    return thr, {int(rid): src.derived_from(m.source, m.similarity, m.kind, m.threshold)
                 for rid, m in zip(pop_ids.tolist(), matches) if m is not None}  # fmt: skip


def derived_for(store: Store, base: str, fingerprint: Fingerprint | None, revision_id: int | None,
                threshold_set: Any | None) -> tuple[Thresholds, DerivedFrom | None]:
    """(thresholds in force, the best known-bad source of one adapter, or None).

    ``fingerprint``: the adapter's (scored now); None: the stored fingerprint of ``revision_id``.
    ``revision_id``: the adapter's stored revision, if any, which is never its own source."""
    thr = thresholds_in_force(threshold_set)
    if fingerprint is not None and fingerprint.version != FINGERPRINT_VERSION:
        return thr, None
    # Only the known-bad revisions and this one: the rest of the population cannot be a source.
    wanted = set(store.probe_confirmed(base)) | ({revision_id} if revision_id is not None else set())
    fps = store.fingerprints(base, revision_ids=wanted)
    if fingerprint is None:
        hit = np.nonzero(fps.revision_ids == revision_id)[0] if revision_id is not None else []
        if not len(hit):
            return thr, None
        fingerprint = fps.fingerprint(int(hit[0]))
    if len(fps) and int(fps.matrix.shape[1]) != fingerprint.dim:
        return thr, None
    src = known_bad(store, base, fps, fingerprint.dim)
    if not len(src):
        return thr, None
    ids = None if revision_id is None else np.asarray([revision_id], dtype=np.int64)
    (m,) = best_matches(fingerprint.vec.reshape(1, -1), ids, src, thr)
    return thr, None if m is None else src.derived_from(m.source, m.similarity, m.kind, m.threshold)


def lineage_args(store: Store, base: str, rows: Iterable[Any], threshold_set: Any | None) -> dict[str, Any]:
    """``build_report``'s lineage keywords: similarity thresholds in force, derived findings among
    ``rows`` (audit rows) and the downstream Hub repos of the base's adapters."""
    thr, derived = derived_map(store, base, (r.revision_id for r in rows), threshold_set)
    return {"similarity": report_thresholds(thr), "derived": derived, "downstream": store.downstream(base)}
