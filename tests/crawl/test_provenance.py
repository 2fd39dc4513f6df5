"""Base provenance: declared bases vs the crawled base, weight hashes compared from LFS metadata only."""

from __future__ import annotations

import json

from hubaudit.demo.fakehub import adapter_card
from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import populate


def test_declared_bases_are_recorded_and_mismatches_flagged(hub, cli, store):
    populate(hub, BASE, 2)
    canonical_files = dict((p, f.data) for p, f in hub.repos[BASE].files("main").items())
    hub.add_repo("mirror/Qwen2.5-1.5B", canonical_files)  # a byte-identical re-upload
    hub.add_repo("evil/Qwen2.5-1.5B", {"model.safetensors": b"poisoned base weights", "config.json": b"{}"})
    hub.add_adapter("a/on-reupload", BASE, seed=10, config_base="mirror/Qwen2.5-1.5B")
    hub.add_adapter("a/on-evil", BASE, seed=11, config_base="evil/Qwen2.5-1.5B")
    hub.add_adapter("a/local-path", BASE, seed=12, config_base="/home/me/models/qwen")
    hub.add_adapter("a/card-says-other", BASE, seed=13, tags=adapter_card(BASE)[0],
                    card_data={"base_model": "other/Model-7B"})
    hub.add_adapter("a/flagged-by-hub-scan", BASE, seed=14, security_issues=[{"path": "x.bin", "level": "unsafe"}])
    hub.reset_log()
    res = cli(*crawl_args(hub))
    assert res.code == 0, res.err
    rows = rows_by_repo(store)

    clean = rows["user0/lora-0"]
    assert clean.declared_base == BASE and clean.provenance["flags"] == []
    assert clean.provenance["card_base_model"] == BASE and clean.provenance["config_base_model"] == BASE

    reup = rows["a/on-reupload"].provenance
    assert rows["a/on-reupload"].declared_base == "mirror/Qwen2.5-1.5B"
    assert {"config_base_mismatch", "card_config_disagree", "non_canonical_base", "base_weights_identical"} == set(reup["flags"])
    assert reup["base_weights"] == {"mirror/Qwen2.5-1.5B": "identical"}

    evil = rows["a/on-evil"].provenance
    assert "base_weights_differ" in evil["flags"] and evil["base_weights"] == {"evil/Qwen2.5-1.5B": "differ"}

    assert "local_path_base" in rows["a/local-path"].provenance["flags"]
    assert "non_canonical_base" not in rows["a/local-path"].provenance["flags"]

    card = rows["a/card-says-other"].provenance
    assert {"card_base_mismatch", "card_config_disagree", "non_canonical_base"} <= set(card["flags"])
    assert card["base_weights"] == {"other/Model-7B": "unavailable"}  # not on this Hub

    # the Hub's own scan status is recorded beside the provenance flags, never counted as one
    assert rows["a/flagged-by-hub-scan"].provenance["hub_security"] == {
        "scans_done": True, "files_with_issues": [{"path": "x.bin", "level": "unsafe"}]}
    assert rows["a/flagged-by-hub-scan"].provenance["flags"] == []
    assert json.loads(res.out)["flagged"] == 4

    # base weights were compared from metadata: no base file was downloaded
    for base_repo in (BASE, "mirror/Qwen2.5-1.5B", "evil/Qwen2.5-1.5B"):
        assert hub.count("resolve", repo=base_repo) == 0
        assert hub.count("info", repo=base_repo) >= 1
