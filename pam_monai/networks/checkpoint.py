"""Reading, converting and writing Box2Mask / PropMask weights (PAM paper).

The authors distribute weights whose keys follow the layout of an nnU-Net style ``PlainConvUNet``: every
``conv -> norm -> act`` unit appears twice (``convs.{j}.conv.*`` and the alias ``convs.{j}.all_modules.0.*``; the
same for ``norm`` / ``all_modules.1``), encoder stages carry an extra ``.0.`` level, the decoder keeps a duplicate of
the (image) encoder under ``decoder.encoder.*``, and PropMask keys sit under ``proposing_stage.`` with cross-attention
modules named ``cross_attns.{i}.(queries|keys|values|fc_out)``. This module maps such state dicts onto
:class:`~pam_monai.networks.box2mask.Box2MaskNet` and :class:`~pam_monai.networks.propmask.PropMaskNet`, infers the
network width from the tensor shapes, and reads / writes this package's own checkpoint format
``{"state_dict": ..., "config": {...}, "kind": ...}``.

All failures caused by the checkpoint itself raise :class:`CheckpointError` with a one-line message.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pam_monai.errors import CheckpointError
from pam_monai.networks.box2mask import Box2MaskNet
from pam_monai.networks.configs import NETWORK_CONFIGS
from pam_monai.networks.propmask import PropMaskNet

__all__ = [
    "CHECKPOINT_KINDS",
    "CheckpointError",
    "build_network_from_checkpoint",
    "convert_checkpoint",
    "convert_reference_state_dict",
    "infer_network_config",
    "load_network_weights",
    "read_checkpoint",
    "save_network",
]

CHECKPOINT_KINDS: tuple[str, ...] = ("box2mask", "propmask")
"""The two network kinds a checkpoint can hold."""

_NETWORK_CLASSES: dict[str, type[nn.Module]] = {"box2mask": Box2MaskNet, "propmask": PropMaskNet}
# Containers (in order of preference) that wrap the state dict in a training checkpoint.
_CONTAINER_KEYS = ("model_state_dict", "state_dict", "network_weights", "model")
# Wrapper prefixes: DataParallel / DistributedDataParallel, torch.compile, and the reference PropMask module.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PROPMASK_PREFIX = "proposing_stage."
# Reference attribute -> our attribute in the cross-attention modules.
_ATTENTION_NAMES = {"queries": "query_proj", "keys": "key_proj", "values": "value_proj", "fc_out": "out_proj"}
_ALIAS_RE = re.compile(r"\.convs\.(\d+)\.all_modules\.([01])\.")
_REF_ENCODER_RE = re.compile(r"^(encoder|mask_encoder)\.stages\.(\d+)\.0\.convs\.")
_REF_ATTENTION_RE = re.compile(r"^cross_attns\.(\d+)\.(queries|keys|values|fc_out)\.")
_PROPMASK_MARKERS = ("mask_encoder.", "cross_attns.", "cross_attentions.", "image_encoder.")
_MAX_LISTED = 5



def _one_line(text: object, limit: int = 300) -> str:
    """Collapse ``text`` to one line of at most ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _describe_load_error(exc: Exception) -> str:
    """A short, one-line reason for a failed ``torch.load(weights_only=True)``."""
    text = str(exc)
    match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if match:
        return (
            f"it holds a Python object ({match.group(1)}) that a weights-only load refuses to unpickle; "
            "re-save only the tensors (the state dict) from a trusted environment."
        )
    detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
    detail = _one_line(detail.split("Check the documentation of torch.load")[0], 160)
    return f"the file is corrupt, truncated or not a torch.save file ({type(exc).__name__}: {detail})."


def _check_kind(kind: str | None) -> None:
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


