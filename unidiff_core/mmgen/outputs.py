"""Reading MMGen's decoded modalities: RGB image; depth visualisation -> image + float map; surface normal ->
image + unit vectors; segmentation -> image + region labels and a mask of one region.

The model writes every modality as an ordinary RGB image (the pseudo-labels it was trained on):
depth as a grey relative disparity-like map (near = bright, normalised per image, not metric), normals as
(n + 1) / 2, segmentation as regions of arbitrary colours (colours carry no class meaning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .layout import MODALITIES

DEFAULT_TOLERANCE = 40.0  # RGB distance within which two colours are one region
QUANT = 8  # colour bins are 256 / QUANT wide per channel before merging


@dataclass
class MMGenOutputs:
    images: dict  # modality -> (B, H, W, 3) float32 0..1 (ComfyUI IMAGE), from the truncated uint8 pixels
    depth: torch.Tensor  # (B, H, W) float32 0..1, near = 1
    normals: torch.Tensor  # (B, H, W, 3) float32 unit vectors
    segments: torch.Tensor  # (B, H, W) int64 region index, 0 = largest region
    mask: torch.Tensor  # (B, H, W) float32: region `region` of each item


def depth_map(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 grey visualisation -> (B, H, W) float 0..1 (channel mean; near = bright)."""
    return pixels.float().mean(-1) / 255.0


def normal_vectors(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 (n + 1) / 2 -> unit vectors (zero where the image is black)."""
    n = pixels.float() / 127.5 - 1.0
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def segment_labels(pixels: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int64 labels, regions of similar colour, ordered by area (0 = largest).

    Colours are binned, then bins are merged greedily (most frequent first) into the first region whose
    centre is within `tolerance`; the decoder's soft edges thus join a neighbouring region.
    """
    flat = pixels.reshape(-1, 3).astype(np.int64)
    bins = (flat // QUANT) @ np.array([(256 // QUANT) ** 2, 256 // QUANT, 1])
    uniq, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    sums = np.zeros((len(uniq), 3))
    np.add.at(sums, inverse, flat)
    means = sums / counts[:, None]
    centres, weights, bin_label = [], [], np.zeros(len(uniq), dtype=np.int64)
    for b in np.argsort(-counts, kind="stable"):
        if centres:
            dist = np.linalg.norm(np.asarray(centres) - means[b], axis=1)
            best = int(dist.argmin())
            if dist[best] <= tolerance:
                bin_label[b] = best
                total = weights[best] + counts[b]
                centres[best] = (centres[best] * weights[best] + means[b] * counts[b]) / total
                weights[best] = total
                continue
        bin_label[b] = len(centres)
        centres.append(means[b].copy())
        weights.append(int(counts[b]))
    labels = bin_label[inverse]
    order = np.argsort(-np.bincount(labels), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels].reshape(pixels.shape[:2])


def decode_outputs(decoded: dict, region: int = 0, tolerance: float = DEFAULT_TOLERANCE) -> MMGenOutputs:
    """decoded: {modality: (B, H, W, 3) uint8} (MMGenPipeline.decode)."""
    images = {m: decoded[m].float() / 255.0 for m in MODALITIES}
    segments = torch.from_numpy(np.stack([segment_labels(p.numpy(), tolerance) for p in decoded["mask"]]))
    return MMGenOutputs(images=images, depth=depth_map(decoded["depth"]), normals=normal_vectors(decoded["normal"]),
                        segments=segments, mask=(segments == region).float())
