"""Saved states (vqclip.state, vqclip.resume): their files, and every way a state that cannot be resumed is
refused in one line before any model loads (damaged, edited, another run's, other size, models or device)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import write_vqgan
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.config import resolve
from vqclip.runner import prepare_resume, prepare_run, run_image
from vqclip.state import SIDECAR, StateError, read_state, write_state
from vqclip.writer import Interrupted

runner = CliRunner()


def config(tiny_models, out, **options):
    return resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 6,
            "cutouts.cutn": 2,
            "device": "cpu",
            "seed": 4,
            "prompt": "a red circle",
            "output.dir": str(out),
            "output.name": "run",
            "output.save_every": 1,
            **options,
        }
    )


def stop_at(i, error=KeyboardInterrupt):
    def on_step(step):
        if step.i == i:
            raise error

    return on_step


@pytest.fixture
def stopped(tiny_models, tmp_path):
    """A run folder interrupted (Ctrl-C in the library) after step 2: its state starts at step 3."""
    with pytest.raises(Interrupted):
        run_image(prepare_run(config(tiny_models, tmp_path / "out")), on_step=stop_at(3))
    return tmp_path / "out" / "run"


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_the_state_is_safetensors_and_a_sidecar_naming_it(stopped):
    (tensors,) = stopped.glob("state-*.safetensors")
    meta = json.loads((stopped / SIDECAR).read_text())
    assert meta["tensors"] == tensors.name and meta["step"] == 3 and meta["status"] == "interrupted"
    assert meta["kind"] == "still" and meta["device"] == "cpu" and meta["size"] == [32, 32]
    header = json.loads(tensors.read_bytes()[8 : 8 + int.from_bytes(tensors.read_bytes()[:8], "little")])
    assert set(header) - {"__metadata__"} == {
        "z",
        "z_orig",
        "optim.step",
        "optim.exp_avg",
        "optim.exp_avg_sq",
        "generator.0",
    }
    saved = read_state(stopped)
    assert saved.loop.z.shape == (1, 32, 16, 16) and saved.loop.optim["step"].item() == 3  # Adam took 3 steps
    assert saved.loop.generators[0].dtype == torch.uint8


def test_a_crash_after_saving_states_at_frames_resumes_to_the_same_pixels(tiny_models, tmp_path):
    """--save-state: a state beside every saved frame, so a run that dies (here an error, as a kill -9 would)
    resumes from its last frame; a finished run removes its state."""
    with pytest.raises(RuntimeError):
        run_image(
            prepare_run(config(tiny_models, tmp_path / "a", **{"output.save_state": True})),
            on_step=stop_at(4, RuntimeError),
        )
    folder = tmp_path / "a" / "run"
    assert read_state(folder).step == 4 and not (folder / "final.png").exists()  # after frame 3, before step 4
    resumed = run_image(prepare_resume(folder))
    whole = run_image(prepare_run(config(tiny_models, tmp_path / "b")))
    assert np.array_equal(pixels(resumed.image), pixels(whole.image)) and resumed.resumed == [4]
    assert not (folder / SIDECAR).exists() and not list(folder.glob("state-*"))


def _truncate(folder):
    (t,) = folder.glob("state-*.safetensors")
    t.write_bytes(t.read_bytes()[:-10])


def _flip_a_byte(folder):
    (t,) = folder.glob("state-*.safetensors")
    data = bytearray(t.read_bytes())
    data[-3] ^= 1
    t.write_bytes(bytes(data))


def _short_generator(folder):
    """A state whose files are consistent (hashes and all) but whose generator state is not a CPU generator's."""
    saved = read_state(folder)
    saved.loop.generators = [saved.loop.generators[0][:16].clone()]
    write_state(folder, saved.loop, saved.meta)


def _short_ema(folder):
    """A consistent state whose average of z (optim.ema) is not shaped like z."""
    saved = read_state(folder)
    saved.loop.ema = saved.loop.z[..., :1].clone()
    write_state(folder, saved.loop, saved.meta)


def _sidecar(change):
    def damage(folder):
        meta = json.loads((folder / SIDECAR).read_text())
        change(meta)
        (folder / SIDECAR).write_text(json.dumps(meta))

    return damage


