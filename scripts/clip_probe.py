"""Can a toy CLIP's gradient alone draw the prompted shape? Optimise raw pixels (no VQGAN) towards each caption.

The generate loop follows CLIP's gradient through the VQGAN's decoder; if that gradient, followed in pixel space
with the loop's own cutouts and loss, paints no shape, no decoder will make one appear. Each of the 12 captions
starts from the same grey canvas with a little noise; the result is judged by vqclip.judge (pixels only).

    .venv/bin/python scripts/clip_probe.py checkpoints/toy/clip [--steps 150] [--sheet probe.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vqclip import judge, toy
from vqclip.clip import load_clip
from vqclip.cutouts import make_cutouts
from vqclip.ops import spherical_dist


def probe(perceptor, caption: str, args) -> torch.Tensor:
    torch.manual_seed(args.seed)
    text = perceptor.encode_text([caption])
    side = args.size
    x = (0.5 + 0.05 * torch.randn(1, 3, side, side)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=args.lr)
    for step in range(args.steps):
        gens = [torch.Generator().manual_seed(args.seed * 100_003 + step)]
        cuts = make_cutouts(x.clamp(0, 1), perceptor.input_size, args.cutn, 1.0, tuple(args.augments), gens)
        loss = spherical_dist(perceptor.encode_image(cuts), text).mean()  # the loop's distance
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return x.detach().clamp(0, 1)[0].mul(255).round().div(255)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", help="an open_clip local-dir folder, e.g. checkpoints/toy/clip")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--size", type=int, default=32, help="canvas side")
    ap.add_argument("--cutn", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--augments", nargs="*", default=["flip", "affine", "noise"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sheet", type=Path, default=None, help="write the 12 images as one PNG row")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    perceptor = load_clip(f"local-dir:{args.clip}")
    start = time.process_time()
    images, verdicts = [], []
    for caption in toy.CAPTIONS:
        images.append(probe(perceptor, caption, args))
        verdicts.append(judge.judge(images[-1]))
        v = verdicts[-1]
        print(
            f"  {caption:<18} colour {v.colour:<7} shape {v.shape:<8} fit {v.fit:<8} IoU {v.iou:.2f} edge {v.edge:.1f}"
        )
    pairs = list(zip(toy.CAPTIONS, verdicts))
    print(
        f"{args.clip}: colour {np.mean([v.colour == c.split()[1] for c, v in pairs]):.0%}, "
        f"shape {np.mean([v.shape == c.split()[2] for c, v in pairs]):.0%}, "
        f"fit {np.mean([v.fit == c.split()[2] for c, v in pairs]):.0%}, "
        f"mean IoU {np.mean([v.iou for v in verdicts]):.2f}; {time.process_time() - start:.0f} CPU s"
    )
    if args.sheet:
        from PIL import Image

        row = torch.cat(images, 2).permute(1, 2, 0).numpy()
        Image.fromarray((row * 255).round().astype(np.uint8)).save(args.sheet)


if __name__ == "__main__":
    main()
