"""Channel settings of the runtime's roles."""
from __future__ import annotations

from edgepsl.wire import ChannelConfig

# Servers (coordinator, helpers) hear from many peers at once: a deep inbox keeps every arrived job visible.
SERVER_INBOX = 1024


LIVENESS = 3  # heartbeats a peer may miss before it is declared lost


def channel_config(float16: bool = False, inbox: int = 4, peer_timeout_s: float | None = None) -> ChannelConfig:
    """The channel tuning the runtime uses (defaults of the wire, a deeper inbox for servers); with peer_timeout_s,
    a peer silent that long is reported lost (the coordinator's membership)."""
    if peer_timeout_s is None:
        return ChannelConfig(inbox=inbox, hwm=max(4, inbox), float16=float16)
    return ChannelConfig(inbox=inbox, hwm=max(4, inbox), float16=float16, heartbeat_s=peer_timeout_s / LIVENESS,
                         liveness=LIVENESS)
