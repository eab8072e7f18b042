"""PAM beside the inference patterns of its peers, in one run, on the same 100-slice object and thread count.

The object is the generated tube of :mod:`bench_propagation` (100 slices of a 512 x 512 x 140 volume, 0.8 x 0.8 x
1.0 mm). Every network has random weights: this compares cost, not accuracy.

* **PAM light / PAM full** ("paper" networks): box prompt on the middle slice, Box2Mask + propagation, with the
  oracle wrappers of ``bench_propagation`` (real forwards timed, masks from the truth so the run covers the
  object). Reported twice: end to end (read + write of the NIfTI included) and inference only.
* **SAM ViT-B slice by slice** (MedSAM's pattern): for every slice of the object, the slice is windowed, made
  3-channel, resized to 1024 x 1024, run through SAM's ViT-B image encoder, the prompt encoder (the object's box on
  that slice) and the mask decoder; the 256 x 256 mask is upsampled to 512 x 512 and thresholded. Built from the
  ``segment-anything`` package's modeling classes (ViT-B sizes, no weights).
* **3D ViT sliding window** (SegVol's size): MONAI ``ViT`` with patch 4 x 16 x 16, ROI 32 x 256 x 256 (slices x
  rows x columns), hidden 768, 12 layers, 12 heads, MLP 3072, plus a transposed-convolution head back to the ROI;
  ``monai.inferers.sliding_window_inference`` (overlap 0.5) over the object's bounding region (box + 10 voxels),
  plus one zoom-out pass of the whole volume resized to the ROI, as SegVol does. SegVol's SAM-style 3D mask decoder
  and its text encoder are not modelled, so this row is a lower bound for SegVol.
* **VISTA3D** (MONAI ``vista3d132``, point-prompt head): ``sliding_window_inference`` with ROI 128^3 (overlap 0.25)
  over the same region on the image's own grid (the VISTA3D bundle would first resample to 1.5 mm), one positive
  point at the object's centre, given to every window in its coordinates.

Peers that would take more than ``--budget`` seconds (default 120) for the whole object are measured on their first
few slices or windows (``--sam-slices``, ``--vit-windows``, ``--vista-windows``, after one warm-up) and extrapolated
to all of them; the others run in full; the table says which. A peer's time is its fastest measured slice / window
times their number, PAM's the fastest of ``--pam-repeat`` runs: on a shared machine other processes only ever slow
a run down. GFLOPs are counted with ``torch.utils.flop_counter`` on one slice / window and multiplied by the number
of slices / windows (multiply and add counted separately).

Usage::

    python benchmarks/bench_peers.py --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bounding_box, count_flops, machine_line, markdown_table, set_threads, tube_volume  # noqa: E402
from bench_propagation import bench as bench_pam  # noqa: E402

from pam_monai.inferers import PropagationInferer  # noqa: E402

SPAN = 100
PAM_NAMES = {"light": "PAM light", "paper": "PAM full (paper)"}


# -------------------------------------------------------------------------------------------------------------
# SAM ViT-B, slice by slice
# -------------------------------------------------------------------------------------------------------------


def sam_modeling() -> types.ModuleType:
    """``segment_anything.modeling`` without the package's ``__init__`` (which imports torchvision)."""
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("pip install --no-deps segment-anything  (see benchmarks/requirements.txt)")
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    import segment_anything.modeling as modeling

    return modeling


class SamViTB(nn.Module):
    """SAM with the ViT-B image encoder (1024 x 1024 input, 16 px patches, windowed + 4 global attention blocks)."""

    def __init__(self) -> None:
        super().__init__()
        m = sam_modeling()
        self.image_encoder = m.ImageEncoderViT(
            depth=12,
            embed_dim=768,
            img_size=1024,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=12,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=(2, 5, 8, 11),
            window_size=14,
            out_chans=256,
        )
        self.prompt_encoder = m.PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        )
        self.mask_decoder = m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )

    def segment_slice(self, image: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        """MedSAM-style: ``(H, W)`` slice and box (r0, c0, r1, c1) -> ``(H, W)`` boolean mask."""
        height, width = image.shape
        lo, hi = float(image.min()), float(image.max())
        x = ((image.float() - lo) / max(hi - lo, 1e-8))[None, None].expand(1, 3, height, width)
        x = F.interpolate(x, size=(1024, 1024), mode="bilinear", align_corners=False)
        embedding = self.image_encoder(x)
        r0, c0, r1, c1 = box
        scale = torch.tensor([1024 / width, 1024 / height, 1024 / width, 1024 / height])
        boxes = (torch.tensor([c0, r0, c1, r1], dtype=torch.float32) * scale)[None]
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=None)
        logits, _ = self.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[0, 0] > 0


