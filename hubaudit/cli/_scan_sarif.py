"""``hubaudit scan --format sarif``: SARIF 2.1.0 with the rules (ids, levels, severities) of ``report --format sarif``.

Only findings become results, never passes: weights past the thresholds (HA001), a stored probe that
confirmed a backdoor (HA002), a copy or derivative of a known-bad adapter (HA006), pickle weights not
loaded (HA003), an input not scored (HA004), a declared base other than ``--base`` (HA005), no
calibration or no store to judge with (HA010), a pass against thresholds fitted on too few adapters
(HA011). Locations are ``file://`` URIs of the absolute path, percent-encoded; message texts quote
data through :func:`hubaudit.textsafe.sarif_message`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from hubaudit import __version__
from hubaudit.models import ScanResult
from hubaudit.pipeline.ingest import local_repo_id, reason_code
from hubaudit.pipeline.scan import WHY_TEXT, ScanJudgement
from hubaudit.report.formats.sarif import (
    RULE_INDEX,
    RULES,
    SARIF_SCHEMA,
    fingerprint,
    rule_dict,
)
from hubaudit.textsafe import json_dumps, sarif_message
from hubaudit.vocab import ScanStatus, Verdict


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def rules_for(r: ScanResult, j: ScanJudgement) -> list[tuple[str, str]]:
    """(rule id, message) for every finding on one scanned adapter; [] for a pass."""
    target = r.source
    out: list[tuple[str, str]] = []
    if r.status != ScanStatus.OK:
        if reason_code(r) == "pickle_format":
            out.append(("HA003", (f"{target}: pickle-format weights; not loaded and not audited "
                                 "(rerun with --allow-pickle to load them in a sandboxed subprocess).")))
        else:
            out.append(("HA004", f"{target}: not audited ({reason_code(r) or r.status}): {r.error}."))
    if j.weights_flagged:
        out.append(("HA001", (f"{target}: weight features past the thresholds of base {j.base} (stratum {j.stratum}), "
                             f"largest exceedance {_num(j.margin)} σ; score {_num(r.score)} (threshold "
                             f"{_num(j.threshold)}); calibration v{j.calibration_version}, N={j.calibration_n}.")))
    if j.probe_flagged:
        out.append(("HA002", f"{target}: a stored behavioural probe result confirmed a backdoor in this revision."))
    if j.derived_from:
        d = j.derived_from
        out.append(("HA006", (f"{target}: {d.get('kind')} of known-bad adapter {d.get('source_repo_id')}@"
                              f"{d.get('source_sha') or '?'} (similarity {_num(d.get('similarity'))}).")))
    if r.status == ScanStatus.OK and j.verdict == Verdict.NOT_JUDGED:
        out.append(("HA010", (f"{target}: not judged ({WHY_TEXT.get(j.why or '', j.why)}); base {j.base or '?'}, "
                             f"stratum {j.stratum}.")))
    elif j.verdict == Verdict.PASS_LOW_CONFIDENCE:
        out.append(("HA011", f"{target}: passed with low confidence ({j.low_confidence_reason}); not judged clean."))
    if j.base_mismatch:
        out.append(("HA005", f"{target}: declares base {j.declared_base}; judged against --base {j.base}."))
    return out


def _result(rule_id: str, message: str, r: ScanResult, j: ScanJudgement) -> dict[str, Any]:
    rule = RULES[RULE_INDEX[rule_id]]
    path = Path(r.source).expanduser().absolute()
    # quote(): everything outside RFC 3986's unreserved set and "/" is percent-encoded (undecodable
    # path bytes included, via surrogateescape), so the URI is always well-formed.
    uri = "file://" + quote(str(path), safe="/", errors="surrogateescape")
    sha = r.content_sha256
    jd = j.to_dict()  # finite numbers only
    return {
        "ruleId": rule.id,
        "ruleIndex": RULE_INDEX[rule_id],
        "level": rule.level,
        "message": {"text": sarif_message(message)},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
        "partialFingerprints": {"hubaudit/v1": fingerprint(rule.id, local_repo_id(path), sha)},
        "properties": {
            "path": r.source, "sha256": sha, "status": r.status, "score": r.score,
            "stratum": r.stratum if r.status == ScanStatus.OK else None, "verdict": j.verdict, "why_not_judged": j.why,
            "base": j.base, "declared_base": j.declared_base, "margin": jd["margin"], "threshold": jd["threshold"],
            "calibration_version": j.calibration_version, "calibration_n": j.calibration_n,
            "low_confidence_reason": j.low_confidence_reason,
        },
    }


def render_sarif(results: list[ScanResult], judgements: list[ScanJudgement]) -> str:
    """The SARIF log of one ``hubaudit scan`` run (one SARIF run, every rule of the report's driver)."""
    out = [_result(rule_id, message, r, j)
           for r, j in zip(results, judgements) for rule_id, message in rules_for(r, j)]  # fmt: skip
    run = {
        "tool": {"driver": {"name": "hubaudit", "version": __version__, "rules": [rule_dict(r) for r in RULES]}},
        "automationDetails": {"id": "hubaudit/scan/"},
        "results": out,
        "properties": {"adapters": len(results),
                       "judged": sum(1 for j in judgements if j.verdict != Verdict.NOT_JUDGED)},
    }
    return json_dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2) + "\n"
