"""Can view 1's camera be read off the two images, and off their codec latents? A CNN regressor as a reference.

    python -m training.camera_probe --train-samples 30000 --steps 12000 --out runs/camera_probe.json

Camera estimation gives two 64x64 views of a box or ball and asks for view 1's orbit camera relative to view 0
(azimuth in -90..90 degrees, elevation in -10..30). Mini stays worse than the mean camera on the azimuth. This
probe trains a plain convolutional regressor (no diffusion, no text) on the same generator's training seeds and
scores it on the evaluation's held-out seeds with the same angle errors (`metrics.camera_errors`), in two arms
with the same pool, network and steps:
* `pixels`: the views as they are;
* `codec`: the views as Mini's transformer receives them: encoded by the checkpoint's codec and mapped back
  with its linear decoder, which keeps exactly what the latents hold (the codec is linear and invertible on its
  subspace).
So it tells whether the azimuth is learnable from these views with a given number of samples, and whether the
codec's 16 channels per 8x8 patch still carry it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from training.data import TRAIN_SEEDS, make_sample
from training.evaluate import resolve_checkpoint, seeds_for
from training.metrics import camera_errors
from unidiff_core.onediffusion.pixel_codec import load_codec

TASK = "camera_estimation"
# Seeds of the probe's training pool: inside TRAIN_SEEDS, away from where the trainer's runs start.
POOL_START = TRAIN_SEEDS.start + 700_000_000
AZ_SCALE, EL_MID, EL_SCALE = 90.0, 10.0, 20.0  # the generator's ranges, mapped onto about -1..1
MEAN_CAMERA = (0.0, 10.0)  # the evaluation's baseline for this task
ARMS = ("pixels", "codec")


def views_and_camera(seed: int, size: int = 64):
    """(6, H, W) float32 with both views stacked on channels, view 1's (azimuth, elevation) in degrees, the object kind."""
    sample = make_sample(TASK, seed, size)
    values = sample.frame_values()
    views = np.concatenate([values[0], values[2]], axis=-1).transpose(2, 0, 1)
    camera = (sample.truth["azimuths"][1], sample.truth["elevations"][1])
    return views.astype(np.float32), camera, sample.truth["object"].kind


def dataset(seeds, size: int = 64):
    """x (N, 6, H, W) in 0..1, cameras (N, 2) in degrees, kinds (N,) "box" | "sphere"."""
    rows = [views_and_camera(s, size) for s in seeds]
    x = torch.from_numpy(np.stack([r[0] for r in rows]))
    cams = torch.tensor([r[1] for r in rows], dtype=torch.float32)
    return x, cams, [r[2] for r in rows]


@torch.no_grad()
def through_codec(x, codec, batch: int = 512):
    """Both views encoded and linearly decoded: what the latents keep of them, in 0..1 (not clamped)."""
    out = []
    for chunk in x.split(batch):
        views = chunk.reshape(-1, 3, *chunk.shape[2:]) * 2 - 1  # (2N, 3, H, W): view 0, view 1, ...
        out.append(((codec.decode_linear(codec.encode(views)) + 1) / 2).reshape(chunk.shape))
    return torch.cat(out)


def to_target(cams):
    return torch.stack([cams[:, 0] / AZ_SCALE, (cams[:, 1] - EL_MID) / EL_SCALE], dim=1)


def from_output(out):
    return torch.stack([out[:, 0] * AZ_SCALE, out[:, 1] * EL_SCALE + EL_MID], dim=1)


