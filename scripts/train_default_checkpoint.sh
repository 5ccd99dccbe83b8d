#!/usr/bin/env bash
# Trains the bundled default checkpoint (and the no-structure ablation used by the evaluation harness) on the offline
# photo set with the CPU recipe chosen by scripts/ablation_recipe.py (docs/ablation): x0 - mu prediction
# ("residual"), a classical fill of the texture mean's hole, the known mask as an input channel, multi-scale crops.
# Stages 1-2 use the Telea fill (the recipe of the first retraining); stage 3 moves both texture nets to the
# biharmonic fill, which the ablation ranked higher at equal budget, by fine-tuning them.
#
# Stage 1: the unguided texture net, BASE_STEPS steps (exactly the ablation's run of that recipe, which is reused
#          when RUN_DIR/texture_base already holds it).
# Stage 2: side by side on the 2-core CPU (one thread each), STEPS steps each: the structure net (from scratch), the
#          SPADE-guided texture net and the unguided texture net of the no-structure ablation (both warm-started from
#          stage 1, so that the comparison of the two is fair), and the discriminator.
# Stage 3: side by side, FINETUNE_STEPS steps each: the guided and the unguided texture net, warm-started from stage 2,
#          with `--mean_fill biharmonic` (structure net and discriminator are kept from stage 2). The bundled nets
#          ran 1,900 steps (1,200 in one session, resumed to 1,900 in the next).
# Stage 4: the structure process moves to the known grayscale with a biharmonic hole as its mean
#          (`--structure_mean filled_gray`): the structure net is fine-tuned from stage 2 for STRUCTURE_STEPS steps,
#          while the unguided texture net resumes from stage 3 (a copy of its run) for EXTRA_STEPS more steps.
# Stage 5: side by side, the guided texture net resumes from stage 3 (a copy of its run) for the same EXTRA_STEPS, now
#          guided by the stage-4 structure net's x_0 estimates (`--texture_guidance estimate`), and the discriminator
#          is fine-tuned from stage 2 for DISCRIMINATOR_STEPS steps on the new structure states.
# Stage 6: the texture mean moves to the average of the biharmonic and the PatchMatch fills (`--mean_fill
#          patchmatch_blend`; the structure mean keeps its biharmonic fill, `--structure_fill biharmonic`): side by
#          side, the guided texture net (from stage 5) and the unguided one (from stage 4) are fine-tuned for
#          TEXTURED_STEPS steps, then the discriminator is fine-tuned from stage 5 for DISCRIMINATOR_STEPS steps on the
#          new texture states.
# Stage 7: side by side, both texture nets are fine-tuned again from stage 6 for CONTINUED_STEPS steps (a fresh
#          optimiser and warm-up, seed 1, so new batches and masks), same means; the discriminator stays stage 6's (the
#          states it judges did not change).
# Then assembles `$RUNS/pipeline` (copied to src/diffusers_strdiff/checkpoints/) and `$RUNS/pipeline_no_structure`.
# Safe to rerun: each run resumes from its last checkpoint (a run already at its step count only saves its models).
# Usage: scripts/train_default_checkpoint.sh [STEPS] [RUN_DIR] [BASE_STEPS] [FINETUNE_STEPS] [STRUCTURE_STEPS]
#        [EXTRA_STEPS] [DISCRIMINATOR_STEPS] [TEXTURED_STEPS] [CONTINUED_STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-1600}"
RUNS="${2:-runs/default}"
BASE_STEPS="${3:-800}"
FINETUNE_STEPS="${4:-1900}"
STRUCTURE_STEPS="${5:-1000}"
EXTRA_STEPS="${6:-1000}"
DISCRIMINATOR_STEPS="${7:-300}"
TEXTURED_STEPS="${8:-1200}"
CONTINUED_STEPS="${9:-1200}"
[ -d data/photos/train ] || python scripts/prepare_photos.py --output_dir data/photos
for split in train eval; do
  python scripts/downscale_images.py "data/photos/$split" "data/photos_256/$split" --short_side 256 > /dev/null
