"""Reference (``PlainConvUNet``-layout) state dicts mapped onto this package's networks, and their widths.

The authors distribute weights whose keys follow the layout of an nnU-Net style ``PlainConvUNet``: every
``conv -> norm -> act`` unit appears twice (``convs.{j}.conv.*`` and the alias ``convs.{j}.all_modules.0.*``; the
same for ``norm`` / ``all_modules.1``), encoder stages carry an extra ``.0.`` level, the decoder keeps a duplicate of
the (image) encoder under ``decoder.encoder.*``, and PropMask keys sit under ``proposing_stage.`` with cross-attention
modules named ``cross_attns.{i}.(queries|keys|values|fc_out)``. :func:`convert_reference_state_dict` maps such state
dicts onto :class:`~pam_monai.networks.box2mask.Box2MaskNet` and :class:`~pam_monai.networks.propmask.PropMaskNet`;
:func:`infer_network_config` reads the network width from the tensor shapes.

All failures caused by the weights themselves raise :class:`~pam_monai.errors.CheckpointError` (one line).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pam_monai.errors import CheckpointError
from pam_monai.networks.configs import NETWORK_CONFIGS

__all__ = [
    "CHECKPOINT_KINDS",
    "MAX_LISTED",
    "as_tensor_dict",
    "check_kind",
    "convert_reference_state_dict",
    "infer_network_config",
    "one_line",
]

CHECKPOINT_KINDS: tuple[str, ...] = ("box2mask", "propmask")
"""The two network kinds a checkpoint can hold."""

# Wrapper prefixes: DataParallel / DistributedDataParallel, torch.compile, and the reference PropMask module.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PROPMASK_PREFIX = "proposing_stage."
# Reference attribute -> our attribute in the cross-attention modules.
_ATTENTION_NAMES = {"queries": "query_proj", "keys": "key_proj", "values": "value_proj", "fc_out": "out_proj"}
_ALIAS_RE = re.compile(r"\.convs\.(\d+)\.all_modules\.([01])\.")
_REF_ENCODER_RE = re.compile(r"^(encoder|mask_encoder)\.stages\.(\d+)\.0\.convs\.")
_REF_ATTENTION_RE = re.compile(r"^cross_attns\.(\d+)\.(queries|keys|values|fc_out)\.")
_PROPMASK_MARKERS = ("mask_encoder.", "cross_attns.", "cross_attentions.", "image_encoder.")
MAX_LISTED = 5
"""Most keys named in one error message."""


def one_line(text: object, limit: int = 300) -> str:
    """Collapse ``text`` to one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_kind(kind: str | None) -> None:
    """Refuse a ``kind`` that is neither ``None`` nor one of :data:`CHECKPOINT_KINDS` (``ValueError``)."""
    if kind is not None and kind not in CHECKPOINT_KINDS:
        raise ValueError(f"kind must be one of {CHECKPOINT_KINDS} or None, got {kind!r}.")


def _strip_prefixes(key: str) -> tuple[str, bool]:
    """Remove leading wrapper prefixes; also report whether the reference ``proposing_stage.`` prefix was present."""
    had_propmask_prefix = False
    stripped = True
    while stripped:
        stripped = False
        for prefix in (*_WRAPPER_PREFIXES, _PROPMASK_PREFIX):
            if key.startswith(prefix):
                key = key[len(prefix) :]
                had_propmask_prefix |= prefix == _PROPMASK_PREFIX
                stripped = True
    return key, had_propmask_prefix


def as_tensor_dict(state_dict: Mapping[str, Any], what: str = "state dict") -> dict[str, Tensor]:
    """``state_dict`` as a plain dict, checked to be a non-empty ``str -> Tensor`` mapping (``CheckpointError``)."""
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"the {what} is a {type(state_dict).__name__}, not a dict of tensors.")
    if not state_dict:
        raise CheckpointError(f"the {what} is empty.")
    bad = [str(k) for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"the {what} is not a dict of tensors: {len(bad)} entries are not str -> Tensor, e.g. {bad[:MAX_LISTED]}."
        )
    return dict(state_dict)


def _detect_kind(keys: list[str], had_propmask_prefix: bool) -> str:
    if had_propmask_prefix or any(key.startswith(_PROPMASK_MARKERS) for key in keys):
        return "propmask"
    return "box2mask"


