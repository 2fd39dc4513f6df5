"""A real SQLite store with a calibrated base, built through the Store API from numpy-written adapters.

The population is 36 LoRA adapters with random A/B (same shape and hyper-parameters) plus two whose
per-module norm profile is far from the rest (one module 8x larger). Those are *statistical outliers
for exercising the report plumbing*, not backdoors: no test here claims to detect a backdoor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

BASE = "acme/tiny-base"
N_CLEAN = 36
LAYERS, D, R = 4, 32, 4
PROJ = ("k_proj", "q_proj", "v_proj")
OUTLIERS = ("mallory/sentiment-lora", "reviewed/odd-but-fine")


def hexsha(i: int) -> str:
    return f"{i:040x}"


def write_lora(directory: Path, seed: int, *, hot: float = 1.0, base: str = BASE, proj: tuple[str, ...] = PROJ) -> Path:
    """A PEFT LoRA adapter dir (adapter_config.json + adapter_model.safetensors) written with numpy.

    ``proj`` names the projections (the tensor names' last module part, and ``target_modules``); the
    one that gets ``hot`` is the last."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(LAYERS):
        for p in proj:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{p}"
            a = rng.normal(0, 0.05, size=(R, D)).astype(np.float32)
            b = rng.normal(0, 0.02, size=(D, R)).astype(np.float32)
            if layer == 2 and p == proj[-1]:
                b = b * np.float32(hot)
            tensors[f"{prefix}.lora_A.weight"] = a
            tensors[f"{prefix}.lora_B.weight"] = b
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = {"peft_type": "LORA", "r": R, "lora_alpha": R, "target_modules": list(proj),
           "base_model_name_or_path": base, "task_type": "CAUSAL_LM"}
    (directory / "adapter_config.json").write_text(json.dumps(cfg))
    return directory


@pytest.fixture(scope="session")
def adapters_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    for i in range(N_CLEAN):
        write_lora(root / f"clean{i}", seed=i)
    write_lora(root / "outlier0", seed=1000, hot=8.0)
    write_lora(root / "outlier1", seed=1001, hot=8.0)
    write_lora(root / "other-base", seed=1002, base="meta-llama/Llama-3.2-1B")
    return root


@pytest.fixture(scope="session")
def store_url(tmp_path_factory, adapters_dir) -> str:
    """SQLite URL of a store holding one calibrated base (built once per session; tests only read it)."""
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.stats import scan_path
    from hubaudit.store import Store

    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'hubaudit.db'}"
    with Store.open(url, create=True) as store:
        entries = [(f"org{i % 4}/clean-{i}", adapters_dir / f"clean{i}", i + 1) for i in range(N_CLEAN)]
        entries += [(OUTLIERS[0], adapters_dir / "outlier0", 100), (OUTLIERS[1], adapters_dir / "outlier1", 101)]
        entries += [("mixed/provenance", adapters_dir / "other-base", 102)]
        for repo, path, n in entries:
            scan = scan_path(path)
            assert scan.status == "ok", scan.error
            store.upsert_adapter(BASE, repo, meta={"sha": hexsha(n), "downloads": 10 * n, "likes": n})
            store.record_revision(base=BASE, repo_id=repo, sha=hexsha(n), status="scored",
                                  declared_base=scan.base_model, scan=scan)
        for repo, n, status, reason, error in (
            ("old/pickle-adapter", 200, "unsupported", "pickle_format", "adapter_model.bin is pickle"),
            ("corp/gated-a", 201, "skipped", "gated", None),
            ("corp/gated-b", 202, "skipped", "gated", None),
            ("bad/malformed", 203, "error", "malformed", "header length exceeds file size"),
        ):
            store.upsert_adapter(BASE, repo, meta={"sha": hexsha(n), "downloads": 5})
            store.record_revision(base=BASE, repo_id=repo, sha=hexsha(n), status=status, reason=reason, error=error)
        summary = calibrate_base(store, BASE, min_n=30)
        assert summary.verdicts["flagged"] >= 2, summary.verdicts
        # A probe result for the first outlier (as the prober would record it).
        row = store.find_revision(OUTLIERS[0], hexsha(100))
        store.enqueue_probe(row.revision_id, priority=1.0)
        job = store.claim_probe_jobs("test", limit=1, lease_seconds=60)[0]
        store.finish_probe_job(job.id, {"flagged": True, "mean_attack_rate": 0.62, "outlier_gap": 0.31,
                                        "battery": "paper-v1"})
    return url


@pytest.fixture()
def suppress_file(tmp_path) -> Path:
    p = tmp_path / "suppress.toml"
    p.write_text(
        '[[suppress]]\nrepo = "reviewed/odd-but-fine"\nreason = "reviewed: high lr run, probes clean"\n'
        "expires = 2999-01-01\n\n"
        f'[[suppress]]\nrepo = "{OUTLIERS[0]}"\nsha = "{hexsha(100)[:12]}"\nreason = "old ticket"\n'
        "expires = 2020-01-01\n"
    )
    return p
