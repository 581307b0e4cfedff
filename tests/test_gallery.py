"""A batch's gallery (vqclip.gallery): index.html beside manifest.jsonl, current as the batch goes, safe whatever the
manifest says, and working opened from disk in a real browser (tests/browser.py; skipped without Chromium)."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import Browser, need_chromium
from PIL import Image
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.gallery import GALLERY, Gallery, render_gallery, write_gallery

runner = CliRunner()
# a folder (e.g. docs): the browser tests also save their screenshots there; read before the tests chdir
SHOTS = Path(os.environ["VQCLIP_SCREENSHOTS"]).resolve() if os.environ.get("VQCLIP_SCREENSHOTS") else None


class Page(HTMLParser):
    """The gallery's cards as a browser would see them: every tag's attributes, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, attr: str) -> list[str]:
        return [a[attr] for t, a in self.tags if t == tag and attr in a]


@pytest.fixture
def batch_dir(tmp_path):
    out = tmp_path / "batch"
    for name in ("0001-a-red-circle-s1", "0002-a-blue-square-s2"):
        (out / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), "red").save(out / name / "final.png")
    (out / "0002-a-blue-square-s2" / "progress.mp4").write_bytes(b"mp4")
    return out


def record(k: int, prompt: str, image: str, **extra) -> dict:
    return {
        "id": f"j{k}",
        "index": k,
        "prompt": prompt,
        "seed": k + 1,
        "status": "done",
        "image": image,
        "loss": 0.25 + k,
        "seconds": 1.5,
        "videos": [],
        **extra,
    }


def test_cards_show_prompt_seed_loss_time_and_link_png_and_videos(batch_dir):
    records = [
        record(0, "a red circle", "0001-a-red-circle-s1/final.png", size=[32, 32]),
        record(1, "a blue square", "0002-a-blue-square-s2/final.png", videos=["0002-a-blue-square-s2/progress.mp4"]),
    ]
    page = Page(render_gallery(batch_dir, records, "prompts.txt"))
    assert page.all("img", "src") == ["0001-a-red-circle-s1/final.png", "0002-a-blue-square-s2/final.png"]
    assert page.all("a", "href") == [
        "0001-a-red-circle-s1/final.png",
        "0001-a-red-circle-s1/final.png",
        "0002-a-blue-square-s2/final.png",
        "0002-a-blue-square-s2/final.png",
        "0002-a-blue-square-s2/progress.mp4",
    ]
    text = " ".join(page.text)
    assert "a red circle" in text and "seed 1 · loss 0.2500 · 1.5 s" in text and "seed 2 · loss 1.2500" in text
    assert "mp4" in text and "2 images" in text and "prompts.txt" in text


def test_the_last_record_of_each_job_wins_in_job_order(batch_dir):
    records = [
        record(1, "a blue square", "0002-a-blue-square-s2/final.png", status="interrupted"),
        record(0, "a red circle", "0001-a-red-circle-s1/final.png"),
        record(1, "a blue square", "0002-a-blue-square-s2/final.png", loss=0.125),
    ]
    text = " ".join(Page(render_gallery(batch_dir, records)).text)
    assert text.index("a red circle") < text.index("a blue square")
    assert "interrupted" not in text and "loss 0.1250" in text and text.count("seed ") == 2
    shown = " ".join(Page(render_gallery(batch_dir, records[:2])).text)
    assert re.search(r"a blue square.*interrupted", shown, re.S)  # an interrupted image is shown as such


@pytest.mark.parametrize(
    "bad",
    [
        {"image": "../outside.png"},
        {"image": "/etc/passwd"},
        {"image": "javascript:alert(1)"},
        {"image": "0001-a-red-circle-s1/missing.png"},
        {"image": "0001-a-red-circle-s1"},
        {"image": 7},
        {"image": "0001-a-red-circle-s1/.final.1.tmp.png"},
        {"id": None},
        {"id": 3},
    ],
)
def test_a_manifest_line_naming_anything_outside_the_batch_is_not_linked(batch_dir, bad, tmp_path):
    (tmp_path / "outside.png").write_bytes(b"x")
    html = render_gallery(batch_dir, [{**record(0, "a red circle", "0001-a-red-circle-s1/final.png"), **bad}])
    page = Page(html)
    assert page.all("img", "src") == [] and page.all("a", "href") == []


def test_text_from_the_manifest_is_escaped_and_odd_values_are_not_shown(batch_dir):
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)> "quoted" & more'
    records = [
        record(
            0,
            evil,
            "0001-a-red-circle-s1/final.png",
            seed="<b>",
            loss="NaN",
            seconds=float("inf"),
            status="<i>odd</i>",
            videos=["../x.mp4", "0002-a-blue-square-s2/progress.mp4", None],
        )
    ]
    html = render_gallery(batch_dir, records)
    page = Page(html)
    assert [t for t, _ in page.tags if t in ("script", "b", "i")] == []
    assert len(page.all("img", "src")) == 1 and evil in "".join(page.text)
    assert "seed ?" in html and "loss" not in html.split("<figure")[1] and " s<" not in html
    assert page.all("a", "href")[-1] == "0002-a-blue-square-s2/progress.mp4" and "../x.mp4" not in html


