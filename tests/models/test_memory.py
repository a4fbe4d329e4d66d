"""Decoder checkpointing: less memory held for backward, the same numbers."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from model_helpers import make_inputs, small_config

from flair2.config import config_from_dict
from flair2.errors import ConfigError
from flair2.training.task import SegmentationTask


def _task(**overrides: Any) -> SegmentationTask:
    torch.manual_seed(0)
    return SegmentationTask(small_config(**overrides), patch_size=64)


def _batch() -> dict[str, Any]:
    batch = make_inputs(batch=2, dates=3, patch=64, sat=16, seed=5)
    batch["labels"] = torch.randint(0, 13, (2, 64, 64), generator=torch.Generator().manual_seed(6))
    batch["pad_mask"] = torch.zeros(2, 3, dtype=torch.bool)
    return batch


def _step(
    task: SegmentationTask, batch: dict[str, Any]
) -> tuple[float, int, dict[str, torch.Tensor]]:
    """(loss, activation bytes saved for backward, gradients) of one forward/backward."""
    task.train()
    weights = {p.data_ptr() for p in task.parameters()}
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if tensor.data_ptr() not in weights:  # activations, not the weights themselves
            saved += tensor.numel() * tensor.element_size()
        return tensor

    torch.manual_seed(7)  # the same dropout draws
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = task.compute_loss(task(batch), batch["labels"])
    loss.backward()
    grads = {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}
    return float(loss.detach()), saved, grads


def test_checkpointed_decoder_saves_less_and_computes_the_same() -> None:
    plain, lean = _task(), _task(checkpoint_decoder_blocks=2)
    lean.load_state_dict(plain.state_dict())
    assert list(lean.state_dict()) == list(plain.state_dict())  # modules are not wrapped
    batch = _batch()
    loss_plain, saved_plain, grads_plain = _step(plain, batch)
    loss_lean, saved_lean, grads_lean = _step(lean, batch)
    # The last two blocks (32 and 64 px maps) keep only their inputs.
    assert saved_lean < 0.8 * saved_plain, (saved_lean, saved_plain)
    assert loss_lean == pytest.approx(loss_plain, rel=1e-6)
    assert set(grads_lean) == set(grads_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_lean[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # Batch norm's running statistics move once per step, as without checkpointing.
    for (name, value), other in zip(
        plain.state_dict().items(), lean.state_dict().values(), strict=True
    ):
        if "running_" in name or "num_batches_tracked" in name:
            torch.testing.assert_close(other, value, rtol=1e-6, atol=1e-7, msg=name)


def test_evaluation_is_not_checkpointed() -> None:
    lean = _task(checkpoint_decoder_blocks=5).eval()
    plain = _task().eval()
    lean.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(lean(_batch()).logits, plain(_batch()).logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"checkpoint_decoder_blocks": 6}, r"must be in \[0, 5\]"),
        ({"checkpoint_decoder_blocks": 1, "decoder_name": "fpn"}, "needs decoder_name: unet"),
    ],
)
def test_bad_settings_name_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"'checkpoint_decoder_blocks': {message}"):
        config_from_dict(overrides)
