"""WeCom group robot (企业微信群机器人): markdown, then a text message that @-mentions by mobile.

WeCom's markdown messages cannot mention by mobile (only ``text`` has
``mentioned_mobile_list``), and markdown is limited to 4,096 bytes. So a message is the
markdown, followed, when someone is on duty, by a short text carrying the mentions. People with
a ``wecom_id`` are also mentioned inside the markdown with ``<@userid>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerts.receivers.base import ReceiverTarget


class WeComReceiver(ReceiverTarget):
    """Posts to ``…/cgi-bin/webhook/send?key=<key>``."""

    # 93000: invalid webhook url (bad or deleted key); 40008: invalid message type;
    # 40058: invalid parameter.
    PERMANENT = frozenset({"93000", "40008", "40058"})
    RATE_LIMIT = frozenset({"45009"})  # api freq out of limit (20 messages a minute)
    MAX_BYTES = 4_000  # of the 4,096 WeCom takes, with room for the mentions line

    def url(self) -> str:
        """The webhook URL; a ``secret`` is the key when the URL holds none."""
        url = self.conf.url
        if self.conf.secret and "key=" not in url:
            url = f"{url}{'&' if '?' in url else '?'}key={self.conf.secret}"
        return url

    def mention_tags(self, payload: Mapping[str, Any]) -> list[str]:
        """``<@userid>`` for people with a WeCom id."""
        return [f"<@{p['wecom_id']}>" for p in payload.get("people") or [] if p.get("wecom_id")]

    def messages(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The JSON bodies: markdown, then the mention text if anyone is to be mentioned."""
        r = self.rendered(payload)
        out: list[dict[str, Any]] = [{"msgtype": "markdown", "markdown": {"content": r.markdown}}]
        mobiles = self.mobiles(payload)
        if mobiles or self.spec.at_all:
            names = "、".join(p.get("name") or p.get("id", "") for p in payload.get("people") or [])
            text = (
                f"{r.title} 请{names or '值班人员'}处理"
                if self.spec.language == "zh"
                else (f"{r.title}: please handle, {names or 'on-call'}")
            )
            out.append(
                {
                    "msgtype": "text",
                    "text": {
                        "content": text,
                        "mentioned_mobile_list": mobiles + (["@all"] if self.spec.at_all else []),
                    },
                }
            )
        return out

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Post each body and read ``errcode``."""
        for msg in self.messages(event):
            answer = await self.post_json(self.url(), msg)
            self.check(answer.get("errcode", 0), answer.get("errmsg", ""))
