"""The exact-jump ("posterior") sampler of `MeanRevertingSDEScheduler` and the pipeline with few steps."""

import math

import pytest
import torch

from diffusers_strdiff import MeanRevertingSDEScheduler

SPACINGS = ("linspace", "leading", "trailing")


def make_scheduler(num_train_timesteps: int = 100, **kwargs) -> MeanRevertingSDEScheduler:
    return MeanRevertingSDEScheduler(
        num_train_timesteps=num_train_timesteps, **{"algorithm_type": "posterior", **kwargs}
    )


def true_noise(
    scheduler: MeanRevertingSDEScheduler, sample: torch.Tensor, original: torch.Tensor, timestep: int, mu: torch.Tensor
) -> torch.Tensor:
    """The noise of x_t with respect to a known x_0: what a perfect noise predictor outputs."""
    mean = mu + (original - mu) * scheduler.mean_reversion_factor(timestep, sample)
    return (sample - mean) / scheduler.sigma_bars[timestep]


# ---------------------------------------------------------------- (a) N = T, eta = 1 is Eq.4


@pytest.mark.parametrize("num_train_timesteps", [100, 400])
def test_unit_steps_are_eq4_with_the_bridge_variance(num_train_timesteps):
    scheduler = make_scheduler(num_train_timesteps, clip_sample=False)
    timesteps = torch.arange(1, num_train_timesteps + 1)  # every t at once, one per batch item
    generator = torch.Generator().manual_seed(0)
    shape = (num_train_timesteps, 3, 4, 5)
    sample, mu = torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)
    model_output = torch.randn(shape, generator=generator)

    mean_output = scheduler.step(model_output, timesteps, sample, mu, variance_noise=torch.zeros(shape))
    noisy = scheduler.step(model_output, timesteps, sample, mu, variance_noise=torch.ones(shape)).prev_sample
    mean, x0 = mean_output.prev_sample, mean_output.pred_original_sample

    # Paper Eq.4 in float64, with theta'_t = thetas[t] dt as the released code writes it.
    thetas, cumsum, dt = scheduler.thetas.double(), scheduler.thetas_cumsum.double(), scheduler.dt.double()
    a = torch.exp(-thetas[timesteps] * dt).view(-1, 1, 1, 1)
    b = torch.exp(-cumsum[timesteps] * dt).view(-1, 1, 1, 1)
    c = torch.exp(-cumsum[timesteps - 1] * dt).view(-1, 1, 1, 1)
    eq4 = a * (1 - c**2) / (1 - b**2) * (sample - mu) + c * (1 - a**2) / (1 - b**2) * (x0 - mu) + mu
    variance = scheduler.max_sigma**2 * (1 - a**2) * (1 - c**2) / (1 - b**2)

    torch.testing.assert_close(mean.double(), eq4, atol=1e-6, rtol=0)
    torch.testing.assert_close((noisy - mean).double(), variance.sqrt().expand(shape), atol=1e-6, rtol=0)
    bridge_mean, bridge_variance = scheduler.posterior_mean_and_variance(sample, x0, timesteps, timesteps - 1, mu)
    torch.testing.assert_close(bridge_mean.double(), eq4, atol=1e-6, rtol=0)
    # The scheduler's A is e^{-(bar_theta_t - bar_theta_{t-1})}; the released e^{-thetas[t] dt} differs from it by the
    # float32 rounding of the cumulative sum (relative 1e-5 on the variance at T = 400).
    torch.testing.assert_close(bridge_variance.double(), variance, atol=1e-9, rtol=5e-5)
    # x0_hat inverts the forward marginal; at t = 1 the step returns it (C = 1: variance 0).
    expected_x0 = (
        mu.double() + (sample.double() - mu - scheduler.sigma_bars[timesteps].view(-1, 1, 1, 1) * model_output) / b
    )
    torch.testing.assert_close(x0.double(), expected_x0, atol=1e-4, rtol=1e-5)
    assert torch.equal(noisy[0], mean[0])
    torch.testing.assert_close(mean[0], x0[0], atol=1e-6, rtol=0)


def test_jump_to_zero_returns_x0_for_every_eta():
    for eta in (0.0, 0.5, 1.0):
        scheduler = make_scheduler(eta=eta)
        scheduler.set_timesteps(1)  # the single step T -> 0
        sample, mu, eps = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
        output = scheduler.step(eps, 100, sample, mu, variance_noise=torch.randn(2, 3, 4, 4))
        torch.testing.assert_close(output.prev_sample, output.pred_original_sample, atol=1e-6, rtol=0)
        assert scheduler.jump_coefficients(100, 0, sample, eta)[2] == 0


