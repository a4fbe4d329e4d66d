"""Figures: training curves, patch views, quick-look previews, scoring plots.

Training curves (:mod:`~flair2.viz.curves`), one patch's layers and Sentinel-2
series (:mod:`~flair2.viz.patch`), RGB previews (:mod:`~flair2.viz.preview`), the
confusion matrix and per-class IoU (:mod:`~flair2.viz.plots`). Each module is
imported where it is needed, so importing this package loads no matplotlib.
"""
