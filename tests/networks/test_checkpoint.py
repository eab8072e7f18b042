"""Tests for pam_monai.networks.checkpoint: reference-layout conversion, loading, inference of the config, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from reference_layout import PAPER, SMALL
from torch import Tensor, nn

from pam_monai.networks import (
    Box2MaskNet,
    CheckpointError,
    PropMaskNet,
    build_network_from_checkpoint,
    convert_checkpoint,
    convert_reference_state_dict,
    infer_network_config,
    load_network_weights,
    read_checkpoint,
    save_network,
)


# ---------------------------------------------------------------------------------------------------------------
# A generator of reference-layout state dicts, written from the key patterns of the PAM reference checkpoints
# ---------------------------------------------------------------------------------------------------------------
def _unit(sd: dict[str, Tensor], prefix: str, cin: int, cout: int, gen: torch.Generator) -> None:
    """One conv/norm unit with its ``all_modules`` aliases (the same tensors, as nn.Module sharing produces)."""
    conv_w = torch.randn(cout, cin, 3, 3, generator=gen)
    conv_b = torch.randn(cout, generator=gen)
    norm_w = 1 + 0.1 * torch.randn(cout, generator=gen)
    norm_b = torch.randn(cout, generator=gen)
    sd[f"{prefix}.conv.weight"], sd[f"{prefix}.conv.bias"] = conv_w, conv_b
    sd[f"{prefix}.norm.weight"], sd[f"{prefix}.norm.bias"] = norm_w, norm_b
    sd[f"{prefix}.all_modules.0.weight"], sd[f"{prefix}.all_modules.0.bias"] = conv_w, conv_b
    sd[f"{prefix}.all_modules.1.weight"], sd[f"{prefix}.all_modules.1.bias"] = norm_w, norm_b


def _reference_encoder(prefix: str, features: tuple[int, ...], gen: torch.Generator) -> dict[str, Tensor]:
    sd: dict[str, Tensor] = {}
    cin = 1
    for s, cout in enumerate(features):
        for j in range(2):
            _unit(sd, f"{prefix}stages.{s}.0.convs.{j}", cin if j == 0 else cout, cout, gen)
        cin = cout
    return sd


def _reference_decoder(prefix: str, features: tuple[int, ...], gen: torch.Generator) -> dict[str, Tensor]:
    sd: dict[str, Tensor] = {}
    for s in range(len(features) - 1):
        below, skip = features[-(s + 1)], features[-(s + 2)]
        _unit(sd, f"{prefix}stages.{s}.convs.0", 2 * skip, skip, gen)
        _unit(sd, f"{prefix}stages.{s}.convs.1", skip, skip, gen)
    for s in range(len(features) - 1):
        below, skip = features[-(s + 1)], features[-(s + 2)]
        sd[f"{prefix}transpconvs.{s}.weight"] = torch.randn(below, skip, 2, 2, generator=gen)
        sd[f"{prefix}transpconvs.{s}.bias"] = torch.randn(skip, generator=gen)
    for s in range(len(features) - 1):
        skip = features[-(s + 2)]
        sd[f"{prefix}seg_layers.{s}.weight"] = torch.randn(2, skip, 1, 1, generator=gen)
        sd[f"{prefix}seg_layers.{s}.bias"] = torch.randn(2, generator=gen)
    return sd


def reference_state_dict(kind: str, features: tuple[int, ...] = PAPER, seed: int = 0) -> dict[str, Tensor]:
    """A state dict with exactly the reference key names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    prefix = "proposing_stage." if kind == "propmask" else ""
    encoder = _reference_encoder(f"{prefix}encoder.", features, gen)
    sd = dict(encoder)
    if kind == "propmask":
        sd.update(_reference_encoder(f"{prefix}mask_encoder.", features, gen))
    sd.update(_reference_decoder(f"{prefix}decoder.", features, gen))
    # The decoder keeps a reference to the (image) encoder, so its tensors appear a second time.
    sd.update({f"{prefix}decoder.{k[len(prefix) :]}": v for k, v in encoder.items()})
    if kind == "propmask":
        for i, c in enumerate(features[-4:]):
            for name in ("values", "keys", "queries"):
                sd[f"{prefix}cross_attns.{i}.{name}.weight"] = torch.randn(c, c, generator=gen) / math.sqrt(c)
            sd[f"{prefix}cross_attns.{i}.fc_out.weight"] = torch.randn(c, c, generator=gen) / math.sqrt(c)
            sd[f"{prefix}cross_attns.{i}.fc_out.bias"] = torch.randn(c, generator=gen)
    return sd


