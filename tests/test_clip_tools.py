"""score, rank and classify on a tiny random CLIP, through the same loader and CLI users hit."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import write_clip
from typer.testing import CliRunner

from vqclip import clip_tools, toy
from vqclip.cli import app
from vqclip.clip import Perceptor, load_clip

runner = CliRunner()
LINE = re.compile(r"^(-?\d+\.\d{4})  (.+)$")


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    lines = result.stdout.strip().splitlines()
    return result, [(float(m[1]), m[2]) for m in map(LINE.match, lines) if m], lines


def write_toy(folder: Path, items, seed=0, size=48) -> list[Path]:
    """Rendered toy images (colour, shape) saved as PNGs named after their caption."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (colour, shape) in enumerate(items):
        path = folder / f"{i:02d}-{colour}-{shape}.png"
        Image.fromarray(toy.render(colour, shape, rng, size)).save(path)
        paths.append(path)
    return paths


ITEMS = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle")]


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "images"
    write_toy(folder, ITEMS)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def perceptor(tiny_models):
    return load_clip(tiny_models["clip"])


@pytest.fixture
def encode_calls(monkeypatch):
    """Counts images through Perceptor.encode_image (the real method still runs)."""
    calls = []
    real = Perceptor.encode_image

    def counting(self, images):
        calls.append(len(images))
        return real(self, images)

    monkeypatch.setattr(Perceptor, "encode_image", counting)
    return calls


# ---------------------------------------------------------------------------------------------------------
# the library


def test_clip_view_matches_open_clip_preprocessing(tiny_models, perceptor, tmp_path):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(tiny_models["clip"])
    rng = np.random.default_rng(1)
    path = tmp_path / "wide.png"  # not square: the resize and centre crop matter
    Image.fromarray(rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)).save(path)
    ours = clip_tools.clip_view(path, perceptor.input_size)
    theirs = preprocess(Image.open(path))[None] * perceptor.std + perceptor.mean  # undo their Normalize
    assert ours.shape == theirs.shape == (1, 3, 32, 32)
    assert (ours - theirs).abs().mean() < 0.02
    with torch.no_grad():
        a = torch.nn.functional.normalize(perceptor.encode_image(ours), dim=-1)
        b = torch.nn.functional.normalize(model.eval().encode_image(preprocess(Image.open(path))[None]), dim=-1)
    assert float((a * b).sum()) > 0.99


def test_score_is_cosine_of_unit_embeddings(perceptor, folder):
    paths = sorted(folder.glob("*.png"))
    scores = clip_tools.score(perceptor, paths, "a red circle")
    with torch.no_grad():
        images = torch.cat([clip_tools.clip_view(p, 32) for p in paths])
        img = perceptor.encode_image(images)
    txt = perceptor.encode_text(["a red circle"])
    expected = torch.nn.functional.cosine_similarity(img, txt)
    assert torch.allclose(torch.tensor(scores), expected, atol=1e-5)


def test_classify_is_softmax_of_scaled_cosines(perceptor, folder):
    image = sorted(folder.glob("*.png"))[0]
    labels = ["red circle", "blue square", "green triangle"]
    preds = clip_tools.classify(perceptor, image, labels, templates=["a {}"])
    assert sorted(p.label for p in preds) == sorted(labels)
    probs = [p.probability for p in preds]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    cos = torch.tensor(
        clip_tools.score(perceptor, [image], "a red circle")
        + clip_tools.score(perceptor, [image], "a blue square")
        + clip_tools.score(perceptor, [image], "a green triangle")
    )
    expected = (perceptor.logit_scale * cos).softmax(0)
    assert perceptor.logit_scale != 1.0
    assert {p.label: round(p.probability, 5) for p in preds} == {
        lb: round(float(e), 5) for lb, e in zip(labels, expected)
    }


def test_label_embeddings_average_the_templates(perceptor):
    templates = ["a {}", "a photo of a {}."]
    got = clip_tools.label_embeddings(perceptor, ["cat"], templates)[0]
    each = clip_tools.embed_texts(perceptor, ["a cat", "a photo of a cat."])
    assert torch.allclose(got, torch.nn.functional.normalize(each.mean(0), dim=0), atol=1e-6)
    assert abs(float(got.norm()) - 1) < 1e-5


