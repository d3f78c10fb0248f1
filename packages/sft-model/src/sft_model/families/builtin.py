"""Built-in model families, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from sft_core import hookimpl

from sft_model.families.gemma import GemmaFamily
from sft_model.families.gpt2 import GPT2Family
from sft_model.families.llama import LlamaFamily
from sft_model.families.moe import MixtralFamily, Qwen3MoeFamily
from sft_model.families.phi3 import Phi3Family
from sft_model.families.qwen3 import Qwen3Family


@hookimpl
def sft_register_model_families(register):
    register(LlamaFamily())
    register(GPT2Family())
    register(Qwen3Family())
    register(Phi3Family())
    register(GemmaFamily(2))
    register(GemmaFamily(3))
    register(MixtralFamily())
    register(Qwen3MoeFamily())
