"""Shared files under real races: several processes write the lock file, the user-model list and a download at once,
and no entry is lost, no file is mixed."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vqclip.locks import locked, temp_name, try_lock, write_atomic

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 6


def _race(code: str, tmp_path: Path, n: int = PROCESSES, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Run `code` in n processes that start together (each waits for a go file), with argv [k, tmp_path]."""
    go = tmp_path / "go"
    prelude = (
        "import sys, time, pathlib\nk, root = int(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
        "while not (root / 'go').exists(): time.sleep(0.005)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        "VQCLIP_CHECKPOINTS": str(tmp_path / "ck"),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", prelude + code, str(k), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(n)
    ]
    time.sleep(0.5)  # let them import
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return results


def test_six_processes_registering_models_at_once_lose_none(tiny_models, tmp_path):
    code = (
        "from vqclip.store import hub, user_models\n"
        f"for j in range(4):\n"
        f"    hub.add_vqgan(f'model-{{k}}-{{j}}', {tiny_models['vqgan']!r}, {tiny_models['ckpt']!r}, check=False)\n"
        "print('ok')\n"
    )
    results = _race(code, tmp_path)
    assert all(r.returncode == 0 and r.stdout.strip() == "ok" for r in results), [r.stderr for r in results]
    listed = json.loads((tmp_path / "ck" / "vqclip.models.json").read_text())["models"]
    assert sorted(listed) == sorted(f"model-{k}-{j}" for k in range(PROCESSES) for j in range(4))
    lock = json.loads((tmp_path / "ck" / "vqclip.lock.json").read_text())["files"]
    assert {Path(tiny_models["vqgan"]).name, Path(tiny_models["ckpt"]).name} <= {Path(key).name for key in lock}
    assert not [p for p in (tmp_path / "ck").iterdir() if ".tmp" in p.name]  # no temp file left behind


def test_six_processes_recording_hashes_at_once_lose_none(tmp_path):
    code = (
        "from vqclip.store import integrity\n"
        "ck = root / 'ck'\n"
        "for j in range(10):\n"
        "    f = ck / f'file-{k}-{j}.bin'\n"
        "    f.parent.mkdir(parents=True, exist_ok=True)\n"
        "    f.write_bytes(bytes([k, j]))\n"
        "    integrity.record(f, ck, integrity.sha256_file(f), source='race')\n"
    )
    results = _race(code, tmp_path)
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    recorded = json.loads((tmp_path / "ck" / "vqclip.lock.json").read_text())["files"]
    assert sorted(recorded) == sorted(f"file-{k}-{j}.bin" for k in range(PROCESSES) for j in range(10))


def test_a_lock_is_exclusive_across_open_files_and_dropped_with_its_process(tmp_path):
    path = tmp_path / "shared.json"
    with locked(path):
        assert try_lock(path) is None  # another open file of the same lock: refused, even in this process
    held = try_lock(path)
    assert held is not None
    held.release()
    # a process killed while it holds the lock leaves no stale lock: the OS drops an flock with its process
    code = (
        "import os, sys; from vqclip.locks import try_lock\n"
        f"lock = try_lock({str(path)!r}); print(lock is not None, flush=True); os.kill(os.getpid(), 9)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "True" and out.returncode == -9
    again = try_lock(path)
    assert again is not None
    again.release()


def test_atomic_writes_use_names_no_other_writer_picks(tmp_path):
    target = tmp_path / "f.json"
    assert len({temp_name(target) for _ in range(1000)}) == 1000
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


@pytest.mark.slow
def test_two_processes_downloading_one_model_fetch_it_once_and_both_succeed(tiny_models, tmp_path):
    from fileserver import FileServer

    name = "vqgan_imagenet_f16_16384"
    with FileServer() as server:
        server.files[f"/{name}.yaml"] = Path(tiny_models["vqgan"]).read_bytes()
        server.files[f"/{name}.ckpt"] = Path(tiny_models["ckpt"]).read_bytes()
        os.environ["VQCLIP_MIRROR"] = server.url
        try:
            code = f"from vqclip.store import hub\nprint(*hub.download_vqgan({name!r}))\n"
            results = _race(code, tmp_path, n=2)
        finally:
            del os.environ["VQCLIP_MIRROR"]
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        assert server.paths_requested().count(f"/{name}.ckpt") == 1  # the second waited, then found it there
    ck = tmp_path / "ck"
    assert {r.stdout.split()[1] for r in results} == {str(ck / f"{name}.ckpt")}
    assert (ck / f"{name}.ckpt").read_bytes() == Path(tiny_models["ckpt"]).read_bytes()
