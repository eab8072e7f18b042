"""Reading, converting and writing Box2Mask / PropMask checkpoint files (PAM paper).

Reads the authors' weights (reference layout, converted by :mod:`pam_monai.networks.state_dict`), training
checkpoints and this package's own format ``{"state_dict": ..., "config": {...}, "kind": ...}``; builds the network
a checkpoint describes and loads it strictly; writes checkpoints atomically.

All failures caused by the checkpoint itself raise :class:`CheckpointError` with a one-line message.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pam_monai.data.io import write_atomic
from pam_monai.errors import CheckpointError
from pam_monai.networks.box2mask import Box2MaskNet
from pam_monai.networks.propmask import PropMaskNet
from pam_monai.networks.state_dict import (
    CHECKPOINT_KINDS,
    MAX_LISTED,
    as_tensor_dict,
    check_kind,
    convert_reference_state_dict,
    infer_network_config,
    one_line,
)

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


_NETWORK_CLASSES: dict[str, type[nn.Module]] = {"box2mask": Box2MaskNet, "propmask": PropMaskNet}
# Containers (in order of preference) that wrap the state dict in a training checkpoint.
_CONTAINER_KEYS = ("model_state_dict", "state_dict", "network_weights", "model")


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
    detail = one_line(detail.split("Check the documentation of torch.load")[0], 160)
    return f"the file is corrupt, truncated or not a torch.save file ({type(exc).__name__}: {detail})."


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
                f"its keys are {[str(k) for k in list(obj)[:MAX_LISTED]]}."
            )
        state_dict = obj[container]
        if isinstance(obj.get("config"), Mapping):
            config = dict(obj["config"])
        if obj.get("kind") in CHECKPOINT_KINDS:
            kind = obj["kind"]
    tensors = as_tensor_dict(state_dict, what=f"state dict in {str(path)!r}")
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
    check_kind(kind)
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
        raise CheckpointError(f"cannot build a {kind} network from config {dict(config)}: {one_line(exc)}") from exc


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
        more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
        return ", ".join(items[:MAX_LISTED]) + more

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
    check_kind(kind)
    kind = kind or _kind_of(network)
    _, state_dict, _ = _resolve(path_or_state_dict, kind)
    message = _mismatch_message(network, state_dict)
    if message is not None:
        raise CheckpointError(message)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # pragma: no cover - the check above should catch every mismatch
        raise CheckpointError(one_line(exc)) from exc
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
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path`` (no partial file; the
    permissions of any new file, see :func:`~pam_monai.data.io.write_atomic`)."""
    return write_atomic(path, lambda temporary: torch.save(obj, temporary))


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
    check_kind(kind)
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
