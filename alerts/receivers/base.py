"""What every receiver shares: rendering, splitting a storm into messages, HTTP, vendor codes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import aiohttp

from alerts.messages import FULL_UP_TO, Rendered, line_bytes, render
from alerts.notify import DeliveryError
from alerts.routing import Receiver, redact

UNLIMITED = 10**9  # a receiver whose message is not limited (e-mail) or not a list (SMS)


class ReceiverTarget:
    """An outbox target for one receiver of the routing file."""

    # Vendor answer codes (as text) that retrying cannot fix, and those that mean "slow down".
    PERMANENT: ClassVar[frozenset[str]] = frozenset()
    RATE_LIMIT: ClassVar[frozenset[str]] = frozenset()
    MAX_BYTES: ClassVar[int] = 20_000

    def __init__(self, conf: Receiver, *, clock: Callable[[], float] = time.time) -> None:
        self.conf = conf
        self.spec = conf.spec
        self.name = conf.name
        self._clock = clock
        s = conf.spec
        self.permanent = (
            frozenset(s.permanent_codes) if s.permanent_codes is not None else (self.PERMANENT)
        )
        self.rate_limit = (
            frozenset(s.rate_limit_codes) if s.rate_limit_codes is not None else (self.RATE_LIMIT)
        )
        self.max_bytes = s.max_bytes or self.MAX_BYTES
        self._timeout = aiohttp.ClientTimeout(total=s.timeout / 1000)
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ content
    def rendered(self, payload: Mapping[str, Any]) -> Rendered:
        """The payload as this receiver's people read it."""
        return render(payload, self.spec.language, mentions=self.mention_tags(payload))

    def mention_tags(self, payload: Mapping[str, Any]) -> list[str]:
        """The text that @-mentions people in the message body (none by default)."""
        return []

    def body_size(self, payload: Mapping[str, Any]) -> int:
        """Bytes of the part of the message the vendor limits."""
        return len(self.rendered(payload).markdown.encode())

    def split(
        self, base: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]]
    ) -> list[list[Any]]:
        """Alerts cut into as few messages as fit the vendor's size limit (at least one each).

        Sizes are estimated per alert line and each message is rendered once to confirm, so a
        storm of thousands costs a few renders per message rather than one per alert.
        """
        alerts = list(alerts)
        if self.max_bytes >= UNLIMITED:
            return [alerts]
        if self.body_size({**base, "alerts": alerts}) <= self.max_bytes:
            return [alerts]
        lang = self.spec.language
        # The header, title and closing link: a message of many, less its lines.
        sample = alerts[: FULL_UP_TO + 1]
        head = self.body_size({**base, "alerts": sample}) - sum(line_bytes(a, lang) for a in sample)
        chunks: list[list[Any]] = []
        cur: list[Any] = []
        est = head
        for a in alerts:
            size = line_bytes(a, lang)
            if cur and est + size > self.max_bytes:
                chunks.append(cur)
                cur, est = [], head
            cur.append(a)
            est += size
        if cur:
            chunks.append(cur)
        # Confirm each estimate; one that was short moves alerts on to the next message.
        out: list[list[Any]] = []
        while chunks:
            c = chunks.pop(0)
            spill: list[Any] = []
            while len(c) > 1 and self.body_size({**base, "alerts": c}) > self.max_bytes:
                spill.insert(0, c.pop())
            out.append(c)
            if spill and chunks:
                chunks[0] = spill + chunks[0]
            elif spill:
                chunks.append(spill)
        return out

    @staticmethod
    def mobiles(payload: Mapping[str, Any]) -> list[str]:
        """Phone numbers to @-mention or text (the receiver's own and the person on duty's)."""
        return [str(m) for m in payload.get("mobiles") or [] if m]

    # ------------------------------------------------------------------ transport
    async def post_json(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST JSON; the vendor's JSON answer. Transport failures raise DeliveryError."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        return await self._request(url, data, headers)

    async def _request(self, url: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        where = redact(url)
        try:
            async with self._session.post(url, data=data, headers=headers) as resp:
                text = await resp.text()
                if resp.status == 429:
                    wait = _retry_after(resp.headers.get("Retry-After"))
                    raise DeliveryError(
                        f"{where}: HTTP 429 rate limited",
                        retry_after_s=wait or self.spec.rate_limit_wait / 1000,
                    )
                if resp.status >= 500:
                    raise DeliveryError(f"{where}: HTTP {resp.status}")
                try:
                    answer = json.loads(text) if text.strip() else {}
                except ValueError:
                    answer = None
                if resp.status >= 400 or not isinstance(answer, dict):
                    raise DeliveryError(
                        f"{where}: HTTP {resp.status} {text[:200]}".strip(),
                        permanent=resp.status >= 400,
                    )
                return answer
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            # aiohttp may quote the whole URL, token or key included: keep only the redacted one.
            why = str(e).replace(url, where)
            raise DeliveryError(f"{where}: {type(e).__name__}: {why}".rstrip(": ")) from e

    def check(self, code: object, message: object) -> None:
        """Turn a vendor's answer code into success or the right kind of DeliveryError."""
        c = str(code)
        if c in ("0", "OK"):
            return
        text = f"{self.spec.type} {redact(self.conf.url)}: code {c}: {message}"
        if c in self.rate_limit:
            raise DeliveryError(
                text + " (rate limit)", retry_after_s=self.spec.rate_limit_wait / 1000
            )
        raise DeliveryError(text, permanent=c in self.permanent)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def send(self, event: dict[str, Any], body: str) -> None:  # pragma: no cover
        """Deliver one payload (each receiver implements it)."""
        raise NotImplementedError


def _retry_after(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None
