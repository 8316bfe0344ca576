"""The command line's options: findscu's names and defaults (shared/seed/findscu.rst), plus ours.

Network options are built from the connection model (engine.network, engine.settings);
every default is None here, so that a given option can be told from one left out
(cli.resolve fills those from the profiles, then from the model's defaults).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import get_args

from findtui import __version__
from findtui.engine.network import DEFAULTS, TransferSyntaxName
from findtui.engine.settings import SETTINGS

# The connection's settings that are plain options (TLS has its own group).
NETWORK_OPTIONS = ("calling_aet", "called_aet", "acse_timeout", "dimse_timeout",
                   "network_timeout", "max_pdu", "transfer_syntax", "prefer_transfer_syntax",
                   "max_results")

LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
}

LOG = logging.getLogger("findtui")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="findtui",
        description=(
            "A DICOM C-FIND query browser. Without --batch it opens the terminal UI; "
            "with --batch it runs one query headless, like findscu. "
            "Other commands: 'findtui profiles --help', 'findtui history --help', "
            "'findtui demo-scp --help', 'findtui serve --help' (the UI in a web browser)."
        ),
        usage="findtui [options] [addr port | --profile NAME] "
              "(-k keyword and/or -f file-in and/or --query NAME)",
    )
    p.add_argument("addr", nargs="?", help="TCP/IP address or hostname of DICOM peer")
    p.add_argument("port", nargs="?", type=int, help="TCP/IP port number of peer")
    p.add_argument("--version", action="version", version=f"findtui {__version__}")

    gen = add_log_options(p)
    gen.add_argument("-ll", "--log-level", metavar="[l]evel", type=str.lower,
                     choices=list(LOG_LEVELS),
                     help="one of critical, fatal, error, warning, warn, info, debug, trace")
    p.set_defaults(log_type="v")

    _add_network_options(p.add_argument_group("Network Options"))
    _add_tls_options(p.add_argument_group("TLS Options"))
    _add_model_options(p.add_argument_group("Query Information Model Options"))

    q = p.add_argument_group("Query Options")
    _add_key_options(q)
    q.add_argument("--cancel", metavar="N", type=int,
                   help="send a C-CANCEL after N responses")
    size = SETTINGS["max_identifier_size"]
    q.add_argument(*size.flags, metavar=size.metavar, type=int, help=size.help)
    q.add_argument("--split", choices=["auto", "day", "week", "month", "year"],
                   help="split the query on its date (StudyDate; worklist: "
                        "ScheduledProcedureStepStartDate) into sub-queries on one association, "
                        "so that a PACS's result limit loses nothing: 'auto' bisects any range "
                        "that comes back incomplete (down to a day); day/week/month/year cut "
                        "on the calendar. Matches are merged without duplicates")
    q.add_argument("--query-list", metavar="FILE",
                   help="run one query per row of a CSV file whose header names the keys "
                        "(e.g. AccessionNumber, or PatientID,StudyDate); -k keys are added to "
                        "every row. Every row is checked before anything is sent. Output rows "
                        "start with the row's number (column 'query')")
    q.add_argument("--skip-bad", action="store_true",
                   help="with --query-list: leave out the bad rows (listed) instead of "
                        "stopping with exit 1")
    q.add_argument("--parallel", metavar="N", type=int,
                   help="with --query-list: run the queries over N associations per node "
                        "at once (default 1)")
    q.add_argument("--dedupe", action="store_true",
                   help="with several --profile nodes or --query-list: one row per match "
                        "(the level's unique key), its 'node' and 'query' columns listing "
                        "where it was found (written once every query has ended)")
    q.add_argument("--split-from", metavar="YYYYMMDD",
                   help="with --split: where a query with no date, or an open range (-B), "
                        "starts (default: 19700101; it ends today)")

    _add_ext_neg_options(p.add_argument_group("Extended Negotiation Options"))

    prof = p.add_argument_group("Profile Options (see 'findtui profiles --help')")
    prof.add_argument("--profile", metavar="NAME", action="append",
                      help="take the peer and network options from node profile NAME; "
                           "options given here override it, and addr port become optional. "
                           "Give it several times (--batch) to query several nodes at once: "
                           "output rows then start with the node's name (column 'node')")
    prof.add_argument("--query", metavar="NAME",
                      help="start from query profile NAME (model, keys, extended negotiation, "
                           "output options, node); -k keys add to or override its keys")

    out = p.add_argument_group("Output Options")
    _add_output_options(out)
    out.add_argument("--batch", action="store_true", help="run the query headless and exit")
    out.add_argument("--no-history", action="store_true",
                     help="do not record this run in the history (also: FINDTUI_NO_HISTORY=1, "
                          "or history = false in the profiles file's [defaults])")
    out.add_argument("--demo", action="store_true",
                     help="start the embedded demo SCP and open the terminal UI on it")
    out.add_argument("--hide-phi", action="store_true",
                     help="terminal UI: mask patient names, IDs and birth dates on screen "
                          "(Ctrl+G toggles; also hide_phi = true in a node profile)")

    add_retrieve_options(p.add_argument_group(
        "Retrieve Options (with --batch: fetch what the query found)"))
    return p


# Option groups shared by the query command line and `findtui profiles add/add-query`.
# Defaults are None so that an option given on the command line can be told from one
# left out: those left out come from the profiles, then from findscu's defaults
# (resolve_options).

def _add_network_options(net) -> None:
    """findscu's network options, from the connection model (engine.network): names,
    help and defaults written once there."""
    for name in NETWORK_OPTIONS:
        setting = SETTINGS[name]
        default = DEFAULTS.get(name)
        kwargs: dict = {"metavar": setting.metavar, "dest": name}
        if name in ("transfer_syntax", "prefer_transfer_syntax"):
            kwargs["choices"] = list(get_args(TransferSyntaxName))
            help_text = f"{setting.help} ({', '.join(kwargs['choices'])})"
        elif default is None:  # an optional number, unset by default
            kwargs["type"] = int
            help_text = setting.help
        else:
            kwargs["type"] = {int: int, float: float}.get(type(default), str)
            help_text = f"{setting.help} (default: {default:g})" if isinstance(default, float) \
                else f"{setting.help} (default: {default})"
        net.add_argument(*setting.flags, help=help_text, **kwargs)


def _retrieve_method(text: str) -> str:
    if text not in ("get", "move", ""):  # "": --retrieve alone (the node profile's method)
        raise argparse.ArgumentTypeError(f"{text!r}: give get or move (or nothing: the node "
                                         "profile's method, else get)")
    return text


def add_retrieve_options(ret, node_profile: bool = False) -> None:
    """--retrieve and its options: for a run, or (``node_profile``) a node's defaults."""
    if node_profile:
        ret.add_argument("--retrieve", choices=["get", "move"],
                         help="how to retrieve from this node when 'findtui --retrieve' names "
                              "no method")
        ret.add_argument("--retrieve-folder", metavar="DIR",
                         help="where retrieves from this node go unless -od is given")
    else:
        ret.add_argument("--retrieve", nargs="?", const="", type=_retrieve_method,
                         metavar="get|move",
                         help="after the query, retrieve every match at the query's level by "
                              "C-GET or C-MOVE into -od DIR; without get|move: the node "
                              "profile's method, else get")
    ret.add_argument("--move-dest", metavar="AET",
                     help="C-MOVE destination (default: our -aet, received by our own Storage "
                          "SCP; another AE: the PACS sends there and nothing is written here)")
    ret.add_argument("--store-port", metavar="PORT", type=int,
                     help="port of our Storage SCP for C-MOVE, listening only while the "
                          "retrieve runs (default 11113)")
    ret.add_argument("--store-host", metavar="HOST",
                     help="address our Storage SCP listens on (default: all interfaces, since "
                          "the PACS must reach it)")
    ret.add_argument("--layout", metavar="TEMPLATE",
                     help="file path of each instance under -od, with {PatientID}, "
                          "{StudyInstanceUID}, {SeriesInstanceUID}, {SOPInstanceUID}, "
                          "{Modality}, {StudyDate}, ... (default "
                          "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/"
                          "{SOPInstanceUID}.dcm)")


