"""TorchScript and ONNX exports give the eager networks' logits (atol 1e-4), for other batch sizes than traced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ellipsoid, object_volume

from pam_monai.inferers import PropagationInferer
from pam_monai.networks import build_box2mask, build_propmask
from pam_monai.networks.export import (
    ExportedBox2Mask,
    ExportedPropMask,
    export_onnx,
    export_torchscript,
    load_onnx,
    load_torchscript,
)

SIZE = 64  # every configuration at a small input side keeps the tests quick; the graph is the same


def _networks(config: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return build_propmask(config, input_size=SIZE).eval(), build_box2mask(config, input_size=SIZE).eval()


def _propmask_inputs(guides: int, queries: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(guides * 100 + queries)
    image = torch.randn((guides, 1, SIZE, SIZE), generator=generator)
    mask = (torch.rand((guides, 1, SIZE, SIZE), generator=generator) > 0.5).float()
    query = torch.randn((queries, 1, SIZE, SIZE), generator=generator)
    index = torch.randint(0, guides, (queries,), generator=generator)
    return image, mask, query, index


def _assert_close(expected: list[torch.Tensor], actual: list[torch.Tensor]) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.shape == a.shape
        torch.testing.assert_close(a, e, atol=1e-4, rtol=0)


def _check(propmask: torch.nn.Module, box2mask: torch.nn.Module, exported_p, exported_b) -> None:  # noqa: ANN001
    assert isinstance(exported_p, ExportedPropMask) and isinstance(exported_b, ExportedBox2Mask)
    assert exported_p.input_size == propmask.input_size and exported_b.input_size == box2mask.input_size
    with torch.no_grad():
        for guides, queries in [(1, 1), (3, 7), (2, 20)]:
            inputs = _propmask_inputs(guides, queries)
            _assert_close(propmask.forward_indexed(*inputs), exported_p.forward_indexed(*inputs))
        adjacent = torch.randn(2, 3, 1, SIZE, SIZE)
        inputs = _propmask_inputs(2, 1)[:2]
        _assert_close(propmask(*inputs, adjacent), exported_p(*inputs, adjacent))
        for batch in (1, 5):
            x = torch.randn(batch, 1, SIZE, SIZE)
            _assert_close(box2mask(x), exported_b(x))


@pytest.mark.parametrize("config", ["light", "paper"])
def test_torchscript_matches_eager(config: str, tmp_path: Path) -> None:
    propmask, box2mask = _networks(config)
    traced = export_torchscript(propmask)
    with torch.no_grad():
        inputs = _propmask_inputs(2, 5)
        _assert_close(propmask.forward_indexed(*inputs), list(traced(*inputs)))
    export_torchscript(propmask, tmp_path / "propmask.pt")
    export_torchscript(box2mask, tmp_path / "box2mask.pt")
    _check(propmask, box2mask, load_torchscript(tmp_path / "propmask.pt"), load_torchscript(tmp_path / "box2mask.pt"))


@pytest.mark.parametrize("config", ["light", "paper"])
def test_onnx_matches_eager(config: str, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    propmask, box2mask = _networks(config)
    export_onnx(propmask, tmp_path / "propmask.onnx")
    export_onnx(box2mask, tmp_path / "box2mask.onnx")
    _check(propmask, box2mask, load_onnx(tmp_path / "propmask.onnx"), load_onnx(tmp_path / "box2mask.onnx"))


def test_onnx_rejects_foreign_files(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not an ONNX file written by"):
        load_onnx(tmp_path / "other.onnx")


def test_export_rejects_other_modules() -> None:
    with pytest.raises(TypeError, match="PropMaskNet or Box2MaskNet"):
        export_torchscript(torch.nn.Conv2d(1, 1, 3))


@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
def test_propagation_with_exported_networks(backend: str, tmp_path: Path) -> None:
    """The inferer takes the exported networks in place of the eager ones: the same 3D result from a box."""
    if backend == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    propmask, box2mask = _networks("light")
    # Biased heads so that random weights still find an object and propagate a few rounds.
    for network in (propmask, box2mask):
        for head in network.decoder.seg_layers:
            head.bias.data = torch.tensor([-0.3, 0.3])
    if backend == "torchscript":
        export_torchscript(propmask, tmp_path / "p.pt")
        export_torchscript(box2mask, tmp_path / "b.pt")
        exported = load_torchscript(tmp_path / "p.pt"), load_torchscript(tmp_path / "b.pt")
    else:
        export_onnx(propmask, tmp_path / "p.onnx")
        export_onnx(box2mask, tmp_path / "b.onnx")
        exported = load_onnx(tmp_path / "p.onnx"), load_onnx(tmp_path / "b.onnx")
    truth = ellipsoid((48, 48, 30), (24, 24, 15), (12, 10, 9))
    image = torch.from_numpy(object_volume(truth))
    inferer = PropagationInferer(thickness_mm=4)
    eager = inferer.propagate(image, propmask, box2mask, box=(12, 14, 36, 34), slice_index=15)
    other = inferer.propagate(image, *exported, box=(12, 14, 36, 34), slice_index=15)
    assert eager.slices_predicted > 0
    a, b = eager.labels.numpy() > 0, other.labels.numpy() > 0
    if backend == "torchscript":
        assert np.array_equal(a, b) and eager.rounds == other.rounds
    else:  # float differences of ~1e-6 may flip a pixel whose two logits tie
        assert (a != b).sum() <= max(2, a.sum() // 1000)