def test_rank_skips_unreadable_images_with_a_notice(perceptor, folder):
    (folder / "broken.png").write_text("not a png")
    result = clip_tools.rank(perceptor, folder, "a red circle")
    assert [p.name for p in result.skipped] == ["broken.png"]
    assert sorted(p.name for p, _ in result.ranked) == sorted(p.name for p in folder.glob("0*.png"))


def test_cache_misses_when_the_model_changes(tmp_path, folder, encode_calls):
    first = load_clip(f"local-dir:{write_clip(tmp_path / 'clip_a', seed=1)}")
    second = load_clip(f"local-dir:{write_clip(tmp_path / 'clip_b', seed=2)}")
    assert clip_tools.rank(first, folder, "x").computed == 4
    assert clip_tools.rank(second, folder, "x").computed == 4
    assert clip_tools.rank(first, folder, "x").cached == 4
    assert sum(encode_calls) == 8


# ---------------------------------------------------------------------------------------------------------
# the commands


def test_score_prints_one_line_per_image_in_order(tiny_models, folder, perceptor):
    paths = [folder / "01-blue-square.png", folder / "00-red-circle.png"]
    result, rows, lines = invoke("score", *paths, "--prompt", "a red circle", "--clip", tiny_models["clip"])
    assert result.exit_code == 0, result.output
    assert len(lines) == 2 and [p for _, p in rows] == [str(p) for p in paths]
    expected = clip_tools.score(perceptor, paths, "a red circle")
    assert [s for s, _ in rows] == pytest.approx(expected, abs=1e-4)


def test_rank_prints_best_first_and_top_k(tiny_models, folder):
    result, rows, lines = invoke("rank", folder, "a red circle", "--clip", tiny_models["clip"])
    assert result.exit_code == 0, result.output
    assert len(lines) == len(rows) == 4  # notes.txt is not an image
    scores = [s for s, _ in rows]
    assert scores == sorted(scores, reverse=True)
    _, top, lines = invoke("rank", folder, "a red circle", "--top", "2", "--clip", tiny_models["clip"])
    assert top == rows[:2] and len(lines) == 2


def test_second_query_reuses_cached_embeddings(tiny_models, folder, encode_calls):
    clip = tiny_models["clip"]
    result, first, _ = invoke("rank", folder, "a red circle", "--clip", clip)
    assert result.exit_code == 0, result.output
    assert sum(encode_calls) == 4 and "embedded 4 image(s), 0 from the cache" in result.stderr
    encode_calls.clear()
    result, second, _ = invoke("rank", folder, "a blue square", "--clip", clip)
    assert encode_calls == [] and "embedded 0 image(s), 4 from the cache" in result.stderr
    _, uncached, _ = invoke("rank", folder, "a blue square", "--clip", clip, "--no-cache")
    assert sum(encode_calls) == 4 and second == uncached  # the cache changes nothing but the time
    assert list(Path(os.environ["VQCLIP_CHECKPOINTS"], "cache", "embeddings").glob("*.pt"))
    assert not [p for p in folder.iterdir() if p.suffix not in (".png", ".txt")]  # nothing written there

    # a changed file (new size and mtime) is embedded again; the others still come from the cache
    encode_calls.clear()
    Image.fromarray(toy.render("blue", "square", np.random.default_rng(5), 40)).save(folder / "01-blue-square.png")
    result, _, _ = invoke("rank", folder, "a blue square", "--clip", clip)
    assert encode_calls == [1] and "embedded 1 image(s), 3 from the cache" in result.stderr


def test_broken_cache_file_is_recomputed(tiny_models, folder, encode_calls):
    invoke("rank", folder, "x", "--clip", tiny_models["clip"])
    for f in Path(os.environ["VQCLIP_CHECKPOINTS"], "cache", "embeddings").glob("*.pt"):
        f.write_bytes(b"garbage")
    encode_calls.clear()
    result, rows, _ = invoke("rank", folder, "x", "--clip", tiny_models["clip"])
    assert result.exit_code == 0 and len(rows) == 4 and sum(encode_calls) == 4


