import math

import pytest
import torch

from diffusers_strdiff import MeanRevertingSDEScheduler

from .conftest import load_fixture

TABLES = ("thetas", "thetas_cumsum", "sigmas", "sigma_bars")


@pytest.fixture(params=[100, 400], ids=["T100", "T400"])
def fixture_and_scheduler(request):
    num_train_timesteps = request.param
    return load_fixture(f"sde_cosine_T{num_train_timesteps}"), MeanRevertingSDEScheduler(
        num_train_timesteps=num_train_timesteps
    )


def assert_close(actual, expected, atol=1e-6, rtol=1e-5):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def test_tables_match_released(fixture_and_scheduler):
    fixture, scheduler = fixture_and_scheduler
    for name in TABLES:
        assert getattr(scheduler, name).shape == (scheduler.config.num_train_timesteps + 1,)
        assert_close(getattr(scheduler, name), fixture[name])
    assert_close(scheduler.dt, fixture["dt"])
    assert scheduler.thetas_cumsum[0] == 0 and scheduler.sigma_bars[0] == 0
    # dt is chosen so that exp(-bar_theta_T) == eps.
    assert math.isclose(math.exp(-(scheduler.thetas_cumsum[-1] * scheduler.dt).item()), 0.005, rel_tol=1e-5)


def test_forward_process_matches_released(fixture_and_scheduler):
    fixture, scheduler = fixture_and_scheduler
    timesteps, mu = fixture["timesteps"], fixture["mu"]
    noisy = scheduler.add_noise(fixture["x0"], fixture["noise"], timesteps, mu)
    assert_close(noisy, fixture["noisy_sample"])
    assert_close(
        scheduler.forward_step(noisy, timesteps, mu, fixture["official_randn"]), fixture["forward_step_sample"]
    )
    assert_close(scheduler.initial_sample(fixture["x0"], fixture["official_randn"]), fixture["noise_state_sample"])


def test_reverse_process_matches_released(fixture_and_scheduler):
    fixture, scheduler = fixture_and_scheduler
    timesteps, mu, sample = fixture["timesteps"], fixture["mu"], fixture["noisy_sample"]
    model_output = fixture["model_output"]
    assert_close(
        scheduler.optimal_reverse_state(sample, fixture["x0"], timesteps, mu), fixture["optimal_reverse_state"]
    )
    torch.testing.assert_close(
        scheduler.score_from_noise(model_output, timesteps), fixture["score"], rtol=1e-5, atol=0
    )
    assert_close(scheduler.reverse_sde_mean(model_output, timesteps, sample, mu), fixture["prev_sample_mean"])
    output = scheduler.step(model_output, timesteps, sample, mu, variance_noise=fixture["variance_noise"])
    assert_close(output.prev_sample, fixture["prev_sample"])
    ode_scheduler = MeanRevertingSDEScheduler.from_config(scheduler.config, eta=0.0)
    assert_close(ode_scheduler.step(model_output, timesteps, sample, mu).prev_sample, fixture["prev_sample_ode"])


def test_eq4_optimum_at_t1_is_x0(fixture_and_scheduler):
    fixture, scheduler = fixture_and_scheduler
    optimum = scheduler.optimal_reverse_state(fixture["noisy_sample"], fixture["x0"], 1, fixture["mu"])
    assert_close(optimum, fixture["x0"])


