"""``--format sarif``: SARIF 2.1.0 for GitHub code scanning and other SARIF consumers.

Conventions (those GitHub code scanning documents for SARIF uploads): stable rule ids;
``security-severity`` per rule; only findings, never passes;
``partialFingerprints["hubaudit/v1"] = sha256("<rule>|<repo_id>|<sha>")`` (no timestamps, so an
alert keeps its identity across nightly runs); ``automationDetails.id`` is ``hubaudit/<base>/``
(the trailing slash makes the whole string GitHub's category, so per-base uploads do not replace
each other). Locations are the adapter revision on the Hub, relative to the ``HFHUB`` base URI.
Suppressed findings are kept, with a SARIF ``suppressions`` entry.

Data in a result is data: ``properties`` carry repo ids and shas unchanged (JSON-escaped), message
texts quote them through :func:`hubaudit.textsafe.sarif_message` (no control characters, no embedded
links), and location URIs are percent-encoded (RFC 3986), so a repo id cannot become a scheme.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hubaudit.report.evidence import probe_sentences, source_kind_text
from hubaudit.report.formats._common import (
    downstream_dict,
    fmt_margin,
    fmt_num,
    source_text,
)
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import HUB_URL, AdapterEntry, Report
from hubaudit.textsafe import json_dumps, sarif_message

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
PICKLE_REASONS = frozenset({"pickle_format", "unsafe_format"})


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    short: str
    full: str
    level: str  # SARIF level: error | warning | note
    security_severity: str  # "0.0".."10.0"; GitHub: >=9 critical, >=7 high, >=4 medium, else low
    precision: str


RULES: tuple[Rule, ...] = (
    Rule("HA001", "LoraWeightOutlier", "LoRA weight statistics are outliers for this base model",
         "The adapter's weight-level statistic that decides (the combined statistic of its weight features, or one "
         "feature on its own; the features extend arXiv 2605.30189's) is past the threshold calibrated on the "
         "population of adapters of the same base and stratum. This is triage, not proof: escalate to behavioural "
         "probing.",
         "warning", "7.0", "medium"),
    Rule("HA002", "ProbeConfirmedBackdoor", "Behavioural probing confirmed a backdoor",
         "Prefix probes, the blind trigger search or target inversion showed backdoor behaviour (an attack rate or an "
         "inversion score past its calibrated threshold).",
         "error", "9.5", "high"),
    Rule("HA003", "UnsafeSerialization", "Adapter weights are in an unsafe (pickle) format",
         "The adapter ships pickle weights (adapter_model.bin), which can execute code when loaded; "
         "hubaudit never unpickles them, so the weights were not audited.",
         "warning", "6.0", "high"),
    Rule("HA004", "NotAudited", "Adapter revision could not be audited",
         "The revision was skipped or failed (gated, malformed, unsupported PEFT type, hash mismatch, ...). "
         "Unaudited is never clean.", "note", "3.0", "high"),
    Rule("HA005", "BaseProvenanceMismatch", "Adapter declares a different base model",
         "The adapter's config names a base model other than the one it is listed under on the Hub.",
         "warning", "5.0", "medium"),
    Rule("HA006", "DerivedFromKnownBad", "Copy or derivative of a known-bad adapter",
         "The adapter's weight fingerprint lies within the calibrated similarity of an adapter already known to be "
         "bad (probe-confirmed, on a blocklist, or flagged by its weights): a copy (re-uploaded, rescaled or re-saved) "
         "or a derivative (merged or fine-tuned further) of it. A passing weight score does not clear it.",
         "error", "8.5", "high"),
    Rule("HA010", "UncalibratedBase", "No calibration for this base model or stratum",
         "There are not enough audited adapters (or no threshold set) to judge adapters of this base or stratum; "
         "they are not judged clean.", "note", "4.0", "high"),
    Rule("HA011", "LowConfidencePass", "Passed only against thresholds fitted on too few adapters",
         "The thresholds that judged the adapter were fitted on fewer adapters than the target false-positive rate "
         "needs (the order-statistic rule n >= ceil(1/FPR) - 1, at most 30), so they can sit far above every score: "
         "the pass does not show the adapter is clean. Store more adapters or calibrate with known-clean references.",
         "warning", "4.0", "high"),
)
RULE_INDEX = {r.id: i for i, r in enumerate(RULES)}


def fingerprint(rule_id: str, repo_id: str, sha: str | None) -> str:
    """sha256 hex of ``rule|repo|sha``: stable across runs, unique per finding."""
    # surrogatepass: a local path with undecodable bytes still has a fingerprint (same bytes as before otherwise)
    return hashlib.sha256(f"{rule_id}|{repo_id}|{sha or ''}".encode("utf-8", "surrogatepass")).hexdigest()


def rules_for(e: AdapterEntry, calibrated: bool, base: str = "?") -> list[tuple[str, str]]:
    """(rule id, message) for every finding on one adapter revision; [] for a pass."""
    target = f"{e.repo_id}@{e.sha or '?'}"
    out: list[tuple[str, str]] = []
    if e.flagged:
        dec = e.decision
        stat = (f"{dec.statistic} {fmt_num(dec.value)} above its threshold {fmt_num(dec.threshold)}" if dec is not None
                else "the deciding statistic above its threshold")
        names = e.fired
        fired = ", ".join(names[:5]) + (f", +{len(names) - 5} more" if len(names) > 5 else "") if names else "none"
        out.append(("HA001", (f"{target}: weights past the thresholds of base {base} (stratum {e.stratum}): {stat}, "
                              f"margin {fmt_margin(e.margin)} {e.margin_unit or ''}".rstrip()
                              + f"; features past their own thresholds: {fired}.")))
    if e.derived_from is not None:
        d = e.derived_from
        out.append(("HA006", (f"{target}: {d.kind} of known-bad adapter {source_text(d)} "
                              f"({source_kind_text(d.source_kind)}); fingerprint similarity {d.similarity:.3f} "
                              f"(the {d.kind} threshold is {d.threshold:.3f}).")))
    if e.probe_flagged:
        out.append(("HA002", f"{target}: behavioural probes confirmed a backdoor ({_probe_summary(e.probe)})."))
    if not e.audited:
        why = e.reason or e.status
        if e.reason in PICKLE_REASONS:
            out.append(("HA003", f"{target}: pickle-format weights; not loaded and not audited."))
        else:
            out.append(("HA004", f"{target}: not audited ({why}){': ' + e.error if e.error else ''}."))
    elif e.flagged is None and calibrated and not e.probe_flagged:
        out.append(("HA010", f"{target}: stratum {e.stratum} has no calibration; not judged."))
    elif e.low_confidence_pass:
        out.append(("HA011", f"{target}: passed with low confidence ({e.low_confidence_reason}); not judged clean."))
    if e.provenance_mismatch:
        out.append(("HA005", f"{target}: declares base {e.declared_base}."))
    return out


def _probe_summary(probe: dict[str, Any] | None) -> str:
    """The probe's evidence sentences (report/evidence.py), from the structured probe result."""
    return "; ".join(probe_sentences(probe)) or "no details"


