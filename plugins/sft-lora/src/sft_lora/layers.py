"""LoRA linear layers for megatron-core layer specs: the base parallel linear plus B(A(x))·alpha/dim.

A and B are megatron tensor-parallel linears sharded like the base layer, so TP=2 computes what
TP=1 does: for a column-parallel base (linear_qkv, linear_fc1; input whole, output split) A is
column-parallel with its output gathered and B column-parallel like the base; for a row-parallel
base (linear_proj, linear_fc2; input split, output whole) A is row-parallel (output all-reduced)
and B column-parallel with its output gathered. Initial values are drawn for the *whole* matrix
from a generator seeded by (layer, module) and then sliced, so they do not depend on TP either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

from sft_lora.config import LoraSettings


@dataclass(frozen=True)
class AdapterSpec:
    settings: LoraSettings
    target: str
    layer_number: int
    swiglu: bool = False
    """linear_fc1 of a gated MLP: its rows are [gate; up], split per rank as [gate_r; up_r]."""

    @property
    def seed(self) -> int:
        return 1_000_003 * self.layer_number + 7919 * ("attention_qkv", "attention_dense", "mlp_fc1",
                                                       "mlp_fc2").index(self.target)


def _init(name: str, full: torch.Tensor, generator: torch.Generator) -> None:
    # the reference's choices (NeMo parallel_adapters._get_init_fn)
    if name == "xavier":
        torch.nn.init.xavier_normal_(full, generator=generator)
    elif name == "normal":
        torch.nn.init.normal_(full, std=0.2, generator=generator)
    elif name == "kaiming":
        torch.nn.init.kaiming_uniform_(full, a=math.sqrt(5), generator=generator)
    else:
        torch.nn.init.zeros_(full)


def _rows(full: torch.Tensor, rank: int, size: int, swiglu: bool = False) -> torch.Tensor:
    if swiglu:  # megatron's gated fc1 layout: this rank holds its slice of gate, then of up
        gate, up = full.chunk(2, dim=0)
        return torch.cat([_rows(gate, rank, size), _rows(up, rank, size)])
    return full.chunk(size, dim=0)[rank]


def _no_init(weight: torch.Tensor) -> None:
    """Megatron's init hook: nothing; adapters set their values themselves (``_reset``)."""


