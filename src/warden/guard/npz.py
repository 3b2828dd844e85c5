"""Reproducible ``.npz`` files for the shipped models: no pickle, fixed zip timestamps and
permissions, so the same arrays always give the same bytes (and SHA-256)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np


def npz_bytes(arrays: Sequence[tuple[str, Any]]) -> bytes:
    """The bytes of an ``.npz`` holding ``arrays`` (name, array) in this order."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays:
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data.getvalue(), compresslevel=9)
    return buf.getvalue()
