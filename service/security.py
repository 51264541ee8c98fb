"""Access control, off by default: API keys (Bearer header or LibreTranslate's api_key) and per-key rate limits."""
from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from typing import Optional

from fastapi import HTTPException, Request


class RateLimiter:
    """At most `per_minute` requests per key in any sliding 60-second window."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.recent: dict[str, deque] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            if len(self.recent) > 10_000:  # forget idle clients, so memory stays bounded
                self.recent = {k: w for k, w in self.recent.items() if w and now - w[-1] < 60.0}
            window = self.recent.setdefault(key, deque())
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= self.per_minute:
                return False
            window.append(now)
            return True


class AccessGuard:
    def __init__(self, api_keys: list[str], rate_limit_per_minute: Optional[int]):
        self.api_keys = [key.encode() for key in api_keys]
        self.limiter = RateLimiter(rate_limit_per_minute) if rate_limit_per_minute else None

    def _valid(self, key: Optional[str]) -> bool:
        # Compare against every key in constant time, so timing reveals nothing about them.
        return key is not None and any(hmac.compare_digest(key.encode(), k) for k in self.api_keys)

    def check(self, request: Request, body_key: Optional[str] = None, missing_status: int = 403) -> None:
        """Raise 403 for a wrong key and `missing_status` for none (when keys are configured: LibreTranslate's
        routes answer 400 there, as LibreTranslate does), and 429 over the rate limit."""
        key = presented_key(request, body_key)
        if self.api_keys and not key:
            raise HTTPException(missing_status, "an API key is required (Authorization: Bearer KEY or api_key); "
                                "ask the server's operator for one")
        if self.api_keys and not self._valid(key):
            raise HTTPException(403, "invalid API key")
        if self.limiter:
            # with keys configured, `key` is set and valid here (checked above)
            client = key if self.api_keys and key else (request.client.host if request.client else "unknown")
            if not self.limiter.allow(client):
                raise HTTPException(429, "rate limit exceeded; slow down", headers={"Retry-After": "60"})


def presented_key(request: Request, body_key: Optional[str] = None) -> Optional[str]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    if body_key is not None and not isinstance(body_key, str):  # e.g. a JSON list: never a key
        return None
    return body_key or request.query_params.get("api_key")
