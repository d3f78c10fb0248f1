"""sft plugin: LoRA (``model.peft.peft_scheme=lora``) and the ``sft merge-lora`` command.

Adapters enter the model through its layer specs (``LoraMethod.layer_spec``) before it is built;
the base weights load with the adapter keys absent and are frozen. Training checkpoints and the
final ``.nemo`` hold the adapters only. See ``sft_lora.config`` for ``model.peft.lora_tuning``.
"""

from __future__ import annotations

from sft_core import hookimpl

from sft_lora.method import LoraMethod, is_adapter_key

__all__ = ["LoraMethod", "is_adapter_key"]


@hookimpl
def sft_register_peft_methods(register):
    register(LoraMethod())


@hookimpl
def sft_register_config_sections(register):
    from sft_trainer.config.sections import ConfigSection

    from sft_lora.config import LoraTuning

    register(ConfigSection("model.peft.lora_tuning", LoraTuning))


@hookimpl
def sft_register_commands(cli):
    from sft_lora.merge import merge_lora_command

    cli.add_command(merge_lora_command)
