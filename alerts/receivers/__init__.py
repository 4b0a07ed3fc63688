"""Receivers that reach people: DingTalk, WeCom, Feishu, SMS (Alibaba or Tencent Cloud), e-mail.

Each is an outbox target (alerts/notify.py), so retries, persistence and at-least-once delivery
are the outbox's; a receiver only turns a payload into the vendor's request and the vendor's
answer into success, a retry (with the vendor's wait on a rate limit) or a permanent error.
"""

from __future__ import annotations

from alerts.receivers.base import ReceiverTarget
from alerts.receivers.dingtalk import DingTalkReceiver
from alerts.receivers.email import EmailReceiver
from alerts.receivers.feishu import FeishuReceiver
from alerts.receivers.sms import AliyunSmsReceiver
from alerts.receivers.sms_tencent import TencentSmsReceiver
from alerts.receivers.wecom import WeComReceiver
from alerts.routing import Receiver

_TYPES: dict[str, type[ReceiverTarget]] = {
    "dingtalk": DingTalkReceiver,
    "wecom": WeComReceiver,
    "feishu": FeishuReceiver,
    "sms": AliyunSmsReceiver,
    "email": EmailReceiver,
}


def build_receiver(conf: Receiver) -> ReceiverTarget:
    """The outbox target of one configured receiver."""
    if conf.spec.type == "sms" and conf.spec.provider == "tencent":
        return TencentSmsReceiver(conf)
    return _TYPES[conf.spec.type](conf)


__all__ = ["ReceiverTarget", "build_receiver"]
