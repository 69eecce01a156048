"""CI smoke training: a seconds-long run of the tiny recipe lowers the loss, resumes, and writes a
checkpoint that the pack's loader and pipeline run."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.train import load_recipe, sample_seed, train
from unidiff_core.onediffusion.loading import preflight
from unidiff_core.onediffusion.pipeline import UniDiffPipeline
from unidiff_core.onediffusion.requests import TaskInputs
from unidiff_core.onediffusion.tasks import build_request, run_task

RECIPES = Path(__file__).resolve().parent.parent / "training" / "recipes"
RECIPE = RECIPES / "tiny.json"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    summary = train(load_recipe(RECIPE), out, progress=False)
    return out, summary


def _losses(out):
    return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(open(out / "losses.csv"))]


def drawn_seeds(recipe: dict, steps: int, processes: int) -> set:
    """Every training sample seed a run of this recipe draws in `steps` steps on `processes` processes."""
    return {sample_seed(recipe, step, micro, b, process, processes) for step in range(steps)
            for micro in range(recipe["micro_batches"]) for b in range(recipe["batch_size"])
            for process in range(processes)}

# The training stages of the releases and the trials after them, in the order they ran, each as its recipe file and
# load_recipe options; every stage has to draw training samples that none of the stages before it drew.
STAGES = [
    ("mini.json", {}),
    ("mini_continue.json", {}),
    ("focused_shift.json", {"only_task": "camera_estimation"}),
    ("mini_camera.json", {}),
    ("focused_multiview.json", {"only_task": "image2multiview", "seed": 13}),
    ("mini_multiview.json", {}),
    ("mini_unbeaten.json", {}),
    ("mini_faceid_views.json", {}),
    ("mini_faceid_more.json", {}),
    ("mini_views_heavy.json", {}),
    ("mini_views_heavier.json", {}),
]


def assert_draws_no_sample_drawn_before(recipe_file: str, **options):
    """A stage of STAGES draws no training sample that a stage before it drew (8000 steps each, two processes)."""
    position = STAGES.index((recipe_file, options))
    ours = drawn_seeds(load_recipe(RECIPES / recipe_file, **options), 8000, 2)
    for earlier, earlier_options in STAGES[:position]:
        assert not ours & drawn_seeds(load_recipe(RECIPES / earlier, **earlier_options), 8000, 2), earlier


def test_loss_goes_down(run):
    out, summary = run
    assert summary["steps"] == load_recipe(RECIPE)["steps"]
    losses = np.array([l for _, l in _losses(out)])
    third = len(losses) // 3
    # measured on the reference machine: first third 1.49, last third 0.86 (ratio 0.58)
    assert losses[-third:].mean() < 0.8 * losses[:third].mean()
    assert (out / "losses.png").stat().st_size > 0


def test_checkpoint_loads_and_runs_in_the_pipeline(run):
    out, _ = run
    ckpt = out / "checkpoint"
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (ckpt / part).is_dir(), part
    preflight(ckpt)
    pipe = UniDiffPipeline.from_pretrained(ckpt)
    assert pipe.transformer.config.default_pixel_size == (32, 32)
    request = build_request("text2image", TaskInputs(caption="a red circle", height=32, width=32, steps=2, guidance=1.0))
    result, output = run_task(pipe, request, seed=0)
    image = output.primary
    assert tuple(image.shape[-3:]) == (32, 32, 3) and torch.isfinite(image).all()
    assert result.latents.shape == (1, 1, 16, 4, 4)
    assert json.loads((ckpt / "training.json").read_text())["steps"] == load_recipe(RECIPE)["steps"]


def test_resume_goes_on_from_the_saved_step(run):
    out, _ = run
    steps = load_recipe(RECIPE)["steps"]
    summary = train(load_recipe(RECIPE, steps=steps + 10), out, resume=True, progress=False)
    assert summary["steps"] == steps + 10
    logged = [s for s, _ in _losses(out)]
    assert logged == sorted(logged) and logged[-1] >= steps


def test_soft_capped_attention_trains_in_bf16_with_the_inference_values():
    from unidiff_core.onediffusion.model import softcapped_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 6, generator=g).bfloat16().requires_grad_() for _ in range(3))
    out = softcapped_attention(q, k, v)
    out.float().sum().backward()
    with torch.no_grad():
        assert torch.equal(out, softcapped_attention(q, k, v))  # the in-place inference path, same values
    ref_q = q.detach().clone().requires_grad_()
    ref = torch.softmax(torch.tanh(ref_q.float() @ k.detach().float().transpose(-1, -2) / 6 ** 0.5 / 30) * 30, -1)
    (ref.to(torch.bfloat16) @ v.detach()).float().sum().backward()
    assert torch.allclose(q.grad.float(), ref_q.grad.float(), atol=1e-2)


def test_cli_runs_a_trained_checkpoint_at_its_declared_size(run, tmp_path):
    from PIL import Image

    from unidiff_core.cli import main

    out, _ = run
    index = json.loads((out / "checkpoint" / "model_index.json").read_text())
    assert index["unidiff_defaults"] == {"height": 32, "width": 32, "negative_prompt": ""}
    code = main(["run", "--checkpoint", str(out / "checkpoint"), "--task", "text2image", "--caption", "a red circle",
                 "--steps", "2", "--out", str(tmp_path)])
    assert code == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs and Image.open(pngs[0]).size == (32, 32)


def test_fine_tuning_starts_from_a_checkpoint_and_keeps_its_parts(run, tmp_path):
    out, _ = run
    summary = train(load_recipe(RECIPE, steps=5), tmp_path, init=out / "checkpoint", progress=False)
    assert summary["steps"] == 5 and summary["init"] == str(out / "checkpoint")
    tuned = UniDiffPipeline.from_pretrained(tmp_path / "checkpoint")
    base = UniDiffPipeline.from_pretrained(out / "checkpoint")
    assert torch.equal(tuned.vae.basis, base.vae.basis)  # the codec is kept, not refitted
    changed = [k for k, v in tuned.transformer.state_dict().items() if not torch.equal(v, base.transformer.state_dict()[k])]
    assert changed  # the weights moved


def test_continuing_mini_draws_samples_the_first_run_never_saw():
    """mini_continue.json (seed 1) and a further run with --seed 2 go on from Mini on new training samples."""
    first, second, third = (drawn_seeds(r, r["steps"], 2) for r in (
        load_recipe(RECIPES / "mini.json"), load_recipe(RECIPES / "mini_continue.json"),
        load_recipe(RECIPES / "mini_continue.json", seed=2)))
    assert len(first) == 8000 * 2 * 8 * 2 and len(second) == 2600 * 2 * 8 * 2  # mini.json's step ceiling
    assert not first & second and not first & third and not second & third


def test_the_camera_continuation_is_mini_continue_with_the_camera_weight_and_shift_and_new_samples():
    """mini_camera.json goes on from the camera-only run (focused_shift.json, seed 11) on the fourth release's
    task mix: mini_continue.json's schedule with mini.json's weights but camera estimation's raised, the noise
    shift that run was trained with, bf16 products like both, and training samples none of the runs before drew."""
    mini, cont, cam, shift = (json.loads((RECIPES / n).read_text()) for n in
                              ("mini.json", "mini_continue.json", "mini_camera.json", "focused_shift.json"))
    assert {t for t in mini["tasks"] if mini["tasks"][t] != cam["tasks"][t]} == {"camera_estimation"}
    assert cam["tasks"]["camera_estimation"] > mini["tasks"]["camera_estimation"]
    assert cam["task_sigma_shift"] == {"camera_estimation": shift["task_sigma_shift"]["camera_estimation"]}
    assert all(cam[k] == cont[k] for k in ("lr", "text_lr", "warmup_steps", "batch_size", "micro_batches", "ema_decay"))
    assert cam["matmul_dtype"] == mini["matmul_dtype"] == shift["matmul_dtype"] == "bf16"
    assert_draws_no_sample_drawn_before("mini_camera.json")


def test_the_multiview_trial_is_focused_shift_with_the_multiview_shift_and_new_samples():
    """focused_multiview.json is focused_shift.json with image to multi-view's noise levels drawn with the same 6x
    shift; run with --seed 13 it draws training samples that none of the fifth release's stages drew."""
    shift, trial = (json.loads((RECIPES / n).read_text()) for n in ("focused_shift.json", "focused_multiview.json"))
    assert {k: v for k, v in trial.items() if k not in ("name", "comment", "task_sigma_shift")} == \
        {k: v for k, v in shift.items() if k not in ("name", "comment", "task_sigma_shift")}
    assert trial["task_sigma_shift"] == dict(shift["task_sigma_shift"], image2multiview=6.0)
    assert_draws_no_sample_drawn_before("focused_multiview.json", only_task="image2multiview", seed=13)


