"""``ModelConfig``: the model section of a ``.nemo``'s ``model_config.yaml``, typed and validated.

Field names are the reference's keys (NeMo 1 ``megatron_gpt`` configs), so a reference file reads
into it and what we write reads back in NeMo. Keys we do not model (``optim``, ``peft``...) are kept
in ``extra`` and written back unchanged. Our own additions are marked "(sft)".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sft_model.architecture import ARCHITECTURE_DEFAULTS, FLOAT_FIELDS, INT_FIELDS, ArchitectureOptions
from sft_model.errors import ModelConfigError

NORMALIZATIONS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "approx-gelu", "squared-relu", "swiglu", "fast-swiglu", "geglu", "fast-geglu")
GATED_ACTIVATIONS = ("swiglu", "fast-swiglu", "geglu", "fast-geglu")
POSITION_EMBEDDINGS = ("rope", "learned_absolute")
PRECISIONS = ("32", "16", "bf16", "16-mixed", "bf16-mixed", "32-true")


@dataclass
class TokenizerConfig:
    """The ``tokenizer`` section. Embedded files are ``nemo:<hex>_<name>`` references."""

    library: str = "sentencepiece"
    """``sentencepiece`` (a ``.model`` file) or ``huggingface`` (``tokenizer.json`` and side files)."""
    type: str | None = None
    """The reference's tokenizer type (a hub name for HF tokenizers); informational when files are embedded."""
    model: str | None = None
    """The main tokenizer file: ``nemo:<hex>_tokenizer.model`` or ``nemo:<hex>_tokenizer.json``."""
    vocab_file: str | None = None
    """A vocabulary file (GPT-2 BPE tokenizers of the reference), if any."""
    merge_file: str | None = None
    """A BPE merges file (GPT-2 BPE tokenizers of the reference), if any."""
    delimiter: str | None = None
    """The reference's tabular-tokenizer delimiter; kept for compatibility."""
    sentencepiece_legacy: bool = False
    """The reference's SentencePiece "legacy" wrapper flag (special tokens split out of text)."""
    extra_files: list[str] = field(default_factory=list)
    """(sft) Further embedded tokenizer files: ``tokenizer_config.json``, ``chat_template.jinja``..."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of the section we do not model, written back unchanged."""

    def __post_init__(self) -> None:
        if self.library not in ("sentencepiece", "huggingface", "megatron", "tabular", "byte-level"):
            raise ModelConfigError(f"tokenizer.library: unknown library {self.library!r}")

    def file_refs(self) -> list[str]:
        """Every ``nemo:`` reference in this section (the files that must be inside the archive)."""
        refs = [self.model, self.vocab_file, self.merge_file, *self.extra_files]
        return [r for r in refs if isinstance(r, str) and r.startswith("nemo:")]


