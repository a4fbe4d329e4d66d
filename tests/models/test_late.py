"""Late fusion: shapes, the combination's maths, learned weights, padding and batch invariance."""

from __future__ import annotations

import pytest
import torch
from model_helpers import (
    make_inputs,
    one_thread,  # noqa: F401  (fixture)
    small_config,
)
from torch.nn import functional as F

from flair2.models.late import LateFusion
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(patch: int = 64, **overrides) -> LateFusion:
    torch.manual_seed(0)
    model = build_model(small_config(arch="utt", fusion="late", **overrides), patch)
    assert isinstance(model, LateFusion)
    return model.eval()


def _run(model: LateFusion, inputs: dict[str, torch.Tensor], pad_mask=None):
    return model(
        inputs["aerial"], inputs["sen2"], inputs["positions"], pad_mask, inputs["metadata"]
    )


def test_outputs_and_the_weighted_geometric_mean() -> None:
    model = _model()
    with torch.no_grad():
        model.aerial_weight.copy_(torch.linspace(-2.0, 2.0, 13))
        model.sat_weight.copy_(torch.linspace(1.0, -1.0, 13))
        out = _run(model, make_inputs(batch=2, dates=3))
    for scores in (out.logits, out.aux_logits, out.aerial_logits):
        assert scores.shape == (2, 13, 64, 64)
    w_a = F.softplus(torch.linspace(-2.0, 2.0, 13))[:, None, None]
    w_s = F.softplus(torch.linspace(1.0, -1.0, 13))[:, None, None]
    expected = w_a * out.aerial_logits.log_softmax(1) + w_s * out.aux_logits.log_softmax(1)
    assert torch.allclose(out.logits, expected, atol=1e-5)
    # softmax(z) is the normalised product p_a^w_a · p_s^w_s.
    product = out.aerial_logits.softmax(1) ** w_a * out.aux_logits.softmax(1) ** w_s
    assert torch.allclose(out.logits.softmax(1), product / product.sum(1, keepdim=True), atol=1e-5)


def test_weights_start_at_one_and_are_learned() -> None:
    model = _model().train()
    w_a, w_s = model.branch_weights()
    assert torch.allclose(w_a, torch.ones(13)) and torch.allclose(w_s, torch.ones(13))
    inputs = make_inputs(batch=2, dates=3)
    labels = torch.randint(0, 13, (2, 64, 64))
    optimizer = torch.optim.SGD([model.aerial_weight, model.sat_weight], lr=1.0)
    loss = F.cross_entropy(_run(model, inputs).logits, labels)
    loss.backward()
    assert model.aerial_weight.grad.abs().sum() > 0 and model.sat_weight.grad.abs().sum() > 0
    optimizer.step()
    w_a, w_s = model.branch_weights()
    assert not torch.allclose(w_a, torch.ones(13)) and not torch.allclose(w_s, torch.ones(13))


def test_gradients_reach_both_branches() -> None:
    model = _model().train()
    out = _run(model, make_inputs(batch=2, dates=3))
    (out.logits.sum() + out.aux_logits.sum() + out.aerial_logits.sum()).backward()
    for prefix in ("arch_vhr.encoder.", "arch_vhr.decoder.", "arch_hr.in_conv.", "sat_head."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
        assert sum(float(g.abs().sum()) for g in grads) > 0, prefix


def test_padded_dates_and_batch_companions_do_not_change_a_sample() -> None:
    model = _model(patch=32)
    first = make_inputs(batch=1, dates=3, patch=32, seed=1)
    others = make_inputs(batch=2, dates=5, patch=32, seed=2)
    padded = {
        **first,
        "sen2": torch.cat([first["sen2"], torch.zeros(1, 2, 10, 16, 16)], dim=1),
        "positions": torch.cat([first["positions"], torch.zeros(1, 2, dtype=torch.long)], dim=1),
    }
    batch = {k: torch.cat([padded[k], others[k]]) for k in first}
    pad_mask = torch.zeros(3, 5, dtype=torch.bool)
    pad_mask[0, 3:] = True
    with torch.no_grad():
        alone = _run(model, first)
        together = _run(model, batch, pad_mask)
    assert torch.allclose(together.logits[:1], alone.logits, atol=1e-4, rtol=1e-5)
    assert torch.allclose(together.aux_logits[:1], alone.aux_logits, atol=1e-5, rtol=1e-5)


def test_dropping_sentinel2_leaves_the_aerial_term_alone() -> None:
    model = _model(patch=32, drop_utae_modality=1.0).train()
    torch.manual_seed(3)
    out = _run(model, make_inputs(batch=2, dates=2, patch=32))
    w_a, _ = model.branch_weights()
    expected = w_a[:, None, None] * out.aerial_logits.log_softmax(1)
    assert torch.allclose(out.logits, expected, atol=1e-6)


def test_without_aux_only_the_combination_is_returned() -> None:
    model = _model(patch=32)
    inputs = make_inputs(batch=1, dates=2, patch=32)
    with torch.no_grad():
        out = model(
            inputs["aerial"],
            inputs["sen2"],
            inputs["positions"],
            None,
            inputs["metadata"],
            with_aux=False,
        )
        full = _run(model, inputs)
    assert out.aux_logits is None and out.aerial_logits is None
    assert torch.equal(out.logits, full.logits)


def test_input_errors() -> None:
    model = _model(patch=32)
    inputs = make_inputs(batch=1, dates=2, patch=32)
    with pytest.raises(ValueError, match="needs the Sentinel-2 series"):
        model(inputs["aerial"], None, inputs["positions"], None, inputs["metadata"])
    with pytest.raises(ValueError, match="built for 32×32 aerial patches"):
        model(
            torch.rand(1, 5, 64, 64), inputs["sen2"], inputs["positions"], None, inputs["metadata"]
        )
