#!/usr/bin/env bash
# Build .venv-monailabel (scripts/setup_monailabel.sh) and run the MONAI Label app's tests in it: a real server
# on 127.0.0.1 with generated studies (inference with every prompt type, bad requests, concurrency, training,
# no network access). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_monailabel.sh
.venv-monailabel/bin/python -m pytest -q -p no:cacheprovider tests/integrations/monailabel_app "$@"