def test_the_multiview_continuation_is_mini_camera_with_the_multiview_weight_and_shift_and_new_samples():
    """mini_multiview.json goes on from the image-to-multi-view-only run (focused_multiview.json, seed 13) on the
    fifth release's task mix: mini_camera.json with image to multi-view's weight raised and the noise shift that run
    was trained with, a shorter time budget, and training samples that none of the stages before drew."""
    cam, mv, trial = (json.loads((RECIPES / n).read_text()) for n in
                      ("mini_camera.json", "mini_multiview.json", "focused_multiview.json"))
    changed = ("name", "comment", "tasks", "task_sigma_shift", "seed", "max_minutes")
    assert {k: v for k, v in mv.items() if k not in changed} == {k: v for k, v in cam.items() if k not in changed}
    assert {t for t in cam["tasks"] if cam["tasks"][t] != mv["tasks"][t]} == {"image2multiview"}
    assert mv["tasks"]["image2multiview"] > cam["tasks"]["image2multiview"]
    assert mv["task_sigma_shift"] == dict(cam["task_sigma_shift"],
                                          image2multiview=trial["task_sigma_shift"]["image2multiview"])
    assert_draws_no_sample_drawn_before("mini_multiview.json")


def test_the_unbeaten_tasks_continuation_raises_only_their_weights_and_draws_new_samples():
    """mini_unbeaten.json goes on from the mix after the multi-view stage: mini_multiview.json with the weights of
    the three tasks that mix did not clearly beat the baseline on raised, a shorter time budget, and training
    samples that none of the stages before drew."""
    mv, unbeaten = (json.loads((RECIPES / n).read_text()) for n in ("mini_multiview.json", "mini_unbeaten.json"))
    changed = ("name", "comment", "tasks", "seed", "max_minutes")
    assert {k: v for k, v in unbeaten.items() if k not in changed} == {k: v for k, v in mv.items() if k not in changed}
    raised = {t for t in mv["tasks"] if unbeaten["tasks"][t] != mv["tasks"][t]}
    assert raised == {"faceid", "image2semanticmap", "image2multiview"}
    assert all(unbeaten["tasks"][t] > mv["tasks"][t] for t in raised)
    assert unbeaten["max_minutes"] <= mv["max_minutes"]
    assert_draws_no_sample_drawn_before("mini_unbeaten.json")


