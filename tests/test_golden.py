"""Golden files: every --batch output of fixed demo queries, pinned byte for byte before
anything is made faster (CSV, DICOM JSON, JSON lines, the -v log, the -w files' identifier
bytes). A change here must be deliberate: regenerate with FINDTUI_UPDATE_GOLDEN=1 and say
why in the commit.

The queries cover person names in ISO_IR 192 and ISO_IR 100, multi-valued and empty
values, dates, times, numbers, UIDs, and (worklist) sequences.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path

import pytest

from faultscp import run_findtui
from findtui.demo import DemoSCP

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FINDTUI_UPDATE_GOLDEN", "") not in ("", "0")

STUDY = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=", "-k", "PatientID=",
         "-k", "PatientBirthDate=", "-k", "StudyDate=", "-k", "StudyTime=",
         "-k", "ModalitiesInStudy=", "-k", "StudyDescription=", "-k", "AccessionNumber=",
         "-k", "NumberOfStudyRelatedInstances=", "-k", "StudyInstanceUID="]
WORKLIST = ["-W", "-k", "PatientName=", "-k", "PatientID=",
            "-k", "ScheduledProcedureStepSequence[0].Modality=",
            "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=",
            "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=",
            "-k", "RequestedProcedureDescription="]
QUERIES = {"study": STUDY, "worklist": WORKLIST}


@pytest.fixture(scope="module")
def demo():
    with DemoSCP(patients=12, seed=7) as scp:
        yield scp


def check(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"no golden file {path}: run with FINDTUI_UPDATE_GOLDEN=1"
    assert data == path.read_bytes(), f"{name} differs from its golden file"


def run(demo, query: str, *args: str):
    r = run_findtui([*args, *QUERIES[query], "-aec", demo.ae_title, demo.address,
                     str(demo.port)])
    assert r.returncode == 0, r.err[-3000:]
    return r


@pytest.mark.parametrize("query", list(QUERIES))
@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_output_formats_are_pinned(demo, query, fmt):
    check(f"{query}.{fmt}", run(demo, query, "-q", "--output-format", fmt).stdout)


@pytest.mark.parametrize("query", list(QUERIES))
def test_the_v_log_is_pinned(demo, query):
    log = run(demo, query, "-v").err
    # what changes from run to run: the peer's port and max PDU line stay; none else varies
    log = re.sub(rf"\b{demo.port}\b", "PORT", log)
    check(f"{query}.log", log.encode("utf-8"))


@pytest.mark.parametrize("query", list(QUERIES))
def test_w_files_hold_the_identifiers_as_received(demo, query, tmp_path):
    run(demo, query, "-q", "-w", "-od", str(tmp_path))
    lines = []
    for path in sorted(tmp_path.glob("rsp*.dcm")):
        data = path.read_bytes()
        assert data[128:132] == b"DICM"
        (meta_length,) = struct.unpack("<I", data[140:144])  # (0002,0000) UL
        identifier = data[144 + meta_length:]
        lines.append(f"{path.name} {len(identifier)} {hashlib.sha256(identifier).hexdigest()}")
    check(f"{query}.rsp.txt", ("\n".join(lines) + "\n").encode())
