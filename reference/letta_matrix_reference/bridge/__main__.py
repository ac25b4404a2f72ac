"""`python -m letta_matrix_reference.bridge sync ...`: see `letta_matrix_reference.bridge.cli`."""

from letta_matrix_reference.bridge.cli import main

raise SystemExit(main())
