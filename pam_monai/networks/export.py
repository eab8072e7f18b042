"""Export PropMask and Box2Mask as TorchScript (``torch.jit.trace``) or ONNX, and load them back for inference.

The exported graphs (written by MONAI's ``convert_to_torchscript`` / ``convert_to_onnx``) take the same inputs as
the eager networks and give the same logits (TorchScript: the same kernels; ONNX Runtime: within ~1e-5). PropMask
is exported through :meth:`PropMaskNet.forward_indexed`, the call :class:`~pam_monai.inferers.PropagationInferer`
makes, with the number of guiding slices ``G`` and of query slices ``N`` left dynamic; Box2Mask with a dynamic
batch. The loaders return small modules that the inferers accept in
place of the eager networks::

    export_onnx(propmask, "propmask.onnx"); export_onnx(box2mask, "box2mask.onnx")
    inferer.propagate(image, load_onnx("propmask.onnx"), load_onnx("box2mask.onnx"), box=..., slice_index=...)

ONNX needs the optional extra ``pip install "pam-monai[onnx]"`` (``onnx`` and ``onnxruntime``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from monai.networks.utils import convert_to_onnx, convert_to_torchscript
from torch import nn

from pam_monai.networks.box2mask import Box2MaskNet
from pam_monai.networks.propmask import PropMaskNet

__all__ = [
    "ExportedBox2Mask",
    "ExportedPropMask",
    "export_onnx",
    "export_torchscript",
    "load_onnx",
    "load_torchscript",
]

_PROPMASK_INPUTS = ("guiding_image", "guiding_mask", "query_images", "guide_index")


class _IndexedForward(nn.Module):
    """PropMask's ``forward_indexed`` as a plain ``forward`` returning a tuple (what tracing and ONNX need)."""

    def __init__(self, network: PropMaskNet) -> None:
        super().__init__()
        self.network = network

    def forward(
        self, guiding_image: torch.Tensor, guiding_mask: torch.Tensor, query_images: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return tuple(self.network.forward_indexed(guiding_image, guiding_mask, query_images, index))


class _TupleForward(nn.Module):
    def __init__(self, network: Box2MaskNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.network(x))


def _kind(network: nn.Module) -> str:
    if isinstance(network, PropMaskNet):
        return "propmask"
    if isinstance(network, Box2MaskNet):
        return "box2mask"
    raise TypeError(f"can export PropMaskNet or Box2MaskNet, got {type(network).__name__}.")


def _example_inputs(network: nn.Module, guides: int = 2, queries: int = 3) -> tuple[torch.Tensor, ...]:
    device = next(network.parameters()).device
    size = int(network.input_size)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn((guides, 1, size, size), generator=generator).to(device)
    if _kind(network) == "box2mask":
        return (image,)
    mask = (torch.rand((guides, 1, size, size), generator=generator) > 0.5).float().to(device)
    query = torch.randn((queries, 1, size, size), generator=generator).to(device)
    index = (torch.arange(queries) % guides).to(device)
    return image, mask, query, index


def _wrapped(network: nn.Module) -> nn.Module:
    return (_IndexedForward(network) if _kind(network) == "propmask" else _TupleForward(network)).eval()


def _meta(network: nn.Module) -> dict[str, Any]:
    return {
        "kind": _kind(network),
        "input_size": int(network.input_size),
        "stages": len(network.image_encoder.features if _kind(network) == "propmask" else network.encoder.features),
    }


class ExportedPropMask(nn.Module):
    """An exported PropMask usable wherever the eager network is (``forward_indexed`` and ``forward``).

    Args:
        run: callable ``(guiding_image, guiding_mask, query_images, guide_index) -> sequence of logit maps``.
        input_size: the network's input side.
        device: where its inputs must be.
    """

    def __init__(self, run: Any, input_size: int, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.run = run
        self.input_size = int(input_size)
        # Tells the inferers the device (they look at the parameters).
        self._device_anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def forward_indexed(
        self, guiding_image: torch.Tensor, guiding_mask: torch.Tensor, query_images: torch.Tensor, index: torch.Tensor
    ) -> list[torch.Tensor]:
        if guiding_mask.ndim == 3:
            guiding_mask = guiding_mask.unsqueeze(1)
        return list(self.run(guiding_image.float(), guiding_mask.float(), query_images.float(), index.long()))

    def forward(
        self, guiding_image: torch.Tensor, guiding_mask: torch.Tensor, adjacent_images: torch.Tensor
    ) -> list[torch.Tensor]:
        b, nq = adjacent_images.shape[:2]
        index = torch.arange(b, device=adjacent_images.device).repeat_interleave(nq)
        return self.forward_indexed(guiding_image, guiding_mask, adjacent_images.flatten(0, 1), index)


class ExportedBox2Mask(nn.Module):
    """An exported Box2Mask usable wherever the eager network is.

    Args:
        run: callable ``(image) -> sequence of logit maps``.
        input_size: the network's input side.
        stages: encoder stages (the inferer derives the candidate size from the downsampling factor).
        device: where its inputs must be.
    """

    def __init__(self, run: Any, input_size: int, stages: int, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.run = run
        self.input_size = int(input_size)
        self.encoder = SimpleNamespace(features=(0,) * int(stages))
        self._device_anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.run(x.float()))


def _exported(run: Any, meta: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    if meta["kind"] == "propmask":
        return ExportedPropMask(run, meta["input_size"], device)
    return ExportedBox2Mask(run, meta["input_size"], meta["stages"], device)


# -------------------------------------------------------------------------------------------------------------
# TorchScript
# -------------------------------------------------------------------------------------------------------------


def export_torchscript(network: nn.Module, path: str | os.PathLike | None = None) -> torch.jit.ScriptModule:
    """Trace ``network`` (eval mode, current device) with MONAI's ``convert_to_torchscript``; save it to ``path``.

    The trace keeps the batch sizes (``G`` and ``N`` for PropMask) dynamic; the input side is fixed to the
    network's ``input_size``. The saved file records the kind and input size (``load_torchscript`` reads them).
    """
    meta = _meta(network)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # shape checks inside instance norm
        return convert_to_torchscript(
            _wrapped(network),
            filename_or_obj=None if path is None else str(path),
            extra_files={"pam_monai.json": json.dumps(meta)},
            use_trace=True,
            inputs=_example_inputs(network),
            check_trace=False,
        )


def load_torchscript(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a file written by :func:`export_torchscript` as an :class:`ExportedPropMask` / :class:`ExportedBox2Mask`."""
    extra = {"pam_monai.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    meta = json.loads(extra["pam_monai.json"])
    module.eval()
    return _exported(module, meta, device)


# -------------------------------------------------------------------------------------------------------------
# ONNX
# -------------------------------------------------------------------------------------------------------------


def export_onnx(network: nn.Module, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write ``network`` as ONNX with MONAI's ``convert_to_onnx`` (dynamic batch sizes; fixed input side).

    The kind and input size are stored as model metadata (``load_onnx`` reads them).
    """
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - depends on the optional extra
        raise ImportError('ONNX export needs the optional extra: pip install "pam-monai[onnx]"') from error
    meta = _meta(network)
    path = Path(path)
    heads = len(network.decoder.seg_layers)
    outputs = [f"logits_{i}" for i in range(heads)]
    if meta["kind"] == "propmask":
        names = list(_PROPMASK_INPUTS)
        dynamic = {"guiding_image": {0: "G"}, "guiding_mask": {0: "G"}, "query_images": {0: "N"}}
        dynamic["guide_index"] = {0: "N"}
        dynamic.update({name: {0: "N"} for name in outputs})
    else:
        names = ["image"]
        dynamic = {"image": {0: "B"}, **{name: {0: "B"} for name in outputs}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and instance-norm notes
        model = convert_to_onnx(
            _wrapped(network),
            _example_inputs(network),
            input_names=names,
            output_names=outputs,
            opset_version=opset,
            dynamic_axes=dynamic,
            filename=str(path),
            dynamo=False,
        )
    onnx.helper.set_model_props(model, {"pam_monai": json.dumps(meta)})
    onnx.save(model, str(path))
    return path


class _OnnxRunner:
    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        feed = {name: x.detach().cpu().contiguous().numpy() for name, x in zip(self.names, inputs)}
        return [torch.from_numpy(out) for out in self.session.run(None, feed)]


def load_onnx(path: str | os.PathLike, threads: int | None = None) -> nn.Module:
    """Load a file written by :func:`export_onnx` into ONNX Runtime (CPU) as an exported PropMask / Box2Mask.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime intra-op threads (default: torch's thread count).
    """
    try:
        import onnx
    except ImportError as error:  # pragma: no cover - depends on the optional extra
        raise ImportError('ONNX inference needs the optional extra: pip install "pam-monai[onnx]"') from error
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if "pam_monai" not in props:
        raise ValueError(f"{path}: not an ONNX file written by pam_monai.networks.export.export_onnx.")
    return _exported(_OnnxRunner(path, threads), json.loads(props["pam_monai"]))
