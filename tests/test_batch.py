"""vqclip batch on tiny models: job files, manifest, resume after SIGKILL or Ctrl-C, batching, two gloo ranks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from vqclip.batch import plan_jobs, read_manifest, run_batch
from vqclip.cli import app
from vqclip.config import resolve
from vqclip.errors import ConfigError, UsageError
from vqclip.jobs import read_jobs
from vqclip.outputs import append_jsonl, read_jsonl, read_png_metadata
from vqclip.runner import ModelCache
from vqclip.sheet import LABEL_WIDTH

runner = CliRunner()
PROMPTS = "# three prompts\na red circle\n\na blue square  ## seed=3\n   # indented comment\na green #1 tree\n"


def model_args(tiny_models, out):
    return [
        "--vqgan",
        tiny_models["vqgan"],
        "--clip",
        tiny_models["clip"],
        "--size",
        "32",
        "32",
        "--steps",
        "3",
        "--cutn",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def test_job_file_forms(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text(PROMPTS + "a red circle\nsmall  ## size=48x32 lr=0.05 cutouts.cut_pow=2 name=x\n")
    jobs = read_jobs(text)
    assert [j.prompt for j in jobs] == ["a red circle", "a blue square", "a green #1 tree", "a red circle", "small"]
    assert jobs[1].options == {"seed": 3} and jobs[1].source == "p.txt:4"
    assert jobs[4].options == {"width": 48, "height": 32, "optim.lr": 0.05, "cutouts.cut_pow": 2, "output.name": "x"}
    assert jobs[0].id != jobs[3].id and jobs[3].id.startswith(jobs[0].id)  # a repeated prompt is a second job
    assert read_jobs(text)[2].id == jobs[2].id  # ids are stable across reads
    yml = tmp_path / "p.yaml"
    yml.write_text(
        "- a red circle\n- {prompt: a seed^a tree, seed: 4, optim: {lr: 0.2}}\n"
        "- {keyframes: {0: a seed, 2: a tree}, size: [48, 32]}\n"
    )
    y = read_jobs(yml)
    assert y[1].options == {"seed": 4, "optim": {"lr": 0.2}} and y[1].prompt == "a seed^a tree"
    assert y[2].options == {"keyframes": {0: "a seed", 2: "a tree"}, "width": 48, "height": 32}
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a", "steps": 5}\n\n"b"\n{"keyframes": {"0": "c", "3": "d"}}\n')
    assert [(j.prompt, j.options) for j in read_jobs(jsonl)] == [
        ("a", {"steps": 5}),
        ("b", {}),
        ("", {"keyframes": {0: "c", 3: "d"}}),
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\nx  ## seed\n")
    with pytest.raises(ConfigError, match="bad.txt:2"):
        read_jobs(bad)


def test_bad_line_fails_before_any_model_loads(tiny_models, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("fine\nalso fine  ## stepz=3\n")
    result = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "p.txt:3" not in result.stderr and "p.txt:2" in result.stderr and "stepz" in result.stderr
    assert not (tmp_path / "out").exists()


def test_three_prompts_three_results_manifest_and_resume(tiny_models, tmp_path):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text(PROMPTS)
    result = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, out), "--seed", "10"])
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "manifest.jsonl")
    assert [r["prompt"] for r in records] == ["a red circle", "a blue square", "a green #1 tree"]
    assert [r["seed"] for r in records] == [10, 3, 12] and {r["status"] for r in records} == {"done"}
    assert result.stdout.split() == [str(out / r["image"]) for r in records]
    for r in records:
        meta = read_png_metadata(out / r["image"])
        assert meta["prompt"] == r["prompt"] and meta["seed"] == str(r["seed"]) and meta["status"] == "complete"
        assert r["loss"] == pytest.approx(float(meta["loss"]), abs=1e-5)
    sheet = read_png_metadata(out / "contact_sheet.png")
    assert [t["prompt"] for t in json.loads(sheet["prompts"])] == [r["prompt"] for r in records]
    w, h = Image.open(out / "contact_sheet.png").size  # 2x2 grid of 32 px tiles, labelled (see test_sheet.py)
    assert w == 2 * LABEL_WIDTH and h > 2 * 32

    again = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, out), "--seed", "10"])
    assert again.exit_code == 0, again.output
    assert "0 done, 3 already done before" in again.stderr
    assert len(read_jsonl(out / "manifest.jsonl")) == 3 and len([p for p in out.iterdir() if p.is_dir()]) == 3


def test_sigkill_after_first_prompt_then_resume(tiny_models, tmp_path):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    # the later prompts run long enough that the kill surely lands while the second is in flight
    prompts.write_text("first  ## steps=2\nsecond  ## steps=400\nthird  ## steps=3\n")
    args = [
        sys.executable,
        "-m",
        "vqclip",
        "batch",
        str(prompts),
        *model_args(tiny_models, out),
        "--seed",
        "1",
        "--save-every",
        "1",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        # kill once the first prompt is recorded and the second is under way (it has saved frames)
        while not (out / "manifest.jsonl").exists() or len(list(out.glob("0002-*/frames/step_*.png"))) < 2:
            assert proc.poll() is None and time.time() < deadline, "the batch ended before the second prompt began"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed = read_jsonl(out / "manifest.jsonl")
    assert [r["prompt"] for r in killed] == ["first"]
    first_png = out / killed[0]["image"]
    first_bytes = first_png.read_bytes()
    in_flight = next(out.glob("0002-*"))
    assert not (in_flight / "final.png").exists()  # never a half-written final image
    for png in in_flight.glob("frames/step_*.png"):  # temporary .step_*.tmp.png files may be left, never these
        Image.open(png).load()  # every frame on disk is whole

    prompts.write_text("first  ## steps=2\nsecond  ## steps=3\nthird  ## steps=3\n")  # finish the rest quickly
    result = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, out), "--seed", "1"])
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "manifest.jsonl")
    assert [r["prompt"] for r in records] == ["first", "second", "third"]
    assert first_png.read_bytes() == first_bytes and len(list(out.glob("0001-*"))) == 1  # the first was not redone
    # the second started again in its own folder: no empty folder left beside a "-2" twin
    assert [p.name for p in out.glob("0002-*")] == [in_flight.name] and records[1]["folder"] == in_flight.name
    # with no saved state it started from step 0: the killed attempt's frames were dropped, the rerun's (every 50
    # steps) written
    assert sorted(p.name for p in (in_flight / "frames").glob("step_*.png")) == ["step_00000.png"]


@pytest.mark.slow  # ~15 s of CPU; test_state.py's crash after --save-state frames is the fast representative
def test_sigkill_with_save_state_resumes_the_image_in_flight_from_its_last_frame(tiny_models, tmp_path):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("first  ## steps=2\nsecond  ## steps=80\n")
    args = ["batch", str(prompts), *model_args(tiny_models, out), "--seed", "1", "--save-every", "1", "--save-state"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vqclip", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.time() + 120
        while len(list(out.glob("0002-*/frames/step_*.png"))) < 5:
            assert proc.poll() is None and time.time() < deadline, "the batch ended before the second was killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    (folder,) = out.glob("0002-*")
    saved = json.loads((folder / "state.json").read_text())  # the state of its last frame (or the one before)
    assert 4 <= saved["step"] < 80 and saved["status"] == "frame"

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    whole = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, tmp_path / "whole"), "--seed", "1"])
    assert whole.exit_code == 0, whole.output
    second = read_jsonl(out / "manifest.jsonl")[-1]
    reference = read_jsonl(tmp_path / "whole" / "manifest.jsonl")[-1]
    assert second["prompt"] == "second" and second["resumed"] == [saved["step"]] and second["folder"] == folder.name
    assert np.array_equal(
        np.asarray(Image.open(out / second["image"])), np.asarray(Image.open(tmp_path / "whole" / reference["image"]))
    )
    assert len(list(out.glob("0002-*"))) == 1 and not (folder / "state.json").exists()


def test_ctrl_c_saves_in_flight_images_and_resume_finishes(tiny_models, tmp_path):
    out = tmp_path / "out"
    base = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 4,
            "cutouts.cutn": 2,
            "device": "cpu",
            "output.save_every": 0,
        }
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\nthree\n")
    planned = plan_jobs(read_jobs(prompts), base, 5)
    cache, cpu = ModelCache(), __import__("torch").device("cpu")
    seen = []

    def interrupt_in_second_group(step):
        seen.append(step.i)
        if len(seen) == 5 + 2:  # group one: steps 0-3 and the final; group two: interrupted at its step 1
            raise KeyboardInterrupt

    result = run_batch(planned, out, cpu, 1, on_step=interrupt_in_second_group, models=cache)
    assert result.interrupted and [(r["prompt"], r["status"]) for r in result.records] == [
        ("one", "done"),
        ("two", "interrupted"),
    ]
    assert read_png_metadata(out / result.records[1]["image"])["status"] == "interrupted"
    resumed = run_batch(planned, out, cpu, 1, models=cache)
    assert [(r["prompt"], r["status"]) for r in resumed.records] == [("two", "done"), ("three", "done")]
    assert resumed.skipped == 1


def test_a_batch_of_two_stopped_by_ctrl_c_resumes_both_images_together_to_the_same_pixels(tiny_models, tmp_path):
    base = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 6,
            "cutouts.cutn": 2,
            "device": "cpu",
            "output.save_every": 2,
        }
    )
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square\n")
    planned = plan_jobs(read_jobs(prompts), base, 5)
    cache, cpu = ModelCache(), __import__("torch").device("cpu")

    def interrupt_at_step_3(step):
        if step.i == 3 and not step.final:
            raise KeyboardInterrupt

    stopped = run_batch(planned, tmp_path / "out", cpu, 2, on_step=interrupt_at_step_3, models=cache)
    assert stopped.interrupted and [r["step"] for r in stopped.records] == [2, 2]
    resumed = run_batch(planned, tmp_path / "out", cpu, 2, models=cache)
    whole = run_batch(planned, tmp_path / "whole", cpu, 2, models=cache)
    for r, ref in zip(resumed.records, whole.records, strict=True):
        assert r["resumed"] == [3] and r["batch"] == 2 and r["folder"] == ref["folder"]
        assert np.array_equal(
            np.asarray(Image.open(tmp_path / "out" / r["image"])),
            np.asarray(Image.open(tmp_path / "whole" / ref["image"])),
        )
    assert len([p for p in (tmp_path / "out").iterdir() if p.is_dir()]) == 2


def test_batch_of_two_equals_two_single_runs(tiny_models, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle  ## seed=11\na blue square  ## seed=22\n")
    out = tmp_path / "batched"
    result = runner.invoke(
        app, ["batch", str(prompts), *model_args(tiny_models, out), "--steps", "5", "--cutn", "4", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    records = read_jsonl(out / "manifest.jsonl")
    assert [r["batch"] for r in records] == [2, 2]
    for r in records:
        single = runner.invoke(
            app,
            [
                "generate",
                r["prompt"],
                *model_args(tiny_models, tmp_path / "single"),
                "--steps",
                "5",
                "--cutn",
                "4",
                "--seed",
                str(r["seed"]),
            ],
        )
        assert single.exit_code == 0, single.output
        a = np.asarray(Image.open(out / r["image"]), dtype=np.int16)
        b = np.asarray(Image.open(single.stdout.strip().splitlines()[-1]), dtype=np.int16)
        # the same codes decode to the same pixels; batched convolutions may differ in the last float bits
        assert np.abs(a - b).max() <= 2
        assert r["loss"] == pytest.approx(float(read_png_metadata(single.stdout.split()[-1])["loss"]), abs=1e-3)


def test_two_gloo_ranks_do_every_prompt_exactly_once(tiny_models, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("".join(f"prompt number {k}\n" for k in range(5)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "vqclip",
        "batch",
        str(prompts),
        *model_args(tiny_models, out),
        "--seed",
        "0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_jsonl(out / "manifest.jsonl")
    assert sorted(r["prompt"] for r in records) == [f"prompt number {k}" for k in range(5)]
    assert {r["status"] for r in records} == {"done"} and {r["rank"] for r in records} == {0, 1}
    assert not list(out.glob("manifest.rank*.jsonl"))  # merged by rank 0
    assert len([p for p in out.iterdir() if p.is_dir()]) == 5 and (out / "contact_sheet.png").is_file()


def test_torn_manifest_line_is_ignored_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "manifest.jsonl"
    append_jsonl(path, {"id": "a", "status": "done"})
    with open(path, "ab") as f:
        f.write(b'{"id": "b", "sta')  # a crash in the middle of an append
    assert read_jsonl(path) == [{"id": "a", "status": "done"}]
    append_jsonl(path, {"id": "c", "status": "done"})
    assert read_jsonl(path) == [{"id": "a", "status": "done"}, {"id": "c", "status": "done"}]
    path.write_text('{"id": "a", "status": "done"}\nnot json\n{"id": "c", "status": "done"}\n')
    with pytest.raises(UsageError, match="line 2 is not JSON; fix or delete that line"):
        read_manifest(tmp_path)


def test_groups_share_everything_but_prompt_seed_and_name(tiny_models, tmp_path):
    from vqclip.batch import make_groups

    jobs = tmp_path / "p.yaml"
    jobs.write_text(
        "- a\n- {prompt: b, seed: 4, name: bee}\n- {prompt: c, steps: 5}\n- a seed^a tree\n"
        "- a seed^a flower\n- {prompt: d, keyframes: {0: d, 2: e}}\n- f\n"
    )
    base = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 4,
            "device": "cpu",
        }
    )
    groups = make_groups(plan_jobs(read_jobs(jobs), base, 0), 2)
    assert [[p.job.prompt for p in g] for g in groups] == [
        ["a", "b"],
        ["f"],
        ["c"],
        ["a seed^a tree"],
        ["a seed^a flower"],
        ["d"],
    ]
    story = next(g[0] for g in groups if g[0].job.prompt == "d")
    assert [s for s, _ in story.plan.story] == [2]


def test_a_damaged_final_image_is_made_again_on_resume(tiny_models, tmp_path):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("one\ntwo\n")
    args = ["batch", str(prompts), *model_args(tiny_models, out), "--seed", "1"]
    assert runner.invoke(app, args).exit_code == 0
    first = out / read_jsonl(out / "manifest.jsonl")[0]["image"]
    first.write_bytes(first.read_bytes()[:-40])  # truncated: listed as done, but not whole
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{first} is damaged" in result.stderr and "made again" in result.stderr
    assert "1 done, 1 already done before" in result.stderr
    records = read_jsonl(out / "manifest.jsonl")
    assert [r["prompt"] for r in records] == ["one", "two", "one"]
    Image.open(out / records[-1]["image"]).load()  # the new image is whole, and the sheet shows it
    tiles = json.loads(read_png_metadata(out / "contact_sheet.png")["prompts"])
    assert [t["image"] for t in tiles] == [records[-1]["image"], records[1]["image"]]


def test_the_contact_sheet_leaves_out_an_image_it_cannot_read(tmp_path, caplog):
    from vqclip.batch import contact_sheet

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name / "final.png")
    records = [
        {"id": k, "index": k, "status": "done", "image": f"{k}/final.png", "prompt": k, "seed": 1} for k in ("a", "b")
    ]
    png = (tmp_path / "b" / "final.png").read_bytes()
    (tmp_path / "b" / "final.png").write_bytes(png[:30] + bytes(len(png) - 30))  # same size, zeroed
    sheet = contact_sheet(tmp_path, records)
    assert [t["prompt"] for t in json.loads(read_png_metadata(sheet)["prompts"])] == ["a"]


# manifest rows that resume must not trust: (id, the row, fragment of the one-line error)
BAD_ROWS = [
    ("a-list", "[1, 2]", "line 2 is not a record (a JSON object)"),
    ("a-string", '"done"', "line 2 is not a record"),
    ("id-not-text", '{"id": 3, "status": "done"}', "line 2: id should be str"),
    ("no-status", '{"id": "x"}', "line 2: status should be str"),
    ("index-not-a-number", '{"id": "x", "status": "done", "index": "one"}', "line 2: index should be int"),
    ("absolute-image", '{"id": "x", "status": "done", "image": "/etc/passwd"}', "is not a path inside"),
    ("image-outside", '{"id": "x", "status": "done", "image": "../../secret.png"}', "is not a path inside"),
    ("not-json", '{"id": "x", "status": "done"', "line 2 is not JSON"),
]


@pytest.mark.parametrize("case, row, fragment", BAD_ROWS, ids=[c[0] for c in BAD_ROWS])
def test_every_manifest_row_is_checked_before_resume(case, row, fragment, tiny_models, tmp_path, no_model_loads):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("one\n")
    out.mkdir()
    good = json.dumps({"id": "y", "status": "done", "image": None})
    (out / "manifest.jsonl").write_text(f"{good}\n{row}\n{good}\n")
    result = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, out)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    [line] = [x for x in result.stderr.replace("\r", "\n").splitlines() if x.strip() and not x.startswith("batch")]
    assert line.startswith("error: ") and "manifest.jsonl" in line and fragment in line, line
    assert "fix or delete that line" in line


def test_seeds_that_overflow_when_a_batch_adds_k_are_refused(tiny_models, tmp_path, no_model_loads):
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\nthree\n")
    result = runner.invoke(
        app, ["batch", str(prompts), *model_args(tiny_models, tmp_path / "out"), "--seed", str(2**63 - 2)]
    )
    assert (
        result.exit_code == 2
        and "p.txt:3: --seed 9223372036854775806 + job index 2 must be between 0 and 2**63-1" in result.stderr
    )
    prompts.write_text("one  ## seed=true\n")
    result = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, tmp_path / "out")])
    assert result.exit_code == 2 and "p.txt:1: seed must be a whole number, got True" in result.stderr


def test_a_loss_that_is_not_a_number_is_recorded_as_null(tmp_path):
    path = tmp_path / "manifest.jsonl"
    append_jsonl(path, {"id": "a", "status": "done", "loss": float("nan"), "more": [float("inf")]})
    assert path.read_text() == '{"id": "a", "status": "done", "loss": null, "more": [null]}\n'


def test_a_batch_on_a_folder_another_batch_holds_is_refused_before_any_model_loads(
    tiny_models, tmp_path, no_model_loads
):
    from vqclip.locks import try_lock

    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("one\n")
    out.mkdir()
    held = try_lock(out / "manifest.jsonl")  # what a running batch holds (an flock: another open file conflicts)
    try:
        result = runner.invoke(app, ["batch", str(prompts), *model_args(tiny_models, out)])
    finally:
        held.release()
    assert result.exit_code == 2 and "another vqclip batch is writing to" in result.stderr
    assert not (out / "manifest.jsonl").exists() and not list(out.glob("0001-*"))


@pytest.mark.slow
def test_a_second_batch_on_the_same_folder_is_refused_while_the_first_runs(tiny_models, tmp_path):
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text("first  ## steps=2000\nsecond\n")
    args = [sys.executable, "-m", "vqclip", "batch", str(prompts), *model_args(tiny_models, out), "--save-every", "1"]
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list(out.glob("0001-*/frames/step_*.png"))) < 1:  # it holds the folder and is generating
            assert first.poll() is None and time.time() < deadline, "the first batch ended early"
            time.sleep(0.05)
        second = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first batch must still be running"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert second.returncode == 2, second.stderr
    assert (
        second.stderr.strip().splitlines()[-1] == f"error: another vqclip batch is writing to {out}; let it "
        "finish (then rerun to resume), or choose another --out"
    )
    assert len(list(out.glob("0001-*"))) == 1 and not list(out.glob("0002-*"))  # nothing done twice


@settings(max_examples=int(os.environ.get("FUZZ", 100)), deadline=None)
@given(
    rows=st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["id", "status", "image", "index", "prompt", "seed", "loss", "x"]),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=10,
        ),
        max_size=5,
    )
)
def test_any_manifest_is_read_or_refused_in_one_line(rows, tmp_path_factory):
    """Whatever the manifest holds, resume reads it or gives one UsageError, and the sheet never crashes."""
    from vqclip.batch import contact_sheet, finished_ids

    out = tmp_path_factory.mktemp("out")
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        records = read_manifest(out)
        finished_ids(out)
        contact_sheet(out, records)
    except UsageError as e:
        assert "\n" not in str(e)
