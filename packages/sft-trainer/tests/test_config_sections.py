"""Plugins own their configuration: typed sections at key paths, checked like the host's, written
back into the config; the host schema names no plugin."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from sft_core import PluginError, SftError, get_plugin_manager, hookimpl
from sft_trainer.config import ConfigError
from sft_trainer.config.loading import build_config, dump_config
from sft_trainer.config.sections import ConfigSection


@dataclass
class SlackSettings:
    create_slack_logger: bool = False
    slack_channel: str = "#training"

    def __post_init__(self):
        if not self.slack_channel.startswith("#"):
            raise SftError(f"slack_channel must start with '#', got {self.slack_channel!r}")


@dataclass
class Distill:
    teacher: str | None = None
    temperature: float = 1.0


class SlackPlugin:
    @hookimpl
    def sft_register_config_sections(self, register):
        register(ConfigSection("exp_manager", SlackSettings))
        register(ConfigSection("model.distill", Distill))


def manager(*plugins, blocked=()):
    return get_plugin_manager(load_entrypoints=True, plugins=plugins, blocked=blocked)


def test_a_plugin_section_is_typed_defaulted_and_written_back():
    pm = manager(SlackPlugin())
    cfg = build_config({}, ["exp_manager.create_slack_logger=true", "model.distill.teacher=big.nemo",
                            "model.distill.temperature=2"], pm)
    assert cfg.section(SlackSettings) == SlackSettings(create_slack_logger=True)
    assert cfg.section(Distill) == Distill(teacher="big.nemo", temperature=2.0)
    written = yaml.safe_load(dump_config(cfg))
    assert written["exp_manager"]["create_slack_logger"] is True and written["exp_manager"]["slack_channel"] == "#training"
    assert written["model"]["distill"] == {"teacher": "big.nemo", "temperature": 2.0}
    assert build_config({}, [], pm).section(Distill) == Distill()
    # the host knows nothing of it: without the plugin the key is unknown
    with pytest.raises(ConfigError, match=r"unknown config key 'model.distill'"):
        build_config({}, ["model.distill.teacher=big.nemo"], manager())


@pytest.mark.parametrize(("override", "message"), [
    ("model.distill.temprature=2", r"unknown config key 'model.distill.temprature'; did you mean "
                                   r"'model.distill.temperature'\? \(a setting of plugin '\w+'\)"),
    ("model.distill.temperature=hot", r"config key 'model.distill.temperature' must be float, got 'hot' "
                                      r"\(a setting of plugin"),
    ("exp_manager.slack_channel=general", r"exp_manager: slack_channel must start with '#', got 'general'"),
    ("model.distill=3", r"config key 'model.distill' must be a mapping, got 3"),
])
def test_a_bad_plugin_value_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config({}, [override], manager(SlackPlugin()))


def test_two_owners_of_one_key_are_an_error():
    @dataclass
    class Teacher:
        teacher: str = "other.nemo"

    class Clash:
        @hookimpl
        def sft_register_config_sections(self, register):
            register(ConfigSection("model.distill", Teacher))

    with pytest.raises(PluginError, match=r"config key 'model.distill.teacher' is declared by both"):
        build_config({}, [], manager(SlackPlugin(), Clash()))

    @dataclass
    class Seed:
        seed: int = 1

    class HostKey:
        @hookimpl
        def sft_register_config_sections(self, register):
            register(ConfigSection("model", Seed))

    with pytest.raises(PluginError, match=r"declares config key 'model.seed', which sft-trainer owns"):
        build_config({}, [], manager(HostKey()))


def test_a_missing_first_party_plugin_is_named_only_where_its_key_would_matter():
    without = manager(blocked=["lora", "wandb", "tensorboard"])
    cfg = build_config({}, ["model.peft.lora_tuning.adapter_dim=8", "exp_manager.create_wandb_logger=false"], without)
    assert {u.key: u.reason for u in cfg.unused} == {
        "model.peft.lora_tuning": "the sft-lora plugin is not installed (pip install sft-lora)",
        "exp_manager.create_wandb_logger": "the sft-wandb plugin is not installed (pip install sft-wandb)"}
    with pytest.raises(ConfigError, match=r"^config key 'exp_manager.create_wandb_logger' needs the sft-wandb plugin, "
                                          r"which is not installed: pip install sft-wandb$"):
        build_config({}, ["exp_manager.create_wandb_logger=true"], without)
    with pytest.raises(ConfigError, match=r"'model.peft.lora_tuning' needs the sft-lora plugin"):
        build_config({}, ["model.peft.peft_scheme=lora", "model.peft.lora_tuning.adapter_dim=8"], without)
    # the reference enables TensorBoard by default: its absence is a warning, not a refusal
    assert build_config({}, ["exp_manager.create_tensorboard_logger=true"], without).warnings == [
        "exp_manager.create_tensorboard_logger=True has no effect: the sft-tensorboard plugin is not installed "
        "(pip install sft-tensorboard)"]


def test_the_first_party_sections_are_the_plugins_own():
    from sft_lora.config import LoraTuning
    from sft_wandb import WandbSettings

    cfg = build_config({}, ["model.peft.lora_tuning.target_modules=[all]", "model.peft.lora_tuning.adapter_dim=8",
                            "exp_manager.wandb_logger_kwargs.project=p"], manager())
    assert cfg.section(LoraTuning).adapter_dim == 8 and cfg.section(WandbSettings).wandb_logger_kwargs == {"project": "p"}
    with pytest.raises(ConfigError, match=r"unknown config key 'model.peft.lora_tuning.rank'.*plugin 'lora'"):
        build_config({}, ["model.peft.lora_tuning.rank=8"], manager())
    with pytest.raises(ConfigError, match=r"model.peft.lora_tuning.weight_tying=true .* is not supported"):
        build_config({}, ["model.peft.lora_tuning.weight_tying=true"], manager())
