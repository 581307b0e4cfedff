"""Which folder and state a batch job left in flight continues from (vqclip.inflight), decided before any model
loads: its own folder when that folder is the job's, its state only when the state is the job's."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from vqclip.batch import job_folder, plan_jobs
from vqclip.config import resolve, to_yaml
from vqclip.inflight import in_flight
from vqclip.jobs import read_jobs
from vqclip.optimize import LoopState
from vqclip.outputs import save_png
from vqclip.provenance import metadata
from vqclip.resume import state_meta
from vqclip.state import write_state

CPU = torch.device("cpu")


@pytest.fixture
def planned(tiny_models, tmp_path):
    base = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 6,
            "cutouts.cutn": 2,
            "device": "cpu",
        }
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square\n")
    return plan_jobs(read_jobs(prompts), base, 7)


def flights(planned, out, records=()):
    return in_flight([(p.job.id, job_folder(p), p.cfg, p.plan, p.job.source) for p in planned], out, list(records), CPU)


def save_state(p, folder, step=3, **changes):
    """A state of job p as a run of it would have saved (the loop's tensors made up, of the right shapes)."""
    folder.mkdir(parents=True, exist_ok=True)
    z = torch.zeros(1, 32, 16, 16)
    meta = state_meta(p.cfg, p.plan, "still", {"vqgan": "-", "clip": ["-"]}, CPU, job=p.job.id)
    write_state(folder, LoopState(step, z, z, {}, [torch.Generator().get_state()]), {**meta, **changes})


def test_nothing_left_nothing_resumed(planned, tmp_path, no_model_loads):
    assert flights(planned, tmp_path / "out") == {}


def test_an_empty_folder_or_one_with_the_jobs_frames_is_reused_from_step_0(planned, tmp_path, no_model_loads):
    out = tmp_path / "out"
    first, second = planned
    (out / job_folder(first)).mkdir(parents=True)  # killed before its first frame
    frames = out / job_folder(second) / "frames"
    frames.mkdir(parents=True)
    save_png(torch.zeros(3, 32, 32), frames / "step_00000.png", metadata(second.cfg, second.plan, 0, "frame", 1.0))
    found = flights(planned, out)
    assert {k: (f.folder.name, f.saved) for k, f in found.items()} == {
        first.job.id: (job_folder(first), None),
        second.job.id: (job_folder(second), None),
    }


def test_the_jobs_state_is_resumed_from_its_step(planned, tmp_path, no_model_loads):
    out = tmp_path / "out"
    save_state(planned[1], out / job_folder(planned[1]))
    found = flights(planned, out)
    assert list(found) == [planned[1].job.id] and found[planned[1].job.id].step == 3
    assert found[planned[1].job.id].resume_at().resumed == (3,)


def test_a_folder_that_is_not_the_jobs_is_left_alone(planned, tmp_path, no_model_loads):
    out = tmp_path / "out"
    mine = out / job_folder(planned[0])
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("not vqclip's")
    other = out / job_folder(planned[1]) / "frames"
    other.mkdir(parents=True)
    save_png(
        torch.zeros(3, 32, 32), other / "step_00000.png", metadata(planned[0].cfg, planned[0].plan, 0, "frame", 1.0)
    )  # another prompt's frame
    assert flights(planned, out) == {}  # both get new folders; nothing here is touched
    save_state(planned[1], out / job_folder(planned[0]), job="another")  # another job's state: not its folder
    assert flights(planned, out) == {}


def test_a_state_the_job_has_outgrown_starts_it_again_with_a_warning(planned, tmp_path, caplog, no_model_loads):
    out, p = tmp_path / "out", planned[0]
    save_state(p, out / job_folder(p), config=to_yaml(p.cfg).replace("steps: 6", "steps: 9"))  # the line was edited
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        found = flights(planned, out)
    assert found[p.job.id].saved is None and found[p.job.id].folder == out / job_folder(p)
    assert "p.txt:1: starting again from step 0, not from its saved state" in caplog.text
    assert "steps is 9 there, 6 here" in caplog.text


def test_a_manifest_folder_outside_the_batch_is_ignored(planned, tmp_path, no_model_loads):
    out = tmp_path / "out"
    outside = tmp_path / "elsewhere"
    save_state(planned[0], outside)
    records = [{"id": planned[0].job.id, "status": "interrupted", "folder": "../elsewhere"}]
    assert flights(planned, out, records) == {}
    save_state(planned[0], out / "renamed")
    records = [{"id": planned[0].job.id, "status": "interrupted", "folder": "renamed"}]
    assert flights(planned, out, records)[planned[0].job.id].folder == out / "renamed"
    assert json.loads((out / "renamed" / "state.json").read_text())["job"] == planned[0].job.id
