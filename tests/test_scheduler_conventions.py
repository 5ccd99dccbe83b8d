"""
The conventions diffusers' `SchedulerCommonTest` checks for every scheduler, adapted to the mean-reverting SDE
(whose `step` and `add_noise` also take the SDE mean `mu`): config save / load and `from_config` equivalence, step
shapes, determinism, `return_dict=False`, the public API and the config attribute access rules.
"""

import inspect
import itertools
import warnings

import pytest
import torch

from diffusers_strdiff import SAMPLER_PRESETS, MeanRevertingSDEScheduler

ALGORITHMS = sorted(SAMPLER_PRESETS)
CONFIGS = [
    {"num_train_timesteps": 20},
    {"num_train_timesteps": 20, "schedule": "linear", "max_sigma": 50},
    {"num_train_timesteps": 12, "prediction_type": "sample", "clip_sample": False},
    {"num_train_timesteps": 12, "prediction_type": "residual", "eps": 0.01, "timestep_spacing": "trailing"},
]


def public_config(scheduler: MeanRevertingSDEScheduler) -> dict:
    return {key: value for key, value in scheduler.config.items() if not key.startswith("_")}


def make_scheduler(preset: str = "released", **config) -> MeanRevertingSDEScheduler:
    return MeanRevertingSDEScheduler(**{"num_train_timesteps": 20, **config, **SAMPLER_PRESETS[preset]})


def dummy_inputs(batch_size: int = 2, channels: int = 3, size: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand(batch_size, channels, size, size, generator=generator)
    mu = torch.rand(batch_size, channels, size, size, generator=generator)
    model_output = 0.1 * torch.randn(batch_size, channels, size, size, generator=generator)
    return model_output, sample, mu


def steps_of(scheduler: MeanRevertingSDEScheduler, num_inference_steps: int | None) -> list[int]:
    scheduler.set_timesteps(num_inference_steps)
    return scheduler.timesteps.tolist()


def run_chain(scheduler: MeanRevertingSDEScheduler, num_inference_steps: int | None, seed: int) -> torch.Tensor:
    """A few reverse steps with the dummy model `0.1 * sample`, drawing from a seeded generator."""
    _, sample, mu = dummy_inputs()
    generator = torch.Generator().manual_seed(seed)
    for timestep in steps_of(scheduler, num_inference_steps)[:4]:
        sample = scheduler.step(0.1 * sample, timestep, sample, mu, generator=generator).prev_sample
    return sample


def inference_steps(preset: str, scheduler: MeanRevertingSDEScheduler) -> int | None:
    # The released Euler-Maruyama rule only takes the full schedule; the posterior rules also sub-sample it.
    return None if preset == "released" else scheduler.config.num_train_timesteps // 2


@pytest.mark.parametrize(("preset", "config"), list(itertools.product(ALGORITHMS, CONFIGS)))
def test_save_load_and_from_config_give_the_same_steps(preset, config, tmp_path):
    scheduler = make_scheduler(preset, **config)
    scheduler.save_config(tmp_path)
    loaded = MeanRevertingSDEScheduler.from_pretrained(tmp_path)
    rebuilt = MeanRevertingSDEScheduler.from_config(scheduler.config)
    steps = inference_steps(preset, scheduler)
    expected = run_chain(scheduler, steps, seed=3)
    for other in (loaded, rebuilt):
        assert public_config(other) == public_config(scheduler)
        torch.testing.assert_close(run_chain(other, steps, seed=3), expected, atol=0, rtol=0)


def test_saved_config_round_trips_exactly(tmp_path):
    scheduler = make_scheduler("posterior", schedule="linear", eta=0.5)
    scheduler.save_pretrained(tmp_path)
    loaded = MeanRevertingSDEScheduler.from_pretrained(tmp_path)
    assert public_config(loaded) == public_config(scheduler)
    # Nothing that a call sets is written: `num_inference_steps` is not a config entry.
    assert "num_inference_steps" not in loaded.config


def test_from_config_overrides_only_what_is_passed():
    scheduler = make_scheduler("released", schedule="linear", num_train_timesteps=30)
    switched = MeanRevertingSDEScheduler.from_config(scheduler.config, **SAMPLER_PRESETS["posterior_ode"])
    assert switched.config.algorithm_type == "posterior" and switched.config.eta == 0.0
    for key in ("schedule", "num_train_timesteps", "max_sigma", "eps", "prediction_type"):
        assert switched.config[key] == scheduler.config[key]


@pytest.mark.parametrize("preset", ALGORITHMS)
@pytest.mark.parametrize(("batch_size", "channels"), [(1, 1), (3, 3)])
def test_step_shapes(preset, batch_size, channels):
    scheduler = make_scheduler(preset)
    model_output, sample, mu = dummy_inputs(batch_size, channels)
    timesteps = steps_of(scheduler, inference_steps(preset, scheduler))
    first = scheduler.step(model_output, timesteps[0], sample, mu, generator=torch.Generator().manual_seed(0))
    last = scheduler.step(model_output, timesteps[-1], sample, mu, generator=torch.Generator().manual_seed(0))
    for output in (first, last):
        assert output.prev_sample.shape == sample.shape
        assert output.pred_original_sample.shape == sample.shape
        assert output.prev_sample.dtype == sample.dtype


@pytest.mark.parametrize("preset", ALGORITHMS)
def test_step_is_deterministic_for_a_seed(preset):
    scheduler = make_scheduler(preset)
    steps = inference_steps(preset, scheduler)
    first, again, other = (
        run_chain(scheduler, steps, 0),
        run_chain(scheduler, steps, 0),
        run_chain(scheduler, steps, 1),
    )
    assert torch.equal(first, again)
    if preset != "posterior_ode":  # eta = 0 draws nothing but at the last step
        assert not torch.equal(first, other)


def test_variance_noise_replaces_the_draw():
    scheduler = make_scheduler()
    model_output, sample, mu = dummy_inputs()
    noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(5))
    from_noise = scheduler.step(model_output, 20, sample, mu, variance_noise=noise).prev_sample
    from_generator = scheduler.step(
        model_output, 20, sample, mu, generator=torch.Generator().manual_seed(5)
    ).prev_sample
    torch.testing.assert_close(from_noise, from_generator)