def _as_tensor_dict(state_dict: Mapping[str, Any], what: str = "state dict") -> dict[str, Tensor]:
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"the {what} is a {type(state_dict).__name__}, not a dict of tensors.")
    if not state_dict:
        raise CheckpointError(f"the {what} is empty.")
    bad = [str(k) for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"the {what} is not a dict of tensors: {len(bad)} entries are not str -> Tensor, e.g. {bad[:_MAX_LISTED]}."
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
    _check_kind(kind)
    tensors = _as_tensor_dict(state_dict)
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


def _read_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any] | None, str | None]:
    """Read a checkpoint file: ``(state_dict, stored config or None, stored kind or None)``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {str(path)!r}.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {str(path)!r}.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many exception types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {_describe_load_error(exc)}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a dict of tensors.")

    config: dict[str, Any] | None = None
    kind: str | None = None
    state_dict: Any = obj
    if not any(isinstance(v, Tensor) for v in obj.values()):
        container = next((k for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if container is None:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds no tensors and none of the containers {list(_CONTAINER_KEYS)}; "
                f"its keys are {[str(k) for k in list(obj)[:_MAX_LISTED]]}."
            )
        state_dict = obj[container]
        if isinstance(obj.get("config"), Mapping):
            config = dict(obj["config"])
        if obj.get("kind") in CHECKPOINT_KINDS:
            kind = obj["kind"]
    tensors = _as_tensor_dict(state_dict, what=f"state dict in {str(path)!r}")
    # Half-precision files (save_network(half=True)) come back as float32.
    tensors = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in tensors.items()}
    return tensors, config, kind


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read the state dict of a checkpoint file (on CPU, float16 tensors converted to float32).

    Accepts a raw state dict or a container dict holding it under ``model_state_dict`` (the reference training
    checkpoints), ``state_dict`` (this package's format), ``network_weights`` or ``model``. Keys are returned as
    stored (see :func:`convert_reference_state_dict`).

    Args:
        path: the ``.pth`` / ``.pt`` file, loaded with ``weights_only=True`` (no arbitrary code is run).

    Returns:
        the state dict.

    Raises:
        CheckpointError: missing file, unreadable or corrupt file, or content that is not a dict of tensors.
    """
    return _read_file(path)[0]


def _resolve(
    source: str | os.PathLike[str] | Mapping[str, Tensor], kind: str | None
) -> tuple[str, dict[str, Tensor], dict[str, Any] | None]:
    """Read (if needed) and convert a checkpoint: ``(kind, converted state dict, stored config or None)``."""
    _check_kind(kind)
    config: dict[str, Any] | None = None
    if isinstance(source, Mapping):
        state_dict = source
    else:
        state_dict, config, stored_kind = _read_file(source)
        if stored_kind is not None:
            if kind is not None and kind != stored_kind:
                raise CheckpointError(f"checkpoint {str(source)!r} holds {stored_kind} weights, not {kind} weights.")
            kind = stored_kind
    kind, converted = convert_reference_state_dict(state_dict, kind)
    return kind, converted, config


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


def _network_kwargs(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the entries of ``config`` that the network of ``kind`` accepts (tuples for sequences)."""
    accepted = inspect.signature(_NETWORK_CLASSES[kind].__init__).parameters
    kwargs = {k: v for k, v in config.items() if k in accepted}
    for key in ("features", "attention_stages"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    return kwargs


def _build(kind: str, config: Mapping[str, Any]) -> nn.Module:
    try:
        return _NETWORK_CLASSES[kind](**_network_kwargs(kind, config))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build a {kind} network from config {dict(config)}: {_one_line(exc)}") from exc


def _mismatch_message(network: nn.Module, state_dict: Mapping[str, Tensor]) -> str | None:
    """One line naming missing / unexpected keys and shape mismatches, or ``None`` when they fit."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state_dict[k].shape)}"
        for k in expected
        if k in state_dict and expected[k].shape != state_dict[k].shape
    ]
    if not (missing or unexpected or shapes):
        return None

    def listed(items: list[str]) -> str:
        more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
        return ", ".join(items[:_MAX_LISTED]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) [{listed(missing)}]")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) [{listed(unexpected)}]")
    hint = ""
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) [{listed(shapes)}]")
        hint = " (weights of another width: use build_network_from_checkpoint to build the matching network)"
    return f"checkpoint does not fit {type(network).__name__}: " + "; ".join(parts) + hint + "."


def _kind_of(network: nn.Module) -> str | None:
    for kind, cls in _NETWORK_CLASSES.items():
        if isinstance(network, cls):
            return kind
    return None


def load_network_weights(
    network: nn.Module, path_or_state_dict: str | os.PathLike[str] | Mapping[str, Tensor], kind: str | None = None
) -> nn.Module:
    """Convert a checkpoint (file or state dict, reference or own layout) and load it strictly into ``network``.

    Args:
        network: the network to fill (in place).
        path_or_state_dict: a checkpoint file or a state dict.
        kind: ``"box2mask"`` / ``"propmask"``; ``None`` uses the network's kind (or detects it for other modules).

    Returns:
        ``network``, with the weights loaded.

    Raises:
        CheckpointError: unreadable file, weights of the other kind, or keys / shapes that do not fit (the one-line
            message names the missing and unexpected keys and the shape mismatches).
    """
    _check_kind(kind)
    kind = kind or _kind_of(network)
    _, state_dict, _ = _resolve(path_or_state_dict, kind)
    message = _mismatch_message(network, state_dict)
    if message is not None:
        raise CheckpointError(message)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # pragma: no cover - the check above should catch every mismatch
        raise CheckpointError(_one_line(exc)) from exc
    return network


