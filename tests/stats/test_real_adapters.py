"""The third-party adapters in shared/real-adapters: every one reads (or is unsupported with a reason),
and the scan equals materializing ΔW from an independent reader (safetensors / torch.load)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hubaudit.stats import scan_path

REAL = (Path(__file__).parents[2] / "../shared/real-adapters").resolve()
DIRS = sorted(p for p in REAL.iterdir() if p.is_dir()) if REAL.is_dir() else []
pytestmark = pytest.mark.skipif(not DIRS, reason=f"real adapters not found at {REAL} (shared/ beside the repo)")


def _reference_norms(d: Path, tensors: dict[str, np.ndarray]) -> dict[str, float]:
    cfg = json.loads((d / "adapter_config.json").read_text())
    s = cfg["lora_alpha"] / (math.sqrt(cfg["r"]) if cfg.get("use_rslora") else cfg["r"])
    out = {}
    for k, a in tensors.items():
        if k.endswith(".lora_A.weight"):
            b = tensors[k.replace("lora_A", "lora_B")]
            dw = s * (b.astype(np.float64) @ a.astype(np.float64))
            out[k.removeprefix("base_model.model.").removesuffix(".lora_A.weight")] = float(
                np.linalg.norm(dw) / math.sqrt(dw.size)
            )
    return out


@pytest.mark.parametrize("d", DIRS, ids=[p.name for p in DIRS])
def test_real_adapter_scans(d):
    res = scan_path(d)
    if (d / "adapter_model.safetensors").exists():
        from safetensors.numpy import load_file

        assert res.status == "ok", res.error
        ref = _reference_norms(d, load_file(d / "adapter_model.safetensors"))
    else:
        assert res.status == "unsupported" and "pickle" in res.error
        assert res.content_sha256 and res.file_bytes
        torch = pytest.importorskip("torch")
        res = scan_path(d, allow_pickle=True)
        assert res.status == "ok", res.error
        sd = torch.load(d / "adapter_model.bin", weights_only=True, map_location="cpu")
        ref = _reference_norms(d, {k: v.float().numpy() for k, v in sd.items()})
    got = {m.name: m.frob_norm for m in res.modules}
    assert got.keys() == ref.keys() and len(got) > 0
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-9), k
    assert res.score == pytest.approx(float(np.std(list(ref.values()))), rel=1e-9)