def test_pred_original_sample_inverts_add_noise(fixture_and_scheduler):
    fixture, scheduler = fixture_and_scheduler
    timesteps, mu = fixture["timesteps"], fixture["mu"]
    noisy = scheduler.add_noise(fixture["x0"], fixture["noise"], timesteps, mu)
    output = scheduler.step(fixture["noise"], timesteps, noisy, mu, variance_noise=torch.zeros_like(noisy))
    torch.testing.assert_close(output.pred_original_sample, fixture["x0"], atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("timestep_kind", ["int", "0d", "1d"])
def test_timestep_kinds_agree(timestep_kind):
    scheduler = MeanRevertingSDEScheduler()
    generator = torch.Generator().manual_seed(0)
    sample, mu, eps = (torch.randn(2, 3, 5, 7, generator=generator) for _ in range(3))
    noise = torch.randn(2, 3, 5, 7, generator=generator)
    timestep = {"int": 37, "0d": torch.tensor(37), "1d": torch.tensor([37, 37])}[timestep_kind]
    expected = scheduler.step(eps, 37, sample, mu, variance_noise=noise).prev_sample
    assert_close(scheduler.step(eps, timestep, sample, mu, variance_noise=noise).prev_sample, expected)


def test_per_item_timesteps_equal_single_calls():
    scheduler = MeanRevertingSDEScheduler()
    generator = torch.Generator().manual_seed(1)
    sample, mu, eps, noise = (torch.randn(3, 1, 4, 6, generator=generator) for _ in range(4))
    timesteps = torch.tensor([1, 50, 100])
    batched = scheduler.step(eps, timesteps, sample, mu, variance_noise=noise).prev_sample
    for i, t in enumerate(timesteps.tolist()):
        single = scheduler.step(eps[i : i + 1], t, sample[i : i + 1], mu[i : i + 1], variance_noise=noise[i : i + 1])
        assert_close(batched[i : i + 1], single.prev_sample)


def test_step_is_seeded():
    scheduler = MeanRevertingSDEScheduler()
    sample, mu, eps = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    first = scheduler.step(eps, 10, sample, mu, generator=torch.Generator().manual_seed(3)).prev_sample
    again = scheduler.step(eps, 10, sample, mu, generator=torch.Generator().manual_seed(3)).prev_sample
    other = scheduler.step(eps, 10, sample, mu, generator=torch.Generator().manual_seed(4)).prev_sample
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_linear_and_constant_schedules():
    linear = MeanRevertingSDEScheduler(num_train_timesteps=50, schedule="linear")
    scale = 1000 / 51
    assert_close(linear.thetas, torch.linspace(scale * 1e-4, scale * 0.02, 51))
    constant = MeanRevertingSDEScheduler(num_train_timesteps=50, schedule="constant")
    assert torch.equal(constant.thetas, torch.ones(51))
    for scheduler in (linear, constant):
        assert math.isclose(math.exp(-(scheduler.thetas_cumsum[-1] * scheduler.dt).item()), 0.005, rel_tol=1e-4)


def test_default_timesteps_are_every_step():
    scheduler = MeanRevertingSDEScheduler(num_train_timesteps=10)
    assert scheduler.timesteps.tolist() == list(range(10, 0, -1))
    assert scheduler.previous_timestep(10) == 9 and scheduler.previous_timestep(1) == 0


def test_max_sigma_in_8bit_units_is_rescaled():
    assert MeanRevertingSDEScheduler(max_sigma=30).max_sigma == pytest.approx(30 / 255)


def test_config_round_trip(tmp_path):
    scheduler = MeanRevertingSDEScheduler(num_train_timesteps=400, schedule="linear", eps=0.01)
    scheduler.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").exists()
    loaded = MeanRevertingSDEScheduler.from_pretrained(tmp_path)
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: v for k, v in scheduler.config.items() if not k.startswith("_")
    }
    for name in TABLES:
        assert torch.equal(getattr(loaded, name), getattr(scheduler, name))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "quadratic"}, "schedule"),
        ({"num_train_timesteps": 0}, "num_train_timesteps"),
        ({"eps": 1.5}, "eps"),
        ({"eta": 2.0}, "eta"),
        ({"algorithm_type": "dpm"}, "algorithm_type"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MeanRevertingSDEScheduler(**kwargs)


def test_bad_step_inputs():
    scheduler = MeanRevertingSDEScheduler()
    sample = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="timestep"):
        scheduler.step(sample, 101, sample, sample)
    with pytest.raises(ValueError, match="timestep"):
        scheduler.step(sample, torch.tensor([1, 2, 3]), sample, sample)
    with pytest.raises(ValueError, match="same shape"):
        scheduler.step(sample, 5, sample, sample[:, :1])
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(10)
