import os
import sys
import types
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import TINY_DDCONFIG, write_vqgan

from vqclip.checkpoint import load_checkpoint
from vqclip.clip import load_clip
from vqclip.errors import CheckpointError, ConfigError, ModelFilesMissing, UnknownNameError
from vqclip.store import resolve_vqgan
from vqclip.vqgan import VQGANSpec, build_vqgan, load_vqgan, read_vqgan_yaml

# copies of the published taming yamls (lossconfig included: vqclip must never build it)
REFERENCE = Path(__file__).resolve().parent / "data"


def test_tiny_vqgan_loads_through_the_user_loader(tiny_models):
    model = load_vqgan(tiny_models["vqgan"], tiny_models["ckpt"])
    state = torch.load(tiny_models["ckpt"], weights_only=True)["state_dict"]
    assert torch.equal(model.codebook, state["quantize.embedding.weight"])
    z = model.codes_to_latent(torch.zeros(1, 4, 4, dtype=torch.long))
    assert model.decode(z).shape == (1, 3, 8, 8)
    assert not any(p.requires_grad for p in model.parameters())


def test_gumbel_vqgan_loads(tmp_path):
    config, ckpt = write_vqgan(tmp_path, "gumbel", gumbel=True)
    model = load_vqgan(config, ckpt)
    assert model.spec.gumbel and model.codebook.shape == (64, 32)
    assert model.encode(torch.zeros(1, 3, 16, 16)).shape == (1, 32, 8, 8)


