"""Copies/derivatives of known-bad adapters, the Hub's own scan status and downstream repos in every format.

Reports are built by hand (sample.py's rows through build_report, then the lineage fields set on the
entries), so these tests do not depend on how build.py fills them in.
"""

from __future__ import annotations

import csv
import dataclasses as dc
import io
import json
import re
from pathlib import Path

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from hubaudit.report import build_report, get_format
from hubaudit.report.export import EXPORT_COLUMNS, render_export
from hubaudit.report.formats.csv import REPORT_CSV_COLUMNS
from hubaudit.report.formats.sarif import RULES, fingerprint
from hubaudit.report.model import (
    DerivedFrom,
    DownstreamRepo,
    HubSecurity,
    Report,
    SimilarityThresholds,
)
from hubaudit.textsafe import terminal
from tests.report import sample as S
from tests.report.hostile import (
    assert_csv_safe,
    assert_html_safe,
    assert_markdown_safe,
    assert_terminal_safe,
    controls,
    hostile_text,
)

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())

COPY = "org1/adapter-1"  # a weight pass that is a copy of a probe-confirmed adapter: a finding all the same
DERIV = "org2/adapter-2"  # a derivative of a blocklisted adapter
PASS_HUB_ISSUE = "org0/adapter-3"  # passes hubaudit; the Hub's scan reports an unsafe file
SOURCE = "evil/probe-confirmed"
THRESHOLDS = SimilarityThresholds(copy=0.99, derivative=0.95, source="calibrated", null_pairs=1234, null_max=0.912)
BAD_ID = "x/<b>q"  # not a Hub repo id: shown, never linked


def _copy() -> DerivedFrom:
    return DerivedFrom(SOURCE, S.sha(31), 0.9981, "copy", "probe_confirmed", 0.99)


def _deriv() -> DerivedFrom:
    return DerivedFrom("blocked/thing", None, 0.9612, "derivative", "blocklist", 0.95)


def lineage_report(thresholds: SimilarityThresholds | None = THRESHOLDS, **changes_by_repo: dict) -> Report:
    """sample.py's report with a copy, a derivative, Hub scan statuses and downstream repos set by hand."""
    base = S.sample_report()
    changes = {
        COPY: {"derived_from": _copy(), "hub_security": HubSecurity(True, (("adapter_model.safetensors", "safe"),)),
               "downstream": (DownstreamRepo("someone/merged", "merge"), DownstreamRepo(BAD_ID, "quantized"))},
        DERIV: {"derived_from": _deriv(), "hub_security": HubSecurity(False)},
        SOURCE: {"hub_security": HubSecurity(True, (("adapter_model.bin", "unsafe"), ("README.md", "safe"))),
                 "downstream": (DownstreamRepo("someone/merged", "adapter"),)},
        PASS_HUB_ISSUE: {"hub_security": HubSecurity(True, (("training_args.bin", "suspicious"),))},
        "evil/sentiment-lora": {"hub_security": HubSecurity(None)},  # the Hub said nothing
    }
    for repo, extra in changes_by_repo.items():
        changes[repo] = changes.get(repo, {}) | extra
    adapters = tuple(dc.replace(e, **changes.get(e.repo_id, {})) for e in base.adapters)
    derived = sum(1 for e in adapters if e.derived_from is not None)
    new = sum(1 for e in adapters if e.derived_from is not None and not e.flagged and not e.probe_flagged)
    s = base.summary
    summary = dc.replace(s, flagged=s.flagged + new, flagged_unsuppressed=s.flagged_unsuppressed + new,
                         not_flagged=s.not_flagged - new, derived=derived)
    return dc.replace(base, adapters=adapters, summary=summary, similarity_thresholds=thresholds)


def _entry(report: Report, repo: str):
    return next(e for e in report.adapters if e.repo_id == repo)


def _block(text: str, title: str) -> str:
    """The table section whose rule starts with ``── title``, up to the next rule."""
    start = text.index(f"── {title}")
    end = text.find("\n── ", start + 1)
    return text[start:end if end > 0 else None]


