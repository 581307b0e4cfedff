"""Train the toy CLIP and toy VQGAN on the toy world (vqclip.toy), on CPU, and write them as checkpoints/toy.

    .venv/bin/python scripts/train_toy.py            # both models
    .venv/bin/python scripts/train_toy.py --only clip

The world's canvases are larger than CLIP's input, as in real use: CLIP is trained on the views the generate
loop shows it (vqclip.cutouts' own crops and augmentations, plus the whole canvas), and the VQGAN on whole
canvases. The files are written in the formats real models ship in (an open_clip local-dir folder; a taming
yaml and a Lightning-style {"state_dict": ...} ckpt) and are measured after reloading them through vqclip's
own loaders, so the metrics printed are those of the committed files.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqclip import judge, toy
from vqclip.clip import load_clip
from vqclip.cutouts import make_cutouts
from vqclip.ops import nearest_codes
from vqclip.vqgan import VQGANSpec, build_vqgan, load_vqgan

CLIP_SIZE = 32  # CLIP's input side; canvases are larger, so CLIP sees them through cutouts as real CLIPs do
# text width 32 and fp16 storage keep the 49408-row token embedding (the BPE vocabulary) at 3.2 MB
TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
VISION_CFGS = {
    "vit": {"image_size": CLIP_SIZE, "patch_size": 4, "width": 64, "layers": 2, "head_width": 16},
    "vit-wide": {"image_size": CLIP_SIZE, "patch_size": 4, "width": 96, "layers": 3, "head_width": 32},
    # open_clip's ModifiedResNet: a 4x stem then three 2x stages, 32 px -> 1x1 before the attention pool;
    # width 8 keeps it at 0.34 M parameters (its last stage has 32x the width)
    "resnet": {"image_size": CLIP_SIZE, "layers": [1, 1, 1, 1], "width": 8},
}
# images in [0, 1] are mapped to [-1, 1]; nothing about the toy world calls for ImageNet statistics
CLIP_MEAN = (0.5, 0.5, 0.5)
CLIP_STD = (0.5, 0.5, 0.5)
VIEW_AUGMENTS = ("flip", "affine", "noise")  # the loop's default cutout augmentations
VQGAN_EMBED_DIM = 32
COMMITMENT = 0.25  # the beta of VQ-VAE: how hard the encoder is pulled towards its codes

# texts that name one attribute, trained alongside the full captions so that prompts such as
# "a circle:1|red:-1" mean something to the toy CLIP
COLOUR_TEXTS = tuple(toy.COLOURS)
SHAPE_TEXTS = tuple(f"a {s}" for s in toy.SHAPES)
# what CLIP learns to call the world's negatives (blobs, colour noise, blurred shapes, two shapes): a 13th caption,
# so an image that is no single clean shape scores low for every shape caption
NOTHING = "nothing"
CAPTION_TEXTS = toy.CAPTIONS + (NOTHING,)


def clip_cfg(arch: str) -> dict:
    return {"embed_dim": 64, "vision_cfg": dict(VISION_CFGS[arch]), "text_cfg": dict(TEXT_CFG)}


def vqgan_ddconfig(size: int, ch_mult: list[int]) -> dict:
    """f=4 (three levels): a 64x64 canvas is a 16x16 latent; GroupNorm(32) needs channels in multiples of 32."""
    return {
        "double_z": False,
        "z_channels": 32,
        "resolution": size,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": list(ch_mult),
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    }


def cosine_lr(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def batch_seed(seed: int, step: int) -> int:
    """A fresh, reproducible batch of the world per step; evaluation uses seeds far from these."""
    return seed * 1_000_003 + step


# ---------------------------------------------------------------------------------------------------------
# CLIP


def views(canvases: torch.Tensor, n_crops: int, seed: int) -> torch.Tensor:
    """What the loop shows CLIP of each canvas: the whole canvas, then n_crops of the loop's own cutouts.

    Returns [N * (1 + n_crops), 3, CLIP_SIZE, CLIP_SIZE], canvas-major.
    """
    overview = F.interpolate(canvases, size=(CLIP_SIZE, CLIP_SIZE), mode="area")
    if n_crops == 0:
        return overview
    gens = [torch.Generator().manual_seed(seed * 7919 + i) for i in range(len(canvases))]
    crops = make_cutouts(canvases, CLIP_SIZE, n_crops, 1.0, VIEW_AUGMENTS, gens)  # noise leaves [0, 1], as in the loop
    crops = crops.view(len(canvases), n_crops, 3, CLIP_SIZE, CLIP_SIZE)
    return torch.cat([overview[:, None], crops], 1).flatten(0, 1)


def negatives(n: int, seed: int, size: int) -> torch.Tensor:
    """n canvases of the world's negatives, the kinds in turn."""
    rng = np.random.default_rng(seed)
    kinds = sorted(toy.NEGATIVES)
    return toy.as_batch([toy.render_negative(kinds[i % len(kinds)], rng, size) for i in range(n)])


