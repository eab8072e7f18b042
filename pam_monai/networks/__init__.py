from pam_monai.networks.blocks import ConvNormAct, ConvStage, PlainConvEncoder, UNetDecoder, default_features
from pam_monai.networks.box2mask import Box2MaskNet
from pam_monai.networks.checkpoint import (
    CHECKPOINT_KINDS,
    CheckpointError,
    build_network_from_checkpoint,
    convert_checkpoint,
    convert_reference_state_dict,
    infer_network_config,
    load_network_weights,
    read_checkpoint,
    save_network,
)
from pam_monai.networks.configs import NETWORK_CONFIGS, build_box2mask, build_propmask
from pam_monai.networks.propmask import GuidedCrossAttention, PropMaskNet
from pam_monai.networks.weights import DEFAULT_BOX2MASK, DEFAULT_PROPMASK, default_checkpoints

__all__ = [
    "CHECKPOINT_KINDS",
    "DEFAULT_BOX2MASK",
    "DEFAULT_PROPMASK",
    "NETWORK_CONFIGS",
    "Box2MaskNet",
    "CheckpointError",
    "ConvNormAct",
    "ConvStage",
    "GuidedCrossAttention",
    "PlainConvEncoder",
    "PropMaskNet",
    "UNetDecoder",
    "build_box2mask",
    "build_network_from_checkpoint",
    "build_propmask",
    "convert_checkpoint",
    "convert_reference_state_dict",
    "default_checkpoints",
    "default_features",
    "infer_network_config",
    "load_network_weights",
    "read_checkpoint",
    "save_network",
]
