"""The engine's event stream: fast command-set path vs pynetdicom's, statuses, cancel, faults."""

from __future__ import annotations

import logging
import struct
import threading

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PATIENT_FIND

from findtui.demo import DemoSCP
from findtui.engine.models import QueryModel
from findtui.engine.query import (
    Associated, AssociationFailed, CancelSent, Fault, Final, FindQuery, FindRequest, Network,
    Pending, _parse_command_set, run_find,
)


def study_query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = ""
    ds.StudyInstanceUID = ""
    ds.ModalitiesInStudy = ""
    return ds


@pytest.fixture(scope="module")
def demo():
    with DemoSCP(patients=15, seed=3) as scp:
        yield scp


def collect(request):
    events = list(run_find(request))
    pending = [e for e in events if isinstance(e, Pending)]
    return events, pending


def as_tuples(pending):
    return sorted(tuple((e.tag, str(e.value)) for e in p.identifier) for p in pending)


def test_fast_path_equals_pynetdicom_path(demo):
    req = FindRequest(Network(demo.address, demo.port), study_query(), QueryModel.STUDY)
    events_fast, fast = collect(req)
    logger = logging.getLogger("pynetdicom")
    old = logger.level
    logger.setLevel(logging.DEBUG)  # -d: pynetdicom's own receiver and dumps
    logger.addHandler(logging.NullHandler())
    try:
        events_slow, slow = collect(req)
    finally:
        logger.setLevel(old)
    assert len(fast) == len(slow) > 10
    assert as_tuples(fast) == as_tuples(slow)
    assert [p.index for p in fast] == list(range(1, len(fast) + 1))
    assert isinstance(events_fast[0], Associated)
    assert isinstance(events_fast[-1], Final) and events_fast[-1].status == 0


def test_pending_says_when_more_responses_are_already_here():
    """The demo SCP sends its pendings in bursts: responses that arrive with others behind
    them say so (more=True: writers hold their flush). How many depends on the machine's
    load (how much each read gets), so only that some do, and not all."""
    with DemoSCP(patients=50, studies=600, seed=3) as scp:
        req = FindRequest(Network(scp.address, scp.port), study_query(), QueryModel.STUDY)
        _, pending = collect(req)
    assert len(pending) == 600
    assert 0 < sum(p.more for p in pending) < 600


def test_parse_command_set_rejects_malformed():
    good = struct.pack("<HHI", 0, 0x0100, 2) + b"\x20\x80"
    assert _parse_command_set(good) == {0x0100: b"\x20\x80"}
    assert _parse_command_set(good[:-1]) is None  # value runs past the end
    assert _parse_command_set(good + b"\x00\x00") is None  # truncated header
    assert _parse_command_set(struct.pack("<HHI", 8, 0x0100, 0)) is None  # not group 0000


class StatusSCP:
    """A pynetdicom SCP answering every C-FIND with a few pendings then a given final status."""

    def __init__(self, pendings, final_status, comment=None, offending=None):
        self.ae = AE("STATUS")
        self.ae.add_supported_context(PATIENT_FIND)

        def handler(event):
            for i in range(pendings):
                ds = Dataset()
                ds.PatientID = f"P{i}"
                yield 0xFF01 if i == 0 else 0xFF00, ds
            status = Dataset()
            status.Status = final_status
            if comment:
                status.ErrorComment = comment
            if offending:
                status.OffendingElement = offending
            yield status, None

        self.server = self.ae.start_server(("127.0.0.1", 0), block=False,
                                           evt_handlers=[(evt.EVT_C_FIND, handler)])
        self.port = self.server.socket.getsockname()[1]

    def close(self):
        self.server.shutdown()


def test_failure_status_with_comment_and_offending_element():
    scp = StatusSCP(3, 0xC001, comment="Unable to process", offending=[0x00100010, 0x00100020])
    try:
        ds = Dataset()
        ds.QueryRetrieveLevel = "PATIENT"
        ds.PatientID = ""
        events, pending = collect(FindRequest(Network("127.0.0.1", scp.port), ds))
    finally:
        scp.close()
    assert [p.identifier.PatientID for p in pending] == ["P0", "P1", "P2"]
    assert pending[0].optional_keys_unsupported and not pending[1].optional_keys_unsupported
    final = events[-1]
    assert isinstance(final, Final)
    assert final.status == 0xC001 and final.category == "failure"
    assert final.name == "Failure: Unable to Process"
    assert final.error_comment == "Unable to process"
    assert final.offending_element == (0x00100010, 0x00100020)


def test_cancel_from_another_thread_keeps_rows():
    with DemoSCP(patients=15, seed=3, delay_per_response=0.05) as slow:
        query = FindQuery(FindRequest(Network(slow.address, slow.port), study_query(),
                                      QueryModel.STUDY))
        events = []
        for event in query.events():
            events.append(event)
            if isinstance(event, Pending) and event.index == 3:
                threading.Thread(target=query.cancel).start()
    kinds = [type(e) for e in events]
    assert CancelSent in kinds
    final = events[-1]
    assert isinstance(final, Final) and final.status == 0xFE00 and final.cancel_requested
    assert sum(k is Pending for k in kinds) >= 3


def test_dimse_timeout_is_a_fault():
    with DemoSCP(patients=15, seed=3, delay_per_response=3.0) as hang:
        req = FindRequest(Network(hang.address, hang.port, dimse_timeout=1), study_query(),
                          QueryModel.STUDY)
        events = list(run_find(req))
    assert isinstance(events[-1], Fault) and events[-1].kind == "timeout"
    # neutral words; the setting to raise is named for each front end to point at
    assert "DIMSE timeout (1 s)" in events[-1].message
    assert events[-1].settings == ("dimse_timeout",)


def test_unresolvable_host():
    events = list(run_find(FindRequest(Network("no-such-host.invalid", 104), study_query())))
    assert len(events) == 1 and isinstance(events[0], AssociationFailed)
    assert "cannot resolve host" in events[0].message
