"""Does a checkpoint colour each object by the prompt's labels? image -> semantic map, asked twice per photo.

    python -m training.label_probe --checkpoint mini [--validation] [--guidance 3.0]

Each held-out image2semanticmap sample of the record is asked once as it is and once with every label's colour
moved on by one place (`make_sample(..., label_shift=1)`: the same photo, another prompt). For every object of a
scene with two labels or more it reads which label colour covers most of the object in each answer. A model
that reads the labels paints the object in the colour each prompt names; one that ignores them paints it the
same colour both times, whatever the prompt says.

It also asks whether the text encoder's output carries each label's position in the prompt (which fixes its
colour) at the label's word: a linear read-out fitted on training prompts, scored on held-out ones; and what
the record's mIoU would be with every shape exact and the colours guessed (`guessed_colours_miou`).
`--validation` asks photos off the record (`validation_seeds`), for trying a setting such as `--guidance`.
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch

from training.data import HELDOUT_SEEDS, TRAIN_SEEDS, make_sample
from training.metrics import iou, miou, score
from unidiff_core.onediffusion import outputs

TASK = "image2semanticmap"


def validation_seeds(count: int) -> list[int]:
    """Photos from the training range far from what any stage draws (a stage with seed s draws from s * 7 919 000 on):
    for choosing a setting, where the record's held-out seeds must not be used."""
    return [TRAIN_SEEDS.start + 700_000_000 + i for i in range(count)]


def painted_colours(pred_frame, sample) -> dict:
    """label -> the prompt position of the colour covering most of that label's true mask (-1: under 30 % covered)."""
    names = [lab.label for lab in sample.request.labels]
    decoded = outputs.decode_segmentation(pred_frame, sample.request.labels).masks
    out = {}
    for label, mask in sample.truth["masks"]:
        truth = mask > 0.5
        cover = [int((decoded[n] & truth).sum()) for n in names]
        best = int(np.argmax(cover))
        out[label] = best if cover[best] >= 0.3 * truth.sum() else -1
    return out


def label_following(predict, seeds, size: int = 64) -> dict:
    """predict(sample, k) -> the predicted map frame (H, W, 3); the shares over the objects of multi-label scenes,
    and the IoU of all drawn labels with all objects (the shapes, whatever their colours), per scene."""
    right, right_moved, same, foreground = [], [], [], []
    for k, seed in enumerate(seeds):
        own, moved = make_sample(TASK, seed, size), make_sample(TASK, seed, size, label_shift=1)
        if len(own.request.labels) < 2:
            continue
        asked = [{lab.label: i for i, lab in enumerate(s.request.labels)} for s in (own, moved)]
        answers = [predict(s, k) for s in (own, moved)]
        got = [painted_colours(a, s) for a, s in zip(answers, (own, moved))]
        # the shapes, whatever their colours: any label's pixels against all objects' pixels
        drawn = np.any(list(outputs.decode_segmentation(answers[0], own.request.labels).masks.values()), axis=0)
        foreground.append(iou(drawn, np.any([m > 0.5 for _, m in own.truth["masks"]], axis=0)))
        for label in asked[0]:
            right.append(got[0][label] == asked[0][label])
            right_moved.append(got[1][label] == asked[1][label])
            same.append(got[0][label] == got[1][label] != -1)
    return {"objects": len(right), "right_as_asked": float(np.mean(right)),
            "right_with_moved_colours": float(np.mean(right_moved)), "same_colour_both_times": float(np.mean(same)),
            "foreground_iou": float(np.mean(foreground))}


def record_miou(predict, seeds, size: int = 64) -> float:
    """The evaluation's mIoU of the answers to the photos as they are (sample k asked with noise seed k, as there)."""
    samples = [make_sample(TASK, seed, size) for seed in seeds]
    return float(np.mean([score(s, {1: predict(s, k)})["miou"] for k, s in enumerate(samples)]))


