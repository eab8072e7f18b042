"""A folder of cases: one ``pam-monai segment`` process per case against one ``pam-monai segment-folder`` process.

Each ``segment`` process imports torch and MONAI and loads both networks before it segments; ``segment-folder``
pays that once. Both run as real command lines (``python -m pam_monai``) with the bundle's default weights, on the
same generated cases (:func:`_common.tube_volume`, a box prompt on the tube's middle slice), in one run, so the
ratio is comparable even on a noisy machine; the fastest of ``--repeat`` rounds of each is reported, and the two
modes' label images are compared voxel for voxel.

Usage::

    python benchmarks/bench_segment_folder.py --cases 8 --size 256 --span 40 --threads 2 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bounding_box, machine_line, markdown_table, set_threads, tube_volume, write_nifti  # noqa: E402


def make_cases(folder: Path, cases: int, size: int, span: int) -> list[str]:
    """``NAME.nii.gz`` + ``NAME.json`` (box prompt) per case; tubes differ by seed."""
    names = []
    for index in range(cases):
        name = f"case{index:03d}"
        image, truth, middle = tube_volume(span, margin=20, size=size, radius=size / 14, seed=index)
        write_nifti(image, folder / f"{name}.nii.gz")
        (r0, r1), (c0, c1), _ = bounding_box(truth[:, :, middle : middle + 1])
        box = [max(r0 - 3, 0), max(c0 - 3, 0), min(r1 + 3, size - 1), min(c1 + 3, size - 1)]
        (folder / f"{name}.json").write_text(json.dumps({"box": box, "slice": middle}))
        names.append(name)
    return names


def _run(arguments: list[str], threads: int) -> float:
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "pam_monai", *arguments, "--threads", str(threads), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment)
    return time.perf_counter() - start


def one_process_per_case(folder: Path, names: list[str], output: Path, threads: int) -> float:
    output.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for name in names:
        prompt = json.loads((folder / f"{name}.json").read_text())
        box = ",".join(str(v) for v in prompt["box"])
        seconds += _run(
            ["segment", str(folder / f"{name}.nii.gz"), "--box", box, "--slice", str(prompt["slice"]),
             "-o", str(output / f"{name}_seg.nii.gz")],
            threads,
        )  # fmt: skip
    return seconds


def one_folder_process(folder: Path, output: Path, threads: int) -> float:
    return _run(["segment-folder", str(folder), "-o", str(output)], threads)


def same_labels(names: list[str], first: Path, second: Path) -> bool:
    import nibabel as nib

    return all(
        np.array_equal(
            np.asarray(nib.load(first / f"{name}_seg.nii.gz").dataobj),
            np.asarray(nib.load(second / f"{name}_seg.nii.gz").dataobj),
        )
        for name in names
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="in-plane size of the volumes (at least 128)")
    parser.add_argument("--span", type=int, default=40, help="slices the tube spans")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of both modes; the fastest of each is kept")
    parser.add_argument("--wait-quiet", type=float, default=0.0, help="wait up to this many s for an idle CPU")
    args = parser.parse_args(argv)
    if args.size < 128 or args.cases < 1 or args.span < 1:
        parser.error("need --size >= 128 (the tube winds off-centre), --cases >= 1 and --span >= 1")
    threads = set_threads(args.threads, args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="pam_bench_folder_") as temporary:
        root = Path(temporary)
        cases = root / "cases"
        cases.mkdir()
        names = make_cases(cases, args.cases, args.size, args.span)
        per_case, folder = [], []
        for _ in range(args.repeat):
            per_case.append(one_process_per_case(cases, names, root / "per_case", threads))
            folder.append(one_folder_process(cases, root / "folder", threads))
        identical = same_labels(names, root / "per_case", root / "folder")
    results = {"per_case_s": min(per_case), "folder_s": min(folder), "identical": identical}
    rows = [
        ["one `segment` process per case", args.cases, f"{results['per_case_s']:.1f}",
         f"{results['per_case_s'] / args.cases:.2f}", "1.00"],
        ["one `segment-folder` process", args.cases, f"{results['folder_s']:.1f}",
         f"{results['folder_s'] / args.cases:.2f}", f"{results['folder_s'] / results['per_case_s']:.2f}"],
    ]  # fmt: skip
    print(f"# {machine_line(threads)}")
    print(f"# {args.cases} cases, {args.size} x {args.size} x {args.span + 20} int16, box prompts, default weights")
    print(markdown_table(["mode", "cases", "total s", "s per case", "time ratio"], rows))
    print(f"\nsame label images in both modes: {'yes' if identical else 'NO'}")
    return results


if __name__ == "__main__":
    main()
