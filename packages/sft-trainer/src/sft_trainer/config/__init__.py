"""Training configuration: schema, YAML loading and overrides."""

from sft_trainer.config.loading import dump_config, load_config
from sft_trainer.config.schema import TrainConfig
from sft_trainer.config.structured import ConfigError, to_dict

__all__ = ["ConfigError", "TrainConfig", "dump_config", "load_config", "to_dict"]
