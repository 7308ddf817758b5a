"""Sans-I/O verification of TripleSeat's X-Signature over the raw body bytes; never raises on bad headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

MAX_HEADER_LENGTH = 1024


def sign_body(body: bytes, *, secret: str | bytes) -> str:
    """The lowercase hex HMAC-SHA256 of body: what a TripleSeat endpoint (or a test) sends."""
    return hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def sign_timestamped(body: bytes, *, secret: str | bytes, timestamp: int) -> str:
    """The ``t=<unix>,v1=<hex>`` form, signing ``"{t}.{body}"``."""
    mac = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(body: bytes, header: str | None, *, secret: str | bytes) -> bool:
    """True when header is a valid HMAC-SHA256 of body in hex (either case), base64 or ``t=,v1=`` form.

    The exact form TripleSeat uses is unconfirmed (DESIGN.md §1), so each plausible encoding is
    accepted; every comparison is constant-time and any malformed header is simply False.
    """
    if not secret or header is None or not isinstance(header, str):
        return False
    # No stripping: it would let " " stand in for a padding "=", so a changed header still verified.
    text = header
    if not text or len(text) > MAX_HEADER_LENGTH or not text.isascii():
        return False
    key = _key(secret)
    if text.startswith("t=") or ",v1=" in text:
        return _verify_timestamped(body, text, key)
    if text.startswith("sha256="):
        text = text[len("sha256=") :]
    digest = hmac.new(key, body, hashlib.sha256).digest()
    candidate = _decode_digest(text)
    return candidate is not None and hmac.compare_digest(candidate, digest)


def forms_tried(header: str | None) -> tuple[str, ...]:
    """The encodings verify_signature compared a header against, for the 401 answer (never the expected value)."""
    if header is None or not isinstance(header, str) or not header:
        return ()
    if header.startswith("t=") or ",v1=" in header:
        return ("t=<unix>,v1=<hex> over '<t>.<body>'",)
    return ("hex (lower or upper case)", "base64", "sha256=<hex>")


def refusal(header: str | None) -> str:
    """Why a header was refused, naming the forms tried; says nothing about the value that would verify."""
    tried = forms_tried(header)
    if not tried:
        return "missing or invalid X-Signature: the header is missing or empty"
    if len(header or "") > MAX_HEADER_LENGTH or not (header or "").isascii():
        return f"missing or invalid X-Signature: longer than {MAX_HEADER_LENGTH} characters or not ASCII"
    return f"missing or invalid X-Signature: no HMAC-SHA256 of the raw body matched (tried {', '.join(tried)})"


def _verify_timestamped(body: bytes, text: str, key: bytes) -> bool:
    parts: dict[str, list[str]] = {}
    for piece in text.split(","):
        name, sep, value = piece.partition("=")
        if not sep:
            return False
        parts.setdefault(name, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    digest = hmac.new(key, f"{stamps[0]}.".encode() + body, hashlib.sha256).digest()
    ok = False
    for candidate_text in parts.get("v1", []):
        candidate = _decode_digest(candidate_text)
        # Compare every candidate so the time taken does not depend on which one matched.
        if candidate is not None and hmac.compare_digest(candidate, digest):
            ok = True
    return ok


def _decode_digest(text: str) -> bytes | None:
    """Decode a 32-byte digest from hex (all lower or all upper case) or canonical standard base64.

    Only these spellings are accepted, so that few other strings decode to the same digest:
    mixed-case hex and base64 with stray trailing bits are refused. Upper case is accepted
    because "hex" in TripleSeat's docs does not say which case (issue 11).
    """
    if len(text) == 64:
        if text != text.lower() and text != text.upper():
            return None
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    if len(text) in (43, 44):
        standard = text
        try:
            raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 32 or base64.b64encode(raw).decode() != standard + "=" * (44 - len(standard)):
            return None
        return raw
    return None


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret
