"""engine/profiles.py: round-trip, comments kept, validation with file and line, corrupt files
never written over, atomic and concurrent saves, history bound, CLI > profile > defaults."""

from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from findtui.cli import build_parser
from findtui.cli.resolve import network_from_args, resolve_options
import findtui.config as P
from findtui.engine.models import ExtendedNegotiation, QueryModel, transfer_syntaxes
from findtui.config import (
    History,
    HistoryEntry,
    NodeProfile,
    ProfileError,
    ProfileExistsError,
    ProfileNotFoundError,
    QueryProfile,
    Store,
    find_request,
    parse_profiles,
)
from findtui.engine import files
from findtui.engine.network import Network, TLSOptions
from findtui.engine.query import AssociationFailed, Fault, Final
from findtui.engine.run import summarize

FULL_NODE = NodeProfile.of(
    "pacs one", address="pacs.example.org", port=11112, calling_aet="ME",
    called_aet="PACS", acse_timeout=5.0, dimse_timeout=12.5, network_timeout=7.0,
    max_pdu=0, tls=TLSOptions(ca_file="~/ca.pem", cert_file="/certs/c.pem", key_file="/certs/k.pem",
                              verify=False),
    model=QueryModel.STUDY, transfer_syntax="explicit", description="the main PACS",
)
FULL_QUERY = QueryProfile(
    name="today's CT", model=QueryModel.STUDY, level="STUDY",
    keys=("PatientName=DOE^*", "StudyDate=20240101-", "ModalitiesInStudy=CT\\MR",
          "ReferencedStudySequence[0].ReferencedSOPClassUID="),
    ext_neg=ExtendedNegotiation(relational=True, fuzzy_names=True), output_format="csv",
    output="out.csv", write=True, output_directory="~/rsp", overwrite=True, csv_excel_safe=True,
    node="pacs one", description="CT studies",
)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- locations ----------------------------------------------------------------


def test_env_var_sets_both_locations(findtui_config_dir):
    assert P.config_dir() == findtui_config_dir
    assert P.state_dir() == findtui_config_dir
    store = Store()
    assert store.path == findtui_config_dir / "profiles.toml"
    assert store.history.path == findtui_config_dir / "history.jsonl"


def test_platformdirs_without_env_var(monkeypatch):
    import platformdirs

    monkeypatch.delenv("FINDTUI_CONFIG_DIR")
    assert P.config_dir() == platformdirs.user_config_path("findtui", appauthor=False)
    assert P.state_dir() == platformdirs.user_state_path("findtui", appauthor=False)


def test_missing_file_is_empty_and_nothing_is_created(findtui_config_dir):
    assert Store().load() == P.Profiles()
    assert list(findtui_config_dir.iterdir()) == []


# --- round trip ---------------------------------------------------------------


def test_round_trip_every_field(findtui_config_dir):
    store = Store()
    store.save(FULL_NODE)
    store.save(FULL_QUERY)
    store.set_default("node", "pacs one")
    store.set_default("query", "today's CT")
    again = Store().load()
    assert again.nodes == {"pacs one": FULL_NODE}
    assert again.queries == {"today's CT": FULL_QUERY}
    assert (again.default_node, again.default_query) == ("pacs one", "today's CT")
    # and the file is TOML anyone can read
    import tomllib

    data = tomllib.loads(store.path.read_text())
    assert data["nodes"]["pacs one"]["port"] == 11112
    assert data["nodes"]["pacs one"]["tls"] == {"ca_file": "~/ca.pem",
                                                "cert_file": "/certs/c.pem",
                                                "key_file": "/certs/k.pem", "verify": False}
    assert data["queries"]["today's CT"]["keys"][2] == "ModalitiesInStudy=CT\\MR"
    assert data["queries"]["today's CT"]["relational_query"] is True


def test_minimal_profiles_take_findscu_defaults(tmp_path):
    profiles = parse_profiles('[nodes.a]\naddress = "h"\nport = 104\n[queries.q]\n')
    assert profiles.nodes["a"].network == Network("h", 104)
    assert profiles.queries["q"] == QueryProfile("q")


def test_profile_toml_parses_back():
    for profile in (FULL_NODE, FULL_QUERY):
        text = P.profile_toml(profile)
        loaded = parse_profiles(text)
        assert loaded.of(profile.kind)[profile.name] == profile


def test_node_to_network_and_find_request():
    net = FULL_NODE.network
    assert net.address == "pacs.example.org" and net.port == 11112
    assert (net.calling_aet, net.called_aet, net.max_pdu) == ("ME", "PACS", 0)
    # The path as written (history keeps it so); "~" is expanded when the file is opened.
    assert net.tls.ca_file == "~/ca.pem" and net.tls.verify is False
    request = find_request(FULL_QUERY, FULL_NODE, extra_keys=["PatientName=SMITH"])
    assert request.model is QueryModel.STUDY
    assert request.ext_neg == FULL_QUERY.ext_neg
    assert request.transfer_syntaxes == transfer_syntaxes("explicit", only=True)
    ds = request.identifier
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "SMITH"  # the extra key overrides the saved one
    assert list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert len(ds.ReferencedStudySequence) == 1


