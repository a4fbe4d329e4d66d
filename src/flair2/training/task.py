"""The LightningModule: losses, optimisers, schedulers and metrics while training.

The task holds the network as ``self.model`` and the two weighted losses as
``self.criterion`` (``criterion.0`` for the U-Net, ``criterion.1`` for the U-TAE
auxiliary head; see :mod:`flair2.training.losses`), so its checkpoint keys line up with the
reference's. With ``ema_decay`` it also keeps an exponential moving average of the
weights (:mod:`flair2.training.ema`), validates with it and saves it as the checkpoint's weights.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from flair2.config import Config, config_from_dict
from flair2.errors import Flair2Error
from flair2.evaluation.metrics import miou
from flair2.models import SegmentationOutput, compile_unet, set_channels_last
from flair2.models.aerial_init import is_aerial_parameter
from flair2.models.memory import checkpoint_decoder_blocks
from flair2.settings import LossSettings, OptimizerSettings
from flair2.training.ema import WeightAverage
from flair2.training.losses import WeightedCrossEntropy as WeightedCrossEntropy  # re-exported
from flair2.training.losses import build_criterion
from flair2.training.model import build_model
from flair2.training.optim import configure

log = logging.getLogger(__name__)


class NonFiniteLossError(Flair2Error, FloatingPointError):
    """The loss became NaN or infinite: training stops before the weights are spoiled.

    A :class:`~flair2.errors.Flair2Error`, so the command line prints it as one
    line; a ``FloatingPointError`` for code that catches numerical failures.
    """


def stored_settings(raw: Mapping[str, Any]) -> tuple[dict[str, Any] | None, int | None]:
    """The configuration and patch size a flair2 checkpoint was trained with.

    :class:`SegmentationTask` stores both as its hyper-parameters; a reference
    checkpoint stores neither.

    Args:
        raw: the checkpoint's contents (see :func:`flair2.models.checkpoints.read_checkpoint_file`).

    Returns:
        (the configuration as plain data, the patch size), each None when absent.
    """
    hparams = raw.get("hyper_parameters")
    if not isinstance(hparams, Mapping):
        return None, None
    stored = hparams.get("config")
    size = hparams.get("patch_size")
    return (
        dict(stored) if isinstance(stored, Mapping) else None,
        size if isinstance(size, int) else None,
    )


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
        # Training's setting; prediction sets its own (predict, ensembles, detect).
        set_channels_last(self.model, cfg.channels_last_for("fit"))
        unet = getattr(self.model, "arch_vhr", None)
        if isinstance(unet, torch.nn.Module):  # the U-TAE-only model has no U-Net
            checkpoint_decoder_blocks(unet, cfg.checkpoint_decoder_blocks)
        if cfg.compile_model:
            compile_unet(self.model)
        self.criterion = build_criterion(LossSettings.from_config(cfg))
        #: Shadow weights (``ema_decay``); not a module, so not in ``state_dict()``.
        self.weight_average = (
            WeightAverage(cfg.ema_decay, warmup=cfg.ema_warmup)
            if cfg.ema_decay is not None
            else None
        )
        self._ema_step = 0  # trainer.global_step at the last update
        self._ema_swapped = False  # whether self.model holds the averaged weights now
        # NaN must reach the mean (torchmetrics would drop it with a warning), so that
        # a diverged validation is seen and stops the run before it is checkpointed.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.val_confusion = MulticlassConfusionMatrix(cfg.num_classes)
        #: Average predictions over flips and 90° rotations (set by the predict command).
        self.predict_tta = False
        #: Whether predict_step must return probabilities (PROB files are written);
        #: otherwise, without TTA, it returns logits (set by the predict command).
        self.predict_probabilities_needed = False

    # ------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], with_aux: bool = True) -> SegmentationOutput:
        """Run the model on a normalised batch (see :func:`flair2.data.batch.normalize_batch`).

        ``with_aux=False`` skips U-T&T's auxiliary head (``aux_logits`` is None).
        """
        return self.model(
            batch["aerial"],
            batch.get("sen2"),
            batch.get("positions"),
            batch.get("pad_mask"),
            batch.get("metadata") if self.cfg.aerial_metadata else None,
            with_aux=with_aux,
        )

    def compute_loss(self, out: SegmentationOutput, labels: Tensor) -> Tensor:
        """``w_utae · loss_sat(aux) + w_unet · loss_aerial(logits)``, as the reference weighs them.

        Late fusion adds the aerial branch's own loss, ``w_unet · loss_aerial(aerial_logits)``:
        its ``logits`` are the combination. Each branch's loss is cross-entropy by default
        (the reference), or the sum of terms ``loss_weights`` names
        (:func:`flair2.training.losses.build_criterion`).
        """
        w_utae, w_unet = self.cfg.w_unet_utae
        loss = w_unet * self.criterion[0](out.logits, labels)
        if out.aux_logits is not None and w_utae > 0:
            loss = loss + w_utae * self.criterion[1](out.aux_logits, labels)
        if out.aerial_logits is not None and w_unet > 0:
            loss = loss + w_unet * self.criterion[0](out.aerial_logits, labels)
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
        """The batch's loss (a scalar), stopping every process if it is not finite."""
        out = self(batch)
        loss = self.compute_loss(out, batch["labels"])
        self._check_finite_loss(loss, batch, batch_idx)
        self.train_loss.update(loss.detach())
        self.log("train_loss_step", loss.detach(), prog_bar=False, batch_size=len(batch["aerial"]))
        return loss

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean training loss over all processes as ``train_loss``."""
        # torchmetrics sums the states of every process in compute(): the value is
        # already global, identical on all ranks.
        self.log("train_loss", self.train_loss.compute(), prog_bar=True, sync_dist=False)
        self.train_loss.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the batch's loss and confusion matrix (skipped when nothing was readable)."""
        if "aerial" not in batch:  # every sample of the batch was unreadable and skipped
            return
        out = self(batch)
        loss = self.compute_loss(out, batch["labels"])
        self.val_loss.update(loss.detach(), weight=len(batch["aerial"]))
        self.val_confusion.update(out.logits.argmax(1), batch["labels"])

    def on_validation_epoch_end(self) -> None:
        """Swap the trained weights back, log ``val_loss`` and ``val_miou``; stop on divergence."""
        # The metrics were accumulated by validation_step: training resumes from here.
        self._restore_trained_weights()
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
        self.log("val_miou", float(miou(cm.cpu().numpy())), prog_bar=True, sync_dist=False)

    # ------------------------------------------------------------------
    # Exponential moving average of the weights (ema_decay). Kept by the task, not by
    # a callback: every Trainer that fits the task gets it (flair2's, a notebook's),
    # and the checkpoint layout does not depend on how the Trainer was built.

    def on_train_start(self) -> None:
        """Start the weight average from the current weights (unless a resumed run loaded it)."""
        if self.weight_average is None:
            return
        if not self.weight_average.started:  # a resumed run loaded it already
            self.weight_average.start(self.model)
        self._ema_step = self.trainer.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Update the weight average once per optimiser step."""
        # global_step counts optimiser steps: one update per step taken.
        if self.weight_average is not None and self.trainer.global_step > self._ema_step:
            self.weight_average.update(self.model)
            self._ema_step = self.trainer.global_step

    def on_validation_epoch_start(self) -> None:
        """Swap the averaged weights in, so validation and checkpoint choice judge them."""
        # Validate with the averaged weights: val_loss, val_miou, early stopping and
        # the best checkpoint all judge them.
        wa = self.weight_average
        if wa is not None and wa.started and not self._ema_swapped:
            wa.swap(self.model)
            self._ema_swapped = True

    def _restore_trained_weights(self) -> None:
        if self._ema_swapped and self.weight_average is not None:
            self.weight_average.swap(self.model)
            self._ema_swapped = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the averaged weights as ``state_dict``, the trained ones under ``ema``.

        ``flair2 predict`` (and any reader of ``state_dict``) thus uses the average
        without knowing about it; a resumed run takes the trained weights back.
        """
        wa = self.weight_average
        if wa is None or not wa.started:
            return
        trained = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        averaged = {f"model.{k}": v for k, v in wa.state_dict().items()}
        if self._ema_swapped:
            trained, averaged = averaged, trained
        checkpoint["state_dict"].update(averaged)
        checkpoint["ema"] = {
            "decay": wa.decay,
            "warmup": wa.warmup,
            "updates": wa.updates,
            "trained_state_dict": trained,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """When resuming a fit, load the trained weights and take the average back.

        Loaded for anything else (``validate``, ``load_from_checkpoint``), the
        checkpoint's ``state_dict`` (the average) is what the model gets.
        """
        saved = checkpoint.get("ema")
        trainer = self._trainer
        if not isinstance(saved, dict) or trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return
        state = checkpoint["state_dict"]
        averaged = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        state.update(saved["trained_state_dict"])
        if self.weight_average is not None:
            self.weight_average.load(averaged, saved.get("updates", 0))
        else:
            log.info("ema_decay is off: resuming the trained weights, the saved average is dropped")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        """``{"patch_id", "scores"}``: scores (B, K, H, W) whose argmax is the prediction.

        Probabilities with TTA or when ``predict_probabilities_needed``; otherwise the
        logits: softmax keeps their order, so the argmax is the same without a pass
        over every score.
        """
        if "aerial" not in batch:  # every sample of the batch was unreadable and skipped
            return {"patch_id": [], "scores": None}
        if self.predict_tta or self.predict_probabilities_needed:
            scores = self.predict_probabilities(batch, tta=self.predict_tta)
        else:
            scores = self(batch, with_aux=False).logits
        return {"patch_id": batch["patch_id"], "scores": scores}

    def predict_probabilities(self, batch: dict[str, Any], tta: bool = False) -> Tensor:
        """Softmax of the U-Net logits (B, K, H, W), optionally averaged over flips/rot90."""
        if not tta:
            return self(batch, with_aux=False).logits.float().softmax(1)
        from flair2.models.tta import tta_probabilities

        return tta_probabilities(lambda view: self(view, with_aux=False), batch)

    # ------------------------------------------------------------------
    def aerial_parameters(self) -> list[torch.nn.Parameter]:
        """The aerial network's trainable parameters (``arch_vhr``, ``mtd_mlp``)."""
        return [
            p
            for name, p in self.model.named_parameters()
            if p.requires_grad and is_aerial_parameter(name)
        ]

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Hold the aerial network still for the first ``freeze_aerial_epochs`` epochs.

        Its gradients are dropped (None), so the optimiser leaves those weights,
        their momentum and their weight decay alone; BatchNorm statistics still follow
        the data.
        """
        if self.current_epoch < self.cfg.freeze_aerial_epochs:
            for param in self.aerial_parameters():
                param.grad = None

    def configure_optimizers(self) -> Any:
        """The optimiser and learning-rate schedule (:func:`flair2.training.optim.configure`).

        With ``aerial_lr_scale`` ≠ 1 the aerial network's parameters form a group of
        their own, at ``aerial_lr_scale · lr`` (the schedule scales both groups alike).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] | None = None
        if self.cfg.aerial_lr_scale != 1.0 and self.cfg.arch != "utae":
            aerial = {id(p) for p in self.aerial_parameters()}
            groups = [
                {"params": [p for p in params if id(p) not in aerial]},
                {
                    "params": [p for p in params if id(p) in aerial],
                    "lr": self.cfg.lr * self.cfg.aerial_lr_scale,
                },
            ]
        total = None
        if self.cfg.scheduler == "cosine":
            total = int(self.trainer.estimated_stepping_batches)
        return configure(
            groups if groups is not None else params, OptimizerSettings.from_config(self.cfg), total
        )