def test_it_is_written_atomically_and_throttled(batch_dir, monkeypatch):
    import vqclip.gallery as gallery

    writes = []
    real = gallery.write_durably
    monkeypatch.setattr(gallery, "write_durably", lambda path, *a, **k: writes.append(path) or real(path, *a, **k))
    g = Gallery(batch_dir, every=3600)
    g.add(record(0, "a red circle", "0001-a-red-circle-s1/final.png"))
    g.add(record(1, "a blue square", "0002-a-blue-square-s2/final.png"))
    assert writes == [batch_dir / GALLERY] and (batch_dir / GALLERY).read_text().count("<figure") == 1
    g.flush()
    assert len(writes) == 2 and (batch_dir / GALLERY).read_text().count("<figure") == 2
    assert g.flush() is None  # nothing new
    assert [p.name for p in batch_dir.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_a_batch_keeps_its_gallery_current_as_it_goes(tiny_models, tmp_path, monkeypatch):
    import torch

    import vqclip.gallery
    from vqclip.batch import plan_jobs, run_batch
    from vqclip.config import resolve
    from vqclip.jobs import Job

    base = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "cutouts.cutn": 2,
            "device": "cpu",
            "steps": 2,
        }
    )
    prompts = ["a red circle", "a blue square", "a green star"]
    planned = plan_jobs([Job(k, p, {}, f"line {k + 1}", f"j{k}") for k, p in enumerate(prompts)], base, 1)
    out = tmp_path / "batch"
    seen = []

    def on_done(r):  # the gallery already shows every image finished so far
        seen.append(Page((out / GALLERY).read_text()).all("img", "src"))

    monkeypatch.setattr(vqclip.gallery, "EVERY", 0)  # every record rewrites it (by default at most every 2 s)
    result = run_batch(planned, out, torch.device("cpu"), 1, on_done=on_done)
    assert [len(s) for s in seen] == [1, 2, 3]
    final = Page((out / GALLERY).read_text())
    assert final.all("img", "src") == [r["image"] for r in result.records]
    assert "contact_sheet.png" in final.all("a", "href") and "manifest.jsonl" in final.all("a", "href")


def test_an_interrupted_batch_still_has_a_gallery(tiny_models, tmp_path):
    import torch

    from vqclip.batch import plan_jobs, run_batch
    from vqclip.config import resolve
    from vqclip.jobs import Job

    base = resolve(
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "cutouts.cutn": 2,
            "device": "cpu",
            "steps": 50,
        }
    )
    planned = plan_jobs([Job(0, "a red circle", {}, "line 1", "j0")], base, 1)

    def stop(step):
        if step.i == 3:
            raise KeyboardInterrupt

    result = run_batch(planned, tmp_path / "batch", torch.device("cpu"), 1, on_step=stop)
    assert result.interrupted
    page = (tmp_path / "batch" / GALLERY).read_text()
    assert "interrupted" in page and Page(page).all("img", "src") == [result.records[0]["image"]]


def test_write_gallery_refuses_nothing_it_cannot_write(tmp_path):
    path = write_gallery(tmp_path, [])
    assert path == tmp_path / GALLERY and "0 images" in path.read_text()


def test_the_gallery_of_a_toy_batch_opened_from_disk_shows_every_prompt(tmp_path):
    need_chromium()
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow star"]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    result = runner.invoke(
        app,
        [
            "batch",
            str(tmp_path / "prompts.txt"),
            "--preset",
            "toy",
            "--steps",
            "40",
            "--seed",
            "10",
            "--out",
            str(tmp_path / "batch"),
            "--video",
        ],
    )
    assert result.exit_code == 0, result.output
    index = tmp_path / "batch" / GALLERY
    manifest = [json.loads(line) for line in (tmp_path / "batch" / "manifest.jsonl").read_text().splitlines()]
    with Browser(tmp_path / "profile", 1040, 420) as browser:
        browser.goto(index.as_uri())
        browser.wait_for("[...document.images].length === 4 && [...document.images].every(i => i.complete)")
        cards = browser.evaluate(
            "[...document.querySelectorAll('figure')].map(f => ({"
            "loaded: f.querySelector('img').naturalWidth, src: f.querySelector('img').src, "
            "caption: f.querySelector('figcaption').innerText, "
            "links: [...f.querySelectorAll('figcaption a')].map(a => a.href)}))"
        )
        title = browser.evaluate("document.querySelector('h1').textContent")
        png = browser.screenshot()
    assert title == "prompts.txt"
    assert [c["loaded"] for c in cards] == [32] * 4  # every thumbnail decoded, from the files beside index.html
    for card, prompt, r in zip(cards, prompts, manifest):
        assert card["caption"].startswith(prompt) and f"seed {r['seed']}" in card["caption"]
        assert f"loss {r['loss']:.4f}" in card["caption"] and f"{r['seconds']:.1f} s" in card["caption"]
        assert card["src"] == (tmp_path / "batch" / r["image"]).as_uri()
        assert card["links"] == [(tmp_path / "batch" / p).as_uri() for p in [r["image"], *r["videos"]]]
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / "gallery.png").write_bytes(png)
