"""The network form: where the SCP is and how to associate (findscu's network/TLS options)."""

from __future__ import annotations

import os

from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import Input, Label

from findtui.widgets.toggles import Checkbox

from findtui.engine.network import DEFAULTS, Network, NetworkError, network_from
from findtui.engine.settings import SETTINGS

# The widget of each setting (settings without one are carried over from the last fill()).
WIDGETS = {
    "address": "net-address", "port": "net-port", "calling_aet": "net-calling",
    "called_aet": "net-called", "acse_timeout": "net-acse", "dimse_timeout": "net-dimse",
    "network_timeout": "net-network", "max_pdu": "net-pdu", "tls": "net-tls",
    "tls.ca_file": "net-ca", "tls.cert_file": "net-cert", "tls.key_file": "net-key",
    "tls.verify": "net-verify",
}


class FormError(ValueError):
    """A form field holds a value the request cannot take; ``field_id`` is the widget to focus."""

    def __init__(self, field_id: str, message: str) -> None:
        super().__init__(message)
        self.field_id = field_id


class NetworkForm(Vertical):
    """Address, port, AE titles, timeouts, max PDU and TLS; ``network()`` reads it back."""

    _carried: dict = {}

    def compose(self) -> ComposeResult:
        with Grid(id="net-grid"):
            yield Label("Address", classes="form-label")
            yield Input(placeholder="host or IP", id="net-address", compact=True)
            yield Label("Port", classes="form-label")
            yield Input("104", id="net-port", type="integer", compact=True)
            yield Label("Calling AE", classes="form-label")
            yield Input(DEFAULTS["calling_aet"], id="net-calling", max_length=16, compact=True)
            yield Label("Called AE", classes="form-label")
            yield Input(DEFAULTS["called_aet"], id="net-called", max_length=16, compact=True)
            yield Label("ACSE timeout", classes="form-label")
            yield Input(f"{DEFAULTS['acse_timeout']:g}", id="net-acse", type="number", compact=True)
            yield Label("DIMSE timeout", classes="form-label")
            yield Input(f"{DEFAULTS['dimse_timeout']:g}", id="net-dimse", type="number", compact=True)
            yield Label("Net timeout", classes="form-label")
            yield Input(f"{DEFAULTS['network_timeout']:g}", id="net-network", type="number",
                        compact=True)
            yield Label("Max PDU", classes="form-label")
            yield Input(str(DEFAULTS["max_pdu"]), id="net-pdu", type="integer", compact=True)
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
        return self.query_one(f"#{wid}", Input).value.strip()

    def network(self) -> Network:
        """The Network the form describes, validated by the connection model's own rules;
        raises FormError naming the bad field."""
        data = {name: self._value(wid) for name, wid in WIDGETS.items()
                if "." not in name and name != "tls"}
        data.update(self._carried)
        if not data["address"]:
            raise FormError("net-address", "the peer's address is empty")
        if self.query_one("#net-tls", Checkbox).value:
            tls = {name.split(".")[1]: self._value(WIDGETS[name])
                   for name in ("tls.ca_file", "tls.cert_file", "tls.key_file")}
            data["tls"] = {k: v for k, v in tls.items() if v}
            data["tls"]["verify"] = self.query_one("#net-verify", Checkbox).value
        try:
            return network_from(data, strings=True).with_absolute_paths(os.getcwd())
        except NetworkError as exc:
            text = exc.render(lambda name: f"the {SETTINGS[name].label}" if name in SETTINGS
                              else name)
            raise FormError(WIDGETS.get(exc.setting, "net-address"), text) from None

    def fill(self, network: Network) -> None:
        # Settings without a widget (the transfer syntaxes) go out as they came in.
        self._carried = {k: v for k, v in network.to_dict().items()
                         if k not in WIDGETS and v is not None}
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
