#!/usr/bin/env bash
# Create .venv-deploy (once) for the MONAI Deploy application in integrations/deploy: MONAI Deploy App SDK 4.0 (Holoscan
# 4.6, CPU mode), highdicom, pydicom 3, CPU torch and pam-monai. Safe to run again: a venv built from the same
# integrations/deploy/requirements.txt that still imports is left as it is. PAM_DEPLOY_VENV=path builds it elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${PAM_DEPLOY_VENV:-.venv-deploy}
REQUIREMENTS=integrations/deploy/requirements.txt
TEST_PACKAGES=(pytest==9.2.0 numpy-stl==4.1.1)
STAMP="$VENV/.pam-setup"

want=$( (cat "$REQUIREMENTS"; echo "${TEST_PACKAGES[*]}") | sha256sum | cut -d' ' -f1)
check() {
  "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import importlib.util
import warnings

warnings.filterwarnings("ignore", message="Current stack size")
import torch

assert torch.__version__.startswith("2.13.0"), torch.__version__
assert torch.version.cuda is None, "a CUDA build of torch slipped in"
assert importlib.util.find_spec("torchvision") is None, "torchvision is installed; it does not work beside CPU torch"
import highdicom  # noqa: F401
import holoscan.core  # noqa: F401
import monai.deploy.core  # noqa: F401
import pam_monai  # noqa: F401
import pydicom
import stl  # noqa: F401

assert md.version("monai-deploy-app-sdk") == "4.0.0", md.version("monai-deploy-app-sdk")
assert int(pydicom.__version__.split(".")[0]) >= 3, pydicom.__version__
PY
  [ -x "$VENV/bin/monai-deploy" ]
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && check 2>/dev/null; then
  echo "setup_deploy: $VENV is up to date"
  exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck source=scripts/pip_in_venv.sh
source scripts/pip_in_venv.sh
# 1. CPU torch first, so that nothing pulls a CUDA build.
pip_check_install "torch==2.13.0" setuptools wheel
# 2. The SDK (with Holoscan), highdicom, pydicom 3 and pam-monai's dependencies, pinned; then the test tools.
pip_check_install -r "$REQUIREMENTS" "${TEST_PACKAGES[@]}"
# 3. pam-monai itself (its dependencies are in the requirements file).
pip_check_install --no-deps -e .
if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  "$VENV/bin/python" -m pip uninstall -y -q torchvision
fi
check
echo "$want" > "$STAMP"
echo "setup_deploy: $VENV ready in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
