"""Every setting a user can get wrong, named once: its label, its findscu flag, what it takes.

Engine messages name a setting by its label ("the called AE title") and list the
settings to check in ``Hinted.settings``; each front end says where that setting
is in its own words: the CLI by flag (``-aec``), the TUI by form field. The CLI's
options are built from the same table (engine/network.py adds the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Setting:
    label: str  # how a sentence names it: "the called AE title" -> label "called AE title"
    flags: tuple[str, ...] = ()  # the CLI's option strings, findscu's first
    takes: str = ""  # what a valid value is, for "X must be <takes>, not ..."
    help: str = ""  # the CLI's help text (the default is added from the model)
    metavar: str | None = None
    form: str = ""  # where the TUI shows it: "Network tab, Called AE"


SETTINGS: dict[str, Setting] = {
        "address": Setting("address", (), "a host name or IP address",
                           "TCP/IP address or hostname of DICOM peer", None,
                           "Network tab, Address"),
        "port": Setting("port", (), "an integer from 1 to 65535", "TCP/IP port number of peer",
                        None, "Network tab, Port"),
        "calling_aet": Setting("calling AE title", ("-aet", "--calling-aet"),
                               "an AE title: 1 to 16 printable ASCII characters, no backslash",
                               "set the local AE title", "[a]etitle", "Network tab, Calling AE"),
        "called_aet": Setting("called AE title", ("-aec", "--called-aet"),
                              "an AE title: 1 to 16 printable ASCII characters, no backslash",
                              "set the called AE title for the peer AE", "[a]etitle",
                              "Network tab, Called AE"),
        "acse_timeout": Setting("ACSE timeout", ("-ta", "--acse-timeout"),
                                "a number of seconds, more than 0 and at most 86400",
                                "timeout for ACSE messages", "[s]econds",
                                "Network tab, ACSE timeout"),
        "dimse_timeout": Setting("DIMSE timeout", ("-td", "--dimse-timeout"),
                                 "a number of seconds, more than 0 and at most 86400",
                                 "timeout for DIMSE messages", "[s]econds",
                                 "Network tab, DIMSE timeout"),
        "network_timeout": Setting("network timeout", ("-tn", "--network-timeout"),
                                   "a number of seconds, more than 0 and at most 86400",
                                   "timeout for the network", "[s]econds",
                                   "Network tab, Net timeout"),
        "max_pdu": Setting("maximum PDU size", ("-pdu", "--max-pdu"),
                           "a number of bytes from 0 (unlimited) to 4294967295",
                           "set maximum receive PDU bytes to n bytes", "[n]umber of bytes",
                           "Network tab, Max PDU"),
        "transfer_syntax": Setting("transfer syntax", ("--transfer-syntax",),
                                   "one of implicit, explicit, deflated, big",
                                   "propose only this transfer syntax", "NAME",
                                   "the node profile's transfer_syntax"),
        "prefer_transfer_syntax": Setting("preferred transfer syntax",
                                          ("--prefer-transfer-syntax",),
                                          "one of implicit, explicit, deflated, big",
                                          "propose all four, this one first", "NAME",
                                          "the node profile's prefer_transfer_syntax"),
        "max_results": Setting("result limit", ("--max-results",),
                               "a number of matches from 1 to 4294967295",
                               "the most matches the peer returns for one query (e.g. Orthanc's "
                               "LimitFindResults): that many matches is reported as incomplete "
                               "(exit 7)", "N", "the node profile's max_results"),
        "split": Setting("split", ("--split",), "", "", None, ""),
        "tls": Setting("TLS", ("--tls",), "", "use TLS (certificates verified)", None,
                       "Network tab, TLS"),
        "tls.ca_file": Setting("TLS CA file", ("--tls-ca",), "a file path",
                               "CA certificates (PEM) to verify the peer", "FILE",
                               "Network tab, CA file"),
        "tls.cert_file": Setting("TLS certificate file", ("--tls-cert",), "a file path",
                                 "our client certificate (PEM)", "FILE", "Network tab, Cert file"),
        "tls.key_file": Setting("TLS key file", ("--tls-key",), "a file path",
                                "the private key of --tls-cert (PEM)", "FILE",
                                "Network tab, Key file"),
        "tls.verify": Setting("TLS certificate verification", ("--tls-no-verify",),
                              "true or false", "do NOT verify the peer's certificate (insecure)",
                              None, "Network tab, Verify certificate"),
        # Not part of the connection: the query, what a response may cost, where results go.
        "max_identifier_size": Setting("largest response identifier",
                                       ("--max-identifier-size",),
                                       "a number of bytes, 1024 or more",
                                       "abort when a response identifier is larger than this "
                                       "many bytes (default: 16777216)", "BYTES",
                                       "--max-identifier-size on the command line"),
        "model": Setting("information model", ("-P/-S/-O/-W",), "", "", None,
                         "Query tab, model"),
        "level": Setting("query/retrieve level", ("-k QueryRetrieveLevel=",), "", "", None,
                         "Query tab, level"),
        "keys": Setting("query keys", ("-k",), "", "", None, "Query tab, keys"),
        "output_directory": Setting("output folder", ("-od",), "", "", None,
                                    "the export dialog's folder"),
        "overwrite": Setting("overwrite", ("--overwrite",), "", "", None,
                             "the export dialog's Overwrite"),
        "retrieve": Setting("retrieve method", ("--retrieve",), "one of get, move", "", None,
                            "the node profile's retrieve method"),
        "move_destination": Setting("move destination", ("--move-dest",),
                                    "an AE title: 1 to 16 printable ASCII characters, no "
                                    "backslash", "", None, "the node profile's move destination"),
        "store_port": Setting("store port", ("--store-port",), "a TCP port from 1 to 65535", "",
                              None, "the node profile's store port"),
        "store_host": Setting("store address", ("--store-host",), "a host name or IP address",
                              "", None, "the node profile's store address"),
        "retrieve_folder": Setting("retrieve folder", ("--retrieve-folder",), "a non-empty path", "", None,
                                   "the node profile's retrieve folder"),
        "layout": Setting("file layout", ("--layout",), "a path template", "", None,
                          "the node profile's layout"),
}


@dataclass(frozen=True)
class Hinted:
    """A message plus the settings the user should look at (front ends render both)."""

    message: str
    settings: tuple[str, ...] = field(default=())


def cli_hint(settings: tuple[str, ...] | list[str]) -> str:
    """' (-aec, -aet)': the CLI's words for where to fix it ('' for none)."""
    flags = [SETTINGS[s].flags[0] for s in settings if s in SETTINGS and SETTINGS[s].flags]
    return f" ({', '.join(flags)})" if flags else ""


def form_hint(settings: tuple[str, ...] | list[str]) -> str:
    """' (Network tab, Called AE)': the TUI's words for the same."""
    places = [SETTINGS[s].form for s in settings if s in SETTINGS and SETTINGS[s].form]
    return f" ({'; '.join(places)})" if places else ""
