"""The ``--smoke`` flag every benchmark takes: tiny sizes and the fewest repetitions.

A smoke run checks that a benchmark starts, finishes and prints its table; its numbers mean
nothing. ``make test`` runs every benchmark this way (tests/bench/), so a benchmark that no
longer runs against the current code is found before someone needs its numbers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

HELP = (
    "tiny sizes and the fewest repetitions: checks that the benchmark runs and prints its "
    "table (make test does this); the numbers mean nothing. Sizes given explicitly still win."
)


def parse_args(
    parser: argparse.ArgumentParser,
    smoke: dict[str, Any],
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Add ``--smoke`` to ``parser`` and parse the command line.

    Parameters
    ----------
    parser
        The benchmark's parser, with its size and repetition options.
    smoke
        Defaults under ``--smoke``, by option destination (e.g. ``{"repeat": 1}``); an option
        given on the command line keeps its value.
    argv
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        The parsed arguments, with ``smoke`` set.
    """
    parser.add_argument("--smoke", action="store_true", help=HELP)
    known, _ = parser.parse_known_args(argv)
    if known.smoke:
        unknown = set(smoke) - set(vars(known))
        if unknown:
            raise ValueError(f"smoke defaults for options the parser lacks: {sorted(unknown)}")
        parser.set_defaults(**smoke)
    return parser.parse_args(argv)
