"""Job files from outside: hostile or sloppy ones get one line naming the file and the line, in bounded time and
memory; a long one is planned without a long stall."""

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from vqclip.batch import plan_jobs
from vqclip.cli import app
from vqclip.config import resolve
from vqclip.errors import UsageError
from vqclip.jobs import read_jobs

BOMB = (
    '- &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n- &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n'
    "- &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n- &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "- &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n- &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "- {prompt: a red circle, cutouts: {augments: [*f, *f, *f, *f, *f, *f, *f, *f, *f]}}\n"
)

# (id, file name, content, fragment of the one-line error: each names the file and the line)
HOSTILE = [
    ("yaml-alias-bomb", "jobs.yaml", BOMB, "jobs.yaml line 2 is not valid YAML: YAML aliases"),
    ("yaml-deep-nesting", "jobs.yaml", "- a\n- " + "[" * 10_000 + "]" * 10_000 + "\n", "jobs.yaml line 2"),
    ("jsonl-deep-nesting", "jobs.jsonl", '"a"\n' + "[" * 100_000 + "]" * 100_000 + "\n", "jobs.jsonl:2 is nested"),
    ("jsonl-null-prompt", "jobs.jsonl", '{"prompt": "a"}\n{"prompt": null}\n', "jobs.jsonl:2: the prompt is empty"),
    ("yaml-null-prompt", "jobs.yaml", "- a\n- prompt:\n  seed: 3\n", "jobs.yaml:2: the prompt is empty (null)"),
    (
        "yaml-number-prompt",
        "jobs.yaml",
        "- a\n- 1984\n",
        "jobs.yaml:2: a job is a prompt or a mapping of config keys, got a int (1984); quote it",
    ),
    ("yaml-list-prompt", "jobs.yaml", "- prompt: [a, b]\n", "jobs.yaml:1: the prompt is a list, not text"),
    (
        "jsonl-null-line",
        "jobs.jsonl",
        '"a"\nnull\n',
        "jobs.jsonl:2: a job is a prompt or a mapping of config keys, got null",
    ),
    ("jsonl-nan", "jobs.jsonl", '{"prompt": "a", "optim": {"lr": NaN}}\n', "jobs.jsonl:1 is not usable JSON (NaN"),
    ("jsonl-huge-integer", "jobs.jsonl", '{"prompt": "a", "seed": ' + "9" * 5000 + "}\n", "jobs.jsonl:1 is not usable"),
    ("yaml-number-key", "jobs.yaml", "- {prompt: a, 3: x}\n", "jobs.yaml:1: key 3 is not a config key name"),
    ("yaml-python-tag", "jobs.yaml", "- !!python/object/apply:os.system [echo hi]\n", "determine a constructor"),
    ("override-bad-yaml", "jobs.txt", "a\nb  ## seed=[1\n", "jobs.txt:2: override 'seed=[1' is not valid YAML"),
    ("override-alias", "jobs.txt", "a  ## name=*x\n", "jobs.txt:1: override 'name=*x' is not valid YAML"),
    ("not-utf8", "jobs.txt", "a\nb\ncaf\xe9\n".encode("latin-1"), "line 3 is not UTF-8"),
]


