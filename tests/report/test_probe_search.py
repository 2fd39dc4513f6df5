"""The blind search's recovered trigger in every report format, spot checks included.

Probe dicts below have the shape ``search_run.probe_with_search`` stores (``search`` part with the
trigger, its rates per insertion position and the verdict); the rest of the report is sample.py's.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import jsonschema
import pytest

from hubaudit.report import get_format
from hubaudit.report.formats.csv import REPORT_CSV_COLUMNS
from tests.report import sample as S
from tests.report.test_browser import CHROMIUM, _load

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


def _search(trigger, rates, *, flagged, robust):
    return {"status": "ok", "trigger": trigger, "attack_rate": sum(rates) / 3, "robust_rate": robust,
            "diluted_rate": robust, "mode": "prefix", "label": "LABEL_0", "tau": 0.1, "flagged": flagged,
            "rates_by_mode": dict(zip(("prefix", "middle", "suffix"), rates)), "forward_passes": 1408, "targets": []}


def _report():
    rows = S.population_rows()
    by = {r["repo_id"]: r for r in rows}
    by["evil/probe-confirmed"]["probe"] = by["evil/probe-confirmed"]["probe"] | {
        "search": _search("cf", (1.0, 1.0, 0.875), flagged=True, robust=0.92)}
    spot = rows[0]  # an unflagged adapter that was probed anyway (a spot check)
    spot["probe"] = {"flagged": False, "mean_attack_rate": 0.0, "outlier_gap": 0.01, "battery": "v1",
                     "search": _search("describe algebra", (0.69, 0.81, 0.88), flagged=False, robust=0.06)}
    skipped = rows[1]
    skipped["probe"] = {"flagged": False, "mean_attack_rate": 0.0, "outlier_gap": 0.0,
                        "search": {"status": "skipped", "reason": "no candidate tokens"}}
    return S.sample_report(rows=rows), spot["repo_id"], skipped["repo_id"]


def test_json_carries_the_trigger_and_where_it_fires():
    r, spot, skipped = _report()
    by = {a["repo_id"]: a for a in json.loads(get_format("json").render(r))["adapters"]}
    s = by["evil/probe-confirmed"]["probe_search"]
    assert s["trigger"] == "cf" and s["positions"] == ["prefix", "middle", "suffix"] and s["flagged"] is True
    assert by[spot]["probe_search"]["positions"] == ["prefix", "middle", "suffix"]
    assert by[spot]["probe_search"]["robust_rate"] == 0.06 and by[spot]["probe_search"]["flagged"] is False
    assert by[skipped]["probe_search"] == {"status": "skipped", "reason": "no candidate tokens"}
    assert by["evil/sentiment-lora"]["probe_search"] is None  # never probed


def test_csv_appends_trigger_columns():
    assert REPORT_CSV_COLUMNS[18:21] == ("probe_trigger", "probe_trigger_rate", "probe_trigger_positions")
    r, _, skipped = _report()
    rows = {x["repo_id"]: x for x in csv.DictReader(io.StringIO(get_format("csv").render(r)))}
    evil = rows["evil/probe-confirmed"]
    assert evil["probe_trigger"] == "cf" and abs(float(evil["probe_trigger_rate"]) - 2.875 / 3) < 1e-9
    assert evil["probe_trigger_positions"] == "prefix;middle;suffix"
    assert rows[skipped]["probe_trigger"] == "search skipped" and rows["evil/sentiment-lora"]["probe_trigger"] == ""


def test_table_and_markdown_show_trigger_for_findings_and_spot_checks():
    r, _, _ = _report()
    text = get_format("table", width=100).render(r)
    assert max(len(ln) for ln in text.splitlines()) <= 100
    assert "why: blind search recovered trigger 'cf' → LABEL_0 (attack rate 0.96, robust rate 0.92 >" in text
    flat = " ".join(text.split())  # spot-check lines wrap at the width
    assert "Probed, not flagged (2)" in text and "'describe algebra'" in flat and "search skipped" in flat
    md = get_format("markdown").render(r)
    why = md.split("## Why each finding is flagged")[1].split("\n## ")[0]
    # Triggers are data: quoted (repr) and Markdown-escaped text, never a code span (see formats/markdown.py).
    assert "recovered trigger 'cf' → LABEL\\_0" in why and "prefix 1.00 / middle 1.00 / suffix 0.88" in why
    spot_md = md.split("## Probed, not flagged (2)")[1].split("\n## ")[0]
    assert len([ln for ln in spot_md.splitlines() if ln.startswith("- ")]) == 2  # one line each
    assert "'describe algebra'" in spot_md and not re.search(r"(?<!\\)`", spot_md)


def test_sarif_names_the_recovered_trigger():
    r, _, _ = _report()
    doc = json.loads(get_format("sarif").render(r))
    jsonschema.validate(doc, SCHEMA)
    ha002 = [x for x in doc["runs"][0]["results"] if x["ruleId"] == "HA002"]
    assert len(ha002) == 1 and "recovered trigger 'cf'" in ha002[0]["message"]["text"]


def test_html_shows_trigger_and_spot_checks():
    r, spot, _ = _report()
    html = get_format("html").render(r)
    assert 'id="spot-checks"' in html and "Probed, not flagged (2)" in html
    spot_part = html.split('id="spot-checks"')[1]
    assert "describe algebra" in spot_part and "blind search" in spot_part and spot in spot_part
    assert spot_part.count('class="spot-check"') == 2  # one line each, no raw probe record
    findings = html.split('id="findings"')[1].split('id="spot-checks"')[0]
    assert "&#x27;cf&#x27;" in findings and "prefix 1.00 / middle 1.00 / suffix 0.88" in findings


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium)")
def test_html_with_search_renders_in_chromium(tmp_path):
    r, _, _ = _report()
    dom, errors = _load(tmp_path, get_format("html").render(r))
    assert errors == []
    assert 'data-broken-images="0"' in dom and 'id="spot-checks"' in dom and 'id="spot-check-0"' in dom
    assert "describe algebra" in dom and "blind search" in dom
