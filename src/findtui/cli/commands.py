"""`findtui profiles ...` and `findtui history ...`."""

from __future__ import annotations

import argparse
import sys

from findtui.cli.exitcodes import ExitCode
from findtui.cli.options import (
    _add_ext_neg_options,
    _add_key_options,
    _add_model_options,
    _add_network_options,
    _add_output_options,
    _add_tls_options,
    add_retrieve_options,
)
from findtui.engine.sanitize import visible


def _print(*parts: str, file=None) -> None:
    """Every line this prints goes through the sanitiser (profile text is user data)."""
    print(*(visible(p) for p in parts), file=file or sys.stdout, sep="\n")


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
                               "[--tls ...] [-P|-S|-O|-W] [--retrieve get|move --move-dest "
                               "--store-port --store-host --retrieve-folder --layout] "
                               "[--replace]")
    add.add_argument("name")
    add.add_argument("addr", help="TCP/IP address or hostname of the peer")
    add.add_argument("port", type=int, help="TCP/IP port number of the peer")
    _add_network_options(add.add_argument_group("Network Options"))
    _add_tls_options(add.add_argument_group("TLS Options"))
    _add_model_options(add.add_argument_group("Default query model for this node"))
    add_retrieve_options(add.add_argument_group(
        "Retrieve defaults for this node (options given to a run win)"), node_profile=True)
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
    from findtui.cli.resolve import OptionValueError, UsageError, network_from_args
    from findtui.config.schema import NodeProfile, ProfileError
    from findtui.engine.models import QueryModel

    try:
        network = network_from_args(args)
        retrieve = _retrieve_from_args(args)
    except OptionValueError as exc:
        raise ProfileError(str(exc)) from None
    except UsageError as exc:
        parser.error(str(exc))
    return NodeProfile(name=args.name, network=network,
                       model=QueryModel(args.model) if args.model else None,
                       description=args.description, retrieve=retrieve)


def _retrieve_from_args(args: argparse.Namespace):
    """A node's retrieve defaults from `profiles add`'s options (OptionValueError names the
    option); a relative folder is kept absolute, as given from where the user is."""
    import os

    from findtui.cli.resolve import OptionValueError, option_message
    from findtui.engine.network import NetworkError
    from findtui.engine.retrieve import retrieve_options_from

    folder = args.retrieve_folder
    if folder and not folder.startswith("~"):
        folder = os.path.abspath(folder)
    data = {"retrieve": args.retrieve, "move_destination": args.move_dest,
            "store_port": args.store_port, "store_host": args.store_host,
            "retrieve_folder": folder, "layout": args.layout}
    try:
        return retrieve_options_from({k: v for k, v in data.items() if v is not None})
    except NetworkError as exc:
        raise OptionValueError(option_message(exc)) from None


def _query_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace):
    from findtui.engine.keys import build_identifier, dataset_to_keys
    from findtui.engine.models import ExtendedNegotiation, QueryModel
    from findtui.config.schema import EXT_NEG_FIELDS, QueryProfile, split_level

    if not args.file and not args.keyword:
        parser.error("-f and/or -k must be specified")
    if args.csv_excel_safe and args.output_format != "csv":
        parser.error("--csv-excel-safe applies to CSV: add --output-format csv")
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
        output_directory=args.output_directory, overwrite=args.overwrite,
        csv_excel_safe=args.csv_excel_safe, node=args.node, description=args.description)


def _describe(profile, default: bool) -> list[str]:
    from findtui.config.schema import MODEL_NAMES

    mark = "*" if default else " "
    if profile.kind == "node":
        extra = [MODEL_NAMES[profile.model]] if profile.model else []
        net = profile.network
        if net.tls is not None:
            extra.append("TLS" if net.tls.verify else "TLS (not verified)")
        extra += _retrieve_words(profile.retrieve)
        cols = [f"{net.address}:{net.port}", f"{net.calling_aet} -> {net.called_aet}", *extra]
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


def _retrieve_words(options) -> list[str]:
    """A node's retrieve defaults in a few words ('retrieve: move to ARCHIVE, port 11113')."""
    o = options
    if not o.to_dict():
        return []
    words = [o.retrieve or "retrieve"]
    if o.move_destination:
        words.append(f"to {o.move_destination}")
    if o.store_port or o.store_host:
        words.append(f"store {o.store_host or '*'}:{o.store_port or 'default'}")
    if o.retrieve_folder:
        words.append(f"into {o.retrieve_folder}")
    if o.layout:
        words.append(f"as {o.layout}")
    return ["retrieve: " + " ".join(words) if o.retrieve else " ".join(words)]


