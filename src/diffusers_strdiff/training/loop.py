# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""`train`: the diffusers-examples training loop for one StrDiffusion network."""

import argparse
import copy
import json
import logging
import math
import os
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import diffusers
import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, broadcast_object_list, set_seed
from diffusers.models.modeling_utils import ModelMixin
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..schedulers import MeanRevertingSDEScheduler
from ..utils import derived_seed
from .adversarial import CriticTask, GeneratorLoss, critic_loss
from .arguments import ArgumentValueError, build_noise_scheduler
from .checkpointing import (
    SCHEDULER_SUBFOLDER,
    TRAINING_ARGS_FILE,
    VALIDATION_SUBFOLDER,
    TrainingState,
    list_checkpoints,
    save_checkpoint,
)
from .data import (
    NOISE_STREAM,
    VALIDATION_SEED,
    VALIDATION_STREAM,
    EpochShuffleSampler,
    InpaintingDataset,
    MaskSource,
    load_training_images,
    load_validation_batch,
)
from .hub import create_hub_repo, push_folder_to_hub, tracker_config, write_model_card

logger = get_logger(__name__, log_level="INFO")


@dataclass
class ValidationResult:
    """What a validation returns: an optional image grid and scalar metrics."""

    grid: PIL.Image.Image | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingTask:
    """
    The network-specific part of a training script.

    Args:
        component_name: the network's folder in the output directory and in a pipeline (`"structure_unet"`, ...).
        build_model: builds the (fresh) network from the arguments.
        compute_loss: `(model, batch, scheduler, generator) -> loss` of one batch; every random draw must use
            `generator` (seeded per batch), so that a resumed run is identical to an uninterrupted one. With a
            `critic`, it is called with `critic=` the critic network and `adversarial=` whether the loss includes
            the adversarial term (`False` during the critic's warm-up), and returns a [`GeneratorLoss`].
        validate: `(model, batch, scheduler, generator) -> ValidationResult` on the fixed validation batch, or
            `None` for no validation.
        description: one paragraph for the model card.
        critic: an adversarial critic trained alongside the network (one critic step after each network step on
            the [`GeneratorLoss`]'s inputs), or `None`.
    """

    component_name: str
    build_model: Callable[[argparse.Namespace], ModelMixin]
    compute_loss: Callable[..., torch.Tensor | GeneratorLoss]
    validate: (
        Callable[[ModelMixin, dict[str, torch.Tensor], MeanRevertingSDEScheduler, torch.Generator], ValidationResult]
        | None
    ) = None
    description: str = ""
    critic: CriticTask | None = None


@dataclass
class TrainingResult:
    """Summary of a finished [`train`] run (on the main process)."""

    output_dir: Path
    model_dir: Path
    first_step: int
    global_step: int
    final_loss: float | None
    validation_image: Path | None
    validation_metrics: dict[str, float]


def _resolve_seed(accelerator: Accelerator, seed: int | None) -> int:
    """`seed`, or a random one drawn on the main process and shared with the others."""
    if seed is not None:
        return seed
    seeds = [random.SystemRandom().randrange(2**31)]
    broadcast_object_list(seeds)
    return int(seeds[0])


