"""Give an existing pixel-codec checkpoint the decoder refiner of a recipe, without touching its transformer.

    python -m training.refiner --checkpoint models/UniDiff-Mini        # mini.json's refiner settings

The refiner only changes how latents become pixels (unidiff_core/onediffusion/pixel_codec.py): the encoder,
and so what the transformer learned, stay as they are. `training.train` fits the same refiner when its recipe
has a "refiner" entry; this command adds it to a checkpoint trained before that entry existed. The new vae/
is written beside the old one and swapped in only when complete.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from unidiff_core.onediffusion.pixel_codec import is_codec_folder, load_codec

from .train import add_refiner, load_recipe

RECIPES = Path(__file__).parent / "recipes"


def refine_checkpoint(checkpoint, recipe: dict, log=print) -> dict:
    vae = Path(checkpoint) / "vae"
    if not is_codec_folder(vae):
        raise ValueError(f"{vae}: not a pixel-codec folder (its config.json must declare LinearPatchCodec); "
                         "a learned VAE has its own decoder")
    if not recipe.get("refiner"):
        raise ValueError(f"recipe {recipe['name']!r} has no \"refiner\" entry to train")
    torch.set_num_threads(int(recipe["threads"]))
    t0 = time.time()
    codec = add_refiner(load_codec(vae), recipe, log=log)
    fresh = vae.with_name("vae.new")
    shutil.rmtree(fresh, ignore_errors=True)
    codec.save_pretrained(fresh)
    load_codec(fresh)  # complete and loadable before it replaces the old folder
    old = vae.with_name("vae.old")
    shutil.rmtree(old, ignore_errors=True)
    vae.rename(old)
    fresh.rename(vae)
    shutil.rmtree(old)
    return {"checkpoint": str(checkpoint), "refiner": recipe["refiner"], "minutes": round((time.time() - t0) / 60, 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder whose vae/ is the pixel codec")
    p.add_argument("--recipe", default=str(RECIPES / "mini.json"), help="the recipe whose \"refiner\" entry to use")
    a = p.parse_args(argv)
    try:
        print(refine_checkpoint(a.checkpoint, load_recipe(a.recipe)))
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