# ---------------------------------------------------------------- table
def test_table_lists_the_copy_its_source_thresholds_hub_status_and_downstream():
    r = lineage_report()
    assert {e.repo_id for e in r.findings} >= {COPY, DERIV}  # weight passes, findings as copies/derivatives
    text = get_format("table", width=100).render(r)
    assert "copies/derivatives of known-bad adapters 2" in text
    assert "downstream of findings: 2 Hub repo(s) built on 2 finding(s) (1 adapter, 1 merge, 1 quantized)" in text

    findings = _block(text, "Flagged adapter revisions (5)")
    copy_lines = findings[findings.index(COPY):].split("\nevil/")[0].split("\norg")[0]
    assert "flagged" in copy_lines.splitlines()[0] and "pass" not in copy_lines
    why = " ".join(ln.strip() for ln in copy_lines.splitlines() if ln.startswith(("    why:", "      ")))
    assert why == f"why: {_copy().reason}"  # the why reads as the DerivedFrom reason, whole (wrapped, not cut)
    assert "Hub scan: no issues (not a hubaudit verdict)" in copy_lines
    assert "Hub scan: pending (not a hubaudit verdict)" in findings
    src = findings[findings.index(SOURCE):]
    assert "Hub scan: issues in 1 file(s) (the Hub's scan, not a hubaudit verdict)\n      unsafe: adapter_model.bin" in src
    assert "README.md" not in findings  # a file the Hub called safe is no issue
    sentiment = findings[findings.index("evil/sentiment-lora"):findings.index("reviewed/")]
    assert "Hub scan" not in sentiment  # status unknown: the Hub said nothing

    copies = _block(text, "Copies and derivatives (2)")
    assert "copy ≥ 0.990, derivative ≥ 0.950 (calibrated on 1234 pairs" in copies.replace("\n  ", " ")
    assert "null max 0.912" in copies.replace("\n  ", " ")
    assert f"{COPY}@00000000  copy, similarity 0.998 (≥ 0.990)  flagged" in copies
    assert f"    source: {SOURCE}@{S.sha(31)}\n    source is known-bad: a probe confirmed its backdoor" in copies
    assert f"{DERIV}@00000000  derivative, similarity 0.961 (≥ 0.950)" in copies
    assert "    source: blocked/thing\n    source is known-bad: on an imported blocklist" in copies

    down = _block(text, "Downstream of findings (3)")
    assert "    merge      someone/merged  https://huggingface.co/someone/merged" in down
    assert "    quantized  x/<b>q\n" in down + "\n" and "huggingface.co/x/" not in down  # no link from a crafted id
    assert "    adapter    someone/merged  https://huggingface.co/someone/merged" in down

    other = _block(text, "Hub scan issues on adapters hubaudit did not flag (1)")
    assert f"{PASS_HUB_ISSUE}@00000000  hubaudit: pass" in other and "suspicious: training_args.bin" in other
    for width in (100, 80):
        assert max(len(ln) for ln in get_format("table", width=width).render(r).splitlines()) <= width


def test_table_default_thresholds_and_no_lineage_sections_without_lineage():
    text = get_format("table").render(lineage_report(dc.replace(THRESHOLDS, source="default")))
    assert "(defaults: no fingerprint calibration for this base)" in text.replace("\n  ", " ")
    plain = get_format("table").render(S.sample_report())
    assert "Copies and derivatives" not in plain and "Downstream" not in plain and "Hub scan" not in plain
    checked = get_format("table").render(dc.replace(S.sample_report(), similarity_thresholds=THRESHOLDS))
    assert "── Copies and derivatives (0)" in checked and "copies/derivatives of known-bad adapters 0" in checked


# ---------------------------------------------------------------- markdown
def test_markdown_sections_links_and_hub_column():
    r = lineage_report()
    text = get_format("markdown").render(r)
    assert_markdown_safe(text)
    assert "| copies/derivatives | downstream repos of findings |" in text
    copy_row = next(ln for ln in text.splitlines() if ln.startswith(f"| [{COPY}") and "derived\\_from" in ln)
    assert f"derived\\_from {SOURCE}\\@{S.sha(31)} (similarity 0.998, copy)" in copy_row
    assert copy_row.endswith("| flagged | no issues (not a hubaudit verdict) |")

    sec = text[text.index("## Copies and derivatives (2)"):text.index("## Downstream")]
    assert "Thresholds in force: copy ≥ 0.990, derivative ≥ 0.950 (calibrated on 1234 pairs" in sec
    src_link = f"[{SOURCE}\\@{S.sha(31)}](https://huggingface.co/{SOURCE}/tree/{S.sha(31)})"
    assert f"| copy | 0.998 | 0.990 | {src_link} | a probe confirmed its backdoor | flagged |" in sec
    assert ("| derivative | 0.961 | 0.950 | [blocked/thing](https://huggingface.co/blocked/thing)"
            " | on an imported blocklist |") in sec  # no sha: a link to the repo

    down = text[text.index("## Downstream of findings (3)"):text.index("## Hub scan issues")]
    assert "| merge | [someone/merged](https://huggingface.co/someone/merged) |" in down
    assert "| quantized | x/&lt;b&gt;q |" in down  # escaped, not linked
    hub = text[text.index("## Hub scan issues on adapters hubaudit did not flag (1)"):]
    assert "not a hubaudit verdict" in hub and "| pass | training\\_args.bin | suspicious |" in hub


