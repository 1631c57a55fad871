"""The live page socket: rendered partials pushed by the worker, for users with a role.

Every push names the least role that may see it (`quantum.realtime.push_html`); the socket
sends a user only what their role allows. Operator pushes need an operator who passed MFA
in this session, as operator pages do; without it the socket treats them as a trader.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from quantum.realtime import LIVE_GROUP
from quantum.roles import mfa_verified, role_rank, user_role


def socket_role(scope: dict[str, Any]) -> str | None:
    """The role this socket acts with (None: refused)."""
    user = scope.get("user")
    role = user_role(user)
    if role == "operator" and not mfa_verified(
        SimpleNamespace(session=scope["session"], user=user)
    ):
        return "trader"
    return role


class LiveConsumer(AsyncWebsocketConsumer):
    role: str | None = None

    async def connect(self) -> None:
        self.role = await database_sync_to_async(socket_role)(self.scope)
        if self.role is None:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The page only listens; htmx-ext-ws may send form data, which is ignored.
        return

    async def push_html(self, event: dict[str, Any]) -> None:
        if role_rank(self.role) < role_rank(event.get("role", "viewer")):
            return
        await self.send(text_data=event["html"])