def _our_key(kind: str, ref_key: str) -> str:
    """The expected name in our networks of a (primary, non-duplicate) reference key."""
    key = ref_key.removeprefix("proposing_stage.")
    for s in range(6):
        key = key.replace(f"encoder.stages.{s}.0.convs.", f"encoder.stages.{s}.convs.")
    if kind == "propmask" and key.startswith("encoder."):
        key = "image_" + key
    for old, new in (("queries", "query_proj"), ("keys", "key_proj"), ("values", "value_proj"), ("fc_out", "out_proj")):
        key = key.replace(f".{old}.", f".{new}.")
    return key.replace("cross_attns.", "cross_attentions.")


def _save(sd: dict[str, Tensor], path: Path, container: str, module_prefix: bool) -> Path:
    if module_prefix:
        sd = {f"module.{k}": v for k, v in sd.items()}
    if container == "model_state_dict":
        obj: object = {"epoch": 7, "model_state_dict": sd, "optimizer_state_dict": {}, "scheduler_state_dict": {}}
    else:
        obj = sd
    torch.save(obj, path)
    return path


def _is_primary(key: str) -> bool:
    return ".all_modules." not in key and ".decoder.encoder." not in f".{key}"


@pytest.fixture(scope="module")
def paper_reference() -> dict[str, dict[str, Tensor]]:
    return {kind: reference_state_dict(kind, PAPER) for kind in ("box2mask", "propmask")}


@pytest.fixture(scope="module")
def paper_networks() -> dict[str, nn.Module]:
    return {"box2mask": Box2MaskNet(), "propmask": PropMaskNet()}


# ---------------------------------------------------------------------------------------------------------------
# Conversion of reference-layout files
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "count"), [("box2mask", 292), ("propmask", 408)])
def test_reference_generator_counts(kind: str, count: int, paper_reference: dict, paper_networks: dict) -> None:
    sd = paper_reference[kind]
    assert len(sd) == count
    assert len({k for k in sd if _is_primary(k)}) == len(paper_networks[kind].state_dict())


@pytest.mark.parametrize("kind", ["box2mask", "propmask"])
@pytest.mark.parametrize("container", ["raw", "model_state_dict"])
@pytest.mark.parametrize("module_prefix", [False, True])
def test_convert_checkpoint_paper(
    kind: str, container: str, module_prefix: bool, tmp_path: Path, paper_reference: dict
) -> None:
    ref = paper_reference[kind]
    src = _save(ref, tmp_path / "ref.pth", container, module_prefix)
    dst = convert_checkpoint(src, tmp_path / "out" / "converted.pth")
    assert dst == tmp_path / "out" / "converted.pth"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["converted.pth"]  # no temporary file left behind

    network = PropMaskNet() if kind == "propmask" else Box2MaskNet()
    network.load_state_dict(torch.load(dst), strict=True)
    ours = network.state_dict()
    for key, value in ref.items():
        if _is_primary(key):
            assert torch.equal(ours[_our_key(kind, key)], value), key


@pytest.mark.parametrize("kind", ["box2mask", "propmask"])
def test_convert_reference_state_dict_detects_kind(kind: str) -> None:
    ref = reference_state_dict(kind, SMALL)
    detected, converted = convert_reference_state_dict({f"module.{k}": v for k, v in ref.items()})
    assert detected == kind
    network = PropMaskNet(features=SMALL) if kind == "propmask" else Box2MaskNet(features=SMALL)
    assert set(converted) == set(network.state_dict())
    # Already in our layout: returned unchanged (after stripping ``module.``).
    again_kind, again = convert_reference_state_dict({f"module.{k}": v for k, v in converted.items()})
    assert again_kind == kind
    assert list(again) == list(converted)
    assert all(again[k] is converted[k] for k in converted)


def test_alias_only_and_equal_copies_are_accepted() -> None:
    ref = reference_state_dict("box2mask", SMALL)
    # Only the alias of one conv; a distinct but equal copy of another alias.
    only_alias = ref.pop("decoder.stages.2.convs.1.conv.weight")
    ref["encoder.stages.3.0.convs.0.all_modules.1.bias"] = ref["encoder.stages.3.0.convs.0.norm.bias"].clone()
    _, converted = convert_reference_state_dict(ref)
    assert torch.equal(converted["decoder.stages.2.convs.1.conv.weight"], only_alias)
    load_network_weights(Box2MaskNet(features=SMALL), converted)