def test_the_faceid_and_views_continuation_changes_only_their_weights_and_shift_and_draws_new_samples():
    """mini_faceid_views.json goes on from the fifth release on mini_unbeaten.json's mix: faceid and image to
    multi-view weighted up further, faceid's noise levels shifted like camera estimation's, image to semantic map
    back to its weight before, a shorter time budget, and training samples that none of the stages before drew."""
    unbeaten, ours = (json.loads((RECIPES / n).read_text()) for n in ("mini_unbeaten.json", "mini_faceid_views.json"))
    changed = ("name", "comment", "tasks", "task_sigma_shift", "seed", "max_minutes")
    kept = {k: v for k, v in unbeaten.items() if k not in changed}
    assert {k: v for k, v in ours.items() if k not in changed} == kept
    moved = {t for t in unbeaten["tasks"] if ours["tasks"][t] != unbeaten["tasks"][t]}
    assert moved == {"faceid", "image2semanticmap", "image2multiview"}
    assert ours["tasks"]["faceid"] > unbeaten["tasks"]["faceid"]
    assert ours["tasks"]["image2multiview"] > unbeaten["tasks"]["image2multiview"]
    mv = json.loads((RECIPES / "mini_multiview.json").read_text())
    assert ours["tasks"]["image2semanticmap"] == mv["tasks"]["image2semanticmap"]
    assert ours["task_sigma_shift"] == {**unbeaten["task_sigma_shift"], "faceid": 6.0}
    assert ours["max_minutes"] <= unbeaten["max_minutes"]
    assert_draws_no_sample_drawn_before("mini_faceid_views.json")


