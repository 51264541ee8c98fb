"""Slow clients: a request body must arrive within a deadline, or the request is answered 408.

Without this, a client that sends its headers and then trickles the body a byte at a time holds a
connection and a request task for as long as it likes (uvicorn has no body timeout of its own).
"""
from __future__ import annotations

import asyncio

from fastapi import HTTPException
from fastapi.responses import JSONResponse


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"request body not received within {seconds:g} s", headers={"Connection": "close"})


class BodyReadTimeout:
    """ASGI middleware: every `receive()` until the body is complete shares one deadline. Routes that read
    the body get BodyTimeout like any HTTPException (answered in their API's shape); a middleware reading
    it further out (the size limit) gets it here, answered 408 directly."""

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        body_done, started = False, False

        async def timed_receive():
            nonlocal body_done
            if body_done:  # after the body: the disconnect watch, which may wait as long as decoding takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.seconds) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeout as err:
            if started:
                raise
            await JSONResponse({"detail": err.detail}, status_code=408, headers=err.headers)(scope, receive, send)
