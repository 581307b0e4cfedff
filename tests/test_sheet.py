"""The batch contact sheet, through `vqclip batch`: every thumbnail has its prompt (shortened) and seed beneath."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageFont
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.outputs import read_png_metadata
from vqclip.sheet import FONT_SIZE, LABEL_WIDTH, shorten

LONG = "a lighthouse on a cliff in a storm at night, waves crashing, oil painting by an old master"


def test_the_sheet_labels_each_tile_with_its_prompt_and_seed(tiny_args, tmp_path):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text(f"a red circle\n{LONG}\na blue square   ## seed=77\n")
    result = CliRunner().invoke(app, ["batch", str(jobs), *tiny_args, "--steps", "1", "--seed", "5"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "out" / "contact_sheet.png"
    tiles = json.loads(read_png_metadata(path)["prompts"])
    assert [(t["prompt"], t["seed"]) for t in tiles] == [("a red circle", 5), (LONG, 6), ("a blue square", 77)]
    labels = [t["label"] for t in tiles]
    assert labels[0] == "a red circle" and labels[2] == "a blue square"
    assert labels[1].endswith("...") and LONG.startswith(labels[1][:-3]) and len(labels[1]) < len(LONG)
    sheet = np.asarray(Image.open(path).convert("L"))
    assert sheet.shape[1] == 2 * LABEL_WIDTH  # 2 columns, each wide enough for a label under a 32 px image
    cell_h = sheet.shape[0] // 2
    strips = [
        sheet[r * cell_h + 32 : (r + 1) * cell_h, c * LABEL_WIDTH : (c + 1) * LABEL_WIDTH]
        for r, c in ((0, 0), (0, 1), (1, 0))
    ]
    assert all((s < 128).sum() > 20 for s in strips)  # text is drawn under every thumbnail
    assert not np.array_equal(strips[0], strips[2])  # ... and it is each tile's own


def test_shorten_fits_the_width_and_keeps_what_fits():
    font = ImageFont.load_default(size=FONT_SIZE)
    for width in (20, 60, 154, 400):
        label = shorten(LONG, font, width)
        assert font.getlength(label) <= width or label == "..."
        assert label == LONG or (label.endswith("...") and LONG.startswith(label[:-3].rstrip()))
    assert shorten("two\nlines  here", font, 400) == "two lines here"
