"""Animations stopped and resumed in the library (the CLI with a real SIGINT is in test_interrupt.py): the resumed
animation continues from its last finished frame and ends with the frames and video of one never stopped."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from vqclip.animate import run_animation
from vqclip.config import resolve
from vqclip.outputs import read_png_metadata
from vqclip.runner import ModelCache, prepare_resume, prepare_run
from vqclip.writer import Interrupted


def config(tiny_models, out):
    return resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 3,
            "cutouts.cutn": 2,
            "device": "cpu",
            "seed": 3,
            "prompt": "a red circle^a blue square",
            "output.dir": str(out),
            "output.name": "anim",
            "animation.frames": 6,
            "animation.steps_per_frame": 2,
            "animation.blend": 1,
            "animation.zoom": 1.05,
        }
    )


def frames_in(video):
    with imageio.get_reader(video, format="FFMPEG") as reader:
        return [frame for frame in reader]


def test_an_animation_stopped_after_a_frame_resumes_from_the_next(tiny_models, tmp_path):
    cache = ModelCache()

    def stop_in_frame_3(step):
        if step.i == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as e:
        run_animation(
            prepare_run(config(tiny_models, tmp_path / "a"), unit="frame", models=cache), on_frame=stop_in_frame_3
        )
    assert e.value.result.step == 2 and e.value.result.state is not None  # frames 0-2 finished
    folder = tmp_path / "a" / "anim"
    assert len(frames_in(folder / "animation.mp4")) == 3
    resumed = run_animation(prepare_resume(folder, animation=True, models=cache))
    whole = run_animation(prepare_run(config(tiny_models, tmp_path / "b"), unit="frame", models=cache))
    assert np.array_equal(np.asarray(Image.open(resumed.image)), np.asarray(Image.open(whole.image)))
    assert resumed.resumed == [3] and read_png_metadata(resumed.image)["resumed"] == "[3]"
    # no frame PNGs to rebuild it from: the video keeps the stopped run's 3 frames (read back from its mp4)
    assert len(frames_in(resumed.videos[0])) == len(frames_in(whole.videos[0])) == 6
    assert not list(folder.glob("state*"))