# ---------------------------------------------------------------- (b) Monte-Carlo check of q(x_s | x_t, x_0)

MONTE_CARLO_SAMPLES = 400_000


@pytest.mark.parametrize(("timestep", "prev_timestep"), [(100, 99), (100, 50), (60, 20), (100, 5), (30, 1), (5, 4)])
def test_bridge_matches_simulated_forward_process(timestep, prev_timestep):
    """
    Simulates (x_s, x_t) jointly with the forward process (x_s from the marginal given x_0, then the exact OU
    transition s -> t) and regresses x_s on x_t. The joint law is Gaussian, so E[x_s | x_t, x_0] is affine in x_t and
    the residual variance is Var[x_s | x_t, x_0]; all three must match the bridge formula.
    """
    scheduler = make_scheduler()
    n = MONTE_CARLO_SAMPLES
    generator = torch.Generator().manual_seed(1234)
    x0 = torch.full((n, 1, 1, 1), 0.8, dtype=torch.float64)
    mu = torch.full((n, 1, 1, 1), 0.25, dtype=torch.float64)
    x_s = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator, dtype=torch.float64), prev_timestep, mu)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    x_t = scheduler.forward_step(x_s, prev_timestep, mu, noise, next_timestep=timestep)

    xs, xt = x_s.flatten(), x_t.flatten()
    slope = torch.cov(torch.stack([xs, xt]))[0, 1] / xt.var()
    intercept = xs.mean() - slope * xt.mean()
    residual_variance = (xs - intercept - slope * xt).var()

    # The formula: mean = slope_formula * x_t + intercept_formula, variance.
    at_zero, variance = scheduler.posterior_mean_and_variance(
        torch.zeros(1, 1, 1, 1, dtype=torch.float64), x0[:1], timestep, prev_timestep, mu[:1]
    )
    at_one, _ = scheduler.posterior_mean_and_variance(
        torch.ones(1, 1, 1, 1, dtype=torch.float64), x0[:1], timestep, prev_timestep, mu[:1]
    )
    expected_slope, expected_intercept = (at_one - at_zero).item(), at_zero.item()

    # Tolerances: 5 standard errors of the OLS estimates (slope, intercept at the mean) and of a variance (sqrt(2/n)).
    slope_error = math.sqrt(variance.item() / (n * xt.var().item()))
    assert abs(slope.item() - expected_slope) < 5 * slope_error
    intercept_error = math.sqrt(variance.item() / n) + abs(xt.mean().item()) * slope_error
    assert abs(intercept.item() - expected_intercept) < 5 * intercept_error
    assert abs(residual_variance.item() / variance.item() - 1) < 5 * math.sqrt(2 / n)


# ---------------------------------------------------------------- (c) eta = 0 deterministic, eta = 1 mean + std z


def test_eta_zero_is_deterministic_and_eta_one_adds_std_noise():
    generator = torch.Generator().manual_seed(2)
    sample, mu, eps, noise = (torch.randn(2, 3, 6, 6, generator=generator) for _ in range(4))
    deterministic = make_scheduler(eta=0.0)
    deterministic.set_timesteps(10)
    first = deterministic.step(eps, 78, sample, mu, variance_noise=noise).prev_sample
    for kwargs in ({}, {"variance_noise": -noise}, {"generator": torch.Generator().manual_seed(5)}):
        deterministic.set_timesteps(10)
        assert torch.equal(deterministic.step(eps, 78, sample, mu, **kwargs).prev_sample, first)

    stochastic = make_scheduler(eta=1.0)
    stochastic.set_timesteps(10)
    output = stochastic.step(eps, 78, sample, mu, variance_noise=noise)
    assert stochastic.previous_timestep(78) == 67
    mean, variance = stochastic.posterior_mean_and_variance(sample, output.pred_original_sample, 78, 67, mu)
    torch.testing.assert_close(output.prev_sample, mean + variance.sqrt() * noise, atol=1e-7, rtol=1e-6)


