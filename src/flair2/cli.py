"""The ``flair2`` command: each subcommand parses, loads the config and calls one function.

Errors a user can fix (:class:`~flair2.errors.Flair2Error`, and the operating
system's: permissions, a full disk, a file in the way) are printed as one line
naming the file or key, with exit status 2; Ctrl-C exits 130 with "interrupted".
Nothing imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from flair2 import __version__
from flair2.config import Config, load_config
from flair2.errors import Flair2Error, os_error_message

log = logging.getLogger("flair2")

Handler = Callable[[argparse.Namespace], int]


def user_message(exc: BaseException) -> str:
    """The user-facing text of an error, without a worker process's traceback.

    A DataLoader re-raises a worker's exception with the worker traceback folded
    into the message; its last line holds the original message.
    """
    text = str(exc).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(show_path=False, rich_tracebacks=False, markup=False)],
        force=True,
    )
    # A deprecation inside Lightning itself, printed once per run: not the user's concern.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--config", "-c", required=required, help="YAML configuration file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted for nested keys, value parsed as YAML); repeatable",
    )


def _add_trust_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="also load checkpoint files that carry Python objects (unpickling runs any code "
        "they hold): only for files from a source you trust; refused by default",
    )


# ---------------------------------------------------------------------------
# Commands


def cmd_toy(args: argparse.Namespace) -> int:
    """``flair2 toy``: generate a synthetic dataset in the FLAIR #2 layout and print its summary."""
    from flair2.synthetic import generate_toy_dataset

    summary = generate_toy_dataset(
        Path(args.out),
        patch_size=args.patch_size,
        seed=args.seed,
        num_domains=args.domains,
        zones_per_domain=args.zones,
        patches_per_zone=args.patches,
        num_test_domains=args.test_domains,
        num_dates=args.dates,
        test_patches_per_zone=args.test_patches,
        sat_patch_size=args.sat_patch_size,
        overwrite=args.overwrite,
        progress=True,
    )
    print(summary.format())
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    """``flair2 check-data``: check the dataset's files; exit status 1 if any check fails."""
    from flair2.tools.check import check_dataset

    report = check_dataset(_load(args), quick=args.quick)
    print(report.format())
    return 0 if report.ok else 1


def cmd_stats(args: argparse.Namespace) -> int:
    """``flair2 stats``: write the training split's statistics and print the config snippet."""
    from flair2.io import check_output_outside
    from flair2.tools.stats import compute_stats, snippet_text, stats_format, write_stats

    cfg = _load(args)
    out = Path(args.out) if args.out else cfg.output_dir() / "dataset_stats.yaml"
    stats_format(out)  # a bad file name fails before the dataset is read
    check_output_outside(out, cfg.data.inputs(), name="--out")
    stats = compute_stats(cfg, max_patches=args.max_patches, progress=True)
    write_stats(stats, out)
    log.info("statistics of %d training patches: %s", stats.num_patches, out)
    print(snippet_text(stats), end="")
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    """``flair2 model-info``: print the configured model's parameter count and FLOPs."""
    from flair2.tools.model_info import describe_model

    cfg = _load(args)
    patch_size = args.patch_size or cfg.patch_size or 512
    info = describe_model(cfg, patch_size=patch_size, num_dates=args.dates)
    for key, value in info.items():
        print(f"{key}: {value}")
    return 0


