"""``scan_path``: one adapter on disk → ``ScanResult`` (never raises for a bad adapter).

Flow: locate files (no symlinks) → config (LoRA only) → one streaming pass over the weights
(header validated first; each LoRA part reduced to its r×r Gram and its random projection;
full tensors hashed and listed) → per-module spectra from the Grams (gram.py) → registered
features (features.py), and the adapter's fingerprint from the projections (fingerprint.py).
"""

from __future__ import annotations

import io
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hubaudit.constants import FEATURESET_VERSION, MAX_ADAPTER_BYTES
from hubaudit.models import ModuleStat, SavedTensor, ScanResult
from hubaudit.pattern_keys import NON_ASCII_NOTE
from hubaudit.stats import layout
from hubaudit.stats._reject import Rejected, one_line, show_name
from hubaudit.stats.adapter_config import NO_CONFIG, LoraSettings, parse_settings
from hubaudit.stats.features import compute_features, scored_modules
from hubaudit.stats.fingerprint import MAX_SIDE, SketchBuilder, projection
from hubaudit.stats.gram import spectra_from_grams
from hubaudit.stats.pickle_sandbox import convert_pickle
from hubaudit.stats.reader import (
    FileDigest,
    Projector,
    Reduce,
    locate,
    open_regular,
    read_config,
    sha256_file,
    stream_reduce,
)  # fmt: skip
from hubaudit.stats.safetensors_header import Header, TensorEntry
from hubaudit.vocab import ScanStatus


@dataclass
class _Parts:
    """Reductions collected for one module while streaming."""

    g_a: np.ndarray | None = None
    g_b: np.ndarray | None = None
    a_shape: tuple[int, ...] = ()
    b_shape: tuple[int, ...] = ()
    embedding: bool = False
    magnitude: float | None = None
    bias: bool = False
    sk_a: np.ndarray | None = None  # A·Ω (r×k) for the fingerprint, None without one
    sk_b: np.ndarray | None = None  # Ψ·B (k×r)


@dataclass
class _Partial:
    """What is already known when an adapter is rejected part-way (kept on the result)."""

    settings: LoraSettings | None = None
    peft_type: str | None = None
    config_sha256: str | None = None
    content_sha256: str | None = None
    file_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)


class _Roles(dict[str, layout.TensorRole]):
    """Per-scan memo of ``layout.classify``: each tensor name is matched once, not at every step."""

    def __missing__(self, name: str) -> layout.TensorRole:
        tr = self[name] = layout.classify(name)
        return tr


def _plan(
    entry: TensorEntry, roles: _Roles, sketch: bool = False
) -> tuple[Reduce, tuple[int, int] | None, Projector | None]:
    """How the reader reduces a tensor; ``sketch``: also project LoRA halves for the fingerprint."""
    role = roles[entry.name].role
    shape = entry.shape
    # peft: a 1-D or empty lora_A/lora_B is what un-gathered DeepSpeed ZeRO-3 / FSDP shards look like
    if role in ("A", "emb_A"):
        if len(shape) < 2 or shape[0] == 0 or 0 in shape:
            raise Rejected(f"tensor {show_name(entry.name)}: LoRA A must be (r, d_in) with r >= 1, got "
                           f"{list(shape)} (1-D or empty: un-gathered ZeRO-3/FSDP shards?)")  # fmt: skip
        d_in = math.prod(shape[1:])  # conv A (r, in, kh, kw) → (r, in·kh·kw)
        return "gram_cols", (shape[0], d_in), projection("omega", d_in) if sketch else None
    if role in ("B", "emb_B"):
        if len(shape) < 2 or 0 in shape:
            raise Rejected(f"tensor {show_name(entry.name)}: LoRA B must be (d_out, r), got "
                           f"{list(shape)} (1-D or empty: un-gathered ZeRO-3/FSDP shards?)")  # fmt: skip
        proj = projection("psi", shape[0]) if sketch else None
        return "gram_rows", (shape[0], math.prod(shape[1:])), proj  # conv B (out, r, 1, 1) → (out, r)
    if role == "magnitude":
        return "mean", None, None
    return "skip", None, None


