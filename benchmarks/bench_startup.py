"""Start-up of ``pam-monai segment``: where the seconds before the first network forward go, side by side.

In one run, each measured as a fresh process (the fastest of ``--repeat``, so the ratios hold on a noisy machine):

- ``import torch`` alone, and ``import monai`` alone;
- process start -> first network forward: the CLI's own imports (``pam_monai.cli.segment``, after nibabel is
  imported without pydicom as the command does), the default weights loaded, one PropMask forward;
- ``pam-monai segment`` end to end (``python -m pam_monai``, default weights) on a generated ~50-slice object (a
  winding tube, mask prompt on its middle slice) and on the quickstart example (the MNI152 left lateral
  ventricle), with the report's seconds per stage; then a correction of the tube's result as the CLI makes one
  (``--previous`` its result, ``--click`` a foreground voxel a quarter of the span from the prompt slice);
- ``python -X importtime -m pam_monai segment``: import time per top-level package (its own modules), and whether
  monai, mlflow, matplotlib, ignite or pandas were imported.

Goals (issue 19): first forward <= torch import + 0.5 s; ``segment`` end to end < 3 s.

Usage::

    python benchmarks/bench_startup.py --repeat 3 --threads 2 --output benchmarks/results/startup.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_line, markdown_table, set_threads, tube_volume, write_nifti  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "matplotlib", "ignite", "pandas", "monai")

FIRST_FORWARD = """
import time, sys
try:
    from pam_monai.cli.main import nibabel_without_pydicom  # what `segment` does first
    nibabel_without_pydicom()
except ImportError:  # a version without it
    pass
from pam_monai.cli.segment import segment_case  # the CLI's imports
from pam_monai.predictor import PAMPredictor
import torch
predictor = PAMPredictor.from_checkpoints()
net = predictor.propmask
size = int(getattr(net, "input_size", 224))
with torch.inference_mode():
    net(torch.zeros(1, 1, size, size), torch.zeros(1, 1, size, size), torch.zeros(1, 2, 1, size, size))
