"""Feishu / Lark custom bot (自定义机器人): signature verification and an interactive card.

Signature, as Feishu documents it: ``sign = base64(HMAC-SHA256(key=timestamp + "\\n" +
secret, msg=""))`` with ``timestamp`` in seconds; both go in the JSON body, and Feishu refuses a
timestamp more than an hour off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from alerts.receivers.base import ReceiverTarget


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """The ``sign`` body field."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuReceiver(ReceiverTarget):
    """Posts an interactive card to ``…/open-apis/bot/v2/hook/<token>``."""

    # 19021: signature or timestamp check failed; 19022: IP not allowed; 19024: keyword
    # missing; 9499: bad request (e.g. an unknown hook token).
    PERMANENT = frozenset({"19021", "19022", "19024", "9499"})
    RATE_LIMIT = frozenset({"11232"})  # sending too frequently
    MAX_BYTES = 25_000

    def mention_tags(self, payload: Mapping[str, Any]) -> list[str]:
        """``<at id=…>`` by Feishu id, else ``<at email=…>``."""
        tags = []
        for p in payload.get("people") or []:
            if p.get("feishu_id"):
                tags.append(f"<at id={p['feishu_id']}></at>")
            elif p.get("email"):
                tags.append(f"<at email={p['email']}></at>")
        if self.spec.at_all:
            tags.append("<at id=all></at>")
        return tags

    def message(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body: signature fields and the card."""
        r = self.rendered(payload)
        # lark_md has no headings: the title is the card's header.
        content = r.markdown.split("\n", 1)[1].strip() if "\n" in r.markdown else r.markdown
        firing = any(a.get("event") != "resolved" for a in payload.get("alerts") or [])
        body: dict[str, Any] = {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": r.title},
                    "template": "red" if firing else "green",
                },
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": content}}],
            },
        }
        if self.conf.secret:
            ts = int(self._clock())
            body = {"timestamp": str(ts), "sign": feishu_sign(self.conf.secret, ts), **body}
        return body

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Post and read ``code`` (``StatusCode`` in older answers)."""
        answer = await self.post_json(self.conf.url, self.message(event))
        code = answer.get("code", answer.get("StatusCode", 0))
        self.check(code, answer.get("msg", answer.get("StatusMessage", "")))
