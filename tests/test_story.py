"""Story mode: the prompt schedule switches the loop's targets at the right steps, recorded in the PNGs."""

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.config import Config, resolve
from vqclip.errors import ConfigError, PromptError
from vqclip.outputs import read_png_metadata
from vqclip.runner import generate
from vqclip.story import parse_keyframes, prompt_at, segments


def cfg_for(tiny_models, prompt, **extra):
    options = {
        "prompt": prompt,
        "seed": 5,
        "steps": 6,
        "width": 32,
        "height": 32,
        "device": "cpu",
        "model.vqgan": tiny_models["vqgan"],
        "model.clip": [tiny_models["clip"]],
        "cutouts.cutn": 2,
        **extra,
    }
    return resolve(options=options)


def test_schedule_forms():
    assert segments(resolve(options={"prompt": "a seed^a sapling^a great oak", "steps": 10})) == [
        (0, "a seed"),
        (3, "a sapling"),
        (6, "a great oak"),
    ]
    assert segments(resolve(options={"prompt": "a^b", "steps": 10, "story_every": 4})) == [(0, "a"), (4, "b")]
    keyed = resolve(options={"prompt": "a", "steps": 10, "keyframes": {7: "c", 2: "b:2|x:-1"}})
    assert segments(keyed) == [(0, "a"), (2, "b:2|x:-1"), (7, "c")]
    assert [prompt_at(segments(keyed), s) for s in (0, 1, 2, 6, 7, 10)] == ["a", "a", "b:2|x:-1", "b:2|x:-1", "c", "c"]
    assert segments(resolve(options={"prompt": "plain", "steps": 10})) == [(0, "plain")]
    with pytest.raises(PromptError, match="empty part"):
        segments(resolve(options={"prompt": "a^^b"}))
    with pytest.raises(ConfigError, match="starts at step 20"):
        segments(resolve(options={"prompt": "a^b", "steps": 10, "story_every": 20}))
    with pytest.raises(ConfigError, match="step 0"):
        segments(resolve(options={"keyframes": {3: "b"}}))


def test_schedule_over_frames_counts_frames_not_steps():
    """animate lays the same forms over animation.frames; its messages say frame and --frames."""
    cfg = resolve(options={"prompt": "a^b^c", "steps": 300, "animation.frames": 12})
    assert segments(cfg, "frame") == [(0, "a"), (4, "b"), (8, "c")]
    assert segments(cfg) == [(0, "a"), (100, "b"), (200, "c")]  # the same config over steps
    every = resolve(options={"prompt": "a^b", "story_every": 5, "animation.frames": 12, "keyframes": {11: "z"}})
    assert segments(every, "frame") == [(0, "a"), (5, "b"), (11, "z")]
    late = resolve(options={"prompt": "a", "animation.frames": 12, "keyframes": {12: "z"}})
    with pytest.raises(
        ConfigError,
        match=r"^keyframe 12 \('z'\) is past the last frame: the animation has 12 frames "
        r"\(0-11\); move it below 12 or raise --frames$",
    ):
        segments(late, "frame")
    with pytest.raises(ConfigError, match="starts at frame 15 but the animation has 12 frames"):
        segments(resolve(options={"prompt": "a^b", "story_every": 15, "animation.frames": 12}), "frame")
    with pytest.raises(ConfigError, match="add a keyframe at frame 0"):
        segments(resolve(options={"keyframes": {3: "b"}}), "frame")


def test_keyframes_from_the_command_line_forms():
    assert parse_keyframes(["0=a seed", " 150 = a sapling:2|x:-1 ", "7=a=b"]) == {
        0: "a seed",
        150: "a sapling:2|x:-1",
        7: "a=b",
    }
    for bad in ("30", "-3=a", "1.5=a", "abc=a", "2=", "=a", "2=  "):
        with pytest.raises(ConfigError, match="--keyframe takes N=PROMPT"):
            parse_keyframes([bad])
    with pytest.raises(ConfigError, match="--keyframe 2 is given twice"):
        parse_keyframes(["2=a", "2=b"])
    # --set keyframes.N=... works too: the dotted key's text becomes a number
    assert resolve(overrides=["keyframes.150=a sapling", "keyframes.0=a seed"]).keyframes == {
        0: "a seed",
        150: "a sapling",
    }
    with pytest.raises(ConfigError, match="keyframes map step \\(or frame\\) numbers to prompts, got 'abc'"):
        resolve(overrides=["keyframes.abc=x"])


