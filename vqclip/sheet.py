"""A batch's contact sheet: its finished images in a grid, each labelled with its prompt (shortened) and seed."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

from PIL import Image, ImageDraw, ImageFont

from .manifest import image_problem, latest_done
from .outputs import save_png
from .version import __version__

__all__ = ["SHEET", "contact_sheet", "shorten"]

log = logging.getLogger("vqclip")

SHEET = "contact_sheet.png"
LABEL_WIDTH = 160  # a cell is at least this wide, so a label under a 32 px thumbnail still reads
FONT_SIZE = 12
PAD = 3


def _font():
    return ImageFont.load_default(size=FONT_SIZE)  # Pillow's bundled font: the same on every machine


def shorten(text: str, font, width: float) -> str:
    """text, cut at the end with "..." so that it fits `width` pixels in `font`."""
    text = " ".join(text.split())  # a label is one line: newlines and runs of spaces become one space
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


def contact_sheet(out: Path, records: list[dict], tile: int = 256) -> Optional[Path]:
    """A grid PNG of the batch's finished images in job order, each with its prompt and seed beneath; the PNG's
    metadata lists each tile's prompt, seed, image and label."""
    latest = latest_done(out, records, note=False)
    thumbs, done = [], []
    for r in sorted(latest.values(), key=lambda r: (r.get("index", 0), r["id"])):
        try:
            with Image.open(out / r["image"]) as im:
                im = im.convert("RGB")
                im.thumbnail((tile, tile))
        except Exception as e:  # noqa: BLE001 - a damaged image is left out of the sheet, never fatal to it
            log.warning(f"{out / r['image']} left out of the contact sheet: {image_problem(out / r['image']) or e}")
            continue
        thumbs.append(im)
        done.append(r)
    if not done:
        return None
    font = _font()
    line = font.getbbox("Hg")[3] + 2
    w, h = max(LABEL_WIDTH, *(t.width for t in thumbs)), max(t.height for t in thumbs)
    cell_h = h + 2 * line + 2 * PAD
    cols = math.ceil(math.sqrt(len(thumbs)))
    grid = Image.new("RGB", (cols * w, math.ceil(len(thumbs) / cols) * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    labels = []
    for k, (t, r) in enumerate(zip(thumbs, done)):
        x, y = (k % cols) * w, (k // cols) * cell_h
        grid.paste(t, (x + (w - t.width) // 2, y + (h - t.height) // 2))
        labels.append(shorten(str(r.get("prompt", "")), font, w - 2 * PAD))
        draw.text((x + PAD, y + h + PAD), labels[-1], fill="black", font=font)
        draw.text((x + PAD, y + h + PAD + line), f"seed {r['seed']}", fill=(90, 90, 90), font=font)
    tiles = [
        {"tile": k, "prompt": r["prompt"], "seed": r["seed"], "image": r["image"], "label": label}
        for k, (r, label) in enumerate(zip(done, labels))
    ]
    meta = {
        "prompts": json.dumps(tiles, ensure_ascii=False),
        "columns": cols,
        "vqclip_version": __version__,
        "Software": f"vqclip {__version__}",
    }
    return save_png(grid, out / SHEET, meta, overwrite=True)
