"""vqclip.clip's contract with open_clip: the few names it relies on, none that are going away, a bounded version."""

import ast
import inspect
from importlib.metadata import version
from pathlib import Path

import open_clip
import pytest
from packaging.requirements import Requirement

import vqclip
from vqclip.clip import ClipSpec, parse_clip_spec

ROOT = Path(vqclip.__file__).resolve().parent

# every open_clip function vqclip calls, with the keyword arguments it passes
RELIED_ON = {
    "create_model": {"pretrained", "load_weights", "device"},
    "create_model_and_transforms": {"pretrained", "device", "cache_dir"},
    "get_tokenizer": set(),
    "list_models": set(),
    "list_pretrained_tags_by_model": set(),
    "get_pretrained_cfg": set(),
    "download_pretrained": {"cache_dir"},
    "add_model_config": set(),
}


@pytest.mark.parametrize("name", sorted(RELIED_ON))
def test_every_open_clip_name_vqclip_relies_on_is_there(name):
    assert hasattr(open_clip, name), (
        f"open_clip {version('open_clip_torch')} has no {name}, which vqclip.clip "
        f"calls: adapt vqclip/clip.py before raising the bound in pyproject.toml"
    )
    params = set(inspect.signature(getattr(open_clip, name)).parameters)
    assert RELIED_ON[name] <= params, f"open_clip.{name} lost {RELIED_ON[name] - params}"


def _uses(tree: ast.AST) -> set[str]:
    """Dotted names a module imports or reads as attributes (open_clip.openai, torch.jit.load, ...)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.Attribute):
            found.add(ast.unparse(node))
    return found


def test_vqclip_uses_no_open_clip_internals_that_are_going_away():
    """open_clip's development branch drops openai.py and TorchScript loading; vqclip reads archives itself."""
    banned = {
        "open_clip.openai",
        "open_clip.load_openai_model",
        "open_clip.list_openai_models",
        "torch.jit.load",
        "jit.load",
        "open_clip.factory",
        "open_clip.model",
    }
    offenders = {}
    for path in sorted(ROOT.rglob("*.py")):
        used = _uses(ast.parse(path.read_text())) & banned
        if used:
            offenders[str(path.relative_to(ROOT))] = used
    assert not offenders


def test_pyproject_bounds_open_clip_to_the_major_version_tested():
    text = (ROOT.parent / "pyproject.toml").read_text()
    line = next(x.strip().strip('",') for x in text.splitlines() if x.strip().startswith('"open_clip_torch'))
    spec = Requirement(line.split("#")[0].strip().rstrip('",')).specifier
    installed = version("open_clip_torch")
    assert installed in spec, f"open_clip {installed} is outside pyproject's {spec}"
    major = int(installed.split(".")[0])
    assert f"{major + 1}.0" not in spec, f"pyproject admits open_clip {major + 1}, which vqclip was not tested with"


@pytest.mark.parametrize(
    "spec, parsed",
    [
        ("ViT-B-32", ClipSpec("ViT-B-32")),
        ("ViT-B-32:openai", ClipSpec("ViT-B-32", "openai")),
        ("ViT-B-32:random", ClipSpec("ViT-B-32", None, random=True)),
        ("ViT-B-32-quickgelu:/x/ViT-B-32.pt", ClipSpec("ViT-B-32-quickgelu", "/x/ViT-B-32.pt")),
        ("local-dir:/m/clip", ClipSpec("local-dir:/m/clip")),
        ("local-dir:/m/clip:random", ClipSpec("local-dir:/m/clip", random=True)),
    ],
)
def test_specs_parse_and_print_back(spec, parsed):
    assert parse_clip_spec(spec) == parsed and str(parsed) == spec
