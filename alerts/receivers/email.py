"""E-mail over SMTP: STARTTLS (``smtp://``) or implicit TLS (``smtps://``), login, text + HTML.

``url: smtp://user:password@host:587``; the password may instead come from ``secret_env`` or
``secret_file``. With a password, ``smtp://`` requires STARTTLS, so a login never crosses the
network in clear; without one (an internal relay) STARTTLS is used when offered.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from alerts.notify import DeliveryError
from alerts.receivers.base import UNLIMITED, ReceiverTarget


class EmailReceiver(ReceiverTarget):
    """Sends one e-mail per message to ``to`` and the person on duty."""

    MAX_BYTES = UNLIMITED  # an e-mail lists the whole group

    def recipients(self, payload: dict[str, Any]) -> list[str]:
        """Addresses: the receiver's ``to`` and the on-duty person's e-mail."""
        return list(dict.fromkeys([*self.spec.to, *(payload.get("emails") or [])]))

    def message(self, payload: dict[str, Any]) -> EmailMessage:
        """The MIME message (plain text with an HTML alternative)."""
        r = self.rendered(payload)
        msg = EmailMessage()
        msg["Subject"] = r.title
        msg["From"] = self.spec.from_ or ""
        msg["To"] = ", ".join(self.recipients(payload))
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="envgrid")
        msg.set_content(r.text)
        msg.add_alternative(f"<html><body>{r.html}</body></html>", subtype="html")
        return msg

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Connect, (STARTTLS), log in, send."""
        to = self.recipients(event)
        if not to:
            raise DeliveryError(f"email {self.name}: no recipients (no to:, nobody on duty)")
        u = urlsplit(self.conf.url)
        user = unquote(u.username) if u.username else None
        password = self.conf.secret or (unquote(u.password) if u.password else None)
        implicit = u.scheme == "smtps"
        ctx = ssl.create_default_context(
            cafile=str(self.spec.ca_file) if self.spec.ca_file else None
        )
        where = f"{u.scheme}://{u.hostname}:{u.port or (465 if implicit else 587)}"
        try:
            await aiosmtplib.send(
                self.message(event),
                recipients=to,
                hostname=u.hostname or "",
                port=u.port or (465 if implicit else 587),
                username=user,
                password=password if user else None,
                use_tls=implicit,
                start_tls=None if implicit else (True if password else None),
                tls_context=ctx,
                timeout=self.spec.timeout / 1000,
            )
        except aiosmtplib.SMTPAuthenticationError as e:
            raise DeliveryError(f"{where}: login refused ({e.code})", permanent=True) from e
        except aiosmtplib.SMTPRecipientsRefused as e:
            raise DeliveryError(f"{where}: recipients refused", permanent=True) from e
        except aiosmtplib.SMTPResponseException as e:
            raise DeliveryError(f"{where}: {e.code} {e.message}", permanent=e.code >= 500) from e
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as e:
            raise DeliveryError(f"{where}: {type(e).__name__}: {e}") from e
