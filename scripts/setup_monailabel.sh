#!/usr/bin/env bash
# Create .venv-monailabel (once) with MONAI Label 0.8.5, CPU torch and pam-monai. Safe to run again: a venv that
# was built from the same integrations/monailabel/requirements.txt and still imports is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-monailabel
REQUIREMENTS=integrations/monailabel/requirements.txt
MONAILABEL_VERSION=0.8.5
SAM2_VERSION=1.1.0
STAMP="$VENV/.pam-setup"

want=$( (cat "$REQUIREMENTS"; echo "monailabel==$MONAILABEL_VERSION sam2==$SAM2_VERSION") | sha256sum | cut -d' ' -f1)
check() {
  "$VENV/bin/python" - <<'EOF'
import importlib.util, sys
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert torch.version.cuda is None, "a CUDA build of torch slipped in"
assert importlib.util.find_spec("torchvision") is None, "torchvision is installed; it does not work beside CPU torch"
import monailabel, monai, pam_monai  # noqa: F401
assert monailabel.__version__ == "0.8.5", monailabel.__version__
EOF
}
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && check 2>/dev/null; then
  echo "setup_monailabel: $VENV is up to date"
  exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck source=scripts/pip_in_venv.sh
source scripts/pip_in_venv.sh
# 1. CPU torch first, so that nothing pulls a CUDA build.
pip_check_install "torch==2.13.0" setuptools wheel
# 2. Every other dependency, pinned, without torchvision.
pip_check_install -r "$REQUIREMENTS"
# 3. MONAI Label and SAM2 without their dependencies (they would pull torchvision and a CUDA torch); sam2 builds
#    from source with its CUDA extension off.
SAM2_BUILD_CUDA=0 pip_check_install --no-build-isolation --no-deps "sam2==$SAM2_VERSION" "monailabel==$MONAILABEL_VERSION"
# 4. pam-monai itself (its dependencies are in the requirements file).
pip_check_install --no-deps -e .
# Anything that brought torchvision in anyway goes: it breaks beside CPU torch and nothing here needs it.
if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  "$VENV/bin/python" -m pip uninstall -y -q torchvision
fi
check
echo "$want" > "$STAMP"
echo "setup_monailabel: $VENV ready in $(( $(date +%s) - start )) s"