def test_from_network_and_from_request():
    net = Network("h", 4242, called_aet="X", tls=TLSOptions(verify=False))
    node = NodeProfile.from_network("n", net, model=QueryModel.PATIENT)
    assert node.network == net
    request = find_request(FULL_QUERY, FULL_NODE)
    query = QueryProfile.from_request("copy", request, node="pacs one")
    assert query.level == "STUDY"
    assert "QueryRetrieveLevel=STUDY" not in query.keys
    assert query.identifier() == request.identifier
    assert query.ext_neg == request.ext_neg and query.node == "pacs one"


# --- comments -----------------------------------------------------------------

COMMENTED = """\
    # My PACS list -- keep this comment
    [defaults]
    node = "main"  # the one I use most

    # the hospital PACS
    [nodes.main]
    address = "10.0.0.5"   # via the VPN
    port = 104
    called_aet = "PACS"
    # ask Bob before raising this
    dimse_timeout = 60

    [nodes.old]
    address = "10.0.0.6"
    port = 104

    [queries.today]
    model = "study"
    keys = [
        "StudyDate=20240101", # a fixed day
        "PatientName=",
    ]
    """


def test_comments_survive_every_kind_of_save(findtui_config_dir):
    store = Store()
    write(store.path, COMMENTED)
    store.save(NodeProfile.of("new", "10.0.0.7", 11112))
    main = store.get_node("main")
    store.save(dataclasses.replace(main, network=main.network.replace(port=11112)))  # in place
    store.remove("node", "old")
    store.rename("query", "today", "daily")
    store.set_default("query", "daily")
    text = store.path.read_text()
    for comment in ("# My PACS list -- keep this comment", "# the one I use most",
                    "# the hospital PACS", "# via the VPN", "# ask Bob before raising this",
                    "# a fixed day"):
        assert comment in text, comment
    loaded = store.load()
    assert loaded.nodes["main"].network.port == 11112
    assert loaded.nodes["main"].network.dimse_timeout == 60
    assert set(loaded.nodes) == {"main", "new"}
    assert loaded.queries["daily"].keys == ("StudyDate=20240101", "PatientName=")
    assert loaded.default_query == "daily"


# --- validation ---------------------------------------------------------------


@pytest.mark.parametrize("body, line, words", [
    ('[nodes.a]\naddress = "h"\nport = \n', 3, ["not valid TOML"]),
    ('[nodes.a]\naddress = "h\n', 2, ["not valid TOML"]),
    ('[nodes.a]\naddress = "h"\nport = 104\ncolour = "red"\nsize = 3\n', 4,
     ["unknown fields", "'colour'", "'size'", "[nodes.a]"]),
    ('[nodes.a]\naddress = "h"\n\nport = 70000\n', 4, ["port must be an integer from 1 to 65535, not 70000"]),
    ('[nodes.a]\naddress = "h"\nport = 0\n', 3, ["port must be", "not 0"]),
    ('[nodes.a]\naddress = "h"\nport = true\n', 3, ["port must be an integer"]),
    ('[nodes.a]\naddress = "h"\nport = "104"\n', 3, ["port must be an integer"]),
    ('[nodes.a]\naddress = "h"\nport = 1\ncalled_aet = "ABCDEFGHIJKLMNOPQ"\n', 4,
     ["called_aet", "16"]),
    ('[nodes.a]\naddress = "h"\nport = 1\ncalling_aet = ""\n', 4, ["calling_aet"]),
    ('[nodes.a]\naddress = "h"\nport = 1\nacse_timeout = -1\n', 4, ["acse_timeout"]),
    ('[nodes.a]\naddress = "h"\nport = 1\nmax_pdu = -5\n', 4, ["max_pdu"]),
    ('[nodes.a]\naddress = "h"\nport = 1\nmodel = "studyroot"\n', 4, ["model must be one of", "'studyroot'"]),
    ('[nodes.a]\naddress = "h"\nport = 1\ntransfer_syntax = "jpeg"\n', 4, ["transfer_syntax"]),
    ('[nodes.a]\naddress = "h"\nport = 1\n[nodes.a.tls]\nverfy = false\n', 5,
     ["unknown field 'verfy'", "[nodes.a.tls]"]),
    ('[nodes.a]\naddress = "h"\nport = 1\n[nodes.a.tls]\nkey_file = "k"\n', 5, ["key_file needs cert_file"]),
    ('[nodes.a]\nport = 1\n', 1, ["needs 'address'"]),
    ('\n[nodes]\na = 1\n', 3, ["must be a table"]),
    ('colour = 1\n', 1, ["unknown field 'colour'", "top level"]),
    ('[queries.q]\nmodel = "study"\nkeys = [\n  "PatientID=",\n  "PatinetName=X",\n]\n', 5,
     ["PatinetName", "did you mean PatientName"]),
    ('[queries.q]\nmodel = "study"\nlevel = "PATIENT"\n', 3, ["level 'PATIENT'"]),
    ('[queries.q]\nmodel = "worklist"\nlevel = "STUDY"\n', 3, ["no level"]),
    ('[queries.q]\nmodel = "worklist"\nrelational_query = true\n', 3,
     ["relational_query", "worklist"]),
    ('[queries.q]\nlevel = "STUDY"\nkeys = ["QueryRetrieveLevel=STUDY"]\n', 2, ["keep one"]),
    ('[queries.q]\noutput_format = "xml"\n', 2, ["output_format must be one of", "'xml'"]),
    ('[queries.q]\nfuzzy_names = "yes"\n', 2, ["fuzzy_names must be true or false"]),
    ('[queries.q]\nsort = "name"\n', 2, ["unknown field 'sort'"]),
    ('[queries.q]\noutput_format = "json"\ncsv_excel_safe = true\n', 3,
     ["csv_excel_safe applies to CSV", 'output_format = "csv"']),
    ('[defaults]\nnode = "nope"\n', 2, ["default node 'nope'"]),
    ('[nodes]\n"  padded " = {address = "h", port = 1}\n', 2, ["profile name"]),
    ('nodes = { a = { address = "h", port = 99999 } }\n', 1, ["port must be", "not 99999"]),
])
def test_invalid_files_name_the_file_and_line(tmp_path, body, line, words):
    path = write(tmp_path / "profiles.toml", body)
    with pytest.raises(ProfileError) as info:
        Store(tmp_path).load()
    err = info.value
    assert err.path == path and err.line == line, str(err)
    assert str(err).startswith(f"{path}, line {line}")
    for word in words:
        assert word in str(err)


