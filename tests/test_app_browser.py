"""
The Gradio app in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright; no
`playwright install`), served in-process from a tiny random pipeline.

To refresh the README screenshot `docs/images/app_screenshot.png` with a trained checkpoint, run

    STRDIFF_SCREENSHOT_CHECKPOINT=src/diffusers_strdiff/checkpoints/strdiffusion-photos-64 \
        pytest tests/test_app_browser.py -k example

which serves that checkpoint instead and writes the screenshot there (otherwise it only goes to the test's tmp_path).
"""

import io
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from diffusers_strdiff import BUNDLED_EXAMPLES

from .test_pipeline import tiny_pipeline

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "app_screenshot.png"
SCREENSHOT_CHECKPOINT = os.environ.get("STRDIFF_SCREENSHOT_CHECKPOINT")
#: Milliseconds to wait for an inference (the trained checkpoint runs the full sampler on the CPU).
INFERENCE_TIMEOUT_MS = 600_000 if SCREENSHOT_CHECKPOINT else 300_000

gr = pytest.importorskip("gradio", reason="the app needs the [app] extra (pip install 'diffusers-strdiff[app]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason=f"needs a system Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from diffusers_strdiff.app import build_demo

    checkpoint = SCREENSHOT_CHECKPOINT
    if checkpoint is None:
        checkpoint = tmp_path_factory.mktemp("tiny_pipeline")
        tiny_pipeline().save_pretrained(checkpoint)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_demo(checkpoint, device="cpu")
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{port}/"
        finally:
            demo.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(server: str, browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    yield page
    page.close()


def wait_for_result(page: sync_api.Page) -> None:
    page.wait_for_function(
        "document.querySelector('#status').innerText.includes('network evaluations')", timeout=INFERENCE_TIMEOUT_MS
    )


def output_image(page: sync_api.Page, elem_id: str) -> np.ndarray:
    """Downloads what an output image component shows."""
    source = page.get_attribute(f"#{elem_id} img", "src")
    return np.asarray(PIL.Image.open(io.BytesIO(page.request.get(source).body())))


def test_example_runs_on_click(page: sync_api.Page, tmp_path: Path) -> None:
    page.locator("#examples button.gallery-item").first.click()
    wait_for_result(page)
    assert output_image(page, "result").shape == (128, 160, 3)
    assert output_image(page, "structure").shape[:2] == (128, 160)
    page.screenshot(path=tmp_path / "app_screenshot.png", full_page=True)
    if SCREENSHOT_CHECKPOINT:
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=DOCS_SCREENSHOT, full_page=True)


def test_upload_paint_and_inpaint(page: sync_api.Page) -> None:
    photo_path = BUNDLED_EXAMPLES / "sunset.png"
    editor = page.locator("#editor")
    zoom = editor.get_by_text(re.compile(r"^\d+%$"))
    empty_zoom = zoom.inner_text()
    page.set_input_files("#editor input[type=file]", photo_path)
    # The photo is in once the editor's placeholder is gone and it has zoomed to fit the photo.
    sync_api.expect(editor).not_to_contain_text("Upload an image")
    sync_api.expect(zoom).not_to_have_text(empty_zoom)
    page.click("#editor button[aria-label=Brush]")
    box = page.locator("#editor canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 60, y - 20)
    page.mouse.down()
    page.mouse.move(x + 60, y + 20, steps=15)
    page.mouse.up()
    page.click("#sampler label:has-text('Few-step')")
    page.uncheck("#resampling input[type=checkbox]")
    page.click("#run")
    wait_for_result(page)

    fill = output_image(page, "mask") == 255
    result, photo = output_image(page, "result"), np.asarray(PIL.Image.open(photo_path))
    assert result.shape == photo.shape
    assert 0.02 < fill.mean() < 0.9, f"the painted stroke covers {fill.mean():.1%} of the photo"
    assert np.array_equal(result[~fill], photo[~fill])
    assert "steps" in page.inner_text("#status")
