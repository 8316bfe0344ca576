"""The Query/Retrieve hierarchy: levels, the unique keys that identify a match at each level,
default return keys, and the request one level below a match (drill-down, and later
retrieve). Headless: used by the TUI, the CLI and the engine alike.
"""

from __future__ import annotations

from dataclasses import replace

from pydicom.dataset import Dataset

from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.query import FindRequest

# The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1): what identifies one match.
LEVEL_UNIQUE_KEY: dict[str, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

SPS = "ScheduledProcedureStepSequence[0]"

DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName=", "PatientID=", "PatientBirthDate=", "PatientSex=",
                "NumberOfPatientRelatedStudies="),
    "STUDY": ("PatientName=", "PatientID=", "PatientBirthDate=", "StudyDate=",
              "StudyDescription=", "ModalitiesInStudy=", "AccessionNumber=",
              "StudyInstanceUID="),
    "SERIES": ("SeriesNumber=", "Modality=", "SeriesDescription=", "SeriesDate=",
               "NumberOfSeriesRelatedInstances=", "SeriesInstanceUID="),
    "IMAGE": ("InstanceNumber=", "SOPClassUID=", "ContentDate=", "SOPInstanceUID="),
    "WORKLIST": ("PatientName=", "PatientID=", "PatientBirthDate=", "AccessionNumber=",
                 "RequestedProcedureDescription=", f"{SPS}.Modality=",
                 f"{SPS}.ScheduledStationAETitle=", f"{SPS}.ScheduledProcedureStepStartDate=",
                 f"{SPS}.ScheduledProcedureStepStartTime=",
                 f"{SPS}.ScheduledPerformingPhysicianName=",
                 f"{SPS}.ScheduledProcedureStepDescription="),
}

# Unique keys of the levels above, that a hierarchical query at this level must carry.
UPPER_UNIQUE_KEYS: dict[QueryModel, dict[str, tuple[str, ...]]] = {
    QueryModel.PATIENT: {
        "STUDY": ("PatientID",),
        "SERIES": ("PatientID", "StudyInstanceUID"),
        "IMAGE": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    },
    QueryModel.STUDY: {
        "SERIES": ("StudyInstanceUID",),
        "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID"),
    },
    QueryModel.PSONLY: {"STUDY": ("PatientID",)},
    QueryModel.WORKLIST: {},
}


def default_keys(model: QueryModel, level: str) -> list[str]:
    if model is QueryModel.WORKLIST:
        return list(DEFAULT_KEYS["WORKLIST"])
    return list(DEFAULT_KEYS.get(level, DEFAULT_KEYS["STUDY"]))


def request_level(identifier: Dataset) -> str | None:
    value = identifier.get("QueryRetrieveLevel")
    return str(value).strip().upper() if value else None


class DrillDownError(ValueError):
    pass


def _concrete(value) -> str | None:
    """A single value usable as a unique key (no wildcard, list or range)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or any(c in text for c in "*?\\") :
        return None
    return text


def next_level(model: QueryModel, level: str | None) -> str | None:
    levels = model.levels
    if not levels or level not in levels:
        return None
    i = levels.index(level)
    return levels[i + 1] if i + 1 < len(levels) else None


def drill_down_request(request: FindRequest, response: Dataset) -> tuple[FindRequest, str]:
    """The request one level below ``response`` (a row of ``request``), and its level.

    Unique keys come from the response, else from the request when it names one
    value exactly (e.g. PatientID carried down from a patient row).
    """
    model = request.model
    level = request_level(request.identifier)
    below = next_level(model, level)
    if below is None:
        if model is QueryModel.WORKLIST:
            raise DrillDownError("worklist items have no level below them")
        raise DrillDownError(f"{level or 'this level'} is the lowest level of the "
                             f"{model.label} model")
    keys = [f"QueryRetrieveLevel={below}"] + default_keys(model, below)
    for keyword in UPPER_UNIQUE_KEYS[model].get(below, ()):
        value = _concrete(response.get(keyword)) or _concrete(request.identifier.get(keyword))
        if value is None:
            raise DrillDownError(
                f"the response has no {keyword}, which a {below} query needs; "
                f"add {keyword} to the keys and run again")
        keys = [k for k in keys if k.partition("=")[0] != keyword] + [f"{keyword}={value}"]
    identifier = build_identifier(keys)
    return replace(request, identifier=identifier, cancel_after=None), below


