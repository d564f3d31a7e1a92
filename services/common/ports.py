"""Storage protocols every service's use cases share (implemented in services.common adapters)."""

from __future__ import annotations

from typing import Protocol


class RequestLog(Protocol):
    """AIP-155 request ids already answered."""

    async def seen(self, request_id: str) -> str | None:
        """Resource name answered for this request id before, if any."""
        ...

    async def remember(self, request_id: str, resource_name: str) -> None: ...


class Inbox(Protocol):
    """Event ids already processed by this service."""

    async def claim(self, event_id: str, ce_type: str) -> bool:
        """True if the event is new (and is now recorded in the current transaction)."""
        ...
