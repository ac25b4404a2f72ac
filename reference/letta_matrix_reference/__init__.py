"""The reference client and the real servers the toolkit is proven on; a distribution of its own
(`reference/pyproject.toml`), so that installing the toolkit never installs a `bridge` of ours.

- `bridge/`: the reference Letta -> Matrix bridge (`python -m letta_matrix_reference.bridge`);
- `live/`: real Synapse and Letta servers on 127.0.0.1 (`python -m letta_matrix_reference.live`)."""
