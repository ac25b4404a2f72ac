"""``python -m live synapse|letta COMMAND ...`` -- the same as ``python -m live.synapse COMMAND ...``."""

from __future__ import annotations

import sys

from live.cli import main

if __name__ == "__main__":
    sys.exit(main())
