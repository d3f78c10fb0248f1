"""``hf_to_nemo`` / ``nemo_to_hf``: whole-model conversion in one process, streaming tensor by tensor.

Memory stays near one copy of the model: HF tensors are read lazily (memory-mapped safetensors)
and copied into the megatron model one at a time; on the way out each HF tensor is written to the
safetensors file as soon as it is made. The tokenizer (``tokenizer.json``/``tokenizer.model``,
``tokenizer_config.json`` with its chat template...) travels into the ``.nemo`` and back out.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

from sft_model.config import ModelConfig
from sft_model.errors import ConversionError
from sft_model.hf.safetensors_io import CheckpointReader, CheckpointWriter

Progress = Callable[[int, int], None]
# HF tensors that carry no weights of their own (buffers some checkpoints still hold).
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
PRECISION_OF = {torch.bfloat16: "bf16", torch.float16: "16", torch.float32: "32"}


def _counted(items: Iterable, total: int, progress: Progress | None) -> Iterator:
    for i, item in enumerate(items, 1):
        yield item
        if progress:
            progress(i, total)


def read_hf_config(hf_dir: Path) -> dict:
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise ConversionError(f"{hf_dir}: no config.json (not a Hugging Face model directory)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConversionError(f"{path}: invalid JSON ({exc})") from None


def hf_to_nemo(hf_dir: str | Path, out: str | Path, *, pm=None, progress: Progress | None = None) -> Path:
    """Convert an HF safetensors directory (config.json, weights, tokenizer files) to a ``.nemo``."""
    from sft_model.builder import build_model
    from sft_model.families.registry import get_families
    from sft_model.nemo.io import save_nemo
    from sft_model.nemo.tokenizer import TokenizerFiles
    from sft_model.parallel import ensure_parallel_state
    from sft_model.weights import assign, canonical_tensors

    hf_dir = Path(hf_dir)
    hf = read_hf_config(hf_dir)
    family = get_families(pm).for_hf_config(hf)
    cfg = family.config_from_hf(hf)
    reader = CheckpointReader(hf_dir)
    try:
        first = reader.get(next(iter(sorted(reader.names()))))
        if first.dtype in PRECISION_OF:  # the weights' dtype wins over a missing or stale config dtype
            cfg = cfg.replace(precision=PRECISION_OF[first.dtype])
        ensure_parallel_state()
        model = build_model(cfg, init=False)
        total = len(canonical_tensors(model.module))
        assign(model.module, _counted(family.hf_to_canonical(cfg, reader.get, reader.names()), total, progress))
        leftover = sorted(n for n in reader.names() - reader.read if not n.endswith(IGNORED_SUFFIXES))
        if cfg.share_embeddings_and_output_weights:
            leftover = [n for n in leftover if n != "lm_head.weight"]
        if leftover:
            raise ConversionError(f"{hf_dir}: {len(leftover)} checkpoint tensors have no place in the model, "
                                  f"e.g. {leftover[0]!r}")
    finally:
        reader.close()
    tokenizer = None
    if any((hf_dir / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        tokenizer = TokenizerFiles.from_path(hf_dir)
    return save_nemo(out, model, cfg, tokenizer)


def nemo_to_hf(nemo: str | Path, out_dir: str | Path, *, pm=None, progress: Progress | None = None,
               max_shard_bytes: int = 5 * 2**30) -> Path:
    """Convert a ``.nemo`` to an HF directory: config.json, safetensors, tokenizer files."""
    from sft_model.nemo.io import load_nemo

    return loaded_to_hf(load_nemo(nemo), out_dir, pm=pm, progress=progress, max_shard_bytes=max_shard_bytes)


def loaded_to_hf(loaded, out_dir: str | Path, *, pm=None, progress: Progress | None = None,
                 max_shard_bytes: int = 5 * 2**30) -> Path:
    """``nemo_to_hf`` of an already loaded model (``LoadedModel``; a base with an adapter folded in)."""
    from sft_model.families.registry import get_families
    from sft_model.weights import getter

    out_dir = Path(out_dir)
    cfg: ModelConfig = loaded.config
    family = get_families(pm).for_model_config(cfg)
    hf_config = family.hf_config(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = CheckpointWriter(out_dir, max_shard_bytes)
    get = getter(loaded.model, cfg.vocab_size)
    # Count the HF tensors on the meta device first (shapes only, no work) so the bar has a total.
    total = sum(1 for _ in family.canonical_to_hf(cfg, lambda name: torch.empty_like(get(name), device="meta")))
    for name, tensor in _counted(family.canonical_to_hf(cfg, get), total, progress):
        writer.add(name, tensor)
    writer.close()
    (out_dir / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if loaded.tokenizer is not None:
        for i, path in enumerate(loaded.tokenizer.files):
            # HF finds a SentencePiece model only under the name tokenizer.model.
            name = "tokenizer.model" if i == 0 and loaded.tokenizer.library == "sentencepiece" else path.name
            shutil.copyfile(path, out_dir / name)
    return out_dir
