"""Peer data made safe for a terminal: control characters shown, never obeyed.

A C-FIND response is data from another machine. Written raw to a terminal, an
ESC or a C1 CSI starts an escape sequence (colours, cursor moves, OSC 0 window
title, OSC 52 clipboard writes), a bidi override reorders what the user reads,
a CR or LF forges a log line. Everything shown to a person goes through
:func:`visible`; log records go through :class:`SafeFormatter`; DICOM JSON
through :func:`json_safe`.

Headless: nothing here imports textual or rich.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

__all__ = ["LogLines", "SafeFormatter", "json_safe", "make_log_output_safe", "visible", "warnings_to_log"]

# C0, DEL, C1, every format (Cf) character — bidi embeddings/overrides/isolates and
# marks, zero-width characters, BOM, tags — line/paragraph separators, surrogates.
_UNSAFE = (
    "\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f\ud800-\udfff"
)
_unsafe_search = re.compile(f"[{_UNSAFE}]").search
_unsafe_sub = re.compile(f"[{_UNSAFE}]").sub


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # Control Pictures: ESC -> ␛, BEL -> ␇, LF -> ␊
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"<U+{code:04X}>"


def visible(text: str) -> str:
    """Return `text` safe to write to a terminal, with every control made visible.

    C0 controls and DEL become their Unicode Control Pictures (``"\\x1b"`` ->
    ``"␛"``); C1 controls, bidi overrides/isolates/marks, other invisible format
    characters, line/paragraph separators and lone surrogates become ``<U+XXXX>``.
    Everything else, including wide characters and ``[markup]``, is unchanged.
    """
    if text.isprintable() or _unsafe_search(text) is None:  # (printable: a fast C test
        return text                                          # that implies safe)
    return _unsafe_sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # JSON escapes are UTF-16 code units
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def json_safe(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with the characters
    :func:`visible` would escape written as ``\\uXXXX`` escapes instead.

    Outside strings ``json.dumps`` writes only ASCII punctuation, digits and
    letters, so every such character is inside a string, where the escape
    stands for the very same character: the data is unchanged, the terminal safe,
    and other non-ASCII text (names in any script) stays readable.
    """
    if _unsafe_search(text) is None:
        return text
    return _unsafe_sub(_json_escape, text)


class LogLines(tuple):
    """Several log lines logged as one record (one write and one flush for a response's
    dozen lines): :class:`SafeFormatter` formats and makes visible each line on its own,
    exactly as if they had been logged one by one."""

    __slots__ = ()

    def __str__(self) -> str:
        return "\n".join(visible(line) for line in self)


class SafeFormatter(logging.Formatter):
    """Wraps a log formatter so that no record reaches the output raw.

    The message is passed through :func:`visible` (one record is one line: an LF
    in peer data cannot forge a second one). Tracebacks are kept only when
    ``tracebacks`` is true (``-d``), each of their lines made visible too.
    """

    def __init__(self, inner: logging.Formatter | None = None, tracebacks: bool = False) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if type(record.msg) is LogLines and not record.args:
            return self._format_lines(record)
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad %-format must not hide the record
            message = f"{record.msg!r} (log formatting failed: {exc})"
        drop = not self.tracebacks and (record.exc_info or record.exc_text or record.stack_info)
        if not drop and type(record.msg) is str and record.msg == message \
                and _unsafe_search(message) is None:
            text = self.inner.format(record)  # the common case: nothing to change
        else:  # a copy: the record is shared with other handlers
            safe = logging.makeLogRecord(record.__dict__)
            safe.msg, safe.args = visible(message), None
            if not self.tracebacks:
                safe.exc_info = safe.exc_text = safe.stack_info = None
            text = self.inner.format(safe)
        if "\n" in text or _unsafe_search(text):  # traceback lines, or a bad prefix
            text = "\n".join(visible(line) for line in text.split("\n"))
        return text


    def _format_lines(self, record: logging.LogRecord) -> str:
        lines = record.msg
        inner = self.inner
        style = getattr(inner, "_style", None)
        if type(style) is logging.PercentStyle and style._fmt.endswith("%(message)s") \
                and not inner.usesTime():
            try:  # the prefix ("I: ") once, from the record's own fields, then each line
                prefix = visible(style._fmt[:-len("%(message)s")] % record.__dict__)
            except (KeyError, TypeError, ValueError):
                pass
            else:
                joined = " ".join(lines)
                if joined.isprintable() or _unsafe_search(joined) is None:  # the common case
                    return prefix + ("\n" + prefix).join(lines)
                return "\n".join(prefix + visible(line) for line in lines)
        line_record = logging.makeLogRecord(record.__dict__)  # the record is shared
        line_record.exc_info = line_record.exc_text = line_record.stack_info = None
        out = []
        for line in lines:
            line_record.msg = line
            out.append(self.format(line_record))
        return "\n".join(out)


def make_log_output_safe(logger_names: tuple[str, ...] = ("findtui", "pynetdicom"),
                         tracebacks: bool = False) -> None:
    """Give every handler of these loggers a :class:`SafeFormatter` around its own."""
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            current = handler.formatter
            if isinstance(current, SafeFormatter):
                current.tracebacks = tracebacks
            else:
                handler.setFormatter(SafeFormatter(current, tracebacks))


@contextlib.contextmanager
def warnings_to_log(logger: logging.Logger) -> Iterator[None]:
    """Python warnings (pydicom's, about peer data) go to ``logger`` as warnings,
    through its safe formatter, instead of raw to stderr with a source line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        logger.warning(str(message))

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
