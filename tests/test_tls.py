"""TLS against a pynetdicom TLS SCP on loopback, with a CA made for the test
(by the openssl command line): verification is on by default, --tls-ca makes a
peer trusted, client-certificate authentication works, and every mismatch
(untrusted or self-signed peer, wrong name, missing or untrusted client
certificate, TLS against a plain port and the reverse) is one clear line, exit 3.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

import peers
from faultscp import assert_no_traceback, pynetdicom_scp, run_findtui
from findtui.cli import ExitCode
from findtui.engine.query import (
    AssociationFailed, Final, FindRequest, Network, Pending, TLSOptions, run_find,
)

KEYS = ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=", "-k", "PatientName="]


def _openssl(*args: str, cwd: Path) -> None:
    binary = peers.require_binary("openssl", "openssl")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca.pem; server.pem (IP:127.0.0.1) and client.pem signed by it; self.pem
    self-signed; wrongname.pem signed by the CA for another host only."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=findtui test CA", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=d)
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:findscu"),
                      ("wrongname", "DNS:pacs.example.org")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out",
             "self.pem", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
             "subjectAltName=IP:127.0.0.1", cwd=d)
    return d


def server_context(pki: Path, cert: str = "server", client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / f"{cert}.pem", pki / f"{cert}.key")
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / "ca.pem")
    return ctx


def cli(port: int, *args: str):
    return run_findtui([*args, "--output-format", "csv", "127.0.0.1", str(port), *KEYS])


def assert_fails(run, *fragments: str) -> str:
    assert run.returncode == ExitCode.NETWORK, run.err[-3000:]
    assert_no_traceback(run)
    lines = [x for x in run.error_lines() if all(f in x for f in fragments)]
    assert len(lines) == 1, (fragments, run.err[-3000:])
    return lines[0]


def assert_works(run) -> None:
    assert run.returncode == ExitCode.OK, run.err[-3000:]
    assert run.out.splitlines() == ["QueryRetrieveLevel,PatientID,PatientName",
                                    ",TLS-OK,SECURE^PATIENT"]


@pytest.fixture(scope="module")
def tls_scp(pki):
    with pynetdicom_scp(ssl_context=server_context(pki)) as (_, port):
        yield port


def test_verification_is_on_by_default(tls_scp):
    assert "give its CA file (or, insecure, turn certificate verification off) (--tls-ca, " \
        "--tls-no-verify)" in assert_fails(
        cli(tls_scp, "--tls"), "TLS handshake failed", "certificate verify failed")


def test_works_with_tls_ca(tls_scp, pki):
    assert_works(cli(tls_scp, "--tls", "--tls-ca", str(pki / "ca.pem")))


def test_no_verify_is_possible_but_explicit(tls_scp):
    assert_works(cli(tls_scp, "--tls", "--tls-no-verify"))


def test_self_signed_peer_is_refused(pki):
    with pynetdicom_scp(ssl_context=server_context(pki, "self")) as (_, port):
        run = cli(port, "--tls", "--tls-ca", str(pki / "ca.pem"))
    assert_fails(run, "self-signed certificate", "--tls-ca")


def test_certificate_for_another_host_is_refused(pki):
    with pynetdicom_scp(ssl_context=server_context(pki, "wrongname")) as (_, port):
        run = cli(port, "--tls", "--tls-ca", str(pki / "ca.pem"))
    assert_fails(run, "mismatch", "connect by the name in its certificate")


@pytest.fixture(scope="module")
def mutual_tls_scp(pki):
    with pynetdicom_scp(ssl_context=server_context(pki, client_ca=True)) as (_, port):
        yield port


def test_client_certificate_authentication(mutual_tls_scp, pki):
    assert_works(cli(mutual_tls_scp, "--tls", "--tls-ca", str(pki / "ca.pem"),
                     "--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")))


def test_missing_client_certificate(mutual_tls_scp, pki):
    assert_fails(cli(mutual_tls_scp, "--tls", "--tls-ca", str(pki / "ca.pem")),
                 "certificate required", "give our certificate and key files (--tls-cert, --tls-key)")


def test_untrusted_client_certificate(mutual_tls_scp, pki):
    run = cli(mutual_tls_scp, "--tls", "--tls-ca", str(pki / "ca.pem"),
              "--tls-cert", str(pki / "self.pem"), "--tls-key", str(pki / "self.key"))
    assert_fails(run, "unknown ca", "does not trust our client certificate")


def test_plain_client_against_tls_port(tls_scp):
    assert_fails(cli(tls_scp), "aborted the association request", "turn TLS on (--tls)")


def test_tls_client_against_plain_port(pki):
    with pynetdicom_scp() as (_, port):
        run = cli(port, "--tls", "--tls-ca", str(pki / "ca.pem"))
    assert_fails(run, "TLS handshake failed", "is the peer a TLS port?")


def test_unreadable_tls_files(tls_scp, pki, tmp_path):
    assert_fails(cli(tls_scp, "--tls", "--tls-ca", str(pki / "missing.pem")),
                 "missing.pem' does not exist")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    assert_fails(cli(tls_scp, "--tls", "--tls-ca", str(garbage)), "cannot load TLS files")


def _find(port: int, tls: TLSOptions | None):
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = ""
    return list(run_find(FindRequest(Network("127.0.0.1", port, tls=tls), ds)))


def test_engine_tls(tls_scp, mutual_tls_scp, pki):
    ca = str(pki / "ca.pem")
    events = _find(tls_scp, TLSOptions(ca_file=ca))
    assert [type(e) for e in events[1:]] == [Pending, Final]
    assert events[1].identifier.PatientID == "TLS-OK"
    refused = _find(tls_scp, TLSOptions())
    assert [(type(e), e.kind) for e in refused] == [(AssociationFailed, "tls")]
    events = _find(mutual_tls_scp, TLSOptions(ca_file=ca, cert_file=str(pki / "client.pem"),
                                              key_file=str(pki / "client.key")))
    assert isinstance(events[-1], Final) and events[-1].status == 0
    refused = _find(mutual_tls_scp, TLSOptions(ca_file=ca))
    assert [(type(e), e.kind) for e in refused] == [(AssociationFailed, "tls")]
    assert "client certificate" in refused[0].message


def test_a_tls_run_is_rerun_from_the_history_with_tls(tls_scp, pki):
    """'Run again' sends patient data the way it went the first time: with TLS, the same CA,
    timeouts and PDU size (it used to go out in plain TCP with findscu's defaults)."""
    import json
    import os
    import subprocess
    import sys

    from findtui.config import History

    assert_works(cli(tls_scp, "--tls", "--tls-ca", str(pki / "ca.pem"), "-ta", "7", "-pdu",
                     "32768"))
    entry = History().entries()[-1]
    assert entry.network.tls is not None and entry.network.max_pdu == 32768
    listed = subprocess.run([sys.executable, "-m", "findtui", "history", "--json", "-n", "1"],
                            capture_output=True, text=True, check=True).stdout
    line = json.loads(listed)
    assert line["tls"]["ca_file"] == str(pki / "ca.pem") and line["acse_timeout"] == 7.0
    rerun = subprocess.run([sys.executable, "-m", "findtui", "history", "rerun", "-1", "-q",
                            "--output-format", "csv"], capture_output=True, text=True,
                           env=dict(os.environ), stdin=subprocess.DEVNULL, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines() == ["QueryRetrieveLevel,PatientID,PatientName",
                                         ",TLS-OK,SECURE^PATIENT"]
    again = History().entries()[-1]
    assert again.network == entry.network and again.outcome == "success"


def test_a_missing_tls_file_is_named(tls_scp, tmp_path):
    missing = tmp_path / "nope" / "ca.pem"
    line = assert_fails(cli(tls_scp, "--tls", "--tls-ca", str(missing)), "does not exist")
    assert str(missing) in line and line.endswith("(--tls-ca)")
