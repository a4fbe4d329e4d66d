"""flair2's U-T&T against the reference implementation's, same inputs, same run.

The reference code is not shipped: point ``--reference-src`` at a checkout of
IGNF/FLAIR-2 (the folder holding ``src/backbones/txt_model.py`` and
``flair-2-config.yml``). Both models are built from the reference configuration
with random weights (the cost of a step does not depend on them) and timed on the
same random batch (512 px, 12 dates, 40 px crops, metadata), alternately, median
of ``--repeats``:

- ``forward_s_*``: one inference forward at batch 1 (``torch.inference_mode``);
- ``train_step_s_*``: forward, both cross-entropies, backward and an SGD update
  at batch ``--batch`` (4).

flair2 runs in fp32 (``ours``) and, with ``--variants``, with ``channels_last``
and bf16 autocast. Prints one JSON line with the times and the ratios
``reference / ours`` (above 1: flair2 is faster).

With ``--pipeline``, the whole pipelines instead, on a dataset of the official
layout (``--data``, or a 512 px toy one without the border and all-cloudy crops
that the reference's loader fails on): the training Dataset, prediction end to
end (read, forward, write) and training steps of each code, each measurement
in a process of its own (``reference_pipeline.py``) so that its peak memory is
its own, alternately for ``--rounds`` rounds (``--only`` some of them; ``--compile``
adds flair2's prediction with ``compile_model``). Prints the median rates, the peak
memories and the ratios ``*_speedup`` (flair2 / reference rate) and
``*_memory_ratio`` (flair2 / reference peak).

    python bench/versus_reference.py --reference-src ~/FLAIR-2
    python bench/versus_reference.py --reference-src ~/FLAIR-2 --device cuda --variants
    python bench/versus_reference.py --reference-src ~/FLAIR-2 --pipeline
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from common import dataset_root, peak_rss_mb, synchronize

from flair2.config import config_from_dict
from flair2.models import dummy_inputs
from flair2.training.model import build_model


def reference_model(src: Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The reference's U-T&T (``TimeTexture_flair``) from its source checkout."""
    sys.path.insert(0, str(src))
    import segmentation_models_pytorch as smp

    create = smp.create_model
    # The reference asks smp for ImageNet weights; nothing may be downloaded here.
    smp.create_model = lambda **kw: create(**{**kw, "encoder_weights": None})
    from src.backbones.txt_model import TimeTexture_flair  # type: ignore[import-not-found]

    cfg = yaml.safe_load((src / "flair-2-config.yml").read_text())
    model = TimeTexture_flair(cfg).to(device)
    decoder_forward = model.arch_vhr.decoder.forward
    # smp >= 0.5 calls the decoder with a list; the reference was written for 0.4.
    model.arch_vhr.decoder.forward = lambda *features: decoder_forward(list(features))
    return model, cfg


