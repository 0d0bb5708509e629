"""Shared by the bench scripts (imported by name: a script's own directory is on sys.path).

Result files: ``bench/results/<name>.json`` with ``machine`` (cores, device, load average at start
and end), ``raw`` (the timings) and ``ratios`` (``{figure: {value, target, better}}``; a median over
seeds also has ``interval``, see ``median_interval``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:  # a script run from anywhere still imports trainables and search
    sys.path.insert(0, str(ROOT))


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a result was measured on; ``loadavg_start`` now (add ``loadavg_end`` at the end)."""
    import torch

    return {"cores": os.cpu_count(), "device": "cpu", "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()), **extra}


def figure(value: float, target: float, better: str) -> dict[str, Any]:
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', but got {better!r}")
    return {"value": value, "target": target, "better": better}


def median_interval(values: list[float], *, level: float = 0.9) -> dict[str, float]:
    """A distribution-free confidence interval of the median of what ``values`` sample: the k-th
    smallest and k-th largest of them, for the largest k whose coverage is at least ``level`` (the
    narrowest such pair). Each independent sample lies below the median with probability 1/2, so
    the interval misses it when fewer than k of the n samples fall on one side: coverage = 1 - 2
    P(B < k), B ~ Binomial(n, 1/2) (at least that where samples tie). Where no k reaches ``level``
    (n < 5 at 0.9), k = 1: the range, with its lower coverage."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median_interval needs at least one value, but got none")

    def coverage(k: int) -> float:
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0 ** n

    k = max((k for k in range(1, (n + 1) // 2 + 1) if coverage(k) >= level), default=1)
    return {"low": ordered[k - 1], "high": ordered[n - k], "coverage": coverage(k)}


def met(ratio: dict[str, Any]) -> bool:
    return ratio["value"] >= ratio["target"] if ratio["better"] == "higher" else ratio["value"] <= ratio["target"]


def print_ratios(result: dict[str, Any]) -> None:
    """The figures against their targets, and the load average (stamps ``loadavg_end`` if missing)."""
    result["machine"].setdefault("loadavg_end", list(os.getloadavg()))
    width = max(len(name) for name in result["ratios"]) + 2
    print(f"{'figure':<{width}}{'value':>9}{'target':>9}  better")
    for name, ratio in result["ratios"].items():
        interval = ratio.get("interval")
        shown = f"  [{interval['low']:.2f}, {interval['high']:.2f}] at {interval['coverage']:.0%}" if interval else ""
        print(f"{name:<{width}}{ratio['value']:>9.3f}{ratio['target']:>9.3g}  {ratio['better']:<7}"
              f"{'' if met(ratio) else 'MISSED'}{shown}")
    m = result["machine"]
    print(f"load average (1, 5, 15 min) at start {_rounded(m['loadavg_start'])}, at end {_rounded(m['loadavg_end'])}"
          f" on {m['cores']} cores")


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 2) for v in values]


def write(result: dict[str, Any], name: str) -> Path:
    """Write ``bench/results/<name>.json`` atomically; stamps ``loadavg_end`` if missing."""
    result["machine"].setdefault("loadavg_end", list(os.getloadavg()))
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(result, indent=2) + "\n")
    scratch.replace(path)
    print(f"wrote {path}")
    return path