def _pairs_from_header(header: Header, roles: _Roles) -> list[str]:
    """Every LoRA module has both halves and one rank, decided from names and shapes alone.

    Returns the LoRA module names."""
    halves: dict[str, dict[str, TensorEntry]] = {}
    for e in header.entries:
        tr = roles[e.name]
        if tr.role in ("A", "emb_A", "B", "emb_B"):
            _plan(e, roles)  # shape checks
            mine = halves.setdefault(tr.module, {})
            if tr.role[-1] in mine:  # e.g. "x.lora_A.weight" and "x.lora_A.default.weight"
                raise Rejected(f"module {show_name(tr.module)} has two lora_{tr.role[-1]} tensors")
            mine[tr.role[-1]] = e
    for module, h in halves.items():
        if "A" not in h or "B" not in h:
            has, lacks = ("lora_A", "lora_B") if "B" not in h else ("lora_B", "lora_A")
            raise Rejected(f"module {show_name(module)} has {has} but no {lacks}")
        r, r_b = h["A"].shape[0], math.prod(h["B"].shape[1:])
        if r != r_b:
            raise Rejected(f"module {show_name(module)}: lora_A has rank {r}, lora_B has rank {r_b}")
    return list(halves)


# Modules are finished in batches: one LAPACK call per batch, and Grams (r×r float64 each) are
# dropped as soon as their module is done, so memory does not grow with the module count.
FLUSH_MODULES = 32


@dataclass
class _Collected:
    modules: list[ModuleStat] = field(default_factory=list)
    parts: dict[str, _Parts] = field(default_factory=dict)  # magnitudes/bias flags (Grams released)
    saved: list[SavedTensor] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sketch: SketchBuilder | None = None  # the fingerprint being built (None: not asked for)
    unsketched: int = 0  # modules left out of the fingerprint (a side over MAX_SIDE)


def _collect(f: io.FileIO, size: int, digest: FileDigest, settings: LoraSettings, fingerprint: bool) -> _Collected:
    out = _Collected(sketch=SketchBuilder() if fingerprint else None)
    ready: dict[str, _Parts] = {}
    promised = settings.config_rank if settings.has_config else (lambda name: None)

    def flush() -> None:
        modules, warnings = _module_stats(ready, settings.scaling, promised)
        out.modules.extend(modules)
        out.warnings.extend(warnings)
        if out.sketch is not None:
            for m in modules:  # validated: both halves, one rank
                p = ready[m.name]
                if p.sk_a is None or p.sk_b is None:
                    out.unsketched += 1
                else:
                    out.sketch.add(m.name, p.sk_b, p.sk_a, m.scaling, m.d_out, m.d_in)
        for p in ready.values():
            p.g_a = p.g_b = p.sk_a = p.sk_b = None
        ready.clear()

    roles = _Roles()
    plan = lambda entry: _plan(entry, roles, fingerprint)  # noqa: E731

    def precheck(header: Header) -> None:
        modules = _pairs_from_header(header, roles)
        if settings.has_config and settings.has_patterns:
            settings.check_match_work(modules)

    for entry, red, sketch in stream_reduce(f, size, plan, digest, precheck):
        tr = roles[entry.name]
        if tr.role == "saved":
            out.saved.append(SavedTensor(entry.name, entry.shape, entry.dtype, entry.nbytes))
            continue
        p = out.parts.setdefault(tr.module, _Parts())
        if tr.role in ("A", "emb_A"):
            p.g_a, p.sk_a, p.a_shape, p.embedding = red, sketch, entry.shape, p.embedding or tr.role == "emb_A"
        elif tr.role in ("B", "emb_B"):
            p.g_b, p.sk_b, p.b_shape, p.embedding = red, sketch, entry.shape, p.embedding or tr.role == "emb_B"
        elif tr.role == "magnitude":
            p.magnitude = float(red) if red is not None else None
        elif tr.role == "lora_bias":
            p.bias = True
        if p.g_a is not None and p.g_b is not None:
            ready[tr.module] = p
            if len(ready) >= FLUSH_MODULES:
                flush()
    flush()
    out.modules.sort(key=lambda m: m.name)
    if settings.has_patterns and not all(m.name.isascii() for m in out.modules):
        out.warnings.append(NON_ASCII_NOTE)
    return out


