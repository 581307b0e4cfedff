"""The quality controls (inits, schedules, optimisers, EMA, image losses, noise prompts, cutout methods and the
newer augmentations), each run through the real loop (`vqclip.runner.generate`) on the tiny real-file models,
each checked for the effect it is there for."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from vqclip import choices, optimize
from vqclip.cli import app
from vqclip.config import resolve
from vqclip.cutouts import AUGMENTS, make_cutouts
from vqclip.errors import ConfigError
from vqclip.losses import saturation, tv
from vqclip.optimize import EMA
from vqclip.runner import ModelCache, generate
from vqclip.schedules import SCHEDULES, factor

runner = CliRunner()


_CACHE = ModelCache()  # the tiny models load once for the module, as a batch's groups share them


def _steps(tiny_models, *sets: str, steps: int = 4, size: int = 32) -> list:
    cfg = resolve(
        options={
            "prompt": "a red circle",
            "model.vqgan": str(tiny_models["vqgan"]),
            "model.clip": [tiny_models["clip"]],
            "steps": steps,
            "width": size,
            "height": size,
            "cutouts.cutn": 4,
            "device": "cpu",
            "seed": 3,
        },
        overrides=sets,
    )
    return list(generate(cfg, _CACHE))


def _final(steps) -> torch.Tensor:
    assert steps[-1].final
    return steps[-1].image


@pytest.fixture
def made(monkeypatch):
    """Every optimiser the loop builds, with its latent as it started and the lr of each of its steps."""
    made = []

    def spying(name, factory):
        def build(params, lr, wd, **kw):
            opt = factory(params, lr, wd, **kw)
            opt.start, opt.lrs = params[0].detach().clone(), []
            step = opt.step
            opt.step = lambda *a, **k: (opt.lrs.append(opt.param_groups[0]["lr"]), step(*a, **k))[1]
            made.append(opt)
            return opt

        return build

    for name, factory in list(optimize.OPTIMIZERS.items()):
        monkeypatch.setitem(optimize.OPTIMIZERS, name, spying(name, factory))
    return made


@pytest.mark.parametrize("init", choices.INIT_NAMES)
def test_every_init_starts_a_run_that_depends_on_the_seed(tiny_models, init):
    a = _steps(tiny_models, f"init={init}", steps=1)
    b = _steps(tiny_models, f"init={init}", "seed=4", steps=1)
    assert a[0].image.shape == (1, 3, 32, 32) and torch.isfinite(_final(a)).all()
    assert not torch.equal(a[0].image, b[0].image), "the start must come from the seed"


def test_inits_start_from_different_pictures(tiny_models):
    starts = {init: _steps(tiny_models, f"init={init}", steps=1)[0].image for init in choices.INIT_NAMES}
    names = sorted(starts)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            assert not torch.allclose(starts[x], starts[y]), (x, y)


def test_drop75_divides_the_lr_by_10_for_the_last_quarter(tiny_models, made):
    constant = _steps(tiny_models, "optim.lr=0.2", steps=8)
    dropped = _steps(tiny_models, "optim.lr=0.2", "optim.schedule=drop75", steps=8)
    assert made[0].lrs == [0.2] * 8
    assert made[1].lrs == pytest.approx([0.2] * 6 + [0.02] * 2)
    assert not torch.equal(constant[-1].extras["z"], dropped[-1].extras["z"])


@pytest.mark.parametrize("name", choices.SCHEDULE_NAMES)
def test_schedules_start_near_full_strength_and_stay_in_range(name):
    values = [factor(name, i, 100) for i in range(100)]
    assert all(0 <= v <= 1 for v in values) and max(values) == pytest.approx(1.0, abs=0.02)
    assert SCHEDULES[name](0.5) <= 1


def test_a_decaying_init_pull_weighs_less_as_the_run_goes(tiny_models):
    """Step 0's pull is 0 (z is still the start); from step 1 the decaying one adds less to the loss."""
    free = _steps(tiny_models, steps=6)
    constant = _steps(tiny_models, "init_weight=5", steps=6)
    decaying = _steps(tiny_models, "init_weight=5", "init_schedule=linear", steps=6)
    assert constant[0].loss.item() == decaying[0].loss.item() == free[0].loss.item()
    pull = lambda run, i: run[i].loss.item() - free[i].loss.item()  # noqa: E731 - the images are the same so far
    assert all(torch.equal(a.image, b.image) for a, b in zip(free[:3], constant[:3]))
    assert 0 < pull(decaying, 2) < pull(constant, 2)


