"""Command line: findscu's options and defaults (shared/seed/findscu.rst), plus ours.

`findtui --batch addr port -k ...` runs one C-FIND headless. Exit codes are
documented in the README (ExitCode below).
"""

from __future__ import annotations

import argparse
import enum
import logging
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from findtui import __version__


class ExitCode(enum.IntEnum):
    OK = 0  # success, also with no matches, or a warning status
    BAD_INPUT = 1  # bad key, unreadable query file
    USAGE = 2  # bad options (argparse)
    NETWORK = 3  # association rejected/aborted, unreachable, timed out, broken mid-query
    FAILURE_STATUS = 4  # the SCP answered with a failure status
    CANCELLED = 5  # cancelled (--cancel, Ctrl-C)
    OUTPUT = 6  # results could not be written (folder, disk full, file exists)


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
            "'findtui demo-scp --help'."
        ),
        usage="findtui [options] [addr port | --profile NAME] "
              "(-k keyword and/or -f file-in and/or --query NAME)",
    )
    p.add_argument("addr", nargs="?", help="TCP/IP address or hostname of DICOM peer")
    p.add_argument("port", nargs="?", type=int, help="TCP/IP port number of peer")
    p.add_argument("--version", action="version", version=f"findtui {__version__}")

    gen = p.add_argument_group("General Options")
    gen.add_argument("-q", "--quiet", dest="log_type", action="store_const", const="q",
                     help="quiet mode, prints no warnings or errors")
    gen.add_argument("-v", "--verbose", dest="log_type", action="store_const", const="v",
                     help="verbose mode, prints processing details (default)")
    gen.add_argument("-d", "--debug", dest="log_type", action="store_const", const="d",
                     help="debug mode, prints debugging information")
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

    _add_ext_neg_options(p.add_argument_group("Extended Negotiation Options"))

    prof = p.add_argument_group("Profile Options (see 'findtui profiles --help')")
    prof.add_argument("--profile", metavar="NAME",
                      help="take the peer and network options from node profile NAME; "
                           "options given here override it, and addr port become optional")
    prof.add_argument("--query", metavar="NAME",
                      help="start from query profile NAME (model, keys, extended negotiation, "
                           "output options, node); -k keys add to or override its keys")

    out = p.add_argument_group("Output Options")
    _add_output_options(out)
    out.add_argument("--batch", action="store_true", help="run the query headless and exit")
    out.add_argument("--demo", action="store_true",
                     help="start the embedded demo SCP and open the terminal UI on it")
    return p


# Option groups shared by the query command line and `findtui profiles add/add-query`.
# Defaults are None so that an option given on the command line can be told from one
# left out: those left out come from the profiles, then from findscu's defaults
# (resolve_options).

def _add_network_options(net) -> None:
    net.add_argument("-aet", "--calling-aet", metavar="[a]etitle",
                     help="set the local AE title (default: FINDSCU)")
    net.add_argument("-aec", "--called-aet", metavar="[a]etitle",
                     help="set the called AE title for the peer AE (default: ANY-SCP)")
    net.add_argument("-ta", "--acse-timeout", metavar="[s]econds", type=float,
                     help="timeout for ACSE messages (default: 30)")
    net.add_argument("-td", "--dimse-timeout", metavar="[s]econds", type=float,
                     help="timeout for DIMSE messages (default: 30)")
    net.add_argument("-tn", "--network-timeout", metavar="[s]econds", type=float,
                     help="timeout for the network (default: 30)")
    net.add_argument("-pdu", "--max-pdu", metavar="[n]umber of bytes", type=int,
                     help="set maximum receive PDU bytes to n bytes (default: 16382)")
    net.add_argument("--transfer-syntax", metavar="NAME",
                     choices=["implicit", "explicit", "deflated", "big"],
                     help="propose only this transfer syntax (implicit, explicit, deflated, big)")
    net.add_argument("--prefer-transfer-syntax", metavar="NAME",
                     choices=["implicit", "explicit", "deflated", "big"],
                     help="propose all four, this one first")


def _add_tls_options(tls) -> None:
    tls.add_argument("--tls", action="store_true", help="use TLS (certificates verified)")
    tls.add_argument("--tls-ca", metavar="FILE", help="CA certificates (PEM) to verify the peer")
    tls.add_argument("--tls-cert", metavar="FILE", help="our client certificate (PEM)")
    tls.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    tls.add_argument("--tls-no-verify", action="store_true",
                     help="do NOT verify the peer's certificate (insecure)")


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


