"""``model.peft.lora_tuning``: the reference's keys, validated with errors that name the key."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TARGETS = ("attention_qkv", "attention_dense", "mlp_fc1", "mlp_fc2")
GROUPS = {"attention": ("attention_qkv", "attention_dense"), "mlp": ("mlp_fc1", "mlp_fc2"), "all": TARGETS}
INIT_METHODS = ("xavier", "normal", "kaiming", "zero")
KEYS = ("target_modules", "adapter_dim", "alpha", "adapter_dropout", "column_init_method", "row_init_method",
        "layer_selection", "weight_tying", "position_embedding_strategy")


class LoraConfigError(ValueError):
    """A bad ``model.peft.lora_tuning`` value (the message names the key)."""


@dataclass(frozen=True)
class LoraSettings:
    target_modules: tuple[str, ...] = ("attention_qkv",)
    adapter_dim: int = 32
    alpha: float = 32.0
    adapter_dropout: float = 0.0
    column_init_method: str = "xavier"
    """Initialisation of A (``linear_in``)."""
    row_init_method: str = "zero"
    """Initialisation of B (``linear_out``); zero makes the adapted model start as the base."""
    layer_selection: tuple[int, ...] | None = None
    """1-based layer numbers that get adapters; None: every layer."""

    @property
    def scale(self) -> float:
        return self.alpha / self.adapter_dim

    def applies_to(self, layer_number: int) -> bool:
        return self.layer_selection is None or layer_number in self.layer_selection

    def to_dict(self) -> dict[str, Any]:
        return {"target_modules": list(self.target_modules), "adapter_dim": self.adapter_dim, "alpha": self.alpha,
                "adapter_dropout": self.adapter_dropout, "column_init_method": self.column_init_method,
                "row_init_method": self.row_init_method,
                "layer_selection": list(self.layer_selection) if self.layer_selection else None}


def _expand(targets: Any) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = [targets]
    out: list[str] = []
    for name in targets or []:
        if name not in TARGETS and name not in GROUPS:
            raise LoraConfigError(f"model.peft.lora_tuning.target_modules: unknown module {name!r}; "
                                  f"choose from {', '.join((*TARGETS, *GROUPS))}")
        out += [t for t in GROUPS.get(name, (name,)) if t not in out]
    if not out:
        raise LoraConfigError("model.peft.lora_tuning.target_modules is empty")
    return tuple(out)


def parse(raw: dict[str, Any] | None) -> LoraSettings:
    raw = dict(raw or {})
    if raw.get("weight_tying"):
        raise LoraConfigError("model.peft.lora_tuning.weight_tying=true (one adapter shared by every layer) is not "
                              "supported; set it to false")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise LoraConfigError(f"unknown key model.peft.lora_tuning.{unknown[0]}; known: {', '.join(KEYS)}")
    dim = int(raw.get("adapter_dim", 32))
    if dim <= 0:
        raise LoraConfigError(f"model.peft.lora_tuning.adapter_dim must be positive, not {dim}")
    alpha = raw.get("alpha")
    for key in ("column_init_method", "row_init_method"):
        if key in raw and raw[key] not in INIT_METHODS:
            raise LoraConfigError(f"model.peft.lora_tuning.{key}: {raw[key]!r} is not one of {', '.join(INIT_METHODS)}")
    dropout = float(raw.get("adapter_dropout", 0.0))
    if not 0.0 <= dropout < 1.0:
        raise LoraConfigError(f"model.peft.lora_tuning.adapter_dropout must be in [0, 1), not {dropout}")
    layers = raw.get("layer_selection")
    return LoraSettings(
        target_modules=_expand(raw.get("target_modules", ["attention_qkv"])), adapter_dim=dim,
        alpha=float(dim if alpha is None else alpha), adapter_dropout=dropout,
        column_init_method=raw.get("column_init_method", "xavier"), row_init_method=raw.get("row_init_method", "zero"),
        layer_selection=tuple(int(n) for n in layers) if layers else None,
    )


@dataclass
class LoraTuning:
    """``model.peft.lora_tuning``: the reference's keys, as the plugin's own config section."""

    target_modules: list[str] = field(default_factory=lambda: ["attention_qkv"])
    """``attention_qkv``, ``attention_dense``, ``mlp_fc1``, ``mlp_fc2``, or the groups ``attention``, ``mlp``, ``all``."""
    adapter_dim: int = 32
    """The adapters' rank."""
    alpha: float | None = None
    """Scale numerator: outputs are multiplied by alpha / adapter_dim; None means adapter_dim (scale 1)."""
    adapter_dropout: float = 0.0
    """Dropout on the adapter's input."""
    column_init_method: str = "xavier"
    """Initialisation of A: xavier, normal, kaiming or zero."""
    row_init_method: str = "zero"
    """Initialisation of B: zero makes the adapted model start as the base."""
    layer_selection: list[int] | None = None
    """1-based layer numbers that get adapters; None: every layer."""
    weight_tying: bool = False
    """The reference's shared-adapter option; only false is supported."""
    position_embedding_strategy: str | None = None
    """Used by the reference only with weight_tying; no effect here."""

    def __post_init__(self) -> None:
        from sft_core import SftError

        try:
            parse(asdict(self))
        except LoraConfigError as exc:
            raise SftError(str(exc)) from None
