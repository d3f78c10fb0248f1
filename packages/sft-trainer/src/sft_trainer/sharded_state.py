"""Model and optimizer state as megatron-core sharded state dicts: a training checkpoint's ``dist/``.

Every rank saves its shards with ``dist_checkpointing`` (torch_dist) under global names (the
``.nemo``'s ``model.`` keys; optimizer state under ``optimizer.state.<kind>.model.…``, also when
megatron chains optimizers, as for a MoE model's dense and expert parameters under expert
parallelism: the keys name the parameters, not the optimizer), so a
checkpoint written at one TP/PP/DP loads at any other: the loader reshards. Only trainable
parameters are saved (with PEFT, the adapters: resume rebuilds the frozen base from its ``.nemo``).
Experts are saved in global shape ([layers, experts, ...]), whatever their split over expert-parallel
ranks, but the optimizer state is not portable across expert-parallel sizes: under EP megatron
keeps experts in an optimizer of their own (a ChainedOptimizer of two), at EP=1 in the dense one,
and its load matches param groups by their expert flag. ``checkpoint_load`` refuses an EP change.

The distributed optimizer is saved in megatron's ``fully_reshardable`` format: data-parallel rank 0
gathers the other ranks' shards of Adam's state over gloo (into host memory, never GPU memory)
and writes it in model-parameter shape, which any data-parallel size can read back. Its
alternatives do not fit: ``dp_reshardable`` depends on the optimizer's buffer layout (no TP/PP
change), ``fully_sharded_model_space`` needs flattened tensors this torch_dist no longer writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

MODEL_PREFIX = "model."
OPTIMIZER_KEY = "optimizer"
SHARDING = {"distrib_optim_sharding_type": "fully_reshardable",
            "distrib_optim_fully_reshardable_mem_efficient": True, "chained_optim_avoid_prefix": True}
EXTRA_STATE = "._extra_state"


def _module(chunk):
    return getattr(chunk, "module", chunk)


def _prefix(index: int, count: int) -> str:
    return MODEL_PREFIX if count == 1 else f"model{index}."


def frozen_parameters(module) -> set[str]:
    """State-dict names of parameters that do not train (a PEFT method's frozen base)."""
    return {k for k, v in module.state_dict(keep_vars=True).items()
            if isinstance(v, torch.nn.Parameter) and not v.requires_grad}


def model_state(model_chunks) -> dict[str, Any]:
    """This rank's trainable model shards, keyed ``model.<state-dict name>``; no extra state (sft
    never trains in FP8, the only state Transformer Engine keeps there)."""
    out = {}
    for index, chunk in enumerate(model_chunks):
        module, prefix = _module(chunk), _prefix(index, len(model_chunks))
        frozen = frozen_parameters(module)
        for key, value in module.sharded_state_dict(prefix=prefix).items():
            if not key.endswith(EXTRA_STATE) and key.removeprefix(prefix) not in frozen:
                out[key] = value
    return out


def sharded_state(model_chunks, optimizer, *, loading: bool) -> dict[str, Any]:
    model = model_state(model_chunks)
    return {**model, OPTIMIZER_KEY: optimizer.sharded_state_dict(model, is_loading=loading, metadata=SHARDING)}


def _common_without_param_state(common: dict) -> dict:
    """The distributed optimizer's gathered state sits on data-parallel rank 0 only: not a
    difference between ranks' common state worth megatron's warning."""
    optimizer = common.get(OPTIMIZER_KEY)
    if isinstance(optimizer, dict) and "param_state" in optimizer:
        return {**common, OPTIMIZER_KEY: {k: v for k, v in optimizer.items() if k != "param_state"}}
    return common


def save(directory: Path, model_chunks, optimizer) -> None:
    """Every rank writes its shards of model and optimizer into ``directory`` (a collective)."""
    from megatron.core import dist_checkpointing

    dist_checkpointing.save(sharded_state(model_chunks, optimizer, loading=False), str(directory),
                            preprocess_common_before_consistancy_check=_common_without_param_state)


def load(directory: Path, model_chunks, optimizer) -> None:
    """Fill model and optimizer (this rank's shards, at this run's TP/PP/DP) from ``directory``,
    which ``checkpoint_verify`` has already put through the restricted loader. A collective."""
    from megatron.core import dist_checkpointing

    state = dist_checkpointing.load(sharded_state(model_chunks, optimizer, loading=True), str(directory))
    optimizer_state = state.pop(OPTIMIZER_KEY)
    for index, chunk in enumerate(model_chunks):
        module, prefix = _module(chunk), _prefix(index, len(model_chunks))
        values = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        result = module.load_state_dict(values, strict=False)
        missing = set(result.missing_keys) - frozen_parameters(module)
        missing = sorted(k for k in missing if not k.endswith("_extra_state"))
        if missing:
            raise KeyError(f"the checkpoint has no value for {len(missing)} model tensors, e.g. {missing[0]!r}")
    optimizer.load_state_dict(optimizer_state)
