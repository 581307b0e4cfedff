"""The loop's state (optimize.LoopState): a run continued from the state of any step makes the same Steps, bit for
bit, as the run that never stopped, for every optimiser, mid-story, and for a batch's images taken apart or
together."""

from __future__ import annotations

import pytest
import torch

from vqclip.config import resolve
from vqclip.optimize import OPTIMIZERS, LoopState
from vqclip.runner import ModelCache, prepare_run


@pytest.fixture(scope="module")
def cache():
    return ModelCache()


def run_for(tiny_models, cache, **options):
    cfg = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 6,
            "cutouts.cutn": 2,
            "device": "cpu",
            "seed": 2,
            "prompt": "a red circle",
            **options,
        }
    )
    return prepare_run(cfg, outputs=False, models=cache)


def same(a, b) -> bool:
    return a.i == b.i and torch.equal(a.image, b.image) and torch.equal(a.loss, b.loss)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_continuing_from_any_steps_state_repeats_the_run(optimizer, tiny_models, cache):
    # weight decay and init_weight: every term of the update and the loss depends on the restored state
    run = run_for(
        tiny_models,
        cache,
        **{
            "optim.name": optimizer,
            "optim.weight_decay": 0.01,
            "init_weight": 0.3,
            "keyframes": {0: "a red circle", 3: "a blue square"},
        },
    )
    whole = list(run.steps())
    assert whole[-1].final and [s.state.step for s in whole] == [1, 2, 3, 4, 5, 6, 6]
    for k in (0, 2, 4, 5):  # resume at steps 1, 3 (the story's second segment starts there), 5 and 6
        again = list(run.steps(starts=[whole[k].state]))
        assert len(again) == len(whole) - k - 1
        assert all(same(a, b) for a, b in zip(again, whole[k + 1 :], strict=True))


def test_a_batchs_images_continue_apart_or_together(tiny_models, cache):
    run = run_for(tiny_models, cache)
    prompts, seeds = [run.plan.prompts, run.plan.prompts], [2, 9]
    whole = list(run.steps(prompts, seeds))
    state = whole[2].state
    parts = [state.image(0), state.image(1)]
    assert parts[0].z.shape[0] == 1 and parts[0].optim["step"] is state.optim["step"]  # Adam's count is shared
    again = list(run.steps(prompts, seeds, starts=parts))
    assert all(same(a, b) for a, b in zip(again, whole[3:], strict=True))
    with pytest.raises(ValueError, match="same step"):
        LoopState.stack([parts[0], whole[3].state.image(1)])


# every quality control that keeps or draws something as the run goes: the EMA's average travels in the state,
# the schedules are functions of the step, the rest draw from the generators the state carries
CONTROLS = {
    "ema": {"optim.ema": 0.9},
    "schedules": {"optim.schedule": "cosine", "init_schedule": "linear", "init_weight": 0.3},
    "losses": {"losses.tv": 0.5, "losses.saturation": 0.5},
    "noise prompts": {"noise_prompt_seeds": [7], "noise_prompt_weights": [0.5]},
    "overview cutouts, new augmentations": {
        "cutouts.method": "overview",
        "cutouts.augments": ["perspective", "erasing", "jitter"],
    },
    "perlin init": {"init": "perlin"},
}


@pytest.mark.parametrize("controls", CONTROLS.values(), ids=list(CONTROLS))
def test_continuing_with_a_quality_control_repeats_the_run(controls, tiny_models, cache):
    run = run_for(tiny_models, cache, **controls)
    whole = list(run.steps())
    assert (whole[3].state.ema is not None) == ("optim.ema" in controls)
    again = list(run.steps(starts=[whole[2].state]))
    assert all(same(a, b) for a, b in zip(again, whole[3:], strict=True))
    assert torch.equal(again[-1].extras["z"], whole[-1].extras["z"])
