import math

import pytest
import torch
from hypothesis import given, strategies as st

from vqclip.errors import PromptError
from vqclip.prompts import Prompt, PromptLoss, parse_prompt, parse_prompts, split_path_weight


@pytest.mark.parametrize("spec, expected", [
    ("a forest", Prompt("a forest")),
    ("a forest:2", Prompt("a forest", 2.0)),
    ("blurry:-0.5", Prompt("blurry", -0.5)),
    ("a cat:1:0.8", Prompt("a cat", 1.0, 0.8)),
    ("a photo: by x", Prompt("a photo: by x")),
    ("a photo: by x:2", Prompt("a photo: by x", 2.0)),
    ("see https://example.com/a.png", Prompt("see https://example.com/a.png")),
    (r"C:\img.png", Prompt(r"C:\img.png")),
    ("ratio 16:9 film", Prompt("ratio 16:9 film")),
    ("time 10:30:1.5", Prompt("time 10", 30.0, 1.5)),
    ("nan:inf", Prompt("nan:inf")),
])
def test_parse_prompt(spec, expected):
    assert parse_prompt(spec) == expected


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
    lambda s: s.strip() and not _floatish(s.split(":")[-1]) and "|" not in s)


@given(text=text_without_trailing_number)
def test_text_with_colons_is_never_misread(text):
    """Any text whose last field is not a number comes back whole, weight 1."""
    p = parse_prompt(text)
    assert p.text == text.strip() and p.weight == 1.0 and p.stop == -math.inf


@given(text=text_without_trailing_number, weight=st.floats(-10, 10).filter(lambda w: abs(w) > 1e-3))
def test_trailing_weight_is_parsed(text, weight):
    p = parse_prompt(f"{text}:{weight!r}")
    assert p.text == text.strip() and p.weight == pytest.approx(weight)


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
