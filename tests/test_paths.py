"""vqclip.paths.inside: a relative path from outside names a file in the folder, or nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqclip.paths import inside


@pytest.fixture
def tree(tmp_path):
    """root/ with a file, a folder, a hidden temp file, links in and out; a secret beside root."""
    root = tmp_path / "root"
    (root / "a-run" / "frames").mkdir(parents=True)
    (root / "a-run" / "final.png").write_bytes(b"png")
    (root / "a-run" / "frames" / "step_00000.png").write_bytes(b"png")
    (root / "a-run" / ".final.123.tmp.png").write_bytes(b"half")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "out.png")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "a-run" / "final.png", root / "in.png")
    os.symlink(root / "loop", root / "loop")
    return root


def test_files_inside_are_found(tree):
    assert inside(tree, "a-run/final.png") == (tree / "a-run" / "final.png").resolve()
    assert inside(tree, "a-run/frames/step_00000.png") is not None
    assert inside(tree, "in.png") == (tree / "a-run" / "final.png").resolve()  # a link that stays inside


@pytest.mark.parametrize(
    "rel",
    [
        "../secret.txt",
        "a-run/../../secret.txt",
        "/etc/passwd",
        str(Path("/etc/passwd")),
        "//etc/passwd",
        "a-run/./final.png",
        "a-run//final.png",
        "./a-run/final.png",
        "a-run/final.png/",
        "a-run",
        "a-run/frames",
        "",
        "a-run/.final.123.tmp.png",
        ".",
        "..",
        "a-run\\..\\..\\secret.txt",
        "C:/secret.txt",
        "a-run/final.png\0.txt",
        "out.png",
        "up/secret.txt",
        "loop",
        "missing.png",
        None,
        3,
        ["a-run/final.png"],
    ],
)
def test_everything_else_is_refused(tree, rel):
    assert inside(tree, rel) is None


def test_no_root_no_files(tree):
    assert inside(None, "a-run/final.png") is None
    assert inside(tree / "nope", "final.png") is None


@pytest.fixture(scope="module")
def shared_tree(tmp_path_factory):
    """The same kind of tree, made once for the property test's examples."""
    base = tmp_path_factory.mktemp("paths")
    root = base / "root"
    (root / "a-run" / "frames").mkdir(parents=True)
    (root / "a-run" / "final.png").write_bytes(b"png")
    (root / "a-run" / "frames" / "step_00000.png").write_bytes(b"png")
    (base / "secret.txt").write_text("secret")
    os.symlink(base / "secret.txt", root / "out.png")
    os.symlink(base, root / "up")
    return root


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "..",
                ".",
                "",
                "a-run",
                "final.png",
                "frames",
                "up",
                "out.png",
                "%2e%2e",
                "/",
                "step_00000.png",
                "secret.txt",
                ".final.123.tmp.png",
                "root",
            ]
        ),
        max_size=6,
    )
)
def test_whatever_it_is_given_it_never_leaves_the_folder(shared_tree, rel_parts):
    found = inside(shared_tree, "/".join(rel_parts))
    assert found is None or (found.is_file() and found.is_relative_to(shared_tree.resolve()))
    if rel_parts in (["a-run", "final.png"], ["a-run", "frames", "step_00000.png"]):
        assert found is not None
