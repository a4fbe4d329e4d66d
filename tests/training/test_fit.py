"""train() with the fusion options: init_aerial_from, freezing, and what the checkpoint records."""

from __future__ import annotations

import torch

from flair2.models.checkpoints import map_reference_state_dict, read_checkpoint_file
from flair2.models.late import LateFusion
from flair2.prediction.members import member_config
from flair2.training import train
from flair2.training.model import build_model


def test_late_fusion_starts_from_a_unet_and_its_checkpoint_rebuilds_it(tiny_config) -> None:
    unet_cfg = tiny_config(arch="unet", num_epochs=1, out_model_name="unet")
    unet = train(unet_cfg)
    assert unet.best_checkpoint is not None
    cfg = tiny_config(
        arch="utt",
        fusion="late",
        num_epochs=1,
        out_model_name="late",
        init_aerial_from=str(unet.best_checkpoint),
        freeze_aerial_epochs=1,
        checkpoint_monitor="val_miou",
    )
    late = train(cfg)
    assert late.best_checkpoint is not None and "val_miou" in late.best_checkpoint.name
    source = map_reference_state_dict(read_checkpoint_file(unet.best_checkpoint))
    raw = read_checkpoint_file(late.best_checkpoint)
    trained = map_reference_state_dict(raw)
    # Frozen for its only epoch, the aerial network kept the U-Net's weights exactly
    # (BatchNorm statistics follow the data, so only parameters are compared)...
    model = build_model(cfg, 64)
    for name, _ in model.named_parameters():
        if name.startswith(("arch_vhr.", "mtd_mlp.")):
            assert torch.equal(trained[name], source[name]), name
    # ... while the rest trained.
    assert not torch.equal(trained["sat_weight"], model.sat_weight.detach())
    # The checkpoint records the fusion: prediction rebuilds a late-fusion model.
    member, size = member_config(tiny_config(), raw, late.best_checkpoint)
    assert (member.arch, member.fusion, size) == ("utt", "late", 64)
    assert isinstance(build_model(member, 64), LateFusion)
