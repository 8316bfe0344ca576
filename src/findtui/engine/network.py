"""Where and how to reach a peer: the one connection model, with findscu's defaults.

``Network`` is what a node profile holds, what a history entry records and
re-runs, what the CLI's options and the TUI's form produce. Its field types and
constraints (msgspec ``Meta``) are the validation rules for all of them:
``Network.validated()`` for an object built in code, ``network_from(data)`` for
a profile table, a history line or the form's text fields. Labels, flags and
help texts are in engine/settings.py.

To add a network option: a field here (type, constraint, default), a ``Setting``
in settings.py (label, flag, help), the pynetdicom call that uses it in
query.py, and its widget in widgets/network_form.py.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from findtui.engine.settings import SETTINGS

TransferSyntaxName = Literal["implicit", "explicit", "deflated", "big"]
MAX_TIMEOUT = 86400.0  # seconds

_AE = Annotated[str, Meta(pattern=r"^(?=.*[^ ])[ -\[\]-~]{1,16}$")]
_SECONDS = Annotated[float, Meta(gt=0, le=MAX_TIMEOUT)]
_PATH = Annotated[str, Meta(min_length=1, pattern=r"^[^\x00]*$")]


class NetworkError(ValueError):
    """A setting holds a value the connection cannot take; ``setting`` names it
    (a key of engine.settings.SETTINGS, e.g. 'called_aet' or 'tls.key_file').

    str() names settings as the profiles file does; ``render(name)`` lets a front end
    name them its own way (the CLI by flag, the form by label).
    """

    def __init__(self, setting: str, message: str = "", *, needs: str | None = None,
                 conflicts: str | None = None) -> None:
        self.setting, self.needs, self.conflicts = setting, needs, conflicts
        self.message = message
        super().__init__(self.render())

    def render(self, name=lambda setting: setting.split(".")[-1]) -> str:
        if self.needs:
            return f"{name(self.setting)} needs {name(self.needs)}"
        if self.conflicts:
            return f"give {name(self.conflicts)} or {name(self.setting)}, not both"
        field = self.setting.split(".")[-1]
        if field and self.message.startswith(field + " "):
            return f"{name(self.setting)} {self.message[len(field) + 1:]}"
        return self.message


class TLSOptions(Struct, frozen=True, forbid_unknown_fields=True):
    ca_file: _PATH | None = None
    cert_file: _PATH | None = None
    key_file: _PATH | None = None
    verify: bool = True

    def context(self):
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_expand(self.ca_file))
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(_expand(self.cert_file), _expand(self.key_file))
        return ctx


class Network(Struct, frozen=True, forbid_unknown_fields=True):
    """Where and how to reach the SCP; defaults are findscu's."""

    address: Annotated[str, Meta(pattern=r"^[^\s\x00-\x1f\x7f-\x9f]{1,253}$")]
    port: Annotated[int, Meta(ge=1, le=65535)]
    calling_aet: _AE = "FINDSCU"
    called_aet: _AE = "ANY-SCP"
    acse_timeout: _SECONDS = 30.0
    dimse_timeout: _SECONDS = 30.0
    network_timeout: _SECONDS = 30.0
    max_pdu: Annotated[int, Meta(ge=0, le=0xFFFFFFFF)] = 16382
    tls: TLSOptions | None = None
    transfer_syntax: TransferSyntaxName | None = None  # propose only this one
    prefer_transfer_syntax: TransferSyntaxName | None = None  # propose all four, this first
    # The most matches the peer returns for one query (e.g. Orthanc's LimitFindResults):
    # that many matches means the answer is probably incomplete (engine.run).
    max_results: Annotated[int, Meta(ge=1, le=0xFFFFFFFF)] | None = None

    def transfer_syntaxes(self):
        """The transfer syntaxes to propose, in order."""
        from findtui.engine.models import transfer_syntaxes

        if self.transfer_syntax:
            return transfer_syntaxes(self.transfer_syntax, only=True)
        return transfer_syntaxes(self.prefer_transfer_syntax)

    def replace(self, **changes: Any) -> Network:
        return msgspec.structs.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/TOML), None values left out."""
        data = msgspec.to_builtins(self)
        if data["tls"] is not None:
            data["tls"] = {k: v for k, v in data["tls"].items() if v is not None}
        return {k: v for k, v in data.items() if v is not None}

    def with_absolute_paths(self, base: str | os.PathLike[str]) -> Network:
        """TLS file paths made absolute against ``base`` ('~' paths stay as written):
        a saved or recorded connection must not depend on the working directory."""
        tls = self.tls
        if tls is None:
            return self

        def absolute(path: str | None) -> str | None:
            if not path or path.startswith("~") or os.path.isabs(path):
                return path
            return os.path.normpath(os.path.join(os.fspath(base), path))

        return self.replace(tls=msgspec.structs.replace(
            tls, ca_file=absolute(tls.ca_file), cert_file=absolute(tls.cert_file),
            key_file=absolute(tls.key_file)))

    def validated(self) -> Network:
        """Self if every setting is valid, else NetworkError naming the first bad one."""
        return network_from(msgspec.to_builtins(self))


FIELDS: tuple[str, ...] = Network.__struct_fields__
TLS_FIELDS: tuple[str, ...] = TLSOptions.__struct_fields__
DEFAULTS: dict[str, Any] = {f.name: f.default for f in msgspec.structs.fields(Network)
                            if f.default is not msgspec.NODEFAULT}


def network_from(data: dict[str, Any], *, strings: bool = False) -> Network:
    """A validated Network from plain data; ``strings``: values may be text (the form).

    Raises NetworkError naming the setting and saying what it takes.
    """
    try:
        net = msgspec.convert(data, Network, strict=not strings)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, data) from None
    if net.transfer_syntax and net.prefer_transfer_syntax:
        raise NetworkError("prefer_transfer_syntax", conflicts="transfer_syntax")
    if net.tls is not None and net.tls.key_file and not net.tls.cert_file:
        raise NetworkError("tls.key_file", needs="tls.cert_file")
    return net


_AT = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`$")


def validation_error(exc: msgspec.ValidationError, data: Any) -> NetworkError:
    """msgspec's message, in a user's words: '<setting> must be <takes>, not <value>'."""
    text = str(exc)
    m = _AT.search(text)
    path = [p for p in re.split(r"\.|\[|\]", m.group(1)) if p] if m else []
    problem = text[:m.start()] if m else text
    if problem.startswith("Object contains unknown field"):
        name = problem.split("`")[1]
        return NetworkError(".".join([*path, name]), f"unknown field {name!r}")
    if problem.startswith("Object missing required field"):
        name = problem.split("`")[1]
        return NetworkError(".".join([*path, name]), f"{name} is required")  # "address is ..."
    setting = ".".join(path)
    value: Any = data
    for part in path:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            value = None
            break
    info = SETTINGS.get(setting)
    takes = info.takes if info and info.takes else problem.removeprefix("Expected ")
    name = path[-1] if path else "value"
    return NetworkError(setting, f"{name} must be {takes}, not {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else path


__all__ = ["DEFAULTS", "FIELDS", "Network", "NetworkError", "TLSOptions", "network_from"]
