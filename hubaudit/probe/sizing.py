"""How many candidate first tokens the target inversion (invert.py) extends per batch.

A chunk of C candidates over n prompts runs C·n rows per forward. What one row holds at the peak,
for the inversion loop as written (invert.py):

- **KV cache**, adapter and base: the prompts' keys/values tiled per candidate and grown by one token
  per step, ``b_kv = layers · 2 · kv_heads · head_dim · dtype`` bytes per token and cache. When the
  next chunk's caches are tiled, the previous chunk's (L + S tokens) are still referenced, so the
  peak is 2 caches x (L + S) + 2 caches x L tokens, L = padded prompt length, S = steps.
- **Vocabulary rows**: the adapter's and the base's float32 probabilities of the previous step are
  still referenced while the next logits (model dtype), their float32 copy and the softmax are made:
  ``V · (4·4 + dtype)`` bytes. Qwen2.5's V = 151,936 makes this ~2.7 MB per row in bf16.
- **Activations** of a one-token forward, transient per layer: ~``(4·hidden + 3·intermediate) · dtype``.

Plus, per candidate, the two prompt-averaged distributions (2 · V float32). The chunk is the largest
C whose peak fits a ``fraction`` of the free memory (the caching allocator's fragmentation and
whatever else runs take the rest), at least 1, at most ``MAX_ROWS // n`` (the memory-efficient and
flash SDPA CUDA kernels put the batch on a grid dimension limited to 65,535 blocks), and on a CPU at
most ``CPU_CAP`` (larger batches buy no throughput there). :func:`chunk_size` is pure;
:func:`free_bytes` and :func:`inversion_chunk` read the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CPU_CAP = 128  # candidates per chunk on a CPU
MAX_ROWS = 2**16 - 1  # rows (candidates x prompts) per forward on CUDA
FRACTION = 0.5  # of the free memory a chunk may take


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a causal LM that fix the inversion's memory per row."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab: int
    dtype_bytes: int  # of the weights, the KV cache and the logits (bf16: 2)
    hidden: int = 0
    intermediate: int = 0

    @classmethod
    def from_config(cls, config: Any, dtype_bytes: int) -> ModelShape:
        """From a transformers config (the text config of a multimodal one)."""
        c = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = int(c.num_attention_heads)
        hidden = int(c.hidden_size)
        return cls(layers=int(c.num_hidden_layers), kv_heads=int(getattr(c, "num_key_value_heads", None) or heads),
                   head_dim=int(getattr(c, "head_dim", None) or hidden // heads), vocab=int(c.vocab_size),
                   dtype_bytes=int(dtype_bytes), hidden=hidden,
                   intermediate=int(getattr(c, "intermediate_size", 0) or 0))

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of one token in one cache, all layers."""
        return self.layers * 2 * self.kv_heads * self.head_dim * self.dtype_bytes


def bytes_per_candidate(shape: ModelShape, *, prompt_len: int, steps: int, n_prompts: int) -> int:
    """Peak bytes one candidate adds to a chunk (module docstring)."""
    kv = shape.kv_bytes_per_token * (4 * prompt_len + 2 * steps)
    vocab = shape.vocab * (4 * 4 + shape.dtype_bytes)
    act = (4 * shape.hidden + 3 * shape.intermediate) * shape.dtype_bytes
    return n_prompts * (kv + vocab + act) + 2 * 4 * shape.vocab


def chunk_size(shape: ModelShape, *, prompt_len: int, steps: int, n_prompts: int, free: int,
               fraction: float = FRACTION, cap: int | None = None) -> int:
    """The largest chunk whose peak fits ``fraction`` of ``free`` bytes, within ``cap`` and MAX_ROWS, at least 1."""
    per = bytes_per_candidate(shape, prompt_len=prompt_len, steps=steps, n_prompts=n_prompts)
    c = int(max(0, free) * fraction) // max(1, per)
    c = min(c, MAX_ROWS // max(1, n_prompts))
    if cap is not None:
        c = min(c, cap)
    return max(1, c)


def free_bytes(device: Any, *, cuda: Any = None) -> int | None:
    """Memory a chunk can use on ``device``, or None when it cannot be read.

    CUDA: the driver's free memory plus what torch's caching allocator holds unused (it is reused
    before the driver is asked). CPU: ``MemAvailable`` of /proc/meminfo. ``cuda``: the torch.cuda
    module (a stand-in with the same three functions in tests)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        if cuda is None:
            import torch

            cuda = torch.cuda
        free, _ = cuda.mem_get_info(device)
        return int(free + max(0, cuda.memory_reserved(device) - cuda.memory_allocated(device)))
    if kind == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None


def inversion_chunk(model: Any, *, prompt_len: int, steps: int, n_prompts: int, device: Any) -> int:
    """The chunk for inverting with ``model`` on ``device`` now (free memory read here)."""
    dtype = getattr(model, "dtype", None)
    shape = ModelShape.from_config(model.config, getattr(dtype, "itemsize", 4))
    cpu = getattr(device, "type", str(device)) == "cpu"
    free = free_bytes(device)
    if free is None:
        return CPU_CAP
    return chunk_size(shape, prompt_len=prompt_len, steps=steps, n_prompts=n_prompts, free=free,
                      cap=CPU_CAP if cpu else None)
