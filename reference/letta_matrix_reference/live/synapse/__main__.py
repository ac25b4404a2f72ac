"""``python -m letta_matrix_reference.live.synapse COMMAND ...``: the same as
``python -m letta_matrix_reference.live synapse COMMAND ...`` (see :mod:`letta_matrix_reference.live.cli`)."""

from __future__ import annotations

import sys

from letta_matrix_reference.live.cli import main

if __name__ == "__main__":
    sys.exit(main(["synapse", *sys.argv[1:]]))
