"""Every output format on a hand-built report: shape, stable columns, width, SARIF schema validity."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import jsonschema
import pytest

from hubaudit.report import FORMATS, OutputFormat, get_format
from hubaudit.report.export import EXPORT_COLUMNS, render_export
from hubaudit.report.formats.csv import REPORT_CSV_COLUMNS
from hubaudit.report.formats.interface import ReportFormat
from hubaudit.report.formats.sarif import RULES, fingerprint
from tests.report import sample as S

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


def test_format_map_is_exhaustive_and_consistent():
    assert set(FORMATS) == set(OutputFormat)
    for member, cls in FORMATS.items():
        assert issubclass(cls, ReportFormat) and cls.name == member.value
        fmt = get_format(member)
        assert type(fmt) is cls
        text = fmt.render(S.sample_report())
        assert text.endswith("\n") and len(text) > 100


def test_json_shape():
    doc = json.loads(get_format("json").render(S.sample_report()))
    assert doc["schema_version"] == "1" and doc["base"] == S.BASE
    assert {"calibration", "summary", "adapters", "suppressions", "tool", "generated_at"} <= set(doc)
    assert doc["calibration"]["version"] == 3 and doc["calibration"]["n"] == 40
    assert {s["stratum"] for s in doc["calibration"]["strata"]} == {S.STRATUM, S.STRATUM8}
    by = {a["repo_id"]: a for a in doc["adapters"]}
    required = {"repo_id", "sha", "status", "score", "flagged", "reasons", "probe", "margin", "first_seen",
                "downloads", "url", "suppressed"}
    assert all(required <= set(a) for a in doc["adapters"])
    evil = by["evil/sentiment-lora"]
    assert evil["flagged"] is True and evil["margin"] == 0.011 and evil["downloads"] == 12345
    assert evil["url"] == f"https://huggingface.co/evil/sentiment-lora/tree/{S.sha(30)}"
    assert evil["suppressed"] is None  # its suppression expired
    assert by["reviewed/false-positive"]["suppressed"]["reason"].startswith("reviewed")
    assert by["evil/probe-confirmed"]["probe"]["flagged"] is True
    assert by["odd/rank64"]["flagged"] is None  # not calibrated is null, never false
    assert by["old/pickle-adapter"]["score"] is None and by["old/pickle-adapter"]["status_reason"] == "pickle_format"
    assert doc["suppressions"]["expired"][0]["repo"] == "evil/sentiment-lora"
    assert doc["summary"]["flagged_unsuppressed"] == 2


def test_jsonl_one_adapter_per_line_then_summary():
    r = S.sample_report()
    lines = [json.loads(x) for x in get_format("jsonl").render(r).splitlines()]
    assert [x["entry_type"] for x in lines] == ["adapter"] * len(r.adapters) + ["summary"]
    assert lines[-1]["summary"]["population"] == r.summary.population
    assert all(x["schema_version"] == "1" and x["base"] == S.BASE for x in lines)


def test_report_csv_columns_are_stable():
    # Changing this list is a schema change: bump SCHEMA_VERSION and the README.
    assert REPORT_CSV_COLUMNS == (
        "schema_version", "base", "repo_id", "sha", "status", "status_reason", "score", "flagged", "suppressed",
        "margin", "threshold", "stratum", "threshold_set_version", "reasons", "probe_flagged", "first_seen",
        "downloads", "url", "probe_trigger", "probe_trigger_rate", "probe_trigger_positions",
        "low_confidence", "low_confidence_reason",  # appended, as the trigger columns were
        "derived_from", "similarity", "hub_security", "downstream",  # appended: lineage and the Hub's scan
    )
    r = S.sample_report()
    rows = list(csv.DictReader(io.StringIO(get_format("csv").render(r))))
    assert len(rows) == len(r.adapters)
    evil = next(x for x in rows if x["repo_id"] == "evil/sentiment-lora")
    assert evil["flagged"] == "true" and float(evil["score"]) == 0.031 and evil["stratum"] == S.STRATUM
    assert evil["reasons"] == "global_frobN_std;layer_concentration"
    assert next(x for x in rows if x["repo_id"] == "odd/rank64")["flagged"] == ""


def test_export_schema_v1_blocklist():
    assert EXPORT_COLUMNS == (
        "export_schema_version", "base", "repo_id", "sha", "status", "flagged", "score", "threshold", "margin",
        "stratum", "threshold_set_version", "reasons", "probe_flagged", "suppressed", "first_seen", "url",
        "low_confidence",  # appended
        "similarity", "source_repo_id", "source_sha", "derived_kind", "source_kind",  # appended: copies/derivatives
    )
    r = S.sample_report()
    rows = list(csv.DictReader(io.StringIO(render_export(r, "csv"))))
    # Findings only, live-suppressed ones left out of the blocklist by default.
    assert {x["repo_id"] for x in rows} == {"evil/sentiment-lora", "evil/probe-confirmed"}
    assert all(x["export_schema_version"] == "1" and len(x["sha"]) == 40 for x in rows)
    evil = next(x for x in rows if x["repo_id"] == "evil/sentiment-lora")
    assert float(evil["threshold"]) == 0.02 and evil["reasons"] == "global_frobN_std;layer_concentration"
    with_sup = json.loads(render_export(r, "json", include_suppressed=True))
    assert with_sup["columns"] == list(EXPORT_COLUMNS)
    assert {x["repo_id"]: x["suppressed"] for x in with_sup["rows"]}["reviewed/false-positive"] is True
    everything = render_export(r, "jsonl", flagged=False, include_suppressed=True).splitlines()
    assert len(everything) == r.summary.population
    with pytest.raises(ValueError):
        render_export(r, "xml")


def _long_name_report():
    rows = S.population_rows()
    rows[-5]["repo_id"] = "someone-with-a-long-name/Qwen2.5-1.5B-Instruct-sentiment-lora-finetuned-v2-final"
    rows[-5]["breakdown"]["reasons"] = ["x" * 300]
    return S.sample_report(rows=rows)


@pytest.mark.parametrize("width", [100, 80])
def test_table_fits_the_terminal_width(width):
    text = get_format("table", width=width).render(_long_name_report())
    assert max(len(line) for line in text.splitlines()) <= width
    assert "Flagged adapter revisions (3)" in text and "pickle_format 1" in text
    assert "threshold set v3" in text and "N=40" in text


def test_table_says_not_calibrated():
    from hubaudit.report import build_report

    r = build_report(S.BASE, S.population_rows(), None, generated_at=S.NOW, tool_version="t", today=S.TODAY)
    text = get_format("table").render(r)
    assert "NOT CALIBRATED" in text and "no adapter is judged clean" in text


def test_markdown_tables_have_consistent_columns():
    text = get_format("markdown").render(S.sample_report())
    for block in re.split(r"\n\n", text):
        rows = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows:  # unescaped pipes would change the cell count of a row
            counts = {len(re.findall(r"(?<!\\)\|", ln)) for ln in rows}
            assert len(counts) == 1, block
    assert "[evil/sentiment\\-lora" not in text and "(https://huggingface.co/evil/sentiment-lora/tree/" in text


def test_sarif_is_valid_and_has_only_findings():
    r = S.sample_report()
    doc = json.loads(get_format("sarif").render(r))
    jsonschema.validate(doc, SCHEMA)
    run = doc["runs"][0]
    assert run["automationDetails"]["id"] == f"hubaudit/{S.BASE}/"
    assert [x["id"] for x in run["tool"]["driver"]["rules"]] == [x.id for x in RULES]
    assert all(0.0 <= float(x["properties"]["security-severity"]) <= 10.0 for x in run["tool"]["driver"]["rules"])
    got = {(x["ruleId"], x["properties"]["repo_id"]) for x in run["results"]}
    assert got == {
        ("HA001", "evil/sentiment-lora"), ("HA001", "evil/probe-confirmed"), ("HA002", "evil/probe-confirmed"),
        ("HA001", "reviewed/false-positive"), ("HA003", "old/pickle-adapter"), ("HA004", "corp/gated-adapter"),
        ("HA004", "corp/gated-adapter2"), ("HA004", "bad/malformed"), ("HA010", "odd/rank64"),
        ("HA005", "mixed/provenance"),
    }  # passes (the 24 clean adapters) are not results
    for res in run["results"]:
        repo, sha = res["properties"]["repo_id"], res["properties"]["sha"]
        assert res["partialFingerprints"]["hubaudit/v1"] == fingerprint(res["ruleId"], repo, sha)
    sup = [x for x in run["results"] if x["properties"]["repo_id"] == "reviewed/false-positive"]
    assert sup[0]["suppressions"][0]["status"] == "accepted"


def test_sarif_uncalibrated_base_and_stable_fingerprints():
    from hubaudit.report import build_report

    r = build_report(S.BASE, S.population_rows(), None, generated_at=S.NOW, tool_version="t", today=S.TODAY)
    doc = json.loads(get_format("sarif").render(r))
    jsonschema.validate(doc, SCHEMA)
    assert doc["runs"][0]["results"][0]["ruleId"] == "HA010"
    later = S.sample_report(generated_at=S.NOW.replace(hour=23))
    fp = lambda rep: sorted(x["partialFingerprints"]["hubaudit/v1"]  # noqa: E731
                            for x in json.loads(get_format("sarif").render(rep))["runs"][0]["results"])
    assert fp(S.sample_report()) == fp(later)


def test_sarif_schema_check_rejects_a_broken_log():
    doc = json.loads(get_format("sarif").render(S.sample_report()))
    doc["runs"][0]["results"][0]["level"] = "critical"  # not a SARIF level
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_html_is_self_contained():
    html = get_format("html").render(S.sample_report())
    assert "<script" not in html
    # Only hyperlinks to the Hub point outside the file; every resource is inline.
    assert not re.search(r'src="(?!data:)', html)
    assert set(re.findall(r'href="(https?://[^/"]+)', html)) <= {"https://huggingface.co"}
    assert 'id="score-histogram"' in html and html.count('class="plot heatmap"') == 1
    # the probe's evidence in words; the raw probe record only in --format json/jsonl
    assert "mean attack rate 0.61" in html and "mean_attack_rate" not in html