def test_lightning_checkpoint_keyed_by_model_checkpoint_class_loads(tmp_path, monkeypatch):
    """Official files key their callbacks by pytorch_lightning's ModelCheckpoint class itself."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module.__name__, "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, module.__name__, module)
    config, _ = write_vqgan(tmp_path, "official")
    model = build_vqgan(read_vqgan_yaml(config))
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}},
            "pytorch-lightning_version": "1.0.8",
        },
        ckpt,
    )
    monkeypatch.delitem(sys.modules, module.__name__)  # loading must not need Lightning
    loaded = load_vqgan(config, ckpt)
    assert torch.equal(loaded.codebook, model.codebook)


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    config, _ = write_vqgan(tmp_path / "a", "a", n_embed=64)
    _, other = write_vqgan(tmp_path / "b", "b", n_embed=128)
    with pytest.raises(CheckpointError, match=r"does not fit.*quantize.embedding.weight"):
        load_vqgan(config, other)
    state = torch.load(other, weights_only=True)["state_dict"]
    torch.save({k: v for k, v in state.items() if not k.startswith("decoder.")}, tmp_path / "nodec.ckpt")
    with pytest.raises(CheckpointError, match="missing keys.*decoder"):
        load_vqgan(tmp_path / "b" / "b.yaml", tmp_path / "nodec.ckpt")


def test_truncated_checkpoint_is_a_clear_error(tiny_models, tmp_path):
    data = Path(tiny_models["ckpt"]).read_bytes()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)


def test_not_a_taming_yaml(tmp_path):
    (tmp_path / "x.yaml").write_text("model: {params: {}}\n")
    with pytest.raises(ConfigError, match="not a taming VQGAN config"):
        read_vqgan_yaml(tmp_path / "x.yaml")


def test_registry_names_missing_files_and_how_to_get_them(tmp_path):
    with pytest.raises(ModelFilesMissing, match=r"vqgan_imagenet_f16_16384\.yaml.*vqclip models download"):
        resolve_vqgan("vqgan_imagenet_f16_16384", ckpt_dir=str(tmp_path))
    with pytest.raises(UnknownNameError, match="vqgan_imagenet_f16_16384"):
        resolve_vqgan("imagenet")


def test_yaml_without_ckpt_beside_it(tiny_models, tmp_path):
    lone = tmp_path / "lone.yaml"
    lone.write_text(Path(tiny_models["vqgan"]).read_text())
    with pytest.raises(ModelFilesMissing, match="lone.ckpt.*--vqgan-ckpt"):
        resolve_vqgan(str(lone))
    assert resolve_vqgan(str(lone), tiny_models["ckpt"]).weights == Path(tiny_models["ckpt"])


def test_tiny_clip_loads_with_its_preprocessing(tiny_models):
    p = load_clip(tiny_models["clip"])
    assert p.input_size == 32 and p.mean.flatten()[0] == pytest.approx(0.48145466)
    assert p.encode_text(["a red circle"]).shape == (1, 32)
    assert p.encode_image(torch.rand(2, 3, 32, 32)).shape == (2, 32)


def test_unknown_clip_suggests_and_points_to_the_list():
    with pytest.raises(UnknownNameError, match=r"'ViT-B-32x'; did you mean ViT-B-32\b.*`vqclip models list`"):
        load_clip("ViT-B-32x")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vqgan_imagenet_f16_16384", "vqgan_gumbel_f8_8192"])
def test_official_yamls_build_offline_with_random_weights(name):
    spec = read_vqgan_yaml(REFERENCE / f"{name}.yaml")
    model = build_vqgan(spec)
    expected = {"vqgan_imagenet_f16_16384": (16, 16384, False), "vqgan_gumbel_f8_8192": (8, 8192, True)}[name]
    assert (spec.factor, spec.n_embed, spec.gumbel) == expected
    assert not hasattr(model, "loss")
    with torch.no_grad():
        out = model.decode_quantized(torch.zeros(1, 256, 2, 2))
    assert out.shape == (1, 3, 2 * spec.factor, 2 * spec.factor)


def _saved_shapes(fn) -> list[tuple[int, ...]]:
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, shapes


def test_fused_attention_is_taming_attention_without_the_matrix():
    """SDPA in the VQGAN's attention blocks: same image and gradient, and no [hw, hw] matrix kept for backward."""
    torch.manual_seed(0)
    spec = VQGANSpec(ddconfig={**TINY_DDCONFIG, "attn_resolutions": [16]}, n_embed=64, embed_dim=32)
    model = build_vqgan(spec).requires_grad_(False)
    z = torch.randn(2, 32, 12, 12)
    hw = 12 * 12  # tokens of the mid-block attention
    results = {}
    for fused in (False, True):
        model.set_fused_attention(fused)
        zq = z.clone().requires_grad_(True)
        image, shapes = _saved_shapes(lambda zq=zq: model.decode(zq))
        image.square().mean().backward()
        results[fused] = image.detach(), zq.grad, shapes
    (plain, plain_grad, plain_shapes), (fused, fused_grad, fused_shapes) = results[False], results[True]
    assert torch.allclose(plain, fused, atol=1e-5)
    assert torch.allclose(plain_grad, fused_grad, atol=1e-6, rtol=1e-4)
    assert any(s[-2:] == (hw, hw) for s in plain_shapes), "taming's attention should keep the matrix"
    assert not any(s[-2:] == (hw, hw) for s in fused_shapes)
    model.set_fused_attention(False)  # switching back restores taming's forward
    assert torch.equal(model.decode(z), plain)


def test_clip_weights_from_a_file_are_the_files_and_init_is_restored(tmp_path):
    """Loading NAME:/path skips the random init of the weights it replaces; every weight is the file's."""
    import open_clip

    from vqclip.bench import ARCHITECTURES
    from vqclip.clip import register_clip_architectures

    register_clip_architectures(ARCHITECTURES)
    torch.manual_seed(3)
    state = open_clip.create_model("vqclip-tiny-clip").state_dict()
    torch.save(state, tmp_path / "tiny.pt")
    inits = {n: getattr(torch.nn.init, n) for n in ("normal_", "uniform_", "kaiming_uniform_", "ones_")}
    loaded = load_clip(f"vqclip-tiny-clip:{tmp_path / 'tiny.pt'}").model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert all(getattr(torch.nn.init, n) is fn for n, fn in inits.items())
    assert torch.nn.init.normal_(torch.zeros(1000)).std() > 0.5  # initialising works again


def test_vqgan_weights_keep_the_models_dtype(tmp_path):
    spec = VQGANSpec(ddconfig=dict(TINY_DDCONFIG), n_embed=64, embed_dim=32)
    state = {k: v.half() for k, v in build_vqgan(spec).state_dict().items()}
    model = build_vqgan(spec, state)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert torch.equal(model.codebook, state["quantize.embedding.weight"].float())


