import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vqclip.errors import PromptError
from vqclip.prompts import Prompt, PromptLoss, parse_prompt, parse_prompts, split_path_weight
from vqclip.validate import MAX_WEIGHT


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("a forest", Prompt("a forest")),
        ("a forest:2", Prompt("a forest", 2.0)),
        ("blurry:-0.5", Prompt("blurry", -0.5)),
        ("a cat:1:0.8", Prompt("a cat", 1.0, 0.8)),
        ("a photo: by x", Prompt("a photo: by x")),
        ("a photo: by x:2", Prompt("a photo: by x", 2.0)),
        ("see https://example.com/a.png", Prompt("see https://example.com/a.png")),
        (r"C:\img.png", Prompt(r"C:\img.png")),
        ("ratio 16:9 film", Prompt("ratio 16:9 film")),
        ("nan:inf", Prompt("nan:inf")),
        # the colon rule: a colon between two digits is text (times, ratios) ...
        ("a clock at 12:30", Prompt("a clock at 12:30")),
        ("aspect 16:9", Prompt("aspect 16:9")),
        ("1:1", Prompt("1:1")),
        ("at 12:30:45", Prompt("at 12:30:45")),
        ("time 10:30:1.5", Prompt("time 10:30:1.5")),
        ("16:9:2", Prompt("16:9:2")),
        # ... and a space before the colon makes the number after it a weight again
        ("a clock at 12:30 :2", Prompt("a clock at 12:30", 2.0)),
        ("time 10:30 :1.5:0.8", Prompt("time 10:30", 1.5, 0.8)),
        ("room 101 :-0.5", Prompt("room 101", -0.5)),
        ("room 101:-0.5", Prompt("room 101", -0.5)),  # a sign is not a digit: the colon separates
        ("a cat 2:1:0.8", Prompt("a cat 2:1:0.8")),
        # a URL's port is text; a weight after a URL's path is a weight
        ("https://example.com:8080", Prompt("https://example.com:8080")),
        ("see http://localhost:8000", Prompt("see http://localhost:8000")),
        ("https://example.com:8080/a.png:0.5", Prompt("https://example.com:8080/a.png", 0.5)),
        ("see https://example.com :2", Prompt("see https://example.com", 2.0)),
        # Windows paths
        (r"C:\img.png:0.5", Prompt(r"C:\img.png", 0.5)),
        (r"D:\photos\2023:1", Prompt(r"D:\photos\2023:1")),
        (r"D:\photos\2023 :1", Prompt(r"D:\photos\2023", 1.0)),
        # \: is always a plain colon
        (r"a note\:2", Prompt("a note:2")),
        (r"a note\:2:3", Prompt("a note:2:3")),  # still a colon between two digits
        (r"a note\:2 :3", Prompt("a note:2", 3.0)),
        (r"x\:1\:2", Prompt("x:1:2")),
    ],
)
def test_parse_prompt(spec, expected):
    assert parse_prompt(spec) == expected


@pytest.mark.parametrize(
    "spec, warned",
    [
        ("a forest:30", True),
        ("a forest:-12", True),
        ("a forest:10", False),
        ("a clock at 12:30", False),
        ("a forest:2", False),
    ],
)
def test_an_unusually_large_weight_is_pointed_out(spec, warned, caplog):
    with caplog.at_level("WARNING", logger="vqclip"):
        parse_prompt(spec)
    messages = [r.getMessage() for r in caplog.records]
    assert bool(messages) == warned
    if warned:
        assert "unusually large" in messages[0] and "\\:" in messages[0]


def test_parse_prompts_splits_on_bar_and_keeps_signs():
    assert parse_prompts("a forest:1|blurry:-0.5") == [Prompt("a forest", 1.0), Prompt("blurry", -0.5)]


@pytest.mark.parametrize("bad", ["", "   ", "a||b", "|a", ":1", "a:0"])
def test_bad_prompts_raise_prompt_error(bad):
    with pytest.raises(PromptError):
        parse_prompts(bad)


