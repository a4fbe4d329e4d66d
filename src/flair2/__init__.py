"""flair2: land-cover segmentation from aerial imagery and Sentinel-2 time series (FLAIR #2)."""

__version__ = "0.1.0"
