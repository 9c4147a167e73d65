"""Field data (docs/COLLECT.md): sample-window frames (:mod:`.frames`), Edge
Impulse data acquisition files (:mod:`.ingestion`), and windows received
over a serial link (:mod:`.receive`)."""

from .frames import (
    HEAD_LEN,
    MAGIC,
    MAX_NAME,
    MAX_SENSORS,
    MAX_UNITS,
    MAX_VALUES,
    FrameError,
    FrameParser,
    Sensor,
    Window,
    WindowError,
    iter_windows,
    parse_window,
)
from .ingestion import csv_text, document_bytes, f32_text, ingestion_document, write_window

__all__ = [
    "HEAD_LEN",
    "MAGIC",
    "MAX_NAME",
    "MAX_SENSORS",
    "MAX_UNITS",
    "MAX_VALUES",
    "FrameError",
    "FrameParser",
    "Sensor",
    "Window",
    "WindowError",
    "csv_text",
    "document_bytes",
    "f32_text",
    "ingestion_document",
    "iter_windows",
    "parse_window",
    "write_window",
]