@pytest.mark.parametrize("text, words", [
    ("a = " + "1" * 5000, "integer is too long"),
    ("a = " + "[" * 600 + "]" * 600, "nested too deeply"),
    ("[nodes.a]\naddress = 'h'\nport = 1\nacse_timeout = 1" + "0" * 400, "acse_timeout"),
    ("[nodes.a]\naddress = 'h'\nport = 1\ndimse_timeout = nan", "dimse_timeout"),
    ("[nodes.a]\naddress = 'h'\nport = 1\nnetwork_timeout = inf", "network_timeout"),
    ("[nodes.a]\naddress = 'h'\nport = 1" + "0" * 400, "port must be an integer from 1 to 65535"),
])
def test_extreme_values_are_profile_errors(text, words):
    with pytest.raises(ProfileError, match=words):
        parse_profiles(text, "x.toml")


def test_not_utf8_names_the_line(tmp_path):
    (tmp_path / "profiles.toml").write_bytes(b'[nodes.a]\naddress = "h\xff"\n')
    with pytest.raises(ProfileError, match=r"line 2: not UTF-8"):
        Store(tmp_path).load()


@pytest.mark.parametrize("profile", [
    NodeProfile.of("a", "h", 0),
    NodeProfile.of("a", "h", 1, calling_aet="X" * 17),
    NodeProfile.of("a", "has space", 1),
    NodeProfile.of("", "h", 1),
    NodeProfile.of("a", "h", 1, tls=TLSOptions(key_file="k")),
    QueryProfile("q", QueryModel.WORKLIST, level="STUDY"),
    QueryProfile("q", keys=("NotAKeyword=1",)),
    QueryProfile("q", output_format="xml"),
])
def test_invalid_profiles_are_not_saved(findtui_config_dir, profile):
    store = Store()
    with pytest.raises(ProfileError):
        store.save(profile)
    assert not store.path.exists()


BAD_FILES = [
    '# precious\n[nodes.a]\naddress = "h"\nport = \n',  # TOML syntax
    '# precious\n[nodes.a]\naddress = "h"\nport = 1\nhost = "x"\n',  # unknown field
    '# precious\n[nodes.a]\naddress = "h"\nport = 123456\n',  # out of range
]


@pytest.mark.parametrize("body", BAD_FILES)
def test_corrupt_file_is_never_written_over(findtui_config_dir, body):
    store = Store()
    store.path.write_text(body)
    before = store.path.read_bytes()
    attempts = [
        lambda: store.save(NodeProfile.of("b", "h", 1)),
        lambda: store.save(QueryProfile("q")),
        lambda: store.remove("node", "a"),
        lambda: store.rename("node", "a", "b"),
        lambda: store.duplicate("node", "a", "b"),
        lambda: store.set_default("node", "a"),
        lambda: store.export_text(),
    ]
    for attempt in attempts:
        with pytest.raises(ProfileError) as info:
            attempt()
        assert str(store.path) in str(info.value) and "line " in str(info.value)
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in findtui_config_dir.iterdir()) in (
        ["profiles.toml"], ["profiles.toml", "profiles.toml.lock"])


# --- store operations ---------------------------------------------------------

