"""What write_steps tells a run's observers (vqclip.observe): every Step, images only at the frame cadence, then each
writer's result and how the loop ended; on tiny real models through vqclip.run, batch and animate."""

from __future__ import annotations

import pytest
from tiny import tiny_cfg

from vqclip.observe import Observer
from vqclip.runner import run
from vqclip.writer import Interrupted, Layout


class Recorder(Observer):
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def expect(self, steps):
        self.calls.append(("expect", steps))

    def begin(self, writers):
        self.calls.append(("begin", [w.index for w in writers]))

    def step(self, step):
        self.calls.append(("step", step.i, step.final))
        if self.stop_at is not None and step.i == self.stop_at:
            raise KeyboardInterrupt

    def frame(self, writer, step):
        assert step.image.ndim == 4 and writer.index < step.image.shape[0]
        self.calls.append(("frame", writer.index, step.i))

    def finish(self, writer, result):
        assert writer.last is not None and result.image.is_file()
        self.calls.append(("finish", writer.index, result.status))

    def end(self, status):
        self.calls.append(("end", status))

    def of(self, kind):
        return [c[1:] for c in self.calls if c[0] == kind]


@pytest.mark.parametrize("save_every, steps", [(3, 7), (4, 8), (0, 5)])
def test_every_step_seen_images_only_at_the_frame_cadence(tiny_models, tmp_path, save_every, steps):
    rec = Recorder()
    run(tiny_cfg(tiny_models, tmp_path, steps=steps, **{"output.save_every": save_every}), observers=[rec])
    every = Layout(save_every).watch_every
    assert rec.calls[0] == ("begin", [0])
    assert rec.of("step") == [(i, False) for i in range(steps)] + [(steps, True)]
    assert rec.of("frame") == [(0, i) for i in range(0, steps, every)]  # a still's final image comes with finish
    assert rec.calls[-2:] == [("finish", 0, "complete"), ("end", "complete")]


def test_a_run_that_keeps_no_frames_still_shows_images():
    assert Layout(0, 0).watch_every == 50 and Layout(5, 0).watch_every == 5 and Layout(0, 2).watch_every == 2


def test_ctrl_c_ends_as_interrupted_after_the_images_are_saved(tiny_models, tmp_path):
    rec = Recorder(stop_at=2)
    with pytest.raises(Interrupted):
        run(tiny_cfg(tiny_models, tmp_path, steps=10), observers=[rec])
    assert rec.calls[-2:] == [("finish", 0, "interrupted"), ("end", "interrupted")]


def test_an_error_ends_as_error_without_finish(tiny_models, tmp_path):
    class Broken(Recorder):
        def step(self, step):
            super().step(step)
            if step.i == 1:
                raise RuntimeError("boom")

    rec = Broken()
    with pytest.raises(RuntimeError, match="boom"):
        run(tiny_cfg(tiny_models, tmp_path, steps=5), observers=[rec])
    assert rec.calls[-1] == ("end", "error") and not rec.of("finish")


def test_batch_tells_the_total_then_every_group(tiny_models, tmp_path):
    from vqclip.batch import plan_jobs, run_batch
    from vqclip.jobs import Job

    base = tiny_cfg(tiny_models, tmp_path, steps=3, **{"output.save_every": 2})
    jobs = [
        Job(index=k, id=f"j{k}", prompt=p, options={}, source=f"line {k + 1}")
        for k, p in enumerate(["a red circle", "a blue square", "a green star"])
    ]
    planned = plan_jobs(jobs, base, base_seed=5)
    rec = Recorder()
    import torch

    run_batch(planned, tmp_path / "batch", torch.device("cpu"), batch_size=2, observers=[rec], sheet=False)
    assert rec.calls[0] == ("expect", 2 * 4)  # two groups (2 + 1 images) of 3 steps and a final one
    assert rec.of("begin") == [([0, 1],), ([0],)]
    assert rec.of("frame") == [(0, 0), (1, 0), (0, 2), (1, 2), (0, 0), (0, 2)]
    assert [c for c in rec.calls if c[0] in ("finish", "end")] == [
        ("finish", 0, "complete"),
        ("finish", 1, "complete"),
        ("end", "complete"),
        ("finish", 0, "complete"),
        ("end", "complete"),
    ]


def test_animation_shows_every_frame(tiny_models, tmp_path):
    from vqclip.animate import run_animation
    from vqclip.runner import prepare_run

    cfg = tiny_cfg(tiny_models, tmp_path, steps=2, **{"animation.frames": 3, "animation.steps_per_frame": 1})
    rec = Recorder()
    run_animation(prepare_run(cfg, unit="frame"), observers=[rec])
    assert rec.of("frame") == [(0, 0), (0, 1), (0, 2)]
    assert rec.of("step") == [(0, False), (1, False), (2, True)]
