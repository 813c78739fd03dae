"""Channel settings of the runtime's roles."""
from __future__ import annotations

from edgepsl.wire import ChannelConfig

# Servers (coordinator, helpers) hear from many peers at once: a deep inbox keeps every arrived job visible.
SERVER_INBOX = 1024


def channel_config(float16: bool = False, inbox: int = 4) -> ChannelConfig:
    """The channel tuning the runtime uses (defaults of the wire, a deeper inbox for servers)."""
    return ChannelConfig(inbox=inbox, hwm=max(4, inbox), float16=float16)
