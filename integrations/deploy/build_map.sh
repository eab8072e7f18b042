#!/usr/bin/env bash
# Build the MONAI Application Package (a Docker image) of the PAM app. Needs Docker with buildx, network access for
# the base image and PyPI, and .venv-deploy (bash scripts/setup_deploy.sh) for the `monai-deploy` command.
#
#   bash integrations/deploy/build_map.sh [TAG] [MODELS_DIR]      # default pam:0.1 and bundle/models
#   bash integrations/deploy/build_map.sh --stage-only            # only lay out build/deploy-map/app (no Docker needed;
#                                                         # PAM_MAP_STAGE=folder stages elsewhere)
#
# pam-monai is not on PyPI, so the application folder is staged first: build/deploy-map/app = integrations/deploy +
# the pam_monai package + the bundle's configs (bundle/configs/inference.json). The weights go in as the MAP's
# models (--models): /opt/holoscan/models/<MODELS_DIR name>/model.pt and box2mask.pt.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE_ONLY=0
if [ "${1:-}" = "--stage-only" ]; then STAGE_ONLY=1; shift; fi
TAG=${1:-pam:0.1}
MODELS=${2:-bundle/models}
VENV=${PAM_DEPLOY_VENV:-.venv-deploy}
STAGE=${PAM_MAP_STAGE:-build/deploy-map/app}

rm -rf "$STAGE"
mkdir -p "$STAGE/bundle"
tar -C integrations/deploy --exclude=__pycache__ --exclude=build_map.sh -cf - . | tar -C "$STAGE" -xf -
tar --exclude=__pycache__ -cf - pam_monai | tar -C "$STAGE" -xf -
cp -r bundle/configs "$STAGE/bundle/configs"
echo "staged the application in $STAGE"
[ "$STAGE_ONLY" = 1 ] && exit 0

if [ ! -f "$MODELS/model.pt" ]; then
  echo "build_map: no $MODELS/model.pt: a MAP needs PropMask (and Box2Mask) weights; pass their folder" >&2
  exit 2
fi
"$VENV/bin/monai-deploy" package "$STAGE" --config integrations/deploy/app.yaml --platform x86_64 --tag "$TAG" \
  --models "$MODELS" -l DEBUG
