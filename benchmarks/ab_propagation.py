"""Propagation time of one package tree, for an A/B against another revision in the same run.

    mkdir /tmp/old && git archive REV pam_monai | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ab_propagation.py before
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ab_propagation.py after

A 100-slice elliptic cylinder in a 160 x 160 x 120 noisy volume, a mask prompt on slice 60, the default light
PropMask, walker weight 0 and 0.7; one warm-up, then the best of 3. Prints seconds and the result's voxel count
(identical labels across revisions show the behaviour is unchanged). Only the public names used here are needed,
so any revision since the inferer's ``walker_weight`` works.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from pam_monai.inferers import PropagationInferer
from pam_monai.networks.checkpoint import build_network_from_checkpoint

MODEL = Path(__file__).resolve().parents[1] / "bundle" / "models" / "model.pt"


def main() -> None:
    torch.set_num_threads(1)
    net = build_network_from_checkpoint(str(MODEL), kind="propmask").eval()
    rng = np.random.default_rng(0)
    x, y, z = np.mgrid[:160, :160, :120]
    obj = ((x - 80) ** 2 / 30**2 + (y - 80) ** 2 / 22**2 < 1) & (z >= 10) & (z < 110)
    vol = (rng.normal(0, 20, obj.shape) + 100 + 200 * obj).astype(np.float32)
    prompt = np.zeros(obj.shape, np.uint8)
    prompt[..., 60] = obj[..., 60]
    out = {}
    for w in (0.0, 0.7):
        inf = PropagationInferer(walker_weight=w)
        inf.propagate(torch.from_numpy(vol), net, mask_prompt=prompt)  # warm-up
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            r = inf.propagate(torch.from_numpy(vol), net, mask_prompt=prompt)
            ts.append(time.perf_counter() - t)
        out[w] = (min(ts), int(r.labels.sum()))
    print(sys.argv[1], " ".join(f"w{w}: {t:.2f}s voxels={v}" for w, (t, v) in out.items()))


if __name__ == "__main__":
    main()