def setup_logging(log_type: str, log_level: str | None) -> None:
    formatter = logging.Formatter("%(levelname).1s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
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


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from findtui.engine.models import ExtendedNegotiationError, QueryModel

    if not args.file and not args.keyword:
        parser.error("-f and/or -k (or --query NAME) must be specified")
    if args.addr is None or args.port is None:
        parser.error("the address and port of the peer are required: findtui --batch addr port "
                     "-k ... (or --profile NAME)")
    if not 0 < args.port < 65536:
        parser.error(f"port {args.port} is out of range (1-65535)")
    if args.transfer_syntax and args.prefer_transfer_syntax:
        parser.error("use --transfer-syntax or --prefer-transfer-syntax, not both")
    if args.cancel is not None and args.cancel < 0:
        parser.error("--cancel takes a number of responses (0 or more)")
    if (args.tls_ca or args.tls_cert or args.tls_key or args.tls_no_verify) and not args.tls:
        parser.error("--tls-ca, --tls-cert, --tls-key and --tls-no-verify need --tls")
    if args.tls_key and not args.tls_cert:
        parser.error("--tls-key needs --tls-cert")
    if args.max_pdu < 0:
        parser.error("-pdu must be 0 (unlimited) or more")
    try:
        ext_neg_from_args(args).validate(QueryModel(args.model))
    except ExtendedNegotiationError as exc:
        parser.error(str(exc))


NETWORK_OPTIONS = ("calling_aet", "called_aet", "acse_timeout", "dimse_timeout",
                   "network_timeout", "max_pdu")


def resolve_options(args: argparse.Namespace) -> None:
    """Fill what the command line left unset: given options > --query / --profile > defaults.

    The node profile is --profile, else (without addr) the query profile's node, else
    (without addr, with --batch or --query) the default node profile. Raises ProfileError.
    Sets args.node_profile / args.query_profile to the names used (for the history).
    """
    from dataclasses import fields

    from findtui.engine.query import Network

    node = query = None
    args.node_profile = args.query_profile = None
    use_default = args.addr is None and (args.batch or args.query)
    if args.profile or args.query or use_default:
        from findtui.engine.profiles import ProfileNotFoundError, Store

        store = Store()
        profiles = store.load()
        if args.query:
            query = profiles.get("query", args.query, store.path)
        node_name = args.profile
        if node_name is None and args.addr is None:
            node_name = (query.node if query else None) or (
                profiles.default_node if use_default else None)
            if query and query.node and query.node not in profiles.nodes:
                raise ProfileNotFoundError(
                    f"query profile {query.name!r} names node {query.node!r}, which is not a "
                    "node profile (give --profile NAME or addr port)", store.path)
        if node_name is not None:
            node = profiles.get("node", node_name, store.path)
    args.node_profile = node.name if node else None
    args.query_profile = query.name if query else None

    defaults = {f.name: f.default for f in fields(Network)}
    for name in NETWORK_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, getattr(node, name) if node else defaults[name])
    if node is not None:
        if args.addr is None:
            args.addr = node.address
        if args.port is None:
            args.port = node.port
        if node.tls is not None:
            args.tls = True
            args.tls_ca = args.tls_ca or _expanded(node.tls.ca_file)
            args.tls_cert = args.tls_cert or _expanded(node.tls.cert_file)
            args.tls_key = args.tls_key or _expanded(node.tls.key_file)
            args.tls_no_verify = args.tls_no_verify or not node.tls.verify
        if not args.transfer_syntax and not args.prefer_transfer_syntax:
            args.transfer_syntax = node.transfer_syntax
            args.prefer_transfer_syntax = node.prefer_transfer_syntax
    if args.model is None:
        if query is not None:
            args.model = query.model.value
        elif node is not None and node.model is not None:
            args.model = node.model.value
        else:
            args.model = "P"
    if query is not None:
        from findtui.engine.profiles import EXT_NEG_FIELDS

        args.keyword = [*query.identifier_keys(), *args.keyword]
        for name, attr in EXT_NEG_FIELDS.items():
            setattr(args, name, getattr(args, name) or getattr(query.ext_neg, attr))
        args.output_format = args.output_format or query.output_format
        args.output = args.output or _expanded(query.output)
        args.write = args.write or query.write
        args.output_directory = args.output_directory or _expanded(query.output_directory)
        args.overwrite = args.overwrite or query.overwrite
    args.output_format = args.output_format or "log"
    args.output_directory = args.output_directory or "."