def configure_logging(accelerator: Accelerator) -> None:
    """diffusers-examples logging: INFO on the local main process, errors only elsewhere."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_info()
    else:
        datasets.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()


@dataclass
class TrainingRun:
    """Everything [`setup_run`] builds for [`train`], and the state the loop advances."""

    args: argparse.Namespace
    task: TrainingTask
    accelerator: Accelerator
    output_dir: Path
    repo_id: str | None
    state: TrainingState
    noise_scheduler: MeanRevertingSDEScheduler
    model: torch.nn.Module
    ema_model: EMAModel | None
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    dataset: InpaintingDataset
    sampler: EpochShuffleSampler
    dataloader: torch.utils.data.DataLoader
    samples_per_step: int
    steps_per_epoch: int
    max_train_steps: int
    num_epochs: int
    validation_batch: dict[str, torch.Tensor] | None = None
    global_step: int = 0
    first_step: int = 0
    train_loss: float = 0.0
    recent_losses: deque = field(default_factory=lambda: deque(maxlen=100))
    validation_image: Path | None = None
    validation_metrics: dict[str, float] = field(default_factory=dict)
    validated_step: int | None = None
    noise_generator: torch.Generator | None = None
    validation_generator: torch.Generator | None = None
    progress_bar: Any = None
    critic: torch.nn.Module | None = None
    critic_optimizer: torch.optim.Optimizer | None = None
    step_logs: dict[str, float] = field(default_factory=dict)


def train(args: argparse.Namespace, task: TrainingTask) -> TrainingResult | None:
    """
    Trains `task`'s network with the parsed `args` (see the package docstring): [`setup_run`], [`resume`], one
    [`train_epoch`] per epoch up to `--max_train_steps`, then [`finalize`]. Returns the [`TrainingResult`] on the main
    process, `None` on the others.
    """
    run = setup_run(args, task)
    resume(run)
    _log_start(run)
    run.progress_bar = tqdm(
        total=run.max_train_steps,
        initial=run.global_step,
        desc="Steps",
        disable=not run.accelerator.is_local_main_process,
    )
    first_epoch = run.global_step // run.steps_per_epoch
    skipped_batches = run.global_step % run.steps_per_epoch * args.gradient_accumulation_steps
    for epoch in range(first_epoch, run.num_epochs):
        if run.global_step >= run.max_train_steps:
            break
        train_epoch(run, epoch, skipped_batches if epoch == first_epoch else 0)
    run.progress_bar.close()
    return finalize(run)


def setup_run(args: argparse.Namespace, task: TrainingTask) -> TrainingRun:
    """The accelerator, seed, model (and EMA), optimiser, data and LR schedule of a run, prepared by accelerate."""
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / args.logging_dir)
        ),
    )
    configure_logging(accelerator)
    repo_id = None
    if accelerator.is_main_process:
        if args.push_to_hub:
            repo_id = create_hub_repo(args)  # fails fast, before any training
        output_dir.mkdir(parents=True, exist_ok=True)

    state = TrainingState(_resolve_seed(accelerator, args.seed))
    set_seed(state.seed)
    noise_scheduler = build_noise_scheduler(args)
    model = task.build_model(args)
    ema_model = (
        EMAModel(model.parameters(), decay=args.ema_decay, model_cls=type(model), model_config=model.config)
        if args.use_ema
        else None
    )
    critic = None if task.critic is None else task.critic.build_model(args)
    _register_checkpoint_hooks(accelerator, task, model, ema_model, state, critic)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    critic_optimizer = None
    if critic is not None:
        critic_optimizer = torch.optim.Adam(critic.parameters(), lr=task.critic.learning_rate, betas=(0.5, 0.99))
        critic, critic_optimizer = accelerator.prepare(critic, critic_optimizer)
    masks, dataset, sampler, dataloader, samples_per_step = _build_data(args, accelerator, state.seed)

    steps_per_epoch = math.ceil(len(dataset) // samples_per_step / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, dataloader, lr_scheduler = accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
    if ema_model is not None:
        ema_model.to(accelerator.device)
    run = TrainingRun(
        args, task, accelerator, output_dir, repo_id, state, noise_scheduler, model, ema_model, optimizer,
        lr_scheduler, dataset, sampler, dataloader, samples_per_step, steps_per_epoch, max_train_steps,
        num_epochs=math.ceil(max_train_steps / steps_per_epoch),
        noise_generator=torch.Generator(device=accelerator.device),
        validation_generator=torch.Generator(device=accelerator.device),
        critic=critic, critic_optimizer=critic_optimizer,
    )  # fmt: skip
    if accelerator.is_main_process:
        if task.validate is not None and args.validation_data_dir is None:
            logger.info("No --validation_data_dir: validation is skipped.")
        elif task.validate is not None:
            batch = load_validation_batch(args, masks)
            run.validation_batch = {name: tensor.to(accelerator.device) for name, tensor in batch.items()}
        accelerator.init_trackers(f"strdiffusion-{task.component_name}", config=tracker_config(args))
    return run


def _register_checkpoint_hooks(
    accelerator: Accelerator,
    task: TrainingTask,
    model: ModelMixin,
    ema_model: EMAModel | None,
    state: TrainingState,
    critic: ModelMixin | None = None,
) -> None:
    """
    Checkpoints hold the network (and its EMA) and the critic, if any, in the diffusers format, and the run's seed
    and step.
    """
    model_cls = type(model)
    ema_subfolder = f"{task.component_name}_ema"
    subfolders = {id(model): task.component_name}
    if critic is not None:
        subfolders[id(critic)] = task.critic.component_name

    def save_model_hook(models: list[torch.nn.Module], weights: list[dict[str, Any]], checkpoint_dir: str) -> None:
        if accelerator.is_main_process:
            if ema_model is not None:
                save_ema_network(
                    ema_model, accelerator.unwrap_model(model), os.path.join(checkpoint_dir, ema_subfolder)
                )
            for saved_model in models:
                unwrapped = accelerator.unwrap_model(saved_model)
                unwrapped.save_pretrained(os.path.join(checkpoint_dir, subfolders[id(unwrapped)]))
                weights.pop()  # saved above, in the diffusers format

    def load_model_hook(models: list[torch.nn.Module], checkpoint_dir: str) -> None:
        if ema_model is not None:
            loaded_ema = EMAModel.from_pretrained(os.path.join(checkpoint_dir, ema_subfolder), model_cls)
            ema_model.load_state_dict(loaded_ema.state_dict())
            ema_model.to(accelerator.device)
            del loaded_ema
        for _ in range(len(models)):
            loaded_model = accelerator.unwrap_model(models.pop())
            saved = type(loaded_model).from_pretrained(checkpoint_dir, subfolder=subfolders[id(loaded_model)])
            loaded_model.register_to_config(**saved.config)
            loaded_model.load_state_dict(saved.state_dict())
            del saved

    accelerator.register_save_state_pre_hook(save_model_hook)
    accelerator.register_load_state_pre_hook(load_model_hook)
    accelerator.register_for_checkpointing(state)


def _build_data(
    args: argparse.Namespace, accelerator: Accelerator, seed: int
) -> tuple[MaskSource, InpaintingDataset, EpochShuffleSampler, torch.utils.data.DataLoader, int]:
    """The masks, the training set, its seeded sampler, the dataloader and the samples per optimisation step."""
    with accelerator.main_process_first():
        images, image_column = load_training_images(args)
    masks = MaskSource(args.resolution, args.mask_buckets, args.mask_dir)
    dataset = InpaintingDataset(
        images,
        image_column,
        masks,
        args.resolution,
        seed=seed,
        crop=args.crop,
        resize=args.resize,
        random_flip=args.random_flip,
        canny_sigma=args.canny_sigma,
        max_crop_scale=args.max_crop_scale,
    )
    samples_per_step = args.train_batch_size * accelerator.num_processes
    if len(dataset) < samples_per_step:
        raise ArgumentValueError(
            f"The training set has {len(dataset)} image(s), fewer than one batch "
            f"(--train_batch_size {args.train_batch_size} x {accelerator.num_processes} process(es))."
        )
    sampler = EpochShuffleSampler(len(dataset), seed=seed)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        sampler=sampler,
        num_workers=args.dataloader_num_workers,
        drop_last=True,
    )
    return masks, dataset, sampler, dataloader, samples_per_step


def resume(run: TrainingRun) -> None:
    """Loads `--resume_from_checkpoint` (a folder, or the newest of `--output_dir` for `"latest"`), if any."""
    args = run.args
    if not args.resume_from_checkpoint:
        return
    if args.resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(run.output_dir)
        checkpoint = checkpoints[-1] if checkpoints else None
    else:
        checkpoint = Path(args.resume_from_checkpoint)
    if checkpoint is None:
        logger.info(f"No checkpoint in {run.output_dir}: starting a new training run.")
        return
    run.accelerator.load_state(str(checkpoint))
    run.global_step = run.first_step = run.state.global_step
    run.dataset.seed = run.sampler.seed = run.state.seed
    logger.info(f"Resumed from {checkpoint} at global step {run.global_step} (seed {run.state.seed}).")


def _log_start(run: TrainingRun) -> None:
    args = run.args
    total_batch_size = run.samples_per_step * args.gradient_accumulation_steps
    logger.info("***** Running training *****")
    logger.info(
        f"  Component = {run.task.component_name} ({sum(p.numel() for p in run.model.parameters()):,} parameters)"
    )
    logger.info(f"  Num examples = {len(run.dataset)}")
    logger.info(f"  Num epochs = {run.num_epochs}")
    logger.info(f"  Instantaneous batch size per device = {args.train_batch_size}")
    logger.info(f"  Total train batch size (w. parallel, distributed & accumulation) = {total_batch_size}")
    logger.info(f"  Gradient accumulation steps = {args.gradient_accumulation_steps}")
    logger.info(f"  Total optimization steps = {run.max_train_steps}")


def train_epoch(run: TrainingRun, epoch: int, first_batch: int) -> None:
    """
    One epoch from batch `first_batch` on (a resumed run skips the batches it has seen), stopping at
    `max_train_steps`. Each batch's noise comes from a generator seeded with (seed, process, epoch, batch).
    """
    args, accelerator, model = run.args, run.accelerator, run.model
    model.train()
    run.dataloader.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    run.sampler.set_start(first_batch * run.samples_per_step)
    models = (model,) if run.critic is None else (model, run.critic)
    for batch_index, batch in enumerate(run.dataloader, start=first_batch):
        with accelerator.accumulate(*models):
            run.noise_generator.manual_seed(
                derived_seed(run.state.seed, NOISE_STREAM, accelerator.process_index, epoch, batch_index)
            )
            if run.critic is None:
                loss = run.task.compute_loss(model, batch, run.noise_scheduler, run.noise_generator)
            else:
                generator_loss = run.task.compute_loss(
                    model,
                    batch,
                    run.noise_scheduler,
                    run.noise_generator,
                    critic=run.critic,
                    adversarial=run.global_step >= run.task.critic.warmup_steps,
                )
                loss = generator_loss.loss
            gathered = accelerator.gather(loss.detach().repeat(args.train_batch_size)).mean()
            run.train_loss += gathered.item() / args.gradient_accumulation_steps
            accelerator.backward(loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            run.optimizer.step()
            run.lr_scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
            if run.critic is not None:
                _critic_step(run, generator_loss)
        if accelerator.sync_gradients:
            _end_optimization_step(run)
        if run.global_step >= run.max_train_steps:
            break


def _critic_step(run: TrainingRun, generator_loss: GeneratorLoss) -> None:
    """One step of the critic on the batch's real and (detached) generated images; its loss joins the step's logs."""
    accelerator = run.accelerator
    run.critic_optimizer.zero_grad(set_to_none=True)  # drops what the generator's backward left in the critic
    loss = critic_loss(run.critic, generator_loss.critic_inputs)
    accelerator.backward(loss)
    run.critic_optimizer.step()
    run.critic_optimizer.zero_grad(set_to_none=True)
    scale = 1 / run.args.gradient_accumulation_steps
    for name, value in {"critic_loss": accelerator.gather(loss.detach()).mean().item(), **generator_loss.logs}.items():
        run.step_logs[name] = run.step_logs.get(name, 0.0) + value * scale


def _end_optimization_step(run: TrainingRun) -> None:
    """After an optimisation step: EMA, step count, logs, then the periodic checkpoint and validation."""
    args, accelerator = run.args, run.accelerator
    if run.ema_model is not None:
        run.ema_model.step(run.model.parameters())
    run.progress_bar.update(1)
    run.global_step += 1
    run.state.global_step = run.global_step
    run.recent_losses.append(run.train_loss)
    logs = {"train_loss": run.train_loss, "lr": run.lr_scheduler.get_last_lr()[0], **run.step_logs}
    if run.ema_model is not None:
        logs["ema_decay"] = run.ema_model.cur_decay_value
    accelerator.log(logs, step=run.global_step)
    postfix = {"loss": f"{run.train_loss:.4f}", "lr": f"{logs['lr']:.2e}"}
    if "critic_loss" in run.step_logs:
        postfix["critic"] = f"{run.step_logs['critic_loss']:.3f}"
    run.progress_bar.set_postfix(postfix)
    run.train_loss = 0.0
    run.step_logs = {}
    if accelerator.is_main_process:
        if run.global_step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, run.output_dir, run.global_step, args.checkpoints_total_limit)
        if run.validation_batch is not None and run.global_step % args.validation_steps == 0:
            run_validation(run)


def run_validation(run: TrainingRun) -> None:
    """Validates the (EMA) network on the fixed batch with fixed noise; writes the grid and metrics, logs them."""
    accelerator, global_step = run.accelerator, run.global_step
    unwrapped = accelerator.unwrap_model(run.model)
    if run.ema_model is not None:
        run.ema_model.store(unwrapped.parameters())
        run.ema_model.copy_to(unwrapped.parameters())
    unwrapped.eval()
    run.validation_generator.manual_seed(derived_seed(VALIDATION_SEED, VALIDATION_STREAM))
    with torch.no_grad():
        result = run.task.validate(unwrapped, run.validation_batch, run.noise_scheduler, run.validation_generator)
    unwrapped.train()
    if run.ema_model is not None:
        run.ema_model.restore(unwrapped.parameters())
    run.validation_metrics, run.validated_step = result.metrics, global_step
    report = run.output_dir / VALIDATION_SUBFOLDER / f"step_{global_step:06d}"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.with_suffix(".json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    if result.grid is not None:
        run.validation_image = report.with_suffix(".png")
        result.grid.save(run.validation_image)
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image("validation", np.asarray(result.grid), global_step, dataformats="HWC")
    accelerator.log({f"validation/{name}": value for name, value in result.metrics.items()}, step=global_step)
    summary = ", ".join(f"{name} {value:.4g}" for name, value in result.metrics.items())
    logger.info(f"Validation at step {global_step}: {summary}")


def save_ema_network(ema_model: EMAModel, model: ModelMixin, path: str) -> None:
    """
    Saves the EMA weights as `EMAModel.save_pretrained` does (the averaged parameters, and the EMA's own state in the
    config, which `EMAModel.from_pretrained` reads when a run resumes), but inside a copy of the trained `model`, so
    that the folder is a usable network: `EMAModel.save_pretrained` writes a freshly initialised model whose buffers
    (the SPADE convolutions' spectral-norm vectors `_u` / `_v`) are random, and a network loaded from it normalises
    its weights by wrong singular values (a checkpoint's EMA texture net scored 12-22 dB where the network scored
    22-38 dB). The final save (`finalize`) copies the EMA into the trained model the same way.
    """
    network = copy.deepcopy(model)
    ema_model.copy_to(network.parameters())
    state = ema_model.state_dict()
    state.pop("shadow_params", None)
    network.register_to_config(**state)
    network.save_pretrained(path)


def finalize(run: TrainingRun) -> TrainingResult | None:
    """
    Saves the final (EMA) network and the scheduler, validates the last step, writes the model card and the
    arguments, uploads to the Hub when asked; returns the [`TrainingResult`] on the main process.
    """
    accelerator, output_dir, component = run.accelerator, run.output_dir, run.task.component_name
    accelerator.wait_for_everyone()
    result = None
    if accelerator.is_main_process:
        final_model = accelerator.unwrap_model(run.model)
        if run.ema_model is not None:
            run.ema_model.copy_to(final_model.parameters())
        model_dir = output_dir / component
        final_model.save_pretrained(model_dir, safe_serialization=True)
        if run.critic is not None:
            critic_dir = output_dir / run.task.critic.component_name
            accelerator.unwrap_model(run.critic).save_pretrained(critic_dir, safe_serialization=True)
        run.noise_scheduler.save_pretrained(output_dir / SCHEDULER_SUBFOLDER)
        if run.validation_batch is not None and run.validated_step != run.global_step:
            run_validation(run)
        final_loss = float(np.mean(run.recent_losses)) if run.recent_losses else None
        results: dict[str, Any] = {"optimization steps": run.global_step}
        if final_loss is not None:
            results[f"final training loss (mean of the last {len(run.recent_losses)} steps)"] = final_loss
        results.update({f"validation {name}": value for name, value in run.validation_metrics.items()})
        model_cls = type(final_model)
        write_model_card(
            output_dir,
            title=f"StrDiffusion {component}",
            description=run.task.description,
            usage=(
                f"from {'.'.join(model_cls.__module__.split('.')[:2])} import {model_cls.__name__}\n\n"
                f'model = {model_cls.__name__}.from_pretrained("{run.repo_id or output_dir}", '
                f'subfolder="{component}")'
            ),
            args=run.args,
            results=results,
            validation_image=run.validation_image,
        )
        (output_dir / TRAINING_ARGS_FILE).write_text(json.dumps(tracker_config(run.args), indent=2) + "\n")
        logger.info(f"Saved {component} to {model_dir}")
        if run.repo_id is not None:
            push_folder_to_hub(run.args, run.repo_id, output_dir)
        result = TrainingResult(
            output_dir=output_dir,
            model_dir=model_dir,
            first_step=run.first_step,
            global_step=run.global_step,
            final_loss=final_loss,
            validation_image=run.validation_image,
            validation_metrics=run.validation_metrics,
        )
    accelerator.end_training()
    return result