def test_the_further_faceid_continuation_raises_only_faceid_and_draws_new_samples():
    """mini_faceid_more.json goes on from the run of mini_faceid_views.json with only faceid's weight raised, a
    shorter time budget, and training samples that none of the stages before drew."""
    views, ours = (json.loads((RECIPES / n).read_text()) for n in ("mini_faceid_views.json", "mini_faceid_more.json"))
    changed = ("name", "comment", "tasks", "seed", "max_minutes")
    assert {k: v for k, v in ours.items() if k not in changed} == {k: v for k, v in views.items() if k not in changed}
    assert {t for t in views["tasks"] if ours["tasks"][t] != views["tasks"][t]} == {"faceid"}
    assert ours["tasks"]["faceid"] > views["tasks"]["faceid"]
    assert ours["max_minutes"] <= views["max_minutes"]
    assert_draws_no_sample_drawn_before("mini_faceid_more.json")


def test_the_heavy_views_continuation_raises_only_image2multiview_and_draws_new_samples():
    """mini_views_heavy.json goes on from the sixth release (the run of mini_faceid_more.json) with only image to
    multi-view's weight raised (its noise shift kept), a longer time budget, and samples no stage before drew."""
    more, ours = (json.loads((RECIPES / n).read_text()) for n in ("mini_faceid_more.json", "mini_views_heavy.json"))
    changed = ("name", "comment", "tasks", "seed", "max_minutes")
    assert {k: v for k, v in ours.items() if k not in changed} == {k: v for k, v in more.items() if k not in changed}
    assert {t for t in more["tasks"] if ours["tasks"][t] != more["tasks"][t]} == {"image2multiview"}
    assert ours["tasks"]["image2multiview"] > more["tasks"]["image2multiview"]
    assert ours["task_sigma_shift"]["image2multiview"] == 6.0
    assert_draws_no_sample_drawn_before("mini_views_heavy.json")


def test_the_heavier_views_continuation_raises_only_image2multiview_again_and_draws_new_samples():
    """mini_views_heavier.json goes on from the run of mini_views_heavy.json with only image to multi-view's weight
    raised again, a shorter time budget, and samples no stage before drew."""
    heavy, ours = (json.loads((RECIPES / n).read_text()) for n in ("mini_views_heavy.json", "mini_views_heavier.json"))
    changed = ("name", "comment", "tasks", "seed", "max_minutes")
    assert {k: v for k, v in ours.items() if k not in changed} == {k: v for k, v in heavy.items() if k not in changed}
    assert {t for t in heavy["tasks"] if ours["tasks"][t] != heavy["tasks"][t]} == {"image2multiview"}
    assert ours["tasks"]["image2multiview"] > heavy["tasks"]["image2multiview"]
    assert ours["max_minutes"] <= heavy["max_minutes"]
    assert_draws_no_sample_drawn_before("mini_views_heavier.json")


