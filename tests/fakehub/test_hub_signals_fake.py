"""The fake Hub's security scan status and model tree, as the real huggingface_hub client reads them."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi

from tests.fakehub import FakeHub, Fault

BASE = "org/base-1b"


@pytest.fixture()
def hub():
    with FakeHub(page_size=3) as h:
        yield h


def test_security_status_is_served_when_asked_and_configurable_per_repo(hub):
    issues = [{"path": "x.bin", "level": "unsafe"}]
    hub.add_adapter("a/issues", BASE, seed=1, security_issues=issues)
    hub.add_adapter("a/default", BASE, seed=2)
    hub.add_adapter("a/silent", BASE, seed=3, scans_done=None)
    api = HfApi(endpoint=hub.url, token=False)
    assert api.model_info("a/issues", securityStatus=True).security_repo_status == {
        "scansDone": True, "filesWithIssues": issues}
    assert api.model_info("a/default", securityStatus=True).security_repo_status == {
        "scansDone": True, "filesWithIssues": []}
    assert api.model_info("a/silent", securityStatus=True).security_repo_status is None
    assert api.model_info("a/issues").security_repo_status is None  # only when asked


def test_children_of_every_relation_list_under_the_parent_tag(hub):
    parent = "u/adapter"
    hub.add_adapter(parent, BASE, seed=1)
    for i, relation in enumerate(("adapter", "merge", "finetune", "quantized")):
        hub.add_child(f"c/{relation}-{i}", parent, relation)
    hub.add_child("c/other", "u/another", "merge")
    api = HfApi(endpoint=hub.url, token=False)
    got = {m.id: m for m in api.list_models(filter=f"base_model:{parent}", expand=["tags", "baseModels"])}
    assert sorted(got) == ["c/adapter-0", "c/finetune-2", "c/merge-1", "c/quantized-3"]
    assert f"base_model:merge:{parent}" in got["c/merge-1"].tags
    assert got["c/quantized-3"].base_models == {"relation": "quantized", "models": [{"id": parent}]}
    # repeated filters are AND-ed, as on the Hub: no repo is both a merge and a finetune of the parent
    assert list(api.list_models(filter=[f"base_model:merge:{parent}", f"base_model:finetune:{parent}"])) == []
    assert [f for f in hub.listing_filters() if len(f) == 1] == [(f"base_model:{parent}",)] * 2  # 4 items, pages of 3


def test_a_fault_can_target_one_listing_by_its_query(hub):
    hub.add_child("c/one", "u/a", "merge")
    hub.add_child("c/two", "u/b", "merge")
    hub.add_fault(Fault("status", endpoint="list", query="filter=base_model:u/a", status=400, times=None))
    api = HfApi(endpoint=hub.url, token=False)
    assert [m.id for m in api.list_models(filter="base_model:u/b")] == ["c/two"]
    with pytest.raises(Exception, match="400"):
        list(api.list_models(filter="base_model:u/a"))
