"""Fuzzing the receive path: after the association, a peer sends a random stream of PDUs
(well-formed P-DATA with random PDVs, random PDU types and lengths, truncated or oversized
PDUs, random bytes), then closes or goes silent. The engine must end with one Final, Fault
or AssociationFailed: no exception, no hang (the test's own timeout bounds it), and every
Pending it yielded before is numbered in order."""

from __future__ import annotations

import logging
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from faultscp import FaultSCP, PeerClosed
from findtui.engine.network import Network
from findtui.engine.query import AssociationFailed, Fault, Final, FindRequest, Pending, run_find

MAX_PDU = 4096


def query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = ""
    return ds


def p_data(pdvs: list[tuple[int, int, bytes]]) -> bytes:
    body = b"".join(struct.pack(">IBB", len(v) + 2, cx, hdr) + v for cx, hdr, v in pdvs)
    return struct.pack(">BBI", 0x04, 0, len(body)) + body


_pdv = st.tuples(st.sampled_from([1, 3, 5, 255]), st.integers(0, 255),
                 st.binary(max_size=300))
_chunk = st.one_of(
    st.lists(_pdv, min_size=1, max_size=4).map(p_data),  # P-DATA, random PDVs
    st.tuples(st.integers(0, 255), st.integers(0, 2 ** 32 - 1), st.binary(max_size=200)).map(
        lambda t: struct.pack(">BBI", t[0], 0, t[1]) + t[2]),  # any type, any length
    st.binary(min_size=1, max_size=400),  # bytes that are no PDU at all
    st.just(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 2, 1)),  # A-ABORT
    st.just(struct.pack(">BBI", 0x05, 0, 4) + b"\0" * 4),  # A-RELEASE-RQ
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(_chunk, max_size=6), then=st.sampled_from(["close", "silence"]))
def test_any_pdu_stream_ends_in_one_clear_event(chunks, then):
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # as the TUI and -q run it; restored below
    try:
        _check(chunks, then)
    finally:
        logger.setLevel(level)


def _check(chunks, then):
    def script(s):
        try:
            for chunk in chunks:
                s.raw(chunk)
            if then == "silence":
                s.hang(5)
        except PeerClosed:
            pass

    with FaultSCP(script) as scp:
        net = Network(scp.address, scp.port, acse_timeout=2, dimse_timeout=1,
                      network_timeout=1, max_pdu=MAX_PDU)
        events = list(run_find(FindRequest(net, query(), max_identifier_size=2048)))
    last = events[-1]
    assert isinstance(last, (Final, Fault, AssociationFailed)), events
    assert sum(isinstance(e, (Final, Fault, AssociationFailed)) for e in events) == 1
    pendings = [e for e in events if isinstance(e, Pending)]
    assert [p.index for p in pendings] == list(range(1, len(pendings) + 1))
