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
            "Other commands: 'findtui demo-scp --help'."
        ),
        usage="findtui [options] [addr port] (-k keyword and/or -f file-in)",
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

    net = p.add_argument_group("Network Options")
    net.add_argument("-aet", "--calling-aet", metavar="[a]etitle", default="FINDSCU",
                     help="set the local AE title (default: FINDSCU)")
    net.add_argument("-aec", "--called-aet", metavar="[a]etitle", default="ANY-SCP",
                     help="set the called AE title for the peer AE (default: ANY-SCP)")
    net.add_argument("-ta", "--acse-timeout", metavar="[s]econds", type=float, default=30,
                     help="timeout for ACSE messages (default: 30)")
    net.add_argument("-td", "--dimse-timeout", metavar="[s]econds", type=float, default=30,
                     help="timeout for DIMSE messages (default: 30)")
    net.add_argument("-tn", "--network-timeout", metavar="[s]econds", type=float, default=30,
                     help="timeout for the network (default: 30)")
    net.add_argument("-pdu", "--max-pdu", metavar="[n]umber of bytes", type=int, default=16382,
                     help="set maximum receive PDU bytes to n bytes (default: 16382)")
    net.add_argument("--transfer-syntax", metavar="NAME",
                     choices=["implicit", "explicit", "deflated", "big"],
                     help="propose only this transfer syntax (implicit, explicit, deflated, big)")
    net.add_argument("--prefer-transfer-syntax", metavar="NAME",
                     choices=["implicit", "explicit", "deflated", "big"],
                     help="propose all four, this one first")

    tls = p.add_argument_group("TLS Options")
    tls.add_argument("--tls", action="store_true", help="use TLS (certificates verified)")
    tls.add_argument("--tls-ca", metavar="FILE", help="CA certificates (PEM) to verify the peer")
    tls.add_argument("--tls-cert", metavar="FILE", help="our client certificate (PEM)")
    tls.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM)")
    tls.add_argument("--tls-no-verify", action="store_true",
                     help="do NOT verify the peer's certificate (insecure)")

    qm = p.add_argument_group("Query Information Model Options").add_mutually_exclusive_group()
    qm.add_argument("-P", "--patient", dest="model", action="store_const", const="P",
                    help="use patient root information model (default)")
    qm.add_argument("-S", "--study", dest="model", action="store_const", const="S",
                    help="use study root information model")
    qm.add_argument("-O", "--psonly", dest="model", action="store_const", const="O",
                    help="use patient/study only information model")
    qm.add_argument("-W", "--worklist", dest="model", action="store_const", const="W",
                    help="use modality worklist information model")
    p.set_defaults(model="P")

    q = p.add_argument_group("Query Options")
    q.add_argument("-k", "--keyword", metavar="[k]eyword", action="append", default=[],
                   help="add or override a query element: (gggg,eeee)=str, keyword=str, "
                        "Seq[0].Keyword=str")
    q.add_argument("-f", "--file", metavar="path to [f]ile",
                   help="use a DICOM file as the query dataset; -k adds to or overrides it")
    q.add_argument("--cancel", metavar="N", type=int,
                   help="send a C-CANCEL after N responses")

    ext = p.add_argument_group("Extended Negotiation Options")
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

    out = p.add_argument_group("Output Options")
    out.add_argument("-w", "--write", action="store_true",
                     help="write the responses to file as rsp000001.dcm, rsp000002.dcm, ...")
    out.add_argument("-od", "--output-directory", metavar="DIR", default=".",
                     help="folder for -w files (default: current directory)")
    out.add_argument("--overwrite", action="store_true",
                     help="allow -w and --output to replace existing files")
    out.add_argument("--output-format", choices=["log", "csv", "json", "jsonl"], default="log",
                     help="write results to stdout (or --output) as CSV, DICOM JSON or JSON "
                          "lines; 'log' (default) writes none")
    out.add_argument("--output", metavar="FILE", help="write --output-format here, not stdout")
    out.add_argument("--batch", action="store_true", help="run the query headless and exit")
    out.add_argument("--demo", action="store_true",
                     help="start the embedded demo SCP and open the terminal UI on it")
    return p


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
        parser.error("-f and/or -k must be specified")
    if args.addr is None or args.port is None:
        parser.error("the address and port of the peer are required: findtui --batch addr port -k ...")
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

    try:
        identifier = build_identifier(args.keyword, args.file)
    except (KeyPathError, QueryFileError) as exc:
        LOG.error(str(exc))
        return ExitCode.BAD_INPUT
    request = request_from_args(args, identifier)
    verbose = LOG.isEnabledFor(logging.INFO)

    with ExitStack() as stack:
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
                        stream = stack.enter_context(
                            open(args.output, mode, encoding="utf-8", newline=""))
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
                            LOG.error(str(exc))
                elif isinstance(event, Associated):
                    for line in request.ext_neg.describe_accepted(request.model,
                                                                  event.ext_neg_reply):
                        LOG.info(line)
                elif isinstance(event, CancelSent):
                    LOG.info(f"Sent C-CANCEL after {event.after} responses")
                elif isinstance(event, Final):
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
                    LOG.error(event.message)
                    code = ExitCode.NETWORK
                elif isinstance(event, Fault):
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
        if rsp_writer and rsp_writer.written:
            LOG.info(f"Wrote {len(rsp_writer.written)} response file(s) to "
                     f"{str(Path(args.output_directory))!r}")
        if output_error is not None:
            return ExitCode.OUTPUT
        return code


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

    make_app(request, demo=args.demo).run()
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "demo-scp":
        from findtui.engine import demo

        return demo.main(argv[1:])

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_type, args.log_level)
    if not args.batch:
        return run_tui(parser, args)
    _validate(parser, args)
    try:
        return int(run_batch(args))
    except BrokenPipeError:
        # `findtui ... | head`: the reader went away; not an error of ours.
        sys.stderr.close()
        return ExitCode.OK
