"""vqclip bench and the fast path: the benchmark's figures, the FLOP counter, cutouts, bf16 and checkpointing."""

import copy
import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from vqclip import fastpath
from vqclip.bench import SMOKE, BenchOptions, build_models, fixed_views, flops_of, run_bench, run_config, verdict
from vqclip.bench.report import TARGETS, check_targets, markdown
from vqclip.bench.setup import bench_steps
from vqclip.cli import app
from vqclip.config import SpeedConfig
from vqclip.cutouts import apply_crops, oversample
from vqclip.optimize import Guide, optimize, random_latent, synth
from vqclip.prompts import parse_prompts
from vqclip.runner import embed_prompts, settings

KEYS = [
    "config",
    "device",
    "s_per_step_median",
    "steps_per_s",
    "images_per_hour",
    "peak_memory_bytes",
    "tflops_achieved",
    "quality_ratio",
    "s_per_step_p10",
    "s_per_step_p90",
    "time_to_first_step_s",
    "flops_per_step",
    "versions",
]


def test_bench_smoke_cli_writes_sane_json(tmp_path, monkeypatch):
    monkeypatch.setattr(fastpath, "cpu_has_amx", lambda: False)  # the same path on every CPU (AMX adds bf16)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--smoke", "--steps", "3", "--json", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "s/step median" in result.stdout and "quality ratio" in result.stdout
    r = json.loads(out.read_text())
    assert all(k in r for k in KEYS)
    assert r["config"] == "smoke" and r["device"].startswith("cpu") and r["steps"] == 3
    assert 0 < r["s_per_step_p10"] <= r["s_per_step_median"] <= r["s_per_step_p90"]
    assert math.isclose(r["steps_per_s"], 1 / r["s_per_step_median"])
    assert math.isclose(r["images_per_hour"], 3600 / (500 * r["s_per_step_median"]))
    assert math.isclose(r["tflops_achieved"], r["flops_per_step"] / r["s_per_step_median"] / 1e12)
    assert r["flops_per_step"] > 1e8 and r["peak_memory_bytes"] > 1e7 and r["time_to_first_step_s"] > 0
    # without AMX the CPU's fast path differs from the reference only by fused attention and CLIP (the same maths)
    fused = ("fused_attention", "clip_fused")
    assert r["fast_path"] == {k: "default" if k == "compile_mode" else k in fused for k in r["fast_path"]}
    assert math.isclose(r["loss_drop"], r["reference_loss_drop"], rel_tol=1e-3)
    assert r["versions"]["torch"] == torch.__version__
    assert r["cpu_s_per_step_median"] > 0 and r["load_average_1m"] >= 0
    assert r["cpu_threads"] == torch.get_num_threads() and r["cpu_threads_chosen_by"]
    # what saving one image's state costs (a whole write, and a frame's hand-off to the background writer)
    assert r["state_write_s"] > 0 and r["state_handoff_s"] > 0 and r["state_fingerprint_s"] > 0
    assert math.isclose(r["state_write_share"], r["state_write_s"] / r["s_per_step_median"])
    assert "state write (one image)" in result.stdout


def test_bench_unknown_config_is_one_line():
    result = CliRunner().invoke(app, ["bench", "--config", "XL", "--device", "cpu"])
    assert result.exit_code == 2
    assert "unknown bench config 'XL'" in result.output and "CPU, L, M, M2, S, S8" in result.output


def test_quality_guard_compares_bf16_with_the_reference():
    """A path other than the reference runs both and reports the ratio of their loss drops."""
    opts = BenchOptions(smoke=True, steps=2, quality_steps=10, speed=SpeedConfig(precision="bf16"))
    r = run_bench(opts, torch.device("cpu"))
    assert r["fast_path"]["decoder_bf16"] and r["fast_path"]["clip_bf16"]
    assert r["reference_loss_drop"] > 0, "the reference path must make progress for the ratio to mean anything"
    assert math.isclose(r["quality_ratio"], r["loss_drop"] / r["reference_loss_drop"])
    assert r["quality_ratio_se"] > 0 and 0.99 < r["grad_cosine"] < 1  # bf16: close to fp32, not the same
    assert r["quality_pass"] == (r["quality_ratio"] >= 0.95 and r["grad_cosine"] >= 0.99)


