"""End-to-end jobs: train → predict → evaluate (``flair2 run``) and the toy demo.

``run`` is what the reference's ``main.py`` does, with its defect 15 fixed: it
predicts with the best checkpoint by validation loss, not the last epoch's weights.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from flair2.config import Config, load_config
from flair2.errors import ConfigError
from flair2.evaluation.values import ValuesOption
from flair2.io import check_output_outside
from flair2.ranks import process_rank
from flair2.synthetic import CLASS_GROUPS, group_scores

log = logging.getLogger(__name__)


def evaluate(
    cfg: Config,
    predictions: str | Path,
    out_dir: str | Path | None = None,
    *,
    values: ValuesOption = "auto",
) -> dict[str, Any]:
    """Score a folder of predictions against the config's test masks and write the report.

    Args:
        cfg: the configuration (``data.path_labels_test``).
        predictions: folder of ``PRED_<id>.tif`` files.
        out_dir: report folder (default ``<out_folder>/<out_model_name>/metrics``).
        values: how to read files without a ``FLAIR2_VALUES`` tag (``auto``, ``model``
            or ``labels``; see :mod:`flair2.evaluation.values`).

    Returns:
        The metrics (also written to ``metrics.json``).
    """
    from flair2.evaluation.evaluate import evaluate_predictions, format_table

    if not cfg.data.path_labels_test:
        raise ConfigError(
            "config key 'data.path_labels_test' is empty: test masks are needed to score"
        )
    out = Path(out_dir) if out_dir else cfg.output_dir() / "metrics"
    check_output_outside(out, {"data.path_labels_test": cfg.data.path_labels_test}, name="--out")
    metrics = evaluate_predictions(
        predictions,
        cfg.data.path_labels_test,
        out,
        num_classes=cfg.num_classes,
        example_patches=3,
        aerial_root=cfg.data.path_aerial_test or None,
        values=values,
    )
    print(format_table(metrics))
    log.info("report: %s", out / "report.md")
    return metrics


def run(cfg: Config) -> dict[str, Any] | None:
    """Train, predict the test set with the best checkpoint, and score it if labels exist."""
    from flair2.prediction.patches import predict
    from flair2.training.fit import train

    result = train(cfg)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None:
        raise ConfigError("training produced no checkpoint (no validation ran?)")
    predictions = result.out_dir / "predictions"
    # A new model: files of an earlier run in the same folder are stale.
    predict(cfg, checkpoint, predictions, overwrite=True)
    if process_rank() != 0:
        return None  # scoring reads the files every process wrote: once is enough
    if not cfg.data.path_labels_test:
        log.info("no test labels configured (data.path_labels_test): skipping evaluation")
        return None
    return evaluate(cfg, predictions, result.out_dir / "metrics")


#: The demo's models: run name → config keys. U-T&T with late fusion (the best of the
#: three fusions in bench/fusion.py on the toy data, seed 2022), then each source alone.
DEMO_MODELS: dict[str, dict[str, Any]] = {
    "utt": {"arch": "utt", "fusion": "late"},
    "unet": {"arch": "unet"},
    "utae": {"arch": "utae"},
}


def demo(out: Path, epochs: int | None = None) -> dict[str, dict[str, Any]]:
    """Generate the toy dataset, train U-T&T (late fusion), the U-Net and the U-TAE, score them.

    64 px toy patches (48 train, 16 validation, 20 test) and the tiny model
    (:data:`~flair2.synthetic.TINY_MODEL`), ``toy.yml``'s training: the configuration
    of ``bench/fusion.py`` (seed 2022).

    Args:
        out: demo folder: ``data/`` (the toy dataset) and ``runs/<model>/``.
        epochs: training epochs per model (default: the toy config's).

    Returns:
        Metrics per model name.
    """
    from flair2.synthetic import DEMO_PATCH_SIZE, TINY_MODEL, generate_toy_dataset, toy_config

    data_root = out / "data"
    if not (data_root / "flair_aerial_train").is_dir():
        log.info("generating the toy dataset in %s", data_root)
        generate_toy_dataset(data_root, patch_size=DEMO_PATCH_SIZE, seed=0)
    results: dict[str, dict[str, Any]] = {}
    for name, keys in DEMO_MODELS.items():
        # The demo owns its folder: a second `make demo` starts its runs afresh.
        shutil.rmtree(out / "runs" / name, ignore_errors=True)
        extra: dict[str, Any] = {**TINY_MODEL, **keys}
        if epochs is not None:
            extra["num_epochs"] = epochs
        cfg = toy_config(data_root, out / "runs", name, **extra)
        metrics = run(cfg)
        if metrics is not None:
            results[name] = metrics
    _print_comparison(results)
    for name in results:
        print(f"report ({name}): {out / 'runs' / name / 'metrics' / 'report.md'}")
    return results


def _print_comparison(results: dict[str, dict[str, Any]]) -> None:
    if not results:
        return
    names = list(results)
    classes = list(next(iter(results.values()))["per_class"])
    lines = ["", "class".ljust(36) + "".join(n.rjust(10) for n in names)]
    for cls in classes:
        row = [results[n]["per_class"][cls]["iou"] for n in names]
        lines.append(
            cls.ljust(36) + "".join(("-" if v is None else f"{v:.3f}").rjust(10) for v in row)
        )
    lines.append("mIoU".ljust(36) + "".join(f"{results[n]['miou']:.3f}".rjust(10) for n in names))
    # On the toy data herbaceous / agricultural / plowed land look alike from the air:
    # only the Sentinel-2 seasonal profile separates them (synthetic.CLASS_GROUPS).
    groups = {
        n: group_scores({c: v["iou"] for c, v in results[n]["per_class"].items()}) for n in names
    }
    for group in CLASS_GROUPS:
        lines.append(
            f"mIoU, {group}".ljust(36) + "".join(f"{groups[n][group]:.3f}".rjust(10) for n in names)
        )
    print("\n".join(lines))


def load_and_run(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any] | None:
    """``python main.py --config_file=CFG``: load a config file and :func:`run` it."""
    return run(load_config(path, overrides))