def test_intermediate_eta_keeps_the_marginal_variance():
    """With an exact x0_hat and eps_hat, x_s = mu + C (x0 - mu) + sigma_bar_s * (unit-variance noise) for any eta."""
    scheduler = make_scheduler(eta=0.5)
    scheduler.set_timesteps(5)
    n = 200_000
    generator = torch.Generator().manual_seed(3)
    x0, mu = torch.full((n, 1, 1, 1), 0.7, dtype=torch.float64), torch.full((n, 1, 1, 1), 0.1, dtype=torch.float64)
    timestep, prev_timestep = 75, scheduler.previous_timestep(75)
    x_t = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator, dtype=torch.float64), timestep, mu)
    eps = true_noise(scheduler, x_t, x0, timestep, mu)
    x_s = scheduler.step(eps, timestep, x_t, mu, generator=generator).prev_sample
    expected_mean = 0.1 + 0.6 * scheduler.mean_reversion_factor(prev_timestep, x0).item()
    sigma_bar = scheduler.sigma_bars[prev_timestep].item()
    assert abs(x_s.mean().item() - expected_mean) < 5 * sigma_bar / math.sqrt(n)
    assert abs(x_s.var().item() / sigma_bar**2 - 1) < 5 * math.sqrt(2 / n)


def test_clip_sample_clips_the_x0_estimate_of_the_jump():
    generator = torch.Generator().manual_seed(9)
    sample, mu, eps = (torch.randn(1, 3, 6, 6, generator=generator) for _ in range(3))
    clipped, raw = (make_scheduler(eta=0.0, clip_sample=clip) for clip in (True, False))
    for scheduler in (clipped, raw):
        scheduler.set_timesteps(10)
    output, raw_output = clipped.step(eps, 100, sample, mu), raw.step(eps, 100, sample, mu)
    torch.testing.assert_close(output.pred_original_sample, raw_output.pred_original_sample.clamp(0, 1))
    assert raw_output.pred_original_sample.abs().max() > 1
    c_sample, c_original, _ = clipped.jump_coefficients(100, 89, sample, eta=0.0)
    expected = mu + c_sample * (sample - mu) + c_original * (output.pred_original_sample - mu)
    torch.testing.assert_close(output.prev_sample, expected)
    # The Euler-Maruyama sampler does not use (nor clip) x0_hat.
    released = MeanRevertingSDEScheduler(clip_sample=True).step(
        eps, 100, sample, mu, variance_noise=torch.zeros_like(mu)
    )
    torch.testing.assert_close(released.pred_original_sample, raw_output.pred_original_sample)


# ---------------------------------------------------------------- (d) sub-sequences


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("num_train_timesteps", [100, 400])
def test_timesteps_are_strictly_decreasing_sub_sequences(spacing, num_train_timesteps):
    scheduler = make_scheduler(num_train_timesteps, timestep_spacing=spacing)
    for num_steps in sorted({num_train_timesteps, 50, 20, 10, 5, *range(1, num_train_timesteps + 1)}, reverse=True):
        scheduler.set_timesteps(num_steps)
        timesteps = scheduler.timesteps.tolist()
        assert len(timesteps) == num_steps
        assert all(a > b for a, b in zip(timesteps, timesteps[1:], strict=False)), (num_steps, timesteps)
        assert 1 <= timesteps[-1] and timesteps[0] <= num_train_timesteps
        if spacing != "leading":
            assert timesteps[0] == num_train_timesteps
        assert [scheduler.previous_timestep(t) for t in timesteps] == timesteps[1:] + [0]
    scheduler.set_timesteps(num_train_timesteps)
    assert scheduler.timesteps.tolist() == list(range(num_train_timesteps, 0, -1))


def test_few_steps_need_a_posterior_algorithm():
    with pytest.raises(ValueError, match="posterior"):
        MeanRevertingSDEScheduler().set_timesteps(10)
    with pytest.raises(ValueError, match="smaller"):
        make_scheduler().jump_coefficients(10, 10, torch.zeros(1))


# ---------------------------------------------------------------- (e), (f) a perfect predictor recovers x_0


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_perfect_noise_predictor_recovers_x0(eta, spacing):
    scheduler = make_scheduler(eta=eta, timestep_spacing=spacing)
    generator = torch.Generator().manual_seed(4)
    x0, mu = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 8, 8, generator=generator)
    for num_steps in (100, 50, 20, 10, 5, 2, 1):
        scheduler.set_timesteps(num_steps)
        sample = scheduler.initial_sample(mu, torch.randn(x0.shape, generator=generator))
        for timestep in scheduler.timesteps.tolist():
            eps = true_noise(scheduler, sample, x0, timestep, mu)
            output = scheduler.step(eps, timestep, sample, mu, generator=generator)
            torch.testing.assert_close(output.pred_original_sample, x0, atol=2e-4, rtol=0)
            sample = output.prev_sample
        torch.testing.assert_close(sample, x0, atol=2e-5, rtol=0)