@dataclass
class ModelConfig(ArchitectureOptions):
    """A GPT-style decoder: sizes, positions, normalization, activation, tokenizer (and, inherited from
    ``ArchitectureOptions``, the features of newer families: sliding windows, soft-capping, experts...)."""

    num_layers: int
    """Transformer layers."""
    hidden_size: int
    """Model width."""
    num_attention_heads: int
    """Query heads."""
    ffn_hidden_size: int
    """MLP inner width (per branch for gated activations: fc1 then has 2× this many rows)."""
    encoder_seq_length: int = 2048
    """Training sequence length."""
    max_position_embeddings: int | None = None
    """Positions the model supports (learned table size for ``learned_absolute``); defaults to ``encoder_seq_length``."""
    num_query_groups: int | None = None
    """Key/value heads (GQA); None means one per query head (multi-head attention)."""
    kv_channels: int | None = None
    """Per-head width; None means ``hidden_size // num_attention_heads``."""
    position_embedding_type: str = "rope"
    """``rope`` (Llama family) or ``learned_absolute`` (GPT-2)."""
    rotary_base: float = 10000.0
    """RoPE base (theta)."""
    rotary_percentage: float = 1.0
    """Fraction of each head's channels that RoPE rotates."""
    seq_len_interpolation_factor: float | None = None
    """Linear RoPE scaling: positions are divided by this factor (HF ``rope_scaling.type: linear``)."""
    scale_positional_embedding: bool = False
    """Llama 3.1 RoPE frequency scaling (HF ``rope_scaling.rope_type: llama3``)."""
    rotary_scaling_factor: float = 8.0
    """The Llama 3.1 scaling factor, used when ``scale_positional_embedding`` is true."""
    normalization: str = "rmsnorm"
    """``rmsnorm`` or ``layernorm``."""
    layernorm_epsilon: float = 1e-5
    """Epsilon of every norm."""
    activation: str = "fast-swiglu"
    """``fast-swiglu``/``swiglu`` (SiLU-gated), ``gelu`` (erf), ``approx-gelu`` (tanh), ``geglu``, ``squared-relu``."""
    openai_gelu: bool = False
    """The reference's switch to the tanh GELU approximation (same as ``activation: approx-gelu``)."""
    bias: bool = False
    """Biases on every linear layer and norm (GPT-2: true)."""
    qkv_bias: bool = False
    """Bias on the query/key/value projection only (Qwen2)."""
    share_embeddings_and_output_weights: bool = False
    """Tie the output layer to the input embedding."""
    make_vocab_size_divisible_by: int = 128
    """The embedding has ``vocab_size`` rounded up to a multiple of this; padded rows never affect results."""
    vocab_size: int | None = None
    """(sft) The tokenizer's vocabulary size; None (reference files) means the embedding's row count."""
    init_method_std: float = 0.02
    """Standard deviation of the random init (``sft init``)."""
    hidden_dropout: float = 0.0
    """Dropout after attention and MLP."""
    attention_dropout: float = 0.0
    """Dropout on attention probabilities."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (with tensor parallelism only; ignored at TP=1)."""
    activations_checkpoint_granularity: str | None = None
    """Activation recomputation in training: ``selective`` (core attention), ``full`` (whole layers) or None."""
    activations_checkpoint_method: str | None = None
    """With ``full``: ``uniform`` (groups of ``activations_checkpoint_num_layers`` layers) or ``block``
    (the first ``activations_checkpoint_num_layers`` layers of each pipeline stage)."""
    activations_checkpoint_num_layers: int | None = None
    """With ``full``: layers per recomputed group (uniform) or per stage (block)."""
    precision: str = "bf16"
    """Training precision of the reference (``bf16``, ``16``, ``32``...); the dtype weights are stored in."""
    mcore_gpt: bool = True
    """Always true: the model is megatron-core's GPTModel."""
    transformer_engine: bool = True
    """The reference's flag; here the layer spec is chosen per device, this only records intent."""
    family: str | None = None
    """(sft) The model family (``llama``, ``gpt2``...) that converts this model to and from Hugging Face."""
    hf_config: dict[str, Any] | None = None
    """(sft) The Hugging Face ``config.json`` this model came from, so ``nemo-to-hf`` writes the same architecture."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """The ``tokenizer`` section."""
    data: dict[str, Any] = field(default_factory=dict)
    """The ``data`` section (prompt template, chat tokens) as the trainer merged it; kept as is."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other key of ``model_config.yaml``, written back unchanged."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "encoder_seq_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.max_position_embeddings is None:
            self.max_position_embeddings = self.encoder_seq_length
        if self.num_query_groups is None:
            self.num_query_groups = self.num_attention_heads
        if self.kv_channels is None:
            self.kv_channels = self.hidden_size // self.num_attention_heads
        if self.activation == "gelu" and self.openai_gelu:
            self.activation = "approx-gelu"
        self._validate()

    def _validate(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "encoder_seq_length",
                     "max_position_embeddings", "num_query_groups", "kv_channels", "make_vocab_size_divisible_by"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelConfigError(f"{name}: expected a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_query_groups:
            raise ModelConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_query_groups ({self.num_query_groups})")
        if self.vocab_size is not None and (isinstance(self.vocab_size, bool) or self.vocab_size <= 0):
            raise ModelConfigError(f"vocab_size: expected a positive integer, got {self.vocab_size!r}")
        for name, allowed in (("normalization", NORMALIZATIONS), ("activation", ACTIVATIONS),
                              ("position_embedding_type", POSITION_EMBEDDINGS)):
            if getattr(self, name) not in allowed:
                raise ModelConfigError(f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if str(self.precision) not in PRECISIONS:
            raise ModelConfigError(f"precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 0.0 < self.rotary_percentage <= 1.0:
            raise ModelConfigError(f"rotary_percentage: {self.rotary_percentage} is not in (0, 1]")
        if self.rotary_base <= 0 or self.layernorm_epsilon <= 0:
            raise ModelConfigError("rotary_base and layernorm_epsilon must be positive")
        for name in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ModelConfigError(f"{name}: {getattr(self, name)} is not in [0, 1)")
        self._validate_architecture()
        self._validate_recomputation()

    def _validate_recomputation(self) -> None:
        granularity, method = self.activations_checkpoint_granularity, self.activations_checkpoint_method
        if granularity not in (None, "selective", "full"):
            raise ModelConfigError(f"activations_checkpoint_granularity: {granularity!r} is not one of selective, full")
        if granularity == "full":
            layers = self.activations_checkpoint_num_layers
            if method not in ("uniform", "block"):
                raise ModelConfigError(f"activations_checkpoint_method: {method!r} is not one of uniform, block "
                                       "(needed with activations_checkpoint_granularity full)")
            if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
                raise ModelConfigError(f"activations_checkpoint_num_layers: expected a positive integer with "
                                       f"activations_checkpoint_granularity full, got {layers!r}")

    # -- derived values -------------------------------------------------------------------------
    @property
    def gated(self) -> bool:
        """True when linear_fc1 holds two branches (gate then up)."""
        return self.activation in GATED_ACTIVATIONS

    def padded_vocab_size(self, vocab_size: int | None = None) -> int:
        """Embedding rows: the vocabulary rounded up to ``make_vocab_size_divisible_by``.

        Unlike the reference this does not depend on the tensor-parallel size, so one checkpoint
        loads at any TP (the divisor must then be a multiple of TP, which the builder checks).
        """
        vocab = vocab_size or self.vocab_size
        if vocab is None:
            raise ModelConfigError("vocab_size is unknown (no tokenizer and no weights to read it from)")
        return math.ceil(vocab / self.make_vocab_size_divisible_by) * self.make_vocab_size_divisible_by

    @property
    def torch_dtype_name(self) -> str:
        """The dtype weights are kept in: float32, bfloat16 or float16."""
        p = str(self.precision)
        return "bfloat16" if p.startswith("bf16") else "float16" if p.startswith("16") else "float32"

    # -- YAML -----------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ModelConfigError(f"model config: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"tokenizer", "extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names and k != "tokenizer"}
        known["tokenizer"] = _tokenizer_from_dict(data.get("tokenizer") or {})
        missing = [n for n in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size") if n not in known]
        if missing:
            raise ModelConfigError(f"model config: missing {', '.join(missing)}")
        _coerce(known)
        try:
            return cls(**known, extra=extra)
        except TypeError as exc:
            raise ModelConfigError(f"model config: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "tokenizer"):
                continue
            value = getattr(self, f.name)
            if value is None and f.name in ("family", "hf_config", "vocab_size", "seq_len_interpolation_factor"):
                continue
            if f.name in ARCHITECTURE_DEFAULTS and value == ARCHITECTURE_DEFAULTS[f.name]:
                continue
            out[f.name] = value
        tok = dataclasses.asdict(self.tokenizer)
        tok_extra = tok.pop("extra")
        if not tok["extra_files"]:
            tok.pop("extra_files")
        out["tokenizer"] = {**tok, **tok_extra}
        out.update(self.extra)
        return out

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> ModelConfig:
        text = Path(text_or_path).read_text(encoding="utf-8") if isinstance(text_or_path, Path) else text_or_path
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ModelConfigError(f"model_config.yaml is not valid YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _tokenizer_from_dict(data: dict[str, Any]) -> TokenizerConfig:
    if not isinstance(data, dict):
        raise ModelConfigError("tokenizer: expected a mapping")
    names = {f.name for f in dataclasses.fields(TokenizerConfig)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    known["extra_files"] = list(known.get("extra_files") or [])
    return TokenizerConfig(**known, extra={k: v for k, v in data.items() if k not in names})


_INT_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "encoder_seq_length",
               "max_position_embeddings", "num_query_groups", "kv_channels", "make_vocab_size_divisible_by",
               "vocab_size", *INT_FIELDS)


def _coerce(values: dict[str, Any]) -> None:
    """YAML gives ``1e4`` as a string and precision as an int; normalise what is unambiguous."""
    for name in ("rotary_base", "layernorm_epsilon", "rotary_percentage", "init_method_std", "rotary_scaling_factor",
                 *FLOAT_FIELDS):
        if isinstance(values.get(name), str):
            try:
                values[name] = float(values[name])
            except ValueError:
                raise ModelConfigError(f"{name}: expected a number, got {values[name]!r}") from None
    for name in _INT_FIELDS:
        v = values.get(name)
        if isinstance(v, float) and v.is_integer():
            values[name] = int(v)
    if "precision" in values:
        values["precision"] = str(values["precision"])