def guessed_colours_miou(seeds, size: int = 64) -> float:
    """The record's mIoU of maps with every shape exact and each object's colour an independent guess among the
    prompt's label colours (the mean over all guesses): what drawing the shapes perfectly gives without the labels."""
    scores = []
    for seed in seeds:
        sample = make_sample(TASK, seed, size)
        labels, masks = sample.request.labels, sample.truth["masks"]
        per_guess = []
        for guess in itertools.product(range(len(labels)), repeat=len(masks)):
            frame = np.zeros((size, size, 3), np.float32)
            for (_, mask), colour in zip(masks, guess):
                frame[mask > 0.5] = np.array(labels[colour].rgb, np.float32) / 255.0
            per_guess.append(miou(frame, labels, masks))
        scores.append(float(np.mean(per_guess)))
    return float(np.mean(scores))


def label_word_states(text_encoder, seeds, size: int = 64):
    """(states (N, d) of the text encoder at the first token of each label's concept word, the label's prompt
    position (N,)) over the prompts of `seeds` with two labels or more."""
    states, positions = [], []
    for seed in seeds:
        sample = make_sample(TASK, seed, size)
        if len(sample.request.labels) < 2:
            continue
        ids, _ = text_encoder.tokenize(sample.request.prompt)
        tokens = text_encoder.tokenizer.convert_ids_to_tokens(ids[0].tolist())
        words = [i for i in range(1, len(tokens)) if tokens[i - 1] == ":"]  # "<#FF0000 red mask: circle>"
        assert len(words) == len(sample.request.labels), (sample.request.prompt, tokens)
        encoded = text_encoder.encode_one(sample.request.prompt)[0][0]
        states += [encoded[i].float() for i in words]
        positions += list(range(len(words)))
    return torch.stack(states), torch.tensor(positions)


def position_probe(train_x, train_y, test_x, test_y, steps: int = 500) -> dict:
    """Held-out accuracy of a linear read-out (multinomial logistic regression) of the positions from the states,
    next to always guessing the most common position."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    weight = torch.zeros(a.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ weight + bias, train_y) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = float(((b @ weight + bias).argmax(1) == test_y).float().mean())
    return {"accuracy": accuracy, "majority": float(torch.bincount(test_y).max() / len(test_y))}


def main(argv=None):
    from training.evaluate import load_pipeline, model_frames, resolve_checkpoint, seeds_for

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="mini")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance (default: the evaluation's, none for this task)")
    p.add_argument("--validation", action="store_true",
                   help="ask validation photos (validation_seeds) in place of the record's held-out ones, to "
                        "choose a setting without looking at the record")
    args = p.parse_args(argv)
    pipe = load_pipeline(resolve_checkpoint(args.checkpoint))
    size = pipe.transformer.config.default_pixel_size[0]
    seeds = validation_seeds(args.samples) if args.validation else seeds_for(TASK, args.samples)

    def predict(sample, k):
        return model_frames(pipe, sample, args.steps, seed=k, guidance=args.guidance)[1]

    result = label_following(predict, seeds, size)
    result["miou"] = record_miou(predict, seeds, size)
    result["guessed_colours_miou"] = guessed_colours_miou(seeds, size)
    # Does the prompt's text encoding carry each label's position (its colour) at the label's word?
    train = label_word_states(pipe.text_encoder, range(TRAIN_SEEDS.start + 500_000, TRAIN_SEEDS.start + 500_600), size)
    test = label_word_states(pipe.text_encoder, range(HELDOUT_SEEDS.start + 7000, HELDOUT_SEEDS.start + 7300), size)
    result["text_position"] = position_probe(*train, *test)
    print(json.dumps(dict(result, checkpoint=args.checkpoint, samples=args.samples, steps=args.steps,
                          guidance=args.guidance, validation=args.validation)))
    return result


if __name__ == "__main__":
    main()