def soft_contrastive(image_emb: torch.Tensor, text_emb: torch.Tensor, match: torch.Tensor, scale) -> torch.Tensor:
    """CLIP's symmetric loss where many images share a text: targets spread evenly over all matches.

    match [N_images, N_texts] is 1 where a text describes an image. Equal captions are never negatives.
    """
    logits = scale * image_emb @ text_emb.T
    present = match.sum(0) > 0  # texts with no image in this batch give the text->image side nothing to find
    named = match.sum(1) > 0  # images no text of this group names (negatives among colours) sit it out
    i2t = -(F.log_softmax(logits[named], 1) * match[named] / match[named].sum(1, keepdim=True)).sum(1).mean()
    t2i_terms = F.log_softmax(logits[:, present], 0) * match[:, present] / match[:, present].sum(0)
    t2i = -t2i_terms.sum(0).mean()
    return (i2t + t2i) / 2


def text_groups(captions: list[str]) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    """Each group of texts that compete for an image (full captions, colours, shapes) with its match matrix."""
    colours = [c.split()[1] if c != NOTHING else NOTHING for c in captions]
    shapes = [f"a {c.split()[2]}" if c != NOTHING else NOTHING for c in captions]
    groups = []
    for texts, keys in ((CAPTION_TEXTS, captions), (COLOUR_TEXTS, colours), (SHAPE_TEXTS, shapes)):
        match = torch.tensor([[float(k == t) for t in texts] for k in keys])
        groups.append((texts, match))
    return groups


def grouped_loss(image_emb, text_emb, groups, scale) -> torch.Tensor:
    loss, offset = 0.0, 0
    for texts, match in groups:
        loss = loss + soft_contrastive(image_emb, text_emb[offset : offset + len(texts)], match, scale)
        offset += len(texts)
    return loss


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: embeddings, gains, biases and the temperature are left alone, as in CLIP."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adversarial(model, x: torch.Tensor, text_emb, groups, scale, eps: float, normalise, steps: int = 1):
    """x moved up the loss within an L2 ball of radius eps (per image): projected gradient ascent (PGD) of
    `steps` steps of 2.5 eps / steps each. Training on these makes the loss's gradient with respect to pixels
    point at what the caption means (a shape's edges) rather than at invisible noise, which is what the
    generate loop follows."""
    x0 = x.detach()
    text_emb, scale = text_emb.detach(), scale.detach()
    step_size = eps if steps == 1 else 2.5 * eps / steps
    adv = x0.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        emb = F.normalize(model.encode_image(normalise(adv)), dim=-1)
        (grad,) = torch.autograd.grad(grouped_loss(emb, text_emb, groups, scale), adv)
        adv = adv.detach() + step_size * grad / per_image_norm(grad)
        delta = adv - x0
        adv = (x0 + delta * (eps / per_image_norm(delta)).clamp(max=1.0)).clamp(0, 1)  # images stay images
    return adv.detach()


def per_image_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)


