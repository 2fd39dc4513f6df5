"""``--format cyclonedx``: a CycloneDX 1.6 JSON SBOM of a base's adapters, with VEX for the findings.

The document (CycloneDX 1.6 JSON):

- ``metadata.component`` is the base model, ``metadata.tools`` hubaudit; ``components`` are the adapter
  revisions the report lists, ``type`` "machine-learning-model", each ``dependsOn`` the base.
- Identity: a valid Hub repo id with a 40-hex commit sha gets the purl ``pkg:huggingface/<namespace>/
  <name>@<sha>`` (purl-spec type "huggingface": namespace and name case-sensitive, version the
  lowercase commit sha) as purl and ``bom-ref``, and its Hub URL as a "distribution" external
  reference. Anything else (``local:<path>`` ingests, ids off the Hub's grammar) gets an opaque
  ``bom-ref`` ``hubaudit:adapter:<digest>``: no purl and no URL is ever built from such data. (A
  revision listed twice gets ``hubaudit:ref:<digest>`` the second time: bom-refs are unique.)
- Hashes: each stored file of a revision is a nested component of type "file" with its SHA-256. A
  repo has no single digest, and several SHA-256 entries on one component would read as one
  artifact's alternatives.
- hubaudit's own verdict is in ``properties`` (``hubaudit:verdict``, ``hubaudit:score``, ...). An
  adapter that could not be audited has ``hubaudit:verdict`` "not_audited" and its status and reason:
  it is listed, never implied clean.
- ``vulnerabilities``: one per finding kind and adapter revision, ``id`` ``HUBAUDIT-<KIND>-<12 hex of
  sha256(kind|repo|sha)>`` (stable across runs), ``source`` hubaudit, ``affects`` the adapter:

  ========  ==========================================================  ===============  ========
  kind      finding                                                     analysis.state   severity
  ========  ==========================================================  ===============  ========
  WEIGHTS   weight statistics past the calibrated thresholds            in_triage        high
            (arXiv 2605.30189): an outlier, triage, not proof
  PROBE     a behavioural probe confirmed a backdoor                    exploitable      critical
  DERIVED   fingerprint within the copy/derivative similarity of a      exploitable if   source's,
            known-bad adapter                                           the source is    one step
                                                                        probe-confirmed  lower for
                                                                        or blocklisted,  a deriva-
                                                                        else in_triage   tive
  ========  ==========================================================  ===============  ========

  A suppressed finding keeps its state and gets ``response`` ["will_not_fix"] with the reason and
  expiry in ``analysis.detail``: a suppression is someone accepting the risk until a date, not
  evidence that the adapter is clean, so "false_positive" or "not_affected" (with a justification
  hubaudit never established) would claim more than it knows.
- ``serialNumber`` is a UUIDv5 of the document's own content, timestamp included: one Report renders
  to the same bytes, and two runs (two timestamps) get two serial numbers, as CycloneDX asks.

Data stays data: identifiers and property values carry repo ids, shas and file names unchanged (JSON
escapes them); prose (``description``, ``detail``, ``analysis.detail``) quotes them through
:func:`hubaudit.textsafe.terminal`, so no control or bidi character reaches a reader.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable
from typing import Any

from hubaudit.report.formats._common import fmt_margin, fmt_num, iso, trigger_text
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.model import AdapterEntry, DerivedFrom, Report, StoredFile, hub_url, is_hub_repo_id
from hubaudit.textsafe import json_dumps, terminal
from hubaudit.vocab import Verdict

SPEC_VERSION = "1.6"
SCHEMA_URI = "http://cyclonedx.org/schema/bom-1.6.schema.json"
SOURCE = {"name": "hubaudit"}
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
# Namespace of the UUIDv5 serial numbers (a random UUID, drawn once): changing it changes every serial.
_SERIAL_NS = uuid.UUID("8f77e294-94f1-4467-93a6-1d2d52cccf21")
_RATING_RULE = {
    "WEIGHTS": "weight-statistics outlier: triage (high), not proof",
    "PROBE": "backdoor confirmed by behavioural probing (critical)",
    "DERIVED": "{d.kind} of a {d.source_kind} adapter: the source's severity, one step lower for a derivative",
}
_SEVERITY_DOWN = {"critical": "high", "high": "medium", "medium": "low", "low": "low"}


def _digest(*parts: str | None) -> str:
    # surrogatepass: a local path with undecodable bytes still has a digest
    return hashlib.sha256("|".join(p or "" for p in parts).encode("utf-8", "surrogatepass")).hexdigest()


def purl(repo_id: str, sha: str | None) -> str | None:
    """``pkg:huggingface/<namespace>/<name>[@<sha>]`` for a valid Hub repo id, else None.

    The Hub's grammar (letters, digits, ``_ - .``) is within purl's unreserved set, so nothing needs
    percent-encoding. ``sha`` None names the repo (the base, whose revision a report does not know);
    a sha that is not a full lowercase commit hash gives no purl at all, rather than a versionless
    purl that would name every revision of the repo.
    """
    if repo_id.startswith("local:") or not is_hub_repo_id(repo_id):
        return None
    if sha is None:
        return f"pkg:huggingface/{repo_id}"
    return f"pkg:huggingface/{repo_id}@{sha}" if _COMMIT_SHA.fullmatch(sha) else None


def vulnerability_id(kind: str, repo_id: str, sha: str | None) -> str:
    """``HUBAUDIT-<KIND>-<12 hex>``: the same finding on the same revision keeps its id across runs."""
    return f"HUBAUDIT-{kind}-{_digest(kind, repo_id, sha)[:12]}"


def verdict(e: AdapterEntry) -> str:
    """Machine-readable state of one adapter revision (``hubaudit:verdict``)."""
    if e.is_finding:
        return Verdict.SUPPRESSED if e.suppressed is not None else Verdict.FLAGGED
    if not e.audited:
        return Verdict.NOT_AUDITED
    if e.flagged is None:
        return Verdict.NOT_JUDGED
    return Verdict.PASS_LOW_CONFIDENCE if e.low_confidence_pass else Verdict.PASS


def _props(pairs: Iterable[tuple[str, Any]]) -> list[dict[str, str]]:
    """CycloneDX properties (string values); None is left out, booleans are ``true``/``false``."""
    out = []
    for name, value in pairs:
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.append({"name": f"hubaudit:{name}", "value": text})
    return out


def _base_component(report: Report) -> dict[str, Any]:
    p = purl(report.base, None)
    comp: dict[str, Any] = {"type": "machine-learning-model",
                            "bom-ref": p or f"hubaudit:base:{_digest(report.base)[:16]}"}
    ns, _, name = report.base.rpartition("/") if p else ("", "", report.base)
    if ns:
        comp["group"] = ns
    comp["name"] = name
    if p:
        comp["purl"] = p
        comp["externalReferences"] = [{"type": "distribution", "url": hub_url(report.base, None)}]
    comp["properties"] = _props([("role", "base_model"), ("repo_id", report.base)])
    return comp


def _file_component(f: StoredFile) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": "file", "name": f.name}
    if f.sha256 is not None and _SHA256.fullmatch(f.sha256):
        comp["hashes"] = [{"alg": "SHA-256", "content": f.sha256.lower()}]
    props = _props([("size_bytes", f.size)])
    if props:
        comp["properties"] = props
    return comp


def _adapter_purl(e: AdapterEntry) -> str | None:
    """The purl of an adapter huggingface.co itself listed; none for local or mirror-crawled ones
    (their name may look like a Hub id, but nothing says huggingface.co holds that revision)."""
    return purl(e.repo_id, e.sha) if e.hub_sourced else None


def _adapter_component(e: AdapterEntry, ref: str, findings: list[str]) -> dict[str, Any]:
    p = _adapter_purl(e)
    comp: dict[str, Any] = {"type": "machine-learning-model", "bom-ref": ref}
    if p:
        ns, _, name = e.repo_id.rpartition("/")
        if ns:
            comp["group"] = ns
        comp["name"] = name
    else:
        comp["name"] = e.repo_id or "?"
    if e.sha:
        comp["version"] = e.sha
    if p:
        comp["purl"] = p
    if e.url:
        comp["externalReferences"] = [{"type": "distribution", "url": e.url}]
    if e.files:
        comp["components"] = [_file_component(f) for f in e.files]
    sup = e.suppressed
    comp["properties"] = _props([
        ("repo_id", e.repo_id),
        ("verdict", verdict(e)),
        ("findings", ",".join(findings) or None),
        ("status", e.status),
        ("status_reason", e.reason),
        ("error", e.error),
        ("score", e.score),
        ("threshold", e.threshold),
        ("margin", e.margin),
        ("stratum", e.stratum),
        ("threshold_set_version", e.threshold_set_version),
        ("flagged", e.flagged),
        ("probe_flagged", e.probe_flagged),
        ("low_confidence_reason", e.low_confidence_reason),
        ("derived_from", e.derived_from.reason if e.derived_from else None),
        ("hub_security", e.hub_security.status if e.hub_security else None),
        ("declared_base", e.declared_base),
        ("provenance_mismatch", e.provenance_mismatch),
        ("removed", e.removed or None),
        ("suppressed_until", sup.expires.isoformat() if sup else None),
        ("suppression_reason", sup.reason if sup else None),
        ("first_seen", iso(e.first_seen)),
        *(("downstream", f"{d.relation} {d.repo_id}") for d in e.downstream),
    ])  # fmt: skip
    return comp


def _probe_text(probe: dict[str, Any] | None) -> str:
    parts = [f"{k}={probe[k]}" for k in ("mean_attack_rate", "outlier_gap", "battery") if probe and k in probe]
    trig = trigger_text(probe)
    if trig != "-":
        parts.append(f"recovered trigger {trig}")
    return ", ".join(parts) or "no details stored"


def _derived_state(d: DerivedFrom) -> tuple[str, str]:
    """(analysis.state, severity) of a copy/derivative: a confirmed or blocklisted source is exploitable."""
    confirmed = d.source_kind in ("probe_confirmed", "blocklist")
    severity = "critical" if confirmed else "high"
    return ("exploitable" if confirmed else "in_triage"), (severity if d.kind == "copy" else _SEVERITY_DOWN[severity])


def findings_of(e: AdapterEntry, report: Report) -> list[tuple[str, str, str, str, list[str]]]:
    """(kind, state, severity, description, evidence lines) for each finding on one adapter revision."""
    target = f"{e.repo_id}@{e.sha or '?'}"
    out = []
    if e.flagged:
        fired = ", ".join(e.fired) or "score"
        low = f"; low confidence: {e.low_confidence_reason}" if e.low_confidence else ""
        text = (f"{target}: LoRA weight statistics past the thresholds calibrated for base {report.base} "
                f"(stratum {e.stratum}, calibration v{e.threshold_set_version}): largest exceedance "
                f"{fmt_margin(e.margin)} {e.margin_unit or 'σ'}, score {fmt_num(e.score)} "
                f"(threshold {fmt_num(e.threshold)}), fired: {fired}{low}. A statistical outlier, not proof of a "
                "backdoor: probe it.")  # fmt: skip
        out.append(("WEIGHTS", "in_triage", "high", text, list(e.reasons)))
    if e.probe_flagged:
        out.append(("PROBE", "exploitable", "critical",
                    f"{target}: behavioural probes confirmed a backdoor ({_probe_text(e.probe)}).",
                    [_probe_text(e.probe)]))  # fmt: skip
    d = e.derived_from
    if d is not None:
        state, severity = _derived_state(d)
        src = {"probe_confirmed": "a probe-confirmed backdoor", "blocklist": "a blocklisted adapter",
               "weights_flagged": "a weight-flagged adapter"}.get(d.source_kind, d.source_kind)  # fmt: skip
        out.append(("DERIVED", state, severity,
                    f"{target}: a {d.kind} of {src}: {d.reason}, threshold {d.threshold:.3f}.",
                    [d.reason]))  # fmt: skip
    return out


def _vulnerability(e: AdapterEntry, ref: str, finding: tuple[str, str, str, str, list[str]],
                   taken: set[str]) -> dict[str, Any]:
    kind, state, severity, description, evidence = finding
    vid = vulnerability_id(kind, e.repo_id, e.sha)
    rule = _RATING_RULE[kind] if kind != "DERIVED" else _RATING_RULE[kind].format(d=e.derived_from)
    props = _props([("kind", kind.lower()), ("repo_id", e.repo_id), ("sha", e.sha),
                    ("suppressed", e.suppressed is not None)])  # fmt: skip
    analysis: dict[str, Any] = {"state": state}
    if e.suppressed is not None:
        analysis["response"] = ["will_not_fix"]
        analysis["detail"] = terminal(f"suppressed until {e.suppressed.expires.isoformat()} (accepted risk, not a "
                                      f"finding that was disproved): {e.suppressed.reason}")  # fmt: skip
    vuln: dict[str, Any] = {
        "bom-ref": _unique(vid, taken, ref),
        "id": vid,
        "source": dict(SOURCE),
        "ratings": [{"source": dict(SOURCE), "severity": severity, "method": "other", "justification": rule}],
        "description": terminal(description),
        "detail": "\n".join(terminal(line) for line in evidence) or terminal(description),
        "recommendation": "Do not load this adapter revision; block it by its sha until it has been reviewed.",
        "analysis": analysis,
        "affects": [{"ref": ref}],
        "properties": props,
    }
    return vuln


def _unique(ref: str, taken: set[str], *salt: str) -> str:
    """``ref``, or (the same revision listed twice) a digest of it and ``salt``: bom-refs must be unique."""
    if ref in taken:
        ref = f"hubaudit:ref:{_digest(ref, *salt)[:16]}"
    taken.add(ref)
    return ref


def _refs(entries: Iterable[AdapterEntry], taken: set[str]) -> list[str]:
    """A unique bom-ref per entry: its purl when it has one, else an opaque digest of repo and sha."""
    return [_unique(_adapter_purl(e) or f"hubaudit:adapter:{_digest(e.repo_id, e.sha)[:16]}", taken, str(i))
            for i, e in enumerate(entries)]  # fmt: skip


def _metadata_props(report: Report) -> list[dict[str, str]]:
    cal, s, sim = report.calibration, report.summary, report.similarity_thresholds
    return _props([
        ("calibrated", cal.calibrated),
        ("calibration_version", cal.version),
        ("calibration_n", cal.n),
        ("calibration_method", cal.method),
        ("flagged_only", report.flagged_only),
        ("since", iso(report.since)),
        ("population", s.population),
        ("audited", s.audited),
        ("flagged", s.flagged),
        ("flagged_unsuppressed", s.flagged_unsuppressed),
        ("suppressed", s.suppressed),
        ("not_judged", s.not_judged),
        ("not_audited", s.not_audited),
        ("low_confidence", s.low_confidence),
        ("derived", s.derived),
        ("similarity_copy", sim.copy if sim else None),
        ("similarity_derivative", sim.derivative if sim else None),
        ("similarity_source", sim.source if sim else None),
        *(("expired_suppression", f"{x.repo}@{x.sha or '*'} expired {x.expires.isoformat()}")
          for x in report.expired_suppressions),
    ])  # fmt: skip


def render_bom(report: Report) -> dict[str, Any]:
    """The CycloneDX document as a dict (``serialNumber`` included)."""
    base = _base_component(report)
    taken = {base["bom-ref"]}
    refs = _refs(report.adapters, taken)
    components, vulns = [], []
    for e, ref in zip(report.adapters, refs, strict=True):
        found = findings_of(e, report)
        components.append(_adapter_component(e, ref, [f[0].lower() for f in found]))
        vulns += [_vulnerability(e, ref, f, taken) for f in found]
    body: dict[str, Any] = {
        "version": 1,
        "metadata": {
            "timestamp": iso(report.generated_at),
            "tools": {"components": [{"type": "application", "name": "hubaudit", "version": report.tool_version}]},
            "component": base,
            "properties": _metadata_props(report),
        },
        "components": components,
        "dependencies": [{"ref": ref, "dependsOn": [base["bom-ref"]]} for ref in refs],
        "vulnerabilities": vulns,
    }
    head = {"$schema": SCHEMA_URI, "bomFormat": "CycloneDX", "specVersion": SPEC_VERSION}
    serial = uuid.uuid5(_SERIAL_NS, json_dumps(head | body, sort_keys=True))
    return head | {"serialNumber": serial.urn} | body


class CycloneDxFormat(ReportFormat):
    name = "cyclonedx"
    suffix = ".cdx.json"
    media_type = "application/vnd.cyclonedx+json"

    def render(self, report: Report) -> str:
        return json_dumps(render_bom(report), indent=2) + "\n"
