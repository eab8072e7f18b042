"""Where a propagation loses accuracy: one round of PropMask against simply copying the guide mask, per offset.

``python -m pam_monai.cli.diagnostics --dataset-dir runs/atlas`` (or ``--synthetic 12``, or ``--validation``: the
ICBM 2009c validation structures) prints the table of :func:`~pam_monai.evaluation.diagnostics.summarise_profile`,
PropMask's Dice, sensitivity and precision and the copied guide's Dice per distance.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pam_monai.cli.command import run_command

__all__ = ["main", "profile_table", "volumes"]

PROG = "python -m pam_monai.cli.diagnostics"


def volumes(
    synthetic: int | None, seed: int = 70000, dataset_dir: str | None = None, validation: bool = False
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image, label)`` of ``synthetic`` generated ``(96, 96, 64)`` volumes (1 mm voxels, seeds from
    ``seed``) when given; of the ICBM 2009c template with its validation structures labelled 1..N
    (:data:`~pam_monai.evaluation.candidate.VALIDATION_STRUCTURES`) when ``validation``; else of the
    ``validation`` items of ``dataset_dir/dataset.json``."""
    if validation:
        from pam_monai.evaluation.candidate import validation_objects

        for name, image, masks in validation_objects():
            label = np.zeros(tuple(image.shape), dtype=np.int64)
            for value, mask in enumerate(masks.values(), start=1):
                label[mask] = value
            yield name, np.asarray(image), label
        return
    if synthetic:
        from pam_monai.data.synthetic import generate_volume

        for index in range(seed, seed + synthetic):
            volume = generate_volume(index, (96, 96, 64), spacing=(1.0, 1.0, 1.0))
            yield f"synthetic-{index}", volume.image, volume.label
        return
    from pam_monai.data.datalist import load_datalist
    from pam_monai.data.io import load_image

    items = load_datalist(Path(dataset_dir) / "dataset.json", "validation", base_dir=dataset_dir)
    for item in items:
        image = np.asarray(load_image(item["image"])).squeeze()
        label = np.asarray(load_image(item["label"])).squeeze().astype(np.int64)
        yield str(item["image"]), image, label


def profile_table(summary: Sequence[dict]) -> str:
    """The per-distance summary as a markdown table."""
    lines = [
        "| distance (slices) | n | PropMask DSC | PropMask sens | PropMask prec | copied guide DSC | gain |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        cells = (
            row["distance"],
            row["n"],
            f"{row['network_dsc']:.3f}",
            f"{row['network_sensitivity']:.3f}",
            f"{row['network_precision']:.3f}",
            f"{row['copy_dsc']:.3f}",
            f"{row['gain']:+.3f}",
        )
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def _measure(args: argparse.Namespace) -> str:
    from pam_monai.data.io import write_atomic
    from pam_monai.evaluation.diagnostics import offset_profile, summarise_profile
    from pam_monai.networks.checkpoint import build_network_from_checkpoint
    from pam_monai.networks.weights import default_checkpoints

    network = build_network_from_checkpoint(args.checkpoint or default_checkpoints()[0], kind="propmask").eval()
    records = []
    for _, image, label in volumes(args.synthetic, args.seed, args.dataset_dir, args.validation):
        records += offset_profile(image, label, network, axes=args.axes, max_offset=args.max_offset)
    summary = summarise_profile(records)
    if args.output:
        text = json.dumps({"summary": summary, "records": records}, indent=1)
        write_atomic(args.output, lambda temporary: Path(temporary).write_text(text))
    return profile_table(summary)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the table; returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n")[0],
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset-dir", help="folder with a dataset.json whose 'validation' items are measured")
    source.add_argument("--synthetic", type=int, help="measure this many generated volumes (1 mm voxels) instead")
    source.add_argument(
        "--validation", action="store_true", help="measure the ICBM 2009c validation structures (the weights' choice)"
    )
    parser.add_argument("--seed", type=int, default=70000, help="seed of the first generated volume")
    parser.add_argument("--checkpoint", help="PropMask weights (default: the bundle's)")
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-offset", type=int, default=20)
    parser.add_argument("--output", help="also write the per-offset summary and the records as JSON here")
    args = parser.parse_args(argv)
    return run_command(PROG, lambda: _measure(args))


if __name__ == "__main__":
    raise SystemExit(main())
