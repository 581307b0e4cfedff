"""The package as a whole: its imports flow one way, its modules stay small, its public API is lazy and versioned."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vqclip

ROOT = Path(vqclip.__file__).resolve().parent
MAX_LINES = 300
SIZE_REASON = "# size:"  # a module may run longer when a line starting so near its top says why


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """vqclip modules this one imports anywhere (functions included), except under `if TYPE_CHECKING:`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if _type_checking(node) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from . import x` imports the submodule x when there is one
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def test_no_import_circles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name)
    assert "vqclip.runner" in graph["vqclip.cli.generate"], "the walk found the CLI's use of the runner"


def test_modules_stay_small_or_say_why():
    long = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES and not any(line.startswith(SIZE_REASON) for line in lines[:30]):
            long.append(f"{name} ({len(lines)} lines)")
    assert not long, f"modules over {MAX_LINES} lines without a '{SIZE_REASON}' line at the top: {long}"


def test_loop_modules_import_no_models_files_or_cli():
    """The loop's floor (config, ops, prompts, story, cutouts, fastpath, optimize) knows no model, file or CLI."""
    modules = _modules()
    upper = {
        "vqclip.vqgan",
        "vqclip.clip",
        "vqclip.store",
        "vqclip.runner",
        "vqclip.writer",
        "vqclip.outputs",
        "vqclip.cli",
    }
    for name in (
        "vqclip.config",
        "vqclip.ops",
        "vqclip.prompts",
        "vqclip.story",
        "vqclip.cutouts",
        "vqclip.fastpath",
        "vqclip.optimize",
    ):
        bad = {m for m in _imports(name, modules[name], modules) if any(m.startswith(u) for u in upper)}
        assert not bad, f"{name} imports {bad}"


def test_public_api_is_lazy_listed_and_versioned():
    code = (
        "import sys, vqclip; heavy = [m for m in ('torch', 'open_clip', 'vqclip.runner') if m in sys.modules]; "
        "print(heavy, vqclip.__version__, sorted(vqclip.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] "), f"importing vqclip imported {out}"
    for name in vqclip.__all__:
        assert getattr(vqclip, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vqclip.nope  # noqa: B018


def test_cli_help_imports_no_torch():
    """`vqclip --help` and each command's --help stay light: the library loads when a command runs."""
    commands = [[], ["generate"], ["batch"], ["animate"], ["bench"], ["eval"], ["video"], ["models", "list"], ["score"]]
    code = (
        "import sys; from typer.testing import CliRunner; from vqclip.cli import app; "
        f"codes = [CliRunner().invoke(app, [*c, '--help']).exit_code for c in {commands!r}]; "
        "print(codes, [m for m in ('torch', 'open_clip', 'numpy', 'vqclip.runner') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{[0] * len(commands)} []", out


def test_version_is_single_sourced(tmp_path):
    """pyproject reads the version from vqclip/version.py; --version prints it."""
    from typer.testing import CliRunner

    from vqclip.cli import app

    pyproject = (ROOT.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'path = "vqclip/version.py"' in pyproject
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"vqclip {vqclip.__version__}"


def test_every_imported_distribution_is_declared():
    """Each third-party package the code imports is a dependency in pyproject (yaml -> PyYAML etc.)."""
    import tomllib

    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]

    def names(deps):
        return {d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for d in deps}

    declared = names(project["dependencies"])
    # imported only when asked for (vqclip.notebook), and declared in the extra that asks for it
    optional = {"IPython": "notebook"}
    for module, extra in optional.items():
        assert module.lower() in names(project["optional-dependencies"][extra]), f"{module} not in [{extra}]"
        declared.add(module.lower())
    dist_of = {
        "yaml": "pyyaml",
        "PIL": "pillow",
        "open_clip": "open_clip_torch",
        "taming": "taming-transformers-rom1504",
        "imageio_ffmpeg": "imageio-ffmpeg",
    }
    std = set(sys.stdlib_module_names)
    used = set()
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                used.add(node.module.split(".")[0])
    third = {m for m in used if m not in std and m not in ("vqclip", "typing_extensions")}
    missing = {m for m in third if dist_of.get(m, m).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject: {missing}"
