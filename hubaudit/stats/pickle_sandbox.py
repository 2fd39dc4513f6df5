"""Opt-in loading of a pickle ``adapter_model.bin``: never in this process.

A child interpreter (``python -I``, CPU/file-size/core limits, a timeout) runs
``torch.load(weights_only=True)`` and re-serializes the tensors as a
safetensors file, which this process then reads with its own validating parser. Nothing
pickled ever reaches our interpreter; torch is imported only by the child.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hubaudit.errors import MissingExtraError
from hubaudit.stats._reject import Rejected

TIMEOUT_S = 120
CPU_LIMIT_S = 120

_CHILD = r"""
import sys, torch
from safetensors.torch import save_file
src, dst = sys.argv[1], sys.argv[2]
try:
    sd = torch.load(src, map_location="cpu", weights_only=True)
except Exception as exc:
    print("torch.load(weights_only=True) refused the file: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
    sys.exit(3)
if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
    print("the pickle does not hold a mapping of names to tensors", file=sys.stderr)
    sys.exit(3)
save_file({k: v.detach().clone().contiguous() for k, v in sd.items()}, dst)
"""


def torch_available() -> bool:
    """True when the child can import torch (the ``probe`` extra)."""
    return importlib.util.find_spec("torch") is not None


def require_torch() -> None:
    """Run-level check for ``--allow-pickle``; raises MissingExtraError without torch."""
    if not torch_available():
        raise MissingExtraError("probe", "--allow-pickle (loading adapter_model.bin)")


def _limits(max_out_bytes: int) -> Callable[[], None]:  # pragma: no cover - runs in the child between fork and exec
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_out_bytes, max_out_bytes))

    return apply


def convert_pickle(src: Path, dst: Path, src_bytes: int) -> None:
    """Write ``dst`` (safetensors) from the pickle ``src`` in a sandboxed child, or raise Rejected."""
    require_torch()
    # Output is at most the tensor bytes plus a header; 2× + 64 MiB leaves room for both.
    limit = 2 * src_bytes + (64 << 20)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD, str(src), str(dst)],
            capture_output=True,
            timeout=TIMEOUT_S,
            preexec_fn=_limits(limit),
            cwd=str(dst.parent),
            env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        raise Rejected(f"loading the pickle took longer than {TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise Rejected(f"pickle not loaded: {reason}")
