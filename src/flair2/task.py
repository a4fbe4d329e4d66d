"""The LightningModule: losses, optimisers, schedulers and metrics while training.

The task holds the network as ``self.model`` and the two weighted losses as
``self.criterion`` (``criterion.0`` for the U-Net, ``criterion.1`` for the U-TAE
auxiliary head), so its checkpoint keys line up with the reference's.
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from flair2.classes import OTHER_INDEX
from flair2.config import Config, config_from_dict
from flair2.errors import Flair2Error
from flair2.models import SegmentationOutput, build_model


class NonFiniteLossError(Flair2Error, FloatingPointError):
    """The loss became NaN or infinite: training stops before the weights are spoiled.

    A :class:`~flair2.errors.Flair2Error`, so the command line prints it as one
    line; a ``FloatingPointError`` for code that catches numerical failures.
    """


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with per-class weights that stays finite when every weight is 0.

    Equal to ``nn.CrossEntropyLoss(weight=w)`` (weighted mean) whenever some
    target pixel has a non-zero weight; 0 instead of NaN when none has (e.g. a
    batch of "other" only, whose weight is 0 in the reference configuration).
    """

    def __init__(self, weight: list[float]) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float32))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Args: logits (B, K, H, W); target (B, H, W) int64. Returns a scalar."""
        weight = self.weight.to(logits.dtype)
        total = F.cross_entropy(logits, target, weight=weight, reduction="sum")
        norm = weight[target].sum()
        return total / norm.clamp_min(torch.finfo(logits.dtype).tiny)


def miou_from_confusion(cm: Tensor, exclude: int | None = OTHER_INDEX) -> Tensor:
    """mIoU as the reference scores it: mean IoU over classes but ``exclude``, NaN-free.

    A class absent from both truth and prediction (IoU 0/0) is left out of the mean.

    Args:
        cm: (K, K) confusion matrix, rows truth, columns prediction.
        exclude: class index left out ("other"), or None.
    """
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    iou = tp / union
    keep = torch.ones_like(iou, dtype=torch.bool)
    if exclude is not None and exclude < len(iou):
        keep[exclude] = False
    keep &= union > 0
    if not keep.any():
        return torch.tensor(float("nan"))
    return iou[keep].mean()


class SegmentationTask(pl.LightningModule):
    """Train, validate and predict a flair2 model from a configuration.

    Args:
        config: the configuration, as a :class:`Config` or its plain dict (the
            checkpoint stores the dict so a run can be rebuilt from it).
        patch_size: aerial patch size in pixels (sizes of the model follow from it).
    """

    def __init__(self, config: Config | dict[str, Any], patch_size: int) -> None:
        super().__init__()
        cfg = config if isinstance(config, Config) else config_from_dict(config)
        self.save_hyperparameters({"config": cfg.to_dict(), "patch_size": patch_size})
        self.cfg = cfg
        self.patch_size = patch_size
        self.model = build_model(cfg, patch_size)
        aerial_w, sat_w = cfg.class_weights()
        self.criterion = nn.ModuleList(
            [WeightedCrossEntropy(aerial_w), WeightedCrossEntropy(sat_w)]
        )
        # NaN must reach the mean (torchmetrics would drop it with a warning), so that
        # a diverged validation is seen and stops the run before it is checkpointed.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_confusion = MulticlassConfusionMatrix(cfg.num_classes)
        #: Average predictions over flips and 90° rotations (set by the predict command).
        self.predict_tta = False

    # ------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> SegmentationOutput:
        """Run the model on a normalised batch (see :func:`flair2.data.batch.normalize_batch`)."""
        return self.model(
            batch["aerial"],
            batch.get("sen2"),
            batch.get("positions"),
            batch.get("pad_mask"),
            batch.get("metadata") if self.cfg.aerial_metadata else None,
        )

    def compute_loss(self, out: SegmentationOutput, labels: Tensor) -> Tensor:
        """``w_utae · CE_sat(aux) + w_unet · CE_aerial(logits)``, as the reference weighs them."""
        w_utae, w_unet = self.cfg.w_unet_utae
        loss = w_unet * self.criterion[0](out.logits, labels)
        if out.aux_logits is not None and w_utae > 0:
            loss = loss + w_utae * self.criterion[1](out.aux_logits, labels)
        return loss

    def _world_size(self) -> int:
        trainer = self._trainer
        return trainer.world_size if trainer is not None else 1

    def _check_finite_loss(self, loss: Tensor, batch: dict[str, Any], batch_idx: int) -> None:
        """Raise :class:`NonFiniteLossError` on every process when any process's loss is not finite.

        The error is raised before ``backward``, so the weights (and the checkpoints
        written so far) stay those of the last good step. Under DDP the check is
        collective: a process stopping alone would leave the others waiting in the
        gradient all-reduce; all of them stop, and the message names the patches
        of whichever process went wrong.
        """
        bad = ~torch.isfinite(loss.detach())
        world = self._world_size()
        if world > 1:
            flag = self.trainer.strategy.reduce(bad.float(), reduce_op="sum")
            if float(flag) == 0.0:
                return
        elif not bool(bad):
            return
        mine: str | None = None
        if bool(bad):
            ids = ", ".join(batch.get("patch_id", []))
            where = f" on process {self.global_rank}" if world > 1 else ""
            mine = (
                f"training loss is {loss.item()} at epoch {self.current_epoch}, "
                f"batch {batch_idx} (patches {ids}){where}"
            )
        found: list[str | None] = [mine]
        if world > 1:
            found = [None] * world
            torch.distributed.all_gather_object(found, mine)
        message = "; ".join(m for m in found if m)
        raise NonFiniteLossError(
            f"{message}; lower lr, enable gradient_clip_val or check these patches "
            "(the checkpoints written so far are kept)"
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        out = self(batch)
        loss = self.compute_loss(out, batch["labels"])
        self._check_finite_loss(loss, batch, batch_idx)
        self.train_loss.update(loss.detach())
        self.log("train_loss_step", loss.detach(), prog_bar=False, batch_size=len(batch["aerial"]))
        return loss

    def on_train_epoch_end(self) -> None:
        # torchmetrics sums the states of every process in compute(): the value is
        # already global, identical on all ranks.
        self.log("train_loss", self.train_loss.compute(), prog_bar=True, sync_dist=False)
        self.train_loss.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if "aerial" not in batch:  # every sample of the batch was unreadable and skipped
            return
        out = self(batch)
        loss = self.compute_loss(out, batch["labels"])
        self.val_loss.update(loss.detach(), weight=len(batch["aerial"]))
        self.val_confusion.update(out.logits.argmax(1), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        # compute() gathers the metric states of all processes (loss sums and weights,
        # confusion matrices) and adds them up, so under DDP the values are those of the
        # whole validation set, each patch counted once (the datamodule's validation
        # sampler repeats none).
        cm = self.val_confusion.compute()
        val_loss = self.val_loss.compute()
        self.val_loss.reset()
        self.val_confusion.reset()
        if not torch.isfinite(val_loss):
            # The weights diverged without a non-finite training loss (e.g. the last
            # step's update overflowed): stop before this epoch's checkpoints are saved.
            raise NonFiniteLossError(
                f"validation loss is {val_loss.item()} at epoch {self.current_epoch}: the "
                "weights diverged; lower lr or enable gradient_clip_val "
                "(the checkpoints written so far are kept)"
            )
        self.log("val_loss", val_loss, prog_bar=True, sync_dist=False)
        self.log("val_miou", miou_from_confusion(cm).float(), prog_bar=True, sync_dist=False)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        if "aerial" not in batch:  # every sample of the batch was unreadable and skipped
            return {"patch_id": [], "probabilities": None}
        probs = self.predict_probabilities(batch, tta=self.predict_tta)
        return {"patch_id": batch["patch_id"], "probabilities": probs}

    def predict_probabilities(self, batch: dict[str, Any], tta: bool = False) -> Tensor:
        """Softmax of the U-Net logits (B, K, H, W), optionally averaged over flips/rot90."""
        if not tta:
            return self(batch).logits.float().softmax(1)
        from flair2.inference.tta import tta_probabilities

        return tta_probabilities(self, batch)

    # ------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        params = [p for p in self.parameters() if p.requires_grad]
        if cfg.optimizer == "adamw":
            optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                params, lr=cfg.lr, weight_decay=cfg.weight_decay
            )
        else:
            optimizer = torch.optim.SGD(
                params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        if cfg.scheduler == "none":
            return optimizer
        if cfg.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=0.5
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": scheduler,
                    "monitor": "val_loss",
                    "interval": "epoch",
                },
            }
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, total // max(1, cfg.num_epochs))
        warmup = min(total - 1, cfg.warmup_epochs * per_epoch)

        def cosine_with_warmup(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
