"""Adapter fingerprints: a fixed-size sketch of every module's ΔW = s·B·A, and the exact cosine it estimates.

Sketch (``FINGERPRINT_VERSION`` "fp-1"). For each LoRA module m with A (r, d_in) and B (d_out, r)
(conv A viewed (r, in·kh·kw), B (out, r); embedding LoRA A (r, num_embeddings), B (dim, r), as the
scanner reads them), a two-sided Gaussian random projection

    S_m = w_m · s_m · (Ψ B)(A Ω)           (k×k; Ψ k×d_out, Ω d_in×k, entries N(0, 1/k))

is formed from the k×r and r×k products the streaming reader computes beside the Grams, so
ΔW is never materialised and E⟨S_m, S'_m⟩_F = w_m² s_m s'_m ⟨B A, B' A'⟩_F. Ψ depends only on
(d_out, k) and Ω only on (d_in, k) (fixed seeds, generated in row chunks and cached per process):
every adapter of a base uses the same projections for the same module shape. All modules' S_m
are then summed into one D-vector by a signed feature hash (count sketch; each of the k² entries of
S_m gets a bucket and a sign from the module name), and the vector is L2-normalised. The dot
product of two fingerprints estimates the cosine of the two adapters' weighted ΔW concatenated
over modules (a module present in one adapter only adds to its norm), ``exact_similarity`` computes
that cosine exactly from r×r products.

Invariances: S_m depends on s·B·A only, so B·R with R⁻¹·A, B·c with A/c and any alpha/r or rsLoRA
convention whose s compensates the weights give the same fingerprint up to float64 rounding; a
bf16/fp16 copy differs only by the rounding of its stored weights. Merges that stack ranks
(B = [B₁ B₂], A = [A₁; A₂]) sketch ΔW₁ + ΔW₂. DoRA magnitudes are not part of it (s·B·A only).
An adapter whose ΔW are all zero (B = 0 at initialisation) gets the zero vector (similarity 0 to
everything), never NaN. A module with a side over ``MAX_SIDE`` values is left out (a warning).

Choices, measured with evals/fingerprint/error.py (264 synthetic pairs with true cosine 0…1 on
MiniLM- and Qwen2.5-1.5B-shaped adapters, 80 pairs of adapters trained with peft on the real
MiniLM; evals/fingerprint/RESULTS.md) and benchmarks/bench_fingerprint.py:
- k = 16, D = 1024 (2 KiB stored as float16). |similarity − exact cosine|: mean 0.025, max 0.12
  (synthetic), mean 0.024, max 0.08 (trained). k = 8 costs half but errs 1.6× more on trained
  adapters (mean 0.038, max 0.15; their ΔW have a low effective rank, the hard case for a two-sided
  sketch); k = 32 or D = 2048 err ~15 % less. The error shrinks towards cosine 1 (0 for a copy).
- Ψ and Ω seeded per (side length, k), not per module name: the same error (0.027 vs 0.027 and
  0.025 vs 0.022 on the MiniLM shape sets) and no generation per scan (per-name seeds cost ~5× the
  whole scan of the Qwen-shaped adapter). Modules of one shape thus share their projections.
- w_m = 1/√(d_out·d_in): module m enters as ΔW_m/√(d_out·d_in) (its norm is the paper's f_m,
  arXiv 2605.30189), so the larger MLP matrices do not outweigh attention. On the trained
  adapters it separates derivatives from independent adapters slightly better than raw ΔW
  (margin 0.515 vs 0.474 for the sketch, 0.611 vs 0.603 exact).
- Cost: A·Ω and Ψ·B take 2k flops per stored value (the Gram r), done in single precision: on the
  Qwen-shaped fp32 adapter (r = 16) ~+20 % CPU time of a scan with sha256, ~+40 % without.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from hubaudit.constants import ADAPTER_SAFETENSORS, FINGERPRINT_VERSION, MAX_ADAPTER_BYTES
from hubaudit.errors import InputError
from hubaudit.models import Fingerprint
from hubaudit.stats._reject import Rejected, show_name
from hubaudit.stats.adapter_config import NO_CONFIG, LoraSettings, parse_settings
from hubaudit.stats.dtypes import DTYPE_BITS, FLOAT_DTYPES, storage_view, to_float64
from hubaudit.stats.gram import BLOCK_ELEMENTS
from hubaudit.stats.safetensors_header import TensorEntry, read_header
from hubaudit.vocab import ScanStatus

K = 16  # projection width: S_m is k×k
DIM = 1024  # fingerprint length (2 KiB as float16)
Weighting = Literal["rms", "raw"]
WEIGHTING: Weighting = "rms"
MAX_SIDE = 1 << 20  # modules with a larger d_in or d_out are left out (no real layer is that wide)

_CHUNK_ROWS = 1 << 15  # projections are generated and cached 32,768 rows at a time (4 MiB at k=16)
_CACHE_BYTES = 48 << 20
_SEED_TAG = b"hubaudit " + FINGERPRINT_VERSION.encode()


def _gaussian(seed: bytes, n: int) -> np.ndarray:
    """n i.i.d. N(0, 1) from PCG64 raw bits and Box–Muller.

    Built from ``random_raw`` (whose stream numpy keeps stable across versions) rather than
    ``Generator.standard_normal`` (whose algorithm may change), because fingerprints are stored.
    """
    m = (n + 1) // 2
    raw = np.random.PCG64(int.from_bytes(hashlib.blake2b(seed, digest_size=16).digest(), "little")).random_raw(2 * m)
    u = (raw >> np.uint64(11)).astype(np.float64)
    u *= 2.0**-53  # uniform on [0, 1)
    rad = np.sqrt(-2.0 * np.log1p(-u[:m]))  # 1 - u in (0, 1]: finite
    theta = u[m:] * (2.0 * math.pi)
    out = np.empty(2 * m)
    np.multiply(rad, np.cos(theta), out=out[:m])
    np.multiply(rad, np.sin(theta), out=out[m:])
    return out[:n]


class _ChunkCache:
    """Process-wide LRU of projection chunks (float64 and float32), bounded in bytes; thread-safe."""

    def __init__(self, budget: int) -> None:
        self._budget, self._used = budget, 0
        self._chunks: OrderedDict[tuple[str, int, int, int, type], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, role: str, n: int, k: int, c: int, dtype: type[np.floating]) -> np.ndarray:
        key = (role, n, k, c, dtype)
        with self._lock:
            hit = self._chunks.get(key)
            if hit is not None:
                self._chunks.move_to_end(key)
                return hit
        if dtype is np.float64:
            rows = min(n, (c + 1) * _CHUNK_ROWS) - c * _CHUNK_ROWS
            tag = _SEED_TAG + f" {role} n={n} k={k} chunk={c}".encode()
            chunk = _gaussian(tag, rows * k).reshape(rows, k)
            chunk *= 1.0 / math.sqrt(k)
        else:  # the float64 chunk rounded
            chunk = self.get(role, n, k, c, np.float64).astype(dtype)
        # shared and never written, but not flagged read-only: numpy's matmul then skips BLAS (~40× slower)
        with self._lock:
            if key not in self._chunks:
                self._chunks[key] = chunk
                self._used += chunk.nbytes
                while self._used > self._budget and len(self._chunks) > 1:
                    _, old = self._chunks.popitem(last=False)
                    self._used -= old.nbytes
        return chunk


_CACHE = _ChunkCache(_CACHE_BYTES)


@dataclass(frozen=True)
class Projection:
    """The fixed n×k matrix (i.i.d. N(0, 1/k)) for one side of a module: Ω for d_in, Ψᵀ for d_out.

    ``rows(start, stop)`` is the row block a streamed tensor block multiplies: A[:, c:c+j] @ Ω[c:c+j]
    (``role="omega"``) or Ψᵀ[c:c+j]ᵀ @ B[c:c+j] (``role="psi"``), so a tensor is projected block by
    block in O(block) memory and the sum over blocks equals the product with the whole matrix.
    ``dtype=np.float32`` gives the same matrix rounded to float32, for the single-precision
    products of every tensor dtype but F64 (half the time of float64; relative error ~1e-6, far
    below the sketch's own).
    """

    role: Literal["omega", "psi"]
    n: int
    k: int = K

    def rows(self, start: int, stop: int, dtype: type[np.floating] = np.float64) -> np.ndarray:
        c0, c1 = start // _CHUNK_ROWS, (stop - 1) // _CHUNK_ROWS
        lo, hi = start - c0 * _CHUNK_ROWS, stop - c0 * _CHUNK_ROWS
        if c0 == c1:
            return _CACHE.get(self.role, self.n, self.k, c0, dtype)[lo:hi]
        return np.concatenate([_CACHE.get(self.role, self.n, self.k, c, dtype) for c in range(c0, c1 + 1)])[lo:hi]


def projection(role: Literal["omega", "psi"], n: int, k: int = K) -> Projection | None:
    """Ω (``"omega"``, n = d_in) or Ψᵀ (``"psi"``, n = d_out); None when n exceeds ``MAX_SIDE``."""
    return _projection(role, n, k) if 0 < n <= MAX_SIDE else None


@lru_cache(maxsize=1024)
def _projection(role: Literal["omega", "psi"], n: int, k: int) -> Projection:
    return Projection(role, n, k)


# OpenBLAS splits a gemm over threads above m·n·k = 4·65536; these thin products (r×j by j×k) are
# then slower, and far slower on a busy host (measured 10-30×), so they are cut into pieces below it.
_GEMM_SINGLE_THREAD = 1 << 18


def project(x: np.ndarray, rows: np.ndarray, cols: bool) -> np.ndarray:
    """A block's share of A·Ω (x (r, j), rows = Ω[c:c+j]) or of Ψ·B (x (j, r), rows = Ψᵀ[c:c+j]).

    Ψ·B is formed as (Bᵀ·Ψᵀ)ᵀ: numpy's BLAS call for a transposed left operand is ~5× slower here.
    """
    xt = x if cols else x.T  # (r, j)
    r, j = xt.shape
    step = max(64, _GEMM_SINGLE_THREAD // max(r * rows.shape[1], 1))
    if j <= step:
        return xt @ rows if cols else (xt @ rows).T
    out = xt[:, :step] @ rows[:step]
    for c in range(step, j, step):
        out += xt[:, c : c + step] @ rows[c : c + step]
    return out if cols else out.T


@lru_cache(maxsize=16384)
def _buckets(name: str, k: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Count-sketch bucket and sign of each of a module's k² sketch entries, from its name (shake-128)."""
    digest = hashlib.shake_128(_SEED_TAG + b"\0" + name.encode("utf-8", "surrogatepass")).digest(4 * k * k)
    v = np.frombuffer(digest, dtype="<u4")
    idx = ((v & 0x7FFFFFFF) % dim).astype(np.intp)
    sign = np.where(v >> 31, -1.0, 1.0)
    idx.flags.writeable = sign.flags.writeable = False
    return idx, sign


def module_weight(scaling: float, d_out: int, d_in: int, weighting: Weighting = WEIGHTING) -> float:
    """The factor each module's (ΨB)(AΩ) is multiplied by: s, or s/√(d_out·d_in) (``"rms"``)."""
    return scaling / math.sqrt(d_out * d_in) if weighting == "rms" else scaling


class SketchBuilder:
    """Collects modules' projected halves; ``result`` hashes them into one fingerprint (module order
    does not matter: the count sketch is a sum)."""

    def __init__(self, k: int = K, dim: int = DIM, weighting: Weighting = WEIGHTING) -> None:
        self.k, self.dim, self.weighting = k, dim, weighting
        self._names: list[str] = []
        self._values: list[np.ndarray] = []

    @property
    def n_modules(self) -> int:
        return len(self._names)

    def add(self, name: str, psi_b: np.ndarray, a_omega: np.ndarray, scaling: float, d_out: int, d_in: int) -> None:
        """One module: Ψ·B (k×r), A·Ω (r×k), its PEFT scaling s and its d_out, d_in."""
        s = np.asarray(psi_b, dtype=np.float64) @ np.asarray(a_omega, dtype=np.float64)
        self._names.append(name)
        self._values.append(s.ravel() * module_weight(scaling, d_out, d_in, self.weighting))

    def result(self) -> Fingerprint | None:
        """The unit-norm fingerprint (zeros if every ΔW is zero); None if the sketch overflowed float64."""
        vec: np.ndarray = np.zeros(self.dim)
        if self._names:  # one bincount for all modules: each entry to its bucket, with its sign
            buckets = [_buckets(name, self.k, self.dim) for name in self._names]
            signed = np.concatenate(self._values) * np.concatenate([sign for _, sign in buckets])
            vec = np.bincount(np.concatenate([idx for idx, _ in buckets]), weights=signed, minlength=self.dim)
        top = float(np.max(np.abs(vec))) if vec.size else 0.0
        if not math.isfinite(top):
            return None
        if top == 0.0:
            return Fingerprint(FINGERPRINT_VERSION, np.zeros(self.dim, dtype=np.float32), self.n_modules)
        v = vec / top  # scaled first so that the squared norm cannot overflow
        v /= math.sqrt(float(v @ v))
        return Fingerprint(FINGERPRINT_VERSION, v.astype(np.float32), self.n_modules)


def fingerprint_from_arrays(
    pairs: dict[str, tuple[np.ndarray, np.ndarray, float]],
    *,
    k: int = K,
    dim: int = DIM,
    weighting: Weighting = WEIGHTING,
) -> Fingerprint | None:
    """In-memory route: ``{module: (A (r, d_in…), B (d_out, r…), scaling)}`` → the scanner's fingerprint.

    Same projections and hashing as a file scan (which computes Ψ·B and A·Ω block by block).
    """
    builder = SketchBuilder(k, dim, weighting)
    for name, (a, b, s) in pairs.items():
        a64 = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
        b64 = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1)
        omega, psi = projection("omega", a64.shape[1], k), projection("psi", b64.shape[0], k)
        if omega is None or psi is None:
            continue
        psi_b, a_omega = project(b64, psi.rows(0, psi.n), False), project(a64, omega.rows(0, omega.n), True)
        builder.add(name, psi_b, a_omega, s, b64.shape[0], a64.shape[1])
    return builder.result()