def _add_tls_options(tls) -> None:
    tls.add_argument(*SETTINGS["tls"].flags, action="store_true", help=SETTINGS["tls"].help)
    for name in ("tls.ca_file", "tls.cert_file", "tls.key_file"):
        setting = SETTINGS[name]
        tls.add_argument(*setting.flags, metavar=setting.metavar, help=setting.help)
    tls.add_argument(*SETTINGS["tls.verify"].flags, action="store_true",
                     help=SETTINGS["tls.verify"].help)


def add_log_options(p: argparse.ArgumentParser):
    """findscu's -q/-v/-d (the default is -v); returns the group for more."""
    gen = p.add_argument_group("General Options")
    gen.add_argument("-q", "--quiet", dest="log_type", action="store_const", const="q",
                     help="quiet mode, prints no warnings or errors")
    gen.add_argument("-v", "--verbose", dest="log_type", action="store_const", const="v",
                     help="verbose mode, prints processing details (default)")
    gen.add_argument("-d", "--debug", dest="log_type", action="store_const", const="d",
                     help="debug mode, prints debugging information")
    p.set_defaults(log_type="v")
    return gen


def _add_model_options(group) -> None:
    qm = group.add_mutually_exclusive_group()
    qm.add_argument("-P", "--patient", dest="model", action="store_const", const="P",
                    help="use patient root information model (default)")
    qm.add_argument("-S", "--study", dest="model", action="store_const", const="S",
                    help="use study root information model")
    qm.add_argument("-O", "--psonly", dest="model", action="store_const", const="O",
                    help="use patient/study only information model")
    qm.add_argument("-W", "--worklist", dest="model", action="store_const", const="W",
                    help="use modality worklist information model")


