"""``theory-images``: the same command as ``theory`` (``pytest_theory.cli``), kept by its old name.

theory-images base | lock | build | push | pin | check | prune | list [REF ...|--all] [--registry PATH]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from pytest_theory.cli import main as theory

    return theory(argv, prog="theory-images")


if __name__ == "__main__":
    sys.exit(main())
