"""DingTalk custom robot (自定义机器人): signed (加签) or keyword mode, markdown, @mobiles.

Signed mode, as DingTalk documents it: ``sign = urlencode(base64(HMAC-SHA256(key=secret,
msg=timestamp + "\\n" + secret)))`` with ``timestamp`` in milliseconds, both added to the URL
query; DingTalk refuses a timestamp more than an hour off. Keyword mode: every message must
contain one of the robot's keywords, so the configured ``keyword`` is put in the title.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

from alerts.receivers.base import ReceiverTarget


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value (already URL-encoded)."""
    msg = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingTalkReceiver(ReceiverTarget):
    """Posts a markdown message to a DingTalk group robot."""

    # 310000: signature, keyword or IP check failed; 300001/300005: no such token.
    PERMANENT = frozenset({"310000", "300001", "300005", "400013"})
    # 130101: more than 20 messages a minute; 410100: sent too fast, throttled.
    RATE_LIMIT = frozenset({"130101", "410100"})
    MAX_BYTES = 18_000

    def mention_tags(self, payload: Mapping[str, Any]) -> list[str]:
        """DingTalk notifies only mobiles that also appear as ``@<mobile>`` in the text."""
        return [f"@{m}" for m in self.mobiles(payload)]

    def url(self) -> str:
        """The webhook URL, signed when a secret is set."""
        url = self.conf.url
        if self.conf.secret:
            ts = int(self._clock() * 1000)
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}timestamp={ts}&sign={dingtalk_sign(self.conf.secret, ts)}"
        return url

    def message(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body."""
        r = self.rendered(payload)
        title, text = r.title, r.markdown
        kw = self.spec.keyword
        if kw and kw not in text:
            title, text = f"{kw} {title}", f"{kw}\n\n{text}"
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atMobiles": self.mobiles(payload), "isAtAll": self.spec.at_all},
        }

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Post and read ``errcode``."""
        answer = await self.post_json(self.url(), self.message(event))
        self.check(answer.get("errcode", 0), answer.get("errmsg", ""))
