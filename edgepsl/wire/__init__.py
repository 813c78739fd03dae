"""The wire: ZeroMQ channels carrying [msgpack header, raw tensor frames], CURVE-authenticated by default.

Servers bind a ServerChannel (ROUTER), peers connect a PeerChannel (DEALER). Both deliver Envelope (a validated
Message and its authenticated sender) and PeerEvent (joined, lost, back, duplicate, auth_failed) from recv(). See docs/protocol.md.
"""
from edgepsl.wire.channel import ChannelConfig
from edgepsl.wire.backend import decode, encode
from edgepsl.wire.errors import (
    ChannelClosedError,
    ChannelConfigError,
    KeyStoreError,
    MessageError,
    PeerBackpressureError,
    PeerUnreachableError,
    ProtocolError,
    WireError,
)
from edgepsl.wire.inbox import Delivery, Envelope, PeerEvent
from edgepsl.wire.keys import KeyPair, KeyStore
from edgepsl.wire.liveness import EventKind
from edgepsl.wire.messages import ErrorCode, JobId, Message, MsgType, error_message
from edgepsl.wire.peer import PeerChannel
from edgepsl.wire.security import PeerSecurity, ServerSecurity
from edgepsl.wire.server import ServerChannel
from edgepsl.wire.validate import Limits

__all__ = [
    "ChannelClosedError", "ChannelConfig", "ChannelConfigError", "Delivery", "Envelope", "ErrorCode", "EventKind",
    "JobId", "KeyPair", "KeyStore", "Limits", "Message", "MessageError", "MsgType", "PeerBackpressureError", "PeerChannel",
    "PeerEvent", "PeerSecurity", "PeerUnreachableError", "ProtocolError", "ServerChannel", "ServerSecurity", "WireError",
    "decode", "encode", "error_message",
]