def _floatish(s: str) -> bool:
    """Anything float() takes (1e5, inf, 1_0, ' 3 '): broader than the parser's numbers, so text the strategy keeps
    can never end in something the parser might read as a weight."""
    try:
        float(s)
    except ValueError:
        return False
    return True


text_without_trailing_number = st.text(min_size=1).filter(
    lambda s: s.strip() and not _floatish(s.split(":")[-1]) and "|" not in s and "\\" not in s
)


@given(text=text_without_trailing_number)
def test_text_with_colons_is_never_misread(text):
    """Any text whose last field is not a number comes back whole, weight 1."""
    p = parse_prompt(text)
    assert p.text == text.strip() and p.weight == 1.0 and p.stop == -math.inf


@given(
    text=text_without_trailing_number.filter(lambda s: not s.rstrip()[-1:].isdigit() and "://" not in s),
    weight=st.floats(-10, 10).filter(lambda w: abs(w) > 1e-3),
)
def test_trailing_weight_is_parsed(text, weight):
    p = parse_prompt(f"{text}:{weight!r}")
    assert p.text == text.strip() and p.weight == pytest.approx(weight)


@given(
    left=st.integers(0, 10**6),
    right=st.integers(0, 10**6),
    text=text_without_trailing_number.filter(lambda s: not s.rstrip().endswith(":")),
)  # "a:0:0" is a weight 0
def test_a_colon_between_digits_is_text(left, right, text):
    """Any "N:M" at the end of a text (a time, a ratio) stays text; " :M" makes M its weight."""
    spec = f"{text}{left}:{right}"
    assert parse_prompt(spec) == Prompt(spec.strip())
    if 0 < right <= MAX_WEIGHT:
        assert parse_prompt(f"{text}{left} :{right}") == Prompt(f"{text}{left}".strip(), float(right))


def test_split_path_weight_keeps_drive_letters():
    assert split_path_weight(r"C:\img.png") == (r"C:\img.png", 1.0)
    assert split_path_weight("x.png:0.5") == ("x.png", 0.5)


def test_prompt_loss_sign_and_stop():
    target = torch.tensor([1.0, 0.0])
    near, far = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.0, 1.0]])
    pos, neg = PromptLoss(target, 1.0), PromptLoss(target, -1.0)
    assert pos(near) < pos(far)  # positive prompts are pulled closer
    assert neg(near) > neg(far)  # negative prompts push away
    x = far.clone().requires_grad_(True)
    PromptLoss(target, 1.0, stop=10.0)(x).backward()  # distance below stop: no gradient
    assert x.grad.abs().sum() == 0
    x.grad = None
    PromptLoss(target, 1.0)(x).backward()
    assert x.grad.abs().sum() > 0


def _final_loss(tiny_args, prompt):
    from typer.testing import CliRunner

    from vqclip.cli import app
    from vqclip.outputs import read_png_metadata

    result = CliRunner().invoke(
        app, ["generate", prompt, *tiny_args, "--steps", "2", "--cutn", "2", "--seed", "3", "--save-every", "0"]
    )
    assert result.exit_code == 0, result.output
    return read_png_metadata(result.stdout.strip().splitlines()[-1])["loss"], result.stderr


@pytest.mark.parametrize(
    "natural, explicit",
    [
        ("a clock at 12:30", r"a clock at 12\:30"),
        ("aspect 16:9 :2", r"aspect 16\:9: 2"),
        ("see https://example.com:8080", r"see https://example.com\:8080"),
        (r"C:\img.png", r"C\:\img.png"),
    ],
    ids=["time", "ratio-weighted", "url-port", "windows-path"],
)
def test_generate_reads_times_ratios_urls_and_paths_as_text(natural, explicit, tiny_args):
    """Through the CLI: the natural spelling runs exactly like the one with every text colon escaped."""
    (loss, stderr), (expected, _) = _final_loss(tiny_args, natural), _final_loss(tiny_args, explicit)
    assert loss == expected
    assert "unusually large" not in stderr


def test_generate_points_out_a_large_weight(tiny_args):
    _, stderr = _final_loss(tiny_args, "a clock:30")
    assert "weight 30, unusually large" in stderr and r"'a clock\:30'" in stderr
