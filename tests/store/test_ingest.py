"""The ingest flow: real adapter files through the real scanner into the store."""

from __future__ import annotations

import hashlib

from hubaudit.pipeline.ingest import ingest
from hubaudit.store import Store
from tests.store.adapters import write_lora

BASE = "sentence-transformers/all-MiniLM-L6-v2"


def test_ingest_is_idempotent_per_content(tmp_path):
    a = write_lora(tmp_path / "a", seed=1)
    b = write_lora(tmp_path / "b", seed=2, rank=8)
    with Store.open(f"sqlite:///{tmp_path / 'db'}", create=True) as store:
        first = ingest(store, [a, b], BASE)
        assert first.all_scored and first.counts == {"inputs": 2, "scored": 2, "unsupported": 0, "error": 0, "skipped": 0}
        item = first.items[0]
        assert item.repo_id == f"local:{a}" and item.stratum == "lora|r4|query,value"
        assert item.sha == hashlib.sha256((a / "adapter_model.safetensors").read_bytes()).hexdigest()
        again = ingest(store, [a, b], BASE)
        assert [i.revision_id for i in again.items] == [i.revision_id for i in first.items]
        assert len(store.population(BASE)) == 2

        write_lora(a, seed=3)  # new content at the same path: a new revision of the same adapter
        third = ingest(store, [a], BASE)
        assert third.items[0].revision_id not in {i.revision_id for i in first.items}
        pop = {p.repo_id: p for p in store.population(BASE)}
        assert len(pop) == 2 and pop[f"local:{a}"].revision_id == third.items[0].revision_id
        row = store.find_revision(f"local:{a}")
        assert {f["name"] for f in row.files} == {"adapter_config.json", "adapter_model.safetensors"}
        assert row.provenance["source"] == "local"


def test_failures_are_recorded_with_reasons(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "adapter_config.json").write_text("{}")
    broken = write_lora(tmp_path / "broken")
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 3)
    missing = tmp_path / "missing"
    good = write_lora(tmp_path / "good")
    with Store.open(f"sqlite:///{tmp_path / 'db'}", create=True) as store:
        s = ingest(store, [empty, broken, missing, good], BASE)
        assert not s.all_scored and s.counts == {"inputs": 4, "scored": 1, "unsupported": 0, "error": 3, "skipped": 0}
        by = {i.path: i for i in s.items}
        assert by[str(empty)].reason == "no_adapter_files"
        assert by[str(broken)].reason == "malformed" and by[str(broken)].error
        assert by[str(missing)].reason == "no_adapter_files"
        assert by[str(missing)].sha == hashlib.sha256(str(missing).encode()).hexdigest()
        assert store.revision_outcome(f"local:{broken}", by[str(broken)].sha) == "error"
        assert len(store.audit_rows(BASE)) == 4 and len(store.population(BASE)) == 1