LAYOUTS = [
    'nodes = { a = { address = "h", port = 1 } }\n',
    '[nodes]\na = { address = "h", port = 1 }\n',
    '[nodes]\na.address = "h"\na.port = 1\n',
    'nodes.a.address = "h"\nnodes.a.port = 1\n',
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unusual_layouts_give_the_right_result_or_an_error(findtui_config_dir, layout):
    store = Store()
    operations = [
        (lambda: store.save(NodeProfile.of("b", "x", 2)), {"a": 1, "b": 2}),
        (lambda: store.save(NodeProfile.of("a", "h", 3, tls=TLSOptions())), {"a": 3}),
        (lambda: store.rename("node", "a", "z"), {"z": 1}),
        (lambda: store.remove("node", "a"), {}),
    ]
    for operation, ports in operations:
        store.path.write_text(layout)
        try:
            operation()
        except ProfileError as exc:
            assert "layout" in str(exc)
            assert store.path.read_text() == layout
        else:
            assert {n: p.network.port for n, p in store.nodes().items()} == ports



def test_rename_duplicate_remove_and_defaults(findtui_config_dir):
    store = Store()
    store.save(NodeProfile.of("a", "h", 1))
    store.save(QueryProfile("q", node="a"))
    store.set_default("node", "a")
    store.rename("node", "a", "b")
    loaded = store.load()
    assert list(loaded.nodes) == ["b"]
    assert loaded.default_node == "b" and loaded.queries["q"].node == "b"
    store.duplicate("node", "b", "c")
    assert store.get_node("c") == NodeProfile.of("c", "h", 1)
    with pytest.raises(ProfileExistsError):
        store.duplicate("node", "b", "c")
    with pytest.raises(ProfileExistsError):
        store.rename("node", "b", "c")
    with pytest.raises(ProfileExistsError):
        store.save(NodeProfile.of("c", "other", 2), replace=False)
    store.remove("node", "b")
    loaded = store.load()
    assert list(loaded.nodes) == ["c"] and loaded.default_node is None
    with pytest.raises(ProfileNotFoundError, match="no node profile 'b'; known: c"):
        store.get_node("b")
    with pytest.raises(ProfileNotFoundError):
        store.set_default("query", "nope")
    store.set_default("query", "q")
    store.set_default("query", None)
    assert store.default("query") is None
    assert "[defaults]" not in store.path.read_text()


def test_export_then_import(tmp_path):
    src = Store(tmp_path / "a")
    src.save(FULL_NODE)
    src.save(FULL_QUERY)
    src.set_default("node", FULL_NODE.name)
    exported = tmp_path / "export.toml"
    exported.write_text(src.export_text())
    assert exported.read_text() == src.path.read_text()

    dst = Store(tmp_path / "b")
    dst.save(NodeProfile.of("local", "h", 1))
    assert dst.import_file(exported) == [("node", FULL_NODE.name), ("query", FULL_QUERY.name)]
    loaded = dst.load()
    assert loaded.nodes[FULL_NODE.name] == FULL_NODE and "local" in loaded.nodes
    assert loaded.queries[FULL_QUERY.name] == FULL_QUERY
    assert loaded.default_node == FULL_NODE.name  # none was set here
    before = dst.path.read_bytes()
    with pytest.raises(ProfileExistsError, match="pacs one"):
        dst.import_file(exported)
    assert dst.path.read_bytes() == before
    dst.import_file(exported, replace=True)
    assert dst.load() == loaded


def test_import_of_a_bad_file_names_that_file(tmp_path):
    bad = write(tmp_path / "in.toml", '[nodes.a]\naddress = "h"\nport = 1\nhots = 1\n')
    store = Store(tmp_path / "s")
    with pytest.raises(ProfileError) as info:
        store.import_file(bad)
    assert info.value.path == bad and info.value.line == 4
    assert not store.path.exists()


# --- atomic writes and concurrency --------------------------------------------


def test_saves_leave_no_temporary_files(findtui_config_dir):
    store = Store()
    for i in range(10):
        store.save(NodeProfile.of(f"n{i}", "h", 100 + i))
    store.remove("node", "n0")
    assert sorted(p.name for p in findtui_config_dir.iterdir()) == [
        "profiles.toml", "profiles.toml.lock"]


def test_a_failed_write_keeps_the_old_file(findtui_config_dir, monkeypatch):
    store = Store()
    store.save(NodeProfile.of("a", "h", 1))
    before = store.path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(ProfileError, match="No space left on device"):
        store.save(NodeProfile.of("b", "h", 2))
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in findtui_config_dir.iterdir()) == [
        "profiles.toml", "profiles.toml.lock"]


def test_a_symlinked_file_stays_a_symlink(tmp_path):
    real = tmp_path / "dotfiles" / "findtui.toml"
    real.parent.mkdir()
    real.write_text("# mine\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "profiles.toml").symlink_to(real)
    Store(conf).save(NodeProfile.of("a", "h", 1))
    assert (conf / "profiles.toml").is_symlink()
    assert "# mine" in real.read_text() and "[nodes.a]" in real.read_text()


SAVER = """
import sys
from findtui.config import NodeProfile, QueryProfile, Store
tag, n = sys.argv[1], int(sys.argv[2])
store = Store()
for i in range(n):
    if i % 4 == 3:
        store.save(QueryProfile(f"{tag}-q{i}", keys=("PatientID=",)))
    else:
        store.save(NodeProfile.of(f"{tag}-{i}", "127.0.0.1", 1000 + i))
"""


def test_concurrent_saves_from_two_processes_lose_nothing(findtui_config_dir):
    n = 20
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, tag, str(n)],
                              stderr=subprocess.PIPE, text=True) for tag in ("x", "y")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    loaded = Store().load()
    expected_nodes = {f"{t}-{i}" for t in "xy" for i in range(n) if i % 4 != 3}
    expected_queries = {f"{t}-q{i}" for t in "xy" for i in range(n) if i % 4 == 3}
    assert set(loaded.nodes) == expected_nodes
    assert set(loaded.queries) == expected_queries


