# Copyright 2026 The diffusers-strdiff team. Licensed under the Apache License, Version 2.0.
"""Mean-reverting SDE (IR-SDE) scheduler used by StrDiffusion.

The forward process is an Ornstein-Uhlenbeck SDE that drifts a clean sample x_0 towards a mean ``mu`` (the degraded
image) while adding noise:

    dx = theta_t (mu - x) dt + sigma_t dw,        sigma_t^2 / theta_t = 2 lambda^2,

where lambda is ``max_sigma``. Its marginal is Gaussian (paper Eq.3):

    x_t = mu + (x_0 - mu) exp(-bar_theta_t) + sigma_bar_t z,   sigma_bar_t^2 = lambda^2 (1 - exp(-2 bar_theta_t)),

with ``bar_theta_t = thetas_cumsum[t] * dt``. The released networks predict the noise ``eps_hat``; the score is
``-eps_hat / sigma_bar_t`` and the released sampler integrates the reverse SDE with Euler-Maruyama.

Prediction types (``prediction_type``). Write ``B_t = e^{-bar_theta_t}``. The three parametrisations are linked by
the marginal ``x_t - mu = B_t (x_0 - mu) + sigma_bar_t eps``:

- ``"epsilon"`` (released): the network gives ``eps_hat``; ``x0_hat = mu + (x_t - mu - sigma_bar_t eps_hat) / B_t``.
  The division by ``B_t`` (down to ``eps`` = 0.005 at t = T) multiplies the network's error by up to 200 at large t,
  where the fill of the hole is decided.
- ``"sample"``: the network gives ``x0_hat`` directly.
- ``"residual"``: the network gives ``x0_hat - mu`` (the residual that the process decays), i.e.
  ``x0_hat = mu + output``. It equals ``"sample"`` up to a skip connection from the mean: where the mean's hole holds a
  coarse classical fill, an untrained network already starts from that fill.

For the x_0 types the noise is ``eps_hat = (x_t - mu - B_t (x0_hat - mu)) / sigma_bar_t``, which divides by
``sigma_bar_t`` (0 at t = 0, so t = 0 is never a step): at small t the x_0 error is amplified there instead, which is
harmless because the states of small t carry the x_0 estimate almost unchanged. Every sampler works with every type:
the Euler-Maruyama step uses ``eps_hat``, the posterior jumps use ``x0_hat``.

Exact jumps (``algorithm_type="posterior"``). For integer times s < t write ``y = x - mu``,
``A = e^{-(bar_theta_t - bar_theta_s)}``, ``C = e^{-bar_theta_s}`` and ``B = A C = e^{-bar_theta_t}``. The process is
Gaussian, ``y_s | y_0 ~ N(C y_0, lambda^2 (1 - C^2))`` and ``y_t | y_s ~ N(A y_s, lambda^2 (1 - A^2))``; Bayes' rule
(the precisions add up to ``(1 - B^2) / (lambda^2 (1 - A^2)(1 - C^2))``) gives the bridge

    q(x_s | x_t, x_0) = N( mu + A (1 - C^2)/(1 - B^2) (x_t - mu) + C (1 - A^2)/(1 - B^2) (x_0 - mu),
                           lambda^2 (1 - A^2)(1 - C^2)/(1 - B^2) ).

For s = t - 1, ``A = e^{-theta_t dt}`` and the mean is the paper's Eq.4 optimum; for s = 0 (C = 1, A = B) it is x_0
with variance 0. The sampler plugs in ``x0_hat = mu + (x_t - mu - sigma_bar_t eps_hat) / B`` and, like DDIM, keeps the
marginal variance for any ``eta`` in [0, 1] by re-using the implied noise ``eps_hat``:

    x_s = mu + C (x0_hat - mu) + sqrt(sigma_bar_s^2 - std^2) eps_hat + std z,   std^2 = eta^2 * posterior variance.

Since ``eps_hat = (y_t - B (x0_hat - mu)) / sigma_bar_t`` this is ``x_s = mu + c (x_t - mu) + (C - B c)(x0_hat - mu)
+ std z`` with ``c = sqrt((1 - C^2) [(1 - eta^2)(1 - B^2) + eta^2 A^2 (1 - C^2)]) / (1 - B^2)``. With exact x0_hat
and eps_hat, x_s has the forward marginal ``N(mu + C (x_0 - mu), sigma_bar_s^2)`` for every eta. eta = 1 gives
``c = A (1 - C^2)/(1 - B^2)`` and ``C - B c = C (1 - A^2)/(1 - B^2)``: exactly the bridge above (Eq.4 for s = t - 1);
eta = 0 gives the deterministic path ``c = sigma_bar_s / sigma_bar_t``.

Relation to exponential integrators: ``(x - mu) / lambda`` is a variance-preserving diffusion with
``alpha_t = B_t = e^{-bar_theta_t}`` and ``sigma_t = sqrt(1 - alpha_t^2) = sigma_bar_t / lambda``; with its log-SNR
``l_t = log(alpha_t / sigma_t)`` and ``h = l_s - l_t`` the eta = 0 jump has ``c = sigma_s / sigma_t`` and
``C - B c = alpha_s (1 - e^{-h})`` (DDIM = DPM-Solver++(1), the exact solution of the probability-flow ODE for a
constant x_0 prediction), and the eta = 1 jump ``c = (sigma_s / sigma_t) e^{-h}``, ``C - B c = alpha_s (1 - e^{-2h})``
(SDE-DPM-Solver++(1)), the first-order data-prediction solvers that MR Sampler (Li et al., ICLR 2025) derives for
mean-reverting SDEs. A second-order multistep variant (x_0 estimate extrapolated linearly in l from the previous step,
DPM-Solver++(2M) / SDE-DPM-Solver++(2M)) was benchmarked with `benchmarks/bench_sampler.py` and not kept: it was
never better than first order with the trained networks, whose x_0 error dominates the discretisation error.
"""

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

