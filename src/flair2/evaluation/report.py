"""Text renderings of a scoring result: a console table and a Markdown report.

Both read the JSON-shaped metrics dict that :func:`flair2.evaluation.evaluate_predictions`
returns (undefined scores are ``None``), so a saved ``metrics.json`` can be
rendered again without re-scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_MISSING = "n/a"


def _num(value: float | None, digits: int = 4) -> str:
    return _MISSING if value is None else f"{value:.{digits}f}"


def _share(count: int, total: int) -> str:
    return f"{100.0 * count / total:.2f}" if total else _MISSING


def _class_rows(metrics: Mapping[str, Any], marker: str = "*") -> list[list[str]]:
    """One row per class: name, IoU, precision, recall, F1, support, support %.

    Classes left out of the mIoU get ``marker`` after their name.
    """
    excluded = set(metrics["class_names"]) - set(metrics.get("miou_classes", []))
    total = int(metrics.get("num_pixels", 0))
    rows = []
    for name, scores in metrics["per_class"].items():
        label = f"{name} {marker}" if name in excluded else name
        rows.append(
            [
                label,
                _num(scores["iou"]),
                _num(scores["precision"]),
                _num(scores["recall"]),
                _num(scores["f1"]),
                str(scores["support"]),
                _share(scores["support"], total),
            ]
        )
    return rows


def _domain_rows(metrics: Mapping[str, Any]) -> list[list[str]]:
    return [
        [domain, str(d["num_patches"]), _num(d["miou"]), _num(d["overall_accuracy"])]
        for domain, d in sorted(metrics.get("per_domain", {}).items())
    ]


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, others right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def summary_line(metrics: Mapping[str, Any]) -> str:
    """``mIoU 0.5594 | overall accuracy 0.7312 | 16050 patches``."""
    return (
        f"mIoU {_num(metrics['miou'])} | overall accuracy {_num(metrics['overall_accuracy'])} "
        f"| {metrics['num_patches']} patches"
    )


def format_table(metrics: Mapping[str, Any]) -> str:
    """Plain-text summary, per-class and per-domain tables for the console.

    The text has no markup (no square brackets), so ``rich`` prints it verbatim.

    Args:
        metrics: the dict returned by ``evaluate_predictions`` (or read from metrics.json).
    """
    header = ["class", "IoU", "precision", "recall", "F1", "support", "%"]
    parts = [summary_line(metrics), "", _text_table(header, _class_rows(metrics))]
    excluded = set(metrics["class_names"]) - set(metrics.get("miou_classes", []))
    if excluded:
        parts.append("* not in the mIoU")
    domains = _domain_rows(metrics)
    if domains:
        parts += ["", _text_table(["domain", "patches", "mIoU", "OA"], domains)]
    return "\n".join(parts)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _example_lines(examples: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """The "worst and best patches" section: a table, then each patch's figure."""
    entries = [(kind, e) for kind in ("worst", "best") for e in examples.get(kind, [])]
    if not entries:
        return []
    lines = [
        "## Worst and best patches",
        "",
        "Patches ranked by their own mIoU (classes absent from a patch's mask and "
        "prediction are skipped).",
        "",
        _md_table(
            ["rank", "patch", "domain", "mIoU"],
            [
                [f"{kind} {rank}", f"[IMG_{e['id']}]({e['figure']})", e["domain"], _num(e["miou"])]
                for kind in ("worst", "best")
                for rank, e in enumerate(examples.get(kind, []), start=1)
            ],
        ),
        "",
    ]
    for kind, e in entries:
        lines += [f"![{kind}: IMG_{e['id']}, mIoU {_num(e['miou'])}]({e['figure']})", ""]
    return lines


def render_markdown(metrics: Mapping[str, Any], images: Mapping[str, str] | None = None) -> str:
    """The Markdown report: summary, per-class and per-domain tables, figures.

    Args:
        metrics: the dict returned by ``evaluate_predictions``.
        images: caption → image path relative to the report (embedded in order).

    Returns:
        The Markdown text.
    """
    names = list(metrics["class_names"])
    kept = list(metrics.get("miou_classes", names))
    excluded = [n for n in names if n not in kept]
    lines = [
        "# Evaluation report",
        "",
        f"**{summary_line(metrics)}** ({metrics.get('num_pixels', 0)} pixels)",
        "",
    ]
    if metrics.get("predictions_dir"):
        lines.append(f"- predictions: `{metrics['predictions_dir']}`")
    if metrics.get("labels_root"):
        lines.append(f"- labels: `{metrics['labels_root']}`")
    lines += [
        f"- mIoU: mean IoU over {len(kept)} classes"
        + (f" (not {', '.join(repr(n) for n in excluded)})" if excluded else "")
        + "; a class absent from both truth and prediction is skipped, a class predicted"
        " but absent from the truth counts with IoU 0.",
        "- overall accuracy: correct pixels / all pixels, every class included.",
        "",
        "## Per class",
        "",
        _md_table(
            ["class", "IoU", "precision", "recall", "F1", "support (px)", "support %"],
            _class_rows(metrics, marker="\\*"),
        ),
        "",
    ]
    if excluded:
        lines += ["\\* not in the mIoU.", ""]
    domains = _domain_rows(metrics)
    if domains:
        lines += [
            "## Per domain",
            "",
            _md_table(["domain", "patches", "mIoU", "overall accuracy"], domains),
            "",
        ]
    if images:
        lines += ["## Figures", ""]
        for caption, rel in images.items():
            lines += [f"![{caption}]({rel})", ""]
    lines += _example_lines(metrics.get("example_patches") or {})
    return "\n".join(lines).rstrip() + "\n"