def test_story_switches_prompt_at_the_right_step(tiny_models):
    plain = list(generate(cfg_for(tiny_models, "a red circle")))
    story = list(generate(cfg_for(tiny_models, "a red circle^a blue square", story_every=3)))
    same = list(generate(cfg_for(tiny_models, "a red circle^a red circle", story_every=3)))
    # steps 0-2: the same images scored against the same prompt
    for k in range(3):
        assert torch.equal(story[k].image, plain[k].image) and torch.equal(story[k].loss, plain[k].loss)
    # step 3: the image three updates made under "a red circle", now scored against "a blue square"
    assert torch.equal(story[3].image, plain[3].image)
    assert not torch.allclose(story[3].loss, plain[3].loss)
    # from then on the updates follow the new prompt (the decoded image moves only when a code flips)
    assert not torch.equal(story[-1].extras["z"], plain[-1].extras["z"])
    # switching to the same prompt changes nothing: the schedule itself does not perturb the run
    assert all(torch.equal(a.image, b.image) and torch.equal(a.loss, b.loss) for a, b in zip(same, plain))


def test_story_recorded_in_png_and_keyframes_from_yaml(tiny_args, tmp_path):
    preset = tmp_path / "story.yaml"
    preset.write_text("keyframes:\n  2: a sapling\n  4: a great oak\n")
    result = CliRunner().invoke(
        app,
        ["generate", "a seed", *tiny_args, "--steps", "6", "--save-every", "1", "--preset", str(preset), "--seed", "1"],
    )
    assert result.exit_code == 0, result.output
    final = result.stdout.strip().splitlines()[-1]
    meta = read_png_metadata(final)
    assert json.loads(meta["story"]) == [[0, "a seed"], [2, "a sapling"], [4, "a great oak"]]
    assert meta["active_prompt"] == "a great oak"
    frames = sorted((tmp_path / "out").glob("*/frames/*.png"))
    assert [read_png_metadata(f)["active_prompt"] for f in frames] == [
        "a seed",
        "a seed",
        "a sapling",
        "a sapling",
        "a great oak",
        "a great oak",
    ]


@pytest.mark.parametrize("command, span", [("generate", "step"), ("animate", "frame")])
def test_a_keyframe_on_a_story_switch_is_refused_not_dropped(command, span, tiny_args, no_model_loads):
    """`"a^b" --keyframe 5=c` over 10 steps (frames) used to run a, c: "b" vanished without a word."""
    length = ["--steps", "10"] if command == "generate" else ["--frames", "10"]
    result = CliRunner().invoke(app, [command, "a^b", "--keyframe", "5=c", *tiny_args, *length])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: keyframe 5 ('c') starts where the story 'a^b' switches to 'b' ({span} 5); move the "
        f"keyframe, or set --story-every{' (frames)' if span == 'frame' else ''} so they do not meet"
    ]
    plain = CliRunner().invoke(app, [command, "a", "--keyframe", "0=c", *tiny_args, *length])
    assert plain.exit_code == 2 and f"both start at {span} 0" in plain.stderr
    # the same prompt twice at one step drops nothing, so it is no conflict
    assert segments(Config(prompt="a^b", steps=10, keyframes={5: "b", 0: "a"})) == [(0, "a"), (5, "b")]


def test_story_and_keyframes_merge_through_the_cli(tiny_args):
    result = CliRunner().invoke(
        app, ["generate", "a^b", "--keyframe", "7=c", *tiny_args, "--steps", "10", "--save-every", "0", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    meta = read_png_metadata(result.stdout.strip().splitlines()[-1])
    assert json.loads(meta["story"]) == [[0, "a"], [5, "b"], [7, "c"]] and meta["active_prompt"] == "c"


@given(
    parts=st.integers(1, 5),
    steps=st.integers(1, 40),
    every=st.integers(0, 12),
    keys=st.dictionaries(st.integers(0, 45), st.sampled_from(["x", "y:2", "z|w:-1"]), max_size=5),
)
def test_the_schedule_keeps_every_prompt_or_refuses(parts, steps, every, keys):
    """The whole class: every story part and every keyframe is in the schedule at its start, or ConfigError."""
    story = [f"part {k}" for k in range(parts)]
    cfg = Config(prompt="^".join(story), steps=steps, story_every=every, keyframes=keys)
    try:
        schedule = segments(cfg)
    except ConfigError:
        return
    starts = dict(schedule)
    assert len(schedule) == parts + len(keys)
    assert all(starts[s] == text for s, text in keys.items())
    assert [text for text in starts.values() if text.startswith("part")] == story
