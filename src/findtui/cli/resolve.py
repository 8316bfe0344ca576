"""Options + profiles -> one frozen run spec.

Precedence: options given > ``--query``'s profile > the node profile > the connection
model's defaults (engine.network). The connection is validated by the model's own
rules (``network_from``); the CLI only says which option to fix.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from findtui.cli.options import NETWORK_OPTIONS
from findtui.engine.network import DEFAULTS, Network, NetworkError, network_from
from findtui.engine.settings import SETTINGS, cli_hint


class UsageError(ValueError):
    """Bad or conflicting options (exit 2)."""


class OptionValueError(UsageError):
    """An option's value is not one the connection can take (``profiles add``: exit 1)."""


@dataclass(frozen=True)
class RunSpec:
    """Everything one batch run needs, resolved: what to ask, where, and where results go."""

    request: object  # engine.query.FindRequest
    keys: tuple[str, ...]  # the keys as given (their order is the CSV's column order)
    file: str | None = None  # -f
    output_format: str = "log"
    output: str | None = None
    write: bool = False
    output_directory: str = "."
    overwrite: bool = False
    csv_excel_safe: bool = False  # --csv-excel-safe
    node_profile: str | None = None
    query_profile: str | None = None
    demo: bool = False  # the embedded demo SCP (a history re-run starts one)
    no_history: bool = False  # --no-history
    split: str | None = None  # --split MODE
    split_from: str | None = None  # --split-from YYYYMMDD
    retrieve: RetrieveSpec | None = None  # --retrieve: fetch the matches afterwards
    query_list: object = None  # --query-list: engine.querylist.QueryList, read and checked
    parallel: int = 1  # --parallel N: associations per node for a query list
    extra_nodes: tuple = ()  # further --profile nodes: (name, FindRequest) each
    dedupe: bool = False  # --dedupe


@dataclass(frozen=True)
class RetrieveSpec:
    """--retrieve and its options, checked (defaults: engine.retrieve)."""

    method: str  # get or move
    layout: str
    store_port: int
    move_destination: str | None = None
    store_host: str = ""


def resolve_options(args: argparse.Namespace) -> None:
    """Fill what the command line left unset from the profiles (raises ProfileError).

    The node profile is --profile, else (without addr) the query profile's node, else
    (without addr, with --batch or --query) the default node profile. Sets
    args.node_profile / args.query_profile to the names used (for the history) and
    args.node_network to the node's connection.
    """
    node = query = None
    args.node_profile = args.query_profile = None
    args.extra_nodes = []
    names = args.profile or []
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"--profile {twice} is given twice")
    if len(names) > 1 and not args.batch:
        raise UsageError("several --profile nodes need --batch (the terminal UI opens on one)")
    if len(names) > 1 and args.addr is not None:
        raise UsageError("give several --profile nodes or addr port, not both")
    use_default = args.addr is None and (args.batch or args.query)
    if names or args.query or use_default:
        from findtui.config.schema import ProfileNotFoundError
        from findtui.config.store import Store

        store = Store()
        profiles = store.load()
        if args.query:
            query = profiles.get("query", args.query, store.path)
        node_name = names[0] if names else None
        args.extra_nodes = [profiles.get("node", name, store.path) for name in names[1:]]
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
    args.node_network = node.network if node else None
    if node is not None:
        if args.addr is None:
            args.addr = node.network.address
        if args.port is None:
            args.port = node.network.port
    if args.model is None:
        if query is not None:
            args.model = query.model.value
        elif node is not None and node.model is not None:
            args.model = node.model.value
        else:
            args.model = "P"
    if query is not None:
        from findtui.config.schema import EXT_NEG_FIELDS

        args.keyword = [*query.identifier_keys(), *args.keyword]
        for name, attr in EXT_NEG_FIELDS.items():
            setattr(args, name, getattr(args, name) or getattr(query.ext_neg, attr))
        args.output_format = args.output_format or query.output_format
        args.output = args.output or _expanded(query.output)
        args.write = args.write or query.write
        args.output_directory = args.output_directory or _expanded(query.output_directory)
        args.overwrite = args.overwrite or query.overwrite
        # the profile's applies to its CSV, not to another format given here
        args.csv_excel_safe = args.csv_excel_safe or (
            query.csv_excel_safe and args.output_format == "csv")
    apply_node_retrieve(args, node)
    args.output_format = args.output_format or "log"
    args.output_directory = args.output_directory or "."


def apply_node_retrieve(args: argparse.Namespace, node) -> None:
    """The node profile's retrieve settings, kept for retrieve_spec (args.node_retrieve);
    with --retrieve, its folder is -od's default (after the query profile's)."""
    args.node_retrieve = node.retrieve if node is not None else None
    folder = node.retrieve.retrieve_folder if node is not None else None
    if args.retrieve is not None and folder:
        args.output_directory = args.output_directory or _expanded(folder)


