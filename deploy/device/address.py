"""Device addresses: ``ssh://user@host[:port][?python=PATH]`` or a bare host alias from
``~/.ssh/config``. ``python=`` names the board's interpreter (a venv's, an emulator's wrapper)
so that one address says everything needed to run there."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from edgebase.errors import ConfigError

_ALIAS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")


@dataclass(frozen=True)
class DeviceAddress:
    host: str
    user: str | None = None
    port: int | None = None
    python: str | None = None  # the board's Python, when the address names one

    def destination(self) -> str:
        """What ssh gets as its destination argument (never starts with '-')."""
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:  # no secrets: a password in the URL is refused, never kept
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?python={quote(self.python, safe='/~._-')}" if self.python else ""
        return f"ssh://{self.user + '@' if self.user else ''}{host}{port}{query}"


def parse_address(text: str) -> DeviceAddress:
    """``ssh://user@host[:port][?python=PATH]``, ``user@host`` or a host alias; a password is
    refused."""
    text = (text or "").strip()
    if not text:
        raise ConfigError("empty --device; expected ssh://user@host[:port] or a ~/.ssh/config alias")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "ssh":
            raise ConfigError(f"--device {parts.scheme}://...: only ssh:// addresses are "
                              "supported (ssh://user@host[:port] or a ~/.ssh/config alias)")
        if parts.password is not None:
            raise ConfigError("--device: passwords in the address are refused; use key "
                              "authentication (ssh-copy-id, the SSH agent or ~/.ssh/config)")
        if parts.path not in ("", "/") or parts.fragment:
            raise ConfigError(f"--device {_redact(text)}: expected ssh://user@host[:port] "
                              "with nothing after the port but ?python=PATH")
        python = _python(parts.query, text)
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"--device {text}: the port must be a number 1-65535") from None
        host, user = parts.hostname, parts.username
        if not host:
            raise ConfigError(f"--device {text}: no host name")
        if user is not None:
            _check(user, text)
        _check(host, text)  # urlsplit drops an IPv6 address's brackets
        return DeviceAddress(host=host, user=user, port=port, python=python)
    user, _, host = text.rpartition("@")
    _check(host, text)
    if user:
        _check(user, text)
    return DeviceAddress(host=host, user=user or None)


def _python(query: str, text: str) -> str | None:
    if not query:
        return None
    try:
        pairs = parse_qsl(query, strict_parsing=True)
    except ValueError:
        pairs = []
    keys = [k for k, _ in pairs]
    if not pairs or keys != ["python"]:
        raise ConfigError(f"--device {_redact(text)}: the only query parameter is "
                          "?python=PATH (the board's Python)")
    value = pairs[0][1]
    if not value or value.startswith("-") or any(c in value for c in "\0\n\r"):
        raise ConfigError(f"--device {_redact(text)}: ?python= must name the board's Python, "
                          "e.g. ?python=/home/pi/venv/bin/python")
    return value


def _check(word: str, text: str) -> None:
    # ssh would read a leading '-' as an option; spaces and shell characters are never names
    if word.startswith("-") or not _ALIAS.match(word.replace(":", "")):
        raise ConfigError(f"--device {_redact(text)}: {word!r} is not a valid user or host name")


def _redact(text: str) -> str:
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", text)