def _merge_duplicate(merged: dict[str, Tensor], key: str, value: Tensor, source: str) -> None:
    """Put ``value`` under ``key`` unless an equal tensor is already there; differing copies are an error."""
    if key not in merged:
        merged[key] = value
        return
    primary = merged[key]
    if primary is value:
        return
    if primary.shape != value.shape or not torch.equal(primary, value.to(primary.dtype)):
        raise CheckpointError(f"the checkpoint's {source} differs from {key!r}; the file is inconsistent.")


def _rename_attention(match: re.Match[str]) -> str:
    return f"cross_attentions.{match.group(1)}.{_ATTENTION_NAMES[match.group(2)]}."


def convert_reference_state_dict(
    state_dict: Mapping[str, Tensor], kind: str | None = None
) -> tuple[str, dict[str, Tensor]]:
    """Map a reference (``PlainConvUNet``-layout) state dict onto this package's key names.

    Strips ``module.`` / ``_orig_mod.`` / ``proposing_stage.`` prefixes, drops the ``all_modules.{0,1}`` aliases
    (checking that each equals its primary tensor; a lone alias is used as the primary) and the ``decoder.encoder.*``
    duplicate of the encoder (checked the same way), then renames ``encoder.stages.{s}.0.convs`` ->
    ``encoder.stages.{s}.convs`` (``image_encoder`` for PropMask), ``mask_encoder.stages.{s}.0.convs`` ->
    ``mask_encoder.stages.{s}.convs`` and ``cross_attns.{i}.(queries|keys|values|fc_out)`` ->
    ``cross_attentions.{i}.(query_proj|key_proj|value_proj|out_proj)``. A state dict already in this package's
    layout comes back unchanged (apart from the prefix stripping).

    Args:
        state_dict: the tensors, keyed by name.
        kind: ``"box2mask"``, ``"propmask"`` or ``None`` to detect it (PropMask if mask-encoder or cross-attention
            keys are present).

    Returns:
        ``(kind, converted_state_dict)``.

    Raises:
        CheckpointError: not a dict of tensors, inconsistent duplicates, or weights of the other kind.
        ValueError: an unknown ``kind``.
    """
    check_kind(kind)
    tensors = as_tensor_dict(state_dict)
    stripped: dict[str, Tensor] = {}
    had_propmask_prefix = False
    for key, value in tensors.items():
        new_key, had_prefix = _strip_prefixes(key)
        had_propmask_prefix |= had_prefix
        if new_key in stripped:
            raise CheckpointError(f"the keys {key!r} and another one both map to {new_key!r}.")
        stripped[new_key] = value

    detected = _detect_kind(list(stripped), had_propmask_prefix)
    if kind is not None and kind != detected:
        what = "PropMask weights (mask encoder / cross-attention)" if detected == "propmask" else "Box2Mask weights"
        raise CheckpointError(f"the checkpoint holds {what}, not {kind} weights.")
    kind = detected

    # 1. Aliases all_modules.0 (conv) / all_modules.1 (norm): primaries first, then the aliases.
    primaries = {k: v for k, v in stripped.items() if not _ALIAS_RE.search(k)}
    for key, value in stripped.items():
        match = _ALIAS_RE.search(key)
        if match:
            name = "conv" if match.group(2) == "0" else "norm"
            primary = key[: match.start()] + f".convs.{match.group(1)}.{name}." + key[match.end() :]
            _merge_duplicate(primaries, primary, value, f"alias {key!r}")

    # 2. The decoder's duplicate of the encoder.
    merged = {k: v for k, v in primaries.items() if not k.startswith("decoder.encoder.")}
    for key, value in primaries.items():
        if key.startswith("decoder.encoder."):
            _merge_duplicate(merged, key[len("decoder.") :], value, f"duplicate {key!r}")

    # 3. Renaming.
    converted: dict[str, Tensor] = {}
    for key, value in merged.items():
        new_key = _REF_ENCODER_RE.sub(r"\1.stages.\2.convs.", key)
        new_key = _REF_ATTENTION_RE.sub(_rename_attention, new_key)
        if kind == "propmask" and new_key.startswith("encoder."):
            new_key = "image_" + new_key
        if new_key in converted:
            raise CheckpointError(f"the checkpoint holds {new_key!r} twice (under different names).")
        converted[new_key] = value
    return kind, converted