def network_from_args(args: argparse.Namespace, base: Network | None = None) -> Network:
    """The connection the options describe, over ``base`` (a node profile's) or the
    defaults; raises UsageError naming the option to fix."""
    if (args.tls_ca or args.tls_cert or args.tls_key or args.tls_no_verify) and not args.tls \
            and (base is None or base.tls is None):
        raise UsageError("--tls-ca, --tls-cert, --tls-key and --tls-no-verify need --tls")
    data = base.to_dict() if base is not None else dict(DEFAULTS)
    data.pop("tls", None)
    if args.transfer_syntax or args.prefer_transfer_syntax:
        data.pop("transfer_syntax", None)
        data.pop("prefer_transfer_syntax", None)
    data.update({"address": args.addr, "port": args.port})
    data.update({name: getattr(args, name) for name in NETWORK_OPTIONS
                 if getattr(args, name) is not None})
    tls = base.tls if base is not None else None
    if args.tls or tls is not None:
        data["tls"] = {
            "ca_file": args.tls_ca or (tls.ca_file if tls else None),
            "cert_file": args.tls_cert or (tls.cert_file if tls else None),
            "key_file": args.tls_key or (tls.key_file if tls else None),
            "verify": not args.tls_no_verify and (tls.verify if tls else True),
        }
        data["tls"] = {k: v for k, v in data["tls"].items() if v is not None}
    try:
        network = network_from({k: v for k, v in data.items() if v is not None})
    except NetworkError as exc:
        raise OptionValueError(option_message(exc)) from None
    # TLS files named on the command line are where the user is: kept so in profiles and
    # the history, whatever folder a later run starts in.
    return network.with_absolute_paths(os.getcwd())


def option_message(exc: NetworkError) -> str:
    """A NetworkError in the CLI's words: options by their flags."""
    def name(setting: str) -> str:
        if setting in ("address", "port"):
            return f"the peer's {setting}"
        known = SETTINGS.get(setting)
        return known.flags[0] if known and known.flags else setting

    return exc.render(name)


def ext_neg_from_args(args: argparse.Namespace):
    from findtui.engine.models import ExtendedNegotiation

    return ExtendedNegotiation(
        relational=args.relational_query,
        dt_matching=args.dt_matching,
        fuzzy_names=args.fuzzy_names,
        timezone_adj=args.timezone_adj,
        enhanced_conversion=args.enhanced_conversion,
    )


def check_batch_options(args: argparse.Namespace) -> None:
    """What only a batch run needs (raises UsageError)."""
    if not args.file and not args.keyword:
        raise UsageError("-f and/or -k (or --query NAME) must be specified")
    if args.addr is None or args.port is None:
        raise UsageError("the address and port of the peer are required: findtui --batch addr "
                         "port -k ... (or --profile NAME)")
    if args.cancel is not None and args.cancel < 0:
        raise UsageError("--cancel takes a number of responses (0 or more)")
    if args.max_identifier_size is not None and args.max_identifier_size < 1024:
        raise UsageError("--max-identifier-size takes a number of bytes, 1024 or more")
    if args.split_from is not None and args.split is None:
        raise UsageError("--split-from needs --split")
    listed = getattr(args, "query_list", None)
    several = len(getattr(args, "extra_nodes", None) or ())
    if args.skip_bad and not listed:
        raise UsageError("--skip-bad needs --query-list FILE")
    if args.parallel is not None:
        if not listed:
            raise UsageError("--parallel needs --query-list FILE (several nodes run at once "
                             "already)")
        if not 1 <= args.parallel <= 32:
            raise UsageError(f"--parallel takes 1 to 32 associations, not {args.parallel}")
    if args.dedupe and not (listed or several):
        raise UsageError("--dedupe needs several --profile nodes or --query-list FILE")
    if (listed or several) and args.cancel is not None:
        raise UsageError("--cancel is for one query, not with --query-list or several nodes")
    retrieve_spec(args)  # raises UsageError
    check_output_options(args)