def test_deterministic_path_keeps_the_start_noise():
    """eta = 0 with a perfect predictor: x_s = mu + C (x0 - mu) + sigma_bar_s z with the z of the start state."""
    scheduler = make_scheduler(eta=0.0)
    scheduler.set_timesteps(7)
    x0, mu, z = torch.rand(1, 3, 5, 5), torch.rand(1, 3, 5, 5), torch.randn(1, 3, 5, 5)
    sample = scheduler.add_noise(x0, z, 100, mu)
    for timestep in scheduler.timesteps.tolist():
        sample = scheduler.step(true_noise(scheduler, sample, x0, timestep, mu), timestep, sample, mu).prev_sample
        prev_timestep = scheduler.previous_timestep(timestep)
        torch.testing.assert_close(sample, scheduler.add_noise(x0, z, prev_timestep, mu), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- accuracy of the deterministic path


def gaussian_data_ode_error(num_steps: int, n: int = 2000) -> float:
    """
    Mean error of the eta = 0 sampler with the exact denoiser of Gaussian data x_0 ~ N(m, s^2) against the exact
    probability-flow ODE map (it keeps the z-score of the marginal), from the same x_T = mu + lambda z.
    """
    scheduler = make_scheduler(eta=0.0, clip_sample=False)
    scheduler.set_timesteps(num_steps)
    lam, m, s, mu_value = scheduler.max_sigma, 0.3, 0.2, 0.6
    z = torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mu = torch.full_like(z, mu_value)
    sample = mu + lam * z
    for timestep in scheduler.timesteps.tolist():
        b, sigma = math.exp(-scheduler.bar_thetas[timestep].item()), scheduler.sigma_bars[timestep].item()
        marginal_variance = b**2 * s**2 + sigma**2
        y0 = (m - mu_value) + b * s**2 / marginal_variance * (sample - mu - b * (m - mu_value))
        sample = scheduler.step((sample - mu - b * y0) / sigma, timestep, sample, mu).prev_sample
    b_end = math.exp(-scheduler.bar_thetas[-1].item())
    exact = m + s * (lam * z - b_end * (m - mu_value)) / math.sqrt(b_end**2 * s**2 + lam**2 * (1 - b_end**2))
    return (sample - exact).abs().mean().item()


def test_deterministic_path_converges_to_the_ode_at_first_order():
    errors = {n: gaussian_data_ode_error(n) for n in (5, 10, 20, 50)}
    assert errors[5] > errors[10] > errors[20] > errors[50]
    assert 1.7 < errors[10] / errors[20] < 2.3 and 2.0 < errors[20] / errors[50] < 3.0  # error ~ 1 / N


# ---------------------------------------------------------------- the pipeline with a sub-sampled schedule


def test_pipeline_few_steps_anchor_the_structure_at_the_network_time():
    """
    With N < T every structure network call (main loop and resampling) sees the known region at its own time t:
    with zero noise it is exactly the forward mean `mu + (gray - mu) e^{-bar_theta_t}`.
    """
    from diffusers_strdiff import DiscriminatorGatedResampling, grayscale_map

    from .test_pipeline import make_inputs, tiny_pipeline

    pipeline = tiny_pipeline()
    pipeline.scheduler = MeanRevertingSDEScheduler.from_config(
        pipeline.scheduler.config, algorithm_type="posterior", eta=1.0
    )
    image, mask = make_inputs()
    known = 1 - mask
    gray = grayscale_map(image * known) * known
    calls = []
    hook = pipeline.structure_unet.register_forward_hook(lambda module, args, output: calls.append(args))
    try:
        output = pipeline(
            image=image,
            mask_image=mask,
            num_inference_steps=4,
            output_type="pt",
            noise_sampler=lambda shape, generator, device, dtype: torch.zeros(shape, device=device, dtype=dtype),
            callback_on_step_end=DiscriminatorGatedResampling(resample_every=1, renoise_steps=2),
        )
    finally:
        hook.remove()
    assert pipeline.scheduler.timesteps.tolist() == [10, 7, 4, 1]
    assert output.nfe["structure"] > 2 and output.nfe["discriminator"] > 0  # the callback re-denoised the structure
    seen_times = set()
    for sample, timestep, mu in calls:
        time = int(timestep)
        seen_times.add(time)
        expected = mu + (gray - mu) * pipeline.scheduler.mean_reversion_factor(time, mu)
        torch.testing.assert_close(sample * known, expected * known, atol=1e-6, rtol=0)
    assert seen_times == {10, 7, 4}  # t >= floor(0.4 T): the same fraction of the trajectory as with every step