class CameraRegressor(nn.Module):
    """Four stride-2 convolutions (64 -> 4 pixels) and a two-layer head: (azimuth, elevation), scaled."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [6, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GELU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.LazyLinear(128), nn.GELU(), nn.Linear(128, 2))

    def forward(self, x):
        return self.head(self.features(x * 2 - 1))


def _mean_errors(guesses, cams) -> dict:
    rows = [camera_errors([None, {"azimuth": float(g[0]), "elevation": float(g[1])}],
                          {"azimuths": [0.0, float(c[0])], "elevations": [0.0, float(c[1])]})
            for g, c in zip(guesses, cams)]
    return {k: round(float(np.mean([r[k] for r in rows])), 2) for k in ("azimuth_err", "elevation_err")}


def errors(model, x, cams, kinds=None) -> dict:
    """Mean azimuth and elevation errors in degrees of the model and of the mean camera, overall and per object kind."""
    with torch.no_grad():
        pred = from_output(model(x))
    result = {"probe": _mean_errors(pred, cams), "mean_camera": _mean_errors([MEAN_CAMERA] * len(cams), cams)}
    for kind in sorted(set(kinds or [])):
        keep = [i for i, k in enumerate(kinds) if k == kind]
        result[f"probe_{kind}"] = {**_mean_errors(pred[keep], cams[keep]), "count": len(keep)}
        result[f"mean_camera_{kind}"] = _mean_errors([MEAN_CAMERA] * len(keep), cams[keep])
    return result


def train(train_x, train_cams, steps: int, batch: int = 64, lr: float = 1e-3, seed: int = 0, check=None,
          check_every: int = 2000, log=print):
    """Adam on the mean squared error of the scaled angles for `steps` batches (epochs over the pool);
    check(model) is logged every check_every steps."""
    torch.manual_seed(seed)
    model = CameraRegressor()
    model(train_x[:1])  # materialise the lazy head before the optimiser sees the parameters
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    target, n = to_target(train_cams), len(train_x)
    history, checks, t0 = [], [], time.time()
    while len(history) < steps:
        order = torch.randperm(n)
        for i in range(0, n - batch + 1, batch):
            idx = order[i:i + batch]
            loss = nn.functional.mse_loss(model(train_x[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            history.append(loss.item())
            if check is not None and len(history) % check_every == 0:
                checks.append({"step": len(history), **check(model)})
                log(f"step {len(history)}: loss {np.mean(history[-check_every:]):.4f}, {checks[-1]} "
                    f"({time.time() - t0:.0f} s)")
            if len(history) >= steps:
                break
    return model, history, checks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-samples", type=int, default=30000)
    p.add_argument("--steps", type=int, default=12000, help="batches of 64 per arm")
    p.add_argument("--samples", type=int, default=256,
                   help="held-out samples (the evaluation's seeds; its record is the first 32)")
    p.add_argument("--check-every", type=int, default=2000, help="score the held-out samples every N steps")
    p.add_argument("--checkpoint", default="mini", help="whose codec the codec arm uses ('mini' or a folder)")
    p.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file for the result")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    train_x, train_cams, _ = dataset(range(POOL_START, POOL_START + a.train_samples))
    test_x, test_cams, test_kinds = dataset(seeds_for(TASK, a.samples))
    print(f"drew {a.train_samples} training and {a.samples} held-out pairs in {time.time() - t0:.0f} s", flush=True)
    codec = load_codec(resolve_checkpoint(a.checkpoint) / "vae")
    result = {"train_samples": a.train_samples, "steps": a.steps, "samples_seen": 64 * a.steps,
              "held_out_samples": a.samples, "arms": {}}
    for arm in a.arms:
        xs, tx = (train_x, test_x) if arm == "pixels" else (through_codec(train_x, codec), through_codec(test_x, codec))
        t1 = time.time()
        model, history, checks = train(xs, train_cams, a.steps, check=lambda m: errors(m, tx, test_cams)["probe"],
                                       check_every=a.check_every,
                                       log=lambda s: print(f"[{arm}] {s}", flush=True))
        result["arms"][arm] = {"final_loss": round(float(np.mean(history[-500:])), 5), "minutes": round((time.time() - t1) / 60, 1),
                               "held_out": errors(model, tx, test_cams, test_kinds),
                               "record_32": errors(model, tx[:32], test_cams[:32], test_kinds[:32]),
                               "train_512": errors(model, xs[:512], train_cams[:512])["probe"], "checks": checks}
        print(json.dumps({arm: result["arms"][arm]}, indent=1), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