def _expanded(path: str | None) -> str | None:
    import os

    return os.path.expanduser(path) if path else path


def ext_neg_from_args(args: argparse.Namespace):
    from findtui.engine.models import ExtendedNegotiation

    return ExtendedNegotiation(
        relational=args.relational_query,
        dt_matching=args.dt_matching,
        fuzzy_names=args.fuzzy_names,
        timezone_adj=args.timezone_adj,
        enhanced_conversion=args.enhanced_conversion,
    )


def request_from_args(args: argparse.Namespace, identifier):
    from findtui.engine.models import QueryModel, transfer_syntaxes
    from findtui.engine.query import FindRequest, Network, TLSOptions

    tls = None
    if args.tls:
        tls = TLSOptions(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
                         verify=not args.tls_no_verify)
    network = Network(
        address=args.addr, port=args.port, calling_aet=args.calling_aet,
        called_aet=args.called_aet, acse_timeout=args.acse_timeout,
        dimse_timeout=args.dimse_timeout, network_timeout=args.network_timeout,
        max_pdu=args.max_pdu, tls=tls,
    )
    if args.transfer_syntax:
        syntaxes = transfer_syntaxes(args.transfer_syntax, only=True)
    else:
        syntaxes = transfer_syntaxes(args.prefer_transfer_syntax)
    return FindRequest(
        network=network, identifier=identifier, model=QueryModel(args.model),
        ext_neg=ext_neg_from_args(args), transfer_syntaxes=syntaxes, cancel_after=args.cancel,
    )


def run_batch(args: argparse.Namespace) -> int:
    from findtui.engine import output
    from findtui.engine.keys import KeyPathError, QueryFileError, build_identifier
    from findtui.engine.query import (
        Associated, AssociationFailed, CancelSent, Fault, Final, FindQuery,
        IdentifierDecodeError, Pending,
    )
    from findtui.engine.sanitize import make_log_output_safe, warnings_to_log

    # Peer data never reaches the terminal raw; tracebacks only with -d.
    make_log_output_safe(tracebacks=LOG.isEnabledFor(logging.DEBUG))
    try:
        identifier = build_identifier(args.keyword, args.file)
    except (KeyPathError, QueryFileError) as exc:
        LOG.error(str(exc))
        return ExitCode.BAD_INPUT
    request = request_from_args(args, identifier)
    verbose = LOG.isEnabledFor(logging.INFO)

    with ExitStack() as stack:
        stack.enter_context(warnings_to_log(LOG))  # pydicom's warnings about peer data
        rsp_writer = None
        if args.write:
            rsp_writer = output.ResponseFileWriter(args.output_directory,
                                                   request.model.sop_class_uid, args.overwrite)
        table_writer = None
        try:
            if rsp_writer:
                rsp_writer.check()
            if args.output_format != "log":
                stream = sys.stdout
                if args.output:
                    mode = "w" if args.overwrite else "x"
                    try:
                        stream = open(args.output, mode, encoding="utf-8", newline="")
                        # After a full disk, closing retries the failed flush: not an error twice.
                        stack.callback(output.close_quietly, stream)
                    except FileExistsError:
                        raise output.OutputError(
                            f"{args.output!r} already exists; not overwritten (use --overwrite)"
                        ) from None
                    except OSError as exc:
                        raise output.OutputError(
                            f"cannot open {args.output!r}: {exc.strerror or exc}") from None
                table_writer = output.make_writer(
                    args.output_format, stream, output.table_columns(identifier, args.keyword))
        except output.OutputError as exc:
            LOG.error(str(exc))
            return ExitCode.OUTPUT

        query = FindQuery(request)
        interrupts = 0

        def on_sigint(signum, frame):
            nonlocal interrupts
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
            LOG.warning("Interrupted: sending C-CANCEL (Ctrl-C again to abort)")
            query.cancel()

        old_handler = signal.signal(signal.SIGINT, on_sigint)
        stack.callback(signal.signal, signal.SIGINT, old_handler)

        code = ExitCode.OK
        output_error = None
        received = 0
        last_event = None  # Final, AssociationFailed or Fault: how the run ended
        try:
            for event in query.events():
                if isinstance(event, Pending):
                    received += 1
                    if output_error is None:
                        try:
                            if rsp_writer:
                                rsp_writer.write(event)
                            if table_writer:
                                table_writer.write(event)
                        except output.OutputError as exc:
                            output_error = exc
                            LOG.error(f"{exc}; cancelling the query")
                            query.cancel()
                        except IdentifierDecodeError as exc:
                            LOG.error(f"{exc}; left out of --output-format")
                    if verbose:
                        try:
                            for line in output.pending_lines(event):
                                LOG.info(line)
                        except IdentifierDecodeError as exc:
                            if not table_writer:  # else already said above
                                kept = "; kept as received in -w files" if rsp_writer else ""
                                LOG.error(f"{exc}{kept}")
                elif isinstance(event, Associated):
                    for line in request.ext_neg.describe_accepted(request.model,
                                                                  event.ext_neg_reply):
                        LOG.info(line)
                elif isinstance(event, CancelSent):
                    LOG.info(f"Sent C-CANCEL after {event.after} responses")
                elif isinstance(event, Final):
                    last_event = event
                    lines = list(output.final_lines(event))
                    log = LOG.error if event.category == "failure" else LOG.info
                    if event.category == "warning":
                        log = LOG.warning
                    for line in lines:
                        log(line)
                    if event.category == "failure":
                        code = ExitCode.FAILURE_STATUS
                    elif event.category == "cancel":
                        code = ExitCode.CANCELLED
                elif isinstance(event, AssociationFailed):
                    last_event = event
                    LOG.error(event.message)
                    code = ExitCode.NETWORK
                elif isinstance(event, Fault):
                    last_event = event
                    LOG.error(event.message)
                    code = ExitCode.CANCELLED if query.cancel_requested else ExitCode.NETWORK
        except KeyboardInterrupt:
            LOG.error(f"Aborted after {received} responses")
            code = ExitCode.CANCELLED
        finally:
            if table_writer:
                try:
                    table_writer.close()
                except OSError:
                    pass
        record_history(args, request, received, last_event)
        if rsp_writer and rsp_writer.written:
            LOG.info(f"Wrote {len(rsp_writer.written)} response file(s) to "
                     f"{str(Path(args.output_directory))!r}")
        if output_error is not None:
            return ExitCode.OUTPUT
        return code


