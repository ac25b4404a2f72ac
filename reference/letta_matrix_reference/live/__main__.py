"""``python -m letta_matrix_reference.live synapse|letta COMMAND ...``: the same as
``python -m letta_matrix_reference.live.synapse COMMAND ...``."""

from __future__ import annotations

import sys

from letta_matrix_reference.live.cli import main

if __name__ == "__main__":
    sys.exit(main())