# -------------------------------------------------------------------------------------------------------------
# 3D ViT (SegVol size) and VISTA3D, sliding windows
# -------------------------------------------------------------------------------------------------------------

VIT_ROI = (32, 256, 256)


class ViT3DSegmenter(nn.Module):
    """MONAI ViT encoder (patch 4 x 16 x 16, ViT-B width) with a transposed-convolution head back to the ROI."""

    def __init__(self, roi: tuple[int, int, int] = VIT_ROI, patch: tuple[int, int, int] = (4, 16, 16)) -> None:
        super().__init__()
        from monai.networks.nets import ViT

        self.grid = tuple(r // p for r, p in zip(roi, patch))
        self.encoder = ViT(
            in_channels=1,
            img_size=roi,
            patch_size=patch,
            hidden_size=768,
            mlp_dim=3072,
            num_layers=12,
            num_heads=12,
            proj_type="conv",
            classification=False,
        )
        self.head = nn.ConvTranspose3d(768, 2, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.encoder(x)
        features = tokens.transpose(1, 2).reshape(x.shape[0], 768, *self.grid)
        return self.head(features)


class Limited:
    """Counts the network calls of a sliding-window run; after ``limit`` calls returns zeros instead of computing.

    ``times`` holds the seconds of the computed calls after the first ``skip`` (warm-up) ones.
    """

    def __init__(self, network: Callable[[torch.Tensor], torch.Tensor], limit: int | None, skip: int = 0) -> None:
        self.network, self.limit, self.skip = network, limit, skip
        self.calls, self.times = 0, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.limit is not None and self.calls > self.limit + self.skip:
            return torch.zeros((x.shape[0], 1, *x.shape[2:]))
        start = time.perf_counter()
        out = self.network(x)
        if self.calls > self.skip:
            self.times.append(time.perf_counter() - start)
        return out[:, -1:] if out.shape[1] > 1 else out


def sliding_windows(
    region: torch.Tensor, roi: tuple[int, ...], overlap: float, network: Callable, limit: int | None
) -> Limited:
    from monai.inferers import sliding_window_inference

    counter = Limited(network, limit)
    sliding_window_inference(region[None, None], roi, 1, counter, overlap=overlap, mode="constant")
    return counter


# -------------------------------------------------------------------------------------------------------------
# the run
# -------------------------------------------------------------------------------------------------------------


def run_sam(image: np.ndarray, truth: np.ndarray, slices: list[int], sample: int, budget: float) -> dict:
    model = SamViTB().eval()
    volume = torch.from_numpy(image.astype(np.float32))

    def box_of(k: int) -> tuple[int, int, int, int]:
        (r0, r1), (c0, c1) = bounding_box(truth[:, :, k])
        return r0, c0, r1, c1

    with torch.inference_mode():
        # One counted forward, which is also the warm-up.
        flops = count_flops(lambda: model.segment_slice(volume[:, :, slices[0]], box_of(slices[0])))
        times: list[float] = []
        for k in slices:
            start = time.perf_counter()
            model.segment_slice(volume[:, :, k], box_of(k))
            times.append(time.perf_counter() - start)
            if len(times) >= sample and min(times) * len(slices) > budget:
                break
    return _row(times, len(slices), flops, "slices")


def _row(times: list[float], total: int, flops_each: int, unit: str, extra: int = 0) -> dict:
    """Seconds = the fastest measured slice / window x their number (other processes only ever slow one down)."""
    fastest = min(times)
    if len(times) >= total:
        how = f"measured: all {total} {unit}, fastest x {total + extra}" + (" (+ zoom-out pass)" if extra else "")
    else:
        how = f"extrapolated: {len(times)} of {total + extra} {unit} measured, fastest x {total + extra}"
    return {
        "seconds": fastest * (total + extra),
        "gflops": flops_each * (total + extra) / 1e9,
        "how": how,
        "per_unit": fastest,
        "units": total + extra,
    }


def run_windowed(
    network: nn.Module,
    region: torch.Tensor,
    roi: tuple[int, ...],
    overlap: float,
    sample: int,
    budget: float,
    flops_input: Callable[[], object],
    extra_windows: int = 0,
) -> dict:
    with torch.inference_mode():
        flops = count_flops(flops_input)  # also the warm-up
        probe = sliding_windows(region, roi, overlap, network, limit=sample)
        total = probe.calls  # the windows MONAI cuts
        if min(probe.times) * (total + extra_windows) <= budget and len(probe.times) < total:
            probe = sliding_windows(region, roi, overlap, network, limit=None)
    return _row(probe.times, total, flops, "windows", extra_windows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every method (default: cores)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds above which a peer is extrapolated")
    parser.add_argument("--sam-slices", type=int, default=2, help="SAM slices measured before extrapolating")
    parser.add_argument("--vit-windows", type=int, default=2, help="3D ViT windows measured before extrapolating")
    parser.add_argument("--vista-windows", type=int, default=1, help="VISTA3D windows measured before extrapolating")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sam", "vit", "vista3d"], help="peers to leave out")
    parser.add_argument("--pam-configs", nargs="+", default=["light", "paper"], choices=["light", "paper"])
    parser.add_argument("--pam-repeat", type=int, default=2, help="timed PAM runs (the fastest is reported)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to N s for other processes to idle")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads, args.wait_quiet)

    image, truth, middle = tube_volume(SPAN)
    bbox = bounding_box(truth)
    slices = list(range(bbox[2][0], bbox[2][1] + 1))
    lo = [max(a - 10, 0) for a, _ in bbox]
    hi = [min(b + 11, n) for (_, b), n in zip(bbox, image.shape)]
    region_xyz = torch.from_numpy(image[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32))
    region_xyz = (region_xyz - region_xyz.mean()) / region_xyz.std()
    results: dict[str, dict] = {}

    with tempfile.TemporaryDirectory(prefix="pam_peers_") as tmp:
        inferer = PropagationInferer()
        for config in args.pam_configs:
            name = PAM_NAMES[config]
            r = bench_pam(config, SPAN, args.pam_repeat, Path(tmp), inferer)
            s = r["seconds"]
            inference = s["total"] - s["read"] - s["write"]
            results[name] = {
                "seconds": inference,
                "end_to_end": s["total"],
                "gflops": r["gflops"],
                "how": f"measured ({r['slices_predicted']} slices predicted, dice {r['dice']:.3f})",
            }
            print(f"# {name}: {s['total']:.2f} s end to end", file=sys.stderr)

    torch.manual_seed(0)
    if "sam" not in args.skip:
        results["SAM ViT-B, slice by slice (MedSAM)"] = run_sam(image, truth, slices, args.sam_slices, args.budget)
        print("# SAM done", file=sys.stderr)
    if "vit" not in args.skip:
        vit = ViT3DSegmenter().eval()
        region = region_xyz.permute(2, 0, 1).contiguous()  # (slices, rows, cols) as SegVol orders its ROI
        results["3D ViT-B sliding window (SegVol size)"] = run_windowed(
            vit,
            region,
            VIT_ROI,
            0.5,
            args.vit_windows,
            args.budget,
            lambda: vit(torch.zeros(1, 1, *VIT_ROI)),
            extra_windows=1,
        )
        del vit
        print("# ViT done", file=sys.stderr)
    if "vista3d" not in args.skip:
        from monai.networks.nets import vista3d132

        vista = vista3d132(in_channels=1).eval()
        roi = (128, 128, 128)
        point = torch.tensor([[[64.0, 64.0, 64.0]]])
        label = torch.tensor([[1]])

        def vista_window(x: torch.Tensor) -> torch.Tensor:
            return vista(x, point_coords=point, point_labels=label)

        results["VISTA3D, 128^3 sliding window"] = run_windowed(
            vista_window,
            region_xyz,
            roi,
            0.25,
            args.vista_windows,
            args.budget,
            lambda: vista_window(torch.zeros(1, 1, *roi)),
        )
        print("# VISTA3D done", file=sys.stderr)

    full = results.get(PAM_NAMES["paper"])
    light = results.get(PAM_NAMES["light"])

    def ratio(value: float, reference: dict | None, key: str, digits: int) -> str:
        return f"{value / reference[key]:.{digits}f}x" if reference else "n/a"

    rows = []
    for name, r in results.items():
        rows.append(
            [
                name,
                f"{r['end_to_end']:.2f}" if "end_to_end" in r else "",
                f"**{r['seconds']:.2f}**",
                f"{r['gflops']:.0f}",
                ratio(r["seconds"], full, "seconds", 2),
                ratio(r["seconds"], light, "seconds", 1),
                ratio(r["gflops"], full, "gflops", 2),
                r["how"],
            ]
        )
    print(
        f"Same {SPAN}-slice object (512x512x{image.shape[2]}, region {tuple(region_xyz.shape)} voxels), "
        "random weights, inference seconds (read/write excluded; PAM end to end also shown)"
    )
    print(f"machine: {machine_line(threads)}\n")
    headers = ["method", "PAM end-to-end s", "inference s", "GFLOPs", "time / PAM full", "time / PAM light"]
    headers += ["GFLOPs / PAM full", "how"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