done
DATA=data/photos_256
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RECIPE=(--prediction_type residual --mean_fill telea)
COMMON=(--train_data_dir "$DATA/train" --resolution 64 --random_flip --train_batch_size 8 --learning_rate 2e-4
  --lr_scheduler constant_with_warmup --lr_warmup_steps 100 --use_ema --ema_decay 0.999 --num_train_timesteps 100
  --resume_from_checkpoint latest --seed 0 "${RECIPE[@]}")
STAGE2=(--max_train_steps "$STEPS" --checkpointing_steps 100 --checkpoints_total_limit 2
  --validation_data_dir "$DATA/eval" --num_validation_images 4 --validation_steps 800)
UNET=(--base_channels 16 --depth 3 --known_mask_channel)
launch() { accelerate launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no "$@"; }
mkdir -p "$RUNS"

# Stage 1 (the same arguments as the ablation's `residual_telea_mask` run).
launch training/train_texture.py "${COMMON[@]}" "${UNET[@]}" --no_structure_guidance --max_train_steps "$BASE_STEPS" \
  --checkpointing_steps 200 --checkpoints_total_limit 1 --report_to none --output_dir "$RUNS/texture_base" \
  >> "$RUNS/texture_base.log" 2>&1

# Stage 2.
launch training/train_structure.py "${COMMON[@]}" "${STAGE2[@]}" "${UNET[@]}" --output_dir "$RUNS/structure" \
  >> "$RUNS/structure.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${STAGE2[@]}" "${UNET[@]}" --init_weights "$RUNS/texture_base" \
  --output_dir "$RUNS/texture" >> "$RUNS/texture.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${STAGE2[@]}" "${UNET[@]}" --init_weights "$RUNS/texture_base" \
  --no_structure_guidance --output_dir "$RUNS/texture_unguided" >> "$RUNS/texture_unguided.log" 2>&1 &
launch training/train_discriminator.py "${COMMON[@]}" "${STAGE2[@]}" --base_channels 16 --time_embedding_dim 64 \
  --output_dir "$RUNS/discriminator" >> "$RUNS/discriminator.log" 2>&1 &
wait

# Stage 3 (`--mean_fill` given last overrides the recipe's).
FINETUNE=(--max_train_steps "$FINETUNE_STEPS" --checkpointing_steps 100 --checkpoints_total_limit 2 --mean_fill biharmonic)
launch training/train_texture.py "${COMMON[@]}" "${FINETUNE[@]}" "${UNET[@]}" --init_weights "$RUNS/texture" \
  --output_dir "$RUNS/texture_biharmonic" >> "$RUNS/texture_biharmonic.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${FINETUNE[@]}" "${UNET[@]}" --init_weights "$RUNS/texture_unguided" \
  --no_structure_guidance --output_dir "$RUNS/texture_unguided_biharmonic" >> "$RUNS/texture_unguided_biharmonic.log" 2>&1 &
wait

# Stages 4-5 continue copies of the stage-3 texture runs, so that stage 3's own folders stay as they were.
continue_run() { [ -d "$RUNS/$2" ] || cp -r "$RUNS/$1" "$RUNS/$2"; }
continue_run texture_biharmonic texture_estimate
continue_run texture_unguided_biharmonic texture_unguided_final
GRAY_MEAN=(--structure_mean filled_gray --mean_fill biharmonic --checkpointing_steps 100 --checkpoints_total_limit 2)
TOTAL_STEPS=$((FINETUNE_STEPS + EXTRA_STEPS))

# Stage 4.
launch training/train_structure.py "${COMMON[@]}" "${GRAY_MEAN[@]}" "${UNET[@]}" --init_weights "$RUNS/structure" \
  --max_train_steps "$STRUCTURE_STEPS" --output_dir "$RUNS/structure_gray" >> "$RUNS/structure_gray.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${GRAY_MEAN[@]}" "${UNET[@]}" --no_structure_guidance \
  --max_train_steps "$TOTAL_STEPS" --output_dir "$RUNS/texture_unguided_final" >> "$RUNS/texture_unguided_final.log" 2>&1 &