@pytest.mark.parametrize("name", choices.OPTIMIZER_NAMES)
def test_every_optimiser_moves_the_latent(tiny_models, made, name):
    steps = _steps(tiny_models, f"optim.name={name}", "optim.lr=0.05")
    assert type(made[0]).__name__.lower() == name
    assert torch.isfinite(_final(steps)).all()
    assert not torch.equal(made[0].start, steps[-1].extras["z"])


def test_optimisers_take_different_paths(tiny_models):
    finals = {
        name: _steps(tiny_models, f"optim.name={name}", "optim.lr=0.05")[-1].extras["z"]
        for name in ("adam", "adagrad", "rmsprop")
    }
    assert not torch.equal(finals["adam"], finals["adagrad"])
    assert not torch.equal(finals["adam"], finals["rmsprop"])


def test_ema_is_a_bias_corrected_average():
    ema = EMA(torch.tensor([1.0]), 0.5)
    ema.update(torch.tensor([3.0]))
    # biased: 0.5 * (0.5 * 1) + 0.5 * 3 = 1.75 over 1 - 0.25 -> (0.25 * 1 + 0.5 * 3) / 0.75 weights 1/3, 2/3
    assert ema.average.item() == pytest.approx(1 / 3 + 2)


def test_ema_output_lags_the_last_latent(tiny_models, made):
    plain = _steps(tiny_models, steps=6)
    averaged = _steps(tiny_models, "optim.ema=0.9", steps=6)
    assert all(torch.equal(a.image, b.image) for a, b in zip(plain[:-1], averaged[:-1])), "EMA changes no step"
    start, last, ema = made[1].start, plain[-1].extras["z"], averaged[-1].extras["z"]
    # the average sits between where z started and where it ended
    assert 0 < (ema - start).norm() < (last - start).norm()


def test_tv_loss_smooths_and_saturation_loss_colours(tiny_models):
    # lr 1: the tiny random codebook is spread out, so z must move far for its codes to change
    plain = _final(_steps(tiny_models, "optim.lr=1", steps=10))
    smooth = _final(_steps(tiny_models, "optim.lr=1", "losses.tv=20", steps=10))
    vivid = _final(_steps(tiny_models, "optim.lr=1", "losses.saturation=20", steps=10))
    assert tv(smooth) < tv(plain)
    assert saturation(vivid) < saturation(plain)  # the loss is minus colourfulness


def test_image_losses_measure_what_they_say():
    flat = torch.full((1, 3, 16, 16), 0.5)
    noisy = flat + 0.2 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert tv(flat) < 1e-3 < tv(noisy)
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 1
    assert saturation(red) < saturation(flat)


def test_noise_prompts_add_a_seeded_target(tiny_models):
    plain = _steps(tiny_models, steps=2)
    noise = _steps(tiny_models, "noise_prompt_seeds=[7]", "noise_prompt_weights=[0.5]", steps=2)
    again = _steps(tiny_models, "noise_prompt_seeds=[7]", "noise_prompt_weights=[0.5]", steps=2)
    other = _steps(tiny_models, "noise_prompt_seeds=[8]", "noise_prompt_weights=[0.5]", steps=2)
    assert noise[0].loss.item() > plain[0].loss.item()  # one more positive distance on the same image
    assert noise[0].loss.item() == again[0].loss.item() != other[0].loss.item()


