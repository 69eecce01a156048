"""The one-way request path: contributions (what a frame node or a CLI flag gives) merged by the core into
one TaskRequest, the same way for the nodes and the CLI; the checks that are one rule in one place."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from unidiff_core.common import checks
from unidiff_core.common.errors import InputError
from unidiff_core.onediffusion import contributions, tasks
from unidiff_core.onediffusion.contributions import Contribution
from unidiff_core.onediffusion.requests import TaskInputs


def _photo(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _mask(h=48, w=64):
    m = np.zeros((h, w), np.float32)
    m[10:30, 20:40] = 1
    return m


def test_the_inpaint_condition_is_built_once_and_used_as_built():
    photo = _photo()
    part = contributions.inpaint(photo, _mask(), composite=True, feather=4)
    request = contributions.task_request("inpainting", "a cat", [part])
    built = part.inputs["inpaint"]
    assert request.frames[1].image is built.condition  # not rebuilt by the builder
    assert request.inpaint is built and request.source_image is photo
    assert request.prompt == "[[image_inpainting]] a cat" and request.denoise_mask == [1, 0]
    # the same request as from the image and the mask given to build_request directly
    direct = tasks.build_request("inpainting", TaskInputs(caption="a cat", image=photo, mask=_mask(), composite=True,
                                                          feather=4))
    assert np.array_equal(np.asarray(direct.frames[1].image), np.asarray(built.condition))
    assert np.array_equal(direct.inpaint.mask, built.mask)


def test_a_scaled_mask_is_resized_to_its_image_and_an_empty_one_is_refused():
    part = contributions.inpaint(_photo(48, 64), _mask(24, 32))  # half size, same aspect
    assert part.inputs["inpaint"].mask.shape == (48, 64)
    with pytest.raises(InputError, match="mask: nothing to repaint"):
        contributions.inpaint(_photo(), np.zeros((48, 64), np.float32))
    with pytest.raises(InputError, match="does not match the image 64x48"):
        contributions.inpaint(_photo(48, 64), _mask(48, 48))


def test_merging_contributions():
    photo = _photo()
    spec_inputs = contributions.task_inputs("image2depth", [Contribution("--image", {"images": [photo]})])
    assert spec_inputs.image is photo and spec_inputs.images is None
    refs = contributions.task_inputs("faceid", [contributions.references([(photo, "one")]),
                                                 contributions.given_images([photo])])
    assert [c for _, c in refs.references] == ["one", ""]  # given images of a reference task are references
    views = contributions.task_inputs("image2multiview", [contributions.given_images([photo, photo])])
    assert len(views.images) == 2
    cases = [
        ("image2depth", [contributions.given_images([photo, photo], source="A")], "A: task 'image2depth' takes one "
         "image, got 2"),
        ("image2depth", [contributions.given_images([photo], source="A"),
                         Contribution("B", {"image": photo})], "A and B both give the image"),
        ("depth2image", [contributions.condition_map(photo, "canny", source="M")[0]],
         "M: map_type 'canny' but task 'depth2image' takes a depth; set map_type to 'depth'"),
        ("image2depth", [contributions.generated_frame("depth", source="G")], "G: a frame to generate only works"),
        ("text2image", [Contribution("--azimuths", {"azimuths": [0.0]})],
         "azimuths: task 'text2image' does not take azimuths (from --azimuths)"),
    ]
    for task, parts, expected in cases:
        with pytest.raises(InputError) as err:
            contributions.task_inputs(task, parts)
        assert expected in str(err.value), str(err.value)


def test_task_request_reads_the_prompt_as_caption_or_verbatim():
    photo = _photo()
    parts = [contributions.given_images([photo])]
    assert contributions.task_request("image2depth", "a room", parts).prompt == "[[depth2image]] a room"
    verbatim = "[[depth2image]] a room, exactly"
    assert contributions.task_request("image2depth", verbatim, parts).prompt == verbatim
    custom = contributions.task_request("custom", "[[depth2image]] x",
                                        [contributions.given_images([photo]), contributions.generated_frame("depth")],
                                        width=64, height=48)
    assert custom.task is None and custom.denoise_mask == [0, 1] and custom.whats == ["image", "depth"]
    boxes, _ = contributions.layout_boxes('[{"label": "cat", "box": [0, 0, 0.5, 0.5]}]', 64, 64)
    request = contributions.task_request("boundingbox2image", "a cat", [boxes])
    assert request.prompt == "[[boundingbox2image]] <#FF0000 red boundingbox: cat> a cat"


def test_the_size_rule_worded_for_widgets_and_for_keywords():
    assert checks.size_pair(0, 0) == (0, 0) and checks.size_pair(None, None, auto=None, keyword=True) == (None, None)
    with pytest.raises(InputError, match=r"^width: not a multiple of 16 \(got 100\); use 96 or 112$"):
        checks.size("width", 100)
    with pytest.raises(InputError, match=r"^width=100 is not a positive multiple of 16; use width=96 or width=112$"):
        checks.size_pair(100, 64, auto=None, keyword=True)
    with pytest.raises(InputError, match="give both or neither"):
        checks.size_pair(64, None, auto=None, keyword=True)
    assert checks.size("width", 8192, high=None, keyword=True) == 8192  # the engine has no widget maximum
    with pytest.raises(InputError, match=r"expected comma-separated numbers"):
        checks.numbers("0, x", "azimuths")
    assert checks.numbers("0, none; 30", "azimuths", allow_none=True) == [0.0, None, 30.0]


def test_builders_raise_input_errors():
    bad = [("image2depth", TaskInputs()), ("image2semanticmap", TaskInputs(image=_photo())),
           ("subject_driven", TaskInputs(references=[_photo()])), ("camera_estimation", TaskInputs(images=[_photo()])),
           ("text2multiview", TaskInputs(caption="x", height=64, width=128)),
           ("canny2image", TaskInputs(image=_photo(), photo=_photo())), ("text2image", TaskInputs()),
           ("inpainting", TaskInputs(image=_photo(), composite=True)), ("image2depth", TaskInputs(image=_photo(),
                                                                                                   steps=0))]
    for task, inputs in bad:
        with pytest.raises(InputError):
            tasks.build_request(task, inputs)


def test_the_node_chain_and_the_cli_flags_give_the_same_request():
    photo = torch.rand(48, 64, 3)
    node = contributions.task_request("image2depth", "a room", [contributions.given_images([photo], source="node")],
                                      steps=3)
    merged = contributions.task_inputs("image2depth", [Contribution("--image", {"images": [photo]})])
    flags = tasks.build_request("image2depth", replace(merged, caption="a room", steps=3))
    assert node.prompt == flags.prompt and node.frames[1].image is flags.frames[1].image and node.steps == flags.steps