# --- override precedence: command line > profile > findscu defaults -----------


def resolved(*argv: str):
    """The options after resolve_options, with the connection they describe as ``.net``."""
    args = build_parser().parse_args(list(argv))
    resolve_options(args)
    if args.addr is not None:
        args.net = network_from_args(args, args.node_network)
    return args


def test_command_line_over_profile_over_defaults(findtui_config_dir):
    store = Store()
    store.save(NodeProfile.of("n", "10.0.0.5", 104, called_aet="PACS", acse_timeout=5.0,
                           max_pdu=0, model=QueryModel.STUDY, prefer_transfer_syntax="big",
                           tls=TLSOptions(ca_file="ca.pem", verify=False)))
    # nothing given: the profile, then findscu's defaults where the profile has nothing
    a = resolved("--batch", "--profile", "n", "-k", "PatientID=")
    n = a.net
    assert (n.address, n.port, n.called_aet, n.acse_timeout, n.max_pdu) == (
        "10.0.0.5", 104, "PACS", 5.0, 0)
    assert (n.calling_aet, n.dimse_timeout, n.network_timeout) == ("FINDSCU", 30.0, 30.0)
    assert a.model == "S"
    # a relative path in a profile is relative to the profiles file's folder
    assert n.tls == TLSOptions(ca_file=str(findtui_config_dir / "ca.pem"), verify=False)
    assert (n.transfer_syntax, n.prefer_transfer_syntax) == (None, "big")
    assert (a.output_format, a.output_directory) == ("log", ".")
    assert a.node_profile == "n" and a.query_profile is None
    # given on the command line: those win, one by one
    a = resolved("--batch", "--profile", "n", "10.9.9.9", "4242", "-aec", "OTHER", "-ta", "9",
                 "-pdu", "32768", "-P", "--tls-ca", "mine.pem", "--transfer-syntax", "implicit",
                 "-k", "PatientID=")
    n = a.net
    assert (n.address, n.port, n.called_aet, n.acse_timeout, n.max_pdu) == (
        "10.9.9.9", 4242, "OTHER", 9.0, 32768)
    # one given on the command line is relative to where the command runs
    assert a.model == "P" and n.tls == TLSOptions(ca_file=str(Path.cwd() / "mine.pem"),
                                                  verify=False)
    assert (n.transfer_syntax, n.prefer_transfer_syntax) == ("implicit", None)
    # no profile at all: findscu's defaults
    a = resolved("--batch", "h", "1", "-k", "PatientID=")
    n = a.net
    assert (n.calling_aet, n.called_aet, n.acse_timeout, n.max_pdu, a.model) == (
        "FINDSCU", "ANY-SCP", 30.0, 16382, "P")
    assert n.tls is None and a.node_profile is None


def test_query_profile_keys_model_and_options(findtui_config_dir):
    store = Store()
    store.save(NodeProfile.of("n", "h", 1, model=QueryModel.PATIENT))
    store.save(QueryProfile("q", QueryModel.STUDY, "STUDY", ("PatientID=A", "StudyDate="),
                            ext_neg=ExtendedNegotiation(fuzzy_names=True), output_format="csv",
                            output_directory="rsp", node="n"))
    a = resolved("--batch", "--query", "q", "-k", "PatientID=B", "-k", "AccessionNumber=")
    assert (a.addr, a.port, a.node_profile, a.query_profile) == ("h", 1, "n", "q")
    assert a.model == "S"  # the query's model beats the node's default model
    assert a.fuzzy_names is True and a.relational_query is False
    assert (a.output_format, a.output_directory) == ("csv", "rsp")
    assert a.keyword == ["QueryRetrieveLevel=STUDY", "PatientID=A", "StudyDate=",
                         "PatientID=B", "AccessionNumber="]
    from findtui.engine.keys import build_identifier

    ds = build_identifier(a.keyword)
    assert ds.PatientID == "B" and ds.QueryRetrieveLevel == "STUDY" and "AccessionNumber" in ds
    a = resolved("--batch", "--query", "q", "-W", "--output-format", "json", "other", "2")
    assert (a.model, a.output_format, a.addr, a.node_profile) == ("W", "json", "other", None)