def median_time(call: Callable[[], Any], device: torch.device, repeats: int) -> float:
    call()  # warm-up: kernel selection, allocator
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child(args: list[str]) -> dict[str, Any]:
    """The JSON line of one ``reference_pipeline.py`` run."""
    script = Path(__file__).with_name("reference_pipeline.py")
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"reference_pipeline.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Median rate and peak memory of each side's pipelines, and their ratios."""
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset_root(
            args.data,
            tmp,
            512,
            num_domains=1,
            zones_per_domain=2,
            patches_per_zone=6,
            num_test_domains=1,
            test_patches_per_zone=12,
            edge_cases=False,
        )
        settings = {
            "dataset": ["--samples", "200"],
            "predict": ["--batch", "1", "--workers", str(args.workers)],
            "train": ["--batch", str(args.batch), "--steps", "3"],
        }
        whats = args.only or list(settings)
        # (what, label, side, extra arguments)
        plan = [
            (what, side, side, settings[what]) for what in whats for side in ("reference", "flair2")
        ]
        if args.compile and "predict" in whats:
            compiled = [*settings["predict"], "--compile"]
            plan.append(("predict", "flair2_compiled", "flair2", compiled))
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        common = ["--data", str(root), "--reference-src", str(args.reference_src)]
        for _ in range(args.rounds):
            for what, label, side, extra in plan:
                runs.setdefault((what, label), []).append(child([side, what, *common, *extra]))
    figures: dict[str, Any] = {"rounds": args.rounds, "workers": args.workers, "batch": args.batch}
    for what, label, _, _ in plan:
        key = "samples_per_s" if what != "predict" else "patches_per_s"
        done = runs[(what, label)]
        figures[f"{what}_{key}_{label}"] = statistics.median(r[key] for r in done)
        figures[f"{what}_peak_rss_mb_{label}"] = statistics.median(r["peak_rss_mb"] for r in done)
        figures[f"{what}_{key}_{label}_runs"] = [r[key] for r in done]
        if label != "reference":
            suffix = label.removeprefix("flair2")
            figures[f"{what}_speedup{suffix}"] = (
                figures[f"{what}_{key}_{label}"] / figures[f"{what}_{key}_reference"]
            )
            figures[f"{what}_memory_ratio{suffix}"] = (
                figures[f"{what}_peak_rss_mb_{label}"] / figures[f"{what}_peak_rss_mb_reference"]
            )
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference-src", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="also channels_last and bf16")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pipeline", action="store_true", help="the whole pipelines instead")
    parser.add_argument("--data", type=Path, default=None, help="dataset root (--pipeline)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations (--pipeline)")
    parser.add_argument("--workers", type=int, default=2, help="prediction DataLoader workers")
    parser.add_argument(
        "--only", nargs="+", choices=("dataset", "predict", "train"), help="(--pipeline)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also flair2's prediction with compile_model"
    )
    args = parser.parse_args()
    if args.pipeline:
        print(json.dumps(pipeline(args)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ref, ref_cfg = reference_model(args.reference_src, device)
    ours = build_model(config_from_dict({"encoder_weights": None}), 512).to(device)
    labels = torch.randint(0, 13, (args.batch, 512, 512), device=device)
    big = {
        k: v.to(device) if v is not None else None
        for k, v in dummy_inputs(512, batch_size=args.batch).items()
    }
    one = {k: v[:1] if v is not None else None for k, v in big.items()}
    ref_opt = torch.optim.SGD(ref.parameters(), lr=1e-6)
    our_opt = torch.optim.SGD(ours.parameters(), lr=1e-6)

    def ref_forward() -> Any:
        return ref(ref_cfg, one["aerial"], one["sen2"], one["positions"], one["metadata"])

    def ref_step() -> None:
        aux, logits = ref(ref_cfg, big["aerial"], big["sen2"], big["positions"], big["metadata"])
        loss = F.cross_entropy(aux, labels) + F.cross_entropy(logits, labels)
        loss.backward()
        ref_opt.step()
        ref_opt.zero_grad(set_to_none=True)

    def our_forward(model: torch.nn.Module, bf16: bool, cl: bool) -> Callable[[], Any]:
        aerial = one["aerial"].contiguous(memory_format=torch.channels_last) if cl else None

        def call() -> Any:
            with autocast(bf16):
                return model(
                    aerial if cl else one["aerial"],
                    one["sen2"],
                    one["positions"],
                    one["pad_mask"],
                    one["metadata"],
                )

        return call

    def our_step(model: torch.nn.Module, bf16: bool, cl: bool) -> Callable[[], None]:
        aerial = big["aerial"].contiguous(memory_format=torch.channels_last) if cl else None

        def call() -> None:
            with autocast(bf16):
                out = model(
                    aerial if cl else big["aerial"],
                    big["sen2"],
                    big["positions"],
                    big["pad_mask"],
                    big["metadata"],
                )
                loss = F.cross_entropy(out.aux_logits, labels) + F.cross_entropy(out.logits, labels)
            loss.backward()
            our_opt.step()
            our_opt.zero_grad(set_to_none=True)

        return call

    def autocast(bf16: bool) -> Any:
        if not bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    variants = [("ours", False, False)]
    if args.variants:
        variants += [("ours_cl", False, True), ("ours_bf16", True, False)]
        variants += [("ours_bf16_cl", True, True)]
    figures: dict[str, Any] = {"device": str(device), "batch": args.batch}
    if device.type == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(device)
    ref.eval()
    with torch.inference_mode():
        figures["forward_s_reference"] = median_time(ref_forward, device, args.repeats)
    ref.train()
    figures["train_step_s_reference"] = median_time(ref_step, device, args.repeats)
    for name, bf16, cl in variants:
        if cl:
            ours.arch_vhr.to(memory_format=torch.channels_last)
        ours.eval()
        with torch.inference_mode():
            figures[f"forward_s_{name}"] = median_time(
                our_forward(ours, bf16, cl), device, args.repeats
            )
        ours.train()
        figures[f"train_step_s_{name}"] = median_time(
            our_step(ours, bf16, cl), device, args.repeats
        )
        for kind in ("forward", "train_step"):
            figures[f"{kind}_speedup_{name}"] = round(
                figures[f"{kind}_s_reference"] / figures[f"{kind}_s_{name}"], 3
            )
    figures = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