class Adapter(torch.nn.Module):
    """A and B sharded like the base layer, over its tensor-parallel group: an expert's adapter is an
    expert parameter too (``is_expert``), reduced over the expert-data-parallel ranks like its base."""

    def __init__(self, input_size: int, output_size: int, *, config, spec: AdapterSpec, row_parallel_base: bool,
                 is_expert: bool = False, tp_group=None):
        super().__init__()
        if config.sequence_parallel:  # a row-parallel base's output is split over positions, B's would not be
            from sft_core import SftError

            raise SftError("LoRA under sequence parallelism (model.sequence_parallel=true, and MoE models with "
                           "tensor_model_parallel_size > 1, which train with it) is not supported; set "
                           "model.sequence_parallel=false, or for MoE use model.expert_model_parallel_size instead")
        s = spec.settings
        self.spec, self.scale, self.row_parallel_base = spec, s.scale, row_parallel_base
        self.dropout = torch.nn.Dropout(s.adapter_dropout) if s.adapter_dropout else torch.nn.Identity()
        common = {"config": config, "init_method": _no_init, "bias": False, "is_expert": is_expert,
                  "tp_group": tp_group}
        if row_parallel_base:
            self.linear_in = RowParallelLinear(input_size, s.adapter_dim, input_is_parallel=True, skip_bias_add=True,
                                               **common)
            self.linear_out = ColumnParallelLinear(s.adapter_dim, output_size, gather_output=True, **common)
        else:
            self.linear_in = ColumnParallelLinear(input_size, s.adapter_dim, gather_output=True, **common)
            self.linear_out = ColumnParallelLinear(s.adapter_dim, output_size, gather_output=False, **common)
        self._reset(input_size, output_size)

    @property
    def group(self):
        return self.linear_in.tp_group

    @torch.no_grad()
    def _reset(self, input_size: int, output_size: int) -> None:
        s, tp, rank = self.spec.settings, self.group.size(), self.group.rank()
        gen = torch.Generator().manual_seed(self.spec.seed)
        a = torch.empty(s.adapter_dim, input_size)
        _init(s.column_init_method, a, gen)
        b = torch.empty(output_size, s.adapter_dim)
        _init(s.row_init_method, b, gen)
        local_a = a.chunk(tp, dim=1)[rank] if self.row_parallel_base else a.chunk(tp, dim=0)[rank]
        self.linear_in.weight.copy_(local_a)
        self.linear_out.weight.copy_(_rows(b, rank, tp, self.spec.swiglu and not self.row_parallel_base))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.linear_in(self.dropout(x))
        out, _ = self.linear_out(hidden)
        return out * self.scale

    def sharded_state_dict(self, prefix: str, sharded_offsets=(), metadata=None) -> dict:
        sd = dict(self.linear_in.sharded_state_dict(f"{prefix}linear_in.", sharded_offsets, metadata))
        out = self.linear_out.sharded_state_dict(f"{prefix}linear_out.", sharded_offsets, metadata)
        if self.spec.swiglu and not self.row_parallel_base:
            from megatron.core.transformer.mlp import apply_swiglu_sharded_factory

            key = f"{prefix}linear_out.weight"
            out[key] = apply_swiglu_sharded_factory(out[key], sharded_offsets,
                                                    (metadata or {}).get("singleton_local_shards", False),
                                                    tp_group=self.linear_out.tp_group,
                                                    dp_group=metadata["dp_cp_group"])
        sd.update(out)
        return sd

    @torch.no_grad()
    def delta(self) -> torch.Tensor:
        """B·A·alpha/dim for this rank's shard of the base weight (gathers the split factor)."""
        a, b = self.linear_in.weight, self.linear_out.weight
        group = self.group
        if group.size() > 1:
            split = b if self.row_parallel_base else a
            parts = [torch.empty_like(split) for _ in range(group.size())]
            torch.distributed.all_gather(parts, split.contiguous(), group=group)
            if self.row_parallel_base:
                b = torch.cat(parts)
            else:
                a = torch.cat(parts)
        return (b.float() @ a.float()) * self.scale


def _adapted(base: type, row: bool):
    class LoraLinear(base):
        """``base`` plus a LoRA adapter; ``lora_spec`` is set per layer and module by ``lora_class``."""

        lora_spec: AdapterSpec

        def __init__(self, input_size, output_size, **kwargs):
            super().__init__(input_size, output_size, **kwargs)
            self.lora = Adapter(input_size, output_size, config=kwargs["config"], spec=self.lora_spec,
                                row_parallel_base=row, is_expert=self.is_expert, tp_group=self.tp_group)

        def forward(self, x, *args, **kwargs):
            out, bias = super().forward(x, *args, **kwargs)
            return out + self.lora(x).to(out.dtype), bias

        def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
            # the base treats every tensor not its own as replicated: give the adapter's its sharding
            sd = {k: v for k, v in super().sharded_state_dict(prefix, sharded_offsets, metadata).items()
                  if not k.startswith(f"{prefix}lora.")}
            sd.update(self.lora.sharded_state_dict(f"{prefix}lora.", sharded_offsets, metadata))
            return sd

        @torch.no_grad()
        def merge(self) -> None:
            """Fold the adapter into this rank's base weight shard."""
            self.weight.add_(self.lora.delta().to(self.weight.dtype))

    LoraLinear.__name__ = LoraLinear.__qualname__ = f"Lora{base.__name__}"
    return LoraLinear


LoraColumnParallelLinear = _adapted(ColumnParallelLinear, row=False)
LoraRowParallelLinear = _adapted(RowParallelLinear, row=True)


def lora_class(base: type, spec: AdapterSpec) -> type:
    """A subclass of the LoRA linear for ``base`` carrying ``spec`` (specs take classes, not instances)."""
    if issubclass(base, RowParallelLinear):
        parent = LoraRowParallelLinear
    elif issubclass(base, ColumnParallelLinear):
        parent = LoraColumnParallelLinear
    else:
        raise TypeError(f"sft-lora adapts megatron's ColumnParallelLinear/RowParallelLinear specs, not {base.__name__} "
                        f"(Transformer Engine's fused layer-norm linears are not supported yet)")
    return type(parent.__name__, (parent,), {"lora_spec": spec, "__module__": __name__})
