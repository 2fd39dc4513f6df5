"""Flow ``calibrate``: fit a base's thresholds from its stored population and re-derive verdicts.

Wires three stages: the store (population, threshold sets, verdicts), stats (scans the
``--reference`` adapters, supplies each feature's registered direction, and re-derives the features
of adapters scored under an older feature set from their stored per-module statistics) and
calibrate (the pure fit/judge documented in hubaudit/calibrate/fit.py); the threshold set also
carries the copy/derivative fingerprint-similarity thresholds calibrated by hubaudit/lineage on the
same population (``params["similarity"]``).

:func:`fit_threshold_set` is the fit exactly as ``hubaudit calibrate`` runs it, minus the store;
evals/detection and evals/calibration call it so that they measure the shipped detector.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hubaudit import calibrate as cal
from hubaudit._gc import no_cyclic_gc
from hubaudit.constants import FEATURESET_VERSION
from hubaudit.errors import NotCalibratedError, UsageError
from hubaudit.models import StratumFit, ThresholdParams, ThresholdSet
from hubaudit.pipeline.lineage import calibrate_similarity
from hubaudit.store import Store
from hubaudit.vocab import ScanStatus, StratumStatus, Verdict


@dataclass
class CalibrationSummary:
    """What one calibration produced (the data ``hubaudit calibrate`` prints)."""

    base: str
    threshold_set_id: int
    version: int
    method: str
    featureset_version: str
    verdict: str  # "combined" | "per-feature": the rule that sets flagged (threshold set params)
    n: int
    n_references: int
    target_fpr: float
    min_n: int
    strata: list[dict[str, Any]] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)  # flagged / clean / not_calibrated
    rescored: int = 0  # adapters whose features were re-derived for this feature-set version
    # of verdicts["clean"]: judged by a fit with too few adapters for the target FPR (calibrate/fit.py),
    # which no gate takes as a plain pass
    clean_low_confidence: int = 0
    # copy/derivative fingerprint-similarity thresholds (lineage/thresholds.py), as stored in params["similarity"]
    similarity: dict[str, Any] = field(default_factory=dict)
    similarity_source: str = "default"  # "calibrated" from the null of the population, or the defaults

    @property
    def calibrated(self) -> bool:
        return self.verdicts.get(Verdict.FLAGGED, 0) + self.verdicts.get(Verdict.CLEAN, 0) > 0

    @property
    def low_confidence(self) -> list[dict[str, Any]]:
        """The strata whose own fit was made on too few adapters for the target FPR (fit.py)."""
        return [s for s in self.strata if s.get("low_confidence")]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def feature_directions(names: Iterable[str]) -> dict[str, str]:
    """Direction ("up"/"down"/"both") of each feature from the stats registry; unknown names are left out."""
    from hubaudit.stats.features import describe

    out = {}
    for name in names:
        feat = describe(name)
        if feat is not None:
            out[name] = feat.direction
    return out


def _scan_references(paths: Sequence[str | Path]) -> list[tuple[str, dict[str, float]]]:
    from hubaudit.stats import scan_path

    refs = []
    for p in paths:
        scan = scan_path(Path(p).expanduser())
        if scan.status != ScanStatus.OK:
            raise UsageError(f"reference adapter {p} could not be scored: {scan.error}",
                             hint="references must be scorable LoRA adapters you know are clean")  # fmt: skip
        refs.append((scan.stratum, dict(scan.features)))
    return refs


def fit_threshold_set(
    population: Sequence[tuple[str, dict[str, float | None]]],
    references: Sequence[tuple[str, dict[str, float | None]]] = (),
    *,
    target_fpr: float = 0.01,
    min_n: int = 30,
    method: str = cal.DEFAULT_METHOD,
) -> dict[str, Any]:
    """The threshold set ``hubaudit calibrate`` fits for (stratum, features) pairs: every feature the
    stats registry knows, with its registered direction, by hubaudit.calibrate.fit (its stored form;
    ``ThresholdSet.from_dict`` gives the typed view)."""
    names = cal.feature_names(f for _, f in population) | cal.feature_names(f for _, f in references)
    return cal.fit(population, feature_directions(sorted(names)), target_fpr, min_n, references, method=method)


def rescore_stale(store: Store, base: str, featureset_version: str = FEATURESET_VERSION, *, batch: int = 2000) -> int:
    """Re-derive, under ``featureset_version``, the features of every adapter of ``base`` whose score
    was stored under an older feature set, from its stored per-module statistics (every registered
    feature is a function of them, stats/features.py), and store them, ``batch`` adapters at a time
    (memory stays bounded; a killed run keeps the batches already stored). Returns how many."""
    from hubaudit.models import ModuleStat
    from hubaudit.stats import compute_features, scored_modules

    done, after = 0, 0
    while stale := store.stale_scores(base, featureset_version, after=after, limit=batch):
        for row in stale:
            mods = [ModuleStat(**{**m, "singular_values": tuple(m.get("singular_values") or ())})
                    for m in row["modules"]]
            row["features"] = compute_features(scored_modules(mods))
            row["score"] = row["features"].get("global_frobN_std")
        store.add_rescored(featureset_version, stale)
        done += len(stale)
        after = stale[-1]["revision_id"]
    return done


def calibrate_base(
    store: Store,
    base: str,
    *,
    references: Sequence[str | Path] = (),
    target_fpr: float = 0.01,
    min_n: int = 30,
    featureset_version: str = FEATURESET_VERSION,
    method: str = cal.DEFAULT_METHOD,
) -> CalibrationSummary:
    """Fit a new threshold set for ``base``, store it (deactivating the old) and re-judge every
    scored revision of the base. ``method``: "combined" (default) or "per-feature" (fit.py).

    Only scores of ``featureset_version`` are fitted and judged; adapters scored under an older
    feature set are first re-derived from their stored per-module statistics (:func:`rescore_stale`),
    so a feature-set bump needs no re-download. Raises NotCalibratedError if the base has no scored
    adapters."""
    if method not in cal.METHODS:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"use one of {', '.join(sorted(cal.METHODS))}")
    rescored = rescore_stale(store, base, featureset_version)
    population = store.population(base, featureset_version)
    refs = _scan_references(references)
    if not population and not refs:
        raise NotCalibratedError(f"no scored adapters of {base} in the store ({store.url})",
                                 hint=f"ingest or crawl adapters of {base} first")  # fmt: skip
    with no_cyclic_gc():
        fitted = fit_threshold_set([(r.stratum, r.features) for r in population], refs, target_fpr=target_fpr,
                                   min_n=min_n, method=method)  # fmt: skip
        similarity = calibrate_similarity(store, base, population)
        ts = ThresholdSet.from_dict(fitted)
        params = replace(ts.params or ThresholdParams(), similarity=similarity.to_params(),
                         references=tuple(str(Path(p).expanduser().absolute()) for p in references))  # fmt: skip
        stored = replace(ts, params=params).to_dict()
        ts_id = store.save_threshold_set(base, method=ts.method or "", featureset_version=featureset_version,
                                         n=ts.n or 0, strata=stored["strata"], params=stored["params"])  # fmt: skip
        # judged and stored in the breakdowns' stored form: no conversion for each of 100,000 adapters
        judged = cal.judge_many([(r.stratum, r.features) for r in population], fitted)
        verdicts = [(r.revision_id, flagged, bd) for r, (flagged, bd) in zip(population, judged)]
        store.save_verdicts(ts_id, verdicts)
    active = store.active_threshold_set(base)
    counts = Counter(Verdict.NOT_CALIBRATED if f is None else (Verdict.FLAGGED if f else Verdict.CLEAN)
                     for _, f, _ in verdicts)
    return CalibrationSummary(
        base=base, threshold_set_id=ts_id, version=active.version if active else 0, method=ts.method or "",
        featureset_version=featureset_version, verdict=method, n=ts.n or 0, n_references=len(refs),
        target_fpr=target_fpr, min_n=min_n, strata=_strata_table(ts, population, verdicts),
        verdicts={k: counts.get(k, 0) for k in (Verdict.FLAGGED, Verdict.CLEAN, Verdict.NOT_CALIBRATED)},
        rescored=rescored,
        clean_low_confidence=sum(1 for _, f, bd in verdicts if f is False and bd.get("low_confidence")),
        similarity=similarity.to_params(), similarity_source=similarity.source,
    )  # fmt: skip


def judge_revisions(store: Store, base: str, revision_ids: Iterable[int] | None = None) -> dict[int, bool | None]:
    """Judge stored revisions of ``base`` (all of its population when None) against the active
    threshold set and store the verdicts; for flows (crawl) that score after a calibration."""
    active = store.active_threshold_set(base)
    if active is None:
        return {}
    wanted = None if revision_ids is None else set(revision_ids)
    rows = [r for r in store.population(base, active.featureset_version) if wanted is None or r.revision_id in wanted]
    judged = cal.judge_many([(r.stratum, r.features) for r in rows], active.stored)
    verdicts = [(r.revision_id, flagged, bd) for r, (flagged, bd) in zip(rows, judged)]
    store.save_verdicts(active.id, verdicts)
    return {rid: flagged for rid, flagged, _ in verdicts}


def _strata_table(ts: ThresholdSet, population: Sequence[Any], verdicts: Sequence[tuple]) -> list[dict[str, Any]]:
    flagged: Counter[str] = Counter()
    for r, (_, f, _) in zip(population, verdicts):
        flagged[r.stratum] += bool(f)
    out = []
    for key, entry in sorted((ts.strata or {}).items()):
        if key.startswith("pool:"):
            continue
        pooled = entry.status == StratumStatus.POOLED
        fit_entry = (ts.fit(entry.pool) if pooled else entry) or StratumFit()
        out.append({
            "stratum": key,
            "status": entry.status,
            "n": entry.n if "n" in entry.stored_keys else 0,
            "n_references": entry.n_ref if "n_ref" in entry.stored_keys else 0,
            "fit": entry.pool if pooled else (key if entry.calibrated else None),
            "source": entry.source,
            "n_features": len(entry.features or {}),
            "combined_threshold": entry.combined.threshold if entry.combined is not None else None,
            # the fit that judges the stratum (its own, or its pool's) was made on too few adapters
            "low_confidence": bool(fit_entry.low_confidence),
            "low_confidence_reason": fit_entry.low_confidence_reason,
            "flagged": flagged.get(key, 0),
        })  # fmt: skip
    return out
