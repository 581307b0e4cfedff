import pytest

from vqclip.config import Config, list_presets, resolve, to_yaml
from vqclip.errors import ConfigError, UnknownNameError


def test_defaults_are_the_dataclass():
    assert resolve() == Config()


def test_order_presets_options_sets(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("steps: 7\noptim:\n  lr: 0.3\n")
    cfg = resolve([str(preset)], options={"steps": 9}, overrides=["optim.lr=0.01", "cutouts.augments=[flip]"])
    assert (cfg.steps, cfg.optim.lr, cfg.cutouts.augments) == (9, 0.01, ["flip"])


def test_recorded_yaml_round_trips():
    cfg = resolve(options={"prompt": "a: b|c:-1", "seed": 5, "width": 64})
    assert resolve(base_yaml=to_yaml(cfg)) == cfg


@pytest.mark.parametrize(
    "sets, fragment",
    [
        (["nope=1"], "unknown config key 'nope'"),
        (["optim.nope=1"], "unknown config key 'optim.nope'"),
        (["steps=many"], "steps"),
        (["steps"], "key=value"),
        (["steps=0"], "steps must be positive"),
        (["optim.lr=-1"], "optim.lr must be positive"),
        (["cutouts.cutn=0"], "cutouts.cutn must be positive"),
        (["device=tpu"], "device"),
        (
            ["speed.compile_mode=fastest"],
            "speed.compile_mode must be default, reduce-overhead or max-autotune, got 'fastest'",
        ),
    ],
)
def test_bad_overrides_name_the_key(sets, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        resolve(overrides=sets)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="adamw"):
        resolve(overrides=["optim.name=lbfgs"])
    with pytest.raises(UnknownNameError, match="flip"):
        resolve(overrides=["cutouts.augments=[swirl]"])
    with pytest.raises(UnknownNameError, match="preset"):
        resolve(["no-such-preset"])


def test_shipped_presets_load():
    names = list_presets()
    assert names, "configs/ has presets"
    for name in names:
        assert isinstance(resolve([name]), Config)


def test_variant_tables_carry_exactly_the_names_config_offers():
    """config validates names without importing the loop; the loop's tables must match those names."""
    from vqclip import choices
    from vqclip.cutouts import AUGMENTS, CUTOUT_METHODS
    from vqclip.inits import INITS
    from vqclip.losses import LOSSES
    from vqclip.optimize import OPTIMIZERS
    from vqclip.schedules import SCHEDULES

    assert set(OPTIMIZERS) == set(choices.OPTIMIZER_NAMES)
    assert set(AUGMENTS) == set(choices.AUGMENT_NAMES)
    assert set(CUTOUT_METHODS) == set(choices.CUTOUT_METHOD_NAMES)
    assert set(INITS) == set(choices.INIT_NAMES)
    assert set(SCHEDULES) == set(choices.SCHEDULE_NAMES)
    assert set(LOSSES) == set(choices.LOSS_NAMES)


QUALITY_PRESETS = ("draft", "normal", "better", "best", "pixray")


@pytest.mark.parametrize("name", QUALITY_PRESETS)
def test_quality_presets_change_only_the_loop(name):
    """A quality preset combines with a model preset: after `toy`, the models and size stay toy's."""
    toy, both = resolve(["toy"]), resolve(["toy", name])
    assert (both.model, both.width, both.height) == (toy.model, toy.width, toy.height)
    assert both != toy, f"{name} changes nothing"