def cmd_export_weights(args: argparse.Namespace) -> int:
    """``flair2 export-weights``: model.safetensors + config.yaml + README.md model card."""
    from flair2.tools.export import export_weights

    cfg = _load(args) if args.config else None
    out = export_weights(args.checkpoint, args.out, cfg, metrics=args.metrics)
    print(f"exported to {out}: use it as --checkpoint {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``flair2 train``: train (or resume) and log the best checkpoint."""
    from flair2.training import train

    result = train(_load(args), resume=args.resume)
    log.info("best checkpoint: %s (val_loss %s)", result.best_checkpoint, result.best_val_loss)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``flair2 predict``: write one prediction GeoTIFF per test patch (a model or an ensemble)."""
    from flair2.prediction.patches import predict

    predict(
        _load(args),
        args.checkpoint,
        args.out,
        values=args.values,
        probabilities=args.probabilities,
        tta=args.tta,
        overwrite=args.overwrite,
        weights=args.weights,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``flair2 evaluate``: score a folder of predictions against the test masks."""
    from flair2.pipeline import evaluate

    evaluate(_load(args), args.predictions, args.out, values=args.values)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``flair2 run``: train, predict with the best checkpoint, then evaluate."""
    from flair2.pipeline import run

    run(_load(args))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``flair2 demo``: the whole pipeline on a toy dataset for U-T&T, the U-Net and the U-TAE."""
    from flair2.pipeline import demo

    demo(Path(args.out), epochs=args.epochs)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``flair2 show``: draw one patch's layers (and a prediction, if given) to a PNG."""
    from flair2.viz.patch import render_patch_figure

    path = render_patch_figure(
        _load(args), args.patch, Path(args.out), prediction_dir=args.prediction
    )
    log.info("figure: %s", path)
    return 0


def cmd_plot_logs(args: argparse.Namespace) -> int:
    """``flair2 plot-logs``: draw the loss and mIoU curves of a run from its CSV logs."""
    from flair2.viz.curves import plot_training_curves

    path = plot_training_curves(Path(args.dir), Path(args.out) if args.out else None)
    log.info("training curves: %s", path)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """``flair2 preview``: write an RGB PNG/JPEG of a 5-band aerial patch."""
    from flair2.viz.preview import write_preview

    path = write_preview(
        Path(args.image), Path(args.out), stretch=args.stretch, world_file=args.world_file
    )
    log.info("preview: %s", path)
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    """``flair2 detect``: predict a whole aerial raster with sliding windows into one GeoTIFF."""
    from flair2.detection.runner import detect
    from flair2.detection.settings import load_detect_settings

    result = detect(load_detect_settings(args.config, args.overrides))
    log.info("output: %s", result.output)
    return 0


COMMANDS: dict[str, tuple[Handler, str]] = {
    "show": (cmd_show, "draw one patch: RGB, false colour, elevation, labels, Sentinel-2, NDVI"),
    "plot-logs": (cmd_plot_logs, "draw loss and mIoU curves from a run's CSV logs"),
    "preview": (cmd_preview, "write an RGB PNG/JPEG of a 5-band aerial patch"),
    "train": (cmd_train, "train the configured model (best + last checkpoints, logs)"),
    "predict": (cmd_predict, "write one georeferenced PRED_<id>.tif per test patch"),
    "detect": (cmd_detect, "predict a whole aerial raster (sliding windows) into one GeoTIFF"),
    "evaluate": (cmd_evaluate, "score predictions against the test masks (mIoU, report)"),
    "run": (cmd_run, "train, predict with the best checkpoint, evaluate"),
    "demo": (cmd_demo, "toy dataset → train U-T&T, U-Net and U-TAE → predict → evaluate"),
    "toy": (cmd_toy, "generate a synthetic dataset in the official FLAIR #2 layout"),
    "check-data": (cmd_check_data, "check a dataset's files and print a summary"),
    "stats": (cmd_stats, "class frequencies and weights, band means/stds of the training split"),
    "model-info": (cmd_model_info, "parameter count and FLOPs of the configured model"),
    "export-weights": (cmd_export_weights, "model.safetensors + config.yaml + model card"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``flair2``: global options and one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="flair2",
        description="Land-cover segmentation from aerial imagery and Sentinel-2 (FLAIR #2).",
    )
    parser.add_argument("--version", action="version", version=f"flair2 {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help=COMMANDS["train"][1])
    _add_config_args(p)
    p.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue from a checkpoint of this run ('last' = <out>/checkpoints/last.ckpt)",
    )
    _add_trust_arg(p)

    p = sub.add_parser("predict", help=COMMANDS["predict"][1])
    _add_config_args(p)
    p.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        help="flair2 or reference checkpoint; repeat it for an ensemble (mean probabilities)",
    )
    p.add_argument(
        "--weights",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="ensemble weights, one per --checkpoint in order (normalised; default equal)",
    )
    p.add_argument("--out", default=None, help="default <out_folder>/<out_model_name>/predictions")
    p.add_argument(
        "--values",
        choices=("model", "labels"),
        default="model",
        help="model indices 0–12 (default) or label nomenclature 1–13",
    )
    p.add_argument("--probabilities", action="store_true", help="also write PROB_<id>.tif")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average over flips and 90° rotations (default: the config's tta)",
    )
    p.add_argument("--overwrite", action="store_true", help="re-predict existing files")
    _add_trust_arg(p)

    p = sub.add_parser("evaluate", help=COMMANDS["evaluate"][1])
    _add_config_args(p)
    p.add_argument("--predictions", required=True, help="folder of PRED_<id>.tif files")
    p.add_argument("--out", default=None, help="default <out_folder>/<out_model_name>/metrics")
    p.add_argument(
        "--values",
        choices=("auto", "model", "labels"),
        default="auto",
        help="how to read predictions without a FLAIR2_VALUES tag: model indices 0–12, labels "
        "1–13, or auto (default: decided from their values and the masks, or refused)",
    )

    p = sub.add_parser("run", help=COMMANDS["run"][1])
    _add_config_args(p)

    p = sub.add_parser("demo", help=COMMANDS["demo"][1])
    p.add_argument("--out", default="demo", help="demo folder (dataset, runs, reports)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model")

    p = sub.add_parser("show", help=COMMANDS["show"][1])
    _add_config_args(p)
    p.add_argument("--patch", required=True, help="patch name or id, e.g. IMG_077413")
    p.add_argument("--prediction", default=None, help="folder of PRED_<id>.tif to compare")
    p.add_argument("--out", required=True, help="output PNG")

    p = sub.add_parser("plot-logs", help=COMMANDS["plot-logs"][1])
    p.add_argument("dir", help="a run's output or logs folder")
    p.add_argument("--out", default=None, help="default <DIR>/training_curves.png")

    p = sub.add_parser("preview", help=COMMANDS["preview"][1])
    p.add_argument("image", help="aerial GeoTIFF (IMG_<id>.tif)")
    p.add_argument("--out", required=True, help="output .png, .jpg or .jpeg")
    p.add_argument("--stretch", choices=("percentile", "none"), default="percentile")
    p.add_argument("--world-file", action="store_true", help="also write a world file")

    p = sub.add_parser("toy", help=COMMANDS["toy"][1])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--patch-size", type=int, default=512, help="aerial patch size (px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domains", type=int, default=4, help="number of train domains")
    p.add_argument("--zones", type=int, default=2, help="zones per domain")
    p.add_argument("--patches", type=int, default=8, help="patches per zone")
    p.add_argument("--test-domains", type=int, default=2, help="number of test domains")
    p.add_argument("--test-patches", type=int, default=5, help="patches per test zone")
    p.add_argument("--dates", type=int, default=20, help="Sentinel-2 dates per zone (about)")
    p.add_argument(
        "--sat-patch-size", type=int, default=40, help="Sentinel-2 crop the areas must hold"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")

    p = sub.add_parser("check-data", help=COMMANDS["check-data"][1])
    _add_config_args(p)
    p.add_argument("--quick", action="store_true", help="read only part of each aerial file")

    p = sub.add_parser("stats", help=COMMANDS["stats"][1])
    _add_config_args(p)
    p.add_argument("--out", default=None, help=".yaml or .json (default <out>/dataset_stats.yaml)")
    p.add_argument(
        "--max-patches", type=int, default=None, metavar="N", help="read N patches, spread out"
    )

    p = sub.add_parser("model-info", help=COMMANDS["model-info"][1])
    _add_config_args(p)
    p.add_argument("--patch-size", type=int, default=None, help="aerial size (default 512)")
    p.add_argument("--dates", type=int, default=12, help="Sentinel-2 dates (default 12)")

    p = sub.add_parser("export-weights", help=COMMANDS["export-weights"][1])
    p.add_argument("--checkpoint", required=True, type=Path, help="a training checkpoint")
    p.add_argument("--out", required=True, type=Path, help="the folder to write")
    _add_config_args(p, required=False)  # default: the configuration the checkpoint stores
    p.add_argument("--metrics", type=Path, default=None, help="default: the run's metrics.json")
    _add_trust_arg(p)

    p = sub.add_parser("detect", help=COMMANDS["detect"][1])
    _add_config_args(p)
    _add_trust_arg(p)
    return parser


def _error(command: str, message: str) -> int:
    """Print one error line (once in a distributed run) and return exit status 2."""
    from flair2.ranks import process_rank

    # Every process of a distributed run stops on the same error: say it once.
    if process_rank() == 0:
        print(f"flair2 {command}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flair2`` console command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    handler = COMMANDS[args.command][0]
    try:
        with contextlib.ExitStack() as stack:
            if getattr(args, "trust_checkpoint", False):
                from flair2.models.checkpoint_files import trusted_checkpoints

                stack.enter_context(trusted_checkpoints())
            return handler(args)
    except Flair2Error as exc:
        # One line a user can act on; the traceback only with FLAIR2_DEBUG=1.
        if os.environ.get("FLAIR2_DEBUG"):
            raise
        return _error(args.command, user_message(exc))
    except OSError as exc:
        # Permissions, a full disk, a file where a folder is expected: the
        # environment, not a bug, so one line too.
        if os.environ.get("FLAIR2_DEBUG"):
            raise
        return _error(
            args.command, user_message(exc) if exc.errno is None else os_error_message(exc)
        )
    except KeyboardInterrupt:
        print(f"flair2 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
