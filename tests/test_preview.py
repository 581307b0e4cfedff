"""`--preview` (vqclip.preview): the live page of a run, its events and the files it may serve.

In-process runs on tiny models check what the page is told and when; real `vqclip generate|batch --preview --preset
toy` processes are then driven by a headless Chromium (tests/browser.py; skipped without one): the page shows an
image that changes, refuses every request outside the run's folder, and ends with the run.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import tiny
import torch
from browser import Browser, need_chromium
from PIL import Image
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.preview import live, open_preview
from vqclip.preview.state import LiveState
from vqclip.runner import run

# a folder (e.g. docs): the browser tests also save their screenshots there; read before the tests chdir
SHOTS = Path(os.environ["VQCLIP_SCREENSHOTS"]).resolve() if os.environ.get("VQCLIP_SCREENSHOTS") else None


class SSEClient:
    """Reads a preview's /events in a thread: `events` is [(name, data)] as they come."""

    def __init__(self, url: str, rcvbuf: int = 0, read: bool = True):
        self.events: list[tuple[str, dict]] = []
        self.ended = threading.Event()
        self._cond = threading.Condition()
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.sendall(f"GET /events HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        f = self.sock.makefile("rb")
        status = f.readline()
        assert b" 200 " in status, status
        while f.readline().strip():  # headers
            pass
        name, data = None, []
        for raw in f:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and name:
                with self._cond:
                    self.events.append((name, json.loads("\n".join(data))))
                    self._cond.notify_all()
                name, data = None, []
        self.ended.set()
        with self._cond:
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 120):
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.events), timeout), self.names()
        return self.events

    def names(self) -> list[str]:
        return [n for n, _ in self.events]

    def of(self, name: str) -> list[dict]:
        return [d for n, d in self.events if n == name]

    def close(self) -> None:
        self.sock.close()


def tiny_cfg(tiny_models, tmp_path, **options):
    # tiny models change their codes within a few steps at lr 0.5
    return tiny.tiny_cfg(tiny_models, tmp_path, **{"optim.lr": 0.5, **options})


def decode(url: str) -> np.ndarray:
    head, data = url.split(",", 1)
    assert head in ("data:image/png;base64", "data:image/jpeg;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def get(url: str, path: str, host: str | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    """A raw request: the path is sent exactly as given (no client normalises '..')."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", parts.netloc if host is None else host)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body, dict(response.getheaders())


def refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError:
        return True
    return False


# what the page is told, from real runs in this process


def test_a_run_streams_its_images_losses_result_and_end(tiny_models, tmp_path):
    with open_preview("generate", "a red circle") as preview:
        client = SSEClient(preview.url)
        client.wait(lambda e: e and e[0][0] == "snapshot")
        result = run(tiny_cfg(tiny_models, tmp_path, steps=7, **{"output.save_every": 3}), observers=[preview.observer])
        client.wait(lambda e: any(n == "finished" for n, _ in e))
        status, body, headers = get(preview.url, "/files/final.png")
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert body == result.image.read_bytes()
    client.wait(lambda e: e[-1][0] == "end")
    assert client.ended.wait(30) and refused(preview.url)  # the page's stream and the server end with the run
    names = client.names()
    assert names[0] == "snapshot" and names[1] == "begin" and names[-1] == "end"
    (begin,) = client.of("begin")
    assert begin["slots"][0]["prompt"] == "a red circle" and begin["slots"][0]["seed"] == 1
    frames = client.of("frame")
    assert [f["step"] for f in frames] == [0, 3, 6]  # the frame cadence, not every step
    images = [decode(f["image"]) for f in frames]
    assert all(im.shape == (32, 32, 3) for im in images) and not np.array_equal(images[0], images[-1])
    points = [p for d in client.of("loss") for p in d["points"]]
    assert [i for i, _ in points] == list(range(8))  # every step's loss and the final one, in order
    assert points[-1][1][0] == pytest.approx(result.loss, rel=1e-5)
    (finished,) = client.of("finished")
    assert finished["record"]["image"] == "files/final.png" and finished["record"]["status"] == "complete"
    np.testing.assert_array_equal(decode(finished["image"]), np.asarray(Image.open(result.image).convert("RGB")))
    assert frames[-1]["progress"]["expected"] == 8 and frames[-1]["eta"] is not None
    assert client.of("end") == [{"status": "complete"}]


