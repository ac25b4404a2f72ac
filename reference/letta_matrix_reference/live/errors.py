"""The errors :mod:`letta_matrix_reference.live` raises; every one is a :class:`LiveError`."""

from __future__ import annotations


class LiveError(RuntimeError):
    """Base class for every error raised by :mod:`letta_matrix_reference.live`."""


class InstallError(LiveError):
    """Creating or populating a cached virtualenv failed."""


class ServerStartError(LiveError):
    """A server exited early or did not become ready before its deadline."""

    def __init__(self, message: str, *, port_clash: bool = False) -> None:
        super().__init__(message)
        #: True if the server exited because its port was taken (worth a retry on another port)
        self.port_clash = port_clash
