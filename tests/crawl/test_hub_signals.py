"""The Hub's own signals against the loopback Hub: the security scan status of each crawled revision
(stored, capped, never a verdict) and ``hubaudit downstream`` (the repos built on each finding)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from hubaudit.hub.source import MAX_SECURITY_FILES, MAX_SECURITY_PATH
from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import FakeHub, Fault

SECRET = "hf_secret-token-never-elsewhere"
EVIL = "evil/backdoor-lora"
CLEAN = "good/clean-lora"


def _info_queries(hub) -> list[dict[str, list[str]]]:
    return [parse_qs(r.path.partition("?")[2]) for r in hub.requests if r.endpoint == "info" and "/revision/" in r.path]


# -- security scan status ---------------------------------------------------------------------

def test_crawl_records_the_hub_security_status_of_each_revision(hub, cli, store):
    issues = [{"path": "adapter_model.bin", "level": "unsafe"}, {"path": "extra/opt.pkl", "level": "suspicious"}]
    hub.add_adapter("a/with-issues", BASE, seed=1, security_issues=issues)
    hub.add_adapter("a/clean-scan", BASE, seed=2)
    hub.add_adapter("a/pending", BASE, seed=3, scans_done=False)
    hub.add_adapter("a/hub-says-nothing", BASE, seed=4, scans_done=None)
    hub.add_adapter("a/pickle-only", BASE, seed=5, fmt="pickle", security_issues=[issues[0]])
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)

    assert rows["a/with-issues"].provenance["hub_security"] == {"scans_done": True, "files_with_issues": issues}
    assert rows["a/clean-scan"].provenance["hub_security"] == {"scans_done": True, "files_with_issues": []}
    assert rows["a/pending"].provenance["hub_security"] == {"scans_done": False, "files_with_issues": []}
    assert "hub_security" not in rows["a/hub-says-nothing"].provenance
    # recorded with outcomes decided from metadata alone, too
    assert rows["a/pickle-only"].status == "unsupported"
    assert rows["a/pickle-only"].provenance["hub_security"]["files_with_issues"] == [issues[0]]
    # the Hub's word is shown, never a verdict: the adapter with issues is scored like the others
    # and not counted as flagged by the crawl
    assert rows["a/with-issues"].status == "scored"
    assert json.loads(res.out)["flagged"] == 0
    assert not any("hub_security_warning" in r.provenance for r in rows.values())
    # one model_info per revision, asking for blobs and the security status at once
    queries = _info_queries(hub)
    assert len(queries) == 5
    assert all(q["securityStatus"] == ["true"] and q["blobs"] == ["true"] for q in queries)


HOSTILE_STATUS = {
    "a/not-an-object": ("unsafe", None),
    "a/issues-not-a-list": ({"scansDone": True, "filesWithIssues": {"path": "x"}}, None),
    "a/many": ({"scansDone": True, "filesWithIssues": [{"path": f"w{i}.bin", "level": "unsafe"} for i in range(100_000)]},
               {"scans_done": True, "files_with_issues": [{"path": f"w{i}.bin", "level": "unsafe"}
                                                           for i in range(MAX_SECURITY_FILES)]}),
    "a/wrong-types": ({"scansDone": "yes", "filesWithIssues": [1, None, ["x"], {"path": 5}, {"path": "ok.bin", "level": 7}]},
                      {"scans_done": None, "files_with_issues": [{"path": "ok.bin", "level": "unknown"}]}),
}


def test_hostile_security_fields_do_not_break_the_crawl_and_are_capped(hub, cli, store):
    markup = "\x1b[31m[bold red]pwned[/]\u202e<script>alert(1)</script>"
    long_path = markup + "A" * 5000
    status = {"scansDone": True, "filesWithIssues": [{"path": long_path, "level": "[link=file:///etc]x[/link]"},
                                                      {"path": markup, "level": "UNSAFE"}]}
    for i, (repo, (raw, _)) in enumerate(HOSTILE_STATUS.items()):
        hub.add_adapter(repo, BASE, seed=20 + i, info_overrides={"securityRepoStatus": raw})
    hub.add_adapter("a/markup", BASE, seed=30, info_overrides={"securityRepoStatus": status})
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    assert "\x1b" not in res.err + res.out and "\u202e" not in res.err + res.out
    rows = rows_by_repo(store)
    assert {rows[r].status for r in [*HOSTILE_STATUS, "a/markup"]} == {"scored"}  # the audits went on

    for repo, (_, stored) in HOSTILE_STATUS.items():
        prov = rows[repo].provenance
        if stored is None:
            assert "hub_security" not in prov, repo  # unknown, never "no issues"
        else:
            assert prov["hub_security"] == stored, repo
        assert prov["hub_security_warning"], repo
    assert "100000 files with issues listed, the first 100 kept" in rows["a/many"].provenance["hub_security_warning"]
    assert "4 filesWithIssues entries without a string path dropped" in rows["a/wrong-types"].provenance["hub_security_warning"]

    cut, plain = rows["a/markup"].provenance["hub_security"]["files_with_issues"]
    assert len(cut["path"]) == MAX_SECURITY_PATH and cut["path"].startswith(markup) and cut["path"].endswith("…")
    assert cut["level"] == "unknown"  # a level outside the documented set is never the server's string
    assert plain == {"path": markup, "level": "unsafe"}  # stored as data; every sink escapes it


# -- downstream exposure ----------------------------------------------------------------------

def _confirm_by_probe(store_factory, repo_id: str) -> None:
    """Record a probe result that confirms a backdoor (as the prober would)."""
    with store_factory() as store:
        row = store.find_revision(repo_id)
        job = store.enqueue_probe(row.revision_id, priority=1.0)
        (claimed,) = store.claim_probe_jobs("test", limit=1, lease_seconds=60)
        assert claimed.id == job
        store.finish_probe_job(job, {"flagged": True, "mean_attack_rate": 0.9, "battery": "test"})


@pytest.fixture()
def finding(hub, cli, store):
    """EVIL is a probe-confirmed finding of BASE, CLEAN a clean adapter; both crawled."""
    hub.add_adapter(EVIL, BASE, seed=1)
    hub.add_adapter(CLEAN, BASE, seed=2)
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    _confirm_by_probe(store, EVIL)
    hub.reset_log()
    return EVIL


def test_downstream_records_every_relation_of_a_finding_in_one_listing(hub, cli, store, finding):
    hub.add_child("m/merged", EVIL, "merge")
    hub.add_child("f/finetuned", EVIL, "finetune")
    hub.add_child("q/quantized-gguf", EVIL, "quantized")
    hub.add_adapter("a/lora-on-evil", EVIL, seed=9)  # an adapter of the adapter (relation "adapter")
    hub.add_child("m/merged-clean", CLEAN, "merge")  # built on a clean adapter: never asked for
    hub.add_child("h/dots", EVIL, "merge", listing_overrides={"id": "../x"})
    hub.add_child("h/markup", EVIL, "merge", listing_overrides={"id": "[bold]x[/bold]"})
    hub.add_repo("h/no-relation", {"config.json": b"{}"}, tags=[f"base_model:{EVIL}"])

    res = cli("downstream", "--base", BASE)
    assert res.code == 0, res.err
    expected = [("a/lora-on-evil", "adapter"), ("f/finetuned", "finetune"), ("m/merged", "merge"),
                ("q/quantized-gguf", "quantized")]
    with store() as s:
        assert s.downstream(BASE) == {EVIL: expected}
    # one listing for the one finding (8 entries: two pages of 5), none for the clean adapter,
    # nothing else requested
    assert hub.listing_filters() == [(f"base_model:{EVIL}",)] * 2
    assert {r.endpoint for r in hub.requests} == {"list"}
    # the table on stdout: every child with its relation; refused ids are neither shown nor stored
    for child, relation in expected:
        assert child in res.out and relation in res.out
    assert "../x" not in res.out and "[bold]" not in res.out and "m/merged-clean" not in res.out
    assert "1 finding(s), 1 queried, 4 downstream repo(s), 0 listing(s) failed" in res.err

    # json: the same, with the refused entries counted; a rerun keeps one row per child
    again = cli("downstream", "--base", BASE, "--format", "json")
    assert again.code == 0, again.err
    (item,) = json.loads(again.out)["findings"]
    assert item["repo_id"] == EVIL and [tuple(c) for c in item["children"]] == expected
    assert item["refused"] == 3 and item["error"] is None
    with store() as s:
        assert s.downstream(BASE) == {EVIL: expected}


def test_downstream_without_findings_asks_the_hub_nothing(hub, cli, store):
    hub.add_adapter(CLEAN, BASE, seed=2)
    hub.add_child("m/merged-clean", CLEAN, "merge")
    assert cli(*crawl_args(hub)).code == 0
    hub.reset_log()
    res = cli("downstream", "--base", BASE)
    assert res.code == 0, res.err
    assert hub.requests == []
    assert "no findings" in res.err


def test_downstream_of_an_unknown_base_is_one_line_exit_3(hub, cli, store, finding):
    res = cli("downstream", "--base", "nobody/unknown-base")
    assert res.code == 3 and res.err.startswith("Error: ") and "Traceback" not in res.err


def test_downstream_never_sends_the_token_off_origin_and_exits_4(hub, cli, store, finding):
    hub.add_child("m/merged", EVIL, "merge")
    with FakeHub() as other:
        link = f'<{other.url}/api/models?filter=base_model%3A{EVIL.replace("/", "%2F")}&cursor=steal>; rel="next"'
        hub.add_fault(Fault("headers", endpoint="list", headers={"Link": link}, times=None))
        res = cli("downstream", "--base", BASE, "--format", "json", env={"HF_TOKEN": SECRET})
        assert other.requests == []
    assert res.code == 4, res.err
    assert any(line.startswith("Error: ") for line in res.err.splitlines())
    assert "origin" in res.err and "Traceback" not in res.err
    assert SECRET not in res.err + res.out
    assert "origin" in json.loads(res.out)["findings"][0]["error"]
    assert {r.authorization for r in hub.requests} == {f"Bearer {SECRET}"}
    with store() as s:
        assert s.downstream(BASE) == {}  # an unusable listing records nothing


def test_nightly_records_downstream_after_probing_and_survives_its_failure(hub, cli, store, finding, tmp_path):
    hub.add_child("m/merged", EVIL, "merge")
    config = tmp_path / "config.toml"
    config.write_text(f'export_dir = "{tmp_path / "exports"}"\n\n[[base]]\nid = "{BASE}"\n')
    res = cli("nightly", "--config", str(config), "--format", "json")
    assert res.code == 0, res.err
    (outcome,) = json.loads(res.out)["bases"]
    assert outcome["downstream"] == {"status": "ran", "findings": 1, "queried": 1, "children": 1, "failed": 0,
                                     "hub_error": None}
    with store() as s:
        assert s.downstream(BASE) == {EVIL: [("m/merged", "merge")]}

    # The step's listing is refused (a next page on another origin): the run says so and exits 4,
    # but the crawl, calibration and exports before and after it stand.
    hub.add_child("f/finetuned", EVIL, "finetune")
    with FakeHub() as other:
        hub.add_fault(Fault("headers", endpoint="list", query=f"filter=base_model:{EVIL}",
                            headers={"Link": f'<{other.url}/api/models>; rel="next"'}, times=None))
        res = cli("nightly", "--config", str(config), "--format", "json")
        assert other.requests == []
    assert res.code == 4, res.err
    summary = json.loads(res.out)
    (outcome,) = summary["bases"]
    assert outcome["crawl"]["unchanged"] == 2 and outcome["calibration"] is not None
    assert outcome["downstream"]["status"] == "failed" and "origin" in outcome["downstream"]["hub_error"]
    assert any(e.startswith("downstream:") for e in outcome["errors"])
    assert summary["hub_error"] and outcome["exports"]
    with store() as s:
        assert s.downstream(BASE) == {EVIL: [("m/merged", "merge")]}  # the earlier run's record stands


def test_report_shows_the_hub_scan_status_and_the_downstream_repos_of_a_finding(hub, cli, store, finding):
    """From the loopback Hub to the morning report: the Hub's own scan result of a finding is shown
    beside hubaudit's verdict (never instead of it), and the repos built on the finding are listed."""
    hub.add_child("m/merged", EVIL, "merge")
    hub.add_child("q/quantized-gguf", EVIL, "quantized")
    assert cli("downstream", "--base", BASE).code == 0
    doc = json.loads(cli("report", "--base", BASE, "--format", "json").out)
    evil = next(a for a in doc["adapters"] if a["repo_id"] == EVIL)
    assert evil["probe_flagged"] is True  # the finding stands whatever the Hub's scan said
    assert evil["hub_security"]["status"] == "scanned"  # the loopback Hub scanned it and saw no issue
    assert [(d["repo_id"], d["relation"]) for d in evil["downstream"]] == [("m/merged", "merge"),
                                                                        ("q/quantized-gguf", "quantized")]
    assert evil["url"] is None  # crawled from the loopback Hub, not huggingface.co: no link there
    table = cli("report", "--base", BASE, "--format", "table").out
    assert "huggingface.co" not in table
    assert "not a hubaudit verdict" in table and "m/merged" in table and "q/quantized-gguf" in table
    html = cli("report", "--base", BASE, "--format", "html").out
    assert "m/merged" in html and "not a hubaudit verdict" in html
