"""The base model in (a .nemo, its tokenizer as an sft-data tokenizer) and the fine-tuned .nemo out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sft_data.registries import DataRegistries
from sft_data.tokenizers import load_tokenizer
from sft_data.tokenizers.base import Tokenizer

from sft_trainer.config.schema import TrainConfig
from sft_trainer.config.structured import to_dict
from sft_trainer.distributed import Topology
from sft_trainer.write_errors import WriteFailed, free_space, size_limit, write_problem

BASE_KEY = "restore_from_path"
"""Top-level key of a saved config naming the base .nemo the run started from (the reference's name)."""


@dataclass(frozen=True)
class PeftBinding:
    """A registered PEFT method with the run's ``model.peft`` section as a dict, plugins' sections
    (``lora_tuning``) included (see the hookspec)."""

    method: Any
    config: Any

    def layer_spec_transform(self):
        """``build_model``'s per-layer spec transform, or None for a method that only freezes."""
        layer_spec = getattr(self.method, "layer_spec", None)
        if layer_spec is None:
            return None
        return lambda spec, layer_number, model_config: layer_spec(spec, layer_number, self.config, model_config)

    def is_adapter_key(self, key: str) -> bool:
        test = getattr(self.method, "is_adapter_key", None)
        return bool(test and test(key))

    @property
    def adapter_only(self) -> bool:
        """Methods that add modules export only those (an adapter ``.nemo``)."""
        return getattr(self.method, "is_adapter_key", None) is not None


@dataclass
class BaseModel:
    loaded: Any
    """The ``sft_model.LoadedModel``: this stage's model handle, config and tokenizer files."""
    tokenizer: Tokenizer
    peft: PeftBinding | None = None

    @property
    def chunks(self) -> list:
        """This pipeline stage's GPTModel (one chunk: no virtual pipeline)."""
        return self.loaded.handle.chunks

    @property
    def config(self) -> Any:
        """sft_model.ModelConfig."""
        return self.loaded.config

    @property
    def use_te(self) -> bool:
        return self.loaded.handle.use_te


def load_base_model(path: str, registries: DataRegistries, *, dtype: torch.dtype,
                    overrides: dict[str, Any], peft: PeftBinding | None = None) -> BaseModel:
    """The base .nemo built for this rank, ``overrides`` (dropouts, RoPE scaling) replacing its config
    values; a PEFT method's modules come in through the layer specs, and its adapter weights, absent
    from the base checkpoint, keep their initial values."""
    from sft_core import SftError
    from sft_model import load_nemo

    loaded = load_nemo(path, overrides=overrides, dtype=dtype,
                       layer_spec_transform=peft.layer_spec_transform() if peft else None,
                       absent_ok=peft.is_adapter_key if peft else None)
    if loaded.tokenizer is None:
        raise SftError(f"{path}: the .nemo carries no tokenizer; convert it with `sft convert` or `sft init`")
    tokenizer = load_tokenizer(loaded.tokenizer.path, registries.tokenizers)
    if tokenizer.vocab_size > loaded.handle.vocab_size:
        raise SftError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                       f"{loaded.handle.vocab_size}")
    return BaseModel(loaded, tokenizer, peft)


def trained_model_config(base: BaseModel, cfg: TrainConfig, chat: dict[str, Any] | None = None):
    """The model config with the training config merged in, as the reference's saved .nemo has it:
    the data section (prompt template, chat prompt tokens), optimizer and PEFT settings, and the
    base it started from (``restore_from_path``, absolute: an adapter-only .nemo is used with it).

    ``chat`` is the chat template the training conversations were actually rendered with (the
    prepared dataset's ``chat`` header: the template name or Jinja source, and NeMo's effective
    ``chat_prompt_tokens`` with the defaults filled in), so ``sft generate`` renders prompts the same
    way even when the config left them to defaults.
    """
    model = to_dict(cfg)["model"]
    extra = dict(base.config.extra)
    extra["optim"] = model["optim"]
    extra["peft"] = model["peft"]
    extra["answer_only_loss"] = cfg.model.answer_only_loss
    extra[BASE_KEY] = str(Path(cfg.model.restore_from_path).resolve())
    data = model["data"]
    if chat:
        data.update(chat, chat=True)
    return base.config.replace(data=data, extra=extra)


def export_nemo(path: Path, base: BaseModel, cfg: TrainConfig, topo: Topology,
                chat: dict[str, Any] | None = None) -> Path:
    """Every rank calls this (each writes its own weight shards); rank 0 packs the archive.

    With a PEFT method that adds modules, only those are written: an adapter ``.nemo`` whose
    model_config.yaml carries the ``peft`` section (apply it to the base with ``sft merge-lora``).
    """
    from sft_model import save_nemo
    from torch.distributed.checkpoint.api import CheckpointException

    select = base.peft.is_adapter_key if base.peft and base.peft.adapter_only else None
    try:
        return save_nemo(path, base.loaded.handle, trained_model_config(base, cfg, chat), base.loaded.tokenizer,
                         select=select)
    except (OSError, RuntimeError) as exc:
        problem = write_problem(exc, path)
        if problem is None:
            raise
    except CheckpointException:
        # a BaseException that carries only "Worker failure" (torch's distributed checkpoint sent
        # the OS error to a log line): all we can add is the free space
        problem = (f"{path}: writing the weights failed, the disk may be full ({free_space(path)} free there"
                   f"{size_limit()})")
    raise WriteFailed(f"the trained model was not exported: {problem}; an earlier {path.name} is unchanged, "
                      f"the training checkpoints are intact") from None