@pytest.mark.parametrize(
    "key", ["encoder.stages.1.0.convs.1.all_modules.0.weight", "decoder.encoder.stages.4.0.convs.0.norm.weight"]
)
def test_inconsistent_duplicates_are_rejected(key: str) -> None:
    ref = reference_state_dict("box2mask", SMALL)
    ref[key] = ref[key] + 1
    with pytest.raises(CheckpointError, match="inconsistent") as info:
        convert_reference_state_dict(ref)
    assert key in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# Configuration inference, own format, fp16
# ---------------------------------------------------------------------------------------------------------------
def test_infer_network_config_paper(paper_reference: dict) -> None:
    box = infer_network_config(paper_reference["box2mask"])
    assert box == {"features": PAPER, "convs_per_stage": 2, "out_channels": 2, "in_channels": 1, "input_size": 224}
    prop = infer_network_config(paper_reference["propmask"], "propmask")
    assert prop["features"] == PAPER and prop["attention_stages"] == (2, 3, 4, 5)


@pytest.mark.parametrize(
    ("features", "attention_stages"),
    [((8, 16, 24, 40, 48, 48), (1, 3, 5)), ((8, 16, 32, 32, 32, 32), (2, 3, 4, 5)), ((4, 8, 12, 16), (3,))],
)
def test_build_network_from_checkpoint_any_width(features: tuple, attention_stages: tuple, tmp_path: Path) -> None:
    source = PropMaskNet(features=features, attention_stages=attention_stages)
    torch.save({"model_state_dict": source.state_dict()}, tmp_path / "w.pth")
    built = build_network_from_checkpoint(tmp_path / "w.pth")
    assert isinstance(built, PropMaskNet)
    assert built.attention_stages == attention_stages
    assert all(
        torch.equal(a, b) for a, b in zip(built.state_dict().values(), source.state_dict().values(), strict=True)
    )

    box = Box2MaskNet(features=features, convs_per_stage=3, out_channels=3)
    torch.save(box.state_dict(), tmp_path / "b.pth")
    built_box = build_network_from_checkpoint(tmp_path / "b.pth")
    assert isinstance(built_box, Box2MaskNet)
    assert infer_network_config(box.state_dict())["convs_per_stage"] == 3
    assert all(
        torch.equal(a, b) for a, b in zip(built_box.state_dict().values(), box.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("half", [False, True])
def test_save_network_roundtrip(half: bool, tmp_path: Path) -> None:
    network = PropMaskNet(features=SMALL, input_size=96)
    path = save_network(network, tmp_path / "sub" / "prop.pt", half=half)
    assert sorted(p.name for p in path.parent.iterdir()) == ["prop.pt"]
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "propmask" and raw["config"]["input_size"] == 96
    assert raw["state_dict"]["decoder.seg_layers.0.weight"].dtype == (torch.float16 if half else torch.float32)

    state_dict = read_checkpoint(path)
    assert all(v.dtype == torch.float32 for v in state_dict.values())
    built = build_network_from_checkpoint(path)
    assert isinstance(built, PropMaskNet) and built.input_size == 96
    atol = 1e-2 if half else 0.0
    for key, value in network.state_dict().items():
        assert torch.allclose(built.state_dict()[key], value, atol=atol, rtol=1e-3 if half else 0.0), key
    # The stored kind is authoritative.
    with pytest.raises(CheckpointError, match="propmask weights"):
        build_network_from_checkpoint(path, kind="box2mask")


def test_convert_own_format_writes_plain_fp32_state_dict(tmp_path: Path) -> None:
    network = Box2MaskNet(features=SMALL)
    save_network(network, tmp_path / "own.pt", "box2mask", {"features": SMALL, "input_size": 64}, half=True)
    dst = convert_checkpoint(tmp_path / "own.pt", tmp_path / "plain.pt")
    plain = torch.load(dst, weights_only=True)
    assert list(plain) == list(network.state_dict())
    assert all(v.dtype == torch.float32 for v in plain.values())
    Box2MaskNet(features=SMALL).load_state_dict(plain, strict=True)


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------
def _assert_failed_convert(src: Path, dst: Path, *fragments: str, kind: str | None = None) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(src, dst, kind=kind)
    message = str(info.value)
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not dst.exists()
    assert [p for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")] == []
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    _assert_failed_convert(tmp_path / "nope.pth", tmp_path / "dst.pth", "not found", "nope.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a file"):
        read_checkpoint(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    src = tmp_path / "corrupt.pth"
    src.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1)).byte().numpy().tobytes())
    _assert_failed_convert(src, tmp_path / "dst.pth", "cannot read checkpoint", "corrupt", "corrupt.pth")
    # A truncated real checkpoint.
    torch.save(Box2MaskNet(features=SMALL).state_dict(), tmp_path / "full.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:5000])
    _assert_failed_convert(tmp_path / "cut.pth", tmp_path / "dst.pth", "cannot read checkpoint")


class _Pickled:
    """Not loadable with ``weights_only=True``."""


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (_Pickled(), "weights-only load refuses"),
        ([torch.zeros(1)], "not a dict of tensors"),
        ({"epoch": 3}, "holds no tensors"),
        ({"w": torch.zeros(1), "epoch": 3}, "not a dict of tensors"),
        ({"model_state_dict": {}}, "empty"),
    ],
)
def test_not_a_state_dict(content: object, fragment: str, tmp_path: Path) -> None:
    torch.save(content, tmp_path / "odd.pth")
    _assert_failed_convert(tmp_path / "odd.pth", tmp_path / "dst.pth", fragment)


