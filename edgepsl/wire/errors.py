"""Errors of the wire layer: invalid messages, key files, channel setup and delivery failures."""
from __future__ import annotations

from edgepsl.errors import EdgePSLError


class WireError(EdgePSLError):
    """Base class of every error raised by edgepsl.wire."""


class ProtocolError(WireError):
    """A received message breaks the protocol; `code` is the ErrorCode sent back in the ERROR reply."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = int(code)
        self.reason = reason
        self.job: object = None  # the refused message's JobId when its header could be read


class MessageError(WireError):
    """A message built locally cannot be encoded: unsupported dtype, bad field value, too large."""


class KeyStoreError(WireError):
    """A key file or key directory is missing, malformed, or would be overwritten."""


class ChannelConfigError(WireError):
    """A channel cannot be created as requested: bad endpoint, missing keys, insecure without opt-out."""


class PeerUnreachableError(WireError):
    """A message cannot be delivered: the peer is unknown, disconnected, or not reading (queue full)."""


class PeerBackpressureError(PeerUnreachableError):
    """A send was dropped because the peer's queue stayed full for ChannelConfig.send_timeout_s: it is not reading."""


class ChannelClosedError(WireError):
    """The channel was closed, or its I/O thread stopped, so it can no longer send or receive."""
