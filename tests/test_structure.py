import pytest
import torch

from diffusers_strdiff.structure import TRAINING_CANNY_SIGMA, edge_map, grayscale_map

from .conftest import load_fixture


@pytest.fixture(scope="module")
def maps():
    return load_fixture("structure_maps")


def test_grayscale_matches_released(maps):
    torch.testing.assert_close(grayscale_map(maps["image"]), maps["gray"], atol=1e-6, rtol=0)
    uint8 = maps["image"].mul(255).to(torch.uint8).permute(1, 2, 0)
    assert torch.equal(uint8, maps["image_uint8"])


def test_edges_match_released_exactly(maps):
    assert torch.equal(edge_map(maps["image"]), maps["edge_sigma2"])
    assert torch.equal(edge_map(maps["image"], sigma=TRAINING_CANNY_SIGMA), maps["edge_sigma3"])
    assert torch.equal(maps["edge_sigma2"] * maps["mask"], maps["masked_edge"])


def test_batched_maps_equal_single(maps):
    batch = torch.stack([maps["image"], maps["image"].flip(-1)])
    gray, edges = grayscale_map(batch), edge_map(batch)
    assert gray.shape == edges.shape == (2, 1, 64, 64)
    assert torch.equal(edges[0], maps["edge_sigma2"])
    assert torch.equal(edges[1], edge_map(maps["image"].flip(-1)))


def test_masked_edges_ignore_the_hole(maps):
    known = maps["mask"]
    image = maps["image"]
    scribbled = image * known + torch.rand_like(image) * (1 - known)
    assert torch.equal(edge_map(image, known_mask=known), edge_map(scribbled, known_mask=known))
    # The released full-image computation does see the hole content near its border.
    assert not torch.equal(edge_map(image) * known, edge_map(scribbled) * known)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.rand(4, 8, 8), r"\(3, H, W\)"),
        (torch.rand(3, 8, 8) * 2, r"\[0, 1\]"),
        ((torch.rand(3, 8, 8) * 255).to(torch.uint8), "float"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ValueError, match=message):
        grayscale_map(image)