def record_history(args: argparse.Namespace, request, results: int, last_event) -> None:
    """Add the run to the history; a history that cannot be written never fails the query."""
    try:
        from findtui.engine.profiles import History, HistoryEntry

        History().append(HistoryEntry.from_run(
            request, results=results, last_event=last_event,
            node=getattr(args, "node_profile", None), query=getattr(args, "query_profile", None),
            keys=None if args.file else args.keyword, source="cli"))
    except Exception as exc:  # noqa: BLE001 - any failure here is only worth a warning
        LOG.warning(f"The run was not recorded in the history: {exc}")


def run_tui(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`findtui`, `findtui --demo`, or `findtui addr port -k ...` with the form filled."""
    from findtui.engine.keys import KeyPathError, QueryFileError, build_identifier

    if not sys.stdin.isatty() or not sys.stdout.isatty():
        parser.error("the terminal UI needs a terminal; add --batch to run the query headless")
    request = None
    if args.addr is not None or args.keyword or args.file:
        if args.addr is None or args.port is None:
            parser.error("give both the address and the port of the peer")
        try:
            identifier = build_identifier(args.keyword, args.file)
        except (KeyPathError, QueryFileError) as exc:
            print(f"findtui: {exc}", file=sys.stderr)
            return ExitCode.BAD_INPUT
        request = request_from_args(args, identifier)
    # The TUI shows its own log pane; nothing may write to the terminal under it.
    setup_logging("q", None)
    from findtui.app import make_app

    make_app(request, demo=args.demo,
             profiles=(getattr(args, "node_profile", None),
                       getattr(args, "query_profile", None))).run()
    return ExitCode.OK


def _resolve_or_problem(args: argparse.Namespace) -> str | None:
    """resolve_options, with a profile problem as a one-line message (None if fine)."""
    from findtui.engine.profiles import ProfileError

    try:
        resolve_options(args)
    except ProfileError as exc:
        return str(exc)
    return None


# --- findtui profiles / findtui history -----------------------------------------


def build_profiles_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="findtui profiles",
        description="Saved node profiles (a peer and how to reach it) and query profiles "
                    "(model, keys, options), in profiles.toml (see 'findtui profiles path' and "
                    "the README, 'Profiles'). Use them with 'findtui --profile NAME' and "
                    "'findtui --query NAME'.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the node and query profiles (* marks a default)")

    def kind_options(cmd: argparse.ArgumentParser) -> None:
        kind = cmd.add_mutually_exclusive_group()
        kind.add_argument("--node", dest="kind", action="store_const", const="node",
                          help="a node profile (needed only when a query has the same name)")
        kind.add_argument("--query", dest="kind", action="store_const", const="query",
                          help="a query profile")

    show = sub.add_parser("show", help="print a profile as TOML")
    show.add_argument("name")
    kind_options(show)

    add = sub.add_parser("add", help="save a node profile: NAME ADDR PORT [network options]",
                         usage="findtui profiles add NAME ADDR PORT [-aet -aec -ta -td -tn -pdu] "
                               "[--tls ...] [-P|-S|-O|-W] [--replace]")
    add.add_argument("name")
    add.add_argument("addr", help="TCP/IP address or hostname of the peer")
    add.add_argument("port", type=int, help="TCP/IP port number of the peer")
    _add_network_options(add.add_argument_group("Network Options"))
    _add_tls_options(add.add_argument_group("TLS Options"))
    _add_model_options(add.add_argument_group("Default query model for this node"))
    add.add_argument("--description", default="", help="a note shown with the profile")
    add.add_argument("--replace", action="store_true",
                     help="replace a node profile of that name (otherwise an error)")

    addq = sub.add_parser("add-query", help="save a query profile: NAME [-P|-S|-O|-W] -k ...",
                          usage="findtui profiles add-query NAME [-P|-S|-O|-W] (-k key and/or "
                                "-f file) [extended negotiation] [output options] [--node NODE] "
                                "[--replace]")
    addq.add_argument("name")
    _add_model_options(addq.add_argument_group("Query Information Model (default: -P)"))
    _add_key_options(addq.add_argument_group(
        "Query Keys (-k QueryRetrieveLevel=X is saved as the profile's level)"))
    _add_ext_neg_options(addq.add_argument_group("Extended Negotiation Options"))
    _add_output_options(addq.add_argument_group("Output Options"))
    addq.add_argument("--node", metavar="NODE",
                      help="the node profile this query runs against unless --profile or "
                           "addr port are given")
    addq.add_argument("--description", default="", help="a note shown with the profile")
    addq.add_argument("--replace", action="store_true",
                      help="replace a query profile of that name (otherwise an error)")

    rm = sub.add_parser("remove", help="delete a profile")
    rm.add_argument("name")
    kind_options(rm)

    ren = sub.add_parser("rename", help="rename a profile (defaults and queries follow)")
    ren.add_argument("name")
    ren.add_argument("new_name", metavar="NEW")
    kind_options(ren)

    dup = sub.add_parser("duplicate", help="copy a profile under a new name")
    dup.add_argument("name")
    dup.add_argument("new_name", metavar="NEW")
    kind_options(dup)

    default = sub.add_parser("default", help="make NAME the default node or query profile; "
                                             "without NAME, print the defaults")
    default.add_argument("name", nargs="?")
    default.add_argument("--clear", action="store_true",
                         help="remove the default (with --node or --query)")
    kind_options(default)

    exp = sub.add_parser("export", help="write all profiles (comments included) to stdout or FILE")
    exp.add_argument("file", nargs="?", metavar="FILE")
    exp.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")

    imp = sub.add_parser("import", help="add the profiles of FILE (a profiles.toml)")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--replace", action="store_true",
                     help="replace profiles that already exist (otherwise an error, nothing "
                          "imported)")

    sub.add_parser("path", help="print where the profiles and the history are kept")
    return p


def _profile_kind(parser: argparse.ArgumentParser, profiles, name: str, kind: str | None) -> str:
    """The kind of profile NAME is, from --node/--query or from which exists."""
    if kind is not None:
        return kind
    found = [k for k in ("node", "query") if name in profiles.of(k)]
    if len(found) == 2:
        parser.error(f"there is a node and a query profile named {name!r}: add --node or --query")
    return found[0] if found else "node"


def _node_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from findtui.engine.models import QueryModel
    from findtui.engine.profiles import NodeProfile
    from findtui.engine.query import TLSOptions

    if (args.tls_ca or args.tls_cert or args.tls_key or args.tls_no_verify) and not args.tls:
        parser.error("--tls-ca, --tls-cert, --tls-key and --tls-no-verify need --tls")
    if args.transfer_syntax and args.prefer_transfer_syntax:
        parser.error("use --transfer-syntax or --prefer-transfer-syntax, not both")
    given = {name: getattr(args, name) for name in NETWORK_OPTIONS
             if getattr(args, name) is not None}
    tls = None
    if args.tls:
        tls = TLSOptions(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key,
                         verify=not args.tls_no_verify)
    return NodeProfile(
        name=args.name, address=args.addr, port=args.port, tls=tls,
        model=QueryModel(args.model) if args.model else None,
        transfer_syntax=args.transfer_syntax, prefer_transfer_syntax=args.prefer_transfer_syntax,
        description=args.description, **given)


def _query_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from findtui.engine.keys import build_identifier, dataset_to_keys
    from findtui.engine.models import ExtendedNegotiation, QueryModel
    from findtui.engine.profiles import EXT_NEG_FIELDS, QueryProfile, split_level

    if not args.file and not args.keyword:
        parser.error("-f and/or -k must be specified")
    model = QueryModel(args.model or "P")
    keys = list(args.keyword)
    if args.file:  # the file's elements become keys, so the profile does not need the file
        keys = dataset_to_keys(build_identifier(keys, args.file))
    level = None
    if model is not QueryModel.WORKLIST:
        keys, level = split_level(keys)
    ext_neg = ExtendedNegotiation(**{attr: getattr(args, name)
                                     for name, attr in EXT_NEG_FIELDS.items()})
    return QueryProfile(
        name=args.name, model=model, level=level, keys=tuple(keys), ext_neg=ext_neg,
        output_format=args.output_format or "log", output=args.output, write=args.write,
        output_directory=args.output_directory, overwrite=args.overwrite, node=args.node,
        description=args.description)


def _describe(profile, default: bool) -> list[str]:
    from findtui.engine.profiles import MODEL_NAMES

    mark = "*" if default else " "
    if profile.kind == "node":
        extra = [MODEL_NAMES[profile.model]] if profile.model else []
        if profile.tls is not None:
            extra.append("TLS" if profile.tls.verify else "TLS (not verified)")
        cols = [f"{profile.address}:{profile.port}",
                f"{profile.calling_aet} -> {profile.called_aet}", *extra]
    else:
        cols = [MODEL_NAMES[profile.model]]
        if profile.level:
            cols.append(profile.level)
        cols.append(" ".join(profile.keys) or "(no keys)")
        if profile.node:
            cols.append(f"node: {profile.node}")
    line = f"  {mark} {profile.name:<16}  " + "  ".join(cols)
    lines = [line]
    if profile.description:
        lines.append(f"      {profile.description}")
    return lines


def profiles_main(argv: list[str]) -> int:
    """`findtui profiles ...`: exit 0, 1 for a profile problem (the file is left as it is),
    2 for bad usage."""
    parser = build_profiles_parser()
    args = parser.parse_args(argv)
    from findtui.engine.profiles import ProfileError, ProfileExistsError, Store, profile_toml

    store = Store()
    try:
        if args.command == "list":
            profiles = store.load()
            if not profiles.nodes and not profiles.queries:
                print(f"No profiles in {store.path} yet: "
                      "'findtui profiles add NAME ADDR PORT' saves one.")
                return ExitCode.OK
            print(f"Node profiles ({store.path}):")
            for p in profiles.nodes.values():
                print("\n".join(_describe(p, p.name == profiles.default_node)))
            print("Query profiles:")
            for p in profiles.queries.values():
                print("\n".join(_describe(p, p.name == profiles.default_query)))
            print("(* = default)")
        elif args.command == "show":
            profiles = store.load()
            kind = _profile_kind(parser, profiles, args.name, args.kind)
            profile = store.get(kind, args.name)
            sys.stdout.write(profile_toml(profile, default=profiles.default(kind) == args.name))
        elif args.command == "add":
            node = store.save(_node_from_args(parser, args), replace=args.replace)
            print(f"Saved node profile {node.name!r} in {store.path}")
        elif args.command == "add-query":
            query = store.save(_query_from_args(parser, args), replace=args.replace)
            print(f"Saved query profile {query.name!r} in {store.path}")
            if query.node and query.node not in store.load().nodes:
                print(f"Note: there is no node profile {query.node!r} yet", file=sys.stderr)
        elif args.command == "remove":
            kind = _profile_kind(parser, store.load(), args.name, args.kind)
            store.remove(kind, args.name)
            print(f"Removed {kind} profile {args.name!r}")
        elif args.command == "rename":
            kind = _profile_kind(parser, store.load(), args.name, args.kind)
            store.rename(kind, args.name, args.new_name)
            print(f"Renamed {kind} profile {args.name!r} to {args.new_name!r}")
        elif args.command == "duplicate":
            kind = _profile_kind(parser, store.load(), args.name, args.kind)
            store.duplicate(kind, args.name, args.new_name)
            print(f"Copied {kind} profile {args.name!r} to {args.new_name!r}")
        elif args.command == "default":
            if args.clear:
                if args.kind is None or args.name:
                    parser.error("--clear takes --node or --query, and no NAME")
                store.set_default(args.kind, None)
                print(f"No default {args.kind} profile")
            elif args.name is None:
                profiles = store.load()
                print(f"node: {profiles.default_node or '(none)'}")
                print(f"query: {profiles.default_query or '(none)'}")
            else:
                kind = _profile_kind(parser, store.load(), args.name, args.kind)
                store.set_default(kind, args.name)
                print(f"Default {kind} profile: {args.name!r}")
        elif args.command == "export":
            text = store.export_text()
            if args.file is None:
                sys.stdout.write(text)
            else:
                _export_to(args.file, text, args.overwrite)
                print(f"Exported {store.path} to {args.file}", file=sys.stderr)
        elif args.command == "import":
            imported = store.import_file(args.file, replace=args.replace)
            names = ", ".join(f"{kind} {name!r}" for kind, name in imported) or "nothing"
            print(f"Imported {names} from {args.file}")
        elif args.command == "path":
            print(f"profiles: {store.path}")
            print(f"history: {store.history.path}")
    except ProfileExistsError as exc:
        hint = " (add --replace to replace it)" if args.command.startswith("add") else ""
        print(f"findtui profiles: {exc}{hint}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except ProfileError as exc:
        print(f"findtui profiles: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as exc:
        print(f"findtui profiles: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK


def _export_to(path: str, text: str, overwrite: bool) -> None:
    from findtui.engine.profiles import ProfileError, atomic_write_text

    if Path(path).exists() and not overwrite:
        raise ProfileError("already exists; not overwritten (use --overwrite)", path)
    atomic_write_text(Path(path), text)


def history_main(argv: list[str]) -> int:
    """`findtui history`: the last runs, oldest first."""
    p = argparse.ArgumentParser(prog="findtui history",
                                description="The last queries run (by the CLI and the TUI).")
    p.add_argument("-n", "--last", type=int, default=20, metavar="N",
                   help="show the last N runs (default: 20; 0: all that are kept)")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    args = p.parse_args(argv)
    if args.last < 0:
        p.error("-n takes 0 or more")
    import json

    from findtui.engine.profiles import MODEL_NAMES, History

    entries = History().entries()
    if args.last:
        entries = entries[-args.last:]
    for e in entries:
        if args.json:
            print(json.dumps(e.to_json(), ensure_ascii=False))
            continue
        peer = f"{e.address}:{e.port}" + (f" ({e.node})" if e.node else "")
        query = f" [{e.query}]" if e.query else ""
        print(f"{e.time}  {peer}  {MODEL_NAMES[e.model]}{query}  {e.results} result"
              f"{'' if e.results == 1 else 's'}  {e.status}  {' '.join(e.keys)}")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "demo-scp":
        from findtui.engine import demo

        return demo.main(argv[1:])

    if argv and argv[0] == "profiles":
        return profiles_main(argv[1:])
    if argv and argv[0] == "history":
        return history_main(argv[1:])

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_type, args.log_level)
    problem = _resolve_or_problem(args)
    if problem is not None:
        if args.batch:
            LOG.error(problem)
        else:
            print(f"findtui: {problem}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if not args.batch:
        return run_tui(parser, args)
    _validate(parser, args)
    try:
        return int(run_batch(args))
    except BrokenPipeError:
        # `findtui ... | head`: the reader went away; not an error of ours.
        sys.stderr.close()
        return ExitCode.OK