def _add_key_options(q) -> None:
    q.add_argument("-k", "--keyword", metavar="[k]eyword", action="append", default=[],
                   help="add or override a query element: (gggg,eeee)=str, keyword=str, "
                        "Seq[0].Keyword=str")
    q.add_argument("-f", "--file", metavar="path to [f]ile",
                   help="use a DICOM file as the query dataset; -k adds to or overrides it")


def _add_ext_neg_options(ext) -> None:
    ext.add_argument("--relational-query", action="store_true",
                     help="request the use of relational queries (not with -W)")
    ext.add_argument("--dt-matching", action="store_true",
                     help="request the use of date-time matching (not with -W)")
    ext.add_argument("--fuzzy-names", action="store_true",
                     help="request the use of fuzzy semantic matching of person names")
    ext.add_argument("--timezone-adj", action="store_true",
                     help="request the use of timezone query adjustment")
    ext.add_argument("--enhanced-conversion", action="store_true",
                     help="request the use of enhanced multi-frame image conversion (not with -W)")


def _add_output_options(out) -> None:
    out.add_argument("-w", "--write", action="store_true",
                     help="write the responses to file as rsp000001.dcm, rsp000002.dcm, ...")
    out.add_argument("-od", "--output-directory", metavar="DIR",
                     help="folder for -w files (default: current directory)")
    out.add_argument("--overwrite", action="store_true",
                     help="allow -w and --output to replace existing files")
    out.add_argument("--output-format", choices=["log", "csv", "json", "jsonl"],
                     help="write results to stdout (or --output) as CSV, DICOM JSON or JSON "
                          "lines; 'log' (default) writes none")
    out.add_argument("--output", metavar="FILE", help="write --output-format here, not stdout")
    out.add_argument("--csv-excel-safe", action="store_true",
                     help="with --output-format csv: put a ' before cells starting with = + - @ "
                          "(or tab, CR), so that a spreadsheet does not run a PACS value as a "
                          "formula; off by default, as it changes the data")


def setup_logging(log_type: str, log_level: str | None) -> None:
    """findscu's log lines on stderr; every line made visible (no raw control, escape or
    bidi character from a peer, a profile or a file name), tracebacks only with -d."""
    from findtui.engine.sanitize import SafeFormatter

    handler = logging.StreamHandler(sys.stderr)
    level = {"q": None, "v": logging.INFO, "d": logging.DEBUG}[log_type]
    if log_level:
        level = LOG_LEVELS[log_level]
    for name in ("pynetdicom", "findtui"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = False
        if level is None:
            logger.addHandler(logging.NullHandler())
            logger.setLevel(logging.CRITICAL + 1)
        else:
            logger.addHandler(handler)
            logger.setLevel(level)
    handler.setFormatter(SafeFormatter(logging.Formatter("%(levelname).1s: %(message)s"),
                                       tracebacks=level is not None and level <= logging.DEBUG))