def _module_stats(
    parts: dict[str, _Parts], scale: Callable[[str, int], float], promised: Callable[[str], int | None]
) -> tuple[list[ModuleStat], list[str]]:
    """Validate each module's A/B pair, then compute all spectra in one batched call per rank."""
    warnings: list[str] = []
    rows: list[tuple[str, _Parts, int, float]] = []
    grams: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # (G_A, G_B) of each module, both present
    for name, p in sorted(parts.items()):
        if p.g_a is None or p.g_b is None:
            has, lacks = ("lora_A", "lora_B") if p.g_b is None else ("lora_B", "lora_A")
            raise Rejected(f"module {show_name(name)} has {has} but no {lacks}")
        grams[name] = (p.g_a, p.g_b)
        r, r_b = p.a_shape[0], math.prod(p.b_shape[1:])
        if r != r_b:
            raise Rejected(f"module {show_name(name)}: lora_A has rank {r}, lora_B has rank {r_b}")
        want = promised(name)
        if want is not None and want != r:
            warnings.append(f"{name}: tensor rank {r} differs from the config's {want} (tensor shape used)")
        rows.append((name, p, r, scale(name, r)))
    out: dict[str, ModuleStat] = {}
    for r in sorted({row[2] for row in rows}):
        batch = [row for row in rows if row[2] == r]
        frob_sq, sigma_sq = spectra_from_grams(
            np.stack([grams[name][0] for name, *_ in batch]),
            np.stack([grams[name][1] for name, *_ in batch]),
            np.array([s for *_, s in batch]),
        )
        for (name, p, _, s), fsq, ssq in zip(batch, frob_sq, np.sqrt(sigma_sq)):
            d_in, d_out = math.prod(p.a_shape[1:]), p.b_shape[0]
            if not (math.isfinite(fsq) and math.isfinite(s)):
                raise Rejected(f"module {show_name(name)}: ‖s·BA‖ overflows float64 (scaling {s:g})")
            # ‖ΔW‖ is invariant to the fan_in_fan_out/embedding transposes; d_in/d_out are the
            # layer's true input/output sizes (A is always (r, in), B (out, r)) in both layouts.
            out[name] = ModuleStat(
                name=name,
                layer=layout.layer_index(name),
                projection=layout.projection(name),
                kind="embedding" if p.embedding else "linear",
                d_in=d_in,
                d_out=d_out,
                rank=r,
                scaling=s,
                frob_norm=math.sqrt(float(fsq)) / math.sqrt(d_out * d_in),  # f_m, arXiv 2605.30189
                singular_values=tuple(ssq.tolist()),
            )
    return [out[name] for name, *_ in rows], warnings


def _variant(settings: LoraSettings, dora: bool) -> str:
    if settings.use_rslora and dora:
        return "rslora+dora"
    return "rslora" if settings.use_rslora else "dora" if dora else "lora"


