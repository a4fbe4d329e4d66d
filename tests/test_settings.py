"""flair2.settings: the small typed settings each component takes, built from a Config."""

from __future__ import annotations

from flair2.config import config_from_dict
from flair2.detection.settings import DetectSettings
from flair2.settings import (
    LossSettings,
    OptimizerSettings,
    SampleSettings,
    SentinelSettings,
    SplitSettings,
    TrainerSettings,
)


def test_settings_take_the_config_keys() -> None:
    cfg = config_from_dict(
        {
            "accelerator": "cpu",
            "gpus_per_node": 3,
            "num_nodes": 2,
            "strategy": "ddp",
            "ref_date": "07-01",
            "sat_mean": [1.0] * 10,
            "sat_std": [2.0] * 10,
            "sen2_scaling": "standardize",
            "val_domains": ["D001_2020"],
            "optimizer": "adamw",
            "lr": 0.01,
            "loss_weights": {"ce": 1.0, "dice": 0.5},
        }
    )
    trainer = TrainerSettings.from_config(cfg)
    assert (trainer.accelerator, trainer.devices, trainer.num_nodes) == ("cpu", 3, 2)
    assert trainer.strategy == "ddp" and trainer.precision == "32"
    sentinel = SentinelSettings.from_config(cfg)
    assert (sentinel.ref_year, sentinel.ref_month, sentinel.ref_day) == (2021, 7, 1)
    assert sentinel.sat_mean == (1.0,) * 10 and sentinel.sen2_scaling == "standardize"
    assert SampleSettings.from_config(cfg).sentinel == sentinel
    split = SplitSettings.from_config(cfg)
    assert split.val_domains == ("D001_2020",) and split.train_domains is None
    assert split.data is cfg.data
    loss = LossSettings.from_config(cfg)
    assert loss.aerial_weights[-1] == 0.0 and loss.satellite_weights[-2] == 0.0  # other; plowed
    assert loss.loss_weights == {"ce": 1.0, "dice": 0.5}
    optim = OptimizerSettings.from_config(cfg)
    assert (optim.optimizer, optim.lr, optim.num_epochs) == ("adamw", 0.01, 100)


def test_detection_and_training_share_one_trainer_type() -> None:
    settings = DetectSettings(
        aerial="a.tif", checkpoint="c.ckpt", output="o.tif", devices=2, strategy="ddp"
    )
    trainer = settings.trainer()
    assert isinstance(trainer, TrainerSettings)
    assert (trainer.accelerator, trainer.devices, trainer.strategy) == ("auto", 2, "ddp")
    # Detection draws its own progress bar (windows/s): Lightning's stays off.
    assert trainer.enable_progress_bar is False
