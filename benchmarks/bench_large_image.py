"""``pam-monai propagate-large`` on a generated slide: dark ellipses on a bright noisy background.

The slide (default 8192 x 8192, 3,549 ellipses whose axes are 20-36 px, a tiled zlib TIFF) and one 512 x 512
guide crop with 15 annotated ellipses are generated here from a fixed seed; a threshold would segment them almost
exactly, so the scores measure the propagation, not the task. The command runs as a user runs it (a subprocess,
``python -m pam_monai propagate-large``, with the bundle's default weights), timed from process start until it has
written the label image; its peak resident memory comes from the kernel (``wait4``). Scores, from the label TIFF
against the generated truth:

* pixel DSC of foreground (any label) against the ellipses;
* instances: a predicted and a true instance match when their IoU exceeds 0.5 (such a match is one-to-one);
  recall = matched true / true instances, precision = matched predicted / predicted instances.

``--size`` scales the slide for quick runs (the ellipse count scales with the area, same density);
``--sweep`` runs several settings (``window:border:guides[:boundary]``, 0 or empty = the default; boundary
``intensity`` or ``network``) on one slide and writes one row each.

Usage::

    python benchmarks/bench_large_image.py --size 2048 --threads 2
    python benchmarks/bench_large_image.py --size 2048 --sweep 0:0:0 256:32:2 --no-write
    python benchmarks/bench_large_image.py --size 2048 --sweep 0:0:0:network 0:0:0:intensity --no-write
    python benchmarks/bench_large_image.py  # the full 8192 x 8192 slide, written to results/large_image.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads  # noqa: E402

FULL_SIZE, FULL_COUNT = 8192, 3549
AXES = (20.0, 36.0)  # full axis lengths in pixels
BACKGROUND, OBJECT, NOISE = 200.0, 60.0, 15.0
TILE = 256
RESULTS = Path(__file__).resolve().parent / "results" / "large_image.md"


def place_ellipses(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, 5)`` rows ``(row, col, semi-axis a, semi-axis b, angle)``: whole inside the slide, never touching.

    Centres are uniform; a candidate closer than ``a1 + a2 + 6`` px to an accepted centre is redrawn.
    """
    margin, cell = AXES[1] / 2 + 2, 48
    grid: dict[tuple[int, int], list[int]] = {}
    found: list[tuple[float, float, float, float, float]] = []
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise RuntimeError(f"cannot place {count} separate ellipses in a {size} x {size} slide.")
        row, col = rng.uniform(margin, size - margin, 2)
        a, b = np.sort(rng.uniform(AXES[0] / 2, AXES[1] / 2, 2))[::-1]
        key = (int(row // cell), int(col // cell))
        near = (grid.get((key[0] + i, key[1] + j), []) for i in (-1, 0, 1) for j in (-1, 0, 1))
        if any(math.hypot(row - found[k][0], col - found[k][1]) < a + found[k][2] + 6 for ks in near for k in ks):
            continue
        grid.setdefault(key, []).append(len(found))
        found.append((row, col, a, b, rng.uniform(0, math.pi)))
    return np.array(found)


def rasterise(size: int, ellipses: np.ndarray) -> np.ndarray:
    """Instance labels ``1..n`` (uint16): pixel centres inside each ellipse."""
    labels = np.zeros((size, size), dtype=np.uint16)
    for index, (row, col, a, b, angle) in enumerate(ellipses, start=1):
        r0, r1 = int(row - a) - 1, int(row + a) + 2
        c0, c1 = int(col - a) - 1, int(col + a) + 2
        y, x = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        y, x = y - row, x - col
        u, v = x * math.cos(angle) + y * math.sin(angle), -x * math.sin(angle) + y * math.cos(angle)
        labels[r0:r1, c0:c1][(u / a) ** 2 + (v / b) ** 2 <= 1.0] = index
    return labels


def render_rows(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 pixels: bright background and dark objects, each with Gaussian noise."""
    noise = rng.normal(0.0, NOISE, labels.shape)
    return np.clip(np.where(labels > 0, OBJECT, BACKGROUND) + noise, 0, 255).astype(np.uint8)


def make_slide(folder: Path, size: int, count: int, seed: int) -> tuple[Path, Path, np.ndarray]:
    """Write ``slide.tif`` (tiled, zlib) and ``guides/guide.png`` + ``guide_mask.png``; return the truth labels."""
    rng = np.random.default_rng(seed)
    truth = rasterise(size, place_ellipses(size, count, rng))

    def tiles():  # noqa: ANN202
        for r0 in range(0, size, TILE):
            band = render_rows(truth[r0 : r0 + TILE], rng)
            for c0 in range(0, size, TILE):
                yield band[:, c0 : c0 + TILE]

    slide = folder / "slide.tif"
    with tifffile.TiffWriter(slide, bigtiff=size * size > 2**31) as tif:
        tif.write(tiles(), shape=(size, size), dtype=np.uint8, tile=(TILE, TILE), compression="zlib")
    guide_rng = np.random.default_rng(seed + 1)
    guide_truth = rasterise(512, place_ellipses(512, 15, guide_rng))
    guides = folder / "guides"
    guides.mkdir()
    Image.fromarray(render_rows(guide_truth, guide_rng)).save(guides / "guide.png")
    Image.fromarray(np.where(guide_truth > 0, 255, 0).astype(np.uint8)).save(guides / "guide_mask.png")
    return slide, guides, truth


def score(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pixel DSC, and instance recall / precision with matches at IoU > 0.5."""
    fg, true_fg = labels > 0, truth > 0
    dsc = 2.0 * float((fg & true_fg).sum()) / max(float(fg.sum() + true_fg.sum()), 1.0)
    n_true, n_pred = int(truth.max()), int(labels.max())
    both = fg & true_fg
    pairs, overlap = np.unique(truth[both].astype(np.int64) * (n_pred + 1) + labels[both], return_counts=True)
    t, p = pairs // (n_pred + 1), pairs % (n_pred + 1)
    true_area = np.bincount(truth.ravel(), minlength=n_true + 1)
    pred_area = np.bincount(labels.ravel(), minlength=n_pred + 1)
    iou = overlap / (true_area[t] + pred_area[p] - overlap)
    matched = iou > 0.5
    return {
        "dsc": dsc,
        "recall": len(np.unique(t[matched])) / max(n_true, 1),
        "precision": len(np.unique(p[matched])) / max(n_pred, 1),
        "found": n_pred,
    }


def run_cli(slide: Path, guides: Path, output: Path, threads: int, extra: list[str]) -> dict[str, object]:
    """Wall and CPU seconds, peak resident MB and the JSON report of one ``propagate-large`` process."""
    command = [sys.executable, "-m", "pam_monai", "propagate-large", str(slide), "--guides", str(guides)]
    command += ["-o", str(output), "--threads", str(threads), "--no-progress", *extra]
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    log = output.with_suffix(".log")
    with open(log, "w") as handle:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"propagate-large failed ({process.returncode}): {log.read_text()[-2000:]}")
    report = json.loads(output.with_suffix(".json").read_text())
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": seconds, "cpu": cpu, "peak": usage.ru_maxrss / 1024, **report}


def setting_arguments(setting: str) -> list[str]:
    """``window:border:guides[:boundary]`` (0 or empty = default) as CLI arguments."""
    window, border, guides, boundary = ([*setting.split(":"), "", "", ""])[:4]
    extra = []
    options = (("--window", window), ("--border", border), ("--max-guides", guides), ("--boundary", boundary))
    for option, value in options:
        if value and value != "0":
            extra += [option, value]
    return extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=FULL_SIZE, help="slide side in pixels (default 8192)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--sweep", nargs="+", default=["0:0:0"], help="settings window:border:guides[:boundary] (0: default)"
    )
    parser.add_argument("--workdir", help="keep the slide and outputs here (default: a temporary folder)")
    parser.add_argument("--output", default=str(RESULTS), help="markdown file to write")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    count = round(FULL_COUNT * (args.size / FULL_SIZE) ** 2)
    with tempfile.TemporaryDirectory(prefix="bench-large-") as temporary:
        folder = Path(args.workdir or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        slide, guides, truth = make_slide(folder, args.size, count, args.seed)
        print(f"# slide {args.size} x {args.size}, {count} ellipses, made in {time.perf_counter() - started:.1f} s")
        rows = []
        for index, setting in enumerate(args.sweep):
            extra = setting_arguments(setting)
            output = folder / f"labels{index}.tif"
            load = os.getloadavg()[0]
            run = run_cli(slide, guides, output, threads, extra)
            scores = score(tifffile.imread(output), truth)
            ring = f"{run.get('ring_radius', 0)} / {run.get('ring_weight', 1.0):g}" if run.get("ring_radius") else "-"
            row = [args.size, count, " ".join(extra) or "defaults", run["window"], run["stride"], run["guides"], ring]
            row += [threads, f"{run['wall']:.1f}", f"{run['cpu']:.1f}", f"{run['peak']:.0f}", f"{load:.1f}"]
            row += [f"{scores['dsc']:.3f}", f"{scores['recall']:.3f}", f"{scores['precision']:.3f}", scores["found"]]
            rows.append(row)
            print(" | ".join(str(v) for v in row), flush=True)
    headers = ["side px", "ellipses", "options", "window", "stride", "guides", "ring r / w", "threads", "wall s"]
    headers += ["CPU s"]
    headers += ["peak MB", "load avg at start", "pixel DSC", "recall", "precision", "found"]
    table = markdown_table(headers, rows)
    text = f"# {machine_line(threads)}\n\n{table}\n"
    print(text)
    if not args.no_write:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