# ---------------------------------------------------------------------------------------------
# Exact similarity from r×r products (the confirmation of a fingerprint match)


@dataclass(frozen=True)
class ExactSimilarity:
    """The exact cosine between two adapters' ΔW, with the same module weighting as the fingerprint.

    ``cosine``: Σ_shared w²⟨ΔW₁,ΔW₂⟩ / (‖ΔW₁‖·‖ΔW₂‖) with norms over *all* modules of each adapter,
    the quantity ``Fingerprint.similarity`` estimates. ``cosine_shared``: the same with norms over
    the shared modules only (a copy padded with extra modules still scores 1 here).
    ``shared_modules``: modules with the same name and (d_out, d_in) in both; ``only_a``/``only_b``:
    the rest of each (a same-named module of another shape counts here). Zero ΔW → cosine 0.
    """

    cosine: float
    cosine_shared: float
    shared_modules: int
    only_a: int
    only_b: int


@dataclass
class _Side:
    what: str
    fh: BinaryIO
    settings: LoraSettings
    modules: dict[str, tuple[TensorEntry, TensorEntry]]  # name → (A entry, B entry)


def _open_side(directory: Path, what: str, roots: Sequence[Path]) -> _Side:
    from hubaudit.stats.reader import locate, open_regular, read_config
    from hubaudit.stats.scan import _pairs_from_header, _Roles

    files = locate(directory, roots)
    if files.fmt != "safetensors":
        raise Rejected(f"no {ADAPTER_SAFETENSORS} (pickle weights are not read here)", ScanStatus.UNSUPPORTED)
    settings = NO_CONFIG
    if files.config is not None:
        settings = parse_settings(read_config(files.config, follow=files.config.is_symlink())[0])
    fh, size = open_regular(files.weights, MAX_ADAPTER_BYTES, files.weights.name, follow=files.weights.is_symlink())
    try:
        header = read_header(fh, size)
        roles = _Roles()
        modules = _pairs_from_header(header, roles)  # both halves per module, one rank, LoRA shapes
        if settings.has_config and settings.has_patterns:
            settings.check_match_work(modules)  # as the scanner: bounded rank/alpha pattern matching
        halves: dict[str, dict[str, TensorEntry]] = {}
        for e in header.entries:
            tr = roles[e.name]
            if tr.role in ("A", "emb_A", "B", "emb_B"):
                if e.dtype not in FLOAT_DTYPES:
                    raise Rejected(f"tensor {show_name(e.name)} has dtype {e.dtype}; LoRA weights must be floats")
                halves.setdefault(tr.module, {})[tr.role[-1]] = e
        if not halves:
            raise Rejected("no LoRA tensors (lora_A/lora_B pairs) in the weights file")
    except BaseException:
        fh.close()
        raise
    return _Side(what, fh, settings, {m: (h["A"], h["B"]) for m, h in halves.items()})


