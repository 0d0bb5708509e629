"""VIMH data: reader and writer (binary and pickle formats), synthesiser and its command line.

    python -m trainables.data.vimh generate --out DIR --samples N --seed S \\
        [--params note_number,note_velocity,...] [--size 32x32] [--format binary|pickle] [--force] [--quiet]

The format is documented in ``trainables.data._vimh_format`` and the sound model in
``trainables.data._vimh_synth``. This module is the public face of both and is not imported by the
package ``__init__`` (so ``python -m`` runs it without a double-import warning).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._types import DataError
from ._vimh_format import (INFO_FILE, QUANT_LEVELS, SPLIT_FILES, VimhBatch, VimhInfo, bin_centres, quantize,
                           read_vimh_batch, read_vimh_info, write_vimh_batch, write_vimh_info)
from ._vimh_synth import (DEFAULT_PARAMS, DEFAULT_VIMH_PATH, MIN_SAMPLES, SAMPLES_RULE, SYNTH_PARAMETERS, SynthParameter,
                          default_vimh_heads, ensure_default_vimh, generate_vimh, progress_bar, render, synth_info)

__all__ = [
    "DEFAULT_PARAMS", "DEFAULT_VIMH_PATH", "INFO_FILE", "QUANT_LEVELS", "SPLIT_FILES", "SYNTH_PARAMETERS",
    "SynthParameter", "VimhBatch", "VimhInfo", "bin_centres", "default_vimh_heads", "ensure_default_vimh",
    "generate_vimh", "main", "quantize", "read_vimh_batch", "read_vimh_info", "render", "synth_info",
    "write_vimh_batch", "write_vimh_info",
]


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 4 <= int(p) <= 1024 for p in parts):
        raise argparse.ArgumentTypeError(f"size must be HxW with 4 <= H, W <= 1024 (e.g. 32x32), but got {text!r}")
    return int(parts[0]), int(parts[1])


def _params(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SYNTH_PARAMETERS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"params must be distinct names from {','.join(SYNTH_PARAMETERS)}, but got {text!r}")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < MIN_SAMPLES:
        raise argparse.ArgumentTypeError(f"samples must be {SAMPLES_RULE}, but got {text!r}")
    return value


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, but got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainables.data.vimh", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="synthesise a VIMH data set into a new directory")
    generate.add_argument("--out", required=True, help="output directory (must be absent or empty)")
    generate.add_argument("--samples", type=_positive, required=True, help="number of sounds (80%% train)")
    generate.add_argument("--seed", type=_seed, required=True, help="random seed (same seed -> same bytes)")
    generate.add_argument("--params", type=_params, default=DEFAULT_PARAMS,
                          help=f"comma-separated varying parameters from {','.join(SYNTH_PARAMETERS)} "
                               f"(default {','.join(DEFAULT_PARAMS)})")
    generate.add_argument("--size", type=_size, default=(32, 32), help="image size HxW (default 32x32)")
    generate.add_argument("--format", choices=("binary", "pickle"), default="binary", dest="fmt")
    generate.add_argument("--force", action="store_true", help="write into a non-empty directory")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; exit 0 ok, 2 invalid arguments or a refused output directory
    (invalid input, as `python -m search` says it)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message; hand back its code (2, or 0 for --help)
        return int(exc.code or 0)
    try:
        out = generate_vimh(args.out, samples=args.samples, seed=args.seed, params=args.params, size=args.size,
                            fmt=args.fmt, force=args.force,
                            progress=None if args.quiet else progress_bar(sys.stderr))
    except DataError as exc:  # a directory that is not empty, or that cannot be written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.samples} samples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
