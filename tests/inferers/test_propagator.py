"""The MONAI-free Propagator / Box2Masker that the predictor and the command line use, and the MONAI inferers that
wrap them: the same labels, MetaTensors in and out where the inferers promise them, no MONAI import on the way."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch
from conftest import always_object, ellipsoid, object_volume
from monai.data import MetaTensor
from monai.inferers import Inferer

from pam_monai.inferers import Box2Masker, Box2MaskInferer, PropagationInferer, Propagator
from pam_monai.networks import build_box2mask, build_propmask

SHAPE = (40, 36, 24)
AFFINE = torch.tensor([[0, -0.8, 0, 10.0], [0.9, 0, 0, -20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1.0]], dtype=torch.float64)


def _case() -> tuple[np.ndarray, np.ndarray]:
    truth = ellipsoid(SHAPE, (20, 18, 12), (9, 8, 6))
    prompt = np.zeros(SHAPE, np.int16)
    prompt[:, :, 12] = truth[:, :, 12]
    return object_volume(truth), prompt


def _networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return (
        always_object(build_propmask("light", input_size=64)).eval(),
        always_object(build_box2mask("light", input_size=64)).eval(),
    )


def test_the_inferers_are_monai_inferers_around_the_plain_classes() -> None:
    inferer = PropagationInferer()
    assert isinstance(inferer, Inferer) and isinstance(inferer, Propagator)
    assert isinstance(inferer.box2mask_inferer, Box2MaskInferer)  # as before the split
    assert not isinstance(Propagator(), Inferer)
    assert type(Propagator().box2mask_inferer) is Box2Masker
    assert isinstance(Box2MaskInferer(), Inferer) and isinstance(Box2MaskInferer(), Box2Masker)


def test_propagator_and_inferer_give_the_same_labels_with_a_real_network() -> None:
    image, prompt = _case()
    propmask, box2mask = _networks()
    settings = {"thickness_mm": 6.0, "walker_weight": 0.5}
    plain = Propagator(**settings).propagate(torch.from_numpy(image), propmask, mask_prompt=prompt, spacing=(1, 1, 2))
    wrapped = PropagationInferer(**settings).propagate(
        torch.from_numpy(image), propmask, mask_prompt=prompt, spacing=(1, 1, 2)
    )
    assert plain.labels.any()
    assert torch.equal(plain.labels, wrapped.labels)
    box = (10, 10, 28, 26)
    plane = torch.from_numpy(image[:, :, 12])
    assert torch.equal(Box2Masker()(plane, box2mask, box=box), Box2MaskInferer()(plane, box2mask, box=box))


def test_a_metatensor_input_gives_its_spacing_and_only_the_inferer_a_metatensor_output() -> None:
    image, prompt = _case()
    propmask, _ = _networks()
    meta = MetaTensor(torch.from_numpy(image)[None], affine=AFFINE)
    spacing = tuple(float(v) for v in torch.linalg.norm(AFFINE[:3, :3], dim=0))
    given = Propagator(thickness_mm=6).propagate(torch.from_numpy(image), propmask, mask_prompt=prompt, spacing=spacing)
    plain = Propagator(thickness_mm=6)(meta, propmask, mask_prompt=prompt)
    labels = PropagationInferer(thickness_mm=6)(meta, propmask, mask_prompt=prompt)
    assert type(plain) is torch.Tensor and tuple(plain.shape) == (1, *SHAPE)
    assert isinstance(labels, MetaTensor) and torch.allclose(labels.affine, AFFINE)
    assert torch.equal(plain[0], given.labels) and torch.equal(labels.as_tensor(), plain)


def test_the_segment_path_modules_import_no_monai() -> None:
    code = (
        "import sys\n"
        "import pam_monai.predictor, pam_monai.inferers.propagator, pam_monai.transforms.functional\n"
        "import pam_monai.networks, pam_monai.data.io, pam_monai.cli.segment\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('monai', 'skimage', 'ignite')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
