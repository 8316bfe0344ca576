"""findtui: a terminal query browser for DICOM C-FIND."""

__version__ = "0.1.0"
