"""Typed configuration: every default of cpc_tf lives here, once.

A config has five sections (`data`, `augment`, `model`, `train`, `eval`). Presets in
`configs/*.yaml` state only what differs from these defaults; `--set a.b=c` overrides
are parsed as YAML scalars and type-checked against the dataclass fields. Every mistake
raises :class:`~cpc_tf.errors.ConfigError` with one line that names the key.

The package: :mod:`~cpc_tf.config.schema` (the dataclasses),
:mod:`~cpc_tf.config.fields` (type and range checks, dotted keys),
:mod:`~cpc_tf.config.validate` (cross-field rules) and :mod:`~cpc_tf.config.io`
(YAML, ``--set``, presets). The public names are re-exported here.
"""

from cpc_tf.config.fields import all_keys, check_value
from cpc_tf.config.io import (
    dump_config,
    from_dict,
    load_config,
    merge_dicts,
    nest_key,
    parse_override,
    parse_yaml,
    preset_dir,
    read_yaml,
    replace_keys,
    resolve_config_path,
    set_keys,
    to_dict,
)
from cpc_tf.config.schema import (
    AugmentConfig,
    Config,
    Conv1DEncoderConfig,
    DataConfig,
    EvalConfig,
    FrameEncoderConfig,
    GRUConfig,
    Mel2DEncoderConfig,
    MelConvConfig,
    ModelConfig,
    SampleCNNConfig,
    TrainConfig,
    TransformerConfig,
    TUNeConfig,
)
from cpc_tf.config.validate import validate, validate_eval

__all__ = [
    "AugmentConfig",
    "Config",
    "Conv1DEncoderConfig",
    "DataConfig",
    "EvalConfig",
    "FrameEncoderConfig",
    "GRUConfig",
    "Mel2DEncoderConfig",
    "MelConvConfig",
    "ModelConfig",
    "SampleCNNConfig",
    "TUNeConfig",
    "TrainConfig",
    "TransformerConfig",
    "all_keys",
    "check_value",
    "dump_config",
    "from_dict",
    "load_config",
    "merge_dicts",
    "nest_key",
    "parse_override",
    "parse_yaml",
    "preset_dir",
    "read_yaml",
    "replace_keys",
    "resolve_config_path",
    "set_keys",
    "to_dict",
    "validate",
    "validate_eval",
]
