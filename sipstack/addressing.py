"""Where a message came from or goes to: a transport, a socket address, and for
connection-oriented transports the connection (the RFC 5626 *flow*) it travels on."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Transport(enum.Enum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    @property
    def reliable(self) -> bool:
        return self is not Transport.UDP

    @property
    def via_name(self) -> str:
        """The transport token of a Via header (RFC 3261 §20.42, RFC 7118 §5.2)."""
        return self.value.upper()

    @classmethod
    def from_via(cls, token: str) -> Transport:
        try:
            return cls(token.lower())
        except ValueError:
            raise ValueError(f"unknown transport {token!r}") from None


@dataclass(frozen=True)
class Address:
    transport: Transport
    host: str
    port: int
    #: Identifier of the connection a message arrived on (TCP, TLS, WebSocket): replies and
    #: requests to a client behind that connection go back over it (RFC 5626 flows).
    flow: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport.reliable

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.value}:{host}:{self.port}" + (f"#{self.flow}" if self.flow else "")
