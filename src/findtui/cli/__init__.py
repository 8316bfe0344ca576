"""Command line: `findtui` (the TUI), `findtui --batch` (one C-FIND headless, like findscu),
`findtui profiles`, `findtui history`, `findtui demo-scp`, `findtui serve` (the TUI in a
web browser).

options.py builds the parser (findscu's names; network options from the engine's
connection model), resolve.py turns options + profiles into one RunSpec, batch.py
runs it and maps the run's outcome to an exit code, commands.py holds the profiles
and history commands. Exit codes are documented in the README (batch.ExitCode).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from findtui.cli.exitcodes import ExitCode
from findtui.cli.options import LOG, build_parser, setup_logging
from findtui.engine.sanitize import visible

__all__ = ["EXIT_CODES", "ExitCode", "build_parser", "exit_code", "main", "run_batch"]


def __getattr__(name: str):
    # The batch runner imports pydicom and pynetdicom: only when a run needs it, so that
    # `findtui --help` and the profile commands start at once.
    if name in ("EXIT_CODES", "exit_code", "run_batch"):
        from findtui.cli import batch

        return getattr(batch, name)
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "demo-scp":
        from findtui.demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "profiles":
        from findtui.cli.commands import profiles_main

        return profiles_main(argv[1:])
    if argv and argv[0] == "history":
        from findtui.cli.commands import history_main

        return history_main(argv[1:])
    if argv and argv[0] == "serve":
        from findtui.cli.serve import serve_main

        return serve_main(argv[1:])

    parser = build_parser()
    args = parser.parse_args(argv)  # --help and usage errors before any heavy import
    setup_logging(args.log_type, args.log_level)
    from findtui.cli.resolve import (
        UsageError, check_batch_options, request_from_args, resolve_options, spec_from_args,
        split_plan,
    )
    from findtui.config.schema import ProfileError

    try:
        resolve_options(args)
    except UsageError as exc:
        parser.error(str(exc))
    except ProfileError as exc:
        if args.batch:
            LOG.error(str(exc))
        else:
            print(visible(f"findtui: {exc}"), file=sys.stderr)
        return ExitCode.BAD_INPUT
    if not args.batch:
        return run_tui(parser, args)
    from findtui.engine.keys import KeyPathError, QueryFileError, build_identifier

    try:
        check_batch_options(args)
        request = request_from_args(args, None)  # options first, then the keys
    except UsageError as exc:
        parser.error(str(exc))
    try:
        identifier = build_identifier(args.keyword, args.file)
    except (KeyPathError, QueryFileError) as exc:
        LOG.error(str(exc))
        return ExitCode.BAD_INPUT
    spec = spec_from_args(args, dataclasses.replace(request, identifier=identifier))
    if args.query_list:
        from findtui.cli.resolve import checked_query_list
        from findtui.engine.querylist import QueryListError

        try:
            spec = dataclasses.replace(spec, query_list=checked_query_list(spec, args))
        except QueryListError as exc:
            for line in str(exc).splitlines():
                LOG.error(line)
            return ExitCode.BAD_INPUT
    elif spec.split:
        try:
            split_plan(spec)  # a date that cannot be split: said before anything is sent
        except UsageError as exc:
            parser.error(str(exc))
    from findtui.cli.batch import run_batch

    try:
        return int(run_batch(spec))
    except BrokenPipeError:
        # `findtui ... | head`: the reader went away; not an error of ours.
        sys.stderr.close()
        return ExitCode.OK


def run_tui(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`findtui`, `findtui --demo`, or `findtui addr port -k ...` with the form filled."""
    from findtui.cli.resolve import UsageError, request_from_args
    from findtui.engine.keys import KeyPathError, QueryFileError, build_identifier

    from findtui.cli.serve import is_served

    if not is_served() and (not sys.stdin.isatty() or not sys.stdout.isatty()):
        parser.error("the terminal UI needs a terminal; add --batch to run the query headless")
    request = None
    if args.addr is not None or args.keyword or args.file:
        if args.addr is None or args.port is None:
            parser.error("give both the address and the port of the peer")
        try:
            request = request_from_args(args, None)
        except UsageError as exc:
            parser.error(str(exc))
        try:
            request = dataclasses.replace(
                request, identifier=build_identifier(args.keyword, args.file))
        except (KeyPathError, QueryFileError) as exc:
            print(visible(f"findtui: {exc}"), file=sys.stderr)
            return ExitCode.BAD_INPUT
    # The TUI shows its own log pane; nothing may write to the terminal under it.
    setup_logging("q", None)
    from findtui.app import make_app

    app = make_app(request, demo=args.demo, profiles=(args.node_profile, args.query_profile),
                   no_history=args.no_history, hide_phi=args.hide_phi)
    app.run()
    # Textual shows the traceback of a crash and sets 1: a script must not see success.
    return ExitCode.INTERNAL if app.return_code else ExitCode.OK
