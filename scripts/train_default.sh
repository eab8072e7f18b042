#!/usr/bin/env bash
# Train (or continue training) the default `light` weights on generated volumes through the bundle's train config:
# PropMask and Box2Mask side by side, each within a wall-time budget (TrainingTimeLimit ends the run cleanly, so the
# final checkpoint and the weights export still happen). Made for one lent GPU with 16 CPU cores feeding it; on a
# CPU set small budgets and NUM_WORKERS.
#
#   PROPMASK_SECONDS=330 BOX2MASK_SECONDS=300 EXPORT_DIR=runs/export bash scripts/train_default.sh
#
# Environment (defaults in brackets): PY [python3], RUN_DIR [runs/default] for checkpoints and logs, EXPORT_DIR
# [$RUN_DIR/export] for model.pt and box2mask.pt, PRETRAINED [bundle/models: continue from the shipped weights;
# "none" starts from random weights], PROPMASK_SECONDS [330], BOX2MASK_SECONDS [300], PROPMASK_WORKERS [10],
# BOX2MASK_WORKERS [5], PROPMASK_VOLUMES [1500], BOX2MASK_VOLUMES [1000], PROPMASK_EPOCHS (cosine period) [30],
# BOX2MASK_EPOCHS [30], BATCH [64], SEED [30000], CROSS_SHARE [0] (share of cross-image tasks in PropMask's
# training, train.json's cross_image_share; also `--cross-share SHARE`), EXTRA (more bundle arguments, e.g.
# "--tracking mlflow ...").
set -euo pipefail
cd "$(dirname "$0")/.."
CROSS_SHARE=${CROSS_SHARE:-0}
while [ $# -gt 0 ]; do
    case $1 in
        --cross-share) CROSS_SHARE=${2:-}; shift $(($# > 1 ? 2 : 1)) ;;
        --cross-share=*) CROSS_SHARE=${1#*=}; shift ;;
        *) echo "error: unknown argument '$1' (the only one is --cross-share SHARE; the rest is environment)." >&2
           exit 2 ;;
    esac
done
if ! awk -v s="$CROSS_SHARE" 'BEGIN { exit !(s ~ /^([0-9]+\.?[0-9]*|\.[0-9]+)$/ && s + 0 <= 1) }'; then
    echo "error: the cross-image share must be a number in [0, 1], got '$CROSS_SHARE'." >&2
    exit 2
fi
PY=${PY:-python3}
RUN_DIR=${RUN_DIR:-runs/default}
EXPORT_DIR=${EXPORT_DIR:-$RUN_DIR/export}
PRETRAINED=${PRETRAINED:-bundle/models}
SEED=${SEED:-30000}
BATCH=${BATCH:-64}
mkdir -p "$RUN_DIR" "$EXPORT_DIR"

pretrained() {  # file name -> the --pretrained_checkpoint argument
    if [ "$PRETRAINED" = none ]; then echo None; else echo "$PRETRAINED/$1"; fi
}

train() {  # target, seconds, workers, volumes, epochs, seed, batch, export name, extra args...
    local target=$1 seconds=$2 workers=$3 volumes=$4 epochs=$5 seed=$6 batch=$7 export=$8
    shift 8
    # shellcheck disable=SC2086  # EXTRA is a list of arguments
    "$PY" -m monai.bundle run training --config_file bundle/configs/train.json --bundle_root bundle \
        --target "$target" --pretrained_checkpoint "$(pretrained "$export")" --resume false \
        --use_synthetic true --synthetic_shape "[96,96,64]" --synthetic_volumes "$volumes" \
        --synthetic_validation_volumes 8 --synthetic_seed "$seed" --num_workers "$workers" \
        --batch_size "$batch" --num_epochs 100000 --lr_period_epochs "$epochs" --max_training_seconds "$seconds" \
        --save_interval 1000000 --ckpt_dir "$RUN_DIR/ckpt/$target" --output_dir "$RUN_DIR/out/$target" \
        --export_path "$EXPORT_DIR/$export" "$@" ${EXTRA:-} > "$RUN_DIR/$target.log" 2>&1
}

train propmask "${PROPMASK_SECONDS:-330}" "${PROPMASK_WORKERS:-10}" "${PROPMASK_VOLUMES:-1500}" \
    "${PROPMASK_EPOCHS:-30}" "$SEED" "$BATCH" model.pt --tasks_per_volume 8 --learning_rate 3e-4 \
    --cross_image_share "$CROSS_SHARE" &
propmask=$!
train box2mask "${BOX2MASK_SECONDS:-300}" "${BOX2MASK_WORKERS:-5}" "${BOX2MASK_VOLUMES:-1000}" \
    "${BOX2MASK_EPOCHS:-30}" "$((SEED + 50000))" "$((BATCH * 2))" box2mask.pt --tasks_per_volume 12 \
    --learning_rate 5e-4 &
box2mask=$!
status=0
wait "$propmask" || { status=$?; echo "PropMask training failed: see $RUN_DIR/propmask.log" >&2; }
wait "$box2mask" || { status=$?; echo "Box2Mask training failed: see $RUN_DIR/box2mask.log" >&2; }
grep -h "tasks/s\|val_mean_dice\|time limit" "$RUN_DIR"/propmask.log "$RUN_DIR"/box2mask.log | tail -n 20 >&2 || true
exit "$status"
