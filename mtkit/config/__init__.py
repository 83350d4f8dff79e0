"""Experiment configuration: the schema (`schema.py`: frozen dataclasses, every default, range and meaning)
and its loading (`load.py`: YAML, `--set` overrides, type and range checks). Import either from here."""

from mtkit.config.load import (check_model, config_from_dict, config_to_dict, load_config, save_config,
                               update)
from mtkit.config.schema import (AttentionConfig, Config, DataConfig, DecodeConfig, EvalConfig, Key, ModelConfig,
                                 ServeConfig, TokenizerConfig, TrainConfig, TransformerConfig, keys)

__all__ = ["AttentionConfig", "Config", "DataConfig", "DecodeConfig", "EvalConfig", "Key", "ModelConfig",
           "ServeConfig", "TokenizerConfig", "TrainConfig", "TransformerConfig", "check_model", "config_from_dict",
           "config_to_dict", "keys", "load_config", "save_config", "update"]
