"""``python -m ratekeeper`` and the ``ratekeeper`` console script."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the ``ratekeeper`` command line (``ratekeeper serve --help``)."""
    from .server._cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