def _checked_network(
    source: str | os.PathLike[str] | Mapping[str, Tensor], kind: str | None
) -> tuple[str, nn.Module, dict[str, Tensor]]:
    """Build the network a checkpoint describes and load it strictly: ``(kind, network, converted state dict)``."""
    kind, state_dict, config = _resolve(source, kind)
    if config is None:
        config = infer_network_config(state_dict, kind)
    network = _build(kind, config)
    message = _mismatch_message(network, state_dict)
    if message is not None:
        raise CheckpointError(message)
    network.load_state_dict(state_dict, strict=True)
    return kind, network, state_dict


def build_network_from_checkpoint(
    path: str | os.PathLike[str] | Mapping[str, Tensor], kind: str | None = None
) -> nn.Module:
    """Build the :class:`Box2MaskNet` / :class:`PropMaskNet` a checkpoint describes and load its weights strictly.

    The configuration comes from the file's stored ``config`` (this package's format) or is inferred from the
    tensor shapes (:func:`infer_network_config`), so checkpoints of any width work.

    Args:
        path: a checkpoint file (any supported format) or a state dict.
        kind: ``"box2mask"``, ``"propmask"`` or ``None`` to detect it.

    Returns:
        the network with the checkpoint's weights.

    Raises:
        CheckpointError: unreadable file or weights that do not form a network of this package.
    """
    return _checked_network(path, kind)[1]


def _atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path`` (no partial file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; give the result ordinary file permissions
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def save_network(
    network: nn.Module,
    path: str | os.PathLike[str],
    kind: str | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``{"state_dict", "config", "kind"}`` atomically (temporary file in the same folder, then rename).

    Args:
        network: a :class:`Box2MaskNet` or :class:`PropMaskNet` (or a module with the same state dict layout).
        path: destination file; its folder is created if needed.
        kind: ``"box2mask"`` / ``"propmask"``; ``None`` uses the network's class.
        config: constructor arguments to store; ``None`` infers them from the weights (plus the network's
            ``input_size``).
        half: store floating-point tensors as float16 (half the size; :func:`read_checkpoint` restores float32).

    Returns:
        ``path``.

    Raises:
        ValueError: unknown kind, or ``half=True`` with values beyond the float16 range.
    """
    _check_kind(kind)
    kind = kind or _kind_of(network)
    if kind is None:
        raise ValueError(f"cannot tell the kind of a {type(network).__name__}; pass kind='box2mask' or 'propmask'.")
    state_dict = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    if config is None:
        config = infer_network_config(state_dict, kind)
        if hasattr(network, "input_size"):
            config["input_size"] = int(network.input_size)
    config = dict(config)
    for key in ("features", "attention_stages"):
        if key in config:
            config[key] = tuple(int(v) for v in config[key])
    if half:
        limit = torch.finfo(torch.float16).max
        for key, value in state_dict.items():
            if value.is_floating_point():
                if value.numel() and value.abs().max() > limit:
                    raise ValueError(f"{key} holds values beyond the float16 range; save with half=False.")
                state_dict[key] = value.half()
    return _atomic_save({"state_dict": state_dict, "config": config, "kind": kind}, path)


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], kind: str | None = None) -> Path:
    """Convert a reference checkpoint into a plain state dict of this package's networks.

    Reads ``src``, converts the keys, checks that they load strictly into a freshly built network of the inferred
    (or stored) configuration, and only then writes ``torch.save(state_dict)`` to ``dst`` atomically, so no partial
    ``dst`` exists after any error. ``PropMaskNet().load_state_dict(torch.load(dst))`` then works for paper-size
    PropMask weights (likewise ``Box2MaskNet``).

    Args:
        src: the checkpoint to convert (any supported format).
        dst: the output file; its folder is created if needed.
        kind: ``"box2mask"``, ``"propmask"`` or ``None`` to detect it.

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: unreadable ``src`` or weights that do not form a network of this package.
    """
    _, network, _ = _checked_network(src, kind)
    state_dict = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    return _atomic_save(state_dict, dst)