def test_query_profiles_csv_excel_safe_applies_to_its_csv_only(findtui_config_dir):
    Store().save(QueryProfile("q", QueryModel.STUDY, "STUDY", ("PatientID=",),
                              output_format="csv", csv_excel_safe=True))
    assert resolved("--batch", "--query", "q", "h", "1").csv_excel_safe is True
    a = resolved("--batch", "--query", "q", "--output-format", "json", "h", "1")
    assert (a.output_format, a.csv_excel_safe) == ("json", False)


def test_default_node_when_no_address(findtui_config_dir):
    store = Store()
    store.save(NodeProfile.of("n", "h", 1))
    a = resolved("--batch", "-k", "PatientID=")
    assert a.addr is None and a.node_profile is None
    store.set_default("node", "n")
    a = resolved("--batch", "-k", "PatientID=")
    assert (a.addr, a.port, a.node_profile) == ("h", 1, "n")
    a = resolved("--batch", "x", "2", "-k", "PatientID=")
    assert (a.addr, a.node_profile) == ("x", None)


def test_unknown_profile_names_are_errors(findtui_config_dir):
    Store().save(QueryProfile("q", node="gone"))
    with pytest.raises(ProfileNotFoundError, match="no node profile 'nope'"):
        resolved("--batch", "--profile", "nope", "-k", "PatientID=")
    with pytest.raises(ProfileNotFoundError, match="no query profile 'nope'"):
        resolved("--batch", "--query", "nope")
    with pytest.raises(ProfileNotFoundError, match="names node 'gone'"):
        resolved("--batch", "--query", "q")


# --- history ------------------------------------------------------------------


def entry(i: int = 0, **kw) -> HistoryEntry:
    fields = dict(time=f"2024-01-01T00:00:{i:02d}+00:00", network=Network("h", 1),
                  model=QueryModel.STUDY,
                  keys=("QueryRetrieveLevel=STUDY", f"PatientID=P{i}"), results=i,
                  outcome="success", status="Success", status_code=0)
    return HistoryEntry(**{**fields, **kw})


def test_history_is_bounded_and_keeps_the_newest(tmp_path):
    history = History(tmp_path / "h.jsonl", limit=5)
    for i in range(12):
        history.append(entry(i))
    assert [e.results for e in history.entries()] == [7, 8, 9, 10, 11]
    assert len((tmp_path / "h.jsonl").read_text().splitlines()) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.jsonl", "h.jsonl.lock"]
    assert History().limit == P.HISTORY_LIMIT == 500


def test_history_round_trip_and_bad_lines_skipped(tmp_path):
    history = History(tmp_path / "h.jsonl")
    first = entry(1, node="n", query="q", ext_neg=("fuzzy_names",), source="tui")
    history.append(first)
    with open(tmp_path / "h.jsonl", "a") as f:
        f.write('{"torn": \n')  # e.g. a crash mid-write, or a hand edit
        f.write("[1, 2]\n")
    history.append(entry(2))
    assert history.entries() == [first, entry(2)]
    with open(tmp_path / "h.jsonl", "a") as f:
        f.write('{"time": "2024')  # torn, without its newline
    history.append(entry(3))
    assert history.entries() == [first, entry(2), entry(3)]
    line = json.loads((tmp_path / "h.jsonl").read_text().splitlines()[0])
    assert line["model"] == "study" and line["keys"][1] == "PatientID=P1"


def test_history_entry_from_run_and_rerun():
    request = find_request(FULL_QUERY, FULL_NODE)
    e = HistoryEntry.from_run(request, summarize([Final(0xC000)]), node="pacs one")
    assert (e.outcome, e.status, e.status_code, e.results) == (
        "failure", "Failure: Unable to Process", 0xC000, 0)
    assert e.address == "pacs.example.org" and e.model is QueryModel.STUDY
    assert e.ext_neg == ("relational", "fuzzy_names")
    assert "QueryRetrieveLevel=STUDY" in e.keys
    assert HistoryEntry.from_run(request, summarize([]), keys=["B=", "A="]).keys == ("B=", "A=")
    again = e.find_request()
    assert again.identifier == request.identifier and again.ext_neg == request.ext_neg
    # every setting it ran with: TLS, timeouts, PDU, transfer syntaxes
    assert again.network == FULL_NODE.network
    e = HistoryEntry.from_run(request, summarize([AssociationFailed("rejected", "Association rejected")]))
    assert (e.outcome, e.status, e.status_code) == ("network", "Association rejected", None)
    assert HistoryEntry.from_run(request, summarize([])).outcome == "aborted"
    assert HistoryEntry.from_json(e.to_json()) == e


def test_history_json_carries_every_setting_and_reruns_them():
    """A TLS run re-run from the history goes out with TLS, its timeouts, PDU and transfer
    syntax (it went out in plain TCP with findscu's defaults before)."""
    request = find_request(FULL_QUERY, FULL_NODE)
    line = json.loads(json.dumps(HistoryEntry.from_run(request, summarize([Final(0)])).to_json()))
    assert line["tls"] == {"ca_file": "~/ca.pem", "cert_file": "/certs/c.pem",
                           "key_file": "/certs/k.pem",
                           "verify": False}
    assert (line["acse_timeout"], line["dimse_timeout"], line["max_pdu"]) == (5.0, 12.5, 0)
    assert line["transfer_syntax"] == "explicit"
    rerun = HistoryEntry.from_json(line).find_request()
    assert rerun.network == FULL_NODE.network and rerun.network.tls is not None
    assert rerun.transfer_syntaxes == transfer_syntaxes("explicit", only=True)
    plain = json.loads(json.dumps(HistoryEntry.from_run(
        find_request(FULL_QUERY, NodeProfile.of("p", "h", 1)), summarize([Final(0)])).to_json()))
    assert plain["tls"] is None  # said, not left out


