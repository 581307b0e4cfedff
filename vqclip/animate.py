"""Zoom / pan / rotate animations: each frame starts from the previous one, warped and re-encoded by the VQGAN.

Frame 0 runs the config's `steps` from the usual start (random tokens or the init image); every later frame
warps the previous frame's image (an affine map), encodes it as its starting latent and runs
`steps_per_frame` steps. `animate` yields frames and writes nothing; `run_animation` streams them to an mp4.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F

from .config import Config, with_seed
from .errors import ConfigError
from .optimize import Step, optimize, random_latent
from .outputs import VideoWriter, save_png, slugify, unique_dir
from .pipeline import Models, Plan, load_image, make_guides, settings
from .session import Interrupted, RunResult, metadata


@dataclass
class Motion:
    """The camera move applied between two frames."""

    zoom: float = 1.0  # scale per frame: >1 zooms in, <1 out
    rotate: float = 0.0  # degrees per frame, counter-clockwise on screen
    pan: tuple[float, float] = (0.0, 0.0)  # pixels per frame the content moves (right, down)

    def __post_init__(self):
        if not self.zoom > 0:
            raise ConfigError(f"zoom must be positive (1 keeps the size, 1.02 zooms in 2% a frame), got {self.zoom}")


def warp(image: torch.Tensor, m: Motion) -> torch.Tensor:
    """Apply one frame's motion to images [B, 3, H, W]; the edges revealed by a zoom out or pan are mirrored."""
    b, _, h, w = image.shape
    a = torch.deg2rad(torch.tensor(m.rotate, dtype=torch.float64))
    c, s = float(torch.cos(a)) / m.zoom, float(torch.sin(a)) / m.zoom
    # output -> input sampling map in affine_grid's [-1, 1] coordinates, corrected for the aspect ratio so a
    # rotation stays a rotation on a non-square image
    theta = torch.tensor([[c, -s * h / w, -2 * m.pan[0] / w],
                          [s * w / h, c, -2 * m.pan[1] / h]], dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, 3, h, w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def animate(cfg: Config, plan: Plan, models: Models, device: torch.device, frames: int, steps_per_frame: int,
            motion: Motion) -> Iterator[Step]:
    """Yield Step(k) with frame k's image for k in 0..frames-1 (the last one final)."""
    if frames < 1 or steps_per_frame < 1:
        raise ConfigError(f"frames and steps per frame must be positive, got {frames} and {steps_per_frame}")
    if plan.story:
        raise ConfigError("animate takes one prompt (no ^ story or keyframes); use generate or batch for stories")
    generators = [torch.Generator(device=device).manual_seed(int(cfg.seed))]
    guides = make_guides(plan, models, [plan.prompts])
    if cfg.init_image:
        z = models.vqgan.encode(load_image(cfg.init_image, (plan.width, plan.height)).to(device) * 2 - 1)
    else:
        z = random_latent(models.vqgan, plan.height, plan.width, generators)
    first = settings(cfg)
    later = dataclasses.replace(first, steps=steps_per_frame)
    for k in range(frames):
        *_, last = optimize(models.vqgan, guides, z, first if k == 0 else later, generators)
        yield Step(k, last.image, last.loss, final=k == frames - 1)
        with torch.no_grad():
            z = models.vqgan.encode(warp(last.image, motion) * 2 - 1)


def run_animation(cfg: Config, plan: Plan, models: Models, device: torch.device, frames: int, steps_per_frame: int,
                  motion: Motion, save_frames: bool = False,
                  on_frame: Optional[Callable[[Step], None]] = None) -> RunResult:
    """Stream the frames into <out>/<name>/animation.mp4 (and .gif), the last frame to final.png."""
    cfg = with_seed(cfg)
    cfg.width, cfg.height = plan.width, plan.height
    folder = unique_dir(Path(cfg.output.dir), cfg.output.name or f"anim-{slugify(cfg.prompt, 50)}-s{cfg.seed}")
    video = VideoWriter(folder / "animation.mp4", cfg.output.fps, cfg.output.gif)
    extra = {"animation": json.dumps({"frames": frames, "steps_per_frame": steps_per_frame,
                                      **dataclasses.asdict(motion)})}
    start, last = time.perf_counter(), None
    try:
        for step in animate(cfg, plan, models, device, frames, steps_per_frame, motion):
            last = step
            video.add(step.image[0])
            if save_frames:
                (folder / "frames").mkdir(exist_ok=True)
                save_png(step.image[0], folder / "frames" / f"frame_{step.i:05d}.png",
                         {**metadata(cfg, plan, step.i, "frame", float(step.loss[0])), **extra})
            if on_frame is not None:
                on_frame(step)
    except KeyboardInterrupt:
        raise Interrupted(_finish(cfg, plan, folder, last, video, start, extra, "interrupted")) from None
    except BaseException:
        video.abort()
        raise
    return _finish(cfg, plan, folder, last, video, start, extra, "complete")


def _finish(cfg, plan, folder: Path, last: Optional[Step], video: VideoWriter, start: float, extra: dict,
            status: str) -> RunResult:
    image, loss = None, None
    if last is not None:
        loss = float(last.loss[0])
        image = save_png(last.image[0], folder / "final.png", {**metadata(cfg, plan, last.i, status, loss), **extra})
    videos = video.close()
    return RunResult(image, folder, status, last.i if last else 0, loss, time.perf_counter() - start, videos)
