"""Check that the speed-ups of propagation and of PropMask's attention left the results unchanged.

Loads ``pam_monai/inferers/propagation.py`` and ``pam_monai/networks/propmask.py`` as they were at a git revision
(read with ``git show``, nothing in the work tree changes) beside the current ones, runs old inferer + old network
and new inferer + new network (same weights) on the same scenarios and requires identical label images, rounds and
slice counts; it also reports the largest logit difference of the two networks on one batch. The scenarios cover
mask, box and 3D-box prompts, several objects, all three axes, objects touching the volume edges, with and without
the continuity constraint and the connected-component filter. The networks are small random-weight PropMask /
Box2Mask networks whose logits are added to an oracle's, so the probabilities are soft (exercising the vote
averaging) yet follow the object through several rounds.

Usage::

    python benchmarks/check_equivalence.py --rev 469a068e2145a66990782ff7d7e25fc8cd64c586
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import _oracle_heads  # noqa: E402

from pam_monai.inferers import propagation as current  # noqa: E402
from pam_monai.networks import NETWORK_CONFIGS, build_box2mask, build_propmask  # noqa: E402

BEFORE_SPEEDUPS = "469a068e2145a66990782ff7d7e25fc8cd64c586"
ROOT = Path(__file__).resolve().parent.parent


def load_reference(rev: str, path: str = "pam_monai/inferers/propagation.py", name: str = "propagation_reference"):  # noqa: ANN201
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="pam_ref_"))
    file = folder / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class SoftOraclePropMask(nn.Module):
    """Real random-weight logits plus the oracle's: soft probabilities that still follow the object."""

    def __init__(self, network: nn.Module, weight: float = 0.4) -> None:
        super().__init__()
        self.network, self.input_size, self.weight = network, network.input_size, weight

    def forward_indexed(self, guides, masks, queries, index):  # noqa: ANN001, ANN201
        real = self.network.forward_indexed(guides, masks, queries, index)
        oracle = _oracle_heads(queries, [h.shape for h in real])
        return [o * self.weight + r for o, r in zip(oracle, real)]


class SoftOracleBox2Mask(nn.Module):
    def __init__(self, network: nn.Module, weight: float = 0.4) -> None:
        super().__init__()
        self.network, self.input_size, self.weight = network, network.input_size, weight
        self.encoder = network.encoder

    def forward(self, x):  # noqa: ANN001, ANN201
        real = self.network(x)
        return [o * self.weight + r for o, r in zip(_oracle_heads(x, [h.shape for h in real]), real)]


def volume(shape=(80, 72, 64), seed=0):  # noqa: ANN001, ANN201
    """Two blobs (labels 1 and 2) of intensity 100 on N(0, 5); the second touches the volume's last slices."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    label = np.zeros(shape, dtype=np.int16)
    one = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, (30, 30, 30), (14, 12, 22))) <= 1
    two = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, (58, 50, 56), (10, 9, 14))) <= 1
    label[one], label[two] = 1, 2
    image = np.where(label > 0, 100.0, rng.normal(0, 5, shape)).astype(np.float32)
    return image, label


def prompt(label: np.ndarray, axis: int, index: int, keep: tuple[int, ...] = (1, 2)) -> np.ndarray:
    out = np.zeros_like(label)
    plane = np.take(label, index, axis=axis)
    plane = np.where(np.isin(plane, keep), plane, 0)
    np.moveaxis(out, axis, 0)[index] = plane
    return out


def scenarios(label: np.ndarray):  # noqa: ANN201
    yield "mask, one object, axis 2", {"mask_prompt": prompt(label, 2, 30, (1,)), "axis": 2}, {}
    yield "mask, two objects, axis 2", {"mask_prompt": prompt(label, 2, 52), "axis": 2}, {}
    yield "mask, one object, axis 0", {"mask_prompt": prompt(label, 0, 30, (1,)), "axis": 0}, {}
    yield "mask, axis 1, no shift limit", {"mask_prompt": prompt(label, 1, 30, (1,)), "axis": 1}, {"max_shift_px": 0}
    yield (
        "mask, touches edge, no cc filter",
        {"mask_prompt": prompt(label, 2, 60, (2,)), "axis": 2},
        {"keep_connected": False},
    )
    yield "mask, thin neighbourhood", {"mask_prompt": prompt(label, 2, 30, (1,)), "axis": 2}, {"thickness_mm": 4}
    yield "box, axis 2", {"box": (18, 20, 43, 41), "slice_index": 30, "axis": 2}, {}
    yield "box, axis 1", {"box": (18, 10, 43, 50), "slice_index": 30, "axis": 1}, {}
    yield "3D box", {"box3d": (17, 19, 10, 44, 42, 50), "axis": 2}, {}
    yield "3D box, axis 0, spacing", {"box3d": (20, 19, 10, 40, 42, 50), "axis": 0, "spacing": (2.0, 0.7, 0.7)}, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default=BEFORE_SPEEDUPS, help="git revision of the reference propagation.py")
    args = parser.parse_args(argv)
    reference = load_reference(args.rev)
    old_network = load_reference(args.rev, "pam_monai/networks/propmask.py", "propmask_reference")
    torch.manual_seed(0)
    new_net = build_propmask("light", input_size=64).eval()
    old_net = old_network.PropMaskNet(**{**NETWORK_CONFIGS["light"], "input_size": 64}).eval()
    old_net.load_state_dict(new_net.state_dict())
    with torch.inference_mode():
        g, m = torch.randn(2, 1, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
        q, i = torch.randn(9, 1, 64, 64), torch.tensor([0, 1] * 4 + [0])
        diff = max(
            float((a - b).abs().max())
            for a, b in zip(old_net.forward_indexed(g, m, q, i), new_net.forward_indexed(g, m, q, i))
        )
    print(f"largest PropMask logit difference, old vs new network: {diff:.1e}")
    propmasks = {reference: SoftOraclePropMask(old_net).eval(), current: SoftOraclePropMask(new_net).eval()}
    box2mask = SoftOracleBox2Mask(build_box2mask("light", input_size=64).eval()).eval()
    image, label = volume()
    failures = 0
    for name, call, options in scenarios(label):
        outputs, times = [], []
        for module in (reference, current):
            inferer = module.PropagationInferer(**options)
            start = time.perf_counter()
            result = inferer.propagate(torch.from_numpy(image), propmasks[module], box2mask, **call)
            times.append(time.perf_counter() - start)
            outputs.append(result)
        old, new = outputs
        same = (
            torch.equal(old.labels, new.labels)
            and old.rounds == new.rounds
            and old.slices_predicted == new.slices_predicted
            and old.prompt_slices == new.prompt_slices
        )
        failures += not same
        print(
            f"{'same     ' if same else 'DIFFERENT'} {name}: {int((new.labels > 0).sum())} voxels, "
            f"{new.rounds} rounds, {new.slices_predicted} slices; {times[0]:.2f} s -> {times[1]:.2f} s"
        )
    print(f"{failures} of the scenarios differ from {args.rev[:12]}")
    return 1 if failures or diff > 1e-4 else 0


if __name__ == "__main__":
    sys.exit(main())
