"""The reference Letta -> Matrix bridge: every Letta agent gets a Matrix user, a private room and a place
in a "Letta Agents" space, kept in step as agents come, change name and go.

    async with Bridge(BridgeConfig.from_sources(env=os.environ)) as bridge:
        report = await bridge.sync_once()

or from a shell: `python -m letta_matrix_reference.bridge sync --once` (see `bridge.cli`)."""

from letta_matrix_reference.bridge.config import BridgeConfig
from letta_matrix_reference.bridge.errors import (
    AgentUserConflict,
    ApiError,
    BridgeError,
    ConfigurationError,
    FatalError,
    ProtocolError,
    RegistrationError,
    RetriesExhausted,
    StoreError,
)
from letta_matrix_reference.bridge.sync import AgentFailure, Bridge, SyncReport

__all__ = [
    "AgentFailure",
    "AgentUserConflict",
    "ApiError",
    "Bridge",
    "BridgeConfig",
    "BridgeError",
    "ConfigurationError",
    "FatalError",
    "ProtocolError",
    "RegistrationError",
    "RetriesExhausted",
    "StoreError",
    "SyncReport",
]