@pytest.mark.parametrize("seeds, weights", [("[7]", "[]"), ("[7,8]", "[1]"), ("[-1]", "[0.5]")])
def test_bad_noise_prompts_are_one_line(seeds, weights):
    with pytest.raises(ConfigError, match="noise_prompt"):
        resolve(overrides=[f"noise_prompt_seeds={seeds}", f"noise_prompt_weights={weights}"])


@pytest.mark.parametrize("method", choices.CUTOUT_METHOD_NAMES)
def test_every_cutout_method_runs_the_loop(tiny_models, method):
    steps = _steps(tiny_models, f"cutouts.method={method}", size=64)
    assert torch.isfinite(_final(steps)).all()


def _crops(method: str, augments=(), cutn: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return image, make_cutouts(image, 32, cutn, 1.0, augments, [torch.Generator().manual_seed(1)], method)


def test_overview_shows_the_whole_image_in_a_quarter_of_the_crops():
    image, crops = _crops("overview")
    whole = torch.nn.functional.avg_pool2d(image, 2)  # the whole 64 px image sampled at 2x32 and pooled
    assert torch.allclose(crops[0], whole[0], atol=1e-5) and torch.allclose(crops[1], whole[0], atol=1e-5)
    assert not torch.allclose(crops[2], whole[0], atol=1e-2)
    _, random_crops = _crops("crops")
    assert torch.equal(crops[2:], random_crops[2:]), "the other crops are the random ones"


def test_pooled_cutouts_are_the_average_and_max_pool():
    image, crops = _crops("pooled")
    pooled = (torch.nn.functional.avg_pool2d(image, 2) + torch.nn.functional.max_pool2d(image, 2)) / 2
    assert torch.allclose(crops, pooled.expand_as(crops), atol=1e-5)


@pytest.mark.parametrize("name", ["perspective", "erasing", "jitter"])
def test_new_augmentations_change_crops_and_run_the_loop(tiny_models, name):
    _, plain = _crops("crops")
    _, augmented = _crops("crops", (name,))
    assert augmented.shape == plain.shape and not torch.allclose(plain, augmented)
    assert torch.isfinite(_final(_steps(tiny_models, f"cutouts.augments=[{name}]"))).all()


def test_jitter_keeps_grey_grey_and_turns_hue():
    grey = torch.full((4, 3, 8, 8), 0.4)
    out = AUGMENTS["jitter"][1](grey, torch.Generator().manual_seed(0))
    assert torch.allclose(out, grey, atol=1e-5)
    red = torch.zeros(64, 3, 8, 8)
    red[:, 0] = 0.8
    turned = AUGMENTS["jitter"][1](red, torch.Generator().manual_seed(0))
    hues = (
        torch.atan2(math.sqrt(3) * (turned[:, 1] - turned[:, 2]), 2 * turned[:, 0] - turned[:, 1] - turned[:, 2])
        .flatten(1)
        .mean(1)
    )
    assert hues.abs().max() <= 0.1 * 2 * math.pi + 1e-4 and hues.std() > 0.05


def test_erasing_leaves_about_half_the_crops_untouched():
    image, crops = _crops("crops", ("erasing",), cutn=64)
    _, plain = _crops("crops", (), cutn=64)
    untouched = sum(torch.equal(a, b) for a, b in zip(crops, plain))
    assert 16 <= untouched <= 48


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("init", "snow", "unknown init 'snow'"),
        ("optim.schedule", "step", "unknown lr schedule 'step'"),
        ("cutouts.method", "dango", "unknown cutout method 'dango'"),
        ("losses.sharpness", "1", "unknown loss 'sharpness'"),
        ("optim.ema", "1.0", "optim.ema must be 0"),
        ("optim.name", "lbfgs", "unknown optimizer 'lbfgs'"),
    ],
)
def test_bad_control_is_one_line_naming_the_choices(key, value, fragment):
    result = runner.invoke(app, ["generate", "x", "--set", f"{key}={value}"])
    assert result.exit_code == 2 and fragment in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