def _scan(
    path: Path, allow_pickle: bool, roots: Sequence[Path], hash_content: bool, fingerprint: bool, partial: _Partial
) -> ScanResult:
    files = locate(path, roots)
    settings = NO_CONFIG
    if files.config is not None:
        cfg, partial.config_sha256 = read_config(files.config, follow=files.config.is_symlink())
        partial.peft_type = cfg.get("peft_type") if isinstance(cfg.get("peft_type"), str) else None
        partial.settings = settings = parse_settings(cfg)  # may raise "unsupported" (IA3, ...)
    partial.warnings.extend(settings.warnings)
    follow = files.weights.is_symlink()  # only true when it resolved under a trusted root
    if files.fmt == "pickle":
        partial.content_sha256, partial.file_bytes = sha256_file(files.weights, follow)
        if not allow_pickle:
            raise Rejected(
                f"pickle format ({files.weights.name}); not unpickled (rerun with --allow-pickle to load it "
                "with torch.load(weights_only=True) in a sandboxed subprocess)",
                ScanStatus.UNSUPPORTED,
            )
        with tempfile.TemporaryDirectory(prefix="hubaudit-pickle-") as tmp:
            converted = Path(tmp) / "converted.safetensors"
            convert_pickle(files.weights, converted, partial.file_bytes)
            partial.warnings.append("weights loaded from pickle with torch.load(weights_only=True) in a subprocess")
            f, size = open_regular(converted, MAX_ADAPTER_BYTES, "converted weights")
            with f:
                collected = _collect(f, size, FileDigest(want_sha256=False), settings, fingerprint)  # nothing to abort
    else:
        f, size = open_regular(files.weights, MAX_ADAPTER_BYTES, files.weights.name, follow)
        digest = FileDigest(want_sha256=hash_content)
        with f:
            try:
                collected = _collect(f, size, digest, settings, fingerprint)
                result = _result(str(path), settings, collected, partial)  # overlaps the hash's tail
                digest.finish()
            finally:
                digest.abort()  # no hashing thread outlives the descriptor it reads
        result.content_sha256 = partial.content_sha256 = digest.sha256
        result.file_bytes = partial.file_bytes = digest.file_bytes
        return result
    return _result(str(path), settings, collected, partial)


def _result(source: str, settings: LoraSettings, collected: _Collected, partial: _Partial) -> ScanResult:
    warnings = partial.warnings
    parts, saved, modules = collected.parts, collected.saved, collected.modules
    if not parts:
        other = layout.other_method([t.name for t in saved])
        if other:
            raise Rejected(f"{other} tensors present; only LoRA is scored", ScanStatus.UNSUPPORTED)
        raise Rejected("no LoRA tensors (lora_A/lora_B pairs) in the weights file")
    if not modules:
        raise Rejected("only DoRA magnitudes or lora_B biases, no lora_A/lora_B pairs")
    warnings.extend(collected.warnings)
    dora = {name: p.magnitude for name, p in sorted(parts.items()) if p.magnitude is not None}
    if any(p.bias for p in parts.values()):
        warnings.append("lora_B.bias tensors present (lora_bias); not part of the norms")
    if saved:
        warnings.append(f"{len(saved)} full tensor(s) saved beside LoRA (modules_to_save or similar)")
    scored = scored_modules(modules)
    if all(m.kind == "embedding" for m in modules):
        warnings.append("only embedding LoRA modules; the score is computed over them")
    features = compute_features(scored)
    ranks = Counter(m.rank for m in modules)
    fp = None
    if collected.sketch is not None:
        if collected.unsketched:
            warnings.append(f"{collected.unsketched} module(s) with a side over {MAX_SIDE} values left out "
                            "of the fingerprint")
        fp = collected.sketch.result()
        if fp is None:
            warnings.append("no fingerprint: its sketch overflows float64")
    return ScanResult(
        source=source,
        status=ScanStatus.OK,
        score=features.get("global_frobN_std"),
        peft_type=settings.peft_type if settings.has_config else None,
        variant=_variant(settings, bool(dora) or settings.use_dora),
        # the config's r unless no module has it (then the tensors are right: shape wins)
        rank=settings.r if settings.r in ranks else ranks.most_common(1)[0][0],
        alpha=settings.lora_alpha,
        target_modules=tuple(sorted({m.projection for m in modules})),
        base_model=settings.base_model,
        task_type=settings.task_type,
        n_modules=len(scored),
        features=features,
        modules=modules,
        modules_to_save=saved,
        dora_magnitudes=dora,
        warnings=warnings,
        content_sha256=partial.content_sha256,
        config_sha256=partial.config_sha256,
        file_bytes=partial.file_bytes,
        featureset_version=FEATURESET_VERSION,
        fingerprint=fp,
    )


