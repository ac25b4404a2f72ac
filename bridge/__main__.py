"""`python -m bridge sync ...`: see `bridge.cli`."""

from bridge.cli import main

raise SystemExit(main())