def test_a_page_opened_late_starts_from_the_whole_state(tiny_models, tmp_path):
    with open_preview("generate", "a red circle") as preview:
        run(tiny_cfg(tiny_models, tmp_path, steps=4, **{"output.save_every": 2}), observers=[preview.observer])
        preview.observer.close()  # everything published; the server still up
        late = SSEClient(preview.url)
        assert late.ended.wait(60)  # the run has ended: the page gets the state, then the stream ends
    assert late.names() == ["snapshot"]
    snapshot = late.of("snapshot")[0]
    slot = snapshot["slots"][0]
    assert slot["status"] == "complete" and slot["step"] == 4 and decode(slot["image"]).shape == (32, 32, 3)
    assert [i for i, _ in slot["loss"]] == list(range(5)) and len(snapshot["finished"]) == 1
    assert snapshot["status"] == "complete"


def test_a_resumed_run_counts_its_time_left_from_where_it_resumes(tiny_models, tmp_path):
    from vqclip.runner import prepare_resume, run_image
    from vqclip.writer import Interrupted

    def stop(step):
        if step.i == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stopped:
        run(tiny_cfg(tiny_models, tmp_path, steps=10, **{"output.save_every": 2}), on_step=stop)
    resumed = prepare_resume(stopped.value.result.folder)
    with open_preview("generate", "a red circle") as preview:
        client = SSEClient(preview.url)
        client.wait(lambda e: e)
        run_image(resumed, observers=[preview.observer])
    client.wait(lambda e: e[-1][0] == "end")
    first = client.of("loss")[0]["points"][0][0]
    assert first == resumed.resume.step > 0
    assert client.of("frame")[-1]["progress"]["expected"] == 10 + 1 - first  # the steps this run makes


def test_images_are_encoded_off_the_loop_thread(tiny_models, tmp_path, monkeypatch):
    threads = []
    real = live.data_url
    monkeypatch.setattr(live, "data_url", lambda image: threads.append(threading.current_thread().name) or real(image))
    with open_preview("generate", "a red circle") as preview:
        run(tiny_cfg(tiny_models, tmp_path, steps=4, **{"output.save_every": 1}), observers=[preview.observer])
    assert len(threads) >= 2 and set(threads) == {"vqclip-preview-encoder"}


def test_batch_shows_the_images_in_flight_then_the_finished_ones(tiny_models, tmp_path):
    from vqclip.batch import plan_jobs, run_batch
    from vqclip.jobs import Job

    prompts = ["a red circle", "a blue square", "a green star"]
    base = tiny_cfg(tiny_models, tmp_path, steps=4, **{"output.save_every": 2})
    planned = plan_jobs([Job(k, p, {}, f"line {k + 1}", f"j{k}") for k, p in enumerate(prompts)], base, 5)
    out = tmp_path / "batch"
    with open_preview("batch", "prompts.txt", root=out) as preview:
        client = SSEClient(preview.url)
        client.wait(lambda e: e)
        run_batch(planned, out, torch.device("cpu"), 2, observers=[preview.observer])
        client.wait(lambda e: len([n for n, _ in e if n == "finished"]) == 3)
        for record in client.of("finished"):  # every finished image and the gallery are served from the batch folder
            assert get(preview.url, "/" + record["record"]["image"])[0] == 200
        assert get(preview.url, "/files/index.html")[0] == 200
    begins = client.of("begin")
    assert [[s["prompt"] for s in b["slots"]] for b in begins] == [prompts[:2], prompts[2:]]
    assert {(f["slot"], f["step"]) for f in client.of("frame")} == {(0, 0), (1, 0), (0, 2), (1, 2)}
    finished = [f["record"] for f in client.of("finished")]
    assert [r["prompt"] for r in finished] == prompts and [r["seed"] for r in finished] == [5, 6, 7]
    assert all(r["image"].startswith("files/000") and r["image"].endswith("/final.png") for r in finished)
    expected = client.of("frame")[-1]["progress"]["expected"]
    assert expected == 2 * 5  # two groups of 4 steps and a final one


