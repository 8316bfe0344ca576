"""The network form: where the SCP is and how to associate (findscu's network/TLS options)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import Checkbox, Input, Label

from findtui.engine.query import Network, TLSOptions

DEFAULTS = Network(address="", port=104)


class FormError(ValueError):
    """A form field holds a value the request cannot take; ``field_id`` is the widget to focus."""

    def __init__(self, field_id: str, message: str) -> None:
        super().__init__(message)
        self.field_id = field_id


def _ae_title(value: str, field_id: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise FormError(field_id, f"the {what} AE title is empty")
    if len(value) > 16:
        raise FormError(field_id, f"the {what} AE title {value!r} is longer than 16 characters")
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise FormError(field_id, f"the {what} AE title {value!r} has a backslash or control character")
    return value


def _number(value: str, field_id: str, what: str, kind=float, minimum: float = 0) -> float:
    try:
        n = kind(value.strip())
    except ValueError:
        raise FormError(field_id, f"{what}: {value.strip()!r} is not a number") from None
    if n < minimum:
        raise FormError(field_id, f"{what} must be {minimum:g} or more")
    return n


class NetworkForm(Vertical):
    """Address, port, AE titles, timeouts, max PDU and TLS; ``network()`` reads it back."""

    def compose(self) -> ComposeResult:
        with Grid(id="net-grid"):
            yield Label("Address", classes="form-label")
            yield Input(placeholder="host or IP", id="net-address", compact=True)
            yield Label("Port", classes="form-label")
            yield Input(str(DEFAULTS.port), id="net-port", type="integer", compact=True)
            yield Label("Calling AE", classes="form-label")
            yield Input(DEFAULTS.calling_aet, id="net-calling", max_length=16, compact=True)
            yield Label("Called AE", classes="form-label")
            yield Input(DEFAULTS.called_aet, id="net-called", max_length=16, compact=True)
            yield Label("ACSE timeout", classes="form-label")
            yield Input(f"{DEFAULTS.acse_timeout:g}", id="net-acse", type="number", compact=True)
            yield Label("DIMSE timeout", classes="form-label")
            yield Input(f"{DEFAULTS.dimse_timeout:g}", id="net-dimse", type="number", compact=True)
            yield Label("Net timeout", classes="form-label")
            yield Input(f"{DEFAULTS.network_timeout:g}", id="net-network", type="number",
                        compact=True)
            yield Label("Max PDU", classes="form-label")
            yield Input(str(DEFAULTS.max_pdu), id="net-pdu", type="integer", compact=True)
        with Grid(id="tls-grid"):
            yield Checkbox("TLS", id="net-tls", compact=True)
            yield Checkbox("Verify certificate", True, id="net-verify", compact=True,
                           disabled=True)
            yield Label("")
            yield Label("")
            yield Label("CA file", classes="form-label")
            yield Input(placeholder="CA certificates (PEM)", id="net-ca", compact=True,
                        disabled=True)
            yield Label("Cert file", classes="form-label")
            yield Input(placeholder="our certificate (PEM)", id="net-cert", compact=True,
                        disabled=True)
            yield Label("Key file", classes="form-label")
            yield Input(placeholder="its private key (PEM)", id="net-key", compact=True,
                        disabled=True)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "net-tls":
            for wid in ("net-verify", "net-ca", "net-cert", "net-key"):
                self.query_one(f"#{wid}").disabled = not event.value

    def _value(self, wid: str) -> str:
        return self.query_one(f"#{wid}", Input).value

    def network(self) -> Network:
        """The Network the form describes; raises FormError naming the bad field."""
        address = self._value("net-address").strip()
        if not address:
            raise FormError("net-address", "the peer's address is empty")
        port = int(_number(self._value("net-port"), "net-port", "port", int, 1))
        if port > 65535:
            raise FormError("net-port", f"port {port} is out of range (1-65535)")
        tls = None
        if self.query_one("#net-tls", Checkbox).value:
            cert = self._value("net-cert").strip() or None
            key = self._value("net-key").strip() or None
            if key and not cert:
                raise FormError("net-cert", "a TLS key file needs its certificate file")
            tls = TLSOptions(ca_file=self._value("net-ca").strip() or None, cert_file=cert,
                             key_file=key, verify=self.query_one("#net-verify", Checkbox).value)
        return Network(
            address=address,
            port=port,
            calling_aet=_ae_title(self._value("net-calling"), "net-calling", "calling"),
            called_aet=_ae_title(self._value("net-called"), "net-called", "called"),
            acse_timeout=_number(self._value("net-acse"), "net-acse", "ACSE timeout", float, 0.1),
            dimse_timeout=_number(self._value("net-dimse"), "net-dimse", "DIMSE timeout", float,
                                  0.1),
            network_timeout=_number(self._value("net-network"), "net-network", "network timeout",
                                    float, 0.1),
            max_pdu=int(_number(self._value("net-pdu"), "net-pdu", "max PDU", int, 0)),
            tls=tls,
        )

    def fill(self, network: Network) -> None:
        values = {
            "net-address": network.address,
            "net-port": str(network.port),
            "net-calling": network.calling_aet,
            "net-called": network.called_aet,
            "net-acse": f"{network.acse_timeout:g}",
            "net-dimse": f"{network.dimse_timeout:g}",
            "net-network": f"{network.network_timeout:g}",
            "net-pdu": str(network.max_pdu),
        }
        tls = network.tls
        values.update({
            "net-ca": (tls.ca_file or "") if tls else "",
            "net-cert": (tls.cert_file or "") if tls else "",
            "net-key": (tls.key_file or "") if tls else "",
        })
        for wid, value in values.items():
            self.query_one(f"#{wid}", Input).value = value
        self.query_one("#net-tls", Checkbox).value = tls is not None
        self.query_one("#net-verify", Checkbox).value = tls.verify if tls else True
        for wid in ("net-verify", "net-ca", "net-cert", "net-key"):
            self.query_one(f"#{wid}").disabled = tls is None
