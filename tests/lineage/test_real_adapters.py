"""End to end with real adapter files: scan_path fingerprints them, and a re-parametrised copy (B·R, R⁻¹·A),
a rescaled float16 re-save and a further fine-tune of a probe-confirmed adapter are flagged by ``report``
and ``check PATH``, while independently trained adapters are not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.report.test_cli import run

BASE = "acme/fp-base"
R, D, LAYERS = 4, 64, 4
PROJ = ("q_proj", "v_proj")


def modules(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {f"{layer}.self_attn.{p}": (rng.normal(0, 0.05, (R, D)), rng.normal(0, 0.02, (D, R)))
            for layer in range(LAYERS) for p in PROJ}  # fmt: skip


def write(directory: Path, mods: dict, *, alpha: float = R, dtype=np.float32) -> Path:
    from safetensors.numpy import save_file

    tensors = {}
    for name, (a, b) in mods.items():
        tensors[f"base_model.model.model.layers.{name}.lora_A.weight"] = np.ascontiguousarray(a, dtype=dtype)
        tensors[f"base_model.model.model.layers.{name}.lora_B.weight"] = np.ascontiguousarray(b, dtype=dtype)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = {"peft_type": "LORA", "r": R, "lora_alpha": alpha, "target_modules": list(PROJ),
           "base_model_name_or_path": BASE, "task_type": "CAUSAL_LM"}  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(cfg))
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from hubaudit.pipeline.calibrate import calibrate_base
    from hubaudit.stats import scan_path
    from hubaudit.store import Store
    from tests.lineage._store import confirm

    root = tmp_path_factory.mktemp("fp-adapters")
    rng = np.random.default_rng(5)
    bad = modules(1000)
    rot = rng.normal(size=(R, R)) + 2 * np.eye(R)
    copy = {k: (np.linalg.inv(rot) @ a, b @ rot) for k, (a, b) in bad.items()}  # same ΔW, other A and B
    tuned = {k: (a + rng.normal(0, 0.015, a.shape), b + rng.normal(0, 0.006, b.shape)) for k, (a, b) in bad.items()}
    # rescaled (B·3, A/3 with alpha doubled and B halved again) and re-saved in float16: the same ΔW
    resaved = {k: (a / 3, b * 3 / 2) for k, (a, b) in bad.items()}
    paths = {f"org/clean-{i}": write(root / f"clean{i}", modules(i)) for i in range(30)}
    paths |= {"evil/bad": write(root / "bad", bad), "copycat/copy": write(root / "copy", copy),
              "tuner/tuned": write(root / "tuned", tuned)}  # fmt: skip
    url = f"sqlite:///{root / 'h.db'}"
    with Store.open(url, create=True) as store:
        for n, (repo, path) in enumerate(paths.items()):
            scan = scan_path(path)
            assert scan.status == "ok" and scan.fingerprint is not None, scan.error
            store.record_revision(base=BASE, repo_id=repo, sha=f"{n + 1:040x}", status="scored", declared_base=BASE, scan=scan)
        confirm(store, "evil/bad", f"{list(paths).index('evil/bad') + 1:040x}")
        summary = calibrate_base(store, BASE, min_n=30)
    resaved_dir = write(root / "resaved", resaved, alpha=2 * R, dtype=np.float16)
    return url, summary, resaved_dir, root


def test_report_flags_the_copy_and_the_derivative_of_real_files(world):
    url, summary, _, _ = world
    assert summary.similarity_source == "calibrated" and summary.similarity["null_pairs"] == 33 * 32 // 2
    doc = json.loads(run("report", "--base", BASE, "--format", "json", "--db", url).stdout)
    d = {a["repo_id"]: a["derived_from"] for a in doc["adapters"]}
    assert d["copycat/copy"]["kind"] == "copy" and d["copycat/copy"]["similarity"] > 0.999
    assert d["copycat/copy"]["source_repo_id"] == "evil/bad"
    assert d["tuner/tuned"]["kind"] == "derivative" and d["tuner/tuned"]["similarity"] < 0.99
    assert d["evil/bad"] is None  # never its own source
    assert all(d[f"org/clean-{i}"] is None for i in range(30))
    assert doc["summary"]["derived"] == 2


def test_check_path_flags_a_rescaled_float16_resave(world):
    url, _, resaved, root = world
    p = run("check", str(resaved), "--base", BASE, "--offline", "--format", "json", "--db", url)
    doc = json.loads(p.stdout)
    assert p.returncode == 1, p.stderr
    assert doc["source"] == "scanned" and doc["derived_from"]["kind"] == "copy"
    assert doc["reasons"][0].startswith("derived_from evil/bad@")
    clean = run("check", str(write(root / "fresh", modules(777))), "--base", BASE, "--offline", "--format", "json",
                "--db", url)  # fmt: skip
    assert json.loads(clean.stdout)["derived_from"] is None and clean.returncode == 0, clean.stderr