def test_animation_shows_every_frame(tiny_models, tmp_path):
    from vqclip.animate import run_animation
    from vqclip.runner import prepare_run

    cfg = tiny_cfg(tiny_models, tmp_path, steps=2, **{"animation.frames": 3, "animation.steps_per_frame": 1})
    with open_preview("animate", "a red circle") as preview:
        client = SSEClient(preview.url)
        client.wait(lambda e: e)
        run_animation(prepare_run(cfg, unit="frame"), observers=[preview.observer])
    client.wait(lambda e: e[-1][0] == "end")
    assert [f["step"] for f in client.of("frame")] == [0, 1, 2]
    assert client.of("begin")[0]["slots"][0]["steps"] == 3
    assert client.of("finished")[0]["record"]["videos"] == ["files/animation.mp4"]


def test_a_page_that_stops_reading_never_holds_the_run():
    """Publishing never waits for a page: one that reads nothing is dropped once its socket is full and it falls 64
    events behind, and the page that reads gets everything."""
    with open_preview("generate", "t") as preview:
        stuck = SSEClient(preview.url, rcvbuf=2048, read=False)  # connects, then reads nothing
        good = SSEClient(preview.url)
        good.wait(lambda e: e)
        while len(preview.state._clients) < 2:
            time.sleep(0.01)
        big = "x" * 100_000  # 150 events of 100 kB, a frame's cadence apart: more than the sockets' buffers hold
        slowest = 0.0
        for k in range(150):
            t = time.monotonic()
            preview.state.publish("warning", {"message": big, "k": k})
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.02)
        good.wait(lambda e: len(e) == 151)
        assert len(preview.state._clients) == 1  # the stuck page was dropped, the good one kept
        t = time.monotonic()
    closed = time.monotonic() - t
    stuck.close()
    assert [d["k"] for d in good.of("warning")] == list(range(150))
    assert slowest < 0.5, f"a publish waited {slowest:.2f} s"
    assert closed < 20, f"closing the preview took {closed:.1f} s"


# the files it serves: the run's own, and nothing else


@pytest.fixture
def served(tmp_path):
    """A preview whose run folder holds a PNG, a frame, a temp file, a text file and links in and out."""
    root = tmp_path / "run"
    (root / "frames").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(root / "final.png")
    Image.new("RGB", (8, 8), "blue").save(root / "frames" / "step_00000.png")
    (root / ".final.1.tmp.png").write_bytes(b"half")
    (root / "notes.txt").write_text("not media")
    (tmp_path / "secret.png").write_bytes(b"secret")
    os.symlink(tmp_path / "secret.png", root / "leak.png")
    os.symlink(tmp_path, root / "up")
    with open_preview("generate", "t", root=root) as preview:
        yield preview


def test_the_run_folder_files_are_served(served):
    status, body, headers = get(served.url, "/files/final.png")
    assert status == 200 and body == (served.state.root / "final.png").read_bytes()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(served.url, "/files/frames/step_00000.png")[0] == 200
    assert get(served.url, "/files/frames%2Fstep_00000.png")[0] == 200  # an encoded slash is still inside
    page = get(served.url, "/")
    assert page[0] == 200 and b"EventSource" in page[1] and "default-src 'none'" in page[2]["Content-Security-Policy"]
    for host in ("localhost", "127.0.0.1", f"127.0.0.1:{urlsplit(served.url).port}", "[::1]:80"):
        assert get(served.url, "/", host=host)[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/files/../../etc/passwd",
        "/files/..%2f..%2fetc%2fpasswd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/%252e%252e/secret.png",
        "/files//etc/passwd",
        "/files/%2fetc%2fpasswd",
        "/files/..\\secret.png",
        "/files/up/secret.png",
        "/files/leak.png",
        "/files/.final.1.tmp.png",
        "/files/notes.txt",
        "/files/frames",
        "/files/frames/",
        "/files/",
        "/files",
        "/files/final.png%00.txt",
        "/../../etc/passwd",
        "/etc/passwd",
        "//etc/passwd",
        "/final.png",
        "/events/../files/../../secret.png",
        "/page.html",
        "/state.py",
    ],
)
def test_every_request_outside_the_run_folder_is_refused(served, path):
    status, body, _ = get(served.url, path)
    assert status == 404 and b"secret" not in body and b"root:" not in body