def _location(repo_id: str, sha: str | None, hub: bool = True) -> dict[str, Any]:
    # quote(): every character outside RFC 3986's unreserved set and "/" is percent-encoded, so ":"
    # in a crafted repo id cannot start a scheme (javascript:) and the URI is always well-formed.
    if repo_id.startswith("local:"):
        uri = "file://" + quote(repo_id[len("local:"):], safe="/", errors="surrogateescape")
        return {"physicalLocation": {"artifactLocation": {"uri": uri}}}
    path = f"{repo_id}/tree/{sha}" if sha else repo_id
    location: dict[str, Any] = {"uri": quote(path, safe="/", errors="surrogateescape")}
    if hub:  # a repo the store did not get from a Hub is no Hub location: a relative URI, no base
        location["uriBaseId"] = "HFHUB"
    return {"physicalLocation": {"artifactLocation": location}}


def _result(rule_id: str, message: str, e: AdapterEntry | None, report: Report) -> dict[str, Any]:
    rule = RULES[RULE_INDEX[rule_id]]
    repo, sha = (e.repo_id, e.sha) if e is not None else (report.base, None)
    res: dict[str, Any] = {
        "ruleId": rule.id,
        "ruleIndex": RULE_INDEX[rule_id],
        "level": rule.level,
        "message": {"text": sarif_message(message)},
        "locations": [_location(repo, sha, e.hub_sourced if e is not None else True)],
        "partialFingerprints": {"hubaudit/v1": fingerprint(rule.id, repo, sha)},
        "properties": {"base": report.base, "repo_id": repo, "sha": sha},
    }
    if e is not None:
        res["properties"].update(
            {"score": e.score, "margin": e.margin, "threshold": e.threshold, "stratum": e.stratum, "url": e.url,
             "low_confidence": e.low_confidence, "low_confidence_reason": e.low_confidence_reason}
        )
        if rule_id == "HA006" and e.derived_from is not None:
            d = e.derived_from
            res["properties"].update({"derived_from": d.to_dict(), "similarity": d.similarity,
                                      "source_repo_id": d.source_repo_id, "source_sha": d.source_sha})
        if e.hub_security is not None:  # the Hub's own scan, beside (never instead of) the finding
            res["properties"]["hub_security"] = e.hub_security.to_dict()
        if e.downstream:
            res["properties"]["downstream"] = [downstream_dict(ds) for ds in e.downstream]
        if e.suppressed is not None:
            res["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{e.suppressed.reason} (until {e.suppressed.expires.isoformat()})",
                }
            ]
    return res


class SarifFormat(ReportFormat):
    name = "sarif"
    suffix = ".sarif"
    media_type = "application/sarif+json"

    def render(self, report: Report) -> str:
        results = []
        cal = report.calibration
        if not cal.calibrated:
            results.append(_result("HA010", f"{report.base}: no active threshold set; adapters are not judged.",
                                   None, report))
        for e in report.adapters:
            for rule_id, message in rules_for(e, cal.calibrated, report.base):
                results.append(_result(rule_id, message, e, report))
        run = {
            "tool": {
                "driver": {
                    "name": "hubaudit",
                    "version": report.tool_version,
                    "rules": [rule_dict(r) for r in RULES],
                }
            },
            "automationDetails": {"id": f"hubaudit/{report.base}/"},
            "originalUriBaseIds": {"HFHUB": {"uri": HUB_URL + "/"}},
            "results": results,
            "properties": {
                "base": report.base,
                "calibration_version": cal.version,
                "calibration_n": cal.n,
                "population": report.summary.population,
                "derived": report.summary.derived,
                "similarity_thresholds": (None if report.similarity_thresholds is None
                                          else report.similarity_thresholds.to_dict()),
            },
        }
        doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
        return json_dumps(doc, indent=2) + "\n"


def rule_dict(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.short},
        "fullDescription": {"text": r.full},
        "help": {"text": r.full, "markdown": f"**{r.short}.** {r.full}"},
        "defaultConfiguration": {"level": r.level},
        "properties": {
            "security-severity": r.security_severity,
            "precision": r.precision,
            "tags": ["security", "supply-chain", "ml", "lora"],
        },
    }
