"""The entry points a script or a notebook calls (docs/API.md):

* :func:`pack` — a payload from new weights (raw bytes, a numpy array, a
  ``.bin``/``.npy``/``.tflite`` file), full or delta;
* :func:`inspect` — what ``modelota inspect --json`` prints, as a dict, for a
  payload or a ``.tflite`` model;
* :func:`fingerprint` — the 16 bytes a device checks: of a ``.tflite`` model,
  of an Edge Impulse export, or of raw weights named by you;
* :func:`simulate` — a device running the real C++ core (compiled natively)
  that applies payloads and reports its real state.

Each takes what a user has at hand: ``bytes``, a ``str`` or ``pathlib`` path,
a numpy array, a hex string for a fingerprint. Mistakes raise ``ValueError``
(or ``TypeError`` for a wrong kind of argument) with a one-line message; a
payload the reader refuses raises :class:`modelota.ModelOTAError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .format.constants import DIGEST_NAMES, FINGERPRINT_LEN

if TYPE_CHECKING:
    from .format.payload import Payload
    from .models.tflite import TFLiteModel
    from .sim.device import SimulatedDevice

#: What a weights argument may be: bytes-like, a path (str or os.PathLike),
#: or anything with ``tobytes()`` (a numpy array).
Weights = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", Any]

TFLITE_IDENT = b"TFL3"


def _path(x: object) -> Path | None:
    return Path(x) if isinstance(x, (str, os.PathLike)) else None


def read_bytes(x: Weights, what: str = "weights") -> bytes:
    """The bytes of ``x``: bytes-like as they are, a numpy array's raw bytes,
    a file's content (``.npy`` files as their array's raw bytes)."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    p = _path(x)
    if p is not None:
        if p.is_dir():
            raise ValueError(f"{what}: {x} is a directory, not a file")
        if not p.is_file():
            raise ValueError(f"{what}: no such file {str(x)!r}")
        if p.suffix.lower() == ".npy":
            import numpy as np

            return bytes(np.ascontiguousarray(np.load(p, allow_pickle=False)).tobytes())
        return p.read_bytes()
    tobytes = getattr(x, "tobytes", None)
    if callable(tobytes):
        import numpy as np

        return bytes(np.ascontiguousarray(x).tobytes())
    raise TypeError(f"{what}: expected bytes, a file path or a numpy array, got {type(x).__name__}")


def is_tflite(data: bytes) -> bool:
    """True for the bytes of a TFLite flatbuffer (file identifier ``TFL3``)."""
    return len(data) >= 8 and data[4:8] == TFLITE_IDENT


def _fingerprint_bytes(fp: bytes | bytearray | str) -> bytes:
    if isinstance(fp, str):
        try:
            fp = bytes.fromhex(fp)
        except ValueError as e:
            raise ValueError(f"fingerprint {fp!r} is not hex") from e
    fp = bytes(fp)
    if len(fp) != FINGERPRINT_LEN:
        raise ValueError(f"a fingerprint is {FINGERPRINT_LEN} bytes, got {len(fp)}")
    return fp


def _raw_identity(
    fingerprint: bytes | bytearray | str | None, model: str | None, size: int
) -> bytes:
    """The fingerprint of raw weights: given (bytes or hex), or derived from
    the model's name and the size."""
    if (fingerprint is None) == (model is None):
        raise ValueError("give fingerprint= (16 bytes or 32 hex digits) or model= (a name)")
    if model is not None:
        from .models.raw import raw_fingerprint

        return raw_fingerprint(model, size)
    assert fingerprint is not None
    return _fingerprint_bytes(fingerprint)


def fingerprint(model: Weights, size: int | None = None) -> bytes:
    """The 16-byte fingerprint a device checks before it writes anything.

    * ``fingerprint("model.tflite")`` (or the model's bytes): the graph's
      fingerprint (docs/FORMAT.md), the same for every training of it;
    * ``fingerprint("ei-export/")`` (or its ``.zip``): an Edge Impulse export's;
    * ``fingerprint("kws", size=20480)``: raw weights, which have no graph to
      hash: the name you give the model and the size of its weights.
    """
    if size is not None:
        if not isinstance(model, str):
            raise TypeError("with size=, model is the name you give the raw weights (a str)")
        if size < 0:
            raise ValueError(f"size must not be negative, got {size}")
        from .models.raw import raw_fingerprint

        return raw_fingerprint(model, size)
    p = _path(model)
    if p is not None and (p.is_dir() or p.suffix.lower() == ".zip"):
        from .models.edgeimpulse import read_export

        return read_export(p).fingerprint()
    if p is not None and not p.exists():
        raise ValueError(
            f"no such file {str(model)!r}; for raw weights give the model's name and size:"
            f" fingerprint({str(model)!r}, size=N)"
        )
    data = read_bytes(model, "model")
    if not is_tflite(data):
        raise ValueError(
            "not a .tflite model; raw weights have no graph to hash: give the name you"
            " chose for them and their size, fingerprint('name', size=N)"
        )
    from .models.tflite import read_tflite

    return read_tflite(data).fingerprint()


