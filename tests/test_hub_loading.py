"""
The Hub path without a network: a saved pipeline placed in a local Hugging Face cache exactly as `huggingface_hub`
lays a download out (`models--org--name/refs/main`, `snapshots/<commit>/...` linking into `blobs/<sha256>`), loaded by
Hub id with `HF_HUB_OFFLINE=1`, the way a user, `strdiff inpaint --checkpoint org/name` and the Space load one.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import diffusers_strdiff
from diffusers_strdiff import DiscriminatorGatedResampling

from .test_pipeline import make_inputs, run, tiny_pipeline

REPO_ID = "org/name"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = Path(__file__).resolve().parents[1]


def place_in_hub_cache(folder: Path, cache: Path, repo_id: str = REPO_ID, commit: str = COMMIT) -> Path:
    """Copies `folder` into `cache` as huggingface_hub stores a downloaded revision; returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)  # huggingface_hub writes the bare hash, no newline
    return snapshot


LOADERS = """
import json, os, runpy, sys
import torch
from diffusers import DiffusionPipeline
from diffusers_strdiff import DiscriminatorGatedResampling, StrDiffusionInpaintPipeline, load_pipeline

inputs = torch.load(sys.argv[1])
loaded = {
    "StrDiffusionInpaintPipeline": StrDiffusionInpaintPipeline.from_pretrained("org/name"),
    "DiffusionPipeline": DiffusionPipeline.from_pretrained("org/name", trust_remote_code=True),
    "load_pipeline": load_pipeline("org/name", "released", "cpu"),
}
if sys.argv[3] == "app":
    os.environ["STRDIFF_CHECKPOINT"] = "org/name"
    space = runpy.run_path(sys.argv[4])
    from diffusers_strdiff import app
    before = app.get_pipeline.cache_info()
    loaded["space"] = app.get_pipeline("org/name", "released", space["DEVICE"])
    assert app.get_pipeline.cache_info().hits == before.hits + 1, "the Space did not load org/name"
results = {}
for name, pipe in loaded.items():
    assert type(pipe).__name__ == "StrDiffusionInpaintPipeline", (name, type(pipe))
    pipe.set_progress_bar_config(disable=True)
    results[name] = pipe(image=inputs["image"], mask_image=inputs["mask"], generator=torch.Generator().manual_seed(5),
                         output_type="pt", callback_on_step_end=DiscriminatorGatedResampling()).images
torch.save(results, sys.argv[2])
"""


def test_hub_id_loads_from_an_offline_cache(tmp_path):
    pipeline = tiny_pipeline()
    image, mask = make_inputs()
    expected = run(pipeline, image, mask, 5, callback_on_step_end=DiscriminatorGatedResampling()).images
    pipeline.save_pretrained(tmp_path / "saved")
    snapshot = place_in_hub_cache(tmp_path / "saved", tmp_path / "home" / "hub")
    assert json.loads((snapshot / "model_index.json").read_text())["_class_name"][0] == "pipeline_strdiffusion"
    assert (snapshot / "texture_unet" / "diffusion_pytorch_model.safetensors").is_symlink()
    torch.save({"image": image, "mask": mask}, tmp_path / "inputs.pt")
    with_app = importlib.util.find_spec("gradio") is not None
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_CACHE": str(tmp_path / "home" / "hub"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(diffusers_strdiff.__file__).parents[1]),
    }
    command = [sys.executable, "-c", LOADERS, str(tmp_path / "inputs.pt"), str(tmp_path / "results.pt")]
    command += ["app", str(REPO / "spaces" / "strdiffusion" / "app.py")] if with_app else ["no_app"]
    subprocess.run(command, check=True, cwd=tmp_path, env=env)
    results = torch.load(tmp_path / "results.pt")
    assert set(results) >= {"StrDiffusionInpaintPipeline", "DiffusionPipeline", "load_pipeline"}
    assert ("space" in results) == with_app
    for name, result in results.items():
        torch.testing.assert_close(result, expected, atol=1e-5, rtol=0, msg=name)
