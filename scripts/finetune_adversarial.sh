#!/usr/bin/env bash
# The adversarial experiment of docs/ablation/adversarial: fine-tunes the bundled recipe's estimate-guided texture net
# (stage 5 of scripts/train_default_checkpoint.sh, in RUN_DIR) with the hole-masked PatchGAN critic of
# `train_texture.py --adversarial_weight`, then assembles a pipeline with the stage-4 structure net and the stage-5
# discriminator. Resumable: rerun the same command (or with more STEPS) to continue from the last checkpoint.
# Usage: scripts/finetune_adversarial.sh [WEIGHT] [STEPS] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WEIGHT="${1:-0.1}"
STEPS="${2:-600}"
RUNS="${3:-runs/default}"
OUT="$RUNS/texture_adversarial_${WEIGHT/./}"
DATA=data/photos_256
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  training/train_texture.py --train_data_dir "$DATA/train" --resolution 64 --random_flip --train_batch_size 8 \
  --learning_rate 2e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 100 --use_ema --ema_decay 0.999 \
  --num_train_timesteps 100 --resume_from_checkpoint latest --seed 0 --prediction_type residual \
  --mean_fill biharmonic --structure_mean filled_gray --base_channels 16 --depth 3 --known_mask_channel \
  --texture_guidance estimate --structure_model_name_or_path "$RUNS/structure_gray" \
  --init_weights "$RUNS/texture_estimate" --adversarial_weight "$WEIGHT" --critic_warmup_steps 100 \
  --max_train_steps "$STEPS" --checkpointing_steps 100 --checkpoints_total_limit 2 \
  --validation_data_dir "$DATA/eval" --num_validation_images 4 --validation_steps 200 --output_dir "$OUT" \
  >> "$OUT.log" 2>&1
python training/assemble_pipeline.py --structure "$RUNS/structure_gray" --texture "$OUT" \
  --discriminator "$RUNS/discriminator_gray" --sampler posterior --default_num_inference_steps 2 \
  --output_dir "$OUT-pipeline"