@pytest.mark.parametrize("preset", ALGORITHMS)
def test_return_dict_false_gives_the_same_tuple(preset):
    scheduler = make_scheduler(preset)
    model_output, sample, mu = dummy_inputs()
    timestep = steps_of(scheduler, inference_steps(preset, scheduler))[1]
    as_dict = scheduler.step(model_output, timestep, sample, mu, generator=torch.Generator().manual_seed(0))
    as_tuple = scheduler.step(
        model_output, timestep, sample, mu, generator=torch.Generator().manual_seed(0), return_dict=False
    )
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert torch.equal(as_tuple[0], as_dict.prev_sample)
    assert torch.equal(as_tuple[1], as_dict.pred_original_sample)


def test_public_api():
    scheduler = make_scheduler()
    for name in ("init_noise_sigma", "order", "timesteps", "num_inference_steps", "config"):
        assert hasattr(scheduler, name), name
    for name in ("scale_model_input", "set_timesteps", "step", "add_noise", "save_pretrained", "from_pretrained"):
        assert callable(getattr(scheduler, name)), name
    _, sample, mu = dummy_inputs()
    assert scheduler.scale_model_input(sample, 3) is sample
    noised = scheduler.add_noise(sample, torch.randn_like(sample), scheduler.timesteps[5][None], mu)
    assert noised.shape == sample.shape
    assert len(scheduler) == scheduler.config.num_train_timesteps


def test_no_undeclared_kwargs():
    # diffusers: an `__init__` with `**kwargs` must declare `_deprecated_kwargs`, and only then.
    takes_kwargs = "kwargs" in inspect.signature(MeanRevertingSDEScheduler.__init__).parameters
    assert takes_kwargs == bool(getattr(MeanRevertingSDEScheduler, "_deprecated_kwargs", []))


def test_attribute_access_follows_the_config_rules():
    scheduler = make_scheduler()
    scheduler.dummy_attribute = 5
    scheduler.register_to_config(test_attribute=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scheduler.dummy_attribute == 5
        assert scheduler.save_pretrained == scheduler.save_pretrained
    with pytest.warns(FutureWarning):  # config entries are read through `scheduler.config`
        assert scheduler.test_attribute == 5
    with pytest.raises(AttributeError):
        scheduler.does_not_exist  # noqa: B018


def test_set_timesteps_moves_the_schedule_to_the_device():
    scheduler = make_scheduler("posterior")
    scheduler.set_timesteps(5, device="cpu")
    assert scheduler.timesteps.device.type == "cpu"
    assert scheduler.timesteps.dtype == torch.int64
    assert scheduler.num_inference_steps == 5 and len(scheduler.timesteps) == 5
