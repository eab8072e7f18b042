#!/usr/bin/env bash
# Set up what the tests need, lint, and run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check pam_monai tests
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