def test_the_reweighted_trial_recipe_is_mini_with_other_task_weights_only():
    """mini_reweighted.json records a rebuild that did not ship (docs/training.md): it must differ from the
    mini.json of its day in the task weights alone, so its result is about the weights. (mini.json has since
    raised its step ceiling from 4000 to 8000, and the fourth release's weights differ too.)"""
    mini, trial = (json.loads((RECIPES / name).read_text()) for name in ("mini.json", "mini_reweighted.json"))
    assert set(mini) == set(trial) and set(mini["tasks"]) == set(trial["tasks"])
    assert trial["steps"] == 4000 and mini["steps"] == 8000
    assert {k: v for k, v in mini.items() if k not in ("comment", "tasks", "steps")} == \
        {k: v for k, v in trial.items() if k not in ("comment", "tasks", "steps")}
    # the fourth release took the trial's deblurring and pose weights, without its cuts to the map tasks
    assert all(trial["tasks"][t] == mini["tasks"][t] for t in ("deblurring", "image2pose"))
    cut = {t for t in mini["tasks"] if trial["tasks"][t] < mini["tasks"][t]}
    assert {"depth2image", "semanticmap2image", "image2depth", "image2hed"} <= cut


def test_a_task_sigma_shift_raises_that_tasks_noise_levels_only(tmp_path):
    """focused_shift.json is focused.json with camera estimation's (and faceid's) noise levels drawn with 6x the shift:
    the same draws, each higher (the shift is monotone), about half above sigma 0.9 instead of a tenth; given frames
    stay clean at the condition timestep, and other tasks keep the sampler's shift."""
    from training.train import Batcher
    from unidiff_core.onediffusion.schedule import DEFAULT_SCHEDULER_CONFIG

    plain, trial = (json.loads((RECIPES / n).read_text()) for n in ("focused.json", "focused_shift.json"))
    assert {k: v for k, v in trial.items() if k not in ("name", "comment", "task_sigma_shift")} == \
        {k: v for k, v in plain.items() if k not in ("name", "comment")}
    recipe = load_recipe(RECIPES / "focused_shift.json", only_task="camera_estimation")
    batcher = Batcher(recipe, None, DEFAULT_SCHEDULER_CONFIG)
    generate = torch.tensor([False, False, False, True])  # camera estimation: view 1's rays generated
    draws = {task: batcher.noise_levels(np.random.default_rng(0), 2000, generate, 64, 0, task)
             for task in ("camera_estimation", "image2depth")}
    shifted, base = draws["camera_estimation"], draws["image2depth"]
    assert torch.all(shifted[0][:, 3] > base[0][:, 3])
    assert 0.42 < float((shifted[0][:, 3] > 0.9).float().mean()) < 0.62
    assert 0.06 < float((base[0][:, 3] > 0.9).float().mean()) < 0.14
    assert torch.equal(shifted[0][:, :3], torch.zeros(2000, 3)) and torch.equal(shifted[1][:, :3], base[1][:, :3])
    bad = dict(trial, task_sigma_shift={"camera": 6.0})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="task_sigma_shift.*'camera'"):
        load_recipe(tmp_path / "bad.json")


def test_label_pairs_give_each_odd_sample_the_previous_photo_with_other_label_colours(tmp_path):
    """focused_label_pairs.json is focused.json with label_pairs for image2semanticmap: an even sample is the
    seed's own, the odd one after it the same photo with every label's colour moved on (the prompt differs where
    there are two labels or more); a task without movable labels is refused."""
    from training.data import make_sample
    from training.data.samples import as_tensor
    from training.train import Batcher
    from unidiff_core.onediffusion.schedule import DEFAULT_SCHEDULER_CONFIG

    plain, trial = (json.loads((RECIPES / n).read_text()) for n in ("focused.json", "focused_label_pairs.json"))
    assert {k: v for k, v in trial.items() if k not in ("name", "comment", "label_pairs")} == \
        {k: v for k, v in plain.items() if k not in ("name", "comment")}
    recipe = load_recipe(RECIPES / "focused_label_pairs.json", only_task="image2semanticmap")
    batcher = Batcher(recipe, None, DEFAULT_SCHEDULER_CONFIG)
    batcher.encode = as_tensor  # pixels stand in for latents
    seeds = list(range(2000, 2008))
    samples, x0, _ = batcher.make("image2semanticmap", None, seeds)
    for i in range(0, 8, 2):
        assert samples[i].request.prompt == make_sample("image2semanticmap", seeds[i], 64).request.prompt
        assert torch.equal(x0[i + 1, 0], x0[i, 0])
        moved = len(samples[i].request.labels) >= 2
        assert (samples[i + 1].request.prompt != samples[i].request.prompt) == moved
        assert torch.equal(x0[i + 1, 1], x0[i, 1]) != moved
    assert any(len(s.request.labels) >= 2 for s in samples)
    (tmp_path / "bad.json").write_text(json.dumps(dict(trial, label_pairs=["image2depth"])))
    with pytest.raises(ValueError, match="label_pairs.*image2depth"):
        load_recipe(tmp_path / "bad.json")


