"""The Lightning task: losses, metrics, optimisers and schedulers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flair2.evaluation.metrics import miou
from flair2.models import SegmentationOutput
from flair2.training.task import SegmentationTask, WeightedCrossEntropy


def test_weighted_ce_equals_torch_when_defined() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 13, 4, 4)
    target = torch.randint(0, 13, (2, 4, 4))
    weight = [1.0] * 11 + [0.0, 0.0]
    ours = WeightedCrossEntropy(weight)(logits, target)
    ref = nn.CrossEntropyLoss(weight=torch.tensor(weight))(logits, target)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_weighted_ce_is_zero_not_nan_when_all_weights_vanish() -> None:
    logits = torch.randn(1, 13, 2, 2)
    target = torch.full((1, 2, 2), 12)
    weight = [1.0] * 12 + [0.0]
    assert torch.isnan(nn.CrossEntropyLoss(weight=torch.tensor(weight))(logits, target))
    assert WeightedCrossEntropy(weight)(logits, target).item() == 0.0


def test_miou_reference_definition() -> None:
    # The one mIoU that training's val_miou and the reports use: 3 classes + "other"
    # (the last index, excluded, whatever K is); class 2 absent from truth and prediction.
    cm = torch.tensor(
        [
            [3, 1, 0, 0],
            [1, 2, 0, 1],
            [0, 0, 0, 0],
            [0, 0, 0, 5],
        ]
    )
    iou0 = 3 / (4 + 4 - 3)
    iou1 = 2 / (4 + 3 - 2)
    assert miou(cm.numpy()) == pytest.approx((iou0 + iou1) / 2)


def test_loss_combines_both_heads_with_w_unet_utae(tiny_config) -> None:
    cfg = tiny_config(w_unet_utae=[0.5, 2.0], aerial_metadata=False)
    task = SegmentationTask(cfg, patch_size=64)
    torch.manual_seed(0)
    logits = torch.randn(1, 13, 8, 8)
    aux = torch.randn(1, 13, 8, 8)
    labels = torch.randint(0, 13, (1, 8, 8))
    out = SegmentationOutput(logits, aux)
    aerial_w, sat_w = cfg.class_weights()
    expected = 2.0 * nn.CrossEntropyLoss(weight=torch.tensor(aerial_w))(logits, labels)
    expected += 0.5 * nn.CrossEntropyLoss(weight=torch.tensor(sat_w))(aux, labels)
    assert task.compute_loss(out, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    # Criterion buffers carry the per-class weights under the reference's key names.
    keys = set(task.state_dict())
    assert {"criterion.0.weight", "criterion.1.weight"} <= keys
    assert task.state_dict()["criterion.1.weight"][11].item() == 0.0  # plowed land, satellite


def test_training_step_runs_and_reports_nan(tiny_config) -> None:
    from flair2.data.batch import normalize_batch
    from flair2.data.datamodule import FlairDataModule

    cfg = tiny_config()
    dm = FlairDataModule(cfg)
    dm.setup("fit")
    batch = normalize_batch(next(iter(dm.train_dataloader())))
    task = SegmentationTask(cfg, patch_size=dm.patch_size())
    loss = task.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    with torch.no_grad():
        next(task.model.parameters()).fill_(float("nan"))
    with pytest.raises(
        FloatingPointError, match="training loss is nan .*patches " + batch["patch_id"][0]
    ):
        task.training_step(batch, 3)


@pytest.mark.parametrize(
    ("optimizer", "scheduler"), [("sgd", "none"), ("adamw", "cosine"), ("sgd", "plateau")]
)
def test_optimisers_and_schedulers(tiny_config, optimizer: str, scheduler: str) -> None:
    cfg = tiny_config(optimizer=optimizer, scheduler=scheduler, warmup_epochs=1, num_epochs=4)
    task = SegmentationTask(cfg, patch_size=64)

    class FakeTrainer:
        estimated_stepping_batches = 40

    task._trainer = FakeTrainer()  # only estimated_stepping_batches is read
    conf = task.configure_optimizers()
    opt = conf if isinstance(conf, torch.optim.Optimizer) else conf["optimizer"]
    assert type(opt).__name__ == {"sgd": "SGD", "adamw": "AdamW"}[optimizer]
    if scheduler == "cosine":
        sched = conf["lr_scheduler"]["scheduler"]
        lrs = []
        for _ in range(40):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        # Linear warm-up over the first epoch (10 steps), then cosine decay towards 0.
        assert lrs[0] < lrs[5] < lrs[9] <= cfg.lr
        assert lrs[10] == pytest.approx(cfg.lr)
        assert lrs[25] == pytest.approx(cfg.lr * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
        assert lrs[-1] < 0.01 * cfg.lr
    if scheduler == "plateau":
        assert conf["lr_scheduler"]["monitor"] == "val_loss"


def test_late_fusion_adds_the_aerial_branch_loss(tiny_config) -> None:
    cfg = tiny_config(fusion="late", w_unet_utae=[0.5, 2.0], aerial_metadata=False)
    task = SegmentationTask(cfg, patch_size=64)
    torch.manual_seed(0)
    fused, aux, aerial = (torch.randn(1, 13, 8, 8) for _ in range(3))
    labels = torch.randint(0, 13, (1, 8, 8))
    aerial_w, sat_w = cfg.class_weights()
    ce_a = nn.CrossEntropyLoss(weight=torch.tensor(aerial_w))
    expected = 2.0 * ce_a(fused, labels) + 2.0 * ce_a(aerial, labels)
    expected += 0.5 * nn.CrossEntropyLoss(weight=torch.tensor(sat_w))(aux, labels)
    loss = task.compute_loss(SegmentationOutput(fused, aux, aerial), labels)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_aerial_lr_scale_gives_the_aerial_network_its_own_rate(tiny_config) -> None:
    cfg = tiny_config(fusion="late", aerial_lr_scale=0.1, lr=0.01, optimizer="adamw")
    task = SegmentationTask(cfg, patch_size=64)
    opt = task.configure_optimizers()
    other, aerial = opt.param_groups
    assert other["lr"] == pytest.approx(0.01) and aerial["lr"] == pytest.approx(0.001)
    names = {id(p): n for n, p in task.model.named_parameters()}
    assert all(names[id(p)].startswith(("arch_vhr.", "mtd_mlp.")) for p in aerial["params"])
    assert not any(names[id(p)].startswith(("arch_vhr.", "mtd_mlp.")) for p in other["params"])
    assert len(aerial["params"]) + len(other["params"]) == len(list(task.model.parameters()))


@pytest.mark.parametrize(("epoch", "frozen"), [(0, True), (1, True), (2, False)])
def test_freeze_aerial_epochs_drops_only_aerial_gradients(tiny_config, epoch, frozen) -> None:
    cfg = tiny_config(fusion="gated", freeze_aerial_epochs=2)
    task = SegmentationTask(cfg, patch_size=64)
    for p in task.model.parameters():
        p.grad = torch.ones_like(p)

    class FakeTrainer:
        current_epoch = epoch

    task._trainer = FakeTrainer()  # only current_epoch is read
    task.on_before_optimizer_step(torch.optim.SGD(task.parameters(), lr=0.1))
    for name, p in task.model.named_parameters():
        aerial = name.startswith(("arch_vhr.", "mtd_mlp."))
        assert (p.grad is None) == (aerial and frozen), name