def retrieve_spec(args: argparse.Namespace) -> RetrieveSpec | None:
    """The retrieve options, checked (raises UsageError); None without --retrieve.

    What the command line leaves unset comes from the node profile (args.node_retrieve,
    set by resolve_options), then from the engine's defaults; a profile's setting never
    conflicts with an option given (a move destination is simply unused by a C-GET)."""
    given = [flag for flag, value in (("--move-dest", args.move_dest),
                                      ("--store-port", args.store_port),
                                      ("--store-host", args.store_host),
                                      ("--layout", args.layout)) if value is not None]
    if args.retrieve is None:
        if given:
            raise UsageError(f"{given[0]} needs --retrieve get|move")
        return None
    node = getattr(args, "node_retrieve", None)
    method = args.retrieve or (node.retrieve if node is not None else None) or "get"
    if args.model == "W":
        raise UsageError("--retrieve needs a query/retrieve model (-P, -S or -O); worklist "
                         "items cannot be retrieved")
    if method == "get" and (args.move_dest or args.store_port is not None
                            or args.store_host):
        how = "" if args.retrieve else " (the node profile's retrieve method is get)"
        raise UsageError(f"--move-dest, --store-port and --store-host are for --retrieve "
                         f"move{how}")
    if args.store_port is not None and not 1 <= args.store_port <= 65535:
        raise UsageError(f"--store-port takes a TCP port (1-65535), not {args.store_port}")
    if args.move_dest is not None and not (0 < len(args.move_dest.strip()) <= 16):
        raise UsageError("--move-dest takes an AE title of 1 to 16 characters")
    from findtui.engine.retrieve import (
        DEFAULT_LAYOUT, DEFAULT_STORE_PORT, Layout, RetrieveError,
    )

    layout = args.layout or (node.layout if node is not None else None) or DEFAULT_LAYOUT
    try:
        Layout(layout)
    except RetrieveError as exc:
        raise UsageError(str(exc)) from None
    move_dest = args.move_dest.strip() if args.move_dest else None
    store_port, store_host = args.store_port, args.store_host
    if method == "move" and node is not None:
        move_dest = move_dest or node.move_destination
        store_port = node.store_port if store_port is None else store_port
        store_host = store_host or node.store_host
    return RetrieveSpec(method, layout,
                        DEFAULT_STORE_PORT if store_port is None else store_port,
                        move_dest, store_host or "")


def split_plan(spec: RunSpec):
    """The sub-queries of a --split run (raises UsageError naming the option or key: a
    query whose date cannot be split is refused before anything is sent)."""
    from findtui.engine.split import EARLIEST, SplitError, SplitPlan, parse_date

    try:
        earliest = parse_date(spec.split_from, "--split-from") if spec.split_from else EARLIEST
        return SplitPlan(spec.request, spec.split, earliest)
    except SplitError as exc:
        raise UsageError(str(exc)) from None


def checked_query_list(spec: RunSpec, args: argparse.Namespace):
    """--query-list read and checked against the query: every row's keys set on the
    -k/-f identifier, and with --split every row's date splittable (raises
    QueryListError naming the lines)."""
    import dataclasses

    from findtui.engine.querylist import check_rows, read_query_list

    def splittable(ds) -> None:
        split_plan(dataclasses.replace(spec, request=dataclasses.replace(spec.request,
                                                                         identifier=ds)))

    return check_rows(read_query_list(args.query_list, args.skip_bad), spec.request.identifier,
                      args.skip_bad, splittable if spec.split else None)


def check_output_options(args: argparse.Namespace) -> None:
    """Output options that go together (raises UsageError)."""
    if args.csv_excel_safe and args.output_format != "csv":
        raise UsageError("--csv-excel-safe applies to CSV: add --output-format csv")


def request_from_args(args: argparse.Namespace, identifier):
    """The FindRequest the options describe (raises UsageError)."""
    from findtui.engine.models import ExtendedNegotiationError, QueryModel
    from findtui.engine.query import FindRequest

    network = network_from_args(args, getattr(args, "node_network", None))
    ext_neg = ext_neg_from_args(args)
    try:
        ext_neg.validate(QueryModel(args.model))
    except ExtendedNegotiationError as exc:
        raise UsageError(str(exc)) from None
    limits = {} if args.max_identifier_size is None else {
        "max_identifier_size": args.max_identifier_size}
    return FindRequest(network=network, identifier=identifier, model=QueryModel(args.model),
                       ext_neg=ext_neg, cancel_after=args.cancel, **limits)


def spec_from_args(args: argparse.Namespace, request) -> RunSpec:
    """The run spec of a batch run: ``request`` (from request_from_args, its identifier
    built), the keys as given and where the results go."""
    return RunSpec(
        request=request, keys=tuple(args.keyword), file=args.file,
        output_format=args.output_format, output=args.output, write=args.write,
        output_directory=args.output_directory, overwrite=args.overwrite,
        csv_excel_safe=args.csv_excel_safe, node_profile=args.node_profile,
        query_profile=args.query_profile, no_history=args.no_history, split=args.split,
        split_from=args.split_from, retrieve=retrieve_spec(args),
        parallel=args.parallel or 1, dedupe=args.dedupe,
        extra_nodes=tuple((node.name, _node_request(args, node, request))
                          for node in getattr(args, "extra_nodes", None) or ()))


def _node_request(args: argparse.Namespace, node, request):
    """``request`` sent to a further --profile node: its connection, with the options
    given on the command line over it (as for the first node)."""
    import copy
    import dataclasses

    own = copy.copy(args)
    own.addr, own.port = node.network.address, node.network.port
    return dataclasses.replace(request, network=network_from_args(own, node.network))


def hinted(message: str, settings) -> str:
    """An engine message with the CLI's pointer to the options to check."""
    return message + cli_hint(settings)


def _expanded(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else path
