#!/usr/bin/env bash
# Set up pam-monai and segment the embedded example with the default weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/pam-monai segment examples/example_ct.nii.gz --mask-prompt examples/example_ct_prompt.nii.gz \
  -o out/example_seg.nii.gz --report out/example_report.json --preview out/example_preview.png
echo "wrote out/example_seg.nii.gz, out/example_report.json and out/example_preview.png"
