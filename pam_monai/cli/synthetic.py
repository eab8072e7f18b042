"""Write synthetic labelled volumes and an MSD-style ``dataset.json`` from the command line::

    python -m pam_monai.cli.synthetic OUT_DIR --num-volumes N --shape X Y Z --seed S

The layout is :func:`~pam_monai.data.synthetic.dataset.write_synthetic_datalist`'s; the path of ``dataset.json`` is
printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pam_monai.cli.command import run_command
from pam_monai.data.synthetic import MODALITIES, write_synthetic_datalist

__all__ = ["main"]

PROG = "python -m pam_monai.cli.synthetic"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the volumes and print the path of ``dataset.json``; returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Write synthetic labelled volumes and an MSD-style dataset.json."
    )
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--num-volumes", type=int, default=100, help="number of volumes (default 100)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0, help="seed of volume 0 (volume i uses seed + i)")
    parser.add_argument("--num-validation", type=int, default=None, help="validation volumes (default 10%%)")
    parser.add_argument("--modality", choices=MODALITIES, default=None, help="fix the modality (default: random)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    kwargs = {} if args.modality is None else {"modality": args.modality}
    return run_command(
        PROG,
        lambda: str(
            write_synthetic_datalist(
                args.out_dir,
                args.num_volumes,
                shape=tuple(args.shape),
                seed=args.seed,
                num_validation=args.num_validation,
                progress=not args.no_progress,
                **kwargs,
            )
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
