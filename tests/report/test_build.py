"""The pure report layer: building a Report from rows, norm maps, suppressions."""

from __future__ import annotations

from datetime import date

import pytest

from hubaudit.errors import ConfigError
from hubaudit.report import build_report, match_suppression, norm_map, parse_suppressions
from hubaudit.report.model import Suppression
from tests.report import sample as S


def test_summary_counts_whole_population_and_reasons():
    r = S.sample_report()
    s = r.summary
    assert s.population == len(S.population_rows())
    assert s.audited == sum(1 for x in S.population_rows() if x["status"] == "scored")
    assert s.flagged == 3 and s.probe_confirmed == 1
    # One suppression is live (reviewed/false-positive), the other expired (evil/sentiment-lora).
    assert s.suppressed == 1 and s.flagged_unsuppressed == 2
    assert s.not_judged == 1  # odd/rank64 has no verdict
    assert s.not_audited_by_reason == {"gated": 2, "malformed": 1, "pickle_format": 1}
    assert s.provenance_mismatch == 1
    assert [x.repo for x in r.expired_suppressions] == ["evil/sentiment-lora"]


def test_findings_sorted_first_and_flagged_only_keeps_counts():
    full = S.sample_report()
    assert [e.repo_id for e in full.adapters[:3]] == ["evil/probe-confirmed", "evil/sentiment-lora",
                                                      "reviewed/false-positive"]
    only = S.sample_report(flagged_only=True)
    assert {e.repo_id for e in only.adapters} == {e.repo_id for e in full.findings}
    assert only.summary == full.summary


def test_stale_verdict_from_an_old_threshold_set_is_not_reported_as_a_verdict():
    rows = S.population_rows()
    r = S.sample_report(rows=rows, threshold_set=S.threshold_set(ts_id=8, version=4))
    assert all(e.flagged is None for e in r.adapters if e.audited)
    assert r.summary.flagged == 1  # only the probe-confirmed one remains a finding


def test_uncalibrated_base_judges_nothing():
    r = build_report(S.BASE, S.population_rows(), None, generated_at=S.NOW, tool_version="t", today=S.TODAY)
    assert not r.calibration.calibrated
    assert all(e.flagged is None for e in r.adapters)
    assert r.summary.not_flagged == 0


def test_calibration_reads_the_fit_layout_and_pooled_strata():
    ts = S.threshold_set()
    ts.strata = {
        "lora|r16|q_proj": {"status": "calibrated", "n": 40,
                            "features": {"global_frobN_std": {"threshold_high": 0.03, "hi": -3.5}}},
        "lora|r2|q_proj": {"status": "pooled", "pool": "pool:lora|q_proj", "n": 3},
        "pool:lora|q_proj": {"status": "calibrated", "n": 43,
                             "features": {"global_frobN_std": {"threshold_high": 0.05}}},
    }
    cal = build_report(S.BASE, [], ts, generated_at=S.NOW, tool_version="t", today=S.TODAY).calibration
    by = {s.stratum: s for s in cal.strata}
    assert by["lora|r16|q_proj"].score_threshold == 0.03
    assert by["lora|r2|q_proj"].score_threshold == 0.05 and by["lora|r2|q_proj"].status == "pooled"


def test_norm_map_median_and_missing_cells():
    own = S.modules(hot_layer=2)
    pop = [S.modules(0.5), S.modules(1.0), S.modules(3.0)]
    pop[2] = [m for m in pop[2] if m["layer"] != 0]  # one member lacks layer 0
    nm = norm_map("a/b", "s", own, pop)
    assert nm.layers == (0, 1, 2, 3) and nm.projections == ("k_proj", "q_proj", "v_proj")
    assert nm.median[1][0] == pytest.approx(0.011)  # median of 0.5, 1.0, 3.0 × 0.011
    assert nm.median[0][0] == pytest.approx(0.0075)  # median of the two members that have it
    assert nm.adapter[2][2] == pytest.approx(0.012 * 6)
    assert norm_map("a/b", "s", [], pop) is None


# --- suppressions -----------------------------------------------------------------------------


def test_parse_toml_and_match_by_sha_prefix():
    text = """
[[suppress]]
repo = "a/b"
sha = "abcdef12"
reason = "reviewed"
expires = 2027-01-31

[[suppress]]
repo = "a/c"
reason = "vendor adapter"
expires = "2026-12-01"
"""
    sups = parse_suppressions(text, fmt="toml")
    assert sups[0].expires == date(2027, 1, 31) and sups[1].expires == date(2026, 12, 1)
    today = date(2026, 11, 25)
    assert match_suppression(sups, "a/b", "abcdef1234" + "0" * 30, today) is sups[0]
    assert match_suppression(sups, "a/b", "ffff" + "0" * 36, today) is None
    assert match_suppression(sups, "a/c", None, today) is sups[1]
    assert match_suppression(sups, "a/c", "1" * 40, date(2026, 12, 2)) is None  # expired the day after


def test_sha_pinned_entry_wins_over_repo_wide():
    wide = Suppression(repo="a/b", reason="wide", expires=date(2030, 1, 1))
    pinned = Suppression(repo="a/b", sha="abc1234", reason="pinned", expires=date(2030, 1, 1))
    assert match_suppression([wide, pinned], "a/b", "abc1234" + "0" * 33, date(2026, 1, 1)) is pinned


def test_parse_yaml():
    pytest.importorskip("yaml")
    text = "suppress:\n  - repo: a/b\n    reason: ok\n    expires: 2027-02-01\n"
    (s,) = parse_suppressions(text, fmt="yaml")
    assert (s.repo, s.sha, s.expires) == ("a/b", None, date(2027, 2, 1))


@pytest.mark.parametrize(
    "body, message",
    [
        ('repo = "a/b"\nexpires = 2027-01-01', "'reason' is required"),
        ('repo = "a/b"\nreason = "x"', "'expires' is required"),
        ('reason = "x"\nexpires = 2027-01-01', "'repo' is required"),
        ('repo = "a/b"\nreason = "x"\nexpires = "soon"', "must be a date"),
        ('repo = "a/b"\nreason = "x"\nexpires = 2027-01-01\nsha = "main"', "hex commit sha"),
        ('repo = "a/b"\nreason = "x"\nexpires = 2027-01-01\nuntil = 1', "unknown key"),
    ],
)
def test_invalid_entries_are_config_errors(body, message):
    with pytest.raises(ConfigError, match=message):
        parse_suppressions("[[suppress]]\n" + body + "\n", fmt="toml")


def test_invalid_toml_is_a_config_error():
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_suppressions("[[suppress]\nrepo=", fmt="toml")