def pack(
    new: Weights,
    *,
    version: int,
    fingerprint: bytes | bytearray | str | None = None,
    model: str | None = None,
    chunk_size: int = 1024,
    base: Weights | None = None,
    base_version: int | None = None,
    segments: list[tuple[int, int]] | None = None,
    digest: str = "crc32",
    sign_key: bytes | None = None,
    format_version: int = 2,
) -> Payload:
    """A payload that turns a device's weights into ``new``.

    Raw weights are identified by ``fingerprint`` (16 bytes, or 32 hex
    digits) or by ``model``, the name you give them (the fingerprint is then
    derived from it and the size, as ``modelota pack --model`` does).

    A delta (only the changed bytes) is made when ``base_version`` is given:
    ``base`` is then what the devices run, at that version; they refuse the
    delta unless their weights are exactly ``base``.

    With a ``.tflite`` model as ``new`` (a path or its bytes), ``base`` is the
    model the devices run (required: the payload is laid out on its bytes);
    the fingerprint is the graph's. ``.encode()`` or ``bytes()`` of the result
    is the payload to send; ``.save(path)`` writes it. ``format_version`` 2
    (compressed chunks, the default) or 1 for devices built before it.
    """
    from .format import payload as fmt

    new_bytes = read_bytes(new, "new")
    base_bytes = None if base is None else read_bytes(base, "base")
    if is_tflite(new_bytes) or (base_bytes is not None and is_tflite(base_bytes)):
        if base_bytes is None:
            raise ValueError(
                "a .tflite payload is laid out on the model the devices run: give it as base="
            )
        if fingerprint is not None or model is not None:
            raise ValueError("a .tflite model's fingerprint is its graph's: give no fingerprint")
        from .models.tflite import pack_tflite

        p = pack_tflite(
            base_bytes, new_bytes, version=version, base_version=base_version,
            delta=base_version is not None, chunk_size=chunk_size, format_version=format_version,
        )  # fmt: skip
        if digest == "crc32" and sign_key is None:
            return p
        return fmt.seal(p, base_bytes, digest=digest, sign_key=sign_key)
    fp = _raw_identity(fingerprint, model, len(new_bytes))
    if base_bytes is not None and base_version is None and segments is None:
        raise ValueError("base= makes a delta: give base_version= too (the version it is)")
    if base_version is not None and base_bytes is None:
        raise ValueError("base_version= is for a delta: give base= too (the weights it is)")
    return fmt.pack(
        new_bytes, fingerprint=fp, version=version, chunk_size=chunk_size, base=base_bytes,
        base_version=base_version, segments=segments, digest=digest, sign_key=sign_key,
        format_version=format_version,
    )  # fmt: skip


def describe_encodings(payload: Payload) -> dict[str, dict[str, int]]:
    """Bytes over the air per chunk encoding (docs/FORMAT.md), largest first:
    {"rc+diff": {"chunks": 12, "bytes": 459, "weight_bytes": 4096}, ...};
    "header" is the header and the signature block."""
    stats = payload.encoding_stats()
    return {
        name: {"chunks": n, "bytes": wire, "weight_bytes": data}
        for name, (n, wire, data) in sorted(stats.items(), key=lambda kv: -kv[1][1])
    }


def encodings_text(payload: Payload) -> str:
    """One line: "rc+diff 459 B (12 chunks, 4096 weight bytes), header 45 B"."""
    parts = []
    for name, e in describe_encodings(payload).items():
        if name == "header":
            parts.append(f"header {e['bytes']} B")
        else:
            n = e["chunks"]
            parts.append(f"{name} {e['bytes']} B ({n} chunk{'s' if n != 1 else ''},"
                         f" {e['weight_bytes']} weight bytes)")  # fmt: skip
    return ", ".join(parts)


