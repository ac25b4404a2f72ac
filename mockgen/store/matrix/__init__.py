"""The homeserver's state, kept the way Synapse keeps it, with no HTTP in sight.

Split the way Synapse splits its code: `errcodes` (every errcode the contract documents), `model` (users,
devices, UIA sessions, rooms, events), `rules` (pure checks: ids, room versions, content, power levels,
membership), `ids` (the seeded ids and the clock), `accounts` (users, devices, tokens, UIA, login, profile,
the admin API), `rooms` (creation, membership, state and message events, txn ids, aliases, spaces), and
`store.MatrixStore`, the facade that holds the lock. The HTTP layer maps `MatrixError` to the response body.
"""

from mockgen.store.matrix.model import Device, Event, Room, User
from mockgen.store.matrix.rules import PRESETS, Preset
from mockgen.store.matrix.store import MatrixStore

__all__ = ["PRESETS", "Device", "Event", "MatrixStore", "Preset", "Room", "User"]
