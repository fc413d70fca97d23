"""Typed configuration: the schema, its loading from presets/flags/``--set``, and validation.

>>> from losscli.config import build_config, validate
>>> cfg = validate(build_config("quick", sets=["train.lr=1e-3"]))
"""

from losscli.config.loading import PRESET_DIR, build_config, from_dict, list_presets, preset_path, read_preset  # noqa: F401
from losscli.config.schema import Config, DatasetConfig, ModelConfig, TrainConfig  # noqa: F401
from losscli.config.validate import validate, validate_train  # noqa: F401

__all__ = ["Config", "DatasetConfig", "ModelConfig", "PRESET_DIR", "TrainConfig", "build_config", "from_dict",
           "list_presets", "preset_path", "read_preset", "validate", "validate_train"]