# ---------------------------------------------------------------- html
def test_html_sections_and_links():
    r = lineage_report()
    page = get_format("html").render(r)
    assert_html_safe(page)
    derived = re.search(r'<section id="derived">.*?</section>', page).group(0)
    assert "Copies and derivatives (2)" in derived and "calibrated on 1234 pairs" in derived
    assert f'href="https://huggingface.co/{SOURCE}/tree/{S.sha(31)}"' in derived
    assert derived.count('class="derived-row"') == 2 and "<td>on an imported blocklist</td>" in derived
    down = re.search(r'<section id="downstream">.*?</section>', page).group(0)
    assert down.count('class="downstream-row"') == 3 and "<td>x/&lt;b&gt;q</td>" in down
    assert 'href="https://huggingface.co/someone/merged"' in down
    findings = re.search(r'<section id="findings">.*?</section>', page).group(0)
    copy_row = next(x for x in findings.split("<tr") if f"{COPY}@" in x and "derived_from" in x)
    assert "no issues (not a hubaudit verdict)" in copy_row and "b-flagged" in copy_row
    assert "<li><code>adapter_model.bin</code>: unsafe</li>" in findings
    hub = re.search(r'<section id="hub-issues">.*?</section>', page).group(0)
    assert PASS_HUB_ISSUE in hub and "hubaudit: pass" in hub and "training_args.bin</code>: suspicious" in hub
    assert re.search(r'<div class="n">2</div><div class="l">copies / derivatives</div>', page)
    assert 'id="downstream-summary"' in page


# ---------------------------------------------------------------- json, jsonl, csv
def test_json_and_jsonl_carry_the_lineage_objects():
    r = lineage_report()
    doc = json.loads(get_format("json").render(r))
    assert doc["schema_version"] == "1"  # additions only: same schema version
    assert doc["similarity_thresholds"] == THRESHOLDS.to_dict() and doc["summary"]["derived"] == 2
    by = {a["repo_id"]: a for a in doc["adapters"]}
    assert by[COPY]["derived_from"] == _copy().to_dict()
    assert by[COPY]["derived_from"]["reason"] == f"derived_from {SOURCE}@{S.sha(31)} (similarity 0.998, copy)"
    assert by[COPY]["hub_security"] == {"status": "scanned", "scans_done": True,
                                        "files_with_issues": [{"path": "adapter_model.safetensors", "level": "safe"}]}
    assert by[COPY]["downstream"] == [
        {"repo_id": "someone/merged", "relation": "merge", "url": "https://huggingface.co/someone/merged"},
        {"repo_id": BAD_ID, "relation": "quantized", "url": None},
    ]
    assert by[SOURCE]["hub_security"]["status"] == "issues" and by[DERIV]["hub_security"]["status"] == "pending"
    assert by["bad/malformed"]["derived_from"] is None and by["bad/malformed"]["hub_security"] is None
    assert by["bad/malformed"]["downstream"] == []
    lines = [json.loads(x) for x in get_format("jsonl").render(r).splitlines()]
    assert next(x for x in lines if x.get("repo_id") == COPY)["derived_from"] == _copy().to_dict()
    assert lines[-1]["similarity_thresholds"] == THRESHOLDS.to_dict() and lines[-1]["summary"]["derived"] == 2
    assert json.loads(get_format("json").render(S.sample_report()))["similarity_thresholds"] is None


def test_csv_appends_lineage_columns():
    assert REPORT_CSV_COLUMNS[-4:] == ("derived_from", "similarity", "hub_security", "downstream")
    assert REPORT_CSV_COLUMNS.index("low_confidence_reason") == 22  # existing columns keep their index
    rows = {x["repo_id"]: x for x in csv.DictReader(io.StringIO(get_format("csv").render(lineage_report())))}
    assert rows[COPY]["derived_from"] == _copy().reason and float(rows[COPY]["similarity"]) == 0.9981
    assert rows[COPY]["hub_security"] == "scanned"
    assert rows[COPY]["downstream"] == f"merge:someone/merged;quantized:{BAD_ID}"
    assert rows[SOURCE]["hub_security"] == "issues;adapter_model.bin (unsafe)"
    assert rows[DERIV]["hub_security"] == "pending" and rows[DERIV]["similarity"] == "0.9612"
    assert rows["bad/malformed"]["derived_from"] == rows["bad/malformed"]["downstream"] == ""


