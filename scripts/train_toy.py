"""Train the toy CLIP and toy VQGAN on the toy world (vqclip.toy), on CPU, and write them as checkpoints/toy.

    .venv/bin/python scripts/train_toy.py            # both models, ~18 minutes of one CPU core
    .venv/bin/python scripts/train_toy.py --only clip

The files are written in the formats real models ship in (an open_clip local-dir folder; a taming yaml and a
Lightning-style {"state_dict": ...} ckpt) and are measured after reloading them through vqclip's own loaders,
so the metrics printed are those of the committed files.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vqclip import toy
from vqclip.clip import load_clip
from vqclip.ops import nearest_codes
from vqclip.vqgan import VQGANSpec, build_vqgan, load_vqgan

# text width 32 and fp16 storage keep the 49408-row token embedding (the BPE vocabulary) at 3.2 MB
CLIP_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 64, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
# images in [0, 1] are mapped to [-1, 1]; nothing about the toy world calls for ImageNet statistics
CLIP_MEAN = (0.5, 0.5, 0.5)
CLIP_STD = (0.5, 0.5, 0.5)
# f=4 (three levels) makes a 32x32 image an 8x8 latent; GroupNorm(32) needs channels that are multiples of 32
VQGAN_DDCONFIG = {"double_z": False, "z_channels": 32, "resolution": 32, "in_channels": 3, "out_ch": 3,
                  "ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
VQGAN_N_EMBED = 256
VQGAN_EMBED_DIM = 32
COMMITMENT = 0.25  # the beta of VQ-VAE: how hard the encoder is pulled towards its codes

# texts that name one attribute, trained alongside the full captions so that prompts such as
# "a circle:1|red:-1" mean something to the toy CLIP
COLOUR_TEXTS = tuple(toy.COLOURS)
SHAPE_TEXTS = tuple(f"a {s}" for s in toy.SHAPES)


def cosine_lr(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def batch_seed(seed: int, step: int) -> int:
    """A fresh, reproducible batch of the world per step; evaluation uses seeds far from these."""
    return seed * 1_000_003 + step


def flip_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips: every caption survives them (triangles point four ways)."""
    flip_h = torch.rand(len(images), generator=generator) < 0.5
    flip_v = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip_h[:, None, None, None], images.flip(3), images)
    return torch.where(flip_v[:, None, None, None], images.flip(2), images)


# ---------------------------------------------------------------------------------------------------------
# CLIP


def soft_contrastive(image_emb: torch.Tensor, text_emb: torch.Tensor, match: torch.Tensor, scale) -> torch.Tensor:
    """CLIP's symmetric loss where many images share a text: targets spread evenly over all matches.

    match [N_images, N_texts] is 1 where a text describes an image. Equal captions are never negatives.
    """
    logits = scale * image_emb @ text_emb.T
    present = match.sum(0) > 0  # texts with no image in this batch give the text->image side nothing to find
    i2t = -(F.log_softmax(logits, 1) * match / match.sum(1, keepdim=True)).sum(1).mean()
    t2i_terms = F.log_softmax(logits[:, present], 0) * match[:, present] / match[:, present].sum(0)
    t2i = -t2i_terms.sum(0).mean()
    return (i2t + t2i) / 2


def text_groups(captions: list[str]) -> list[tuple[tuple[str, ...], torch.Tensor]]:
    """Each group of texts that compete for an image (full captions, colours, shapes) with its match matrix."""
    colours = [c.split()[1] for c in captions]
    shapes = [f"a {c.split()[2]}" for c in captions]
    groups = []
    for texts, keys in ((toy.CAPTIONS, captions), (COLOUR_TEXTS, colours), (SHAPE_TEXTS, shapes)):
        match = torch.tensor([[float(k == t) for t in texts] for k in keys])
        groups.append((texts, match))
    return groups