def test_quality_guard_fails_a_path_that_optimises_worse(monkeypatch):
    """A path whose optimiser takes far smaller steps (here: the fused optimiser, faked) must fail. The loop sets
    each step's lr from its schedule, so the fake shrinks the steps through Adam's eps instead: with eps far above
    the gradients' size, a step is ~lr * grad / eps rather than ~lr."""
    from vqclip import optimize

    adam = optimize.OPTIMIZERS["adam"]

    def timid(params, lr, wd, fused=False, **kw):
        return adam(params, lr, wd, **({"eps": 10.0} if fused else {}), **kw)

    monkeypatch.setitem(optimize.OPTIMIZERS, "adam", timid)
    r = run_bench(
        BenchOptions(smoke=True, steps=2, quality_steps=10, speed=SpeedConfig(fused_optim=True)), torch.device("cpu")
    )
    assert r["fast_path"]["fused_optim"] and r["grad_cosine"] > 0.999  # the gradient itself is right
    assert r["quality_ratio"] < 0.5 and not r["quality_pass"]


def test_quality_verdict():
    g = torch.randn(100, generator=torch.Generator().manual_seed(0))
    same = verdict([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [g], [g])
    assert same["quality_ratio"] == 1 and same["quality_ratio_se"] == 0 and same["quality_pass"]
    noisy = verdict([1.2, 1.6, 3.2], [1.0, 2.0, 3.0], [g], [g])
    assert math.isclose(noisy["quality_ratio"], 1.0) and noisy["quality_ratio_se"] > 0.05 and noisy["quality_pass"]
    assert not verdict([0.9, 1.8, 2.7], [1.0, 2.0, 3.0], [g], [g])["quality_pass"]  # 0.90 < 0.95
    turned = g + 0.2 * g.norm() * torch.randn(100, generator=torch.Generator().manual_seed(1)) / 10
    bent = verdict([1.0, 2.0], [1.0, 2.0], [g, turned], [g, g])
    assert bent["grad_cosine"] < 0.99 and not bent["quality_pass"]  # the worst seed's gradient counts
    assert verdict([1.0], [0.0], [g], [g])["quality_ratio"] is None  # no progress on the reference: no ratio


def test_flop_counter_matches_a_hand_count():
    """fwd + bwd of a conv and a linear layer with frozen weights: the backward computes input gradients only."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False).requires_grad_(False)
    lin = torch.nn.Linear(8 * 6 * 6, 10, bias=False).requires_grad_(False)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    flops = flops_of(lambda: lin(conv(x).flatten(1)).sum().backward())
    conv_fwd = 2 * (2 * 8 * 6 * 6) * (3 * 3 * 3)  # 2 per multiply-add, per output element, per tap
    lin_fwd = 2 * 2 * (8 * 6 * 6) * 10
    assert flops == 2 * (conv_fwd + lin_fwd)  # input-gradient passes cost what the forward passes did


def _pixel_theta(x0, y0, c, w, h):
    """The crop matrix of a square box of c pixels at (x0, y0), in align_corners=False coordinates."""
    t = torch.zeros(2, 3)
    t[0, 0], t[1, 1] = c / w, c / h
    t[0, 2], t[1, 2] = (2 * x0 + c) / w - 1, (2 * y0 + c) / h - 1
    return t


def _reference_crop(image, x0, y0, c, cut, k):
    """One crop on its own: slice the box, resize it to k*cut bilinearly, average-pool by k."""
    crop = image[None, :, y0 : y0 + c, x0 : x0 + c]
    crop = F.interpolate(crop, size=(cut * k, cut * k), mode="bilinear", align_corners=False)
    return F.avg_pool2d(crop, k)[0] if k > 1 else crop[0]


def test_batched_cutouts_match_per_crop_reference():
    torch.manual_seed(0)
    h = w = 48
    cut = 8
    k = oversample(h, w, cut)
    images = torch.rand(2, 3, h, w)
    boxes = [[(4, 6, 16), (10, 3, 24), (0, 0, 48), (5, 2, 40)], [(20, 20, 24), (1, 8, 32), (7, 7, 16), (0, 0, 48)]]
    theta = torch.stack([torch.stack([_pixel_theta(x, y, c, w, h) for x, y, c in bs]) for bs in boxes])
    crops = apply_crops(images, theta, cut)
    assert crops.shape == (8, 3, cut, cut)
    for b, bs in enumerate(boxes):
        for j, (x, y, c) in enumerate(bs):
            got, want = crops[b * len(bs) + j], _reference_crop(images[b], x, y, c, cut, k)
            if c >= cut * k:  # no upsampling: every sample lies inside the box, the crops agree everywhere
                torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            else:  # upsampled: the outermost samples differ (neighbouring pixels vs clamped edge) by design
                torch.testing.assert_close(got[:, 1:-1, 1:-1], want[:, 1:-1, 1:-1], atol=1e-5, rtol=1e-5)
                assert (got - want).abs().max() < 0.5


def _grad(models, z, guides, fast):
    z = z.clone().requires_grad_(True)
    image = synth(models.vqgan, z, fast)
    loss = 0
    for guide in guides:
        crops = apply_crops(image, fixed_views(1).to(image), guide.perceptor.input_size)
        with fast.autocast(z.device, fast.clip_bf16):
            embeds = guide.perceptor.encode_image(crops)
        loss = loss + sum(t(embeds.float()) for t in guide.targets[0]).sum()
    loss.backward()
    return z.grad.flatten()


def test_bf16_and_fp32_gradients_point_the_same_way():
    """Fixed crops, same latent: the bf16 autocast path's gradient has cosine > 0.99 with fp32's (CPU autocast)."""
    models = build_models(SMOKE, torch.device("cpu"))
    z = torch.randn(1, 32, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.25
    p = models.perceptors[0]
    guides = [Guide(p, [embed_prompts(p, parse_prompts("a red circle"))])]
    ref = _grad(models, z, guides, fastpath.REFERENCE)
    bf16 = _grad(models, z, guides, fastpath.FastPath(decoder_bf16=True, clip_bf16=True))
    assert not torch.equal(ref, bf16), "autocast changed nothing: the bf16 path was not exercised"
    assert F.cosine_similarity(ref, bf16, dim=0) > 0.99


def test_checkpointing_keeps_gradients_and_saves_memory():
    models = build_models(SMOKE, torch.device("cpu"))
    vqgan = models.vqgan
    z = torch.randn(1, 32, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.25

    def run():
        saved = []
        zz = z.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            image = synth(vqgan, zz)
        image.square().sum().backward()
        return zz.grad, sum(saved)

    plain_grad, plain_saved = run()
    vqgan.set_checkpointing(True)
    ckpt_grad, ckpt_saved = run()
    vqgan.set_checkpointing(False)
    again_grad, again_saved = run()
    torch.testing.assert_close(ckpt_grad, plain_grad)
    assert ckpt_saved < 0.8 * plain_saved
    assert again_saved == plain_saved  # switching it off restores the plain forward


def test_fast_path_resolution(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # the CPU's fast path without AMX: the reference path but for fused attention and CLIP (the same maths);
    # with AMX it adds bf16 (tests/test_fastpath.py)
    monkeypatch.setattr(fastpath, "cpu_has_amx", lambda: False)
    assert fastpath.resolve(SpeedConfig(), cpu, 128, 128) == fastpath.FastPath(fused_attention=True, clip_fused=True)
    assert fastpath.resolve(SpeedConfig.reference(), cpu, 2048, 2048) == fastpath.REFERENCE
    assert fastpath.resolve(SpeedConfig(), cpu, 1024, 1024).checkpoint
    assert not fastpath.resolve(SpeedConfig(), cpu, 512, 512).checkpoint
    fast = fastpath.resolve(SpeedConfig(), cuda, 256, 256)
    assert fast.channels_last and fast.fused_optim
    assert fastpath.resolve(SpeedConfig(precision="fp32"), cuda, 256, 256).decoder_bf16 is False
    # the compile mode counts only when compiling; CUDA graphs come with reduce-overhead and max-autotune
    assert fastpath.resolve(SpeedConfig(compile_mode="reduce-overhead"), cuda, 256, 256).compile_mode == "default"
    modes = {
        m: fastpath.resolve(SpeedConfig(compile=True, compile_mode=m), cuda, 256, 256)
        for m in ("default", "reduce-overhead", "max-autotune")
    }
    assert {m: (f.compile_mode, f.cudagraphs) for m, f in modes.items()} == {
        "default": ("default", False),
        "reduce-overhead": ("reduce-overhead", True),
        "max-autotune": ("max-autotune", True),
    }


def test_bench_refuses_an_unknown_compile_mode():
    result = CliRunner().invoke(app, ["bench", "--smoke", "--compile-mode", "fastest", "--device", "cpu"])
    assert result.exit_code == 2
    assert "speed.compile_mode must be default, reduce-overhead or max-autotune, got 'fastest'" in result.output


def test_loop_marks_every_step_for_cuda_graphs(monkeypatch):
    """With CUDA graphs the loop tells cudagraph trees where each step starts (and the final image's pass)."""
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    models = build_models(SMOKE, torch.device("cpu"))
    cfg, plan = run_config(SMOKE, 3, SpeedConfig())
    gens = [torch.Generator().manual_seed(0)]
    guides = [Guide(p, [embed_prompts(p, plan.prompts)]) for p in models.perceptors]
    z = random_latent(models.vqgan, 32, 32, gens)
    s = settings(cfg, torch.device("cpu"))
    list(optimize(models.vqgan, guides, z, s, gens))
    assert marks == []  # no CUDA graphs, no marks
    graphs = fastpath.FastPath(compile=True, compile_mode="reduce-overhead")  # marks only: the models stay eager
    list(optimize(models.vqgan, guides, z, type(s)(**{**s.__dict__, "fast": graphs}), gens))
    assert len(marks) == 3 + 1


def _loop(speed: SpeedConfig, device: torch.device, steps: int = 3):
    """Run the smoke models' generate loop; every Step's image is kept as yielded (not copied) and as a copy."""
    models = build_models(SMOKE, device)
    cfg, plan = run_config(SMOKE, steps, speed)
    held = [(st.loss, st.image, st.image.clone()) for st in bench_steps(cfg, plan, models, device, [plan.prompts], [0])]
    for _, image, copy_at_yield in held:  # a later step (a CUDA graph replay) must not overwrite an earlier Step
        assert torch.equal(image, copy_at_yield)
    return held, models


@functools.lru_cache(maxsize=None)
def _compile_unavailable() -> str:
    """Why torch.compile cannot run here ('' when it can): inductor on the CPU needs a C++ compiler."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2))
    except Exception as e:  # noqa: BLE001 - any failure means: no compile on this machine
        return f"torch.compile does not work on this machine ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    return ""


@pytest.mark.slow
def test_compile_reduce_overhead_on_cpu_matches_eager():
    """Off CUDA torch compiles without CUDA graphs: the compiled loop must still run and give the eager steps."""
    if _compile_unavailable():
        pytest.skip(_compile_unavailable())
    cpu = torch.device("cpu")
    eager, _ = _loop(SpeedConfig(), cpu)
    compiled, models = _loop(SpeedConfig(compile=True, compile_mode="reduce-overhead"), cpu)
    assert hasattr(models.vqgan.decoder, "_orig_mod") and hasattr(models.perceptors[0].model.visual, "_orig_mod")
    assert len(compiled) == len(eager) == 4
    for (loss_e, image_e, _), (loss_c, image_c, _) in zip(eager, compiled):
        torch.testing.assert_close(loss_c, loss_e, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(image_c, image_e, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_inside_a_step():
    device = torch.device("cuda")
    models = build_models(SMOKE, device)
    cfg, plan = run_config(SMOKE, 4, SpeedConfig())
    gens = [torch.Generator(device=device).manual_seed(0)]
    guides = [Guide(p, [embed_prompts(p, plan.prompts)]) for p in models.perceptors]
    steps = optimize(models.vqgan, guides, random_latent(models.vqgan, 32, 32, gens), settings(cfg, device), gens)
    next(steps)  # the first step may sync (lazy init)
    torch.cuda.set_sync_debug_mode("error")
    try:
        next(steps), next(steps)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_smoke_bench_matches_the_eager_fast_path():
    """compile + reduce-overhead on CUDA: the bench runs, cudagraphs are not skipped, and the steps are the eager
    fast path's within bf16 tolerance (the first step exactly comparable; later ones drift as Adam's sign-like
    first step amplifies tiny differences)."""
    from torch._dynamo.utils import counters

    device = torch.device("cuda")
    counters.clear()
    graphs = SpeedConfig(compile=True, compile_mode="reduce-overhead")
    r = run_bench(BenchOptions(smoke=True, steps=3, quality_steps=4, speed=graphs), device)
    assert r["fast_path"]["compile"] and r["fast_path"]["compile_mode"] == "reduce-overhead"
    assert all(math.isfinite(r[k]) for k in ("s_per_step_median", "loss_drop", "reference_loss_drop"))
    assert r["quality_ratio"] is not None and math.isfinite(r["quality_ratio"])
    eager, _ = _loop(SpeedConfig(), device, steps=4)
    compiled, _ = _loop(graphs, device, steps=4)
    assert counters["inductor"]["cudagraph_skips"] == 0, "torch skipped CUDA graphs (run with TORCH_LOGS=cudagraphs)"
    for (loss_e, _image_e, _), (loss_c, image_c, _) in zip(eager, compiled):
        assert torch.isfinite(loss_c).all() and torch.isfinite(image_c).all()
        torch.testing.assert_close(loss_c, loss_e, atol=0.1, rtol=0.1)
    torch.testing.assert_close(compiled[0][0], eager[0][0], atol=2e-2, rtol=2e-2)
    assert (compiled[0][1] - eager[0][1]).abs().mean() < 2e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_smoke_on_cuda_uses_the_fast_path():
    r = run_bench(BenchOptions(smoke=True, steps=3, quality_steps=4), torch.device("cuda"))
    assert r["fast_path"]["decoder_bf16"] and r["fast_path"]["fused_optim"]
    assert r["peak_memory_bytes"] > 0 and r["quality_ratio"] is not None


# ---------------------------------------------------------------------------------------------------------
# BENCHMARKS.md tables from bench JSON files


@pytest.fixture(scope="module")
def smoke_jsons(tmp_path_factory):
    """Real `vqclip bench --smoke --json` files of the fast path and of the reference path."""
    folder = tmp_path_factory.mktemp("bench-results")
    for name, extra in [("smoke", []), ("smoke-reference", ["--reference"])]:
        result = CliRunner().invoke(
            app, ["bench", "--smoke", "--steps", "3", "--device", "cpu", "--json", str(folder / f"{name}.json"), *extra]
        )
        assert result.exit_code == 0, result.output
    return folder


def _cells(text: str, prefix: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith(prefix))
    return [c.strip() for c in row.strip().strip("|").split("|")]


def test_markdown_rows_from_smoke_json(smoke_jsons):
    fast, ref = (json.loads((smoke_jsons / f"{n}.json").read_text()) for n in ("smoke", "smoke-reference"))
    result = CliRunner().invoke(app, ["bench", "--markdown", str(smoke_jsons)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for r, prefix in [(fast, "| smoke | fast"), (ref, "| smoke | reference")]:
        cells = _cells(text, prefix)
        scale, unit = (1e3, "ms") if r["s_per_step_median"] < 0.1 else (1, "s")
        assert cells[2] == r["device"]
        assert cells[3] == (
            f"{r['s_per_step_median'] * scale:.3g} {unit} ({r['s_per_step_p10'] * scale:.3g}-"
            f"{r['s_per_step_p90'] * scale:.3g})"
        )
        assert cells[4] == f"{r['steps_per_s']:.3g}" and cells[5] == f"{r['images_per_hour']:,.0f}"
        assert cells[6] == f"{r['peak_memory_bytes'] / 1e9:.3g} GB" and cells[7] == f"{r['tflops_achieved']:.3g}"
        assert cells[8] == f"{r['quality_ratio']:.3f}"
    assert _cells(text, "| smoke | fast")[9] == f"{fast['steps_per_s'] / ref['steps_per_s']:.3g}x"
    assert _cells(text, "| smoke | fast")[10] == "`vqclip bench --smoke --steps 3`"
    assert _cells(text, "| smoke | reference")[9] == "n/a"
    assert _cells(text, "| smoke | reference")[10] == "`vqclip bench --smoke --reference --steps 3`"
    assert f"torch {torch.__version__}" in text
    # smoke runs meet no target: every target is listed as not measured
    assert text.count("(not measured)") == len(TARGETS)


def _figures(
    base: dict,
    config: str,
    path: str = "fast",
    device: str = "NVIDIA H100 80GB HBM3",
    s_per_step: float = 0.01,
    **figures,
) -> dict:
    r = copy.deepcopy(base)
    r.update(
        config=config,
        path=path,
        device=device,
        s_per_step_median=s_per_step,
        s_per_step_p10=s_per_step,
        s_per_step_p90=s_per_step,
        steps_per_s=1 / s_per_step,
        quality_ratio=1.0,
        quality_pass=True,
    )
    r.update(figures)
    return r


def test_targets_met_or_not(smoke_jsons):
    base = json.loads((smoke_jsons / "smoke.json").read_text())
    results = [
        _figures(base, "S", s_per_step=0.0035, quality_ratio=0.97),
        _figures(base, "S", "reference", s_per_step=0.016),  # 4.57x
        _figures(base, "M", s_per_step=0.013, quality_ratio=0.90, quality_pass=False),
        _figures(base, "M", "reference", s_per_step=0.04),  # 3.08x
        _figures(base, "S8", images_per_hour=2600.0),
        _figures(base, "L", peak_memory_bytes=25e9),
        _figures(base, "M2"),  # no target
        _figures(base, "CPU", device="cpu (x86_64, 2 threads)", s_per_step=1.15, quality_ratio=0.97),
        _figures(base, "CPU", device="cpu (x86_64, 2 threads)", s_per_step=1.81),  # issue 17: <= 1.2 s
    ]
    all_verdicts = check_targets(results)
    cpu = [v["met"] for v in all_verdicts if v["target"].config == "CPU" and v["target"].metric == "s_per_step_median"]
    assert cpu == [True, False]
    verdicts = {(v["target"].config, v["target"].metric): v for v in all_verdicts if v["result"] is not results[-1]}
    assert {k: v["met"] for k, v in verdicts.items()} == {
        ("S", "s_per_step_median"): True,
        ("S", "speedup"): True,
        ("S", "quality_ratio"): True,
        ("S8", "images_per_hour"): True,
        ("M", "s_per_step_median"): False,
        ("M", "speedup"): False,
        ("M", "quality_ratio"): False,
        ("L", "peak_memory_bytes"): False,
        ("CPU", "s_per_step_median"): True,
        ("CPU", "quality_ratio"): True,
    }
    assert set(verdicts) == {(t.config, t.metric) for t in TARGETS}
    assert math.isclose(verdicts["S", "speedup"]["value"], 0.016 / 0.0035)
    assert all(v["note"] == "" for v in verdicts.values())
    text = markdown(results)
    assert "| M | s/step <= 12 ms on H100 |" in text and "| 13 ms | **not met** |" in text
    assert "| S | speed-up over the reference path >= 4x on H100 |" in text and "| 4.57x | met |" in text
    assert "| L | peak memory <= 24 GB on H100 |" in text and "| 25 GB | **not met** |" in text
    assert "| S8 | images/hour >= 2,500 on H100 |" in text and "| 2,600 | met |" in text
    assert "| M | speed-up over the reference path >= 4x on H100 |" in text and "| 3.08x | **not met** |" in text

    # limits are inclusive; no reference run: no speed-up; another GPU: judged, with a note
    on_h200 = [_figures(base, "S", device="NVIDIA H200", s_per_step=0.004)]
    edge = {v["target"].metric: v for v in check_targets(on_h200) if v["target"].config == "S"}
    assert edge["s_per_step_median"]["met"] is True
    assert "the target is for H100" in edge["s_per_step_median"]["note"]
    assert edge["speedup"]["met"] is None and edge["speedup"]["note"] == "no reference run"


def test_markdown_of_a_folder_without_results_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--markdown", str(tmp_path)])
    assert result.exit_code == 2 and "no bench JSON files in" in result.output
    (tmp_path / "notes.json").write_text('{"a": 1}')
    result = CliRunner().invoke(app, ["bench", "--markdown", str(tmp_path)])
    assert result.exit_code == 2 and "notes.json is not a vqclip bench JSON" in result.output
