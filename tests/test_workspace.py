"""The prepared convolutions' scratch buffers (`models/workspace.py`): reused across calls and sizes, one set per
thread, usable in and out of inference mode, and never leaking one call's values into the next."""

import threading

import pytest
import torch

from diffusers_strdiff import release_scratch_memory
from diffusers_strdiff.models import inference
from diffusers_strdiff.models.workspace import scratch_tensor


def test_scratch_tensor_reuses_its_slot_and_grows_it() -> None:
    release_scratch_memory()
    like = torch.zeros(())
    first = scratch_tensor(0, (4, 6), like)
    assert first.shape == (4, 6) and first.is_contiguous() and first.dtype == torch.float32
    assert scratch_tensor(0, (3, 5), like).data_ptr() == first.data_ptr()  # smaller: same memory
    assert scratch_tensor(1, (4, 6), like).data_ptr() != first.data_ptr()  # another slot
    assert scratch_tensor(0, (2, 6), like.double()).data_ptr() != first.data_ptr()  # another dtype
    grown = scratch_tensor(0, (10, 10), like)
    assert grown.shape == (10, 10)
    assert scratch_tensor(0, (4, 6), like).data_ptr() == grown.data_ptr()  # the grown buffer is kept
    release_scratch_memory()  # `grown` keeps the old buffer alive: a new one is other memory
    assert scratch_tensor(0, (10, 10), like).data_ptr() != grown.data_ptr()


def test_scratch_buffers_belong_to_their_thread() -> None:
    like = torch.zeros(())
    tensors, reused = {}, {}

    def request(name: str) -> None:
        tensors[name] = scratch_tensor(0, (64, 64), like)  # kept: its buffer stays alive after the thread ends
        reused[name] = scratch_tensor(0, (64, 64), like).data_ptr() == tensors[name].data_ptr()

    threads = [threading.Thread(target=request, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    request("main")
    assert reused == {"a": True, "b": True, "main": True}
    assert len({tensor.data_ptr() for tensor in tensors.values()}) == 3


@pytest.mark.parametrize("output_tile", [2, 4])
def test_winograd_calls_of_decreasing_size_do_not_read_stale_scratch(output_tile: int) -> None:
    """A large call fills the scratch buffers with its values; smaller calls after it (other widths, heights, batch
    sizes and channels) must still see zero padding and only their own tiles: each equals a float64 convolution."""
    release_scratch_memory()
    generator = torch.Generator().manual_seed(3)
    for batch_size, channels, height, width in ((3, 9, 21, 17), (1, 9, 6, 7), (2, 5, 13, 5), (1, 5, 1, 2)):
        weight = torch.randn(4, channels, 3, 3, generator=generator)
        hidden_states = 10 * torch.randn(batch_size, channels, height, width, generator=generator)
        expected = torch.nn.functional.conv2d(hidden_states.double(), weight.double(), padding=1)
        output = inference.winograd_conv3x3(hidden_states, inference.winograd_weight(weight, output_tile), None)
        assert (output.double() - expected).abs().max() <= 2e-5 * expected.abs().max()


def test_prepared_convolution_runs_in_and_out_of_inference_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scratch buffers are created outside inference mode: a first call under `torch.inference_mode()` must not
    make them inference tensors that a later `torch.no_grad()` call could not write."""
    release_scratch_memory()
    monkeypatch.setattr(inference, "WINOGRAD_MIN_CHANNELS", 0)
    monkeypatch.setattr(inference, "NNPACK_MIN_CHANNELS", 10**9)
    conv = inference.prepare_for_inference(torch.nn.Conv2d(6, 6, 3, padding=1).eval(), autotune=False)
    hidden_states = torch.randn(1, 6, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(
            hidden_states.double(), conv.weight.double(), conv.bias.double(), padding=1
        )
    with torch.inference_mode():
        in_inference_mode = conv(hidden_states)
    with torch.no_grad():
        after = conv(hidden_states)
    for output in (in_inference_mode, after):
        torch.testing.assert_close(output.double(), expected, rtol=1e-5, atol=1e-5)