def weight_decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: embeddings, gains, biases and the temperature are left alone, as in CLIP."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        exempt = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_clip(seed: int, steps: int, batch: int, lr: float, log_every: int):
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**CLIP_CFG)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=CLIP_CFG["text_cfg"]["context_length"])
    all_texts = toy.CAPTIONS + COLOUR_TEXTS + SHAPE_TEXTS
    tokens = tokenizer(list(all_texts))
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    opt = torch.optim.AdamW(weight_decay_groups(model, 0.1), lr=lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(seed)
    start, cpu_start = time.time(), time.process_time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=50)
        images, captions = toy.sample(batch, batch_seed(seed, step))
        images = flip_augment(images, gen)
        image_emb = F.normalize(model.encode_image((images - mean) / std), dim=-1)
        text_emb = F.normalize(model.encode_text(tokens), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        loss, offset = 0.0, 0
        for texts, match in text_groups(captions):
            loss = loss + soft_contrastive(image_emb, text_emb[offset:offset + len(texts)], match, scale)
            offset += len(texts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"clip  step {step:5d}/{steps}  loss {loss.item():.4f}  scale {scale.item():.1f}  "
                  f"{time.time() - start:.0f}s", flush=True)
    return model.eval(), time.time() - start, time.process_time() - cpu_start


def save_clip(model: torch.nn.Module, out: Path) -> None:
    """An open_clip local-dir folder: open_clip_config.json and fp16 safetensors weights."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": CLIP_CFG,
              "preprocess_cfg": {"mean": list(CLIP_MEAN), "std": list(CLIP_STD),
                                 "size": CLIP_CFG["vision_cfg"]["image_size"]}}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    # fp16 halves the file; load_state_dict casts it back into the fp32 model open_clip builds
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"), metadata={"format": "pt"})


@torch.no_grad()
def clip_accuracy(perceptor, n: int, seed: int) -> dict:
    """Zero-shot accuracy over the 12 captions on n fresh images, plus colour-only and shape-only accuracy."""
    images, captions = toy.sample(n, seed)
    image_emb = F.normalize(perceptor.encode_image(images), dim=-1)
    text_emb = F.normalize(perceptor.encode_text(toy.CAPTIONS), dim=-1)
    predicted = [toy.CAPTIONS[i] for i in (image_emb @ text_emb.T).argmax(1)]
    right = [p == c for p, c in zip(predicted, captions)]
    colour = [p.split()[1] == c.split()[1] for p, c in zip(predicted, captions)]
    shape = [p.split()[2] == c.split()[2] for p, c in zip(predicted, captions)]
    return {"accuracy": sum(right) / n, "colour_accuracy": sum(colour) / n, "shape_accuracy": sum(shape) / n}


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


def train_vqgan(seed: int, steps: int, batch: int, lr: float, restart_every: int, log_every: int):
    torch.manual_seed(seed)
    spec = VQGANSpec(ddconfig=dict(VQGAN_DDCONFIG), n_embed=VQGAN_N_EMBED, embed_dim=VQGAN_EMBED_DIM)
    model = build_vqgan(spec).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    usage = torch.zeros(VQGAN_N_EMBED)
    restarted = 0  # codes moved since the last log line
    start, cpu_start = time.time(), time.process_time()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, lr, warmup=50)
        images, _ = toy.sample(batch, batch_seed(seed, step))
        x = images * 2 - 1  # taming VQGANs work in [-1, 1]
        recon, vq_loss, codes, latents = vq_step(model, x)
        rec_loss = F.mse_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        (rec_loss + vq_loss).backward()
        opt.step()
        usage += torch.bincount(codes.flatten(), minlength=VQGAN_N_EMBED)
        # no restarts in the last stretch, so the final codes are ones the decoder has learned to use
        if (step + 1) % restart_every == 0 and step < steps - 4 * restart_every:
            restarted += restart_dead_codes(model, usage, latents, gen)
            usage.zero_()
        if step % log_every == 0 or step == steps - 1:
            print(f"vqgan step {step:5d}/{steps}  mse {rec_loss.item():.5f}  vq {vq_loss.item():.5f}  "
                  f"codes restarted {restarted}  {time.time() - start:.0f}s", flush=True)
            restarted = 0
    return model.eval(), time.time() - start, time.process_time() - cpu_start


def save_vqgan(model, out: Path, stem: str = "vqgan_toy") -> None:
    """A taming-style yaml and a Lightning-style {"state_dict": ...} checkpoint, as official VQGANs ship."""
    from omegaconf import OmegaConf

    out.mkdir(parents=True, exist_ok=True)
    yaml = {"model": {"target": "taming.models.vqgan.VQModel",
                      "params": {"embed_dim": VQGAN_EMBED_DIM, "n_embed": VQGAN_N_EMBED,
                                 "ddconfig": VQGAN_DDCONFIG}}}
    OmegaConf.save(OmegaConf.create(yaml), out / f"{stem}.yaml")
    torch.save({"state_dict": model.state_dict()}, out / f"{stem}.ckpt")


@torch.no_grad()
def vqgan_metrics(model, n: int, seed: int) -> dict:
    """Mean PSNR (dB, images in [0, 1]) of encode -> decode on n fresh images, and how many codes they use."""
    images, _ = toy.sample(n, seed)
    latent = model.encode(images * 2 - 1)
    recon = ((model.decode(latent) + 1) / 2).clamp(0, 1)
    mse = (recon - images).pow(2).flatten(1).mean(1)
    codes = nearest_codes(latent.movedim(1, 3), model.codebook)
    return {"psnr": float((10 * torch.log10(1 / mse)).mean()), "codes_used": int(codes.unique().numel())}


# ---------------------------------------------------------------------------------------------------------


def run_clip(args) -> None:
    model, seconds, cpu = train_clip(args.seed, args.clip_steps, args.clip_batch, args.clip_lr, log_every=100)
    save_clip(model, args.out / "clip")
    metrics = clip_accuracy(load_clip(f"local-dir:{args.out / 'clip'}"), args.eval_images, eval_seed(args))
    print(f"clip  trained in {seconds:.0f}s ({cpu:.0f}s CPU); reloaded: {metrics}", flush=True)


def run_vqgan(args) -> None:
    model, seconds, cpu = train_vqgan(args.seed, args.vqgan_steps, batch=32, lr=2e-3, restart_every=50,
                                      log_every=100)
    save_vqgan(model, args.out)
    loaded = load_vqgan(args.out / "vqgan_toy.yaml", args.out / "vqgan_toy.ckpt")
    metrics = vqgan_metrics(loaded, args.eval_images, eval_seed(args))
    print(f"vqgan trained in {seconds:.0f}s ({cpu:.0f}s CPU); reloaded: {metrics}", flush=True)


def eval_seed(args) -> int:
    return 10**9 + args.seed  # never a training batch seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("checkpoints/toy"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["clip", "vqgan"], default=None)
    # one thread: on a shared CPU, two threads that wait on each other ran 10x slower than one
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--clip-steps", type=int, default=2000)
    p.add_argument("--clip-batch", type=int, default=128)
    p.add_argument("--clip-lr", type=float, default=2e-3)
    p.add_argument("--vqgan-steps", type=int, default=1200)
    p.add_argument("--eval-images", type=int, default=600)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.only in (None, "clip"):
        run_clip(args)
    if args.only in (None, "vqgan"):
        run_vqgan(args)
    for f in sorted(args.out.rglob("*")):
        if f.is_file():
            print(f"{f}  {f.stat().st_size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
