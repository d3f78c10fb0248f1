"""The model-family registry and its hook, and the q/k/v layout helpers."""

from __future__ import annotations

import re

import pytest
import torch
from sft_core import hookimpl
from sft_model import hookspecs
from sft_model.errors import FamilyError
from sft_model.families.base import interleave_qkv, pow2_divisor, split_qkv
from sft_model.families.registry import get_families


def test_builtin_families_register_through_the_hook():
    families = get_families()
    assert families.names() == ["llama", "gpt2", "qwen3", "phi3", "gemma2", "gemma3", "mixtral",
                                "qwen3_moe"]
    assert families.entry("llama").plugin == "sft_model.families.builtin"
    assert families.for_hf_config({"model_type": "qwen2"}).name == "llama"
    with pytest.raises(FamilyError, match="did you mean 'llama'"):
        families.get("lama")
    with pytest.raises(FamilyError, match="'t5' is not supported"):
        families.for_hf_config({"model_type": "t5"})


class _Falcon:
    name = "falcon"
    hf_model_types = ("falcon",)


class _ThirdParty:
    @hookimpl
    def sft_register_model_families(self, register):
        register(_Falcon())


class _Duplicate:
    @hookimpl
    def sft_register_model_families(self, register):
        register(type("Fam", (), {"name": "llama", "hf_model_types": ()})())


def _pm(*plugins):
    from sft_core import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False, hosts=[hookspecs])
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"third-party-{i}")
    return pm


def test_a_third_party_family_joins_and_duplicates_are_refused():
    families = get_families(_pm(_ThirdParty()))
    assert families.for_hf_config({"model_type": "falcon"}).name == "falcon"
    with pytest.raises(FamilyError, match=re.escape("'llama' is registered by both 'third-party-0' and 'sft_model.families.builtin'")):
        get_families(_pm(_Duplicate()))


def test_the_application_plugin_manager_carries_the_hook():
    from sft_core import get_plugin_manager

    assert "llama" in get_families(get_plugin_manager(load_entrypoints=False)).names()


@pytest.mark.parametrize(("heads", "groups"), [(4, 4), (4, 2), (8, 1)])
def test_qkv_interleave_is_per_group_and_inverts(heads, groups):
    d, h = 3, 5
    q = torch.arange(heads * d * h, dtype=torch.float32).reshape(heads * d, h)
    k = -torch.arange(1, groups * d * h + 1, dtype=torch.float32).reshape(groups * d, h)
    v = k - 1000
    fused = interleave_qkv(q, k, v, heads, groups)
    per = heads // groups
    block = fused.reshape(groups, per + 2, d, h)
    assert torch.equal(block[0, :per].reshape(-1, h), q[: per * d])  # group 0's q heads first
    assert torch.equal(block[0, per], k[:d]) and torch.equal(block[0, per + 1], v[:d])
    assert all(torch.equal(a, b) for a, b in zip(split_qkv(fused, heads, groups, d), (q, k, v), strict=True))


def test_reference_vocab_divisor():
    assert pow2_divisor(32000) == 128 and pow2_divisor(100) == 4 and pow2_divisor(50257) == 1