def scan_path(
    path: str | Path,
    *,
    allow_pickle: bool = False,
    symlink_roots: Sequence[str | Path] = (),
    hash_content: bool = True,
    fingerprint: bool = True,
) -> ScanResult:
    """Scan one adapter directory or weights file. Bad input → status error/unsupported, one-line reason.

    ``allow_pickle`` loads ``adapter_model.bin`` in a sandboxed torch subprocess (needs torch;
    check with ``pickle_sandbox.require_torch`` first). ``symlink_roots``: directories under which
    a symlinked file may resolve (e.g. a Hugging Face cache's blobs); any other symlink is refused.
    ``hash_content=False`` leaves ``content_sha256`` unset (for callers that verified it already).
    ``fingerprint=False`` skips the adapter's ``Fingerprint`` (computed in the same pass otherwise).
    """
    partial = _Partial()
    try:
        return _scan(Path(path), allow_pickle, [Path(r) for r in symlink_roots], hash_content, fingerprint, partial)
    except Rejected as exc:
        status, reason = exc.status, exc.reason
    except MemoryError:
        status, reason = ScanStatus.ERROR, "out of memory while reading the adapter"
    except (ValueError, ArithmeticError, RecursionError) as exc:  # incl. LinAlgError: numbers no model makes
        status, reason = ScanStatus.ERROR, f"could not compute statistics: {type(exc).__name__}: {exc}"
    except OSError as exc:
        status, reason = ScanStatus.ERROR, f"cannot read the adapter: {exc.strerror or exc}"
    s = partial.settings
    return ScanResult(
        source=str(path),
        status=status,
        error=one_line(reason),
        peft_type=s.peft_type if s else partial.peft_type,
        base_model=s.base_model if s else None,
        task_type=s.task_type if s else None,
        warnings=partial.warnings,
        content_sha256=partial.content_sha256,
        config_sha256=partial.config_sha256,
        file_bytes=partial.file_bytes,
        featureset_version=FEATURESET_VERSION,
    )


def scan_many(
    paths: Iterable[str | Path],
    *,
    allow_pickle: bool = False,
    symlink_roots: Sequence[str | Path] = (),
    hash_content: bool = True,
    fingerprint: bool = True,
) -> list[ScanResult]:
    """``scan_path`` over several inputs, in order; one bad adapter never stops the others."""
    return [
        scan_path(p, allow_pickle=allow_pickle, symlink_roots=symlink_roots, hash_content=hash_content,
                  fingerprint=fingerprint)
        for p in paths
    ]  # fmt: skip


def stats_from_arrays(
    pairs: dict[str, tuple[np.ndarray, np.ndarray, float]], *, embedding: Sequence[str] = ()
) -> tuple[list[ModuleStat], dict[str, float]]:
    """Pure in-memory route: ``{module: (A (r, d_in), B (d_out, r), scaling)}`` → module stats and features.

    Same Gram computation as the file scan (for tests and for callers holding arrays). Module
    names in ``embedding`` are embedding LoRA (A (r, num_embeddings), B (dim, r)).
    """
    from hubaudit.stats.gram import gram_cols, gram_rows

    parts, scalings = {}, {}
    for name, (a, b, s) in pairs.items():
        a64 = np.asarray(a, dtype=np.float64).reshape(a.shape[0], -1)
        b64 = np.asarray(b, dtype=np.float64).reshape(b.shape[0], -1)
        parts[name] = _Parts(gram_cols(a64), gram_rows(b64), a64.shape, b64.shape, name in embedding)
        scalings[name] = float(s)
    modules, _ = _module_stats(parts, lambda name, r: scalings[name], lambda name: None)
    return modules, compute_features(scored_modules(modules))
