"""PHI-safe display: patient names, IDs, birth dates and other patient IDs and names
replaced on screen by a short hash that is the same for the same value, so rows stay
distinguishable ("Pt#3f9a2c").

The hash is keyed with a secret made once a process (HMAC-SHA256): stable for a
session, meaningless in a screenshot, and no dictionary of IDs can reverse it. Display
only: exports and the wire keep the values (the TUI asks before exporting them).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable

__all__ = ["PHI_KEYWORDS", "PhiMask", "is_phi"]

# keyword -> the mask's prefix
PHI_KEYWORDS: dict[str, str] = {
    "PatientName": "Pt",
    "OtherPatientNames": "Pt",
    "PatientID": "ID",
    "OtherPatientIDs": "ID",
    "PatientBirthDate": "DOB",
}

_PHI_TAGS = {"0010,0010", "0010,1001", "0010,0020", "0010,1000", "0010,0030"}
# an identifier dump line (engine.output.identifier_lines): '(0010,0010) PN [DOE*]  # …'
_DUMP_LINE = re.compile(r"\((?P<tag>[0-9A-Fa-f]{4},[0-9A-Fa-f]{4})\) (?P<vr>\w\w) \[(?P<value>.*?)\]")
_MAX_REMEMBERED = 20_000  # values remembered for scrubbing free text


def _leaf_keyword(path: str) -> str:
    return path.rsplit(".", 1)[-1].partition("[")[0].strip()


def is_phi(path: str) -> bool:
    """Does this key path (or keyword) hold a patient identifier masked on screen?"""
    return _leaf_keyword(path) in PHI_KEYWORDS


class PhiMask:
    """Masks PHI values while ``on``; remembers what it masked to scrub free text too."""

    def __init__(self, on: bool = False, secret: bytes | None = None) -> None:
        self.on = on
        self._secret = secret if secret is not None else secrets.token_bytes(16)
        self._masked: dict[str, str] = {}  # value as shown or sent -> its mask
        self._pattern: re.Pattern[str] | None = None

    def token(self, path: str, value: str) -> str:
        """The mask of one value (whatever ``on`` says): 'Pt#3f9a2c'."""
        prefix = PHI_KEYWORDS.get(_leaf_keyword(path), "PHI")
        digest = hmac.new(self._secret, f"{prefix}\x00{value.strip()}".encode(),
                          hashlib.sha256).hexdigest()[:6]
        return f"{prefix}#{digest}"

    def value(self, path: str, value: str, *, shown: str | None = None) -> str:
        """``value`` of the key ``path`` masked if it is PHI and masking is on; ``shown``:
        the readable form the screen would show (remembered for `text` too)."""
        if not self.on or not value or not is_phi(path):
            return value if shown is None else shown
        parts = value.split("\\")
        tokens = [self.token(path, p) if p.strip() else p for p in parts]
        self._remember(parts, tokens)
        if shown is not None:
            shown_parts = shown.split("\\")
            if len(shown_parts) == len(parts):
                self._remember(shown_parts, tokens)
        return "\\".join(tokens)

    def formatter(self, path: str) -> Callable[[str], str] | None:
        """A cell formatter masking this column, None if it holds no PHI."""
        if not is_phi(path):
            return None
        return lambda value: self.value(path, value)

    def key(self, key: str) -> str:
        """A ``-k`` key with its value masked: 'PatientName=DOE*' -> 'PatientName=Pt#…'."""
        path, sep, value = key.partition("=")
        return f"{path}{sep}{self.value(path, value)}" if sep and value else key

    def line(self, line: str) -> str:
        """A log line: identifier dump values of PHI tags masked, then `text`."""
        if not self.on:
            return line

        def repl(match: re.Match[str]) -> str:
            tag, value = match["tag"].upper(), match["value"]
            if tag not in _PHI_TAGS or not value:
                return match[0]
            keyword = {"0010,0010": "PatientName", "0010,1001": "OtherPatientNames",
                       "0010,0020": "PatientID", "0010,1000": "OtherPatientIDs",
                       "0010,0030": "PatientBirthDate"}[tag]
            return f"({match['tag']}) {match['vr']} [{self.value(keyword, value)}]"

        return self.text(_DUMP_LINE.sub(repl, line))

    def text(self, text: str) -> str:
        """Free text (a notification, a message): every PHI value masked so far (as sent
        or as shown) replaced by its mask."""
        if not self.on or not self._masked or not text:
            return text
        if self._pattern is None:
            values = sorted(self._masked, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, values)))
        return self._pattern.sub(lambda m: self._masked[m[0]], text)

    def _remember(self, values: list[str], tokens: list[str]) -> None:
        for value, token in zip(values, tokens):
            value = value.strip()
            if len(value) >= 3 and value not in self._masked \
                    and len(self._masked) < _MAX_REMEMBERED:
                self._masked[value] = token
                self._pattern = None