TimestepLike = int | torch.Tensor
ALGORITHM_TYPES = ("euler_maruyama", "posterior")
PREDICTION_TYPES = ("epsilon", "sample", "residual")
#: Named samplers as scheduler config overrides, for `MeanRevertingSDEScheduler.from_config(config, **preset)`:
#: the released Euler-Maruyama sampler (every step of T), the few-step posterior sampler (stochastic, eta = 1) and its
#: deterministic mean path (eta = 0).
SAMPLER_PRESETS: dict[str, dict[str, str | float]] = {
    "released": {"algorithm_type": "euler_maruyama"},
    "posterior": {"algorithm_type": "posterior", "eta": 1.0},
    "posterior_ode": {"algorithm_type": "posterior", "eta": 0.0},
}


@dataclass
class MeanRevertingSDESchedulerOutput(BaseOutput):
    """
    Output of [`MeanRevertingSDEScheduler.step`].

    Args:
        prev_sample (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`):
            The sample at the previous time step of the schedule (x_{t-1} for the released sampler).
        pred_original_sample (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`):
            The clean sample x_0 implied by the noise prediction, `mu + (x_t - mu - sigma_bar_t eps_hat) /
            e^{-bar_theta_t}` (clipped to [0, 1] by the posterior samplers with `clip_sample`).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class MeanRevertingSDEScheduler(SchedulerMixin, ConfigMixin):
    """
    The mean-reverting SDE of IR-SDE (Luo et al., 2023) as used by StrDiffusion (Liu et al., CVPR 2024).

    All tables are computed in float32 exactly as the released implementation does and have `num_train_timesteps + 1`
    entries, indexed by the integer time t = 0..T (index 0 is the clean state and is never a sampling step).

    Two reverse samplers are available through `algorithm_type`:

    - `"euler_maruyama"` (default, the released sampler): one Euler-Maruyama step of the reverse SDE from t to t-1,

          x_{t-1} = x_t - [theta_t (mu - x_t) - (1 + eta^2)/2 sigma_t^2 score] dt + eta sigma_t sqrt(dt) z,

      with `eta = 1` the reverse SDE and `eta = 0` its probability-flow ODE. It requires every integer step.
    - `"posterior"`: an exact jump t -> s of any length through the Gaussian bridge of the process (see
      [`~MeanRevertingSDEScheduler.posterior_mean_and_variance`]), with x_0 estimated from the noise prediction. `eta`
      moves from the stochastic posterior (`eta = 1`) to its deterministic mean path (`eta = 0`), like DDIM.
    See the module docstring for the derivations.

    Args:
        num_train_timesteps (`int`, defaults to 100):
            The number of diffusion steps T the networks were trained with.
        max_sigma (`float`, defaults to 30/255):
            The stationary noise level lambda in image units ([0, 1] images). Values >= 1 are read as 8-bit units and
            divided by 255, as the released configuration files do (`max_sigma: 30`).
        schedule (`str`, defaults to `"cosine"`):
            The theta schedule: `"cosine"`, `"linear"` or `"constant"`.
        eps (`float`, defaults to 0.005):
            The mean-reversion residual at t = T: `dt` is chosen so that `exp(-thetas_cumsum[T] * dt) == eps`.
        timestep_spacing (`str`, defaults to `"linspace"`):
            How [`~MeanRevertingSDEScheduler.set_timesteps`] picks a sub-sequence of the training times when
            `num_inference_steps < num_train_timesteps`: `"linspace"`, `"leading"` or `"trailing"`, as in diffusers.
        algorithm_type (`str`, defaults to `"euler_maruyama"`):
            `"euler_maruyama"` (the released sampler) or `"posterior"` (exact jumps, any number of steps).
        eta (`float`, defaults to 1.0):
            Stochasticity in [0, 1]: 1 is the SDE / stochastic posterior, 0 the ODE / deterministic mean path.
        prediction_type (`str`, defaults to `"epsilon"`):
            What the network predicts: `"epsilon"` (the noise, the released networks), `"sample"` (x_0) or
            `"residual"` (x_0 - mu). See the module docstring for the conversions and their limits.
        clip_sample (`bool`, defaults to `True`):
            Posterior samplers (and the Euler-Maruyama sampler with an x_0 prediction type): clip the x_0 estimate to the data range [0, 1] (images, grayscale structure)
            before the jump, as diffusers' DDIM does. `x0_hat = mu + (...) / e^{-bar_theta_t}` amplifies the
            network's error by up to 1 / eps = 200 near t = T, and a few long jumps carry a large share of it into
            the state; the clipped estimate is also the returned `pred_original_sample`. The Euler-Maruyama sampler
            does not use x0_hat and is unaffected.
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 100,
        max_sigma: float = 30 / 255,
        schedule: str = "cosine",
        eps: float = 0.005,
        timestep_spacing: str = "linspace",
        algorithm_type: str = "euler_maruyama",
        eta: float = 1.0,
        clip_sample: bool = True,
        prediction_type: str = "epsilon",
    ) -> None:
        if num_train_timesteps < 1:
            raise ValueError(f"`num_train_timesteps` must be >= 1, got {num_train_timesteps}.")
        if max_sigma <= 0:
            raise ValueError(f"`max_sigma` must be > 0, got {max_sigma}.")
        if not 0 < eps < 1:
            raise ValueError(f"`eps` must be in (0, 1), got {eps}.")
        if timestep_spacing not in ("linspace", "leading", "trailing"):
            raise ValueError(
                f"`timestep_spacing` must be 'linspace', 'leading' or 'trailing', got {timestep_spacing!r}."
            )
        if algorithm_type not in ALGORITHM_TYPES:
            raise ValueError(f"`algorithm_type` must be one of {ALGORITHM_TYPES}, got {algorithm_type!r}.")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"`eta` must be in [0, 1], got {eta}.")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")

        # lambda in image units; the released yml files give it in 8-bit units.
        self.max_sigma = max_sigma / 255 if max_sigma >= 1 else max_sigma
        self.thetas = self._theta_schedule(schedule, num_train_timesteps)
        self.sigmas = torch.sqrt(self.max_sigma**2 * 2 * self.thetas)
        # bar_theta_t / dt: inclusive cumulative sum minus the first entry, so that thetas_cumsum[0] == 0.
        self.thetas_cumsum = torch.cumsum(self.thetas, dim=0) - self.thetas[0]
        self.dt = -1 / self.thetas_cumsum[-1] * math.log(eps)
        self.sigma_bars = torch.sqrt(self.max_sigma**2 * (1 - torch.exp(-2 * self.thetas_cumsum * self.dt)))
        # float64 bar_theta_t for the jump coefficients: 1 - e^{-2 bar_theta} cancels badly in float32 near t = 0.
        self.bar_thetas = self.thetas_cumsum.double() * self.dt.double()

        self.init_noise_sigma = self.max_sigma
        self.num_inference_steps: int | None = None
        self.set_timesteps()

    @staticmethod
    def _theta_schedule(schedule: str, num_train_timesteps: int) -> torch.Tensor:
        if schedule == "cosine":
            # Cosine schedule evaluated on T + 2 intervals; theta_t = 1 - abar_t (not the DDPM beta ratio).
            num_intervals = num_train_timesteps + 2
            grid = torch.linspace(0, num_intervals, num_intervals + 1, dtype=torch.float32)
            offset = 0.008
            alphas_cumprod = torch.cos(((grid / num_intervals) + offset) / (1 + offset) * math.pi * 0.5) ** 2
            alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
            return 1 - alphas_cumprod[1:-1]
        if schedule == "linear":
            scale = 1000 / (num_train_timesteps + 1)
            return torch.linspace(scale * 1e-4, scale * 0.02, num_train_timesteps + 1, dtype=torch.float32)
        if schedule == "constant":
            return torch.ones(num_train_timesteps + 1, dtype=torch.float32)
        raise ValueError(f"`schedule` must be 'cosine', 'linear' or 'constant', got {schedule!r}.")

    # ------------------------------------------------------------------ timesteps

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None) -> None:
        """
        Sets the discrete time steps used by the reverse process, in decreasing order.

        Args:
            num_inference_steps (`int`, *optional*):
                Number of reverse steps N. `None` (default) or T uses every integer step T, T-1, ..., 1. Fewer steps
                pick a strictly decreasing sub-sequence of 1..T following `timestep_spacing` (starting at T for
                `"linspace"` and `"trailing"`) and need `algorithm_type="posterior"`.
            device (`str` or `torch.device`, *optional*):
                The device the `timesteps` tensor is moved to.
        """
        num_train_timesteps = self.config.num_train_timesteps
        if num_inference_steps is None:
            num_inference_steps = num_train_timesteps
        if not 1 <= num_inference_steps <= num_train_timesteps:
            raise ValueError(
                f"`num_inference_steps` must be in [1, {num_train_timesteps}] (the scheduler's `num_train_timesteps`), "
                f"got {num_inference_steps}."
            )
        if num_inference_steps < num_train_timesteps and self.config.algorithm_type == "euler_maruyama":
            raise ValueError(
                f"`num_inference_steps={num_inference_steps}` < T={num_train_timesteps} needs exact jumps: build the "
                "scheduler with `algorithm_type='posterior'` (the Euler-Maruyama sampler takes every step)."
            )

        spacing = self.config.timestep_spacing
        if spacing == "linspace":
            timesteps = torch.linspace(num_train_timesteps, 1, num_inference_steps, dtype=torch.float64).round()
        elif spacing == "leading":
            step_ratio = num_train_timesteps // num_inference_steps
            timesteps = torch.arange(num_inference_steps, dtype=torch.float64).flip(0) * step_ratio + 1
        else:  # trailing: T, T - T/N, ..., T/N (an index, not a float `arange`, which can overshoot to 0)
            step_ratio = num_train_timesteps / num_inference_steps
            timesteps = (
                num_train_timesteps - torch.arange(num_inference_steps, dtype=torch.float64) * step_ratio
            ).round()
        timesteps = timesteps.to(torch.int64)

        # prev_timesteps[t] is the time the step from t lands on (0 after the last step).
        prev_timesteps = torch.zeros(num_train_timesteps + 1, dtype=torch.int64)
        prev_timesteps[timesteps] = torch.cat([timesteps[1:], timesteps.new_zeros(1)])
        self.prev_timesteps = prev_timesteps
        self.num_inference_steps = num_inference_steps
        self.timesteps = timesteps.to(device)

    def scale_model_input(self, sample: torch.Tensor, timestep: TimestepLike | None = None) -> torch.Tensor:
        """Returns `sample` unchanged: the networks take the SDE state as is (diffusers' scheduler interface)."""
        return sample

    def _check_schedule_timestep(self, timestep: TimestepLike) -> None:
        """Raises a `ValueError` unless every entry of `timestep` is a time of the current schedule."""
        values = timestep.detach().cpu().reshape(-1).tolist() if isinstance(timestep, torch.Tensor) else [timestep]
        scheduled = set(self.timesteps.tolist())
        outside = sorted({int(value) for value in values if int(value) not in scheduled})
        if outside:
            raise ValueError(
                f"`timestep` {outside} is not a step of the current schedule: expected one of `scheduler.timesteps` "
                f"({self.num_inference_steps} steps between {int(self.timesteps.min())} and "
                f"{int(self.timesteps.max())}; t = 0 is the clean state and never a step)."
            )

    def previous_timestep(self, timestep: TimestepLike) -> TimestepLike:
        """The time the step from `timestep` lands on in the current schedule (0 after the last step)."""
        if isinstance(timestep, torch.Tensor):
            return self.prev_timesteps[timestep.cpu().long()].to(timestep.device)
        return int(self.prev_timesteps[int(timestep)])

    # ------------------------------------------------------------------ table look-ups

    def _table(
        self, table: torch.Tensor, timestep: TimestepLike, like: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """
        `table[timestep]` broadcastable against `like` of shape (B, ...): a scalar or a (B, 1, ..., 1) tensor, on
        `like`'s device, in `dtype` (default: `like`'s dtype).
        """
        if isinstance(timestep, torch.Tensor):
            index = timestep.detach().cpu().long()
            if index.ndim > 1:
                raise ValueError(
                    f"`timestep` must be an int, a 0-d or a 1-d tensor, got shape {tuple(timestep.shape)}."
                )
            if index.ndim == 1 and index.numel() not in (1, like.shape[0]):
                raise ValueError(
                    f"`timestep` has {index.numel()} entries but the sample has batch size {like.shape[0]}."
                )
        else:
            index = torch.tensor(int(timestep))
        if (index < 0).any() or (index > self.config.num_train_timesteps).any():
            raise ValueError(f"`timestep` must be in [0, {self.config.num_train_timesteps}], got {timestep}.")
        values = table[index].to(device=like.device, dtype=like.dtype if dtype is None else dtype)
        return values.reshape(-1, *([1] * (like.ndim - 1))) if values.ndim == 1 else values

    def mean_reversion_factor(self, timestep: TimestepLike, like: torch.Tensor) -> torch.Tensor:
        """`exp(-bar_theta_t)`: how much of `x_0 - mu` is left at time t (1 at t = 0, `eps` at t = T)."""
        return torch.exp(-self._table(self.thetas_cumsum, timestep, like) * self.dt)

    # ------------------------------------------------------------------ forward process

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        timesteps: TimestepLike,
        mu: torch.Tensor,
    ) -> torch.Tensor:
        """
        Samples the forward marginal `x_t = mu + (x_0 - mu) e^{-bar_theta_t} + sigma_bar_t z` (paper Eq.3).

        Args:
            original_samples (`torch.Tensor` of shape `(B, C, H, W)`): x_0, e.g. an image in [0, 1].
            noise (`torch.Tensor` of shape `(B, C, H, W)`): standard Gaussian z.
            timesteps (`int` or `torch.Tensor` of shape `()` or `(B,)`): t in 0..T.
            mu (`torch.Tensor` of shape `(B, C, H, W)`): the mean the process reverts to (the degraded image).
        """
        mean = mu + (original_samples - mu) * self.mean_reversion_factor(timesteps, original_samples)
        return mean + self._table(self.sigma_bars, timesteps, original_samples) * noise

    def forward_step(
        self,
        sample: torch.Tensor,
        timestep: TimestepLike,
        mu: torch.Tensor,
        noise: torch.Tensor,
        next_timestep: TimestepLike | None = None,
    ) -> torch.Tensor:
        """
        Moves a state forward (towards more noise), as the resampling of paper Eq.17 re-noises the structure.

        With `next_timestep` `None` or `timestep + 1` and the `"euler_maruyama"` algorithm this is the released
        one-step Euler-Maruyama update with the coefficients of `timestep`, `x + theta_t (mu - x) dt + sigma_t
        sqrt(dt) z`. Otherwise it samples the exact transition of the process from `timestep` to `next_timestep`,
        `mu + A (x - mu) + lambda sqrt(1 - A^2) z` with `A = e^{-(bar_theta_next - bar_theta_t)}`.
        """
        is_unit_step = next_timestep is None or bool(
            torch.all(torch.as_tensor(next_timestep) == torch.as_tensor(timestep) + 1)
        )
        if is_unit_step and self.config.algorithm_type == "euler_maruyama":
            theta = self._table(self.thetas, timestep, sample)
            sigma = self._table(self.sigmas, timestep, sample)
            return sample + theta * (mu - sample) * self.dt + sigma * math.sqrt(self.dt) * noise
        if next_timestep is None:
            next_timestep = timestep + 1
        decay = torch.exp(
            -(
                self._table(self.thetas_cumsum, next_timestep, sample)
                - self._table(self.thetas_cumsum, timestep, sample)
            )
            * self.dt
        )
        return mu + decay * (sample - mu) + self.max_sigma * (1 - decay**2).sqrt() * noise

    def initial_sample(self, mu: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The released sampler's start state x_T = mu + lambda z (not the exact marginal, which needs x_0)."""
        return mu + noise * self.max_sigma

    # ------------------------------------------------------------------ reverse process

    def score_from_noise(self, model_output: torch.Tensor, timestep: TimestepLike) -> torch.Tensor:
        """The score `-eps_hat / sigma_bar_t` of a noise prediction `eps_hat` (t >= 1)."""
        return -model_output / self._table(self.sigma_bars, timestep, model_output)

    def predict_original_sample(
        self, model_output: torch.Tensor, timestep: TimestepLike, sample: torch.Tensor, mu: torch.Tensor
    ) -> torch.Tensor:
        """
        x_0 implied by the network output of the configured `prediction_type`: `mu + (x_t - mu - sigma_bar_t eps_hat)
        / e^{-bar_theta_t}` for `"epsilon"`, the output for `"sample"`, `mu + output` for `"residual"`. Not clipped.
        """
        prediction_type = self.config.prediction_type
        if prediction_type == "sample":
            return model_output
        if prediction_type == "residual":
            return mu + model_output
        sigma_bar = self._table(self.sigma_bars, timestep, sample)
        return mu + (sample - mu - sigma_bar * model_output) / self.mean_reversion_factor(timestep, sample)

    def predict_noise(
        self, model_output: torch.Tensor, timestep: TimestepLike, sample: torch.Tensor, mu: torch.Tensor
    ) -> torch.Tensor:
        """
        The noise eps_hat implied by the network output: the output itself for `"epsilon"`, else
        `(x_t - mu - e^{-bar_theta_t} (x0_hat - mu)) / sigma_bar_t` (t >= 1) with x0_hat clipped to [0, 1] when
        `clip_sample`.
        """
        if self.config.prediction_type == "epsilon":
            return model_output
        original_sample = self.predict_original_sample(model_output, timestep, sample, mu)
        if self.config.clip_sample:
            original_sample = original_sample.clamp(0, 1)
        decayed = self.mean_reversion_factor(timestep, sample) * (original_sample - mu)
        return (sample - mu - decayed) / self._table(self.sigma_bars, timestep, sample)

    def reverse_sde_mean(
        self, model_output: torch.Tensor, timestep: TimestepLike, sample: torch.Tensor, mu: torch.Tensor
    ) -> torch.Tensor:
        """
        The noise-free Euler-Maruyama step of the reverse SDE, `x_t - [theta_t (mu - x_t) - sigma_t^2 score] dt`, for
        a network output of the configured `prediction_type`. This is what the released trainings match against the
        Eq.4 optimum (differentiable).
        """
        return self._euler_maruyama_mean(model_output, timestep, sample, mu, score_weight=1.0)

    def _euler_maruyama_mean(
        self,
        model_output: torch.Tensor,
        timestep: TimestepLike,
        sample: torch.Tensor,
        mu: torch.Tensor,
        score_weight: float,
    ) -> torch.Tensor:
        theta = self._table(self.thetas, timestep, sample)
        sigma = self._table(self.sigmas, timestep, sample)
        score = self.score_from_noise(self.predict_noise(model_output, timestep, sample, mu), timestep)
        return sample - (theta * (mu - sample) - score_weight * sigma**2 * score) * self.dt

    def optimal_reverse_state(
        self, sample: torch.Tensor, original_sample: torch.Tensor, timestep: TimestepLike, mu: torch.Tensor
    ) -> torch.Tensor:
        """
        The optimal reverse state x*_{t-1} given x_t and x_0 (paper Eq.4, Eq.10 for the structure), i.e. the mean of
        the Gaussian bridge q(x_{t-1} | x_t, x_0). At t = 1 it equals x_0.

        Args:
            sample (`torch.Tensor` of shape `(B, C, H, W)`): x_t.
            original_sample (`torch.Tensor` of shape `(B, C, H, W)`): x_0.
            timestep (`int` or `torch.Tensor` of shape `()` or `(B,)`): t in 1..T.
            mu (`torch.Tensor` of shape `(B, C, H, W)`): the SDE mean.
        """
        timestep_minus_one = timestep - 1
        mean, _ = self.posterior_mean_and_variance(sample, original_sample, timestep, timestep_minus_one, mu)
        return mean

    def jump_coefficients(
        self, timestep: TimestepLike, prev_timestep: TimestepLike, like: torch.Tensor, eta: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Coefficients of the jump t -> s (s < t) of the posterior sampler,
        `x_s = mu + c_sample (x_t - mu) + c_original (x0_hat - mu) + std z`:

            c_sample   = sqrt((1 - C^2) [(1 - eta^2)(1 - B^2) + eta^2 A^2 (1 - C^2)]) / (1 - B^2)
            c_original = C - B c_sample
            std        = eta lambda sqrt((1 - A^2)(1 - C^2) / (1 - B^2))

        with `A = e^{-(bar_theta_t - bar_theta_s)}`, `C = e^{-bar_theta_s}`, `B = A C` (see the module docstring). They
        are computed in float64 (with `expm1` for the `1 - e^{-2x}` terms) and returned in `like`'s dtype.

        Args:
            timestep (`int` or `torch.Tensor` of shape `()` or `(B,)`): t in 1..T.
            prev_timestep (`int` or `torch.Tensor` of shape `()` or `(B,)`): s in 0..t-1.
            like (`torch.Tensor` of shape `(B, ...)`): gives the device, dtype and number of dimensions.
            eta (`float`, defaults to 1.0): 1 for the bridge q(x_s | x_t, x_0), 0 for the deterministic path.

        Returns:
            `(c_sample, c_original, std)`, each broadcastable against `like`.
        """
        bar_theta_t = self._table(self.bar_thetas, timestep, like, torch.float64)
        bar_theta_s = self._table(self.bar_thetas, prev_timestep, like, torch.float64)
        if (bar_theta_s >= bar_theta_t).any():
            raise ValueError(f"`prev_timestep` {prev_timestep} must be smaller than `timestep` {timestep}.")
        one_minus_a2 = -torch.expm1(-2 * (bar_theta_t - bar_theta_s))
        one_minus_b2 = -torch.expm1(-2 * bar_theta_t)
        one_minus_c2 = -torch.expm1(-2 * bar_theta_s)
        decay_between, decay_to_t, decay_to_prev = (
            torch.exp(-(bar_theta_t - bar_theta_s)),
            torch.exp(-bar_theta_t),
            torch.exp(-bar_theta_s),
        )
        # 1 - B^2 - eta^2 (1 - A^2), written without cancellation (A^2 - B^2 = A^2 (1 - C^2)).
        residual = (1 - eta**2) * one_minus_b2 + eta**2 * decay_between**2 * one_minus_c2
        sample_coefficient = torch.sqrt(one_minus_c2 * residual) / one_minus_b2
        original_coefficient = decay_to_prev - decay_to_t * sample_coefficient
        std = eta * self.max_sigma * torch.sqrt(one_minus_a2 * one_minus_c2 / one_minus_b2)
        return tuple(value.to(like.dtype) for value in (sample_coefficient, original_coefficient, std))

    def posterior_mean_and_variance(
        self,
        sample: torch.Tensor,
        original_sample: torch.Tensor,
        timestep: TimestepLike,
        prev_timestep: TimestepLike,
        mu: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Mean and variance of the Gaussian bridge q(x_s | x_t, x_0) of the mean-reverting process, for s < t.

        With `A = e^{-(bar_theta_t - bar_theta_s)}`, `C = e^{-bar_theta_s}` and `B = A C = e^{-bar_theta_t}`:

            mean     = mu + A (1 - C^2) / (1 - B^2) (x_t - mu) + C (1 - A^2) / (1 - B^2) (x_0 - mu)
            variance = lambda^2 (1 - A^2) (1 - C^2) / (1 - B^2)

        For s = t - 1 the mean is the paper's Eq.4 optimum; for s = 0 it is x_0 with variance 0. (The coefficients
        are those of [`~MeanRevertingSDEScheduler.jump_coefficients`] at `eta = 1`.)

        Returns:
            `(mean, variance)`: the mean has the shape of `sample`; the variance broadcasts against it.
        """
        sample_coefficient, original_coefficient, std = self.jump_coefficients(timestep, prev_timestep, sample)
        mean = mu + sample_coefficient * (sample - mu) + original_coefficient * (original_sample - mu)
        return mean, std**2

    def step(
        self,
        model_output: torch.Tensor,
        timestep: TimestepLike,
        sample: torch.Tensor,
        mu: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> MeanRevertingSDESchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """
        One reverse step from `timestep` t to the previous time of the schedule (t - 1 for the released sampler).

        Args:
            model_output (`torch.Tensor` of shape `(B, C, H, W)`):
                The network's output at (x_t, t), of the configured `prediction_type` (eps_hat, x_0 or x_0 - mu).
            timestep (`int` or `torch.Tensor` of shape `()` or `(B,)`):
                The current time t, one per batch item if a 1-d tensor; each must be in `timesteps` (a `ValueError`
                names any that is not).
            sample (`torch.Tensor` of shape `(B, C, H, W)`):
                The current state x_t.
            mu (`torch.Tensor` of shape `(B, C, H, W)`):
                The SDE mean (the degraded image / masked edge map).
            generator (`torch.Generator` or list of them, *optional*):
                Source of the Gaussian draw when `variance_noise` is not given.
            variance_noise (`torch.Tensor` of shape `(B, C, H, W)`, *optional*):
                The standard Gaussian draw z to add, instead of drawing one (diffusers' sign convention:
                `prev_sample = mean + std * variance_noise`; the released code writes `mean - std * randn`).
            return_dict (`bool`, defaults to `True`):
                Whether to return a [`MeanRevertingSDESchedulerOutput`] or a tuple.

        Returns:
            [`MeanRevertingSDESchedulerOutput`] or `(prev_sample, pred_original_sample)`.
        """
        if model_output.shape != sample.shape or mu.shape != sample.shape:
            raise ValueError(
                f"`model_output` {tuple(model_output.shape)}, `sample` {tuple(sample.shape)} and `mu` "
                f"{tuple(mu.shape)} must have the same shape."
            )
        self._check_schedule_timestep(timestep)
        eta = self.config.eta
        pred_original_sample = self.predict_original_sample(model_output, timestep, sample, mu)
        uses_original_sample = self.config.algorithm_type == "posterior" or self.config.prediction_type != "epsilon"
        if self.config.clip_sample and uses_original_sample:
            pred_original_sample = pred_original_sample.clamp(0, 1)

        if self.config.algorithm_type == "euler_maruyama":
            # Reverse SDE family with the marginals of the forward process: eta = 1 SDE, eta = 0 probability-flow ODE.
            mean = self._euler_maruyama_mean(model_output, timestep, sample, mu, score_weight=(1 + eta**2) / 2)
            std = eta * self._table(self.sigmas, timestep, sample) * math.sqrt(self.dt)
        else:
            # x_s = mu + C (x0_hat - mu) + sqrt(sigma_bar_s^2 - std^2) eps_hat + std z, std^2 = eta^2 posterior
            # variance, written with x_t instead of eps_hat (`jump_coefficients`); eta = 1: the bridge at x0_hat.
            sample_coefficient, original_coefficient, std = self.jump_coefficients(
                timestep, self.previous_timestep(timestep), sample, eta
            )
            mean = mu + sample_coefficient * (sample - mu) + original_coefficient * (pred_original_sample - mu)

        if eta == 0.0:
            prev_sample = mean
        else:
            if variance_noise is None:
                variance_noise = randn_tensor(
                    sample.shape, generator=generator, device=sample.device, dtype=sample.dtype
                )
            elif variance_noise.shape != sample.shape:
                raise ValueError(
                    f"`variance_noise` must have the sample's shape {tuple(sample.shape)}, got {tuple(variance_noise.shape)}."
                )
            prev_sample = mean + std * variance_noise

        if not return_dict:
            return prev_sample, pred_original_sample
        return MeanRevertingSDESchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