wait

# Stage 5.
launch training/train_texture.py "${COMMON[@]}" "${GRAY_MEAN[@]}" "${UNET[@]}" --texture_guidance estimate \
  --structure_model_name_or_path "$RUNS/structure_gray" --max_train_steps "$TOTAL_STEPS" \
  --output_dir "$RUNS/texture_estimate" >> "$RUNS/texture_estimate.log" 2>&1 &
launch training/train_discriminator.py "${COMMON[@]}" "${GRAY_MEAN[@]}" --base_channels 16 --time_embedding_dim 64 \
  --init_weights "$RUNS/discriminator" --max_train_steps "$DISCRIMINATOR_STEPS" --output_dir "$RUNS/discriminator_gray" \
  >> "$RUNS/discriminator_gray.log" 2>&1 &
wait

# Stage 6 (a fresh fine-tuning of each net: `--init_weights`, new optimiser).
TEXTURED=(--structure_mean filled_gray --mean_fill patchmatch_blend --structure_fill biharmonic --checkpointing_steps 100
  --checkpoints_total_limit 2)
launch training/train_texture.py "${COMMON[@]}" "${TEXTURED[@]}" "${UNET[@]}" --texture_guidance estimate \
  --structure_model_name_or_path "$RUNS/structure_gray" --init_weights "$RUNS/texture_estimate" \
  --max_train_steps "$TEXTURED_STEPS" --output_dir "$RUNS/texture_textured" >> "$RUNS/texture_textured.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${TEXTURED[@]}" "${UNET[@]}" --no_structure_guidance \
  --init_weights "$RUNS/texture_unguided_final" --max_train_steps "$TEXTURED_STEPS" \
  --output_dir "$RUNS/texture_unguided_textured" >> "$RUNS/texture_unguided_textured.log" 2>&1 &
wait
launch training/train_discriminator.py "${COMMON[@]}" "${TEXTURED[@]}" --base_channels 16 --time_embedding_dim 64 \
  --init_weights "$RUNS/discriminator_gray" --max_train_steps "$DISCRIMINATOR_STEPS" \
  --output_dir "$RUNS/discriminator_textured" >> "$RUNS/discriminator_textured.log" 2>&1

# Stage 7 (again a fresh fine-tuning of each net; `--seed` given last overrides the common one).
launch training/train_texture.py "${COMMON[@]}" "${TEXTURED[@]}" "${UNET[@]}" --seed 1 --texture_guidance estimate \
  --structure_model_name_or_path "$RUNS/structure_gray" --init_weights "$RUNS/texture_textured" \
  --max_train_steps "$CONTINUED_STEPS" --output_dir "$RUNS/texture_continued" >> "$RUNS/texture_continued.log" 2>&1 &
launch training/train_texture.py "${COMMON[@]}" "${TEXTURED[@]}" "${UNET[@]}" --seed 1 --no_structure_guidance \
  --init_weights "$RUNS/texture_unguided_textured" --max_train_steps "$CONTINUED_STEPS" \
  --output_dir "$RUNS/texture_unguided_continued" >> "$RUNS/texture_unguided_continued.log" 2>&1 &
wait

# The bundled checkpoint (EMA weights of the three networks; posterior sampler, 2 steps by default: the cheapest
# setting within 0.3 dB of the best in the few-step sweep, docs/bench) and the no-structure ablation pipeline.
python training/assemble_pipeline.py --structure "$RUNS/structure_gray" --texture "$RUNS/texture_continued" \
  --discriminator "$RUNS/discriminator_textured" --sampler posterior --default_num_inference_steps 2 \
  --output_dir "$RUNS/pipeline"
python training/assemble_pipeline.py --texture "$RUNS/texture_unguided_continued" --sampler posterior \
  --default_num_inference_steps 2 --output_dir "$RUNS/pipeline_no_structure"
