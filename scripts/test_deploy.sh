#!/usr/bin/env bash
# Build .venv-deploy (scripts/setup_deploy.sh) and run the MONAI Deploy application's tests in it: a generated CT
# series (oblique, unequal pixel spacing, shuffled files) through the app in-process on CPU, the DICOM SEG read back
# with highdicom (frame -> source instance, geometry), the NIfTI, STL and report, NIfTI input, and bad input; then
# the MAP built and run with Docker by the README's own commands (test_map.py: where Docker runs or root can install
# and start it; the first build takes minutes, PAM_MAP_TEST=0 skips it). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_deploy.sh
VENV=${PAM_DEPLOY_VENV:-.venv-deploy}
# Holoscan asks for a 32 MiB stack; raise the soft limit where the hard limit allows it. Only the soft one: a plain
# `ulimit -s` also lowers the hard limit, which a dockerd started from here (scripts/build_map.sh) would inherit,
# and the MAP's `docker run --ulimit stack=64MiB` would then be refused.
ulimit -S -s 32768 2>/dev/null || true
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/integrations/deploy_app "$@"