def test_pages_of_other_sites_are_refused(served):
    """A DNS name rebound to 127.0.0.1 sends its own Host: refused, so no web page elsewhere reads the run."""
    for host in ("evil.example", f"evil.example:{urlsplit(served.url).port}", "127.0.0.1.nip.io", ""):
        assert get(served.url, "/files/final.png", host=host)[0] == 403
    assert get(served.url, "/files/final.png", method="POST")[0] == 501
    assert get(served.url, "/files/final.png", method="PUT")[0] == 501


# the CLI

runner = CliRunner()


@pytest.mark.parametrize("command", ["generate", "animate", "batch"])
def test_preview_prints_its_url_and_ends_with_the_run(command, tiny_args, tmp_path):
    (tmp_path / "prompts.txt").write_text("a red circle\n")
    what = {
        "generate": ["a red circle"],
        "animate": ["a red circle", "--frames", "2", "--steps-per-frame", "1"],
        "batch": [str(tmp_path / "prompts.txt")],
    }[command]
    result = runner.invoke(app, [command, *what, *tiny_args, "--preview"])
    assert result.exit_code == 0, result.output
    (url,) = re.findall(r"preview: (http://127\.0\.0\.1:\d+/)", result.stderr)
    assert refused(url)
    assert result.stdout.strip().splitlines()[-1].endswith(".mp4" if command == "animate" else "final.png")


def test_a_port_in_use_is_a_one_line_error(tiny_args, no_model_loads):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--preview", "--preview-port", str(port)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use; give another --preview-port, or 0 "
        f"for any free one"
    )


