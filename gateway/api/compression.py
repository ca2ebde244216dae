"""gzip for the clients that ask for it, and nothing at all for those that do not.

Starlette's GZipMiddleware wraps every response, also when the client did not send
`Accept-Encoding: gzip` (it then inspects each response's headers to pass it through
unchanged); on a read by id that inspection costs more than the database read. Here a
request without gzip in `Accept-Encoding` goes straight to the app.
"""

from __future__ import annotations

from starlette.middleware.gzip import GZipMiddleware
from starlette.types import Receive, Scope, Send


class Gzip(GZipMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(
                name == b"accept-encoding" and b"gzip" in value for name, value in scope["headers"]):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
