"""``python -m letta_matrix_reference.live.letta016 COMMAND ...``: the same as
``python -m letta_matrix_reference.live letta016 COMMAND ...`` (see
:mod:`letta_matrix_reference.live.cli`)."""

from __future__ import annotations

import sys

from letta_matrix_reference.live.cli import main

if __name__ == "__main__":
    sys.exit(main(["letta016", *sys.argv[1:]]))