def profiles_main(argv: list[str]) -> int:
    """`findtui profiles ...`: exit 0, 1 for a profile problem (the file is left as it is),
    2 for bad usage."""
    parser = build_profiles_parser()
    args = parser.parse_args(argv)
    from findtui.config.schema import ProfileError, ProfileExistsError, profile_toml
    from findtui.config.store import Store

    store = Store()
    try:
        if args.command == "list":
            profiles = store.load()
            if not profiles.nodes and not profiles.queries:
                _print(f"No profiles in {store.path} yet: "
                      "'findtui profiles add NAME ADDR PORT' saves one.")
                return ExitCode.OK
            _print(f"Node profiles ({store.path}):")
            for p in profiles.nodes.values():
                _print(*_describe(p, p.name == profiles.default_node))
            _print("Query profiles:")
            for p in profiles.queries.values():
                _print(*_describe(p, p.name == profiles.default_query))
            _print("(* = default)")
        elif args.command == "show":
            profiles = store.load()
            kind = _profile_kind(parser, profiles, args.name, args.kind)
            profile = store.get(kind, args.name)
            for line in profile_toml(profile,
                                     default=profiles.default(kind) == args.name).splitlines():
                _print(line)
        elif args.command == "add":
            node = store.save(_node_from_args(parser, args), replace=args.replace)
            _print(f"Saved node profile {node.name!r} in {store.path}")
        elif args.command == "add-query":
            query = store.save(_query_from_args(parser, args), replace=args.replace)
            _print(f"Saved query profile {query.name!r} in {store.path}")
            if query.node and query.node not in store.load().nodes:
                _print(f"Note: there is no node profile {query.node!r} yet", file=sys.stderr)
        elif args.command == "remove":
            kind = _profile_kind(parser, store.load(), args.name, args.kind)
            store.remove(kind, args.name)
            _print(f"Removed {kind} profile {args.name!r}")
        elif args.command == "rename":
            kind = _profile_kind(parser, store.load(), args.name, args.kind)
            store.rename(kind, args.name, args.new_name)
            _print(f"Renamed {kind} profile {args.name!r} to {args.new_name!r}")
        elif args.command == "duplicate":
            kind = _profile_kind(parser, store.load(), args.name, args.kind)
            store.duplicate(kind, args.name, args.new_name)
            _print(f"Copied {kind} profile {args.name!r} to {args.new_name!r}")
        elif args.command == "default":
            if args.clear:
                if args.kind is None or args.name:
                    parser.error("--clear takes --node or --query, and no NAME")
                store.set_default(args.kind, None)
                _print(f"No default {args.kind} profile")
            elif args.name is None:
                profiles = store.load()
                _print(f"node: {profiles.default_node or '(none)'}")
                _print(f"query: {profiles.default_query or '(none)'}")
            else:
                kind = _profile_kind(parser, store.load(), args.name, args.kind)
                store.set_default(kind, args.name)
                _print(f"Default {kind} profile: {args.name!r}")
        elif args.command == "export":
            text = store.export_text()
            if args.file is None:
                if sys.stdout.isatty():  # on a terminal: nothing raw; redirected: the file
                    _print(*text.splitlines())
                else:
                    sys.stdout.write(text)
            else:
                _export_to(args.file, text, args.overwrite)
                _print(f"Exported {store.path} to {args.file}", file=sys.stderr)
        elif args.command == "import":
            imported = store.import_file(args.file, replace=args.replace)
            names = ", ".join(f"{kind} {name!r}" for kind, name in imported) or "nothing"
            _print(f"Imported {names} from {args.file}")
        elif args.command == "path":
            _print(f"profiles: {store.path}")
            _print(f"history: {store.history.path}")
    except ProfileExistsError as exc:
        hint = " (add --replace to replace it)" if args.command.startswith("add") else ""
        _print(f"findtui profiles: {exc}{hint}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except ProfileError as exc:
        _print(f"findtui profiles: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as exc:
        _print(f"findtui profiles: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK


def _export_to(path: str, text: str, overwrite: bool) -> None:
    from findtui.config.schema import ProfileError
    from findtui.engine.output import OutputError, open_output

    try:
        with open_output(path, overwrite) as stream:
            stream.write(text)
    except OutputError as exc:
        hint = " (use --overwrite)" if "overwrite" in exc.settings else ""
        raise ProfileError(f"{exc}{hint}") from None


def history_main(argv: list[str]) -> int:
    """`findtui history [-n N] [--json]`: the last runs, oldest first, numbered;
    `findtui history rerun N`: run entry N again, exactly as it ran."""
    if argv and argv[0] == "rerun":
        return _rerun(argv[1:])
    if argv and argv[0] == "clear":
        return _clear(argv[1:])
    p = argparse.ArgumentParser(
        prog="findtui history",
        description="The last queries run (by the CLI and the TUI), numbered; "
                    "'findtui history rerun N' runs entry N again exactly as it ran; "
                    "'findtui history clear' forgets every run.")
    p.add_argument("-n", "--last", type=int, default=20, metavar="N",
                   help="show the last N runs (default: 20; 0: all that are kept)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object a line, with every setting of the run")
    args = p.parse_args(argv)
    if args.last < 0:
        p.error("-n takes 0 or more")
    import json

    from findtui.config.history import History
    from findtui.config.schema import MODEL_NAMES
    from findtui.engine.sanitize import json_safe

    try:
        entries = list(enumerate(History().entries(), 1))
    except OSError as exc:
        _print(f"findtui history: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.last:
        entries = entries[-args.last:]
    for number, e in entries:
        if args.json:
            print(json_safe(json.dumps({"number": number, **e.to_json()}, ensure_ascii=False)))
            continue
        peer = f"{e.address}:{e.port}" + (f" ({e.node})" if e.node else "")
        if e.demo:
            peer = "demo SCP"
        tls = " TLS" if e.network.tls is not None else ""
        query = f" [{e.query}]" if e.query else ""
        if e.split:
            query += f" split {e.split}" + (f" from {e.split_from}" if e.split_from else "")
        _print(f"{number:>3}  {e.time}  {peer}{tls}  {MODEL_NAMES[e.model]}{query}  {e.results} "
               f"result{'' if e.results == 1 else 's'}  {e.status}  {' '.join(e.keys)}")
        if e.retrieve is not None:
            _print(f"     retrieve: {e.retrieve.describe()}")
    return ExitCode.OK


def _rerun(argv: list[str]) -> int:
    from findtui.cli.batch import run_batch
    from findtui.cli.options import add_log_options, setup_logging
    from findtui.cli.resolve import RunSpec
    from findtui.config.history import History
    from findtui.engine.keys import KeyPathError

    p = argparse.ArgumentParser(
        prog="findtui history rerun",
        description="Run history entry N again with every setting it ran with (TLS, "
                    "timeouts, PDU size, transfer syntaxes, extended negotiation); a run "
                    "against the demo SCP starts the demo SCP again.")
    p.add_argument("number", type=int, metavar="N",
                   help="the entry's number in 'findtui history' (-1: the last run)")
    p.add_argument("--no-retrieve", action="store_true",
                   help="run only the query of an entry that retrieved its matches")
    add_log_options(p)
    _add_output_options(p.add_argument_group("Output Options"))
    args = p.parse_args(argv)
    if args.csv_excel_safe and args.output_format != "csv":
        p.error("--csv-excel-safe applies to CSV: add --output-format csv")
    setup_logging(args.log_type, None)
    try:
        entries = History().entries()
    except OSError as exc:
        _print(f"findtui history rerun: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    index = args.number - 1 if args.number > 0 else len(entries) + args.number
    if not entries or not 0 <= index < len(entries) or args.number == 0:
        _print(f"findtui history rerun: no entry {args.number} (the history has "
               f"{len(entries)}; see 'findtui history')", file=sys.stderr)
        return ExitCode.BAD_INPUT
    entry = entries[index]
    if not entry.complete:
        _print(f"findtui history rerun: entry {args.number} was recorded before findtui kept "
               "every setting (TLS, timeouts, PDU size, transfer syntaxes); it cannot be re-run "
               "exactly: run it again with --batch and its options", file=sys.stderr)
        return ExitCode.BAD_INPUT
    try:
        request = entry.find_request()
    except KeyPathError as exc:
        _print(f"findtui history rerun: {exc}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    retrieve, folder = None, None
    if entry.retrieve is not None and not args.no_retrieve:
        from findtui.cli.resolve import RetrieveSpec
        from findtui.engine.retrieve import DEFAULT_STORE_PORT

        r = entry.retrieve  # the same retrieve, into the same folder unless -od says
        retrieve = RetrieveSpec(r.method, r.layout, r.store_port or DEFAULT_STORE_PORT,
                                r.move_destination, r.store_host)
        folder = r.folder
    spec = RunSpec(request=request, keys=entry.keys, output_format=args.output_format or "log",
                   output=args.output, write=args.write,
                   output_directory=args.output_directory or folder or ".",
                   overwrite=args.overwrite, csv_excel_safe=args.csv_excel_safe,
                   node_profile=entry.node, query_profile=entry.query, demo=entry.demo,
                   retrieve=retrieve, split=entry.split, split_from=entry.split_from)
    try:
        return int(run_batch(spec))
    except BrokenPipeError:
        sys.stderr.close()
        return ExitCode.OK


def _clear(argv: list[str]) -> int:
    from findtui.config.history import History

    p = argparse.ArgumentParser(prog="findtui history clear",
                                description="Forget every recorded run (the history holds "
                                            "query keys: patient names, IDs, dates).")
    p.parse_args(argv)
    history = History()
    try:
        history.clear()
    except OSError as exc:
        _print(f"findtui history clear: {exc.filename or history.path}: {exc.strerror or exc}",
               file=sys.stderr)
        return ExitCode.BAD_INPUT
    _print(f"Cleared the history ({history.path})")
    return ExitCode.OK