@pytest.mark.parametrize("case, name, content, fragment", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_job_files_are_one_line_errors_naming_file_and_line(case, name, content, fragment, tmp_path):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    start = time.process_time()
    with pytest.raises(UsageError) as info:
        read_jobs(path)
    assert time.process_time() - start < 2, "a hostile file is refused in bounded time"
    message = str(info.value)
    assert fragment in message and "\n" not in message, message


# the child's own peak RSS: VmHWM starts afresh at exec, while ru_maxrss keeps the forking parent's RSS (pytest's,
# over 1 GB once models are loaded), a floor that would hide what the child itself used
PEAK_KB = (
    "def peak_kb():\n    with open('/proc/self/status') as f:\n"
    "        return int(next(line for line in f if line.startswith('VmHWM')).split()[1])\n"
)


def test_an_alias_bomb_through_the_cli_uses_no_memory_and_exits_2(tmp_path):
    (tmp_path / "jobs.yaml").write_text(BOMB)
    code = (
        PEAK_KB + "import sys; from vqclip.cli import main; sys.argv = ['vqclip', 'batch', sys.argv[1], "
        "'--preset', 'toy', '--out', sys.argv[2]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n"
        "    print(e.code, peak_kb(), file=sys.stdout)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "jobs.yaml"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    status, rss_kb = out.stdout.split()
    assert status == "2" and int(rss_kb) < 1024 * 1024, out.stdout  # under 1 GB: the 9**7 nodes never exist
    assert out.stderr.count("\n") == 1 and "YAML aliases" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_sloppy_but_valid_files_mean_what_they_say(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeff# a comment from a Windows editor\r\na red circle\r\n".encode())
    assert [j.prompt for j in read_jobs(bom)] == ["a red circle"]
    breaks = tmp_path / "breaks.txt"
    breaks.write_text("a form\x0cfeed in a prompt\nline two\u2028still line two\n")
    assert [(j.prompt, j.source) for j in read_jobs(breaks)] == [
        ("a form\x0cfeed in a prompt", "breaks.txt:1"),
        ("line two\u2028still line two", "breaks.txt:2"),
    ]
    yml = tmp_path / "jobs.yaml"
    yml.write_text("\ufeff- a\n\n- {prompt: b, seed: 3}\n")
    assert [(j.prompt, j.source) for j in read_jobs(yml)] == [("a", "jobs.yaml:1"), ("b", "jobs.yaml:3")]


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder"])
def test_a_special_file_as_the_job_file_is_refused_at_once(kind, tmp_path):
    path = tmp_path / "jobs.txt"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    reason = {
        "fifo": "is a FIFO (named pipe)",
        "dev-zero": "is a link to /dev/zero, a character device",
        "folder": "is a folder",
    }[kind]
    result = CliRunner().invoke(app, ["batch", str(path), "--preset", "toy", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and reason in result.stderr, result.output


def _plan_seconds(tmp_path: Path, lines: int) -> float:
    """CPU seconds to read and plan a job file of `lines` prompts, a third of them with their own overrides."""
    jobs = tmp_path / "jobs.txt"
    overrides = ["", "  ## seed={k}", "  ## steps={s} lr=0.0{s} size=48x32"]
    jobs.write_text("".join(f"prompt number {k}{overrides[k % 3].format(k=k, s=k % 7 + 1)}\n" for k in range(lines)))
    base = resolve(["toy"])
    start = time.process_time()
    planned = plan_jobs(read_jobs(jobs), base, 0)
    seconds = time.process_time() - start
    assert len(planned) == lines and planned[1].cfg.seed == 1 and planned[2].cfg.steps == 3
    assert planned[2].cfg.width == 48 and planned[3].cfg.seed == 3
    return seconds


def test_ten_thousand_lines_are_planned_in_seconds(tmp_path):
    # OmegaConf's merge for every line took ~17 ms, plus ~30 ms a line to group them: 10,000 lines ~8 minutes
    seconds = _plan_seconds(tmp_path, 10_000)
    assert seconds < 20, f"{seconds:.1f} s of CPU (load {os.getloadavg()[0]:.1f})"


@pytest.mark.slow
def test_a_hundred_thousand_lines_are_planned_within_two_minutes_of_cpu(tmp_path):
    seconds = _plan_seconds(tmp_path, 100_000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert seconds < 120, f"{seconds:.1f} s of CPU, {peak:.0f} MB peak (load {os.getloadavg()[0]:.1f})"


# ---------------------------------------------------------------------------------------------------------
# the class, not the examples: whatever a job file holds, reading and planning it succeeds or is a UsageError
# (one line, exit 2), never "unexpected <SomeException>"

_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12)
_keys = st.sampled_from(
    [
        "prompt",
        "seed",
        "steps",
        "size",
        "width",
        "lr",
        "optim",
        "cutouts",
        "keyframes",
        "name",
        "model",
        "story_every",
        "init_image",
        "image_prompts",
        "animation",
        "nope",
        "speed",
    ]
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys | st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_jobs = st.lists(st.text(max_size=20) | st.dictionaries(_keys, _values, max_size=4), min_size=1, max_size=4)


@settings(
    max_examples=int(os.environ.get("FUZZ", 60)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(jobs=_jobs)
def test_any_yaml_or_jsonl_job_file_is_planned_or_refused_in_one_line(jobs, tmp_path_factory):
    import json as _json

    import yaml as _yaml

    folder = tmp_path_factory.mktemp("jobs")
    base = resolve(["toy"])
    (folder / "j.jsonl").write_text("\n".join(_json.dumps(j) for j in jobs) + "\n")
    (folder / "j.yaml").write_text(_yaml.safe_dump(jobs))
    for path in (folder / "j.jsonl", folder / "j.yaml"):
        try:
            plan_jobs(read_jobs(path), base, 0)
        except UsageError as e:
            assert "\n" not in str(e).strip()


@settings(max_examples=int(os.environ.get("FUZZ", 80)), deadline=None)
@given(text=st.text(max_size=200), suffix=st.sampled_from([".txt", ".yaml", ".jsonl"]))
def test_any_text_as_a_job_file_is_read_or_refused_in_one_line(text, suffix, tmp_path_factory):
    path = tmp_path_factory.mktemp("jobs") / f"j{suffix}"
    path.write_text(text)
    try:
        read_jobs(path)
    except UsageError:
        pass
