"""SMS through Tencent Cloud SMS (腾讯云短信, ``SendSms``, API version 2021-01-11).

Requests are signed with TC3-HMAC-SHA256 as Tencent Cloud documents it: the canonical request
(``POST``, ``/``, empty query, the ``content-type`` and ``host`` headers, the hex SHA-256 of the
body) is hashed into ``TC3-HMAC-SHA256\\n<timestamp>\\n<date>/sms/tc3_request\\n<hash>``; the key
is derived as HMAC-SHA256 of ``"TC3" + SecretKey`` over the UTC date, then ``sms``, then
``tc3_request``; the signature is the hex HMAC of that string. Tencent Cloud refuses a timestamp
more than five minutes off. Template parameters are positional: ``template_params`` are sent in
the order written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from alerts.notify import DeliveryError
from alerts.receivers.base import UNLIMITED, ReceiverTarget
from alerts.receivers.sms import _fill

log = logging.getLogger("envgrid.alerts.sms")

VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"


def tc3_authorization(
    secret_id: str, secret_key: str, host: str, body: bytes, timestamp: int
) -> str:
    """The ``Authorization`` header of one request."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:{CONTENT_TYPE}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{SERVICE}/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = h(h(h(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={sig}"
    )


class TencentSmsReceiver(ReceiverTarget):
    """Texts the receiver's mobiles and the person on duty through Tencent Cloud."""

    PERMANENT = frozenset(
        {
            "AuthFailure.SignatureFailure",
            "AuthFailure.SecretIdNotFound",
            "AuthFailure.InvalidSecretId",
            "AuthFailure.UnauthorizedOperation",
            "FailedOperation.SignatureIncorrectOrUnapproved",
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "InvalidParameterValue.TemplateParameterFormatError",
            "InvalidParameterValue.IncorrectPhoneNumber",
            "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
        }
    )
    RATE_LIMIT = frozenset(
        {
            "RequestLimitExceeded",
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            "LimitExceeded.PhoneNumberOneHourLimit",
            "LimitExceeded.PhoneNumberDailyLimit",
        }
    )
    MAX_BYTES = UNLIMITED

    def body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON request: numbers in E.164 (mainland numbers get +86), ordered parameters."""
        alerts = list(payload.get("alerts") or [])
        first: dict[str, Any] = dict(alerts[0]) if alerts else {}
        values = {
            k: "" if v is None else str(v) for k, v in first.items() if not isinstance(v, dict)
        }
        values["count"] = str(len(alerts))
        values["reason"] = str(payload.get("reason") or "notify")
        phones = [
            m if m.startswith("+") else f"+86{m}" for m in dict.fromkeys(self.mobiles(payload))
        ]
        return {
            "PhoneNumberSet": phones,
            "SmsSdkAppId": self.spec.sdk_app_id or "",
            "SignName": self.spec.sign_name or "",
            "TemplateId": self.spec.template_code or "",
            "TemplateParamSet": [_fill(t, values) for t in self.spec.template_params.values()],
        }

    async def send(self, event: dict[str, Any], body: str) -> None:
        """POST the signed JSON; read ``Response.Error`` and each number's ``Code``."""
        if not self.mobiles(event):
            raise DeliveryError(f"sms {self.name}: nobody to text (no mobiles, nobody on duty)")
        url = self.conf.url
        host = urlsplit(url).netloc
        data = json.dumps(self.body(event), ensure_ascii=False).encode()
        ts = int(self._clock())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": "SendSms",
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(ts),
            "X-TC-Region": self.spec.region or "ap-guangzhou",
            "Authorization": tc3_authorization(
                self.spec.access_key_id or "", self.conf.secret or "", host, data, ts
            ),
        }
        answer = (await self._request(url, data, headers)).get("Response") or {}
        error = answer.get("Error")
        if error:
            self.check(error.get("Code", ""), error.get("Message", ""))
        # Each number has its own status; one refused number must not resend to the others.
        statuses = answer.get("SendStatusSet") or []
        bad = [s for s in statuses if s.get("Code") != "Ok"]
        if bad and len(bad) == len(statuses):
            self.check(bad[0].get("Code", ""), bad[0].get("Message", ""))
        for s in bad:
            log.warning(
                "sms %s: Tencent Cloud refused %s: %s",
                self.name,
                _mask(str(s.get("PhoneNumber", ""))),
                s.get("Code"),
            )


def _mask(phone: str) -> str:
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"
