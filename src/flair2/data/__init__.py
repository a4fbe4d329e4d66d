"""Files → samples: discovery, Sentinel-2 processing, metadata encoding, datasets.

Sample contract (what a dataset item holds; the collate stacks them):

- ``aerial``: uint8 tensor (C, H, W), bands R, G, B, NIR, elevation. Kept uint8
  until it reaches the device; :func:`flair2.data.batch.to_model_inputs`
  scales it to [0, 1] there.
- ``labels``: uint8 tensor (H, W), model indices 0 to num_classes−1 (absent at test
  time when no labels are given).
- ``sen2``: float32 tensor (T, 10, S, S), the scaled Sentinel-2 crop around the patch.
- ``positions``: int64 tensor (T,), day positions relative to the reference date.
- ``metadata``: float32 tensor (45,), the encoded aerial metadata (zeros when off).
- ``patch_id``: str, the 6 digits of ``IMG_<id>.tif``; ``domain``, ``zone``: str.

After collate: the same keys with a batch axis, time padded with ``pad_value``
to the longest series, plus ``pad_mask``: bool (B, T), True on padded dates.
"""
