"""SMS through Alibaba Cloud SMS (阿里云短信服务, ``SendSms``, API version 2017-05-25).

Requests are signed as Alibaba Cloud's RPC signature (version 1.0) documents: parameters sorted
by name, each name and value percent-encoded per RFC 3986 (space as %20, ``~`` kept), joined
with ``&``; ``StringToSign = POST&%2F&<percent-encoded canonical query>``; ``Signature =
base64(HMAC-SHA1(key=AccessKeySecret + "&", StringToSign))``. An SMS carries no free text: the
message is an approved template whose parameters (``template_params``) are filled from the
first alert of the group and the group's count.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from alerts.notify import DeliveryError
from alerts.receivers.base import UNLIMITED, ReceiverTarget

VERSION = "2017-05-25"


def percent_encode(s: str) -> str:
    """RFC 3986 encoding as Alibaba Cloud's signature wants it."""
    return quote(s, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The sorted, encoded ``k=v&…`` string."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def aliyun_signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The ``Signature`` of a request's parameters (without ``Signature`` itself)."""
    sts = f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"
    digest = hmac.new(f"{secret}&".encode(), sts.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSmsReceiver(ReceiverTarget):
    """Texts the receiver's mobiles and the person on duty."""

    PERMANENT = frozenset(
        {
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId.NotFound",
            "InvalidAccessKeyId.Inactive",
            "isv.SMS_SIGNATURE_ILLEGAL",
            "isv.SMS_TEMPLATE_ILLEGAL",
            "isv.MOBILE_NUMBER_ILLEGAL",
            "isv.TEMPLATE_MISSING_PARAMETERS",
            "isv.INVALID_PARAMETERS",
            "isv.INVALID_JSON_PARAM",
            "isv.ACCOUNT_NOT_EXISTS",
            "isv.OUT_OF_SERVICE",
        }
    )
    RATE_LIMIT = frozenset(
        {"isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "isv.DAY_LIMIT_CONTROL"}
    )
    MAX_BYTES = UNLIMITED  # one SMS per group: its text is the template, not the alerts

    def template_params(self, payload: Mapping[str, Any]) -> dict[str, str]:
        """``template_params`` filled in: ``{count}`` and the first alert's fields."""
        alerts = list(payload.get("alerts") or [])
        first: dict[str, Any] = dict(alerts[0]) if alerts else {}
        values = {
            k: "" if v is None else str(v) for k, v in first.items() if not isinstance(v, dict)
        }
        values["count"] = str(len(alerts))
        values["reason"] = str(payload.get("reason") or "notify")
        return {k: _fill(t, values) for k, t in self.spec.template_params.items()}

    def params(self, payload: Mapping[str, Any]) -> dict[str, str]:
        """The signed request parameters."""
        p = {
            "AccessKeyId": self.spec.access_key_id or "",
            "Action": "SendSms",
            "Format": "JSON",
            "PhoneNumbers": ",".join(dict.fromkeys(self.mobiles(payload))),
            "RegionId": "cn-hangzhou",
            "SignName": self.spec.sign_name or "",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "TemplateCode": self.spec.template_code or "",
            "TemplateParam": json.dumps(self.template_params(payload), ensure_ascii=False),
            "Timestamp": datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": VERSION,
        }
        p["Signature"] = aliyun_signature(self.conf.secret or "", "POST", p)
        return p

    async def send(self, event: dict[str, Any], body: str) -> None:
        """POST the form and read ``Code``."""
        if not self.mobiles(event):
            raise DeliveryError(f"sms {self.name}: nobody to text (no mobiles, nobody on duty)")
        data = canonical_query(self.params(event)).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        answer = await self._request(self.conf.url, data, headers)
        self.check(answer.get("Code", ""), answer.get("Message", ""))


def _fill(template: str, values: Mapping[str, str]) -> str:
    out = template
    for k, v in values.items():
        out = out.replace("{" + k + "}", v)
    return out