def _dims(a: TensorEntry, b: TensorEntry) -> tuple[int, int]:
    """(d_out, d_in) of a module from its A (r, d_in…) and B (d_out, r…) entries."""
    return b.shape[0], math.prod(a.shape[1:])


def _pread(fd: int, n: int, offset: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = os.pread(fd, n - len(out), offset + len(out))
        if not chunk:
            raise Rejected("file shrank while it was being read")
        out += chunk
    return bytes(out)


def _blocks(fh: BinaryIO, e: TensorEntry, cols: bool, step: int) -> Iterator[np.ndarray]:
    """float64 blocks of a LoRA tensor: A (r, n) by column ranges, B (n, r) by row ranges, ``step`` wide."""
    item = DTYPE_BITS[e.dtype] // 8
    fd = fh.fileno()
    if cols:
        r, n = e.shape[0], math.prod(e.shape[1:])
        for c in range(0, n, step):
            j = min(step, n - c)
            raw = b"".join(_pread(fd, j * item, e.begin + (i * n + c) * item) for i in range(r))
            yield to_float64(storage_view(raw, e.dtype), e.dtype).reshape(r, j)
    else:
        n, r = e.shape[0], math.prod(e.shape[1:])
        for c in range(0, n, step):
            j = min(step, n - c)
            yield to_float64(storage_view(_pread(fd, j * r * item, e.begin + c * r * item), e.dtype),
                             e.dtype).reshape(j, r)


def _cross(one: _Side, x1: TensorEntry, two: _Side, x2: TensorEntry, cols: bool) -> np.ndarray:
    """X₁X₂ᵀ (A halves, cols) or X₁ᵀX₂ (B halves) in float64, in blocks of at most BLOCK_ELEMENTS per tensor."""
    step = max(1, BLOCK_ELEMENTS // max(x1.shape[0] if cols else math.prod(x1.shape[1:]),
                                        x2.shape[0] if cols else math.prod(x2.shape[1:])))  # fmt: skip
    acc: np.ndarray | None = None
    with np.errstate(invalid="ignore", over="ignore"):
        for p, q in zip(_blocks(one.fh, x1, cols, step), _blocks(two.fh, x2, cols, step)):
            part = p @ q.T if cols else p.T @ q
            acc = part if acc is None else acc + part
    assert acc is not None  # validated LoRA tensors are never empty
    return acc


