"""Reading MMGen's decoded modalities: depth map, normal vectors, segmentation regions."""

import numpy as np
import torch

from unidiff_core.mmgen.outputs import decode_outputs, depth_map, normal_vectors, segment_labels


def test_depth_map_is_the_grey_level():
    pixels = torch.tensor([[[[0, 0, 0], [255, 255, 255], [51, 51, 51]]]], dtype=torch.uint8)
    assert torch.allclose(depth_map(pixels), torch.tensor([[[0.0, 1.0, 0.2]]]))


def test_normal_vectors_are_unit_and_follow_rgb():
    pixels = torch.tensor([[[[128, 128, 255], [255, 128, 128]]]], dtype=torch.uint8)
    n = normal_vectors(pixels)
    assert torch.allclose(n.norm(dim=-1), torch.ones(1, 1, 2))
    assert n[0, 0, 0, 2] > 0.99 and n[0, 0, 1, 0] > 0.99


def test_segments_group_similar_colours_by_area():
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :30] = (200, 30, 30)
    img[:, 30:45] = (30, 200, 30)
    img[:20, 45:] = (30, 30, 200)
    img[20:, 45:] = (36, 26, 206)  # the same region, slightly off (decoder noise)
    labels = segment_labels(img)
    assert sorted(np.unique(labels)) == [0, 1, 2]
    assert (labels[:, :30] == 0).all()  # largest first
    assert len(np.unique(labels[:, 45:])) == 1 and (labels[:, 30:45] != labels[0, 50]).all()


def test_decode_outputs_shapes():
    rng = np.random.default_rng(0)
    decoded = {m: torch.from_numpy(rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8))
               for m in ("rgb", "depth", "normal", "mask")}
    out = decode_outputs(decoded, region=1)
    assert out.images["rgb"].shape == (2, 16, 16, 3) and out.images["rgb"].max() <= 1
    assert out.depth.shape == (2, 16, 16) and out.normals.shape == (2, 16, 16, 3)
    assert out.mask.shape == (2, 16, 16) and torch.equal(out.mask, (out.segments == 1).float())
