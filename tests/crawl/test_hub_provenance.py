"""Base provenance rules (hubaudit.hub.provenance): declared bases vs the listed one, and the scoped cache
of base weight hashes, against the loopback Hub."""

from __future__ import annotations

import pickle

from hubaudit.httpclient import HubConfig, hub_client
from hubaudit.hub import HubSource, RepoInfo
from hubaudit.hub.provenance import BaseWeights, declared_base_provenance, hub_security_provenance, is_hub_id
from tests.crawl.conftest import BASE

HASHES = {"model.safetensors": "1" * 64}


def _prov(card: str | None, config: str | None, weights=None, expected: str = BASE) -> dict:
    return declared_base_provenance(canonical_base=BASE, expected_base=expected, card_base=card, config_base=config,
                                    weights=weights)  # fmt: skip


def test_an_adapter_declaring_its_listed_base_has_no_flags():
    prov = _prov(BASE, BASE)
    assert prov == {"canonical_base": BASE, "expected_base": BASE, "card_base_model": BASE, "config_base_model": BASE,
                    "flags": []}  # fmt: skip


def test_mismatches_and_local_paths_are_flagged():
    assert _prov("other/M", BASE)["flags"] == ["card_base_mismatch", "card_config_disagree", "non_canonical_base"]
    local = _prov(None, "/home/me/qwen")
    assert local["flags"] == ["config_base_mismatch", "local_path_base"] and "base_weights" not in local
    derived = _prov(None, None, expected="q/Qwen-GGUF")
    assert derived["derived_via"] == "q/Qwen-GGUF" and derived["flags"] == []


def test_declared_base_weights_are_compared_by_hash():
    table = {BASE: HASHES, "mirror/same": dict(HASHES), "evil/other": {"model.safetensors": "2" * 64},
             "gone/base": "http_404"}  # fmt: skip
    prov = _prov("mirror/same", "evil/other", weights=table.__getitem__)
    assert prov["base_weights"] == {"evil/other": "differ", "mirror/same": "identical"}
    assert {"base_weights_identical", "base_weights_differ"} <= set(prov["flags"])
    assert _prov(None, "gone/base", weights=table.__getitem__)["base_weights"] == {"gone/base": "unavailable"}
    assert "base_weights" not in _prov(None, "evil/other", weights=None)  # comparison turned off


def test_hub_ids_exclude_paths():
    assert is_hub_id("Qwen/Qwen2.5-1.5B") and is_hub_id("gpt2")
    assert not any(is_hub_id(p) for p in ("/abs/path", "./rel", "~/m", "a/../b", "a/b/c", ""))


def test_the_hub_scan_status_is_copied_only_when_the_hub_gave_one():
    info = RepoInfo(repo_id="u/a", sha="c" * 40, gated=None, disabled=None, files=())
    assert hub_security_provenance(info) == {}
    flagged = RepoInfo(repo_id="u/a", sha="c" * 40, gated=None, disabled=None, files=(),
                       hub_security={"scans_done": True}, hub_security_warning="cut")  # fmt: skip
    assert hub_security_provenance(flagged) == {"hub_security": {"scans_done": True}, "hub_security_warning": "cut"}


def test_the_cache_asks_the_hub_once_per_base_and_lives_as_long_as_its_owner(hub):
    with hub_client(5.0):
        source = HubSource(HubConfig(endpoint=hub.url))
        cache = BaseWeights()
        hub.reset_log()
        first = cache.hashes(source, BASE)
        assert isinstance(first, dict) and first and cache.hashes(source, BASE) == first
        assert hub.count("info", repo=BASE) == 1
        assert cache.hashes(source, "nobody/missing") == cache.hashes(source, "nobody/missing") != first
        assert isinstance(cache.hashes(source, "nobody/missing"), str) and len(cache) == 2
        BaseWeights().hashes(source, BASE)  # a new crawl's cache sees the Hub afresh
        assert hub.count("info", repo=BASE) == 2
    copy = pickle.loads(pickle.dumps(cache))  # a Ray worker's copy travels empty
    assert len(copy) == 0 and len(cache) == 2