# ---------------------------------------------------------------- sarif
def test_sarif_reports_a_copy_as_ha006():
    rule = next(x for x in RULES if x.id == "HA006")
    assert rule.level == "error" and "known-bad" in rule.short
    assert len({x.id for x in RULES}) == len(RULES)
    doc = json.loads(get_format("sarif").render(lineage_report()))
    jsonschema.validate(doc, SCHEMA)
    run = doc["runs"][0]
    assert run["properties"]["similarity_thresholds"] == THRESHOLDS.to_dict()
    got = {x["properties"]["repo_id"]: x for x in run["results"] if x["ruleId"] == "HA006"}
    assert set(got) == {COPY, DERIV}
    copy = got[COPY]
    assert copy["level"] == "error"
    assert copy["message"]["text"] == (f"{COPY}@{S.sha(1)}: copy of known-bad adapter {SOURCE}@{S.sha(31)} "
                                       "(a probe confirmed its backdoor); fingerprint similarity 0.998 "
                                       "(the copy threshold is 0.990).")
    assert copy["properties"]["similarity"] == 0.9981 and copy["properties"]["source_repo_id"] == SOURCE
    assert copy["properties"]["derived_from"] == _copy().to_dict()
    assert copy["properties"]["hub_security"]["status"] == "scanned"
    assert [d["repo_id"] for d in copy["properties"]["downstream"]] == ["someone/merged", BAD_ID]
    assert copy["partialFingerprints"]["hubaudit/v1"] == fingerprint("HA006", COPY, S.sha(1))
    rules = run["tool"]["driver"]["rules"]
    assert rules[copy["ruleIndex"]]["id"] == "HA006"
    assert all(rules[x["ruleIndex"]]["id"] == x["ruleId"] for x in run["results"])  # indices still match


# ---------------------------------------------------------------- export
def test_export_flags_a_copy_with_its_derived_from_reason():
    assert EXPORT_COLUMNS[-5:] == ("similarity", "source_repo_id", "source_sha", "derived_kind", "source_kind")
    r = lineage_report()
    rows = {x["repo_id"]: x for x in csv.DictReader(io.StringIO(render_export(r, "csv")))}
    assert {COPY, DERIV, SOURCE} <= set(rows)  # the copies are in the blocklist though their weights pass
    assert rows[COPY]["reasons"] == _copy().reason and rows[COPY]["flagged"] == "false"
    assert rows[COPY]["source_repo_id"] == SOURCE and rows[COPY]["source_sha"] == S.sha(31)
    assert rows[COPY]["derived_kind"] == "copy" and rows[COPY]["source_kind"] == "probe_confirmed"
    assert float(rows[COPY]["similarity"]) == 0.9981
    assert rows[DERIV]["source_sha"] == "" and rows[SOURCE]["similarity"] == ""
    doc = json.loads(render_export(r, "json"))
    by = {x["repo_id"]: x for x in doc["rows"]}
    assert by[COPY]["reasons"] == [_copy().reason] and by[COPY]["similarity"] == 0.9981
    both = lineage_report(**{"evil/sentiment-lora": {"derived_from": _deriv()}})  # weights flagged and a derivative
    row = next(x for x in json.loads(render_export(both, "json"))["rows"] if x["repo_id"] == "evil/sentiment-lora")
    assert row["reasons"] == ["global_frobN_std", "layer_concentration", _deriv().reason]