@pytest.mark.parametrize(
    ("kind", "removed", "named"),
    [
        ("box2mask", ["decoder.seg_layers.2.weight"], "decoder.seg_layers.2.weight"),
        (
            "box2mask",
            ["decoder.stages.1.convs.0.conv.weight", "decoder.stages.1.convs.0.all_modules.0.weight"],
            "decoder.stages.1.convs.0.conv.weight",
        ),
        ("propmask", ["proposing_stage.cross_attns.1.keys.weight"], "cross_attentions.1.key_proj.weight"),
    ],
)
def test_missing_key(kind: str, removed: list[str], named: str, tmp_path: Path) -> None:
    ref = reference_state_dict(kind, SMALL)
    for key in removed:
        del ref[key]
    src = _save(ref, tmp_path / "ref.pth", "model_state_dict", module_prefix=True)
    _assert_failed_convert(src, tmp_path / "dst.pth", "1 missing key", named)
    network = PropMaskNet(features=SMALL) if kind == "propmask" else Box2MaskNet(features=SMALL)
    with pytest.raises(CheckpointError, match="1 missing key") as info:
        load_network_weights(network, src)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_wrong_shape(tmp_path: Path) -> None:
    ref = reference_state_dict("box2mask", SMALL)
    ref["decoder.seg_layers.1.weight"] = torch.zeros(2, 33, 1, 1)
    src = _save(ref, tmp_path / "ref.pth", "raw", module_prefix=False)
    _assert_failed_convert(src, tmp_path / "dst.pth", "decoder.seg_layers.1.weight", "(2, 32, 1, 1)", "(2, 33, 1, 1)")
    with pytest.raises(CheckpointError, match=r"expected \(2, 32, 1, 1\), got \(2, 33, 1, 1\)"):
        load_network_weights(Box2MaskNet(features=SMALL), ref)


def test_paper_weights_into_light_network_lists_mismatches(paper_reference: dict) -> None:
    with pytest.raises(CheckpointError) as info:
        load_network_weights(Box2MaskNet(features=SMALL), paper_reference["box2mask"])
    message = str(info.value)
    assert "\n" not in message and "shape mismatch" in message and "more)" in message


def test_box2mask_weights_as_propmask(tmp_path: Path) -> None:
    src = _save(reference_state_dict("box2mask", SMALL), tmp_path / "box.pth", "raw", module_prefix=False)
    _assert_failed_convert(src, tmp_path / "dst.pth", "Box2Mask", "propmask", kind="propmask")
    with pytest.raises(CheckpointError, match="Box2Mask") as info:
        load_network_weights(PropMaskNet(features=SMALL), src)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="PropMask"):
        load_network_weights(Box2MaskNet(features=SMALL), reference_state_dict("propmask", SMALL))


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _save(reference_state_dict("box2mask", SMALL), tmp_path / "box.pth", "raw", module_prefix=False)
    dst = tmp_path / "out" / "dst.pth"
    real_save = torch.save

    def failing_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        real_save(obj, f, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(src, dst)
    assert list(dst.parent.iterdir()) == []


def test_bad_kind_argument() -> None:
    with pytest.raises(ValueError, match="kind must be"):
        convert_reference_state_dict({"w": torch.zeros(1)}, kind="unet")