print("FORWARD", time.time(), flush=True)
"""


def _fresh(code: list[str], threads: int) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one fresh process, and its result."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(code, capture_output=True, text=True, env=environment, cwd=REPO)
    return time.perf_counter() - started, done


def _best(code: list[str], threads: int, repeat: int) -> tuple[float, subprocess.CompletedProcess]:
    runs = [_fresh(code, threads) for _ in range(repeat)]
    for _, done in runs:
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(code[:4])} failed: {done.stderr[-2000:]}")
    return min(runs, key=lambda r: r[0])


def first_forward_seconds(threads: int, repeat: int) -> float:
    """Process spawn -> end of the first PropMask forward (wall clock, the fastest of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        spawned = time.time()
        _, done = _fresh([sys.executable, "-c", FIRST_FORWARD], threads)
        if done.returncode != 0:
            raise RuntimeError(f"first forward failed: {done.stderr[-2000:]}")
        line = next(v for v in done.stdout.splitlines() if v.startswith("FORWARD"))
        best = min(best, float(line.split()[1]) - spawned)
    return best


def import_profile(stderr: str) -> tuple[dict[str, float], list[str]]:
    """Seconds each top-level package's own modules took to import (``-X importtime`` self times summed per
    package, so a package is not charged for what it imports from others), and the heavy packages (:data:`HEAVY`)
    that were imported."""
    per_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line[len("import time:") :].split("|")
        per_package[name.strip().split(".")[0]] += int(own) / 1e6
    return dict(per_package), sorted(name for name in HEAVY if name in per_package)


def segment_arguments(image: Path, prompt: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pam_monai",
        "segment",
        str(image),
        "--mask-prompt",
        str(prompt),
        "-o",
        str(out / "seg.nii.gz"),
        "--report",
        str(out / "report.json"),
        "--no-progress",
    ]


def correction_arguments(image: Path, previous: Path, click: str, out: Path) -> list[str]:
    """``segment`` correcting ``previous`` with one click (``i,j,k,+``), written under ``out``."""
    arguments = segment_arguments(image, previous, out)
    at = arguments.index("--mask-prompt")
    arguments[at : at + 2] = ["--previous", str(previous), "--click", click]
    return arguments


def tube_click(span: int, size: int) -> str:
    """A foreground click ``i,j,k,+`` inside the generated tube, a quarter of its span beyond its middle slice."""
    import numpy as np

    _, truth, middle = tube_volume(span, size=size)
    k = middle + span // 4
    voxels = np.argwhere(truth[:, :, k])
    i, j = (int(v) for v in voxels[len(voxels) // 2])
    return f"{i},{j},{k},+"


def cases(folder: Path, span: int, size: int) -> dict[str, tuple[Path, Path]]:
    """The generated tube (mask prompt on its middle slice) and the quickstart example."""
    import numpy as np

    from pam_monai.data.atlas import atlas_data_dir

    image, truth, middle = tube_volume(span, size=size)
    prompt = np.zeros(truth.shape, np.uint8)
    prompt[:, :, middle] = truth[:, :, middle]
    tube = (write_nifti(image, folder / "tube.nii.gz"), write_nifti(prompt, folder / "tube_prompt.nii.gz"))
    template = atlas_data_dir() / "templates" / "MNI152_T1_1mm_brain.nii.gz"
    example = (template, REPO / "examples" / "mni152_left_lateral_ventricle_prompt.nii.gz")
    return {f"tube, {span} slices": tube, "quickstart ventricle": example}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement (fastest kept)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--span", type=int, default=50, help="slices the generated object spans")
    parser.add_argument("--size", type=int, default=256, help="in-plane size of the generated volume")
    parser.add_argument("--output", help="also write the markdown here (and the numbers as JSON beside it)")
    args = parser.parse_args()
    threads = set_threads(args.threads)

    torch_s, _ = _best([sys.executable, "-c", "import torch"], threads, args.repeat)
    monai_s, _ = _best([sys.executable, "-W", "ignore", "-c", "import monai"], threads, args.repeat)
    forward_s = first_forward_seconds(threads, args.repeat)
    rows, numbers = [], {"torch_import_s": torch_s, "monai_import_s": monai_s, "first_forward_s": forward_s}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = cases(folder, args.span, args.size)
        runs = {name: segment_arguments(image, prompt, folder / f"case{n}")
                for n, (name, (image, prompt)) in enumerate(inputs.items())}  # fmt: skip
        tube_image, tube_prompt = inputs[f"tube, {args.span} slices"]
        runs["tube, a correction (--previous, --click)"] = correction_arguments(
            tube_image, folder / "case0" / "seg.nii.gz", tube_click(args.span, args.size), folder / "correction"
        )
        for name, arguments in runs.items():  # the tube's result exists before its correction runs
            wall, _ = _best(arguments, threads, args.repeat)
            report = json.loads((Path(arguments[arguments.index("--report") + 1])).read_text())
            seconds = report["seconds"]
            extent = report["objects"][0]["extent"]
            rows.append(
                [
                    name,
                    extent["slices"],
                    f"{wall:.2f}",
                    f"{wall / torch_s:.2f}",
                    ", ".join(f"{k} {v:.2f}" for k, v in seconds.items() if k not in ("total", "wall")),
                ]
            )
            numbers[f"segment_wall_s[{name}]"] = wall
            numbers[f"segment_stages_s[{name}]"] = seconds
        profiled = segment_arguments(tube_image, tube_prompt, folder / "importtime")
        _, done = _fresh([sys.executable, "-X", "importtime", *profiled[1:]], threads)
    packages, heavy = import_profile(done.stderr)
    top = sorted(packages.items(), key=lambda kv: -kv[1])[:12]
    numbers.update({"imports_s": packages, "heavy_imported": heavy})

    text = "\n\n".join(
        [
            "# Start-up of `pam-monai segment`",
            machine_line(threads),
            markdown_table(
                ["measure", "seconds", "x torch import", "goal"],
                [
                    ["`import torch`", f"{torch_s:.2f}", "1.00", ""],
                    ["`import monai`", f"{monai_s:.2f}", f"{monai_s / torch_s:.2f}", "not on the segment path"],
                    [
                        "process start -> first forward",
                        f"{forward_s:.2f}",
                        f"{forward_s / torch_s:.2f}",
                        f"<= torch + 0.5 s = {torch_s + 0.5:.2f}",
                    ],
                ],
            ),
            markdown_table(["`pam-monai segment`", "slices", "wall s", "x torch import", "stages (s)"], rows)
            + "\n\nGoal: under 3 s end to end.",
            "Import time of `pam-monai segment` by package (`-X importtime`, each package's own modules, s): "
            + ", ".join(f"{k} {v:.2f}" for k, v in top)
            + f". Heavy packages imported: {', '.join(heavy) or 'none'}.",
        ]
    )
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
        Path(args.output).with_suffix(".json").write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