# ---------------------------------------------------------------- hostile Hub data
def _hostile_lineage_report(strings: list[str]) -> Report:
    src, sha, kind, source_kind, ds_repo, relation, path, level = strings
    rows = [S.row(i, score=0.010 + 0.0002 * i, flagged=False, margin=-0.005) for i in range(1, 6)]
    rows.append(S.row(30, score=0.031, flagged=True, margin=0.011, reasons=("global_frobN_std",), repo="evil/x"))
    base = build_report(S.BASE, rows, S.threshold_set(), generated_at=S.NOW, tool_version="0.1.0", today=S.TODAY)
    derived = DerivedFrom(src, sha, 0.97, kind, source_kind, 0.95)
    hub = HubSecurity(True, ((path, level), (level, path), (path, "safe")))
    downstream = (DownstreamRepo(ds_repo, relation), DownstreamRepo(relation, ds_repo), DownstreamRepo("ok/repo", relation))
    adapters = tuple(
        dc.replace(e, derived_from=derived, hub_security=hub, downstream=downstream) if e.repo_id == "org1/adapter-1"
        else dc.replace(e, hub_security=hub, downstream=downstream) if e.repo_id == "evil/x"
        else dc.replace(e, hub_security=HubSecurity(True, ((path, level or "x"),))) if e.repo_id == "org2/adapter-2"
        else e
        for e in base.adapters
    )
    thresholds = SimilarityThresholds(0.99, 0.95, source_kind, 10, None)
    return dc.replace(base, adapters=adapters, similarity_thresholds=thresholds, population_scores=(),  # no plot: fast
                      summary=dc.replace(base.summary, derived=1))


@settings(max_examples=15, deadline=None)
@given(st.lists(hostile_text, min_size=8, max_size=8))
def test_hostile_hub_data_stays_inert_in_every_format(strings):
    r = _hostile_lineage_report(strings)
    for width in (100, 80):
        table = get_format("table", width=width).render(r)
        assert_terminal_safe(table)
        assert max(len(ln) for ln in table.splitlines()) <= width
        assert "── Copies and derivatives (1)" in table
    assert_markdown_safe(get_format("markdown").render(r))
    assert_html_safe(get_format("html").render(r))
    rendered_csv = get_format("csv").render(r)
    assert_csv_safe(rendered_csv, text_columns=("repo_id", "sha", "derived_from", "hub_security", "downstream"))
    for text in (get_format("json").render(r), get_format("jsonl").render(r)):
        assert not controls(text)
    doc = json.loads(get_format("json").render(r))
    copy = next(a for a in doc["adapters"] if a["repo_id"] == "org1/adapter-1")
    assert copy["derived_from"]["source_repo_id"] == strings[0]  # data stays exact in JSON
    assert [d["repo_id"] for d in copy["downstream"]][:2] == [strings[4], strings[5]]
    sarif = json.loads(get_format("sarif").render(r))
    for res in sarif["runs"][0]["results"]:
        text = res["message"]["text"]
        assert not controls(text, allowed="")
        bare = text.replace("\\\\", "").replace("\\[", "").replace("\\]", "")
        assert "[" not in bare and "]" not in bare
    for fmt in ("csv", "json", "jsonl"):
        out = render_export(r, fmt)
        if fmt == "csv":
            assert_csv_safe(out, text_columns=("repo_id", "sha", "reasons", "source_repo_id", "source_sha",
                                               "derived_kind", "source_kind"))
        else:
            assert not controls(out)


def test_the_hostile_cases_spelled_out():
    strings = ["=HYPERLINK(\"https://evil.example\",\"x\")", "0) <svg onload=alert(1)>", "copy\x1b[2J", "x|y",
               "javascript:alert(1)", "merge\nrow", "<script>alert(1)</script>|\x1b]0;t\x07", "[x](javascript:alert(1))"]
    r = _hostile_lineage_report(strings)
    table = get_format("table").render(r)
    assert_terminal_safe(table)
    assert "\\x1b]0;t\\x07" in table and "merge\\x0arow" in table and "copy\\x1b[2J" in table
    md = get_format("markdown").render(r)
    assert_markdown_safe(md)
    assert not re.search(r"(?<!\\)\]\(javascript", md) and "\\[x\\](javascript\\:alert(1))" in md
    page = get_format("html").render(r)
    assert_html_safe(page)
    assert "&lt;script&gt;" in page and 'href="javascript' not in page
    rows = list(csv.DictReader(io.StringIO(get_format("csv").render(r))))
    copy = next(x for x in rows if x["repo_id"] == "org1/adapter-1")
    assert copy["derived_from"].startswith("derived_from =HYPERLINK")  # not formula-leading: kept, escaped only
    assert copy["downstream"] == "merge\\x0arow:javascript:alert(1);javascript:alert(1):merge\\x0arow;merge\\x0arow:ok/repo"
    export = {x["repo_id"]: x for x in csv.DictReader(io.StringIO(render_export(r, "csv")))}
    assert export["org1/adapter-1"]["source_repo_id"].startswith("'=HYPERLINK")  # formula guarded
    assert terminal(strings[2]) == export["org1/adapter-1"]["derived_kind"]
