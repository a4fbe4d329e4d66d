"""What ``flair2 check-data`` found: the problems, each naming its file, and a summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flair2.classes import FULL_CLASSES, MAX_LABEL


@dataclass(frozen=True)
class Problem:
    """One problem: the file at fault (None when no single file is) and what is wrong."""

    message: str
    file: Path | None = None

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" if self.file is not None else self.message


@dataclass
class SplitSummary:
    """Counts of one split (train folder or test folder)."""

    patches: int = 0
    domains: int = 0
    zones: int = 0
    #: label value (1–19) → pixel count over the split's masks.
    class_pixels: dict[int, int] = field(default_factory=dict)


@dataclass
class CheckSummary:
    """What the dataset holds: the patches discovery paired, the files that could be read."""

    splits: dict[str, SplitSummary] = field(default_factory=dict)
    #: Sentinel-2 dates per zone: min, mean, max (None when no zone could be read).
    dates_per_zone: tuple[int, float, int] | None = None
    #: aerial patch side in pixels → number of patches.
    patch_sizes: dict[int, int] = field(default_factory=dict)


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: CheckSummary = field(default_factory=CheckSummary)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def format(self, max_problems: int = 50) -> str:
        """The report as text for the terminal, at most ``max_problems`` lines per list."""
        lines = [
            f"Dataset check: {'OK' if self.ok else 'FAILED'} "
            f"({len(self.errors)} error(s), {len(self.warnings)} warning(s))"
        ]
        for title, problems in (("Errors", self.errors), ("Warnings", self.warnings)):
            if problems:
                lines.append(f"{title}:")
                lines += [f"  - {p}" for p in problems[:max_problems]]
                if len(problems) > max_problems:
                    lines.append(f"  … and {len(problems) - max_problems} more")
        lines.append("Summary:")
        s = self.summary
        for name, split in s.splits.items():
            lines.append(
                f"  {name}: {split.patches} patches, {split.domains} domains, {split.zones} zones"
            )
        if s.patch_sizes:
            sizes = ", ".join(f"{k} px × {v}" for k, v in sorted(s.patch_sizes.items()))
            lines.append(f"  aerial patch sizes: {sizes}")
        if s.dates_per_zone is not None:
            lo, mean, hi = s.dates_per_zone
            lines.append(f"  Sentinel-2 dates per zone: min {lo}, mean {mean:.1f}, max {hi}")
        names = list(s.splits)
        if any(sum(sp.class_pixels.values()) for sp in s.splits.values()):
            lines.append("  class pixels (label value, class, " + " / ".join(names) + "):")
            totals = {n: max(sum(s.splits[n].class_pixels.values()), 1) for n in names}
            for value in range(1, MAX_LABEL + 1):
                cells = [
                    f"{s.splits[n].class_pixels.get(value, 0):>13,} "
                    f"({100 * s.splits[n].class_pixels.get(value, 0) / totals[n]:5.2f} %)"
                    for n in names
                ]
                lines.append(f"    {value:>2} {FULL_CLASSES[value]:<22}" + " ".join(cells))
        return "\n".join(lines)
