"""Subcommands of ``python -m search``: each module has ``add_parser(subparsers)`` and ``run(args) -> int``."""
