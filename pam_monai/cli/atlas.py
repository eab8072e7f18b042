"""Real anatomy for examples and evaluation: write the MNI152 subcortical evaluation set (or the ICBM 2009c set).

``python -m pam_monai.cli.atlas runs/atlas`` writes the datalist (:func:`~pam_monai.data.atlas.write_atlas_datalist`)
and prints its path; ``--other-structures DIR`` writes :func:`~pam_monai.data.atlas.write_other_structures_datalist`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pam_monai.cli.command import run_command
from pam_monai.data.atlas import write_atlas_datalist, write_other_structures_datalist

__all__ = ["main"]

PROG = "python -m pam_monai.cli.atlas"


def main(argv: Sequence[str] | None = None) -> int:
    """Write the datalist and print its path; returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real anatomy for examples and evaluation: the MNI152 template and the Desikan-Killiany "
        "aparc+aseg atlas",
    )
    parser.add_argument("out_dir", nargs="?", default="atlas_eval", help="where the evaluation datalist goes")
    parser.add_argument(
        "--other-structures", metavar="DIR", help="instead write the ICBM 2009c set without the evaluated structures"
    )
    args = parser.parse_args(argv)
    if args.other_structures:
        return run_command(PROG, lambda: str(write_other_structures_datalist(args.other_structures)))
    return run_command(PROG, lambda: str(write_atlas_datalist(args.out_dir)))


if __name__ == "__main__":
    raise SystemExit(main())
