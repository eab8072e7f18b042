#!/usr/bin/env bash
# Set up what the tests need, lint, and run the whole test suite on the CPU: the main environment first, then
# the MONAI Label server tests and the MONAI Deploy app tests, each in its own environment (their pins differ
# from the main ones and from each other).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check pam_monai tests integrations benchmarks bundle
# One intra-op thread per process: the suite starts servers and torchrun workers beside pytest on few cores.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
bash scripts/test_monailabel.sh
bash scripts/test_deploy.sh
