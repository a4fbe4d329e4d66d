"""Tools beside the pipeline: data checks, training-split statistics, model size.

The library behind ``flair2 check-data`` (:mod:`~flair2.tools.check`), ``flair2 stats``
(:mod:`~flair2.tools.stats`) and ``flair2 model-info`` (:mod:`~flair2.tools.model_info`).
"""