def _inner(one: _Side, two: _Side, name: str) -> float:
    """tr((B₂ᵀB₁)(A₁A₂ᵀ)) = Σ_ij (B₁ᵀB₂)_ij (A₁A₂ᵀ)_ij: ⟨B₁A₁, B₂A₂⟩_F from r₁×r₂ products."""
    (a1, b1), (a2, b2) = one.modules[name], two.modules[name]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf in a hostile file: rejected by the caller
        return float(np.sum(_cross(one, b1, two, b2, False) * _cross(one, a1, two, a2, True)))


def exact_similarity(
    dir_a: str | Path,
    dir_b: str | Path,
    *,
    symlink_roots: Sequence[str | Path] = (),
    weighting: Weighting = WEIGHTING,
) -> ExactSimilarity:
    """Exact cosine of two adapters on disk from r×r products: ⟨ΔW₁,ΔW₂⟩_F = s₁s₂·tr((B₂ᵀB₁)(A₁A₂ᵀ)).

    Each argument is an adapter directory (``adapter_model.safetensors`` + ``adapter_config.json``)
    or a safetensors weights file (its config beside it, if any). Tensors are read through the
    scanner's validated safetensors reader (header checked, no pickle, no symlinks), modules are
    named and scaled as the scanner does (α/r, rsLoRA α/√r, rank/alpha patterns; no config: s = 1)
    and weighted as the fingerprint is. ``symlink_roots`` as for ``scan_path`` (e.g. a Hugging Face
    cache's blobs). Memory is O(block) per tensor, never ΔW. Raises
    ``InputError`` with a one-line reason for a missing, malformed, pickle-only or non-LoRA input.
    """
    sides: list[_Side] = []
    try:
        for what, d in (("adapter A", dir_a), ("adapter B", dir_b)):
            try:
                sides.append(_open_side(Path(d), what, [Path(r) for r in symlink_roots]))
            except Rejected as exc:
                raise InputError(f"{what}: {exc.reason}") from None
            except OSError as exc:
                raise InputError(f"{what}: cannot read it: {exc.strerror or type(exc).__name__}") from None
        try:
            return _exact(sides[0], sides[1], weighting)
        except Rejected as exc:
            raise InputError(exc.reason) from None
        except OSError as exc:
            raise InputError(f"cannot read the adapters: {exc.strerror or type(exc).__name__}") from None
    finally:
        for side in sides:
            side.fh.close()


