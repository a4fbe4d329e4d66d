"""Speed options change how the work is done, never the numbers (fp32 within 1e-5)."""

from __future__ import annotations

from typing import Any

import torch
from model_helpers import make_inputs, small_config

from flair2.training.task import SegmentationTask


def _batch(seed: int = 0) -> dict[str, Any]:
    inputs = make_inputs(batch=2, dates=3, patch=64, sat=16, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    inputs["labels"] = torch.randint(0, 13, (2, 64, 64), generator=gen)
    inputs["pad_mask"] = torch.zeros(2, 3, dtype=torch.bool)
    return inputs


def _task(**overrides: Any) -> SegmentationTask:
    torch.manual_seed(0)
    return SegmentationTask(small_config(**overrides), patch_size=64)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_channels_last_gives_the_same_logits() -> None:
    plain, fast = _task(), _task(channels_last=True)
    fast.load_state_dict(plain.state_dict())
    conv = fast.model.arch_vhr.encoder.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    batch = _batch()
    with torch.inference_mode():
        expected = plain.eval()(batch)
        got = fast.eval()(batch)
    assert _relative(got.logits, expected.logits) < 1e-5
    assert _relative(got.aux_logits, expected.aux_logits) < 1e-5


def _gradient(task: SegmentationTask, batch: dict[str, Any]) -> tuple[float, torch.Tensor]:
    task.train()
    torch.manual_seed(7)  # the same dropout draws for every variant
    loss = task.compute_loss(task(batch), batch["labels"])
    loss.backward()
    grads = [p.grad.double().flatten() for p in task.parameters() if p.grad is not None]
    return float(loss.detach()), torch.cat(grads)


def test_channels_last_gives_the_same_training_step() -> None:
    plain, fast, exact = _task(), _task(channels_last=True), _task()
    fast.load_state_dict(plain.state_dict())
    exact.load_state_dict(plain.state_dict())
    exact.double()
    batch = _batch(seed=3)
    batch64 = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    loss_plain, grad_plain = _gradient(plain, batch)
    loss_fast, grad_fast = _gradient(fast, batch)
    loss_exact, grad_exact = _gradient(exact, batch64)
    assert abs(loss_fast - loss_plain) <= 1e-5 * abs(loss_plain)
    assert abs(loss_plain - loss_exact) <= 1e-5 * abs(loss_exact)
    # Batch norm over the tiny deepest maps of a 64 px batch of 2 makes the gradient
    # ill-conditioned: plain fp32 is already ~1e-3 from float64 here. channels_last
    # reorders the sums; it must stay within the same rounding error, not beyond.
    error_plain = float((grad_plain - grad_exact).norm() / grad_exact.norm())
    error_fast = float((grad_fast - grad_exact).norm() / grad_exact.norm())
    assert error_fast <= max(3 * error_plain, 1e-5), (error_fast, error_plain)
    assert error_fast < 5e-3


def test_state_dict_keeps_its_keys_and_values_under_speed_options() -> None:
    plain = _task()
    fast = _task(channels_last=True, compile_model=True)
    # Compilation is lazy (at the first forward) and in place: the keys a checkpoint
    # stores are unchanged, so compiled and plain runs share checkpoints.
    assert list(fast.state_dict()) == list(plain.state_dict())
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[key], value, rtol=0, atol=0)


def test_training_default_keeps_the_default_order() -> None:
    # channels_last "auto": prediction only (on a CPU, training steps were slower).
    conv = _task().model.arch_vhr.encoder.conv1.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


def test_without_aux_the_logits_are_unchanged() -> None:
    task = _task().eval()
    batch = _batch()
    with torch.inference_mode():
        full = task(batch)
        lean = task(batch, with_aux=False)
    assert full.aux_logits is not None and lean.aux_logits is None
    torch.testing.assert_close(lean.logits, full.logits, rtol=0, atol=0)


def test_compiled_unet_gives_the_same_logits_for_any_number_of_dates() -> None:
    plain, fast = _task(), _task(compile_model=True)
    fast.load_state_dict(plain.state_dict())
    # Only the U-Net is compiled: the U-TAE's input changes with the number of dates.
    assert fast.model.arch_vhr.encoder._compiled_call_impl is not None
    assert fast.model.arch_hr._compiled_call_impl is None
    with torch.inference_mode():
        for dates in (3, 2):
            batch = make_inputs(batch=2, dates=dates, patch=64, sat=16, seed=dates)
            batch["pad_mask"] = torch.zeros(2, dates, dtype=torch.bool)
            expected = plain.eval()(batch).logits
            got = fast.eval()(batch).logits
            assert _relative(got, expected) < 1e-5, dates
