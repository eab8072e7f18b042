"""Candidate weights against the shipped ones, side by side: the decision a training run on a lent GPU ends with.

``python -m pam_monai.cli.candidate --candidate-dir runs/export --out-dir out/device`` compares the two pairs of
networks (:mod:`pam_monai.evaluation.candidate`), writes the tables and ``verdict.json`` to ``--out-dir`` and prints
``validation.md``, whose last line is the verdict.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pam_monai.cli.command import run_command

__all__ = ["main", "parse_axes"]

PROG = "python -m pam_monai.cli.candidate"


def parse_axes(text: str) -> list[int]:
    """Axes given as ``"0,1,2"`` or ``"0 1 2"``."""
    axes = [int(a) for a in text.replace(",", " ").split()]
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"axes must be among 0, 1, 2, got {text!r}.")
    return axes


def _compare(args: argparse.Namespace) -> str:
    from pam_monai.evaluation.candidate import (
        compare_cross_image,
        compare_weights,
        cross_image_pairs,
        generated_objects,
        validation_objects,
        write_outputs,
    )

    structures = [s.strip() for s in args.structures.split(",") if s.strip()] or None
    axes = parse_axes(args.axes)
    sets = {
        "validation": validation_objects(structures),
        "generated": generated_objects(args.generated, max_objects=args.objects_per_volume),
    }
    from pam_monai.networks.weights import default_checkpoints

    shipped = Path(args.shipped_dir) if args.shipped_dir else default_checkpoints()[0].parent
    weights = {"shipped": shipped, "candidate": Path(args.candidate_dir)}
    for folder in weights.values():
        for file in ("model.pt", "box2mask.pt"):
            if not (folder / file).is_file():
                raise FileNotFoundError(f"{folder / file} does not exist.")
    if args.cross_pairs < 0:
        raise ValueError(f"--cross-pairs must be >= 0, got {args.cross_pairs}.")
    rows = compare_weights(weights, sets, {"validation": axes, "generated": (2,)}, device=args.device)
    rows += compare_cross_image(weights, cross_image_pairs(args.cross_pairs), device=args.device)
    note = f"Device {args.device}; validation axes {axes}; {args.generated} generated volumes"
    note += f"; {args.cross_pairs} cross-image scene pairs.\n\n" if args.cross_pairs else ".\n\n"
    write_outputs(rows, Path(args.out_dir), note)
    return Path(args.out_dir, "validation.md").read_text().rstrip()  # its last line is the verdict


def main(argv: Sequence[str] | None = None) -> int:
    """Compare, write and print; returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--candidate-dir", required=True, help="folder with the candidate model.pt and box2mask.pt")
    parser.add_argument(
        "--shipped-dir", help="folder with the shipped model.pt and box2mask.pt (default: the default weights)"
    )
    parser.add_argument("--out-dir", default="out/device", help="where the tables and the verdict go")
    parser.add_argument("--structures", default="", help="comma-separated validation structures (default: all 11)")
    parser.add_argument("--axes", default="0,1,2", help="prompt axes on the validation set")
    parser.add_argument("--generated", type=int, default=8, help="held-out generated volumes (axis 2)")
    parser.add_argument(
        "--cross-pairs", type=int, default=0, help="held-out cross-image scene pairs (one-round propagate-2d)"
    )
    parser.add_argument("--objects-per-volume", type=int, default=0, help="at most this many objects per volume")
    parser.add_argument("--device", help="where the networks run (default: cuda when available, else cpu)")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch  # after parsing: --help stays instant

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return run_command(PROG, lambda: _compare(args))


if __name__ == "__main__":
    raise SystemExit(main())
