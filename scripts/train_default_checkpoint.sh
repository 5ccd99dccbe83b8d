#!/usr/bin/env bash
# Trains the bundled default checkpoint (and the no-structure ablation used by the evaluation harness) on the
# offline photo set, the four networks side by side on a 2-core CPU (one thread each), then assembles the pipeline
# folders `$RUNS/pipeline` (copied to src/diffusers_strdiff/checkpoints/) and `$RUNS/pipeline_no_structure`.
# Safe to rerun: each run resumes from its last checkpoint (a run already at MAX_TRAIN_STEPS only saves its models).
# Usage: scripts/train_default_checkpoint.sh [MAX_TRAIN_STEPS] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-3000}"
RUNS="${2:-runs/default}"
DATA=data/photos
[ -d "$DATA/train" ] || python scripts/prepare_photos.py --output_dir "$DATA"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON=(--train_data_dir "$DATA/train" --validation_data_dir "$DATA/eval" --num_validation_images 4
  --resolution 64 --random_flip --train_batch_size 8 --learning_rate 2e-4 --lr_scheduler constant_with_warmup
  --lr_warmup_steps 100 --max_train_steps "$STEPS" --use_ema --ema_decay 0.999 --num_train_timesteps 100
  --checkpointing_steps 250 --checkpoints_total_limit 2 --validation_steps 1000 --resume_from_checkpoint latest
  --seed 0)
UNET=(--base_channels 16 --depth 3)
launch() { accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no "$@"; }
mkdir -p "$RUNS"
launch training/train_structure.py "${COMMON[@]}" "${UNET[@]}" --output_dir "$RUNS/structure" > "$RUNS/structure.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${UNET[@]}" --output_dir "$RUNS/texture" > "$RUNS/texture.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${UNET[@]}" --no_structure_guidance \
  --output_dir "$RUNS/texture_unguided" > "$RUNS/texture_unguided.log" 2>&1 &
launch training/train_discriminator.py "${COMMON[@]}" --base_channels 16 --time_embedding_dim 64 \
  --output_dir "$RUNS/discriminator" > "$RUNS/discriminator.log" 2>&1 &
wait

# The bundled checkpoint (EMA weights of the three networks) and the no-structure ablation pipeline.
python training/assemble_pipeline.py --structure "$RUNS/structure" --texture "$RUNS/texture" \
  --discriminator "$RUNS/discriminator" --output_dir "$RUNS/pipeline"
python training/assemble_pipeline.py --texture "$RUNS/texture_unguided" --output_dir "$RUNS/pipeline_no_structure"
