"""Crawl outcomes, incrementality, removal and cache hygiene: the real client against the loopback Hub."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from hubaudit.fetch.download import snapshot_dir
from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import populate

EXPECTED = {
    "p/pickle-only": ("unsupported", "pickle_format"),
    "g/gated": ("skipped", "gated"),
    "n/config-only": ("skipped", "no_adapter_files"),
    "w/wrong-sha": ("error", "hash_mismatch"),
    "d/deleted": ("skipped", "not_found"),
}


def _mixed(hub) -> list[str]:
    good = populate(hub, BASE, 6)
    hub.add_adapter("p/pickle-only", BASE, seed=90, fmt="pickle")
    hub.add_adapter("g/gated", BASE, seed=91, gated="auto")
    hub.add_adapter("n/config-only", BASE, seed=92, fmt="none")
    hub.add_adapter("w/wrong-sha", BASE, seed=93)
    hub.set_wrong_sha256("w/wrong-sha", "adapter_model.safetensors")
    hub.add_adapter("d/deleted", BASE, seed=94)
    hub.delete_repo("d/deleted")  # still listed, 404 on fetch: deleted between listing and fetch
    return good


def _revision_counts(db: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(db) as conn:
        return {(r, s): n for r, s, n in conn.execute("SELECT repo_id, sha, COUNT(*) FROM revisions GROUP BY repo_id, sha")}


def _db_path() -> Path:
    return Path(os.environ["HUBAUDIT_HOME"]) / "hubaudit.db"


def test_every_adapter_is_scored_or_recorded_with_its_reason(hub, cli, store):
    good = _mixed(hub)
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["listed"] == len(good) + len(EXPECTED)
    assert summary["scored"] == len(good)
    assert summary["skipped_by_reason"] == {"gated": 1, "hash_mismatch": 1, "no_adapter_files": 1, "not_found": 1,
                                            "pickle_format": 1}
    rows = rows_by_repo(store)
    assert set(rows) == set(good) | set(EXPECTED)
    for repo_id in good:
        row = rows[repo_id]
        assert row.status == "scored" and row.score is not None and row.sha == hub.repos[repo_id].head
        assert {f["name"] for f in row.files} == {"adapter_config.json", "adapter_model.safetensors"}
        assert all(f["verified"] for f in row.files)
    for repo_id, (status, reason) in EXPECTED.items():
        assert (rows[repo_id].status, rows[repo_id].reason) == (status, reason), repo_id
        assert rows[repo_id].error  # a one-line human reason too
    assert set(_revision_counts(_db_path()).values()) == {1}
    # the scan's content_sha256 is the hash the download verified, of the bytes the Hub served
    with sqlite3.connect(_db_path()) as conn:
        summaries = {r: json.loads(s) for r, s in conn.execute(
            "SELECT r.repo_id, w.summary FROM weight_scores w JOIN revisions r ON r.id = w.revision_id")}
    assert set(summaries) == set(good)
    for repo_id in good:
        served = hub.repos[repo_id].files(hub.repos[repo_id].head)["adapter_model.safetensors"]
        assert summaries[repo_id]["content_sha256"] == served.sha256
    # the refused ones never had their body downloaded
    assert hub.count("resolve", repo="p/pickle-only") == 0 and hub.count("resolve", repo="g/gated") == 0
    assert "scored 6" in res.err and "pickle_format 1" in res.err  # human summary on stderr


def test_recrawl_with_nothing_changed_costs_only_listing_pages(hub, cli):
    _mixed(hub)
    assert cli(*crawl_args(hub)).code == 0
    hub.reset_log()
    res = cli(*crawl_args(hub))
    assert res.code == 0
    summary = json.loads(res.out)
    assert summary["new"] == 0 and summary["fetched"] == 0 and summary["unchanged"] == summary["listed"] == 11
    pages = -(-11 // hub.page_size)
    assert hub.count() == hub.count("list") == pages


def test_new_sha_is_a_new_revision_and_only_it_is_fetched(hub, cli, store):
    ids = populate(hub, BASE, 4)
    assert cli(*crawl_args(hub)).code == 0
    old = hub.repos[ids[2]].head
    from hubaudit.demo.fakehub import random_adapter_files

    new = hub.update_repo(ids[2], random_adapter_files(BASE, seed=1234))
    hub.reset_log()
    res = cli(*crawl_args(hub))
    assert json.loads(res.out)["new"] == 1
    assert {r.repo for r in hub.requests if r.endpoint != "list"} == {ids[2]}
    assert all(new in r.path for r in hub.requests if r.endpoint in ("info", "resolve"))  # pinned to the commit
    counts = _revision_counts(_db_path())
    assert counts[(ids[2], old)] == 1 and counts[(ids[2], new)] == 1
    assert rows_by_repo(store)[ids[2]].sha == new


def test_repos_gone_from_a_complete_listing_are_marked_removed(hub, cli, store):
    ids = populate(hub, BASE, 4)
    assert cli(*crawl_args(hub)).code == 0
    hub.delete_repo(ids[0], keep_listed=False)
    res = cli(*crawl_args(hub, "--limit", "2"))
    assert json.loads(res.out)["removed"] == 0  # truncated listing: nothing can be concluded
    assert not rows_by_repo(store)[ids[0]].removed
    res = cli(*crawl_args(hub))
    assert json.loads(res.out)["removed_repos"] == [ids[0]]
    rows = rows_by_repo(store)
    assert rows[ids[0]].removed and not rows[ids[1]].removed


def test_limit_bounds_the_listing(hub, cli):
    populate(hub, BASE, 9)
    summary = json.loads(cli(*crawl_args(hub, "--limit", "3")).out)
    assert summary["listed"] == 3 and summary["listing_complete"] is False


def test_downloads_are_deleted_after_scoring_unless_keep(hub, cli):
    populate(hub, BASE, 3)
    cache = Path(os.environ["HUBAUDIT_HOME"]) / "cache"
    stale = cache / "tmp" / "left-by-a-killed-run"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    assert cli(*crawl_args(hub)).code == 0
    assert not stale.exists()
    assert [p for p in (cache / "tmp").rglob("*") if p.is_file()] == []
    # --keep keeps the verified downloads in a snapshot folder named by a digest of the repo id and the commit
    hub.add_adapter("k/kept", BASE, seed=77)
    assert cli(*crawl_args(hub, "--keep")).code == 0
    kept = snapshot_dir(cache / "hub", "k/kept", hub.repos["k/kept"].head)
    assert {p.name for p in kept.iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}
    files = [p for p in (cache / "hub").rglob("*") if p.is_file()]
    assert files and all(kept in p.parents for p in files)  # the others were fetched without --keep
    partial = kept / ".incoming-left-by-a-killed-run"  # a download cut short: swept by the next run
    partial.write_bytes(b"unverified")
    os.utime(partial, (0, 0))
    assert cli(*crawl_args(hub, "--keep")).code == 0
    assert not partial.exists() and (kept / "adapter_model.safetensors").is_file()


def test_include_derived_crawls_adapters_of_quantized_children(hub, cli, store):
    populate(hub, BASE, 2)
    mirror = "unsloth/Qwen2.5-1.5B-bnb-4bit"
    hub.add_repo(mirror, {"model.safetensors": b"4-bit weights"}, tags=[f"base_model:quantized:{BASE}"])
    hub.add_adapter("q/lora-on-mirror", mirror, seed=60)
    assert json.loads(cli(*crawl_args(hub)).out)["listed"] == 2  # not tagged with the original: invisible
    res = cli(*crawl_args(hub, "--include-derived"))
    assert json.loads(res.out)["listed"] == 3
    row = rows_by_repo(store)["q/lora-on-mirror"]
    assert row.status == "scored" and row.declared_base == mirror
    assert row.provenance["derived_via"] == mirror and row.provenance["flags"] == []


def test_lfs_files_behind_a_cdn_redirect_and_the_token_stays_on_the_hub(hub, cli, store):
    hub.cdn_redirect = True
    ids = populate(hub, BASE, 2)
    hub.add_adapter("big/lora", BASE, seed=9)
    env = {"HF_TOKEN": "tok-123"}
    assert cli(*crawl_args(hub), env=env).code == 0
    hub.add_adapter("big/lora-2", BASE, seed=10)
    assert cli(*crawl_args(hub, "--whole-file-kb", "0"), env=env).code == 0  # hf_hub_download follows it too
    rows = rows_by_repo(store)
    assert {rows[i].status for i in [*ids, "big/lora", "big/lora-2"]} == {"scored"}
    cdn = [r for r in hub.requests if r.endpoint == "cdn"]
    assert cdn and all(r.authorization is None for r in cdn)  # never forwarded to another origin
    assert {r.status for r in hub.requests if r.endpoint == "resolve" and "safetensors" in r.path} == {302}


def test_several_bases_in_one_run(hub, cli, store):
    other = "meta-llama/Llama-3.2-1B"
    a = populate(hub, BASE, 2)
    b = populate(hub, other, 3, prefix="llama")
    res = cli("crawl", "--base", BASE, "--base", other, "--format", "json", "--backoff", "0.01")
    summary = json.loads(res.out)
    assert res.code == 0 and summary["bases"] == [BASE, other] and summary["scored"] == 5
    assert set(rows_by_repo(store)) == set(a)
    assert set(rows_by_repo(store, other)) == set(b)