def test_old_history_entries_load_but_are_marked_incomplete():
    old = {"time": "2024-01-01T00:00:00+00:00", "address": "h", "port": 1,
           "called_aet": "PACS", "calling_aet": "FINDSCU", "model": "study",
           "keys": ["PatientID="], "results": 1, "outcome": "success", "status": "Success"}
    e = HistoryEntry.from_json(old)
    assert e.complete is False and e.network.called_aet == "PACS"
    assert HistoryEntry.from_json(json.loads(json.dumps(entry(1).to_json()))).complete is True


# --- fuzz ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text() | st.builds(json.dumps, st.dictionaries(
    st.sampled_from(["time", "address", "port", "model", "keys", "results", "outcome",
                     "status", "node", "ext_neg", "x"]),
    st.integers() | st.text(max_size=5) | st.none() | st.lists(st.text(max_size=3))))))
def test_history_reads_any_file(lines):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        history = History(path, limit=3)
        for e in history.entries():
            assert isinstance(e, HistoryEntry)
        history.append(entry(1))
        assert history.entries()[-1] == entry(1)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_loader_on_any_text_gives_profiles_or_profile_error(text):
    try:
        result = parse_profiles(text, "fuzz.toml")
    except ProfileError as exc:
        assert str(exc).startswith("fuzz.toml")
    else:
        assert isinstance(result, P.Profiles)


