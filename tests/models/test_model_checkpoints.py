"""Checkpoint loading: the reference key layout, flair2's own checkpoints, clear failures."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from model_helpers import (
    build_reference_utt,
    one_thread,  # noqa: F401  (fixture)
    reference_entries,
    reference_state_dict,
    small_config,
)

from flair2.errors import CheckpointError
from flair2.models import UTT, dummy_inputs, load_checkpoint_weights, map_reference_state_dict
from flair2.models.checkpoints import guess_configuration
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reference_utt() -> UTT:
    return build_reference_utt()


def _lightning_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    # Like a Lightning 1.x file: tensors plus plain Python objects.
    torch.save(
        {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": "1.9.5",
            "state_dict": state,
            "loops": {"fit_loop": {"state_dict": {}}},
            "hyper_parameters": argparse.Namespace(lr=0.001),  # needs weights_only=False
        },
        path,
    )
    return path


def test_key_list_is_complete() -> None:
    entries = reference_entries()
    assert len(entries) == 494
    assert sum(torch.Size(shape).numel() for _, shape, _ in entries) == 27_281_785


def test_reference_layout_loads_and_runs_at_512(reference_utt: UTT, tmp_path: Path) -> None:
    state = reference_state_dict()
    path = _lightning_file(tmp_path / "reference.ckpt", state)
    loaded = load_checkpoint_weights(reference_utt, path)
    assert loaded.source == "lightning"
    assert loaded.epoch == 0
    ours = reference_utt.state_dict()
    assert torch.equal(ours["aux_head.weight"], state["model.reshape_utae_output.1.weight"])
    assert torch.equal(
        ours["arch_hr.temporal_encoder.attention_heads.Q"],
        state["model.arch_hr.temporal_encoder.attention_heads.Q"],
    )
    assert torch.equal(
        ours["arch_vhr.decoder.blocks.4.conv2.1.running_var"],
        state["model.arch_vhr.decoder.blocks.4.conv2.1.running_var"],
    )
    # One forward at the reference size: batch 1, two dates, 40 px crops.
    inputs = dummy_inputs(512, sat_size=40, num_dates=2)
    with torch.inference_mode():
        out = reference_utt(**inputs)
    assert out.logits.shape == (1, 13, 512, 512)
    assert out.aux_logits.shape == (1, 13, 512, 512)
    assert torch.isfinite(out.logits).all()
    # The aux head's output is the footprint (10×10) blown up: 52 or 51 px blocks.
    assert torch.equal(out.aux_logits[0, :, 0, 0], out.aux_logits[0, :, 51, 51])
    assert not torch.equal(out.aux_logits[0, :, 0, 0], out.aux_logits[0, :, 52, 52])


def test_corrupted_reference_checkpoint_names_the_faulty_keys(
    reference_utt: UTT, tmp_path: Path
) -> None:
    state = reference_state_dict()
    del state["model.arch_hr.temporal_encoder.attention_heads.Q"]
    state["model.fm_utae_featmap_collapsed.mlps.5.3.weight"] = torch.zeros(361, 213)
    path = _lightning_file(tmp_path / "broken.ckpt", state)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint_weights(reference_utt, path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (1): arch_hr.temporal_encoder.attention_heads.Q" in message
    assert (
        "fm_utae_featmap_collapsed.mlps.5.3.weight: checkpoint (361, 213) vs model (362, 213)"
        in message
    )
    assert "arch=utt" in message and "encoder_name=resnet34" in message
    assert "\n" not in message


def test_guess_of_the_reference_configuration() -> None:
    guess = guess_configuration(map_reference_state_dict({"state_dict": reference_state_dict()}))
    assert guess == {
        "arch": "utt",
        "encoder_name": "resnet34",
        "num_channels_aerial": 5,
        "num_classes": 13,
        "aerial_metadata": True,
        "patch_size": 512,
        "num_channels_sat": 10,
        "encoder_widths": [64, 64, 128, 128],
        "n_head": 16,
        "d_k": 4,
        "d_model": 256,
    }


def test_mapping_drops_loss_weights_and_renames_the_aux_head() -> None:
    mapped = map_reference_state_dict(
        {
            "state_dict": {
                "model.reshape_utae_output.1.weight": torch.zeros(1),
                "model.arch_vhr.encoder.conv1.weight": torch.zeros(1),
                "criterion.0.weight": torch.zeros(1),
                "ema_model.arch_vhr.encoder.conv1.weight": torch.zeros(1),
            }
        }
    )
    assert sorted(mapped) == ["arch_vhr.encoder.conv1.weight", "aux_head.weight"]


def test_own_checkpoint_and_bare_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model(small_config(), 64)
    torch.manual_seed(1)
    target = build_model(small_config(), 64)
    wrapped = {f"model.{k}": v for k, v in source.state_dict().items()}
    wrapped["criterion.1.weight"] = torch.ones(13)
    path = tmp_path / "epoch=3.ckpt"
    torch.save({"state_dict": wrapped, "epoch": 3}, path)
    assert load_checkpoint_weights(target, path).epoch == 3
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key

    torch.manual_seed(2)
    again = build_model(small_config(), 64)
    loaded = load_checkpoint_weights(again, source.state_dict())
    assert loaded.source == "state_dict" and loaded.epoch is None
    assert torch.equal(again.aux_head.weight, source.aux_head.weight)


def test_non_strict_tolerates_missing_keys_but_not_shapes() -> None:
    source = build_model(small_config(aerial_metadata=False), 64).state_dict()
    target = build_model(small_config(), 64)
    loaded = load_checkpoint_weights(target, source, strict=False)
    assert loaded.missing == [k for k in target.state_dict() if k.startswith("mtd_mlp.")]
    assert loaded.unexpected == []
    with pytest.raises(CheckpointError, match="missing keys.*mtd_mlp.enc_mlp.0.weight"):
        load_checkpoint_weights(target, source)
    bad = dict(source)
    bad["aux_head.weight"] = torch.zeros(13, 15, 1, 1)
    with pytest.raises(CheckpointError, match=r"aux_head.weight: checkpoint \(13, 15, 1, 1\)"):
        load_checkpoint_weights(target, bad, strict=False)


def test_utt_checkpoint_into_the_aerial_only_model_says_what_it_is() -> None:
    source = build_model(small_config(), 64).state_dict()
    target = build_model(small_config(arch="unet"), 64)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\): arch_hr\..*arch=utt"):
        load_checkpoint_weights(target, source)


def test_in_memory_checkpoint_is_named_by_the_file_it_came_from() -> None:
    source = build_model(small_config(), 64).state_dict()
    target = build_model(small_config(arch="unet"), 64)
    with pytest.raises(CheckpointError, match=r"^checkpoint runs/utt\.ckpt does not fit"):
        load_checkpoint_weights(target, source, name="runs/utt.ckpt")
    with pytest.raises(CheckpointError, match=r"^checkpoint \(in-memory state dict\)"):
        load_checkpoint_weights(target, source)


def test_unreadable_files(tmp_path: Path) -> None:
    model = build_model(small_config(arch="unet"), 64)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_weights(model, tmp_path / "none.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint_weights(model, junk)
    listing = tmp_path / "list.pt"
    torch.save([1, 2], listing)
    with pytest.raises(CheckpointError, match="found list"):
        load_checkpoint_weights(model, listing)


def test_memory_mapped_and_legacy_files_load_the_same_weights(tmp_path: Path) -> None:
    # Files are memory-mapped when torch.save wrote them (zip); legacy files are read
    # whole. Either way the model gets the stored values, and owns them: rewriting the
    # file afterwards (as training does with last.ckpt) changes nothing.
    torch.manual_seed(0)
    source = build_model(small_config(), 64)
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    optimizer_state = {"state": {0: {"exp_avg": torch.randn(1000, 1000)}}}
    zipped = tmp_path / "zip.ckpt"
    torch.save({"state_dict": state, "optimizer_states": [optimizer_state]}, zipped)
    legacy = tmp_path / "legacy.pt"
    torch.save(source.state_dict(), legacy, _use_new_zipfile_serialization=False)
    for path in (zipped, legacy):
        torch.manual_seed(1)
        target = build_model(small_config(), 64)
        load_checkpoint_weights(target, path)
        path.write_bytes(b"rewritten")
        for key, value in source.state_dict().items():
            assert torch.equal(target.state_dict()[key], value), (path.name, key)
