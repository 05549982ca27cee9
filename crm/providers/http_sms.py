"""SMS through an HTTP gateway: one signed JSON POST per message.

Request (the contract a gateway adapter implements):

    POST <url>
    Content-Type: application/json; charset=utf-8
    X-Key-Id: <key id>
    X-Timestamp: <Unix seconds>
    X-Signature: <hex HMAC-SHA256(secret, "<timestamp>\n" + body bytes)>

    {"to": "+8613800138000", "text": "...", "ref": "outbox-42"}

HMAC per RFC 2104 with SHA-256 (RFC 6234). The timestamp is inside the signed bytes so a gateway
can refuse replays outside its window; `ref` lets it drop a retried duplicate. A 2xx answer with
`{"id": "..."}` is delivery to the gateway. 4xx means the request itself is wrong (bad number,
bad signature): permanent — except 408 and 429, which ask to come back later. 5xx, timeouts and
connection failures are transient.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx

from crm.providers import DeliveryError, OutgoingMessage

DEFAULT_TIMEOUT = 10.0
_RETRYABLE_4XX = frozenset({408, 429})


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"\n" + body, hashlib.sha256).hexdigest()


class HttpSmsProvider:
    name = "http_sms"

    def __init__(
        self,
        url: str,
        key_id: str,
        secret: str | bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"gateway URL {url!r} is not http(s)")
        self.url = url
        self.key_id = key_id
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout = timeout
        self.clock = clock
        self.transport = transport

    def request_parts(self, message: OutgoingMessage) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"to": message.recipient, "text": message.body, "ref": f"outbox-{message.id}"},
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8")  # fmt: skip
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Key-Id": self.key_id,
            "X-Timestamp": timestamp,
            "X-Signature": sign(self.secret, timestamp, body),
        }
        return body, headers

    async def send(self, message: OutgoingMessage) -> str:
        body, headers = self.request_parts(message)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                response = await client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"SMS gateway unreachable: {exc!r}", permanent=False) from exc
        if response.status_code >= 300:
            permanent = 400 <= response.status_code < 500 and response.status_code not in _RETRYABLE_4XX
            raise DeliveryError(f"SMS gateway answered {response.status_code}: {response.text[:200]}", permanent=permanent)
        # 2xx is acceptance: a missing or garbled id must not make us send the SMS a second time.
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError):
            return ""