def describe_payload(payload: Payload, size: int) -> dict[str, object]:
    """A parsed payload as ``modelota inspect --json`` prints it."""
    h = payload.header
    digest = f"0x{h.digest_crc32():08x}" if h.digest_type == 1 else h.digest.hex()
    return {
        "size": size,
        "format_version": h.format_version,
        "kind": "delta" if h.is_delta else "full",
        "fingerprint": h.fingerprint.hex(),
        "model_version": h.model_version,
        "base_version": h.base_version if h.is_delta else None,
        "base_crc32": f"0x{h.base_crc32:08x}" if h.is_delta else None,
        "weights_size": h.weights_size,
        "data_size": h.data_size,
        "chunk_count": h.chunk_count,
        "max_chunk": h.max_chunk,
        "segment_count": len(payload.segments),
        "segments": [[off, length] for off, length in payload.segments],
        "encodings": describe_encodings(payload),
        "digest": {"type": DIGEST_NAMES[h.digest_type], "value": digest},
        "signed": h.is_signed,
        "key_id": h.key_id.hex() if h.is_signed else None,
        "header_crc32": f"0x{h.crc:08x}",
        "chunk_crcs": "all valid",
    }


def describe_tflite(m: TFLiteModel) -> dict[str, object]:
    """A parsed .tflite model as ``modelota inspect model.tflite --json`` prints it."""
    ranges = m.weight_ranges()
    return {
        "kind": "tflite",
        "size": m.size,
        "schema_version": m.version,
        "fingerprint": m.fingerprint().hex(),
        "weight_bytes": m.weight_bytes,
        "weight_ranges": [[o, n] for o, n in ranges],
        "tensors": [
            {
                "subgraph": t.subgraph,
                "index": t.index,
                "name": t.name,
                "shape": list(t.shape),
                "type": t.dtype,
                "constant": t.constant,
                "data_bytes": t.data_length if t.constant else 0,
                "weight_bytes": t.weight_bytes,
                "quantization": None
                if t.quantization is None
                else {
                    "scales": t.quantization.num_scales,
                    "quantized_dimension": t.quantization.quantized_dimension,
                },
                "variable": t.is_variable,
            }
            for t in m.tensors
        ],
        "operators": [
            {
                "subgraph": o.subgraph,
                "index": o.index,
                "op": o.op,
                "inputs": list(o.inputs),
                "outputs": list(o.outputs),
            }
            for o in m.operators
        ],
    }


def inspect(source: Weights | Payload, *, public_key: bytes | None = None) -> dict[str, object]:
    """What ``modelota inspect --json`` prints, for a payload (a ``.mota``
    file, its bytes, or a :class:`~modelota.Payload`) or a ``.tflite`` model.

    A payload is checked as ``modelota inspect`` does (header CRC, every chunk
    CRC, layout; with ``public_key`` its signature) and raises
    :class:`modelota.ModelOTAError` naming the first defect.
    """
    from .format.payload import Payload, parse

    if isinstance(source, Payload):
        data = source.encode()
    else:
        data = read_bytes(source, "source")
    if is_tflite(data):
        from .models.tflite import read_tflite

        return describe_tflite(read_tflite(data))
    return describe_payload(parse(data, public_key=public_key), len(data))


def simulate(
    factory: Weights,
    *,
    fingerprint: bytes | bytearray | str | None = None,
    model: str | None = None,
    version: int = 1,
    buffer_len: int = 1024,
    public_key: bytes | None = None,
) -> SimulatedDevice:
    """A device that runs ``factory`` weights (version ``version``) from RAM,
    keeps its last good weights in a Store on simulated NOR flash, and applies
    payloads through the real C++ core (see :class:`modelota.sim.device.SimulatedDevice`).

    A ``.tflite`` factory model brings its own fingerprint; raw weights need
    ``fingerprint=`` or ``model=`` as for :func:`pack`.
    """
    from .sim.device import SimulatedDevice

    data = read_bytes(factory, "factory")
    if is_tflite(data):
        if fingerprint is not None or model is not None:
            raise ValueError("a .tflite model's fingerprint is its graph's: give no fingerprint")
        from .models.tflite import read_tflite

        fp = read_tflite(data).fingerprint()
    else:
        fp = _raw_identity(fingerprint, model, len(data))
    return SimulatedDevice(
        data, fingerprint=fp, version=version, buffer_len=buffer_len, public_key=public_key
    )
