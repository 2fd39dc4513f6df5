"""Flow ``check``: the gate before loading one adapter (``hubaudit check REPO[@REV] | PATH``).

Looks the adapter up in the store; when the store does not have it, a local PATH is scored on the
spot (stats.scan_path) and a Hub repo is fetched pinned to its commit, verified and scored with the
crawler's task (pipeline/crawl_task.py: header pre-check, sha256-verified download, never unpickles).
Nothing is written to the store: the gate is read-only. The features are judged against the *active*
threshold set of the base (``--base`` or the adapter's declared base), so an old stored verdict
never decides. A probe that confirmed a backdoor flags the adapter whatever its weights say. Given a
live probe (``check --base-model``), a local adapter is also probed now: its flag flags, its pass
leaves the weight verdict, and a probe that could not run turns a pass into ``not_audited``; without
one the verdict says in ``note`` that it judged the weights only.

Verdicts and exit codes: ``pass`` 0 · ``flagged`` 1 · ``suppressed`` 0 (a live suppression covers a
finding) · ``not_calibrated`` 3 · ``not_audited`` 3 · ``pass_low_confidence`` 3, or 0 with
``accept_low_confidence``. An adapter whose fingerprint lies within the derivative similarity threshold
of a known-bad source (a probe-confirmed adapter or an imported blocklist entry of the base;
pipeline/lineage.py) is ``flagged`` whatever its weights say, calibrated or not, with the reason
``derived_from <repo>@<sha> (similarity s, copy|derivative)``; the Hub's own scan status is shown
(``hub_security``) and never turns a finding into a pass. "Could not tell" is never a pass, and a
pass against thresholds fitted on too few adapters for their target FPR (calibrate/fit.py, "Low
confidence") is "could not be audited" by default: such a threshold can sit orders of magnitude
above every score. A low-confidence flag stays ``flagged`` (exit 1) and says so in
``low_confidence``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from hubaudit import calibrate
from hubaudit.errors import (
    HubAuthError,
    HubUnavailableError,
    RateLimitedError,
    UsageError,
)
from hubaudit.models import Fingerprint, InvertedTarget, ProbeResult, ScanResult
from hubaudit.pipeline.ingest import (
    content_sha,
    file_digests,
    local_repo_id,
    reason_code,
)
from hubaudit.pipeline.lineage import derived_for, report_thresholds
from hubaudit.report import Suppression, match_suppression
from hubaudit.report.build import hub_security_from
from hubaudit.store import Store
from hubaudit.textsafe import terminal
from hubaudit.vocab import ProbeStatus, RevisionStatus, ScanStatus, Verdict, revision_status

WEIGHTS_ONLY_NOTE = ("weights only: not probed (pass --base-model BASE_DIR to probe); "
                     "a weight pass does not rule out a backdoor")
EXIT_CODES = {Verdict.PASS: 0, Verdict.FLAGGED: 1, Verdict.SUPPRESSED: 0, Verdict.NOT_CALIBRATED: 3,
              Verdict.NOT_AUDITED: 3, Verdict.PASS_LOW_CONFIDENCE: 3}
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
CHECK_SCHEMA_VERSION = "1"


@dataclass
class CheckResult:
    """Everything ``hubaudit check`` prints (``--format json`` is ``to_dict()``)."""

    target: str
    repo_id: str
    sha: str | None
    base: str | None
    source: str  # "store" (found there) | "scanned" (local path scored now) | "hub" (fetched now) | "none"
    status: str  # revision status: scored | unsupported | error | skipped | retry | unknown
    verdict: Verdict  # one of vocab.CHECK_VERDICTS
    status_reason: str | None = None
    error: str | None = None
    score: float | None = None
    stratum: str | None = None
    flagged: bool | None = None
    reasons: list[str] = field(default_factory=list)
    margin: float | None = None
    threshold: float | None = None
    calibration_version: int | None = None
    calibration_n: int | None = None
    probe: dict[str, Any] | None = None
    suppressed: dict[str, Any] | None = None
    expired_suppressions: list[dict[str, Any]] = field(default_factory=list)  # entries for it that lapsed
    hint: str | None = None
    low_confidence: bool = False  # judged by a fit with too few adapters for its target FPR
    low_confidence_reason: str | None = None  # e.g. "fitted on 3 adapters; 19 needed for 5 % FPR"
    accept_low_confidence: bool = False  # the caller accepts a low-confidence pass (exit 0)
    probed: bool = False  # a behavioural probe of this adapter ran as part of this check
    note: str | None = None  # what this verdict did not look at
    # the known-bad adapter this one is a copy or derivative of (report.model.DerivedFrom.to_dict())
    derived_from: dict[str, Any] | None = None
    similarity_thresholds: dict[str, Any] | None = None  # the copy/derivative thresholds it was compared with
    hub_security: dict[str, Any] | None = None  # the Hub's own scan status (HubSecurity.to_dict()); never a pass

    @property
    def exit_code(self) -> int:
        if self.verdict == Verdict.PASS_LOW_CONFIDENCE and self.accept_low_confidence:
            return 0
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": CHECK_SCHEMA_VERSION, **asdict(self), "exit_code": self.exit_code}


def parse_target(target: str) -> tuple[str, str | None, Path | None]:
    """(repo_id, revision, local path): an existing path wins over a repo id of the same spelling."""
    p = Path(target).expanduser()
    if p.exists():
        return local_repo_id(p.absolute()), None, p
    repo, _, rev = target.partition("@")
    if not _REPO_RE.match(repo):
        raise UsageError(f"{target!r} is neither an existing path nor a Hub repo id (org/name[@revision])")
    return repo, (rev or None), None


def calibrate_hint(base: str | None, *, low: bool = False) -> str:
    """What to run when ``base`` (or a stratum of it) is not calibrated, or only with low confidence."""
    b = base or "BASE"
    more = (f"store more adapters of {b} (`hubaudit crawl --base {b}` or `hubaudit ingest PATH --base {b}`) and "
            f"rerun `hubaudit calibrate --base {b}`")  # fmt: skip
    refs = "--reference CLEAN_ADAPTER (repeatable: adapters you know are clean anchor the thresholds)"
    if low:
        return (f"{more}, or calibrate with {refs}; --accept-low-confidence lets such a pass exit 0")
    return (f"{more}; a stratum needs --min-n adapters (default 30) unless its pool has them, or calibrate "
            f"with {refs}")


def _judge(result: CheckResult, features: dict[str, float], store: Store) -> CheckResult:
    """Fill the verdict from the active threshold set of ``result.base``."""
    ts = store.active_threshold_set(result.base) if result.base else None
    if ts is None:
        result.verdict = Verdict.NOT_CALIBRATED
        result.hint = (calibrate_hint(result.base) if result.base
                       else "pass --base BASE: the adapter does not declare its base model")  # fmt: skip
        result.reasons = [f"base {result.base or '?'} has no active calibration"]
        known = store.bases() if result.base else []
        if result.base and result.base not in known:
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            result.reasons = [f"base {result.base} is unknown to the store"
                              + (f" (it knows: {shown})" if known else " (it knows no base yet)")]  # fmt: skip
            result.hint = (f"run `hubaudit crawl --base {result.base}` or `hubaudit ingest PATH --base {result.base}`, "
                           f"then `hubaudit calibrate --base {result.base}`")  # fmt: skip
        return result
    result.calibration_version, result.calibration_n = ts.version, ts.n
    thresholds = ts.threshold_set
    flagged, breakdown = calibrate.judge_typed(features, result.stratum or "", ts.stored)
    result.flagged = flagged
    result.reasons = [str(r) for r in breakdown.reasons or ()]
    result.margin = breakdown.margin
    result.threshold = thresholds.score_threshold(breakdown.fit or result.stratum)
    result.verdict = Verdict.NOT_CALIBRATED if flagged is None else (Verdict.FLAGGED if flagged else Verdict.PASS)
    if flagged is None:
        result.hint = calibrate_hint(result.base)
    elif breakdown.low_confidence:
        result.low_confidence = True
        result.low_confidence_reason = breakdown.low_confidence_reason or "too few adapters"
        if not flagged:
            result.verdict = Verdict.PASS_LOW_CONFIDENCE
            result.hint = calibrate_hint(result.base, low=True)
    return result


def _apply_lineage(result: CheckResult, store: Store, fingerprint: Fingerprint | None, revision_id: int | None
                   ) -> CheckResult:
    """Flag an adapter whose fingerprint is a copy or derivative of a known-bad source of its base."""
    if not result.base or result.status != RevisionStatus.SCORED or (fingerprint is None and revision_id is None):
        return result
    thr, derived = derived_for(store, result.base, fingerprint, revision_id, store.active_threshold_set(result.base))
    result.similarity_thresholds = report_thresholds(thr).to_dict()
    if derived is not None:
        result.derived_from = derived.to_dict()
        result.reasons = [derived.reason, *result.reasons]
        result.verdict = Verdict.FLAGGED
    return result


def _apply_probe_and_suppression(result: CheckResult, suppressions: list[Suppression], today: date) -> CheckResult:
    result.expired_suppressions = [s.to_dict() for s in suppressions
                                   if s.is_expired(today) and s.matches(result.repo_id, result.sha)]  # fmt: skip
    if result.probe and ProbeResult.from_dict(result.probe).flagged:
        result.verdict = Verdict.FLAGGED
        result.reasons = ["behavioural probe confirmed a backdoor", *result.reasons]
    if result.verdict == Verdict.FLAGGED:
        sup = match_suppression(suppressions, result.repo_id, result.sha, today)
        if sup is not None:
            result.verdict, result.suppressed = Verdict.SUPPRESSED, sup.to_dict()
    return result


def probe_evidence(r: dict[str, Any]) -> dict[str, Any]:
    """The part of a probe result a gate verdict shows: status, battery flag, search target/trigger, score vs τ."""
    p = ProbeResult.from_dict(r)
    if not p.ok:  # a result stored without a status is no ok one
        status = p.status if "status" in p.stored_keys else ProbeStatus.ERROR
        return {"status": status, "reason": p.reason, "error": p.error, "flagged": None}
    ev: dict[str, Any] = {
        "status": ProbeStatus.OK, "flagged": bool(p.flagged), "mode": p.mode, "battery": p.battery_name,
        "battery_flagged": bool(p.battery_flagged), "outlier_gap": p.outlier_gap,
        "mean_attack_rate": p.mean_attack_rate, "thresholds": p.thresholds, "reasons": list(p.reasons or []),
    }  # fmt: skip
    s = p.search
    if s is not None and s.to_dict():
        inv = s.inverted or InvertedTarget()
        ev["search"] = {"status": s.status, "reason": s.reason, "method": s.method, "flagged": s.flagged,
                        "target": inv.target, "target_score": inv.target_score, "trigger": s.trigger,
                        "trigger_rate": s.trigger_rate, "attack_rate": s.attack_rate, "robust_rate": s.robust_rate,
                        "tau": s.tau,
                        # τ_search >= 1 is the uncalibrated default: the search reports but can never flag
                        "tau_uncalibrated": s.tau is not None and s.tau >= 1.0}  # fmt: skip
    return ev


def _apply_live_probe(result: CheckResult, path: Path | None, live_probe: Callable[[str], dict[str, Any]]) -> None:
    """Record the behavioural probe of this check; one that could not run never leaves a pass."""
    if path is None or not path.is_dir():
        ev = {"status": ProbeStatus.ERROR, "reason": "adapter_not_local", "flagged": None,
              "error": "only a local adapter directory can be probed; download it and run `hubaudit check PATH`"}
    else:
        try:
            ev = probe_evidence(live_probe(str(path)))
        except UsageError as exc:  # e.g. the base directory is missing: this adapter could not be probed
            ev = {"status": ProbeStatus.ERROR, "reason": "usage", "error": str(exc), "flagged": None}
    result.probe, result.probed = ev, True
    if ev["status"] != ProbeStatus.OK:
        why = f"behavioural probe could not run: {ev.get('reason')}" + (f" ({ev['error']})" if ev.get("error") else "")
        result.reasons.append(why)
        if result.verdict in (Verdict.PASS, Verdict.PASS_LOW_CONFIDENCE):
            result.verdict = Verdict.NOT_AUDITED
            result.hint = "a probe that did not run is never a pass; check --base-model and the adapter's task type"


def _probe_or_note(result: CheckResult, path: Path | None, live_probe: Callable[[str], dict[str, Any]] | None
                   ) -> CheckResult:
    if live_probe is not None:
        _apply_live_probe(result, path, live_probe)
    else:
        result.note = WEIGHTS_ONLY_NOTE
    return result


def _from_scan(target: str, repo_id: str, path: Path, scan: ScanResult, base: str | None) -> CheckResult:
    sha = content_sha(path, scan, file_digests(path))
    res = CheckResult(target=target, repo_id=repo_id, sha=sha, base=base or scan.base_model, source="scanned",
                      status=revision_status(scan.status), verdict=Verdict.NOT_AUDITED,
                      status_reason=reason_code(scan), error=scan.error, score=scan.score,
                      stratum=scan.stratum if scan.status == ScanStatus.OK else None)  # fmt: skip
    return res


_FATAL = {"unavailable": HubUnavailableError, "auth": HubAuthError, "rate_limited": RateLimitedError}


def _fatal(kind: str, message: str, hub: Any) -> Exception:
    """The run-level error of a Hub failure during ``check``: a gate has no "next run" to resume, so an
    unreachable Hub names the endpoint and the offline way (a local copy)."""
    if kind == "unavailable":
        endpoint = getattr(hub, "endpoint", None) or "HF_ENDPOINT"
        return HubUnavailableError(
            f"the Hub at {terminal(endpoint)} is unreachable: {message}",
            hint="check the network, a proxy, or HF_ENDPOINT; offline, check a local copy of the adapter: "
                 "hubaudit check PATH --base BASE (nothing was judged: exit 4, never a pass)",
        )
    return _FATAL[kind](message)


def _from_hub(target: str, repo_id: str, rev: str | None, base: str | None, hub: Any, cache_root: Path
              ) -> tuple[CheckResult, dict[str, float], Fingerprint | None, dict[str, Any]]:
    """Fetch and score ``repo_id@rev`` from the Hub (HubConfig ``hub``): (result, features, fingerprint,
    provenance); Hub-wide failures raise HubError."""
    from hubaudit.httpclient import classify, ensure_hub_client
    from hubaudit.hub import HubSource
    from hubaudit.pipeline.crawl_task import FetchJob, TaskSettings, fetch_and_score

    ensure_hub_client(hub.timeout)
    try:
        info = HubSource(hub).repo_info(repo_id, rev)
    except Exception as exc:  # noqa: BLE001 - classified: per-repo problems are values, Hub-wide ones raise
        f = classify(exc)
        if f.kind in ("unreachable", "auth", "rate_limited"):
            raise _fatal({"unreachable": "unavailable"}.get(f.kind, f.kind), f"{repo_id}: {f.message}", hub) from None
        return CheckResult(target=target, repo_id=repo_id, sha=rev, base=base, source="hub",
                           status=RevisionStatus.SKIPPED, verdict=Verdict.NOT_AUDITED, status_reason=f.reason,
                           error=f.message), {}, None, {}  # fmt: skip
    expected = base or info.card_base_model or ""
    job = FetchJob(settings=TaskSettings(hub=hub, cache_root=str(cache_root)), base=expected, repo_id=repo_id,
                   sha=info.sha or (rev or "main"), expected_base=expected, card_base_model=info.card_base_model)
    out = fetch_and_score(job)
    if out.fatal:
        raise _fatal(out.fatal, f"{repo_id}: {out.error or out.reason}", hub)
    scan = out.scan
    res = CheckResult(target=target, repo_id=repo_id, sha=out.sha, base=base or out.declared_base, source="hub",
                      status=out.status, verdict=Verdict.NOT_AUDITED, status_reason=out.reason, error=out.error,
                      score=scan.score if scan else None,
                      stratum=scan.stratum if scan is not None and scan.status == ScanStatus.OK else None)  # fmt: skip
    ok = scan is not None and out.status == RevisionStatus.SCORED
    return res, dict(scan.features) if ok else {}, scan.fingerprint if ok else None, dict(out.provenance or {})


def check_target(
    store: Store,
    target: str,
    *,
    base: str | None = None,
    suppressions: list[Suppression] | None = None,
    today: date,
    hub: Any | None = None,
    cache_root: Path | None = None,
    accept_low_confidence: bool = False,
    live_probe: Callable[[str], dict[str, Any]] | None = None,
) -> CheckResult:
    """The verdict for one adapter (never raises for a per-adapter problem; see module docstring).

    ``hub`` (a ``hubaudit.httpclient.HubConfig``) enables fetching Hub repos the store lacks, into
    ``cache_root``; without it such a repo is "not audited". ``accept_low_confidence``: a
    ``pass_low_confidence`` verdict exits 0 instead of 3 (it stays that verdict). ``live_probe``
    (adapter directory -> probe result, e.g. ``pipeline.probe.probe_one`` bound to a base) probes the
    adapter now: its flag makes the verdict ``flagged``; a probe that could not run turns a pass into
    ``not_audited``. Without it the verdict judges the weights only and ``note`` says so.
    """
    suppressions = list(suppressions or [])
    repo_id, rev, path = parse_target(target)
    features: dict[str, float] = {}
    if path is not None:
        from hubaudit.stats import scan_path

        scan = scan_path(path)
        res = _from_scan(target, repo_id, path, scan, base)
        row = store.find_revision(repo_id, res.sha)
        if row is not None:  # a stored probe result (and the base it was filed under) still count
            res.probe, res.source = row.probe, "store"
            res.base = base or res.base or row.base
        features = dict(scan.features)
        fingerprint, own_id = scan.fingerprint, (row.revision_id if row is not None else None)
    else:
        row = store.find_revision(repo_id, rev)
        if row is None and hub is not None:
            res, features, fingerprint, provenance = _from_hub(target, repo_id, rev, base, hub,
                                                               cache_root or Path(".hubaudit-cache"))  # fmt: skip
            stored = store.find_revision(repo_id, res.sha) if res.sha else None
            own_id = stored.revision_id if stored is not None else None
            if stored is not None:  # the revision was known under its sha: its probe result counts
                res.probe = stored.probe
                res.base = res.base or stored.base
            security = hub_security_from(provenance)
            res.hub_security = security.to_dict() if security is not None else None
        elif row is None:
            res = CheckResult(
                target=target, repo_id=repo_id, sha=rev, base=base, source="none", status="unknown",
                verdict=Verdict.NOT_AUDITED, reasons=["not in the store"],
                hint=f"crawl it first (`hubaudit crawl --base {base or 'BASE'}`), or download it and run "
                     "`hubaudit check PATH`",
            )  # fmt: skip
            return _probe_or_note(res, None, live_probe)
        else:
            res = CheckResult(target=target, repo_id=row.repo_id, sha=row.sha, base=base or row.base, source="store",
                              status=row.status, verdict=Verdict.NOT_AUDITED, status_reason=row.reason, error=row.error,
                              score=row.score, stratum=row.stratum, probe=row.probe)  # fmt: skip
            features = dict(row.features or {})
            fingerprint, own_id = None, row.revision_id  # the stored fingerprint of the revision
            security = hub_security_from(row.provenance)
            res.hub_security = security.to_dict() if security is not None else None
    if res.status != RevisionStatus.SCORED:
        res.reasons = [f"not audited: {res.status_reason or res.status}" + (f" ({res.error})" if res.error else "")]
        res.hint = "unaudited is never a pass; a pickle-only adapter can be converted to safetensors and checked"
    else:
        res = _judge(res, features, store)
        res.accept_low_confidence = accept_low_confidence
        res = _apply_lineage(res, store, fingerprint, own_id)
    return _apply_probe_and_suppression(_probe_or_note(res, path, live_probe), suppressions, today)