def _exact(one: _Side, two: _Side, weighting: Weighting) -> ExactSimilarity:
    weight: list[dict[str, float]] = [{}, {}]
    sq: list[dict[str, float]] = [{}, {}]  # w²‖B A‖²_F per module
    for i, side in enumerate((one, two)):
        for name, (a, _) in side.modules.items():
            w = module_weight(side.settings.scaling(name, a.shape[0]), *_dims(*side.modules[name]), weighting)
            v = w * w * _inner(side, side, name)
            if not math.isfinite(v):
                raise Rejected(f"{side.what}: module {show_name(name)} holds NaN or Inf (or overflows float64)")
            weight[i][name], sq[i][name] = w, v
    shared = sorted(m for m in one.modules.keys() & two.modules.keys()
                    if _dims(*one.modules[m]) == _dims(*two.modules[m]))  # fmt: skip
    inner = math.fsum(weight[0][m] * weight[1][m] * _inner(one, two, m) for m in shared)
    return ExactSimilarity(
        cosine=_cos(inner, math.fsum(sq[0].values()), math.fsum(sq[1].values())),
        cosine_shared=_cos(inner, math.fsum(sq[0][m] for m in shared), math.fsum(sq[1][m] for m in shared)),
        shared_modules=len(shared),
        only_a=len(one.modules) - len(shared),
        only_b=len(two.modules) - len(shared),
    )


def _cos(inner: float, sq_a: float, sq_b: float) -> float:
    den = math.sqrt(sq_a) * math.sqrt(sq_b)
    if not den > 0.0:
        return 0.0  # a zero adapter: orthogonal to everything, as its fingerprint
    return max(-1.0, min(1.0, inner / den))