def test_every_recipe_loads_and_the_rebuilds_change_only_what_their_records_compare():
    """Each recipe file passes load_recipe; the rebuild recipes are mini.json but for their task weights and noise
    shifts (mini_reweighted.json also keeps the 4000-step ceiling of the release it was compared with), so a
    rebuild's record measures those alone."""
    for path in sorted(RECIPES.glob("*.json")):
        assert load_recipe(path)["tasks"], path.name
    mini = json.loads((RECIPES / "mini.json").read_text())
    allowed = {"mini_shift.json": {"task_sigma_shift"}, "mini_semantic.json": {"task_sigma_shift"},
               "mini_reweighted.json": {"steps"}}
    for name, extra in allowed.items():
        rebuild = json.loads((RECIPES / name).read_text())
        changed = {k for k in set(mini) | set(rebuild) if mini.get(k) != rebuild.get(k)} - {"name", "comment", "tasks"}
        assert changed == extra, (name, changed)
    semantic, shift = (json.loads((RECIPES / n).read_text())["tasks"] for n in ("mini_semantic.json", "mini_shift.json"))
    assert {t for t in shift if shift[t] != semantic[t]} == {"image2semanticmap"}


def test_task_alone_trains_one_generated_task_and_refuses_unknown_ones(capsys):
    """`--task T` without `--data` (a focused trial, recipes/focused.json) draws only T; a task with no generator
    is refused with the generated ones named."""
    from training.train import main, pick_task

    recipe = load_recipe(RECIPES / "focused.json", only_task="image2pose")
    assert recipe["tasks"] == {"image2pose": 1.0}
    assert {pick_task(recipe, step, micro)[0] for step in range(20) for micro in range(2)} == {"image2pose"}
    assert len(load_recipe(RECIPES / "focused.json")["tasks"]) == 22  # without --task: the whole mix

    # an 18-minute trial on one process draws samples Mini's training never drew
    assert not drawn_seeds(recipe, 1200, 1) & drawn_seeds(load_recipe(RECIPES / "mini.json"), 8000, 2)
    with pytest.raises(SystemExit):
        main(["--recipe", str(RECIPES / "focused.json"), "--out", "unused", "--task", "image2normals"])
    err = capsys.readouterr().err
    assert "['image2normals']" in err and "image2pose" in err
    with pytest.raises(SystemExit):
        main(["--recipe", str(RECIPES / "focused.json"), "--out", "unused", "--data", "folder"])
    assert "--data needs --task" in capsys.readouterr().err


def test_the_binding_trials_differ_only_in_their_text_path():
    """binding_text64.json and binding_text128.json are one run but for the text encoder and the transformer's
    caption width, so their label-probe figures compare the text path alone."""
    small, wide = (json.loads((RECIPES / n).read_text()) for n in ("binding_text64.json", "binding_text128.json"))
    changed = {k for k in set(small) | set(wide) if small.get(k) != wide.get(k)} - {"name", "comment"}
    assert changed == {"transformer", "text_encoder"}
    moved = {k for k in small["transformer"] if small["transformer"][k] != wide["transformer"][k]}
    assert moved == {"caption_channels"}
    assert wide["text_encoder"]["width"] == 2 * small["text_encoder"]["width"] == wide["transformer"]["caption_channels"]
    assert load_recipe(RECIPES / "binding_text128.json", only_task="image2semanticmap")["label_pairs"] == [
        "image2semanticmap"]
