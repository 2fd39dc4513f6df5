"""Hostile repo ids, shas, tensor names, declared bases and reasons through every report format.

Property tests: hypothesis pushes arbitrary strings (control characters, rich markup, mathtext,
formula prefixes, Markdown and HTML syntax) through a hand-built report (sample.py's rows) and each
format must stay well-formed and inert for its sink (hubaudit/textsafe.py says what each sink gets).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from hubaudit.report import build_report, get_format, norm_map
from hubaudit.report.export import render_export
from hubaudit.report.model import Suppression, hub_url
from hubaudit.textsafe import FORMULA_PREFIXES, csv_cell, html, json_dumps, markdown, sarif_message, terminal
from tests.report import sample as S
from tests.report.hostile import (
    HOSTILE_SETTINGS,
    assert_csv_safe,
    assert_html_safe,
    assert_markdown_safe,
    assert_terminal_safe,
    controls,
    hostile_text,
    hostile_text_surrogates,
    md_pipes,
)

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())


# ---------------------------------------------------------------- the escaping functions themselves
@HOSTILE_SETTINGS
@given(hostile_text_surrogates)
def test_terminal_leaves_nothing_non_printable_and_keeps_printable_text(s):
    out = terminal(s)
    assert not controls(out, allowed="")
    assert terminal(out) == out  # idempotent: escaping twice never double-escapes
    if s.isprintable():
        assert out == s


@HOSTILE_SETTINGS
@given(hostile_text_surrogates)
def test_csv_cell_never_starts_a_formula(s):
    cell = csv_cell(s)
    assert not cell.startswith(FORMULA_PREFIXES) and not controls(cell, allowed="")
    assert csv_cell(-0.5) == "-0.5" and csv_cell(3) == "3" and csv_cell(None) == "" and csv_cell(False) == "false"


@HOSTILE_SETTINGS
@given(hostile_text_surrogates)
def test_markdown_html_and_sarif_text_are_inert(s):
    md = markdown(s)
    assert "\n" not in md and "<" not in md and md_pipes(f"| {md} |") == 2 and "javascript:" not in md.lower()
    h = html(s)
    assert "<" not in h and ">" not in h and '"' not in h and not controls(h, allowed="")
    msg = sarif_message(s)
    stripped = msg.replace("\\\\", "").replace("\\[", "").replace("\\]", "")
    assert "[" not in stripped and "]" not in stripped and not controls(msg, allowed="")


@HOSTILE_SETTINGS
@given(st.recursive(st.none() | st.booleans() | st.integers() | hostile_text_surrogates,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
                    max_leaves=8))  # fmt: skip
def test_json_dumps_round_trips_and_escapes_every_non_printable(obj):
    for kw in ({}, {"indent": 2}):
        text = json_dumps(obj, **kw)
        assert json.loads(text) == obj
        assert not controls(text)  # C0 by json.dumps, DEL/C1/bidi/surrogates as \u escapes


@HOSTILE_SETTINGS
@given(hostile_text, st.one_of(st.none(), hostile_text))
def test_hub_links_are_built_only_from_valid_ids(repo, sha):
    url = hub_url(repo, sha)
    assert url is None or url.startswith("https://huggingface.co/")
    if url is not None:
        assert url.isascii() and url.isprintable() and not any(c in url for c in " <>\"'`|[]()\\")
    assert hub_url("org/name", "a" * 40) == f"https://huggingface.co/org/name/tree/{'a' * 40}"
    assert hub_url("org/name", "0) <svg onload=alert(1)>") is None and hub_url("evil[/]x", None) is None


# ---------------------------------------------------------------- a report full of hostile strings
def _search(trigger: str, label: str) -> dict:
    return {"status": "ok", "trigger": trigger, "attack_rate": 0.9, "robust_rate": 0.8, "label": label, "tau": 0.1,
            "flagged": True, "rates_by_mode": {"prefix": 1.0, "middle": 0.9, "suffix": 0.8}, "forward_passes": 10}


def _modules(proj: str, scale: float = 1.0) -> list[dict]:
    return [{"name": f"model.layers.{layer}.self_attn.{p}", "layer": layer, "projection": p,
             "frob_norm": 0.01 * (1 + layer) * scale * (6.0 if p == proj and layer == 2 else 1.0)}
            for layer in range(3) for p in ("q_proj", proj)]  # fmt: skip


def hostile_report(strings: list[str], *, base: str | None = None):
    """A calibrated report whose repo ids, shas, strata, reasons, declared base, tensor (projection)
    names, probe trigger, error texts and suppressions are the given hostile strings."""
    repo_a, sha_a, repo_b, sha_b, declared, reason, stratum, proj, trigger, why = strings
    rows = [S.row(i, score=0.010 + 0.0002 * i, flagged=False, margin=-0.005) for i in range(1, 8)]
    rows.append(S.row(30, score=0.031, flagged=True, margin=0.011, reasons=(reason, "global_frobN_std=0.03 above 0.02"),
                      repo=repo_a, declared_base=declared, stratum=stratum))
    rows.append(S.row(31, score=0.027, flagged=True, margin=0.007, reasons=(reason,), repo=repo_b,
                      probe={"flagged": True, "mean_attack_rate": 0.6, "outlier_gap": 0.3, "battery": why,
                             "search": _search(trigger, why)}))
    rows.append(S.row(32, score=0.03, flagged=None, stratum=stratum, repo=why))
    rows.append(S.row(40, status="error", reason=why, error=reason, repo=repo_b + "x"))
    rows.append(S.row(41, status="unsupported", reason=stratum, repo=sha_a))
    rows[-5]["sha"], rows[-4]["sha"], rows[-2]["sha"] = sha_a, sha_b, sha_b
    for r, repo in zip(rows[-5:], (repo_a, repo_b, why, repo_b + "x", sha_a)):
        r["repo_id"] = repo  # row() would replace an empty one
    ts = S.threshold_set()
    ts.strata = {**ts.strata, stratum: {"n": 31, "score_threshold": 0.021}}
    sups = [Suppression(repo=repo_b, reason=why, expires=date(2999, 1, 1)),
            Suppression(repo=repo_a, sha=sha_b, reason=reason, expires=date(2020, 1, 1), origin=why)]
    maps = [norm_map(repo_a, sha_a, _modules(proj), [_modules(proj, s) for s in (0.9, 1.0, 1.1)])]
    return build_report(base or S.BASE, rows, ts, generated_at=S.NOW, tool_version="0.1.0", today=S.TODAY,
                        suppressions=sups, norm_maps=maps)


hostile_strings = st.lists(hostile_text_surrogates, min_size=10, max_size=10)


def _check_json(text: str, report) -> None:
    assert not controls(text)
    doc = json.loads(text)
    assert doc["base"] == report.base
    assert {a["repo_id"] for a in doc["adapters"]} == {e.repo_id for e in report.adapters}  # data stays exact
    assert {a["sha"] for a in doc["adapters"]} == {e.sha for e in report.adapters}


@HOSTILE_SETTINGS
@given(hostile_strings, hostile_text)
def test_every_text_format_stays_well_formed_and_inert(strings, base):
    report = hostile_report(strings, base=base)
    assert report.findings  # the hostile adapters are listed one by one, not just counted

    for width in (100, 80):
        table = get_format("table", width=width).render(report)
        assert_terminal_safe(table)
        assert max(len(line) for line in table.splitlines()) <= width

    _check_json(get_format("json").render(report), report)
    lines = get_format("jsonl").render(report).splitlines()
    assert [json.loads(x)["entry_type"] for x in lines] == ["adapter"] * len(report.adapters) + ["summary"]
    assert all(not controls(x) for x in lines)

    rendered_csv = get_format("csv").render(report)
    assert_csv_safe(rendered_csv)
    assert len(list(csv.DictReader(io.StringIO(rendered_csv)))) == len(report.adapters)
    assert_markdown_safe(get_format("markdown").render(report))

    sarif = get_format("sarif").render(report)
    assert not controls(sarif)
    doc = json.loads(sarif)
    for res in doc["runs"][0]["results"]:
        text = res["message"]["text"]
        assert not controls(text, allowed="")
        bare = text.replace("\\\\", "").replace("\\[", "").replace("\\]", "")
        assert "[" not in bare and "]" not in bare  # no SARIF embedded link from data
        uri = res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.isascii() and ":" not in uri.removeprefix("file://")  # no scheme from a repo id

    for fmt in ("csv", "json", "jsonl"):
        for flagged in (True, False):
            out = render_export(report, fmt, flagged=flagged, include_suppressed=True)
            if fmt == "csv":
                assert_csv_safe(out)
                continue
            assert not controls(out)
            docs = [json.loads(out)] if fmt == "json" else [json.loads(x) for x in out.splitlines()]
            assert all(isinstance(d, dict) for d in docs)


@settings(max_examples=8, deadline=None)
@given(hostile_strings)
def test_sarif_stays_schema_valid(strings):
    jsonschema.validate(json.loads(get_format("sarif").render(hostile_report(strings))), SCHEMA)


@settings(max_examples=6, deadline=None)  # two matplotlib figures per example
@given(hostile_strings, hostile_text)
def test_html_renders_hostile_names_plots_included(strings, base):
    report = hostile_report(strings, base=base)
    page = get_format("html").render(report)
    assert_html_safe(page)
    assert page.count('class="plot heatmap"') >= 1 and 'id="score-histogram"' in page


def test_mathtext_tensor_names_do_not_break_the_html_report():
    # A tensor (projection) name, stratum and base that matplotlib used to parse as mathtext (exit 70).
    strings = ["evil/x", "a" * 40, "evil/y", "b" * 40, "$\\foo$", "$\\foo$", "lora|r4|$\\foo$", "$\\foo$",
               "$\\frac{1}{0}$", "$$"]
    page = get_format("html").render(hostile_report(strings, base="$\\foo$"))
    assert_html_safe(page)
    assert page.count('class="plot heatmap"') == 1 and "$\\foo$" in page


def test_the_reported_cases():
    """The five cases this module exists for, spelled out."""
    sha = "0) <svg onload=alert(1)> | [x](javascript:alert(1))"
    repo = "evil/x\x1b]0;title\x07\x1b[2J\r\x9b31m\u202e"
    report = hostile_report([repo, sha, "=cmd|' /C calc'!A0", "+1", "evil[/]x", "[bold]r", "s", "$\\foo$", "t", "@SUM(1)"])
    table = get_format("table").render(report)
    assert "\x1b" not in table and "\\x1b]0;title\\x07" in table and "\\u202e" in table
    rows = {r["repo_id"]: r for r in csv.DictReader(io.StringIO(get_format("csv").render(report)))}
    assert rows["'=cmd|' /C calc'!A0"]["sha"] == "'+1" and rows["'=cmd|' /C calc'!A0"]["url"] == ""
    assert rows[terminal(repo)]["sha"] == sha  # not formula-leading: kept as is (escaped controls only)
    md = get_format("markdown").render(report)
    assert_markdown_safe(md)
    assert "@0) &lt;svg on" in md  # the (short) sha, escaped
    assert "](https://huggingface.co/evil" not in md  # neither repo id nor sha is Hub syntax: no link