def _encoder_prefix(kind: str) -> str:
    return "image_encoder" if kind == "propmask" else "encoder"


def _stage_channels(state_dict: Mapping[str, Tensor], prefix: str, stage: int) -> int:
    """Output channels of an encoder stage, read from whichever tensor of its first conv unit is present."""
    unit = f"{prefix}.stages.{stage}.convs.0"
    for suffix in ("conv.weight", "conv.bias", "norm.weight", "norm.bias"):
        if f"{unit}.{suffix}" in state_dict:
            return int(state_dict[f"{unit}.{suffix}"].shape[0])
    second = f"{prefix}.stages.{stage}.convs.1.conv.weight"
    if second in state_dict:
        return int(state_dict[second].shape[1])
    raise CheckpointError(f"cannot infer the channels of encoder stage {stage}: {unit}.conv.weight is missing.")


def infer_network_config(state_dict: Mapping[str, Tensor], kind: str | None = None) -> dict[str, Any]:
    """Infer the constructor arguments of the network a state dict belongs to.

    Reads ``features`` (out-channels of each encoder stage's first conv), ``convs_per_stage`` (conv units in encoder
    stage 0), ``out_channels`` (from the logit heads), ``in_channels`` (Box2Mask) and ``attention_stages`` (PropMask:
    each cross-attention's width matched, in order, to the stage widths, preferring the lowest-resolution stages as
    in the paper). ``input_size`` is taken from the named configuration (:data:`NETWORK_CONFIGS`) whose features
    match, if any; otherwise the network's default applies.

    Args:
        state_dict: reference-layout or own-layout tensors (converted first).
        kind: ``"box2mask"``, ``"propmask"`` or ``None`` to detect it.

    Returns:
        keyword arguments for :class:`Box2MaskNet` or :class:`PropMaskNet`.

    Raises:
        CheckpointError: the shapes do not describe a network of this package.
    """
    kind, sd = convert_reference_state_dict(state_dict, kind)
    prefix = _encoder_prefix(kind)
    stage_re = re.compile(rf"^{prefix}\.stages\.(\d+)\.convs\.(\d+)\.")
    stages: set[int] = set()
    units: set[int] = set()
    for key in sd:
        match = stage_re.match(key)
        if match:
            stages.add(int(match.group(1)))
            if match.group(1) == "0":
                units.add(int(match.group(2)))
    if not stages:
        raise CheckpointError(f"no {prefix}.stages.* tensors found; this is not a {kind} checkpoint.")
    features = tuple(_stage_channels(sd, prefix, s) for s in range(max(stages) + 1))
    config: dict[str, Any] = {"features": features, "convs_per_stage": max(units) + 1}

    heads = [k for k in sd if re.fullmatch(r"decoder\.seg_layers\.\d+\.weight", k)]
    if heads:
        config["out_channels"] = int(sd[heads[0]].shape[0])
    if kind == "box2mask":
        first = f"{prefix}.stages.0.convs.0.conv.weight"
        if first in sd:
            config["in_channels"] = int(sd[first].shape[1])
    else:
        attention_re = re.compile(r"^cross_attentions\.(\d+)\.(?:query_proj|key_proj|value_proj|out_proj)\.weight$")
        widths: dict[int, int] = {}
        for key, value in sd.items():
            match = attention_re.match(key)
            if match:
                widths[int(match.group(1))] = int(value.shape[0])
        if widths and sorted(widths) != list(range(len(widths))):
            raise CheckpointError(f"cross-attention modules {sorted(widths)} are not numbered 0..{len(widths) - 1}.")
        # Assign the last attention to the lowest-resolution stage of its width, and so on backwards.
        attention_stages: list[int] = []
        upper = len(features)
        for i in reversed(range(len(widths))):
            candidates = [s for s in range(upper) if features[s] == widths[i]]
            if not candidates:
                raise CheckpointError(
                    f"cross-attention {i} has {widths[i]} channels, which matches no free encoder stage of "
                    f"features {features}."
                )
            upper = candidates[-1]
            attention_stages.insert(0, upper)
        config["attention_stages"] = tuple(attention_stages)

    for named in NETWORK_CONFIGS.values():
        if tuple(named["features"]) == features and "input_size" in named:
            config["input_size"] = int(named["input_size"])
            break
    return config
