"""WeCom callbacks (``wecom-api.md`` §2): the URL check and signed, encrypted events.
Signature = lowercase hex SHA-1 of token, timestamp, nonce and the encrypted text, sorted
and joined; the crypto is the engine's (``_core.wecom_callback_decrypt``: padding, frame and
receive id checked). Events are small XML documents, parsed with a size limit."""

from __future__ import annotations

import hashlib
import hmac
import os
import xml.etree.ElementTree as ET

from scrm_fast._core import wecom_callback_decrypt, wecom_callback_encrypt
from scrm_fast.errors import InputError

MAX_BODY = 64 << 10


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def check_signature(token: str, timestamp: str, nonce: str, encrypted: str, given: str) -> None:
    if not hmac.compare_digest(signature(token, timestamp, nonce, encrypted), given or ""):
        raise InputError("msg_signature does not match")


def url_check(token: str, aes_key: str, corpid: str, msg_signature: str, timestamp: str, nonce: str,
              echostr: str) -> str:
    """The plaintext to answer a URL check with (no quotes, BOM or newline)."""
    check_signature(token, timestamp, nonce, echostr, msg_signature)
    try:
        return wecom_callback_decrypt(aes_key, echostr, corpid).decode()
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"echostr: {e}") from None


def _xml(text: bytes | str) -> dict[str, str]:
    if len(text) > MAX_BODY:
        raise InputError("callback body over 64 KB")
    if (b"<!DOCTYPE" if isinstance(text, bytes) else "<!DOCTYPE") in text:
        raise InputError("callback XML with a DOCTYPE is refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise InputError(f"callback body is not XML: {e}") from None
    return {child.tag: (child.text or "") for child in root}


def open_event(token: str, aes_key: str, corpid: str, msg_signature: str, timestamp: str, nonce: str,
               body: bytes) -> dict[str, str]:
    """The event of a POSTed callback as ``{tag: text}``, after its signature and crypto checked."""
    outer = _xml(body)
    enc = outer.get("Encrypt", "")
    if not enc:
        raise InputError("callback without Encrypt")
    check_signature(token, timestamp, nonce, enc, msg_signature)
    try:
        return _xml(wecom_callback_decrypt(aes_key, enc, corpid))
    except ValueError as e:
        raise InputError(f"Encrypt: {e}") from None


def seal_event(token: str, aes_key: str, corpid: str, xml: str, timestamp: str, nonce: str) -> tuple[bytes, str]:
    """A callback body as WeCom sends it, and its msg_signature (the fake WeCom's side)."""
    enc = wecom_callback_encrypt(aes_key, xml.encode(), corpid, os.urandom(16))
    body = f"<xml><ToUserName><![CDATA[{corpid}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
    return body.encode(), signature(token, timestamp, nonce, enc)
