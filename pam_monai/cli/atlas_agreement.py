"""How well the atlas evaluation's labels are defined: the agreement of independently drawn atlases.

``python -m pam_monai.cli.atlas_agreement`` prints :func:`~pam_monai.evaluation.atlas_agreement.inter_atlas_agreement`
as a markdown table (Dice per structure and the means).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from pam_monai.cli.command import run_command

__all__ = ["agreement_table", "main"]

PROG = "python -m pam_monai.cli.atlas_agreement"
ATLASES = ("neuromorphometrics", "harvard_oxford")


def agreement_table(rows: Sequence[dict[str, Any]]) -> str:
    """The agreement as a markdown table: one row per structure (``-`` where an atlas has no counterpart), then the
    mean of each atlas over the structures it has."""
    lines = ["| structure | Neuromorphometrics DSC | Harvard-Oxford DSC |", "|---|---|---|"]
    for row in rows:
        cells = ["-" if row[a] is None else f"{row[a]:.3f}" for a in ATLASES]
        lines.append(f"| {row['structure']} | {cells[0]} | {cells[1]} |")
    means = [np.mean([r[a] for r in rows if r[a] is not None]) for a in ATLASES]
    lines.append(f"| **mean** | {means[0]:.3f} | {means[1]:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table; returns the exit code (0 ok, 2 when the atlases are missing)."""
    argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0]).parse_args(argv)
    from pam_monai.evaluation.atlas_agreement import inter_atlas_agreement  # after parsing: --help stays instant

    return run_command(PROG, lambda: agreement_table(inter_atlas_agreement()))


if __name__ == "__main__":
    raise SystemExit(main())
