"""Query information models, transfer syntaxes, extended negotiation and status names."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.sop_class import (
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)
from pynetdicom.status import code_to_category


class QueryModel(enum.Enum):
    """A C-FIND information model, keyed by the findscu flag that selects it."""

    PATIENT = "P"
    STUDY = "S"
    PSONLY = "O"
    WORKLIST = "W"

    @property
    def sop_class_uid(self) -> UID:
        return _SOP_CLASSES[self]

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def levels(self) -> tuple[str, ...]:
        """The QueryRetrieveLevel values the model allows (empty for worklist)."""
        return _LEVELS[self]

    @classmethod
    def from_sop_class(cls, uid: str) -> QueryModel:
        for model, sop in _SOP_CLASSES.items():
            if sop == uid:
                return model
        raise KeyError(uid)


_SOP_CLASSES = {
    QueryModel.PATIENT: PatientRootQueryRetrieveInformationModelFind,
    QueryModel.STUDY: StudyRootQueryRetrieveInformationModelFind,
    QueryModel.PSONLY: PatientStudyOnlyQueryRetrieveInformationModelFind,
    QueryModel.WORKLIST: ModalityWorklistInformationFind,
}
_LABELS = {
    QueryModel.PATIENT: "Patient Root",
    QueryModel.STUDY: "Study Root",
    QueryModel.PSONLY: "Patient/Study Only",
    QueryModel.WORKLIST: "Modality Worklist",
}
_LEVELS = {
    QueryModel.PATIENT: ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    QueryModel.STUDY: ("STUDY", "SERIES", "IMAGE"),
    QueryModel.PSONLY: ("PATIENT", "STUDY"),
    QueryModel.WORKLIST: (),
}

# The seed's order: implicit first, then explicit LE, deflated, big endian.
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
# Short names for --transfer-syntax, DCMTK-like.
TRANSFER_SYNTAX_NAMES: dict[str, UID] = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
}


def transfer_syntaxes(prefer: str | None = None, only: bool = False) -> tuple[UID, ...]:
    """The transfer syntaxes to propose: the seed's four, or one preferred or alone."""
    if prefer is None:
        return TRANSFER_SYNTAXES
    uid = TRANSFER_SYNTAX_NAMES[prefer]
    if only:
        return (uid,)
    return (uid, *(ts for ts in TRANSFER_SYNTAXES if ts != uid))


class ExtendedNegotiationError(ValueError):
    pass


@dataclass(frozen=True)
class ExtendedNegotiation:
    """The five C-FIND extended negotiation flags (PS3.4 C.5.1.1, K.5.1.1)."""

    relational: bool = False
    dt_matching: bool = False
    fuzzy_names: bool = False
    timezone_adj: bool = False
    enhanced_conversion: bool = False

    NAMES = (
        ("relational", "relational queries", "--relational-query"),
        ("dt_matching", "combined date-time matching", "--dt-matching"),
        ("fuzzy_names", "fuzzy semantic matching of person names", "--fuzzy-names"),
        ("timezone_adj", "timezone query adjustment", "--timezone-adj"),
        ("enhanced_conversion", "enhanced multi-frame image conversion", "--enhanced-conversion"),
    )

    def any(self) -> bool:
        return any(getattr(self, name) for name, _, _ in self.NAMES)

    def validate(self, model: QueryModel) -> None:
        """Reject what the seed rejects: relational, dt and enhanced are not for worklist."""
        if model is QueryModel.WORKLIST:
            bad = [flag for name, _, flag in self.NAMES
                   if name in ("relational", "dt_matching", "enhanced_conversion")
                   and getattr(self, name)]
            if bad:
                raise ExtendedNegotiationError(
                    f"{', '.join(bad)} cannot be used with the Modality Worklist model (-W)"
                )

    def app_info(self, model: QueryModel) -> bytes | None:
        """The Service Class Application Information bytes, or None when nothing is asked.

        Q/R: five bytes, one per flag. Worklist (K.5.1.1): the seed's layout, bytes
        1-2 reserved (sent as 1), then fuzzy names and timezone adjustment.
        """
        self.validate(model)
        if not self.any():
            return None
        if model is QueryModel.WORKLIST:
            return b"\x01\x01" + bytes([self.fuzzy_names, self.timezone_adj])
        return bytes(getattr(self, name) for name, _, _ in self.NAMES)

    def describe_accepted(self, model: QueryModel, info: bytes | None) -> list[str]:
        """Human lines for what the SCP said of each flag we asked for."""
        asked = [(i, n, d) for i, (n, d, _) in enumerate(self.NAMES) if getattr(self, n)]
        if model is QueryModel.WORKLIST:
            positions = {"fuzzy_names": 2, "timezone_adj": 3}
            asked = [(positions[n], n, d) for _, n, d in asked if n in positions]
        lines = []
        for pos, _, desc in asked:
            if info is None:
                state = "not answered (treat as not supported)"
            elif pos < len(info) and info[pos]:
                state = "accepted"
            else:
                state = "not supported"
            lines.append(f"Extended negotiation: {desc}: {state}")
        return lines


STATUS_NAMES: dict[int, str] = {
    0x0000: "Success",
    0xFF00: "Pending",
    0xFF01: "Pending - optional keys not supported",
    0xFE00: "Cancel",
    0xA700: "Out of Resources",
    0xA900: "Identifier Does Not Match SOP Class",
    0x0122: "SOP Class Not Supported",
    0x0124: "Refused: Not Authorized",
    0x0210: "Duplicate Invocation",
    0x0211: "Unrecognised Operation",
    0x0212: "Mistyped Argument",
    0x0213: "Resource Limitation",
}


def status_name(code: int) -> str:
    """A status code's name, e.g. 'Failure: Unable to Process' for 0xC000."""
    if code in STATUS_NAMES:
        name = STATUS_NAMES[code]
        category = code_to_category(code)
        if category not in ("Success", "Pending", "Cancel"):
            return f"{category}: {name}"
        return name
    category = code_to_category(code)
    if category == "Failure" and 0xC000 <= code <= 0xCFFF:
        return "Failure: Unable to Process"
    return category or "Unknown"


def is_pending(code: int) -> bool:
    return code in (0xFF00, 0xFF01)