DAMAGE = {
    "truncated tensors": (_truncate, "does not match the SHA-256"),
    "a flipped byte": (_flip_a_byte, "does not match the SHA-256"),
    "tensors missing": (lambda f: next(f.glob("state-*.safetensors")).unlink(), "is missing"),
    "sidecar not JSON": (lambda f: (f / SIDECAR).write_text("{not json"), "not readable JSON"),
    "sidecar emptied": (lambda f: (f / SIDECAR).write_text(""), "not readable JSON"),
    "sidecar names a path": (_sidecar(lambda m: m.update(tensors="../../etc/passwd")), "unexpected tensors file"),
    "sidecar lacks a key": (_sidecar(lambda m: m.pop("step")), "no valid 'step'"),
    "another format": (_sidecar(lambda m: m.update(format="vqclip-state/9")), "not a vqclip vqclip-state/1"),
    "a short generator state": (_short_generator, "a random generator state of 16 bytes"),
    "an ema of another shape": (_short_ema, "an average of z"),
    "config edited": (
        _sidecar(lambda m: m.update(config=m["config"].replace("steps: 6", "steps: 9"))),
        "was edited after the state was saved",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_or_edited_state_is_refused_in_one_line(damage, stopped, no_model_loads):
    change, fragment = DAMAGE[damage]
    change(stopped)
    result = runner.invoke(app, ["generate", "--resume", str(stopped)])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and fragment in result.stderr
    assert "Traceback" not in result.output


MISMATCH = {
    "more steps": (["--steps", "10"], "steps is 6 there, 10 here"),
    "other size": (["--size", "64", "32"], "width is 32 there, 64 here"),
    "other cutouts": (["--set", "cutouts.cutn=3"], "cutouts.cutn is 2 there, 3 here"),
    "other prompt": (["--set", "prompt=a blue square"], "prompt is 'a red circle' there, 'a blue square' here"),
    "other model": (["--vqgan", "other.yaml"], "model.vqgan is"),
}


@pytest.mark.parametrize("case", MISMATCH, ids=list(MISMATCH))
def test_a_run_that_differs_from_the_saved_one_is_refused_with_what_differs(case, stopped, no_model_loads):
    args, fragment = MISMATCH[case]
    result = runner.invoke(app, ["generate", "--resume", str(stopped), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    assert "only --device may change" in result.stderr


def test_another_kind_of_run_or_another_device_is_refused(stopped, no_model_loads):
    with pytest.raises(StateError, match="holds the state of a still; resume it with vqclip generate --resume"):
        prepare_resume(stopped, animation=True, load=False)
    meta = json.loads((stopped / SIDECAR).read_text())
    (stopped / SIDECAR).write_text(json.dumps({**meta, "device": "cuda"}))  # as if saved on a GPU
    with pytest.raises(StateError, match="saved on cuda; resume it with --device cuda"):
        prepare_resume(stopped, load=False)


def test_a_state_beside_another_runs_final_png_is_refused(stopped, tiny_models, tmp_path, no_model_loads):
    from PIL import PngImagePlugin

    from vqclip.config import to_yaml

    info = PngImagePlugin.PngInfo()
    info.add_itxt("config", to_yaml(config(tiny_models, tmp_path / "x", seed=5)))
    Image.fromarray(pixels(stopped / "final.png")).save(stopped / "final.png", pnginfo=info)
    with pytest.raises(StateError, match="belongs to another run than its final.png: seed is 5 in final.png"):
        prepare_resume(stopped, load=False)


def test_model_files_replaced_under_the_same_name_are_refused(tiny_models, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models["root"] / "vqgan", copy)
    with pytest.raises(Interrupted):
        run_image(
            prepare_run(config(tiny_models, tmp_path / "out", **{"model.vqgan": str(copy / "tiny_vqgan.yaml")})),
            on_step=stop_at(3),
        )
    write_vqgan(copy, seed=1)  # retrained weights under the same file names
    result = runner.invoke(app, ["generate", "--resume", str(tmp_path / "out" / "run")])
    assert result.exit_code == 2 and "has other weights than the state" in result.stderr, result.output
    assert result.stderr.count("\n") == 1


def test_resume_needs_a_run_folder_with_a_state_and_no_prompt(stopped, tmp_path, no_model_loads):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["generate", "--resume", str(empty)], "holds no saved state"),
        (["generate", "--resume", str(tmp_path / "nope")], "is not a folder"),
        (["generate", "a red circle", "--resume", str(stopped)], "drop the prompt, --from and --preset"),
        (["animate", "--resume", str(stopped), "--preset", "toy"], "drop the prompt, --from and --preset"),
    ]
    for args, fragment in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and fragment in result.stderr and result.stderr.count("\n") == 1, result.output


def test_a_model_whose_latent_changed_shape_is_refused_before_it_loads(tiny_models, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(tiny_models["root"] / "vqgan", copy)
    yaml_path = copy / "tiny_vqgan.yaml"
    with pytest.raises(Interrupted):
        run_image(
            prepare_run(config(tiny_models, tmp_path / "out", **{"model.vqgan": str(yaml_path)})), on_step=stop_at(3)
        )
    yaml_path.write_text(yaml_path.read_text().replace("embed_dim: 32", "embed_dim: 16"))  # edited in place
    with pytest.raises(StateError, match=r"holds a latent of \[32, 16, 16\] .* makes \[16, 16, 16\]"):
        prepare_resume(tmp_path / "out" / "run", load=False)  # load=False: refused before any model loads


def test_a_run_resumed_twice_records_both_resumes_and_still_matches(stopped, tiny_models, tmp_path):
    with pytest.raises(Interrupted) as e:
        run_image(prepare_resume(stopped), on_step=stop_at(4))
    assert e.value.result.resumed == [3] and read_state(stopped).resumed == [3] and read_state(stopped).step == 4
    resumed = run_image(prepare_resume(stopped))
    whole = run_image(prepare_run(config(tiny_models, tmp_path / "whole")))
    assert resumed.resumed == [3, 4] and np.array_equal(pixels(resumed.image), pixels(whole.image))
    assert sorted(p.name for p in (stopped / "frames").iterdir()) == [f"step_{i:05d}.png" for i in range(6)]


def test_an_ema_run_resumes_from_its_files_to_the_same_pixels(tiny_models, tmp_path):
    """optim.ema's average of z is part of the state: saved beside z, checked, and restored on resume."""
    ema = {"optim.ema": 0.9}
    with pytest.raises(Interrupted):
        run_image(prepare_run(config(tiny_models, tmp_path / "a", **ema)), on_step=stop_at(3))
    folder = tmp_path / "a" / "run"
    saved = read_state(folder).loop
    assert saved.ema is not None and saved.ema.shape == saved.z.shape
    resumed = run_image(prepare_resume(folder))
    whole = run_image(prepare_run(config(tiny_models, tmp_path / "b", **ema)))
    assert np.array_equal(pixels(resumed.image), pixels(whole.image))