def _tiny_yaml(**changes) -> str:
    """The tiny VQGAN's yaml with ddconfig (or params, for n_embed/embed_dim) values replaced by raw YAML text."""
    import yaml as pyyaml

    params = {"embed_dim": 32, "n_embed": 64, "ddconfig": dict(TINY_DDCONFIG)}
    for key in changes:
        (params if key in params else params["ddconfig"])[key] = f"@{key}@"
    text = pyyaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel", "params": params}})
    for key, raw in changes.items():
        text = text.replace(f"'@{key}@'", raw).replace(f"@{key}@", raw)
    return text


# hostile or absurd model yamls: (id, yaml text, fragment of the one-line error); all refused before a build
HOSTILE_YAMLS = [
    ("env-interpolation", _tiny_yaml(n_embed="${oc.env:VQCLIP_TEST_SECRET}"), "uses an interpolation"),
    ("resolver-interpolation", _tiny_yaml(ch="${oc.decode:'1'}"), "uses an interpolation"),
    (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nmodel: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
        "aliases",
    ),
    ("deep-nesting", "model: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    ("python-tag", "model: !!python/object/apply:os.system [echo hi]\n", "could not determine a constructor"),
    ("huge-channels", _tiny_yaml(ch="100000000"), "ch = 100000000 is not a whole number from 1 to 4096"),
    ("huge-res-blocks", _tiny_yaml(num_res_blocks="1000000"), "num_res_blocks = 1000000"),
    ("huge-codebook", _tiny_yaml(n_embed="1000000000000"), "n_embed = 1000000000000"),
    ("many-levels", _tiny_yaml(ch_mult="[" + ", ".join(["1"] * 100) + "]"), "ch_mult must list 1 to 10 levels"),
    ("float-channels", _tiny_yaml(ch="32.5"), "ch = 32.5 is not a whole number"),
    ("text-codebook", _tiny_yaml(n_embed="lots"), "expected a whole number"),
]


@pytest.mark.parametrize("case, text, fragment", HOSTILE_YAMLS, ids=[c[0] for c in HOSTILE_YAMLS])
def test_model_yaml_is_data_only_and_bounded(case, text, fragment, tiny_models, tmp_path, monkeypatch, no_model_loads):
    from typer.testing import CliRunner

    from vqclip.cli import app

    monkeypatch.setenv("VQCLIP_TEST_SECRET", "hunter2-do-not-print")
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        read_vqgan_yaml(path)
    result = CliRunner().invoke(
        app,
        [
            "generate",
            "x",
            "--vqgan",
            str(path),
            "--vqgan-ckpt",
            tiny_models["ckpt"],
            "--clip",
            tiny_models["clip"],
            "--size",
            "32",
            "32",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "hunter2" not in result.output


def test_special_files_as_model_files_are_refused_without_blocking(tiny_models, tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.ckpt").symlink_to("/dev/zero")
    with pytest.raises(ModelFilesMissing, match="is a FIFO"):
        read_vqgan_yaml(tmp_path / "fifo.yaml")
    with pytest.raises(ModelFilesMissing, match=r"is a link to /dev/zero, a character device"):
        load_checkpoint(tmp_path / "zero.ckpt")


@settings(max_examples=int(os.environ.get("FUZZ", 150)), deadline=None)
@given(
    text=st.text(max_size=300)
    | st.builds(
        lambda mult, ch, n: _tiny_yaml(ch_mult=mult, ch=ch, n_embed=n),
        st.sampled_from(["[1, 2]", "[]", "1", "[0]", "[-1, 2]", "[1, true]", "{a: 1}", "[1.5, 2]", "null"]),
        st.sampled_from(["32", "0", "-1", "1e3", "[1]", "'x'", "null"]),
        st.sampled_from(["64", "0", "true", "99999999999999999999"]),
    )
)
def test_any_text_as_a_model_yaml_is_read_or_refused_in_one_line(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("yaml") / "m.yaml"
    path.write_text(text)
    try:
        read_vqgan_yaml(path)
    except (ConfigError, ModelFilesMissing) as e:
        assert "\n" not in str(e)