def test_classify_prints_probabilities_best_first(tiny_models, folder):
    result, rows, lines = invoke(
        "classify",
        folder / "00-red-circle.png",
        "--labels",
        "red circle, blue square,cat",
        "--clip",
        tiny_models["clip"],
    )
    assert result.exit_code == 0, result.output
    assert len(lines) == 3 and sorted(lb for _, lb in rows) == ["blue square", "cat", "red circle"]
    probs = [p for p, _ in rows]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-3)
    _, one_template, _ = invoke(
        "classify",
        folder / "00-red-circle.png",
        "--labels",
        "red circle,blue square",
        "--template",
        "a {}",
        "--clip",
        tiny_models["clip"],
    )
    assert len(one_template) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["score", "missing.png", "--prompt", "x"], "image missing.png does not exist"),
        (["score", "{folder}", "--prompt", "x"], "is a folder; give image files"),
        (["score", "{img}", "--prompt", "  "], "the prompt is empty"),
        (["score", "{folder}/notes.txt", "--prompt", "x"], "cannot read image"),
        (["classify", "{img}", "--labels", " , "], "give at least two labels"),
        (["classify", "{img}", "--labels", "cat"], "give at least two labels"),
        (["classify", "{img}", "--labels", "cat,dog,Cat"], "label 'Cat' is given twice"),
        (["classify", "{img}", "--labels", "cat,dog", "--template", "a photo"], "needs exactly one {}"),
        (["classify", "missing.png", "--labels", "cat,dog"], "image missing.png does not exist"),
        (["rank", "nowhere", "x"], "folder nowhere does not exist"),
        (["rank", "{empty}", "x"], "holds no images"),
        (["rank", "{folder}", "x", "--top", "0"], "--top must be at least 1"),
        (["rank", "{folder}", " "], "the query is empty"),
    ],
)
def test_bad_input_is_one_line_exit_2(tiny_models, folder, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    fill = {"img": folder / "00-red-circle.png", "folder": folder, "empty": tmp_path / "empty"}
    result = runner.invoke(app, [a.format(**fill) for a in args] + ["--clip", tiny_models["clip"]])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_input_errors_come_before_the_model_loads(folder):
    # a CLIP that does not exist: the image/label errors must win, so no model is ever loaded for them
    img = str(folder / "00-red-circle.png")
    for args in (
        ["score", "missing.png", "--prompt", "x"],
        ["score", img, "--prompt", " "],
        ["rank", "nowhere", "x"],
        ["rank", str(folder), ""],
        ["rank", str(folder), "x", "--top", "0"],
        ["classify", img, "--labels", "cat"],
        ["classify", img, "--labels", "a,b", "--template", "x"],
    ):
        result = runner.invoke(app, args + ["--clip", "local-dir:/no/such/clip"])
        assert result.exit_code == 2 and "clip" not in result.stderr.lower(), result.stderr


def test_default_clip_is_generates_and_toy_is_an_alias():
    from vqclip.config import ModelConfig
    from vqclip.store import resolve_clip

    assert clip_tools.default_clip() == ModelConfig().clip[0] == "ViT-B-32-quickgelu:openai"
    assert resolve_clip("toy").startswith("local-dir:") and resolve_clip("toy").endswith("toy/clip")


# ---------------------------------------------------------------------------------------------------------
# the trained toy CLIP: the commands must mean what they say


def _toy_clip_dir() -> Path:
    from vqclip.store import resolve_clip

    return Path(resolve_clip("toy").split(":", 1)[1])


needs_toy = pytest.mark.skipif(
    not (_toy_clip_dir() / "open_clip_config.json").is_file(),
    reason=f"the toy CLIP is absent ({_toy_clip_dir()}): it lands as checkpoints/toy/clip, made by "
    f"scripts/train_toy.py --only clip",
)


@needs_toy
def test_toy_classify_names_rendered_toy_images():
    perceptor = clip_tools.open_perceptor("toy", "cpu")
    labels = [f"{c} {s}" for c in toy.COLOURS for s in toy.SHAPES]
    items = [(c, s) for c in toy.COLOURS for s in toy.SHAPES] * 2
    paths = write_toy(Path("toy"), items, seed=123, size=32)
    right = [
        clip_tools.classify(perceptor, p, labels, ["a {}"])[0].label == f"{c} {s}" for p, (c, s) in zip(paths, items)
    ]
    assert sum(right) / len(right) >= 0.85, f"{sum(right)} of {len(right)} right"
    # and through the CLI, on an image larger than CLIP's input (resized and cropped on the way in)
    big = write_toy(Path("big"), [("yellow", "triangle")], seed=7, size=64)[0]
    result, rows, _ = invoke("classify", big, "--labels", "red,green,blue,yellow", "--template", "{}", "--clip", "toy")
    assert result.exit_code == 0, result.output
    assert rows[0][1] == "yellow" and rows[0][0] > 0.5


@needs_toy
def test_toy_rank_puts_matching_images_first(tmp_path):
    folder = tmp_path / "mixed"
    reds = write_toy(folder / "a", [("red", "circle")] * 3, seed=1)
    others = write_toy(
        folder / "b",
        [
            ("red", "square"),
            ("red", "triangle"),
            ("blue", "circle"),
            ("green", "circle"),
            ("yellow", "square"),
            ("blue", "triangle"),
        ],
        seed=2,
    )
    for i, p in enumerate(reds + others):  # one flat folder, names that give nothing away
        p.rename(folder / f"img{(i * 7) % 9}.png")
    expected = {f"img{(i * 7) % 9}.png" for i in range(3)}
    result, rows, _ = invoke("rank", folder, "a red circle", "--clip", "toy", "--top", "3")
    assert result.exit_code == 0, result.output
    assert {Path(p).name for _, p in rows} == expected


# ---------------------------------------------------------------------------------------------------------
# rank over an outputs folder: every run lives in a subfolder


@pytest.fixture
def outputs(tmp_path):
    """A folder laid out as vqclip writes it, plus the files rank must not count."""
    out = tmp_path / "outputs"
    write_toy(out / "a-red-circle-s1", [("red", "circle")])[0].rename(out / "a-red-circle-s1" / "final.png")
    write_toy(out / "a-red-circle-s1" / "frames", [("red", "circle")])[0].rename(
        out / "a-red-circle-s1" / "frames" / "step_00000.png"
    )
    frames = [Image.fromarray(toy.render("red", "circle", np.random.default_rng(k), 32)) for k in range(3)]
    frames[0].save(out / "a-red-circle-s1" / "progress.gif", save_all=True, append_images=frames[1:])
    (out / "a-red-circle-s1" / "progress.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    write_toy(out / "batch" / "0001-a-blue-square-s3", [("blue", "square")])[0].rename(
        out / "batch" / "0001-a-blue-square-s3" / "final.png"
    )
    frames[0].save(out / "batch" / "contact_sheet.png")
    (out / "batch" / "manifest.jsonl").write_text("{}\n")
    frames[1].save(out / "still.gif")  # a one-frame GIF is an image
    write_toy(out / "deep" / "er" / "est", [("green", "triangle")])
    write_toy(out / ".hidden", [("red", "circle")])
    frames[2].save(out / ".final.123.tmp.png")  # an atomic write's temporary name
    write_toy(out / "ckpts" / "toy", [("red", "circle")])  # the checkpoints folder, here inside the outputs
    (out / "deep" / "loop").symlink_to(out, target_is_directory=True)  # never followed
    return out


def _ranked(tiny_models, folder, *extra):
    result, rows, _ = invoke(
        "rank", folder, "a red circle", "--clip", tiny_models["clip"], "--checkpoints-dir", folder / "ckpts", *extra
    )
    assert result.exit_code == 0, result.output
    return sorted(p for _, p in rows)


def test_rank_searches_subfolders_and_prints_paths_relative_to_the_folder(tiny_models, outputs):
    assert _ranked(tiny_models, outputs) == [
        "a-red-circle-s1/final.png",
        "batch/0001-a-blue-square-s3/final.png",
        "deep/er/est/00-green-triangle.png",
        "still.gif",
    ]
    assert _ranked(tiny_models, outputs, "--no-recursive") == ["still.gif"]
    assert "a-red-circle-s1/frames/step_00000.png" in _ranked(tiny_models, outputs, "--frames")
    assert _ranked(tiny_models, outputs / "a-red-circle-s1" / "frames") == ["step_00000.png"]  # asked for directly


def test_rank_of_a_folder_with_no_images_anywhere_says_so(tiny_models, tmp_path, no_model_loads):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = runner.invoke(app, ["rank", str(tmp_path / "empty"), "x", "--clip", tiny_models["clip"]])
    assert result.exit_code == 2 and "holds no images" in result.stderr and "or its subfolders" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# --preset: the CLIP (device, checkpoints folder) of a preset, as generate would use it


@pytest.mark.parametrize("command", ["score", "rank", "classify"])
def test_a_preset_gives_its_clip(command, tiny_models, folder, tmp_path):
    preset = tmp_path / "tinyclip.yaml"
    preset.write_text(f"model:\n  clip: ['{tiny_models['clip']}']\ndevice: cpu\n")
    args = {
        "score": ["score", folder / "00-red-circle.png", "--prompt", "a red circle"],
        "rank": ["rank", folder, "a red circle"],
        "classify": ["classify", folder / "00-red-circle.png", "--labels", "red circle,blue square"],
    }[command]
    by_preset, by_clip = invoke(*args, "--preset", preset), invoke(*args, "--clip", tiny_models["clip"])
    assert by_preset[0].exit_code == 0, by_preset[0].output
    assert by_preset[1] == by_clip[1] and by_preset[1]


def test_a_preset_with_several_clips_needs_clip(tiny_models, folder, tmp_path, no_model_loads):
    preset = tmp_path / "two.yaml"
    preset.write_text(f"model:\n  clip: ['{tiny_models['clip']}', toy]\n")
    result, _, _ = invoke("score", folder / "00-red-circle.png", "--prompt", "x", "--preset", preset)
    assert result.exit_code == 2 and "guides with 2 CLIPs" in result.stderr and "add --clip NAME" in result.stderr
    result, _, _ = invoke("score", folder / "00-red-circle.png", "--prompt", "x", "--preset", "toyy")
    assert result.exit_code == 2 and "did you mean toy?" in result.stderr


@needs_toy
def test_preset_toy_is_clip_toy():
    paths = write_toy(Path("toys"), [("red", "circle"), ("blue", "square")], size=32)
    by_preset, by_clip = (
        invoke("score", *paths, "--prompt", "a red circle", *how) for how in (["--preset", "toy"], ["--clip", "toy"])
    )
    assert by_preset[0].exit_code == 0, by_preset[0].output
    assert by_preset[1] == by_clip[1] and len(by_preset[1]) == 2


def test_two_processes_saving_one_folders_cache_keep_both_entries(tmp_path):
    """The cache's save is a read-modify-write under its lock: what another process saved meanwhile survives."""
    images = []
    for k in range(2):
        images.append(tmp_path / f"{k}.png")
        Image.fromarray(np.full((8, 8, 3), k * 90, np.uint8)).save(images[-1])
    path = tmp_path / "cache.pt"
    first, second = clip_tools.EmbeddingCache(path, "m"), clip_tools.EmbeddingCache(path, "m")  # both read it empty
    first.put(images[0], torch.ones(4))
    first.save(keep=images)
    second.put(images[1], torch.zeros(4))
    second.save(keep=images)
    again = clip_tools.EmbeddingCache(path, "m")
    assert torch.equal(again.get(images[0]), torch.ones(4)) and torch.equal(again.get(images[1]), torch.zeros(4))
    torch.save({"version": 1, "model": "m", "entries": {"x": {"file": 3}}}, path)  # vqclip's file, but damaged
    assert clip_tools.EmbeddingCache(path, "m").entries == {}