_scalars = (st.integers(-(2**63), 2**63 - 1) | st.integers() | st.floats() | st.booleans()
            | st.text(max_size=30) | st.sampled_from(
                ["study", "worklist", "P", "STUDY", "PatientID=", "csv", "h", "FINDSCU",
                 "PatinetName=X", "Seq[0].X=", "explicit", "x" * 17]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
_node_keys = st.sampled_from([*P.NODE_FIELDS, "colour"])
_query_keys = st.sampled_from([*P.QUERY_FIELDS, "sort"])
# Mostly plausible values, so that many documents are valid and get to the round trip.
_names = (st.sampled_from(["a", "b", "my pacs", "ü.x"])
          | st.from_regex(r"[a-z][a-z0-9 _.\[\]'\"-]{0,8}[a-z]", fullmatch=True)
          | st.text(max_size=10))
_node_values = {
    "address": st.sampled_from(["127.0.0.1", "pacs.example", "::1"]) | _scalars,
    "port": st.integers(1, 65535) | _scalars,
    "calling_aet": st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1,
                           max_size=16) | _scalars,
    "called_aet": st.sampled_from(["ANY-SCP", "PACS", "A B"]) | _scalars,
    "acse_timeout": st.floats(0.001, 1e6) | st.integers(1, 10**6) | _scalars,
    "max_pdu": st.integers(0, 2**32 - 1) | _scalars,
    "model": st.sampled_from(["patient", "study", "psonly", "worklist", "P", "S", "O", "W"]),
    "transfer_syntax": st.sampled_from(["implicit", "explicit", "deflated", "big", "jpeg"]),
    "description": st.text(max_size=20),
    "tls": st.fixed_dictionaries({}, optional={
        "ca_file": st.text(max_size=10), "cert_file": st.text(max_size=10),
        "key_file": st.text(max_size=10), "verify": st.booleans() | _scalars}),
    "colour": _values,
}
_query_values = {
    "model": _node_values["model"],
    "level": st.sampled_from(["PATIENT", "STUDY", "SERIES", "IMAGE", "study"]),
    "keys": st.lists(st.sampled_from(["PatientID=", "PatientName=DOE^*", "StudyDate=20240101-",
                                      "Seq[0].X=", "ReferencedStudySequence[1]=",
                                      "(0009,1001)LO=x", "QueryRetrieveLevel=SERIES",
                                      "ModalitiesInStudy=CT\\MR", "PatinetName="])
                     | st.text(max_size=15), max_size=4) | _values,
    "node": _names | _scalars,
    "fuzzy_names": st.booleans() | _scalars,
    "relational_query": st.booleans(),
    "output_format": st.sampled_from(["log", "csv", "json", "jsonl", "xml"]),
    "write": st.booleans(),
    "output_directory": st.text(max_size=10),
    "sort": _values,
}


def _plausible_table(values: dict, required: dict | None = None) -> st.SearchStrategy:
    return st.fixed_dictionaries(required or {}, optional=values)


_tables = st.fixed_dictionaries({}, optional={
    "nodes": st.dictionaries(_names, st.dictionaries(_node_keys, _values, max_size=8)
                             | _plausible_table(_node_values)
                             | _plausible_table(
                                 {k: v for k, v in _node_values.items()
                                  if k not in ("colour", "address", "port")},
                                 {"address": st.just("h"), "port": st.integers(1, 65535)}),
                             max_size=3),
    "queries": st.dictionaries(_names, st.dictionaries(_query_keys, _values, max_size=8)
                               | _plausible_table(_query_values)
                               | _plausible_table({"keys": st.lists(st.sampled_from(
                                   ["PatientID=", "StudyDate=20240101-",
                                    "ReferencedStudySequence[0].StudyInstanceUID="]),
                                   max_size=3),
                                   "model": st.sampled_from(["study", "patient"]),
                                   "level": st.just("STUDY"), "node": _names}),
                               max_size=3),
    "defaults": st.fixed_dictionaries({}, optional={"node": st.sampled_from(["a", "b"])})
                | st.dictionaries(st.sampled_from(["node", "query", "x"]), _names | _values,
                                  max_size=2),
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tables)
def test_loader_on_any_toml_document_gives_profiles_or_profile_error(data):
    try:
        text = tomlkit.dumps(data)
    except Exception:  # not representable in TOML (e.g. a NaN inside...): not our input
        return
    import tempfile

    # Parsed as the store's own file: relative TLS paths resolve against its folder, as
    # the store's load does (a file parsed elsewhere would resolve them elsewhere).
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        try:
            result = parse_profiles(text, str(store.path))
        except ProfileError as exc:
            assert str(exc).startswith(str(store.path))
            return
        # what loads also saves and loads back the same
        for profile in [*result.nodes.values(), *result.queries.values()]:
            again = parse_profiles(P.profile_toml(profile), str(store.path))
            assert again.of(profile.kind)[profile.name] == profile
        # and a save into it gives exactly what was asked, or an error and no change
        store.path.parent.mkdir(parents=True, exist_ok=True)
        store.path.write_text(text, encoding="utf-8")
        new = NodeProfile.of("added", "h", 1, tls=TLSOptions(verify=False))
        try:
            store.save(new)
        except ProfileError:
            assert store.path.read_text(encoding="utf-8") == text
        else:
            after = store.load()
            assert after.nodes == {**result.nodes, "added": new}
            assert after.queries == result.queries


def test_the_readme_example_is_a_valid_profiles_file():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Profiles"):]
    example = section[section.index("```toml\n") + 8:section.index("```\n", section.index("```toml"))]
    loaded = parse_profiles(example, "README.md")
    node, query = loaded.nodes["orthanc"], loaded.queries["ct-today"]
    assert (loaded.default_node, loaded.default_query) == ("orthanc", "ct-today")
    assert node.network.tls.verify is True and node.model is QueryModel.STUDY
    assert query.level == "STUDY" and query.ext_neg.fuzzy_names and query.node == "orthanc"
    assert "# present = TLS on" in example  # comments are part of the format


def test_relative_tls_paths_never_follow_the_working_directory(findtui_config_dir, tmp_path,
                                                               monkeypatch):
    """A profile saying ca_file = "tls/ca.pem" trusted whatever tls/ca.pem lay in the folder
    a run started in (an attacker's CA); it now means the file beside profiles.toml."""
    (findtui_config_dir / "profiles.toml").write_text(
        '[nodes.pacs]\naddress = "h"\nport = 104\n[nodes.pacs.tls]\nca_file = "tls/ca.pem"\n')
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tls").mkdir(parents=True)
    (elsewhere / "tls" / "ca.pem").write_text("the attacker's CA")
    monkeypatch.chdir(elsewhere)
    tls = Store().get_node("pacs").network.tls
    assert tls.ca_file == str(findtui_config_dir / "tls" / "ca.pem")
    a = resolved("--batch", "--profile", "pacs", "-k", "PatientID=")
    assert a.net.tls.ca_file == str(findtui_config_dir / "tls" / "ca.pem")


_deep_text = st.one_of(
    st.integers(1, 30_000).map(lambda n: "a" + ".a" * n + " = 1\n"),  # dotted key parts
    st.integers(1, 3_000).map(lambda n: "x = " + "[" * n + "]" * n + "\n"),  # nested arrays
    st.integers(1, 3_000).map(lambda n: "x = " + "{a = " * n + "1" + "}" * n + "\n"),
    st.integers(1, 200).map(lambda n: "".join(f"[{'t.' * n}k{i}]\n" for i in range(50))),
    st.integers(0, 2 << 20).map(lambda n: "# " + "x" * n + "\n"),  # up to 2 MB
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(_deep_text)
def test_loader_bounds_depth_and_size(tmp_path_factory, text):
    """Deep keys, deep nesting and big files: a Profiles or a ProfileError, never a hang, a
    MemoryError or a RecursionError (the test's own timeout bounds it)."""
    path = tmp_path_factory.mktemp("fuzz") / "profiles.toml"
    path.write_text(text)
    try:
        result = P.parse_profiles_file(path)
    except ProfileError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert isinstance(result, P.Profiles)