def train_clip(args, arch: str, seed: int):
    import open_clip

    torch.manual_seed(seed)
    cfg = clip_cfg(arch)
    model = open_clip.model.CLIP(**cfg)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=TEXT_CFG["context_length"])
    tokens = tokenizer(list(CAPTION_TEXTS + COLOUR_TEXTS + SHAPE_TEXTS))
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    normalise = lambda x: (x - mean) / std  # noqa: E731
    opt = torch.optim.AdamW(weight_decay_groups(model, 0.1), lr=args.clip_lr, betas=(0.9, 0.98))
    start, cpu_start = time.time(), time.process_time()
    for step in range(args.clip_steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, args.clip_steps, args.clip_lr, warmup=50)
        canvases, captions = toy.sample(args.clip_canvases, batch_seed(seed, step), args.size)
        x = views(canvases, args.clip_crops, batch_seed(seed, step))
        captions = [c for c in captions for _ in range(1 + args.clip_crops)]
        if args.clip_negatives:  # seen whole only: a crop of two shapes may well show one
            x = torch.cat([x, views(negatives(args.clip_negatives, batch_seed(seed, step), args.size), 0, 0)])
            captions += [NOTHING] * args.clip_negatives
        groups = text_groups(captions)
        text_emb = F.normalize(model.encode_text(tokens), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        if args.clip_eps > 0:
            x = torch.cat([x, adversarial(model, x, text_emb, groups, scale, args.clip_eps, normalise, args.clip_pgd)])
            groups = [(texts, torch.cat([match, match])) for texts, match in groups]
        image_emb = F.normalize(model.encode_image(normalise(x)), dim=-1)
        loss = grouped_loss(image_emb, text_emb, groups, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.clip_steps - 1:
            print(
                f"clip {arch} step {step:5d}/{args.clip_steps}  loss {loss.item():.4f}  scale {scale.item():.1f}  "
                f"{time.time() - start:.0f}s",
                flush=True,
            )
    return model.eval(), cfg, time.time() - start, time.process_time() - cpu_start


def save_clip(model: torch.nn.Module, cfg: dict, out: Path) -> None:
    """An open_clip local-dir folder: open_clip_config.json and fp16 safetensors weights."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": cfg, "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "size": CLIP_SIZE}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    # fp16 halves the file; load_state_dict casts it back into the fp32 model open_clip builds
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"), metadata={"format": "pt"})


@torch.no_grad()
def clip_accuracy(perceptor, n: int, seed: int, size: int) -> dict:
    """Zero-shot accuracy over the 12 captions on n fresh canvases: seen whole, and through one loop cutout."""
    canvases, captions = toy.sample(n, seed, size)
    text_emb = F.normalize(perceptor.encode_text(toy.CAPTIONS), dim=-1)
    with_nothing = F.normalize(perceptor.encode_text(CAPTION_TEXTS), dim=-1)
    negative_emb = F.normalize(perceptor.encode_image(views(negatives(n, seed, size), 0, 0)), dim=-1)
    out = {"negatives_nothing": float(((negative_emb @ with_nothing.T).argmax(1) == len(toy.CAPTIONS)).float().mean())}
    for name, x in (("whole", views(canvases, 0, seed)), ("cutout", views(canvases, 1, seed)[1::2])):
        predicted = [toy.CAPTIONS[i] for i in (F.normalize(perceptor.encode_image(x), dim=-1) @ text_emb.T).argmax(1)]
        out[name] = sum(p == c for p, c in zip(predicted, captions)) / n
        out[f"{name}_shape"] = sum(p.split()[2] == c.split()[2] for p, c in zip(predicted, captions)) / n
    return out


# ---------------------------------------------------------------------------------------------------------
# VQGAN


def vq_step(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One autoencoding pass: reconstruction, codebook+commitment loss, the codes used and the latents."""
    z = model.quant_conv(model.encoder(x)).movedim(1, 3)  # [B, h, w, D]
    codebook = model.quantize.embedding.weight
    codes = nearest_codes(z.detach(), codebook)
    zq = F.embedding(codes, codebook)
    vq_loss = F.mse_loss(zq, z.detach()) + COMMITMENT * F.mse_loss(z, zq.detach())
    zq = z + (zq - z).detach()  # straight-through: the decoder's gradient reaches the encoder
    recon = model.decoder(model.post_quant_conv(zq.movedim(3, 1)))
    return recon, vq_loss, codes, z.detach()


@torch.no_grad()
def restart_dead_codes(model, usage: torch.Tensor, latents: torch.Tensor, gen: torch.Generator) -> int:
    """Move codes no batch used since the last restart onto random encoder outputs, so all 256 earn their keep."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead):
        flat = latents.reshape(-1, latents.shape[-1])
        picks = torch.randint(len(flat), (len(dead),), generator=gen)
        noise = 0.01 * torch.randn(len(dead), flat.shape[1], generator=gen)
        model.quantize.embedding.weight[dead] = flat[picks] + noise
    return len(dead)


def random_crops(images: torch.Tensor, side: int, gen: torch.Generator) -> torch.Tensor:
    """One random side x side crop of each image: the VQGAN is convolutional, so crops teach it whole canvases
    at a quarter of the cost (a 64 px canvas is four 32 px crops' worth of pixels)."""
    if side >= images.shape[-1]:
        return images
    corners = torch.randint(images.shape[-1] - side + 1, (len(images), 2), generator=gen)
    return torch.stack([im[:, y : y + side, x : x + side] for im, (y, x) in zip(images, corners.tolist())])


def edge_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between the images' horizontal and vertical finite differences: penalises soft or misplaced edges."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return F.l1_loss(dx(recon), dx(x)) + F.l1_loss(dy(recon), dy(x))


def train_vqgan(args, restart_every: int = 50):
    torch.manual_seed(args.seed)
    ddconfig = vqgan_ddconfig(args.size, args.vqgan_ch_mult)
    spec = VQGANSpec(ddconfig=ddconfig, n_embed=args.vqgan_codes, embed_dim=VQGAN_EMBED_DIM)
    model = build_vqgan(spec).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(args.seed)
    usage = torch.zeros(args.vqgan_codes)
    restarted = 0  # codes moved since the last log line
    steps = args.vqgan_steps
    start, cpu_start = time.time(), time.process_time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, 2e-3, warmup=50)
        images, _ = toy.sample(args.vqgan_batch, batch_seed(args.seed, step), args.size)
        images = random_crops(images, args.vqgan_crop, gen)
        x = images * 2 - 1  # taming VQGANs work in [-1, 1]
        recon, vq_loss, codes, latents = vq_step(model, x)
        # L1 as taming's VQGANs train (with LPIPS and a GAN they need weights for): sharper edges than MSE's mean
        rec_loss = F.l1_loss(recon, x) if args.vqgan_loss == "l1" else F.mse_loss(recon, x)
        if args.vqgan_edge > 0:  # the judge wants crisp edges and corners, which a pixel loss alone averages away
            rec_loss = rec_loss + args.vqgan_edge * edge_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        (rec_loss + vq_loss).backward()
        opt.step()
        usage += torch.bincount(codes.flatten(), minlength=args.vqgan_codes)
        # no restarts in the last stretch, so the final codes are ones the decoder has learned to use
        if (step + 1) % restart_every == 0 and step < steps - 4 * restart_every:
            restarted += restart_dead_codes(model, usage, latents, gen)
            usage.zero_()
        if step % 100 == 0 or step == steps - 1:
            print(
                f"vqgan step {step:5d}/{steps}  {args.vqgan_loss} {rec_loss.item():.5f}  vq {vq_loss.item():.5f}  "
                f"codes restarted {restarted}  {time.time() - start:.0f}s",
                flush=True,
            )
            restarted = 0
    return model.eval(), ddconfig, time.time() - start, time.process_time() - cpu_start


def save_vqgan(model, ddconfig: dict, out: Path, stem: str = "vqgan_toy") -> None:
    """A taming-style yaml and a Lightning-style {"state_dict": ...} checkpoint, as official VQGANs ship."""
    from omegaconf import OmegaConf

    out.mkdir(parents=True, exist_ok=True)
    yaml = {
        "model": {
            "target": "taming.models.vqgan.VQModel",
            "params": {"embed_dim": VQGAN_EMBED_DIM, "n_embed": len(model.codebook), "ddconfig": ddconfig},
        }
    }
    OmegaConf.save(OmegaConf.create(yaml), out / f"{stem}.yaml")
    torch.save({"state_dict": model.state_dict()}, out / f"{stem}.ckpt")


@torch.no_grad()
def vqgan_metrics(model, n: int, seed: int, size: int) -> dict:
    """Mean PSNR (dB, images in [0, 1]) of encode -> decode on n fresh canvases, and how many codes they use."""
    images, captions = toy.sample(n, seed, size)
    latent = model.encode(images * 2 - 1)
    recon = ((model.decode(latent) + 1) / 2).clamp(0, 1)
    mse = (recon - images).pow(2).flatten(1).mean(1)
    codes = nearest_codes(latent.movedim(1, 3), model.codebook)
    # the judge reads the reconstructions as it reads generations: a VQGAN that cannot draw a clean shape fails here
    verdicts = [judge.judge(r) for r in recon[:200]]
    return {
        "psnr": float((10 * torch.log10(1 / mse)).mean()),
        "codes_used": int(codes.unique().numel()),
        "judged_colour": float(np.mean([v.colour == c.split()[1] for v, c in zip(verdicts, captions)])),
        "judged_shape": float(np.mean([v.shape == c.split()[2] for v, c in zip(verdicts, captions)])),
    }


# ---------------------------------------------------------------------------------------------------------


def run_clip(args) -> None:
    for i, arch in enumerate(args.clip_arch):
        folder = args.out / ("clip" if i == 0 else f"clip_{arch}")
        model, cfg, seconds, cpu = train_clip(args, arch, args.seed + i)
        save_clip(model, cfg, folder)
        metrics = clip_accuracy(load_clip(f"local-dir:{folder}"), args.eval_images, eval_seed(args), args.size)
        print(f"clip {arch} trained in {seconds:.0f}s ({cpu:.0f}s CPU); reloaded: {metrics}", flush=True)


def run_vqgan(args) -> None:
    model, ddconfig, seconds, cpu = train_vqgan(args)
    save_vqgan(model, ddconfig, args.out)
    loaded = load_vqgan(args.out / "vqgan_toy.yaml", args.out / "vqgan_toy.ckpt")
    metrics = vqgan_metrics(loaded, args.eval_images, eval_seed(args), args.size)
    print(f"vqgan trained in {seconds:.0f}s ({cpu:.0f}s CPU); reloaded: {metrics}", flush=True)


def measure(args) -> None:
    """The metrics of models already in args.out (the bundled ones by default), as after training."""
    if args.only in (None, "clip") and (args.out / "clip").is_dir():
        metrics = clip_accuracy(
            load_clip(f"local-dir:{args.out / 'clip'}"), args.eval_images, eval_seed(args), args.size
        )
        print(f"clip {args.out / 'clip'}: {metrics}", flush=True)
    if args.only in (None, "vqgan") and (args.out / "vqgan_toy.yaml").is_file():
        loaded = load_vqgan(args.out / "vqgan_toy.yaml", args.out / "vqgan_toy.ckpt")
        print(f"vqgan {args.out}: {vqgan_metrics(loaded, args.eval_images, eval_seed(args), args.size)}", flush=True)


def eval_seed(args) -> int:
    return 10**9 + args.seed  # never a training batch seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("checkpoints/toy"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["clip", "vqgan"], default=None)
    # one thread: on a shared CPU, two threads that wait on each other ran 10x slower than one
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--size", type=int, default=64, help="canvas side of the world the models are trained on")
    p.add_argument(
        "--clip-arch",
        nargs="+",
        default=["vit"],
        choices=sorted(VISION_CFGS),
        help="one CLIP per architecture; the first is written to clip/, others to clip_ARCH/",
    )
    p.add_argument("--clip-steps", type=int, default=2000)
    p.add_argument("--clip-canvases", type=int, default=32, help="canvases per batch")
    p.add_argument("--clip-crops", type=int, default=3, help="loop cutouts per canvas (besides the whole canvas)")
    p.add_argument("--clip-lr", type=float, default=2e-3)
    p.add_argument("--clip-negatives", type=int, default=0, help="negative canvases per batch, captioned 'nothing'")
    p.add_argument("--clip-eps", type=float, default=0.0, help="L2 radius of the adversarial views (0: none)")
    p.add_argument("--clip-pgd", type=int, default=1, help="projected gradient steps of each adversarial view")
    p.add_argument("--vqgan-steps", type=int, default=1200)
    p.add_argument("--vqgan-batch", type=int, default=32)
    p.add_argument("--vqgan-codes", type=int, default=256, help="codebook size")
    p.add_argument("--vqgan-loss", choices=["l1", "mse"], default="mse")
    p.add_argument("--vqgan-edge", type=float, default=0.0, help="weight of the edge (image gradient) L1 loss")
    p.add_argument("--vqgan-crop", type=int, default=32, help="train on random crops of this side")
    # 32 channels at the two upper levels: the decoder's full-resolution convolutions are most of a loop step
    p.add_argument(
        "--vqgan-ch-mult", type=int, nargs="+", default=[1, 1, 2], help="one entry per level: f = 2^(levels-1)"
    )
    p.add_argument("--eval-images", type=int, default=600)
    p.add_argument(
        "--measure", action="store_true", help="train nothing: reload the models in --out and print their metrics"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        measure(args)
        return
    if args.only in (None, "clip"):
        run_clip(args)
    if args.only in (None, "vqgan"):
        run_vqgan(args)
    for f in sorted(args.out.rglob("*")):
        if f.is_file():
            print(f"{f}  {f.stat().st_size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
