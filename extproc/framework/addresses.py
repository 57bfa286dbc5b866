"""Listen addresses as the CLI takes them: ``HOST:PORT``, ``:PORT`` or ``unix:PATH``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Address:
    host: str = ""  # "" means all interfaces
    port: int = 0
    unix_path: str | None = None

    @classmethod
    def parse(cls, text: str) -> Address:
        """Raises ``ValueError`` with a readable reason."""
        if text.startswith("unix:"):
            path = text[len("unix:") :]
            if not path:
                raise ValueError(f"{text!r}: unix: needs a socket path")
            return cls(unix_path=path)
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r}: expected HOST:PORT, :PORT or unix:PATH")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"{text!r}: the port {port_text!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"{text!r}: the port must be between 0 and 65535")
        return cls(host=host, port=port)

    @property
    def is_unix(self) -> bool:
        return self.unix_path is not None

    @property
    def is_loopback(self) -> bool:
        """True for unix sockets and loopback hosts: only this machine can connect."""
        if self.unix_path is not None:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def bind_host(self) -> str:
        return self.host or "0.0.0.0"

    def grpc_target(self) -> str:
        """The form grpc's ``add_*_port`` and channels take."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = self.host or "[::]"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    def url_host(self) -> str:
        """A host to connect to this address from this machine."""
        if not self.host or self.host in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
