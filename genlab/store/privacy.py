"""Privacy at rest: redaction of contact details and encryption of sensitive prompts.

Encryption uses ``cryptography``'s Fernet (AES-128-CBC + HMAC-SHA256). The key comes from the
environment (``GENLAB_FERNET_KEY``) and never enters the database. Several comma-separated keys
rotate: the first encrypts, all decrypt (``MultiFernet``).
"""

from __future__ import annotations

import os
import re

from genlab.errors import ConfigError, StoreError

KEY_ENV = "GENLAB_FERNET_KEY"

# user@host.tld, conservatively (no quoted local parts)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# phone numbers: optional +country code, then 7–15 digits in groups split by spaces, dots, dashes or
# parentheses: "+44 20 7946 0958", "(555) 123-4567", "555.123.4567". Dates and plain years do not match
# (too few digits, or separated by "/").
_PHONE = re.compile(r"(?<![\w/])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w/])")


def redact(text: str) -> tuple[str, int]:
    """``text`` with e-mail addresses replaced by ``[email]`` and phone numbers (7–15 digits) by
    ``[phone]``, and how many were replaced."""
    text, emails = _EMAIL.subn("[email]", text)
    phones = 0

    def phone(match: re.Match[str]) -> str:
        nonlocal phones
        if not 7 <= sum(ch.isdigit() for ch in match.group()) <= 15:
            return match.group()
        phones += 1
        return "[phone]"

    return _PHONE.sub(phone, text), emails + phones


class PromptCipher:
    """Encrypts and decrypts sensitive prompts with the key(s) in ``GENLAB_FERNET_KEY``."""

    def __init__(self, keys: str | None = None) -> None:
        from cryptography.fernet import Fernet, MultiFernet

        keys = keys if keys is not None else os.environ.get(KEY_ENV, "")
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigError(
                f"a sensitive prompt must be encrypted but {KEY_ENV} is not set; make a key with "
                "`genlab keys fernet` and export it as " + KEY_ENV + "."
            )
        try:
            self._fernet = MultiFernet([Fernet(k) for k in parts])
        except ValueError:
            raise ConfigError(f"{KEY_ENV} holds a malformed key; a Fernet key is 32 url-safe base64 bytes "
                              "(make one with `genlab keys fernet`).") from None  # fmt: skip

    @staticmethod
    def new_key() -> str:
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()

    def encrypt(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def decrypt(self, token: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise StoreError(f"a sensitive prompt cannot be decrypted with the key(s) in {KEY_ENV}; "
                             "add the key it was encrypted with (keys are comma-separated).") from None  # fmt: skip