def test_an_address_it_cannot_listen_on_is_a_one_line_error(tiny_args, tmp_path, no_model_loads):
    result = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--preview", "--preview-host", "999.1.1.1"])
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot serve the preview on 999.1.1.1:0 (")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()  # nothing made


@pytest.mark.slow
def test_the_benchmark_script_measures_both_arms(tmp_path):
    script = Path(__file__).parent.parent / "scripts" / "bench_preview.py"
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            "--pairs",
            "1",
            "--steps",
            "3",
            "--save-every",
            "1",
            "--json",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads((tmp_path / "b.json").read_text())
    for name in ("wall", "loop_thread_cpu", "process_cpu"):
        assert figures[name]["with_s_per_step"] > 0 and figures[name]["without_s_per_step"] > 0
    assert figures["preview_calls_on_loop_thread_s_per_step"] > 0 and len(figures["load_before"]) == 3


def test_state_drops_a_page_that_falls_too_far_behind():
    state = LiveState("generate", "t")
    _, q = state.subscribe()
    for _ in range(200):
        state.publish("loss", {"points": []})
    assert q.qsize() <= 64 and not state._clients  # dropped, and its stream told to end
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[-1] is None


# real processes in a real browser


class CliRun:
    """`python -m vqclip ...` in its own process, its stderr collected; SIGINT reaches it (see test_interrupt)."""

    def __init__(self, args: list[str], cwd: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vqclip", *args],
            cwd=cwd,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read(256), ""):
            self.stderr += chunk

    def url(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(r"preview: (http://\S+/)", self.stderr):
                return m.group(1)
            if self.proc.poll() is not None:
                pytest.fail(f"vqclip ended before its preview started: {self.stderr[-2000:]}")
            time.sleep(0.1)
        pytest.fail("no preview URL printed")

    def interrupt(self, timeout: float = 120) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        stdout = self.proc.communicate(timeout=timeout)[0]
        return self.proc.returncode, stdout

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


STEP = "+/step (\\d+)/.exec(document.querySelector('.slot .step').textContent)[1]"  # the slot's step, in JS


def img_region(browser: Browser, png: bytes, selector: str) -> np.ndarray:
    """The pixels of one element in a screenshot."""
    box = browser.evaluate(
        f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
        f".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }})()"
    )
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB").crop(tuple(round(v) for v in box)))


def save_shot(png: bytes, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / name).write_bytes(png)


def test_the_page_of_a_real_run_shows_the_image_forming(tmp_path):
    need_chromium()
    cli = CliRun(
        [
            "generate",
            "a red circle",
            "--preset",
            "toy",
            "--steps",
            "100000",
            "--save-every",
            "5",
            "--seed",
            "3",
            "--name",
            "run",
            "--out",
            str(tmp_path / "out"),
            "--preview",
        ],
        tmp_path,
    )
    try:
        url = cli.url()
        with Browser(tmp_path / "profile", 900, 560) as browser:
            browser.goto(url)
            browser.wait_for(
                "document.querySelector('.slot img') && document.querySelector('.slot img').naturalWidth"
                " > 0 && document.querySelector('.slot .lossvalue').textContent !== ''"
            )
            first_src = browser.evaluate("document.querySelector('.slot img').src")
            first = browser.screenshot()
            browser.wait_for(
                f"document.querySelector('.slot img').src !== {json.dumps(first_src)} && "
                "document.querySelector('#eta').textContent.includes('left') && " + STEP + " >= 60"
            )
            second = browser.screenshot()
            save_shot(second, "preview.png")
            before, after = img_region(browser, first, ".slot img"), img_region(browser, second, ".slot img")
            assert before.std() > 5 and not np.array_equal(before, after)  # an image, and it changed
            text = browser.evaluate("document.body.innerText")
            assert "a red circle" in text and "seed 3" in text and "step " in text and "/ 100000" in text
            assert (
                browser.evaluate("document.querySelector('.slot polyline').getAttribute('points').split(' ').length")
                > 5
            )  # the loss curve
            assert browser.evaluate("document.getElementById('status').textContent") == "running"

            run_folder = tmp_path / "out" / "run"
            os.symlink(tmp_path / "out", run_folder / "up")  # a link inside the folder that leads out of it
            (tmp_path / "out" / "secret.png").write_bytes(b"secret")
            outside = [
                "files/..%2f..%2f..%2fetc%2fpasswd",
                "/files/%2e%2e/%2e%2e/etc/passwd",
                "files/up/secret.png",
                "files/..%2fsecret.png",
                "/etc/passwd",
                "files/" + "%252e%252e%252fsecret.png",
            ]
            statuses = browser.evaluate(
                "Promise.all(" + json.dumps(outside) + ".map(u => fetch(u).then(r => r.status)))"
            )
            assert statuses == [404] * len(outside)
            assert browser.evaluate("fetch('files/frames/step_00000.png').then(r => r.status)") == 200
            origin = url.rstrip("/")
            assert all(u.startswith(origin) or u.startswith("data:") for u, _ in browser.responses())

            code, stdout = cli.interrupt()
            assert code == 130 and stdout.strip().splitlines()[-1] == str(run_folder / "final.png")
            browser.wait_for("document.getElementById('status').textContent === 'interrupted'")
            assert refused(url)  # the server ended with the run
    finally:
        cli.kill()


def test_the_page_of_a_real_batch_shows_the_finished_images_and_the_one_in_flight(tmp_path):
    need_chromium()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle   ## steps=100000\n")
    cli = CliRun(
        [
            "batch",
            str(prompts),
            "--preset",
            "toy",
            "--steps",
            "20",
            "--save-every",
            "5",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "batch"),
            "--preview",
        ],
        tmp_path,
    )
    try:
        url = cli.url()
        with Browser(tmp_path / "profile", 900, 900) as browser:
            browser.goto(url)
            browser.wait_for(
                "document.querySelectorAll('#finished .card img').length === 2 && "
                "[...document.querySelectorAll('#finished .card img')].every(i => i.naturalWidth > 0) && "
                "document.querySelector('.slot .prompt').textContent === 'a green triangle' && "
                "document.querySelector('.slot img').naturalWidth > 0",
                timeout=240,
            )
            text = browser.evaluate("document.body.innerText")
            assert "a red circle" in text and "a blue square" in text and "a green triangle" in text
            finished = browser.evaluate("[...document.querySelectorAll('#finished .card img')].map(i => i.src)")
            assert all(re.search(r"/files/000[12]-a-.*-s[12]/final\.png$", src) for src in finished)
            assert browser.evaluate("fetch(document.getElementById('gallery').href).then(r => r.status)") == 200
            browser.wait_for(STEP + " >= 20")  # the image in flight moves on
            save_shot(browser.screenshot(), "preview-batch.png")
            code, _ = cli.interrupt()
            assert code == 130
            browser.wait_for("document.getElementById('status').textContent === 'interrupted'")
    finally:
        cli.kill()
