"""How values read on screen: dates 2019-08-26, times 17:30:00, date-times, person names
"Doe, John", UIDs of the DICOM dictionary by name, short column titles; and the fold
used to match a filter without regard to case or accents.

Display only: exports and the wire keep the DICOM values. No terminal here: the
caller makes the result terminal-safe (engine.sanitize) as it does every value.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID

__all__ = [
    "column_title", "filter_needles", "fold", "formatter", "readable_date", "readable_datetime",
    "readable_pn", "readable_time", "readable_uid",
]

# Short titles for the keys people query by; any other column keeps its keyword.
TITLES: dict[str, str] = {
    "PatientName": "Name",
    "PatientID": "ID",
    "PatientBirthDate": "Birth date",
    "PatientSex": "Sex",
    "OtherPatientIDs": "Other IDs",
    "OtherPatientNames": "Other names",
    "IssuerOfPatientID": "Issuer",
    "NumberOfPatientRelatedStudies": "Studies",
    "NumberOfPatientRelatedSeries": "Series",
    "NumberOfPatientRelatedInstances": "Images",
    "StudyDate": "Date",
    "StudyTime": "Time",
    "StudyDescription": "Description",
    "StudyID": "Study ID",
    "ModalitiesInStudy": "Modalities",
    "AccessionNumber": "Accession",
    "ReferringPhysicianName": "Referrer",
    "StudyInstanceUID": "Study UID",
    "SOPClassesInStudy": "SOP classes",
    "NumberOfStudyRelatedSeries": "Series",
    "NumberOfStudyRelatedInstances": "Images",
    "SeriesInstanceUID": "Series UID",
    "SeriesNumber": "No.",
    "SeriesDescription": "Description",
    "SeriesDate": "Date",
    "SeriesTime": "Time",
    "BodyPartExamined": "Body part",
    "NumberOfSeriesRelatedInstances": "Images",
    "SOPInstanceUID": "SOP Instance UID",
    "SOPClassUID": "SOP class",
    "InstanceNumber": "No.",
    "ContentDate": "Content date",
    "ContentTime": "Content time",
    "AcquisitionDateTime": "Acquired",
    "ScheduledProcedureStepStartDate": "Date",
    "ScheduledProcedureStepStartTime": "Time",
    "ScheduledProcedureStepDescription": "Step",
    "ScheduledProcedureStepID": "Step ID",
    "ScheduledStationAETitle": "Station AE",
    "ScheduledPerformingPhysicianName": "Performer",
    "RequestedProcedureDescription": "Procedure",
    "RequestedProcedureID": "Procedure ID",
    "InstitutionName": "Institution",
    "StationName": "Station",
}


def keyword_of(path: str) -> str:
    """'ScheduledProcedureStepSequence[0].Modality' -> 'Modality'."""
    return path.rsplit(".", 1)[-1] or path


def column_title(path: str) -> str:
    """The short title of a column (its keyword when there is none)."""
    keyword = keyword_of(path)
    return TITLES.get(keyword, keyword)


def _each(value: str, one: Callable[[str], str]) -> str:
    return "\\".join(one(v) for v in value.split("\\")) if "\\" in value else one(value)


def _date(text: str) -> str:
    t = text.strip()
    if len(t) == 8 and t.isdigit():
        return f"{t[:4]}-{t[4:6]}-{t[6:]}"
    if len(t) == 10 and t[4] == "." and t[7] == "." and t.replace(".", "").isdigit():
        return f"{t[:4]}-{t[5:7]}-{t[8:]}"  # the ACR-NEMA form 2019.08.26
    return text


def _time(text: str) -> str:
    t = text.strip()
    whole, dot, fraction = t.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or (dot and not fraction.isdigit()):
        return text
    out = ":".join(whole[i:i + 2] for i in range(0, len(whole), 2))
    return out + (f".{fraction}" if dot else "")


def _datetime(text: str) -> str:
    t = text.strip()
    zone = ""
    for sign in "+-":
        head, mark, tail = t[4:].rpartition(sign)
        if mark and len(tail) == 4 and tail.isdigit():
            t, zone = t[:4] + head, f"{sign}{tail[:2]}:{tail[2:]}"
            break
    if len(t) < 8 or not t[:8].isdigit():
        return text
    date = _date(t[:8])
    time = _time(t[8:]) if len(t) > 8 else ""
    if time == t[8:] and len(t) > 8 and not t[8:].isdigit():
        return text
    return f"{date} {time}{zone}".strip() if time else date + zone


def readable_date(value: str) -> str:
    """DA '20190826' -> '2019-08-26' (each of several values); anything else unchanged."""
    return _each(value, _date)


def readable_time(value: str) -> str:
    """TM '173000' -> '17:30:00', '1730' -> '17:30', '173000.5' -> '17:30:00.5'."""
    return _each(value, _time)


def readable_datetime(value: str) -> str:
    """DT '20190826173000+0100' -> '2019-08-26 17:30:00+01:00'."""
    return _each(value, _datetime)


def readable_uid(value: str) -> str:
    """A UID of the DICOM dictionary (SOP classes, transfer syntaxes…) by its name;
    any other UID (an instance's) as it is."""

    def one(text: str) -> str:
        uid = text.strip()
        name = UID(uid).name if uid else uid
        return name if name and name != uid else text

    return _each(value, one)


def readable_pn(value: str) -> str:
    """'Doe^John^Q^Dr^Jr' -> 'Doe, Dr John Q, Jr'; '=' groups (ideographic, phonetic) kept."""
    if not value or "^" not in value:
        return value

    def group(text: str) -> str:
        parts = (text.split("^") + [""] * 5)[:5]
        family, given, middle, prefix, suffix = (p.strip() for p in parts)
        rest = " ".join(p for p in (prefix, given, middle) if p)
        out = f"{family}, {rest}" if family and rest else family or rest
        return f"{out}, {suffix}" if suffix else out

    return "\\".join(" = ".join(group(g) for g in name.split("=")) for name in value.split("\\"))


_BY_VR: dict[str, Callable[[str], str]] = {
    "DA": readable_date, "TM": readable_time, "DT": readable_datetime,
    "PN": readable_pn, "UI": readable_uid,
}


def _vr_of(keyword: str) -> str:
    try:
        return dictionary_VR(tag_for_keyword(keyword))
    except (KeyError, TypeError):
        return ""


def formatter(path: str, vr: str | None = None) -> Callable[[str], str] | None:
    """How a column's values read (None: as they are); ``vr`` for a private tag."""
    keyword = keyword_of(path).partition("[")[0]
    if keyword.endswith("InstanceUID"):
        return None  # an instance's UID has no name: not worth a dictionary look-up a row
    return _BY_VR.get(vr or _vr_of(keyword))


def formatters(paths: Sequence[str]) -> list[Callable[[str], str] | None]:
    return [formatter(path) for path in paths]


def filter_needles(text: str) -> tuple[str, ...]:
    """What a filter typed as the screen shows it looks for in the values as sent
    (folded): '2019-08' also '201908', '17:30' also '1730', 'Doe, J' also 'doe^j'."""
    needle = fold(text)
    needles = [needle]
    if any(c in needle for c in "-:") and all(c.isdigit() or c in "-:. " for c in needle):
        needles.append(needle.replace("-", "").replace(":", "").replace(" ", ""))
    if ", " in needle:
        needles.append(needle.replace(", ", "^"))
    return tuple(dict.fromkeys(n for n in needles if n))


def fold(text: str) -> str:
    """Text for matching a filter: case and accents dropped ('Müller' -> 'muller')."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
