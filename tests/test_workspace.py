"""The prepared convolutions' scratch buffers (`models/workspace.py`): reused across calls and sizes, one set per
process that a concurrent call never shares, usable in and out of inference mode, and never leaking one call's values
into the next."""

import threading

import pytest
import torch

from diffusers_strdiff import release_scratch_memory
from diffusers_strdiff.models import inference
from diffusers_strdiff.models.workspace import scratch_space


def test_scratch_space_reuses_its_slots_and_grows_them() -> None:
    release_scratch_memory()
    like = torch.zeros(())
    with scratch_space() as scratch:
        first = scratch(0, (4, 6), like)
        assert first.shape == (4, 6) and first.is_contiguous() and first.dtype == torch.float32
        assert scratch(0, (3, 5), like).data_ptr() == first.data_ptr()  # smaller: same memory
        assert scratch(1, (4, 6), like).data_ptr() != first.data_ptr()  # another slot
        assert scratch(0, (2, 6), like.double()).data_ptr() != first.data_ptr()  # another dtype
        grown = scratch(0, (10, 10), like)
        assert grown.shape == (10, 10)
    with scratch_space() as scratch:
        assert scratch(0, (4, 6), like).data_ptr() == grown.data_ptr()  # kept between calls
    release_scratch_memory()  # `grown` keeps the old buffer alive: a new one is other memory
    with scratch_space() as scratch:
        assert scratch(0, (10, 10), like).data_ptr() != grown.data_ptr()


def test_a_concurrent_call_gets_its_own_memory() -> None:
    """While one thread uses the buffers, another thread's call gets fresh tensors (and does not wait); once they
    are free again, it gets the shared ones."""
    like = torch.zeros(())
    pointers = {}

    def request(name: str) -> None:
        with scratch_space() as scratch:
            tensor = scratch(0, (64, 64), like)
            pointers[name] = (tensor.data_ptr(), scratch(0, (64, 64), like).data_ptr())

    with scratch_space() as scratch:
        shared = scratch(0, (64, 64), like)
        thread = threading.Thread(target=request, args=("while_in_use",))
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive()
    thread = threading.Thread(target=request, args=("after",))
    thread.start()
    thread.join(timeout=60)
    fresh, fresh_again = pointers["while_in_use"]
    assert fresh != shared.data_ptr() and fresh_again != fresh  # fresh tensors: nothing shared, not even in-thread
    assert pointers["after"] == (shared.data_ptr(), shared.data_ptr())


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
