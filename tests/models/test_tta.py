"""Test-time augmentation: transforms are undone on the output, Sentinel-2 follows the aerial."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from flair2.models.tta import D4, tta_probabilities


class PixelModel(torch.nn.Module):
    """A 1×1 convolution: equivariant to every flip and rotation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(5, 13, 1)

    def forward(self, batch: dict) -> SimpleNamespace:
        return SimpleNamespace(logits=self.conv(batch["aerial"]))


def test_equivariant_model_is_unchanged_by_tta() -> None:
    model = PixelModel()
    batch = {"aerial": torch.rand(2, 5, 16, 16)}
    plain = model(batch).logits.softmax(1)
    assert torch.allclose(tta_probabilities(model, batch), plain, atol=1e-6)
    assert len(D4) == 8 and len(set(D4)) == 8


def test_position_dependent_model_is_averaged_over_the_eight_views() -> None:
    # Logits that favour class 0 in the top-left corner only: averaged over the
    # eight symmetries, every corner gets the same probability.
    def model(batch: dict) -> SimpleNamespace:
        logits = torch.zeros(1, 2, 4, 4)
        logits[0, 0, 0, 0] = 10.0
        return SimpleNamespace(logits=logits)

    probs = tta_probabilities(model, {"aerial": torch.rand(1, 5, 4, 4)})
    corners = probs[0, 0, [0, 0, 3, 3], [0, 3, 0, 3]]
    assert torch.allclose(corners, corners[0].expand(4))
    assert torch.allclose(probs.sum(1), torch.ones(1, 4, 4))


def test_sentinel_crop_is_transformed_like_the_aerial_patch() -> None:
    seen = []

    def model(batch: dict) -> SimpleNamespace:
        # Marker positions must move together in both sources.
        a = (batch["aerial"][0, 0] == 1).nonzero().tolist()
        s = (batch["sen2"][0, 0, 0] == 1).nonzero().tolist()
        seen.append((a, s))
        return SimpleNamespace(logits=torch.zeros(1, 2, 4, 4))

    aerial = torch.zeros(1, 5, 4, 4)
    sen2 = torch.zeros(1, 3, 10, 4, 4)
    aerial[0, 0, 0, 1] = 1
    sen2[0, :, :, 0, 1] = 1
    tta_probabilities(model, {"aerial": aerial, "sen2": sen2})
    assert len(seen) == 8 and all(a == s for a, s in seen)
    assert len({tuple(map(tuple, a)) for a, _ in seen}) == 8
