"""Edge Impulse Arduino exports: read them, pack weight updates, prepare them for updates.

An Edge Impulse Arduino library (a folder, or the .zip the Studio hands out)
holds its model in one of two forms:

* **EON** (``EI_CLASSIFIER_COMPILED 1``): the graph compiled to C++ in
  ``trained_model_compiled.cpp`` (2020-21), ``tflite_learn_<N>_compiled.cpp``
  or ``tflite_learn_<projectid>_<N>_compiled.cpp``; every constant tensor is a
  ``tensor_data<N>`` array, every quantized tensor has ``TfArray`` scale and
  zero-point arrays referenced by a ``TfLiteAffineQuantization``;
* **TFLite**: the flatbuffer as a byte array, ``trained_tflite[]`` in
  ``tflite-trained.h`` or ``tflite_learn_<N>[]`` in ``tflite_learn_<N>.h``.

:func:`read_export` finds the active model(s) (model-parameters says which;
stale files from earlier exports are ignored), parses every weight array with
its C type and values, and gives each model a fingerprint of its architecture
and its *weight region*: the bytes a ModelOTA payload rewrites. For EON the
region is the concatenation, in declaration order, of every ``tensor_data``
array and every quantization scale and zero-point array (those change between
trainings too; zero points travel as int32 whatever the device's ``int``);
for TFLite it is the whole flatbuffer, of which a payload rewrites only the
weight ranges (as :mod:`modelota.models.tflite` packs it). An export with
several models has one region: the models' regions in order.

:func:`pack_ei` builds a payload from an old and a new export after checking
they are the same architecture. :func:`prepare_ei` patches an extracted
library so the device can take those payloads in place: the original
``const`` arrays become the factory copy (left in flash, PROGMEM on AVR), the
model reads mutable RAM copies loaded from them at startup, and generated glue
offers ``String ei_update_weights(Stream&)`` and ``String ei_restore_weights()``
over the ModelOTA Updater, so sketches written for the edgeimpulse-ota patcher
keep working. Running it again changes nothing.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..format.payload import FINGERPRINT_LEN, U32_MAX, Payload, pack

MARKER = "modelota-prepare-ei"
GLUE_HEADER = "modelota_ei_model.h"
GLUE_SOURCE = "modelota_ei_model.cpp"
DEFAULT_CHUNK = 1024
_BLOCK_BEGIN = f"/* {MARKER}: begin weight region table (generated; run it again, do not edit) */"
_BLOCK_END = f"/* {MARKER}: end weight region table */"


class EIExportError(ValueError):
    """An export (or a file in it) that this tool does not recognise; one line."""


class EIArchitectureError(EIExportError):
    """Two exports that are not the same architecture: weights cannot move between them."""


# ---------------------------------------------------------------- files


class _Tree:
    """The files of an export: a folder or a .zip, read without extracting."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._files: dict[str, Path] = {}
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(path).as_posix()
                for f in filenames:
                    key = f if rel == "." else f"{rel}/{f}"
                    self._files[key] = Path(dirpath) / f
            self.names = sorted(self._files)
        elif path.is_file():
            if not zipfile.is_zipfile(path):
                raise EIExportError(
                    f"{path}: not a folder or a .zip (an Edge Impulse Arduino export)"
                )
            self._zip = zipfile.ZipFile(path)
            self.names = sorted(
                n for n in self._zip.namelist() if not n.endswith("/") and "__MACOSX/" not in n
            )
        else:
            raise EIExportError(f"{path}: no such file or folder")

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return self._files[name].read_bytes()

    def text(self, name: str) -> str:
        return self.read(name).decode("utf-8", errors="surrogateescape")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


# ---------------------------------------------------------------- C text helpers

_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.S)


def _blank_comments(text: str) -> str:
    """``text`` with every comment replaced by spaces (newlines kept): same offsets."""

    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        if s[0] == '"':
            return s
        if "\n" not in s:
            return " " * len(s)
        return re.sub(r"[^\n]", " ", s)

    return _COMMENT_OR_STRING.sub(repl, text)


_SCOPE_RE = re.compile(r'\bnamespace\s+(\w*)\s*\{|\bextern\s*"C(?:\+\+)?"\s*\{|[{}]')


class _Scopes:
    """Which scopes enclose a position: namespaces by name ('' anonymous), None otherwise."""

    def __init__(self, text: str) -> None:
        self._pos: list[int] = []
        self._state: list[tuple[str | None, ...]] = []
        stack: list[str | None] = []
        for m in _SCOPE_RE.finditer(text):
            s = m.group(0)
            if s == "}":
                if stack:
                    stack.pop()
            elif s == "{":
                stack.append(None)
            elif s.startswith("namespace"):
                stack.append(m.group(1))
            else:
                stack.append("")  # extern "C" { ... }: transparent
            self._pos.append(m.end())
            self._state.append(tuple(stack))

    def at(self, pos: int) -> tuple[str | None, ...]:
        i = bisect.bisect_right(self._pos, pos) - 1
        return self._state[i] if i >= 0 else ()


def _statement_start(blank: str, pos: int) -> int:
    """Start of the declaration that ends at ``pos``: after the last ``; { }`` or
    preprocessor line before it."""
    lo = max(0, pos - 400)
    cut = max(blank.rfind(";", lo, pos), blank.rfind("{", lo, pos), blank.rfind("}", lo, pos))
    base = cut + 1 if cut >= 0 else lo
    start = base
    for m in re.finditer(r"^[ \t]*#[^\n]*\n", blank[base:pos], re.M):
        start = base + m.end()
    while start < pos and blank[start] in " \t\r\n":
        start += 1
    return start


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


_INT_BODY_OK = re.compile(r"[\s,0-9+\-]*")


def _parse_ints(body: str, where: str) -> np.ndarray:
    toks = body.split(",")
    if toks and not toks[-1].strip():
        toks.pop()
    if not toks:
        return np.zeros(0, dtype=np.int64)
    if _INT_BODY_OK.fullmatch(body):
        try:
            return np.array(toks, dtype=np.int64)
        except ValueError:
            pass
    out = []
    for t in toks:
        s = t.strip().rstrip("uUlL")
        try:
            neg = s.startswith("-")
            core = s[1:].strip() if neg or s.startswith("+") else s
            if re.fullmatch(r"0[0-7]+", core):
                v = int(core, 8)
            else:
                v = int(core, 0)
            out.append(-v if neg else v)
        except ValueError:
            raise EIExportError(f"{where}: {t.strip()!r} is not an integer literal") from None
    return np.array(out, dtype=np.int64)


def _parse_floats(body: str, where: str) -> np.ndarray:
    toks = [t.strip() for t in body.split(",")]
    if toks and not toks[-1]:
        toks.pop()
    clean = [t[:-1] if t[-1:] in ("f", "F") and "x" not in t.lower() else t for t in toks]
    try:
        return np.array(clean, dtype=np.float64)
    except ValueError:
        pass
    out = []
    for t in clean:
        try:
            out.append(float.fromhex(t) if "x" in t.lower() else float(t))
        except ValueError:
            raise EIExportError(f"{where}: {t!r} is not a floating-point literal") from None
    return np.array(out, dtype=np.float64)


def _count_of(dim: str, where: str) -> int | None:
    dim = dim.strip()
    if not dim:
        return None
    if not re.fullmatch(r"\d+[uU]?(\s*\*\s*\d+[uU]?)*", dim):
        raise EIExportError(f"{where}: array size [{dim}] is not a product of numbers")
    n = 1
    for part in dim.split("*"):
        n *= int(part.strip().rstrip("uU"))
    return n


# C element type as written -> little-endian numpy dtype of its bytes in the region
_CTYPES: dict[str, str] = {
    "int8_t": "i1",
    "signed char": "i1",
    "uint8_t": "u1",
    "unsigned char": "u1",
    "int16_t": "<i2",
    "uint16_t": "<u2",
    "int32_t": "<i4",
    "uint32_t": "<u4",
    "int64_t": "<i8",
    "uint64_t": "<u8",
    "float": "<f4",
    "double": "<f8",
    "int": "<i4",  # TfArray<N, int>: travels as int32 whatever sizeof(int) is on the device
}


def _to_dtype(values: np.ndarray, ctype: str, where: str) -> np.ndarray:
    dt = np.dtype(_CTYPES[ctype])
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if values.size and (values.min() < info.min or values.max() > info.max):
            bad = values[(values < info.min) | (values > info.max)][0]
            raise EIExportError(f"{where}: value {int(bad)} does not fit {ctype}")
        return values.astype(dt)
    return values.astype(dt)


# ---------------------------------------------------------------- model objects


@dataclass
class EIArray:
    """One array of the weight region, as the export declares it."""

    name: str  # the name the model uses: tensor_data2, quant2_scale, quant2_zero, tflite_learn_5
    kind: str  # "tensor", "scale", "zero" or "flatbuffer"
    ctype: str  # element type as written: int8_t, float, int, unsigned char...
    count: int  # elements
    values: np.ndarray  # decoded values, in the region's dtype
    qualified: str = ""  # C++ name from global scope (g0::tensor_data2)
    declaration: str = ""  # C type of the object: int8_t[144], TfArray<16, float>

    @property
    def region_dtype(self) -> np.dtype[Any]:
        return np.dtype(_CTYPES[self.ctype])

    @property
    def nbytes(self) -> int:
        return int(self.count * self.region_dtype.itemsize)

    def region_bytes(self) -> bytes:
        return np.ascontiguousarray(self.values, dtype=self.region_dtype).tobytes()


@dataclass(frozen=True)
class EIQuantization:
    """A TfLiteAffineQuantization: which scale and zero-point arrays, which axis."""

    name: str
    scale: str
    zero: str
    dimension: int


@dataclass
class _Decl:
    """Where one array is declared in a source file (for patching)."""

    name: str  # base name (without _factory)
    kind: str
    stmt_start: int
    name_end: int  # end of the name as written (before any _factory)
    eq: int  # position of '=' (definition) or ';' (declaration)
    end: int  # just after the terminating ';'
    has_const: bool
    align: str  # "ALIGN(16)" or "" (kept on the RAM copy)
    ctype_text: str  # "int8_t" or "TfArray<16, float>"
    dim_text: str  # "16*3*3*1" (tensors), "" (TfArrays, flatbuffers)
    factory: bool  # declared as <name>_factory (a prepared file)
    defined: bool  # has an initializer
    body: tuple[int, int] = (0, 0)


@dataclass
class EIModel:
    """One active model of an export."""

    name: str  # graph name: tflite_learn_5, trained_model, trained_tflite
    form: str  # "eon" or "tflite"
    source: str  # file inside the export (relative to the library root)
    arrays: list[EIArray]  # the weight region, in order
    quantization: list[EIQuantization] = field(default_factory=list)
    prepared: bool = False  # already patched by prepare_ei
    architecture: list[tuple[str, str]] = field(default_factory=list)  # EON: canonical items
    flatbuffer: bytes | None = None  # TFLite form: the whole .tflite
    ranges: list[tuple[int, int]] = field(default_factory=list)  # TFLite: weight ranges in it
    decls: list[_Decl] = field(default_factory=list, repr=False)
    len_var: tuple[str, bool] | None = field(default=None, repr=False)  # (name, is_const)
    fixed: set[str] = field(default_factory=set)  # EON arrays that are not learned parameters

    def fingerprint(self) -> bytes:
        """16 bytes identifying the architecture (never the weight values)."""
        if self.form == "tflite":
            return bytes(_tflite().read_tflite(self._fb()).fingerprint())
        h = hashlib.sha256(b"modelota-ei-eon-v2\0")
        for key, value in self.architecture:
            h.update(f"{key}={value}\n".encode())
        return h.digest()[:FINGERPRINT_LEN]

    def _fb(self) -> bytes:
        assert self.flatbuffer is not None
        return self.flatbuffer

    def weights_bytes(self) -> bytes:
        """The model's weight region as the device lays it out."""
        if self.form == "tflite":
            return self._fb()
        return b"".join(a.region_bytes() for a in self.arrays)

    @property
    def region_size(self) -> int:
        if self.form == "tflite":
            return len(self._fb())
        return sum(a.nbytes for a in self.arrays)

    def weight_segments(self) -> list[tuple[int, int]]:
        """(offset, length) of the bytes a full payload ships, inside this model's region."""
        if self.form == "tflite":
            return [(int(o), int(n)) for o, n in _tflite().merge_ranges(self.ranges)]
        return self.writable_ranges()

    def writable_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of the bytes a payload may change, inside this model's
        region, merged where they touch: the learned parameters and quantization
        arrays, never a fixed constant (docs/FORMAT.md)."""
        if self.form == "tflite":
            return [(int(o), int(n)) for o, n in _tflite().merge_ranges(self.ranges, gap=0)]
        out: list[tuple[int, int]] = []
        off = 0
        for a in self.arrays:
            if a.name not in self.fixed and a.nbytes:
                if out and out[-1][0] + out[-1][1] == off:
                    out[-1] = (out[-1][0], out[-1][1] + a.nbytes)
                else:
                    out.append((off, a.nbytes))
            off += a.nbytes
        return out

    @property
    def ram_bytes(self) -> int:
        """Bytes the patched model holds in RAM (its mutable copies)."""
        if self.form == "tflite":
            return len(self._fb())
        return sum(a.nbytes for a in self.arrays)

    def region_in_layout_of(self, old: EIModel) -> bytes:
        """This (new) model's weights laid out as ``old`` lays its region out."""
        if self.form != old.form:
            raise EIArchitectureError(f"{old.name} is {old.form}, the new model is {self.form}")
        if self.form == "eon":
            return self.weights_bytes()
        tm = _tflite()
        try:
            return bytes(tm.rebase(tm.read_tflite(old._fb()), tm.read_tflite(self._fb())))
        except ValueError as e:
            raise EIArchitectureError(f"{self.name}: {e}") from e


def _tflite() -> Any:
    """The TFLite reader (modelota.models.tflite), imported when a TFLite model needs it."""
    try:
        from . import tflite as tflite_model  # type: ignore[attr-defined]
    except ImportError as e:  # pragma: no cover - depends on the tree
        raise EIExportError(f"the TFLite reader is unavailable: {e}") from e
    return tflite_model


@dataclass
class EIExport:
    """An Edge Impulse Arduino export: its active models and the settings the
    firmware compiles in."""

    path: Path
    root: str  # library root inside the folder or zip ("" or "proj_inferencing/")
    src: str  # where model-parameters lives ("src/" inside root, usually)
    models: list[EIModel]
    interface: list[tuple[str, str]]  # model-parameters settings compiled into the firmware
    prepared_version: int | None = None  # MODELOTA_EI_MODEL_VERSION of a prepared library
    stale: list[str] = field(default_factory=list)  # model files present but not active

    def fingerprint(self) -> bytes:
        """The fingerprint the device checks: the model's, or a hash of all models'."""
        if len(self.models) == 1:
            return self.models[0].fingerprint()
        h = hashlib.sha256(b"modelota-ei-export-v2\0")
        for m in self.models:
            h.update(m.form.encode() + b"\0" + m.fingerprint())
        return h.digest()[:FINGERPRINT_LEN]

    def weights_bytes(self) -> bytes:
        return b"".join(m.weights_bytes() for m in self.models)

    def writable_ranges(self) -> list[tuple[int, int]]:
        """The bytes of the whole region a payload may change (docs/FORMAT.md)."""
        out: list[tuple[int, int]] = []
        start = 0
        for m in self.models:
            for o, n in m.writable_ranges():
                if out and out[-1][0] + out[-1][1] == start + o:
                    out[-1] = (out[-1][0], out[-1][1] + n)
                else:
                    out.append((start + o, n))
            start += m.region_size
        return out

    @property
    def region_size(self) -> int:
        return sum(m.region_size for m in self.models)


# ---------------------------------------------------------------- EON parsing

_TENSOR_RE = re.compile(
    r"\b(tensor_data\d+)(_factory)?\s*\[([^\]\[]*)\]\s*"
    r"((?:(?:ALIGN|alignas)\s*\(\s*\d+\s*\)\s*|MODELOTA_EI_FACTORY\s*)*)(=\s*\{|;)"
)
_TFARRAY_RE = re.compile(
    r"\bTfArray\s*<\s*(\d+)\s*,\s*(int|float)\s*>\s+(\w+?)(_factory)?\s*"
    r"((?:MODELOTA_EI_FACTORY\s*)?)(=\s*\{|;)"
)
_HEAD_RE = re.compile(
    r"((?:(?:const|static|constexpr|volatile)\b\s*|(?:ALIGN|alignas)\s*\(\s*\d+\s*\)\s*"
    r"|MODEL_SECTION\s*\(\s*[\w.\"]*\s*\)\s*|__attribute__\s*\(\(.*?\)\)\s*)*)"
    r"(u?int(?:8|16|32|64)_t|float|double)\s*"
)
_TFHEAD_RE = re.compile(r"((?:(?:const|static)\b\s*)*)")
_QUANT_ANY_RE = re.compile(r"\bTfLiteAffineQuantization\s+(\w+)\s*=")
_QUANT_RE = re.compile(
    r"\bTfLiteAffineQuantization\s+(\w+)\s*=\s*\{\s*"
    r"\(\s*TfLiteFloatArray\s*\*\s*\)\s*&\s*((?:\w+::)*\w+)\s*,\s*"
    r"\(\s*TfLiteIntArray\s*\*\s*\)\s*&\s*((?:\w+::)*\w+)\s*,\s*(-?\d+)\s*\}\s*;"
)
_TABLE_RE = re.compile(
    r"\b(TensorInfo_t|NodeInfo_t|TfLiteNode)\s+(tensorData|nodeData|tflNodes)\s*\[[^\]]*\]\s*=\s*\{"
)
_USED_OPS_RE = re.compile(r"\bused_operators_e\s+used_ops\s*\[[^\]]*\]\s*=\s*\{([^}]*)\}")
_SUBGRAPH_INDEX_RE = re.compile(
    r"\b(tflTensors|tflNodes)_subgraph_index\s*\[[^\]]*\]\s*=\s*\{([^}]*)\}"
)
# a tensorData row's element type: its first kTfLite<Type> that is not an
# allocation type; kTfLiteInt8 -> INT8, kTfLiteFloat32 -> FLOAT32 (schema names)
_TYPE_RE = re.compile(r"\bkTfLite(?!(?:MmapRo|ArenaRw|ArenaRwPersistent|MemNone)\b)(\w+)")
# what a table row points at: two definitions of one table must agree on these
_REFS_RE = re.compile(r"\b(?:inputs|outputs|opdata|tensor_data|tensor_dimension|quant)\d+\b")
_OPDATA_RE = re.compile(r"\b(TfLite\w+Params)\s+(opdata\d+)\s*=\s*\{(.*?)\}\s*;", re.S)
_OPDATA_BYTES_RE = re.compile(r"\b(u?int8_t)\s+(opdata\d+)\s*\[[^\]]*\]\s*=\s*\{([^}]*)\}")
_ENUM_RE = re.compile(r"\benum\s+used_operators_e\s*\{([^}]*)\}")
_WS = re.compile(r"\s+")
_QUALIFIER = re.compile(r"\b\w+::")


def _norm(s: str) -> str:
    s = _WS.sub("", s)
    s = re.sub(r"tensor_arena\+\d+[uU]?", "tensor_arena+?", s)
    return _QUALIFIER.sub("", s)


def _rows(blank: str, open_brace: int, where: str) -> tuple[list[str], int]:
    """Rows of a ``{ {...}, {...}, }`` table starting at ``open_brace``; and its end."""
    depth = 0
    rows: list[str] = []
    row_start = -1
    for m in re.finditer(r"[{}]", blank[open_brace:]):
        p = open_brace + m.start()
        if m.group(0) == "{":
            depth += 1
            if depth == 2:
                row_start = p + 1
        else:
            depth -= 1
            if depth == 1:
                rows.append(blank[row_start:p])
            elif depth == 0:
                return rows, p
    raise EIExportError(f"{where}: table at line {_line_of(blank, open_brace)} never ends")


def _qualified(scopes: _Scopes, pos: int, name: str, where: str, text: str) -> str:
    path = scopes.at(pos)
    if any(s is None for s in path):
        raise EIExportError(
            f"{where}: {name} (line {_line_of(text, pos)}) is not declared at namespace scope"
        )
    parts = [s for s in path if s]
    return "::".join([*parts, name])


_BRACE_OR_QUOTE = re.compile(r'[{}"]')


def _check_balanced(text: str, blank: str, where: str) -> None:
    """Every brace and every #if closed: a file cut short fails here."""
    depth = 0
    opened: list[int] = []
    string = re.compile(r'"(?:\\.|[^"\\\n])*"')
    pos = 0
    for m in _BRACE_OR_QUOTE.finditer(blank):
        if m.start() < pos:
            continue  # inside a string literal
        c = m.group(0)
        if c == '"':
            sm = string.match(blank, m.start())
            pos = sm.end() if sm else m.start() + 1
        elif c == "{":
            opened.append(m.start())
        elif not opened:
            raise EIExportError(f"{where}: line {_line_of(text, m.start())}: '}}' closes nothing")
        else:
            opened.pop()
    if opened:
        raise EIExportError(
            f"{where}: line {_line_of(text, len(text))}: the file ends inside the block opened at"
            f" line {_line_of(text, opened[-1])} (cut short?)"
        )
    for m in re.finditer(r"^[ \t]*#[ \t]*(if|ifdef|ifndef|endif)\b", blank, re.M):
        depth += -1 if m.group(1) == "endif" else 1
        if depth < 0:
            raise EIExportError(f"{where}: line {_line_of(text, m.start())}: #endif without #if")
    if depth:
        raise EIExportError(
            f"{where}: line {_line_of(text, len(text))}: the file ends inside {depth} #if"
            " block(s) (cut short?)"
        )


def _defines_function(blank: str, fn: str) -> bool:
    """``fn(...) {`` appears in the file (found with str.find: the file is megabytes)."""
    pat = re.compile(rf"\b{re.escape(fn)}\s*\([^;{{}}]*\)\s*\{{")
    at = blank.find(fn)
    while at >= 0:
        if pat.match(blank, at) and (
            at == 0 or not (blank[at - 1].isalnum() or blank[at - 1] == "_")
        ):
            return True
        at = blank.find(fn, at + 1)
    return False


def _eon_structure(
    text: str,
    blank: str,
    where: str,
    info: dict[str, tuple[str, str, int, str]],
    tfarrays: dict[str, tuple[int, str, np.ndarray | None, int]],
    required: Sequence[str],
) -> set[str]:
    """Checks the tensor and node tables against the arrays (every reference
    defined, every weight array in the tensor table, node inputs inside the
    tensor table, the functions model-parameters calls defined) and returns the
    tensor_data arrays that are not learned parameters (models/roles.py)."""
    from .roles import learned_tensors

    tables: dict[str, tuple[list[str], int]] = {}
    for m in _TABLE_RE.finditer(blank):
        rows = _rows(blank, m.end() - 1, where)[0]
        first = tables.get(m.group(2))
        if first is None:
            tables[m.group(2)] = (rows, m.start())
            continue
        # 2024+ exports define tflNodes twice, for TF_LITE_STATIC_MEMORY and
        # without (#ifndef/#else): both must describe the same graph
        refs = [_REFS_RE.findall(r) for r in rows]
        first_refs = [_REFS_RE.findall(r) for r in first[0]]
        if refs != first_refs:
            i = next(
                (k for k, (a, b) in enumerate(zip(refs, first_refs, strict=False)) if a != b),
                min(len(refs), len(first_refs)),
            )
            raise EIExportError(
                f"{where}: line {_line_of(text, m.start())}: this {m.group(2)} table differs"
                f" from the one at line {_line_of(text, first[1])} (row {i})"
            )
    if "tensorData" not in tables:
        raise EIExportError(f"{where}: no tensorData table: not a whole EON model (cut short?)")
    node_key = "tflNodes" if "tflNodes" in tables else "nodeData"
    if node_key not in tables:
        raise EIExportError(
            f"{where}: no node table (nodeData or tflNodes): not a whole EON model (cut short?)"
        )
    t_rows, t_pos = tables["tensorData"]
    n_rows, n_pos = tables[node_key]
    data_of: list[str | None] = []
    dtypes: list[str] = []
    for i, row in enumerate(t_rows):
        dm = re.search(r"\b(tensor_data\d+)\b", row)
        if dm and dm.group(1) not in info:
            raise EIExportError(
                f"{where}: line {_line_of(text, t_pos)}: tensorData[{i}] points at"
                f" {dm.group(1)}, which is not defined"
            )
        data_of.append(dm.group(1) if dm else None)
        tm = _TYPE_RE.search(row)
        dtypes.append(tm.group(1).upper() if tm else "")
    unreferenced = sorted(set(n for n, v in info.items() if v[0] == "tensor") - set(data_of))
    if unreferenced:
        raise EIExportError(
            f"{where}: {unreferenced[0]} is not in the tensorData table (line"
            f" {_line_of(text, t_pos)})"
        )
    ops_list: list[str] = []
    if node_key == "tflNodes":
        um = _USED_OPS_RE.search(blank, max(blank.rfind("used_operators_e"), 0))
        if um is None:
            raise EIExportError(f"{where}: tflNodes without a used_ops list (cut short?)")
        ops_list = [o.strip() for o in um.group(1).split(",") if o.strip()]
        if len(ops_list) != len(n_rows):
            raise EIExportError(
                f"{where}: line {_line_of(text, um.start())}: used_ops names {len(ops_list)}"
                f" operators for {len(n_rows)} nodes"
            )
    # subgraphs: node and tensor indices are relative to their subgraph's first
    t_base = [0] * len(n_rows)
    idx = {
        m.group(1): [int(v) for v in re.findall(r"\d+", m.group(2))]
        for m in (_SUBGRAPH_INDEX_RE.finditer(blank) if "_subgraph_index" in blank else ())
    }
    if "tflNodes" in idx and "tflTensors" in idx:
        for g in range(min(len(idx["tflNodes"]), len(idx["tflTensors"])) - 1):
            for k in range(idx["tflNodes"][g], min(idx["tflNodes"][g + 1], len(n_rows))):
                t_base[k] = idx["tflTensors"][g]
    ops: list[tuple[str, list[int], list[int]]] = []
    for i, row in enumerate(n_rows):
        io: list[list[int]] = []
        for kind in ("inputs", "outputs"):
            am = re.search(rf"\b({kind}\d+)\b", row)
            if am is None or am.group(1) not in tfarrays or tfarrays[am.group(1)][2] is None:
                raise EIExportError(
                    f"{where}: line {_line_of(text, n_pos)}: {node_key}[{i}] has no defined"
                    f" {kind} array"
                )
            raw = tfarrays[am.group(1)][2]
            assert raw is not None
            vals = [int(v) + t_base[i] if int(v) >= 0 else -1 for v in raw.tolist()]
            bad = [v for v in vals if v >= len(t_rows)]
            if bad:
                raise EIExportError(
                    f"{where}: {am.group(1)} names tensor {bad[0]} of {len(t_rows)}"
                )
            io.append(vals)
        if node_key == "tflNodes":
            op = ops_list[i]
        else:
            om = re.search(r"\bOP_(\w+)\b", row)
            if om is None:
                raise EIExportError(
                    f"{where}: line {_line_of(text, n_pos)}: nodeData[{i}] names no operator"
                )
            op = om.group(0)
        ops.append((op.removeprefix("OP_"), io[0], io[1]))
    for fn in required:
        if not _defines_function(blank, fn):
            raise EIExportError(
                f"{where}: line {_line_of(text, len(text))}: {fn}() is not defined here, but"
                " model-parameters calls it (cut short?)"
            )
    learned = learned_tensors(len(t_rows), ops, lambda t: dtypes[t])
    fixed: set[str] = set()
    for t, name in enumerate(data_of):
        if name is not None and not learned[t]:
            fixed.add(name)
    return fixed


def _parse_eon(
    text: str, where: str, name: str, source: str, required: Sequence[str] = ()
) -> EIModel:
    blank = _blank_comments(text)
    _check_balanced(text, blank, where)
    scopes = _Scopes(blank)
    prepared = MARKER in text
    decls: dict[tuple[str, bool], _Decl] = {}
    values: dict[str, np.ndarray] = {}
    info: dict[str, tuple[str, str, int, str]] = {}  # name -> (kind, ctype, count, qualified)

    def add(d: _Decl) -> None:
        key = (d.name, d.factory)
        if key in decls:
            raise EIExportError(
                f"{where}: {d.name}{'_factory' if d.factory else ''} is declared twice"
                f" (lines {_line_of(text, decls[key].stmt_start)}"
                f" and {_line_of(text, d.stmt_start)})"
            )
        decls[key] = d

    for m in _TENSOR_RE.finditer(blank):
        base, fac, dim, tail, init = (
            m.group(1),
            bool(m.group(2)),
            m.group(3),
            m.group(4),
            m.group(5),
        )
        start = _statement_start(blank, m.start())
        head = blank[start : m.start()]
        hm = _HEAD_RE.fullmatch(head)
        if hm is None:
            if head.strip().startswith("extern"):
                continue
            raise EIExportError(
                f"{where}: line {_line_of(text, m.start())}: {head.strip()} {base}[...] is not a"
                " weight array declaration this tool knows (expected e.g."
                f" `const ALIGN(16) int8_t {base}[N] = {{...}};`)"
            )
        quals, ctype = hm.group(1), hm.group(2)
        align_m = re.search(r"(?:ALIGN|alignas)\s*\(\s*\d+\s*\)", quals + " " + tail)
        d = _Decl(
            name=base,
            kind="tensor",
            stmt_start=start,
            name_end=m.start(1) + len(base),
            eq=m.start(5),
            end=0,
            has_const=bool(re.search(r"\b(const|constexpr)\b", quals)),
            align=align_m.group(0) if align_m else "",
            ctype_text=ctype,
            dim_text=dim.strip(),
            factory=fac,
            defined=init != ";",
        )
        loc = f"{where}: {base}"
        if d.defined:
            close = blank.find("}", m.end())
            semi = re.compile(r"\s*;").match(blank, close + 1) if close >= 0 else None
            if close < 0 or semi is None:
                raise EIExportError(f"{loc}: initializer never ends")
            d.body = (m.end(), close)
            d.end = semi.end()
            body = blank[m.end() : close]
            raw = (
                _parse_floats(body, loc) if ctype in ("float", "double") else _parse_ints(body, loc)
            )
            count = _count_of(dim, loc)
            if count is None:
                count = raw.size
            if raw.size != count:
                raise EIExportError(
                    f"{where}: line {_line_of(text, m.start())}: {base} holds {raw.size} values"
                    f" for {count} elements (cut short or edited?)"
                )
            values[base] = _to_dtype(raw, ctype, loc)
            info[base] = ("tensor", ctype, count, _qualified(scopes, start, base, where, text))
        else:
            d.end = m.end()
        add(d)

    tfarrays: dict[str, tuple[int, str, np.ndarray | None, int]] = {}
    for m in _TFARRAY_RE.finditer(blank):
        n, t, base, fac, init = (
            int(m.group(1)),
            m.group(2),
            m.group(3),
            bool(m.group(4)),
            m.group(6),
        )
        start = _statement_start(blank, m.start())
        quals = blank[start : m.start()]
        if _TFHEAD_RE.fullmatch(quals) is None:
            raise EIExportError(
                f"{where}: line {_line_of(text, m.start())}: {quals.strip()} TfArray {base}"
                " is not a declaration this tool knows"
            )
        d = _Decl(
            name=base,
            kind="tfarray",
            stmt_start=start,
            name_end=m.start(3) + len(base),
            eq=m.start(6),
            end=0,
            has_const="const" in quals,
            align="",
            ctype_text=f"TfArray<{n}, {t}>",
            dim_text="",
            factory=fac,
            defined=init != ";",
        )
        loc = f"{where}: {base}"
        if d.defined:
            im = re.compile(r"\s*(\d+)\s*,\s*\{([^}]*)\}\s*\}\s*;").match(blank, m.end())
            if im is None:
                raise EIExportError(f"{loc}: expected `= {{ {n}, {{ ... }} }};`")
            d.body = (im.start(2), im.end(2))
            d.end = im.end()
            sz = int(im.group(1))
            raw = _parse_floats(im.group(2), loc) if t == "float" else _parse_ints(im.group(2), loc)
            if sz != n or raw.size != n:
                raise EIExportError(f"{loc}: TfArray<{n}> holds size {sz} and {raw.size} values")
            tfarrays[base] = (n, t, raw, start)
        else:
            d.end = m.end()
        add(d)

    # quantization structs: which scale and zero arrays, and where shared
    quants: list[EIQuantization] = []
    found = {m.group(1) for m in _QUANT_ANY_RE.finditer(blank)}
    for m in _QUANT_RE.finditer(blank):
        scale = m.group(2).split("::")[-1]
        zero = m.group(3).split("::")[-1]
        quants.append(EIQuantization(m.group(1), scale, zero, int(m.group(4))))
    if len(quants) != len(found):
        missing = sorted(found - {q.name for q in quants})
        raise EIExportError(
            f"{where}: TfLiteAffineQuantization {missing[0]} is not in the form"
            " `{ (TfLiteFloatArray*)&scale, (TfLiteIntArray*)&zero, dim }`"
        )
    scale_names = {q.scale for q in quants}
    zero_names = {q.zero for q in quants}
    for q in quants:
        for ref, want in ((q.scale, "float"), (q.zero, "int")):
            if ref not in tfarrays:
                raise EIExportError(
                    f"{where}: {q.name} refers to {ref}, which is not a TfArray here"
                )
            if tfarrays[ref][1] != want:
                raise EIExportError(
                    f"{where}: {q.name} refers to {ref}, a TfArray of {tfarrays[ref][1]}"
                )
    both = scale_names & zero_names
    if both:
        raise EIExportError(f"{where}: {sorted(both)[0]} is used as both a scale and a zero point")

    # prepared files: <name>_factory holds the values, <name> is the RAM copy
    region_names = [n for n, v in info.items() if v[0] == "tensor"] + sorted(
        scale_names | zero_names
    )
    if not [n for n, v in info.items() if v[0] == "tensor"]:
        raise EIExportError(f"{where}: no tensor_data arrays: not an EON compiled model")
    states: dict[str, bool] = {}
    for n in region_names:
        plain = decls.get((n, False))
        fac = decls.get((n, True))
        if fac is not None and fac.defined and plain is not None and not plain.defined:
            states[n] = True
        elif fac is None and plain is not None and plain.defined:
            states[n] = False
        else:
            raise EIExportError(
                f"{where}: {n} is neither as exported nor as prepare-ei leaves it"
                " (a definition, or a _factory definition plus a RAM declaration)"
            )
    if len(set(states.values())) > 1 or (prepared and not all(states.values())):
        raise EIExportError(
            f"{where}: only partly prepared by prepare-ei; restore the original file"
        )
    is_prepared = all(states.values())
    if is_prepared and not prepared:
        raise EIExportError(f"{where}: has _factory arrays but no {MARKER} marker")

    def def_pos(n: str) -> int:
        d = decls.get((n, True)) or decls[(n, False)]
        return d.stmt_start

    order = sorted(region_names, key=def_pos)
    arrays: list[EIArray] = []
    for n in order:
        if n not in info:
            cnt, t, _raw, pos = tfarrays[n]
            info[n] = ("tfarray", t, cnt, _qualified(scopes, pos, n, where, text))
        kind, ctype, count, qual = info[n]
        if kind == "tensor":
            dim = (decls.get((n, True)) or decls[(n, False)]).dim_text or str(count)
            arrays.append(EIArray(n, "tensor", ctype, count, values[n], qual, f"{ctype}[{dim}]"))
        else:
            cnt, t, raw, _ = tfarrays[n]
            assert raw is not None
            arr_kind = "scale" if n in scale_names else "zero"
            arrays.append(
                EIArray(
                    n,
                    arr_kind,
                    t,
                    cnt,
                    _to_dtype(raw, t, f"{where}: {n}"),
                    qual,
                    f"TfArray<{cnt}, {t}>",
                )
            )
    qual_names = {a.qualified.rsplit("::", 1)[0] for a in arrays if "::" in a.qualified}
    if len(qual_names) > 1:
        raise EIExportError(f"{where}: weight arrays in several namespaces {sorted(qual_names)}")

    fixed = _eon_structure(text, blank, where, info, tfarrays, required)

    # canonical architecture: everything but learned values and arena offsets
    arch: list[tuple[str, str]] = [("form", "eon")]
    for a in arrays:
        arch.append((f"array {a.name}", f"{a.kind} {a.declaration}"))
        if a.name in fixed:  # not a learned parameter: its values are the architecture
            arch.append((f"fixed {a.name}", ",".join(str(v) for v in a.values.tolist())))
    for q in quants:
        arch.append(
            (f"quantization {q.name}", f"scale {q.scale}, zero {q.zero}, axis {q.dimension}")
        )
    for n, (cnt, t, raw, _pos) in sorted(tfarrays.items(), key=lambda kv: kv[1][3]):
        if n in scale_names or n in zero_names or raw is None:
            continue
        arch.append((n, f"TfArray<{cnt}, {t}> {{{','.join(str(v) for v in raw.tolist())}}}"))
    for m in _TABLE_RE.finditer(blank):
        rows, _end = _rows(blank, m.end() - 1, where)
        for i, row in enumerate(rows):
            arch.append((f"{m.group(2)}[{i}]", _norm(row)))
    for m in _OPDATA_RE.finditer(blank):
        arch.append((m.group(2), f"{m.group(1)} {{{_norm(m.group(3))}}}"))
    for m in _OPDATA_BYTES_RE.finditer(blank):
        arch.append((m.group(2), f"{m.group(1)}[] {{{_norm(m.group(3))}}}"))
    em = _ENUM_RE.search(blank)
    if em:
        arch.append(("used_operators_e", _norm(em.group(1))))
    um = _USED_OPS_RE.search(blank, max(blank.rfind("used_operators_e"), 0))
    if um:
        arch.append(("used_ops", _norm(um.group(1))))

    model_decls = [d for d in decls.values() if d.name in states]
    return EIModel(
        name=name,
        form="eon",
        source=source,
        arrays=arrays,
        quantization=quants,
        prepared=is_prepared,
        architecture=arch,
        decls=sorted(model_decls, key=lambda d: d.stmt_start),
        fixed=fixed,
    )


# ---------------------------------------------------------------- TFLite (embedded flatbuffer)

_HEX_BYTES = re.compile(r"(?:0[xX][0-9a-fA-F]{2})*")


def _parse_bytes(body: str, where: str) -> bytes:
    compact = re.sub(r"[\s,]", "", body)
    if _HEX_BYTES.fullmatch(compact):
        return bytes.fromhex(compact.replace("0x", "").replace("0X", ""))
    vals = _parse_ints(body, where)
    if vals.size and (vals.min() < -128 or vals.max() > 255):
        raise EIExportError(f"{where}: byte value out of range")
    return (vals & 0xFF).astype(np.uint8).tobytes()


def _parse_flatbuffer_file(
    text: str, where: str, array: str, source: str, need_len: bool = False
) -> EIModel | None:
    """The flatbuffer array ``array`` defined in ``text``; None when the file does not define it."""
    blank = _blank_comments(text)
    _check_balanced(text, blank, where)
    pat = re.compile(
        rf"\b({re.escape(array)})(_factory)?\s*\[\s*\d*\s*\]\s*"
        r"((?:(?:ALIGN|alignas)\s*\(\s*\d+\s*\)\s*|MODELOTA_EI_FACTORY\s*|"
        r"MODEL_SECTION\s*\(\s*[\w.\"]*\s*\)\s*)*)=\s*\{"
    )
    found = list(pat.finditer(blank))
    if not found:
        return None
    if len(found) > 1:
        raise EIExportError(f"{where}: {array} is defined {len(found)} times")
    m = found[0]
    start = _statement_start(blank, m.start())
    head = blank[start : m.start()]
    hm = re.fullmatch(
        r"((?:(?:const|static)\b\s*|(?:ALIGN|alignas)\s*\(\s*\d+\s*\)\s*|"
        r"MODEL_SECTION\s*\(\s*[\w.\"]*\s*\)\s*)*)(unsigned\s+char|uint8_t)\s*",
        head,
    )
    if hm is None:
        raise EIExportError(
            f"{where}: `{head.strip()} {array}[]` is not a flatbuffer array this tool knows"
            f" (expected `const unsigned char {array}[] = {{...}};`)"
        )
    close = blank.find("}", m.end())
    semi = re.compile(r"\s*;").match(blank, close + 1) if close >= 0 else None
    if semi is None:
        raise EIExportError(f"{where}: {array} initializer never ends")
    data = _parse_bytes(blank[m.end() : close], f"{where}: {array}")
    if data[4:8] != b"TFL3":
        raise EIExportError(f"{where}: {array} is not a TFLite flatbuffer (no TFL3 identifier)")
    len_var: tuple[str, bool] | None = None
    lm = re.search(
        rf"^[ \t]*((?:const\s+)?)(?:unsigned\s+int|int|size_t|uint32_t)\s+{re.escape(array)}_len"
        r"\s*=\s*(\d+)\s*;",
        blank,
        re.M,
    )
    if lm is None and need_len:
        raise EIExportError(
            f"{where}: line {_line_of(text, len(text))}: {array}_len is not defined here, but"
            " model-parameters uses it (cut short?)"
        )
    if lm:
        len_var = (f"{array}_len", bool(lm.group(1)))
        if int(lm.group(2)) != len(data):
            raise EIExportError(
                f"{where}: {array}_len is {lm.group(2)}, the array holds {len(data)} bytes"
            )
    align_m = re.search(r"(?:ALIGN|alignas)\s*\(\s*\d+\s*\)", hm.group(1) + (m.group(3) or ""))
    fac = bool(m.group(2))
    prepared = MARKER in text
    if fac != prepared:
        raise EIExportError(f"{where}: {array} is only partly prepared by prepare-ei")
    decl = _Decl(
        name=array,
        kind="flatbuffer",
        stmt_start=start,
        name_end=m.start(1) + len(array),
        eq=m.start() + m.group(0).rfind("="),
        end=semi.end(),
        has_const="const" in hm.group(1),
        align=align_m.group(0) if align_m else "",
        ctype_text="unsigned char",
        dim_text="",
        factory=fac,
        defined=True,
        body=(m.end(), close),
    )
    tm = _tflite()
    try:
        ranges = [(int(o), int(n)) for o, n in tm.read_tflite(data).weight_ranges()]
    except ValueError as e:
        raise EIExportError(f"{where}: {array}: {e}") from e
    fb_values = np.frombuffer(data, dtype=np.uint8)
    return EIModel(
        name=array,
        form="tflite",
        source=source,
        arrays=[
            EIArray(
                array,
                "flatbuffer",
                "unsigned char",
                len(data),
                fb_values,
                array,
                f"unsigned char[{len(data)}]",
            )
        ],
        prepared=prepared,
        flatbuffer=data,
        ranges=ranges,
        decls=[decl],
        len_var=len_var,
    )


# ---------------------------------------------------------------- export discovery

_EON_FILE = re.compile(r"^(trained_model|tflite_learn_\d+(?:_\d+)?)_compiled\.(?:cpp|cc)$")
_FB_FILE = re.compile(r"^(tflite-trained|tflite_learn_\d+(?:_\d+)?)\.(?:h|hpp)$")
_INTERFACE_MACROS = (
    "EI_CLASSIFIER_NN_INPUT_FRAME_SIZE",
    "EI_CLASSIFIER_RAW_SAMPLE_COUNT",
    "EI_CLASSIFIER_RAW_SAMPLES_PER_FRAME",
    "EI_CLASSIFIER_INPUT_WIDTH",
    "EI_CLASSIFIER_INPUT_HEIGHT",
    "EI_CLASSIFIER_INPUT_FRAMES",
    "EI_CLASSIFIER_NN_OUTPUT_COUNT",
    "EI_CLASSIFIER_INTERVAL_MS",
    "EI_CLASSIFIER_FREQUENCY",
    "EI_CLASSIFIER_LABEL_COUNT",
    "EI_CLASSIFIER_HAS_ANOMALY",
    "EI_CLASSIFIER_COMPILED",
    "EI_CLASSIFIER_INFERENCING_ENGINE",
    "EI_CLASSIFIER_OBJECT_DETECTION",
    "EI_CLASSIFIER_OBJECT_DETECTION_LAST_LAYER",
    "EI_CLASSIFIER_TFLITE_INPUT_DATATYPE",
    "EI_CLASSIFIER_TFLITE_INPUT_QUANTIZED",
    "EI_CLASSIFIER_TFLITE_INPUT_SCALE",
    "EI_CLASSIFIER_TFLITE_INPUT_ZEROPOINT",
    "EI_CLASSIFIER_TFLITE_OUTPUT_DATATYPE",
    "EI_CLASSIFIER_TFLITE_OUTPUT_QUANTIZED",
    "EI_CLASSIFIER_TFLITE_OUTPUT_SCALE",
    "EI_CLASSIFIER_TFLITE_OUTPUT_ZEROPOINT",
    "EI_CLASSIFIER_SENSOR",
    "EI_CLASSIFIER_FUSION_AXES_STRING",
)


def _defines(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]*([^\n]*)$", text, re.M):
        out.setdefault(m.group(1), m.group(2).strip())
    return out


def _interface(params: str) -> list[tuple[str, str]]:
    """Settings model-parameters compiles into the firmware, which no payload can change."""
    defs = _defines(params)
    items = [(f"#define {k}", defs[k]) for k in _INTERFACE_MACROS if k in defs]
    cm = re.search(
        r"ei_classifier_inferencing_categories\s*\[\s*\d*\s*\]\s*=\s*\{([^}]*)\}", params
    )
    if cm:
        items.append(("labels", _WS.sub(" ", cm.group(1)).strip()))
    for m in re.finditer(r"\b(ei_dsp_config_\w+)\s*=\s*\{(.*?)\}\s*;", params, re.S):
        items.append((m.group(1), _WS.sub(" ", m.group(2)).strip()))
    return items


def _natural(name: str) -> list[object]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


# file names a model is looked up under: <graph>_compiled.cpp (EON), <array>.h
_EON_ANY = re.compile(r"^(\w+)_compiled\.(?:cpp|cc)$")
_FB_ANY = re.compile(r"^(tflite-trained|\w+)\.(?:h|hpp)$")
# the model files of earlier exports, reported as stale when nothing references them
_MODEL_FILE = re.compile(
    r"^(?:trained_model|tflite_(?:learn|anomaly)_\w+)_compiled\.(?:cpp|cc)$"
    r"|^(?!\w*_compiled\.)(?:tflite-trained|tflite_(?:learn|anomaly)_\w+)\.(?:h|hpp)$"
)
_BLOCK_ROW_RE = re.compile(r"&\s*(\w+)\s*,\s*\(\s*void\s*\*\s*\)\s*&\s*(\w+)")


def _ordered(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _check_blocks(
    p: Path, params: str, defs: dict[str, str], active: set[str], has_variables: bool
) -> None:
    """Every learning block model-parameters lists must run one of the models
    found (its config's graph_config names it); anything else (K-means clusters,
    a graph this tool does not recognise) is refused naming the block: an update
    must never leave one block at its old values without saying so."""
    blocks = []
    for m in re.finditer(
        r"\bei_learning_block_t\s+\w+\s*\[[^\]]*\]\s*=\s*\{(.*?)\}\s*;", params, re.S
    ):
        blocks += _BLOCK_ROW_RE.findall(m.group(1))
    where = "model-parameters/model_variables.h" if has_variables else "model-parameters"
    for fn, cfg in blocks:
        body = _definition(params, cfg)
        gm = re.search(r"\bgraph_config\s*=\s*\(\s*void\s*\*\s*\)\s*&\s*(\w+)", body or "")
        graph = _definition(params, gm.group(1)) if gm else None
        names = set()
        if graph is not None:
            names |= set(re.findall(r"\bmodel_init\s*=\s*&?\s*(\w+)_init\b", graph))
            names |= set(re.findall(r"\.model\s*=\s*&?\s*(\w+)\s*[,}\n]", graph))
        if names and names <= active:
            continue
        what = (
            "K-means anomaly clusters" if "kmeans" in f"{fn} {body}".lower() else "no model graph"
        )
        raise EIExportError(
            f"{p}: {where}: learning block {cfg} ({fn}, {what}) is not handled: an update"
            " would leave it at its old values; modelota updates TFLite/EON graphs only"
        )
    anomaly = defs.get("EI_CLASSIFIER_HAS_ANOMALY", "0").strip()
    if not blocks and anomaly not in ("", "0"):
        raise EIExportError(
            f"{p}: model-parameters/model_metadata.h: the anomaly block (EI_CLASSIFIER_HAS_ANOMALY"
            f" {anomaly}, K-means clusters) is not handled: an update would leave it at its old"
            " values; modelota updates TFLite/EON graphs only"
        )


def _definition(params: str, name: str) -> str | None:
    """The initializer of ``name`` in model-parameters (``... name = { ... };``)."""
    m = re.search(rf"\b{re.escape(name)}\s*=\s*\{{(.*?)\}}\s*;", params, re.S)
    return m.group(1) if m else None


def read_export(path: str | os.PathLike[str]) -> EIExport:
    """Reads an Edge Impulse Arduino export (folder or .zip) and its active models."""
    p = Path(path)
    tree = _Tree(p)
    try:
        return _read(tree, p)
    finally:
        tree.close()


def _read(tree: _Tree, p: Path) -> EIExport:
    metas = [n for n in tree.names if n.endswith("model-parameters/model_metadata.h")]
    if not metas:
        raise EIExportError(
            f"{p}: no model-parameters/model_metadata.h: not an Edge Impulse Arduino export"
        )
    if len(metas) > 1:
        raise EIExportError(f"{p}: holds {len(metas)} Edge Impulse libraries: {', '.join(metas)}")
    src = metas[0][: -len("model-parameters/model_metadata.h")]
    root = src[: -len("src/")] if src.endswith("src/") else src
    params = _blank_comments(tree.text(metas[0]))
    variables = f"{src}model-parameters/model_variables.h"
    if variables in tree.names:
        params += "\n" + _blank_comments(tree.text(variables))
    tokens = re.findall(r"\w+", params)
    token_set = set(tokens)
    first_use: dict[str, int] = {}
    for i, t in enumerate(tokens):
        first_use.setdefault(t, i)
    defs = _defines(params)
    compiled = defs.get("EI_CLASSIFIER_COMPILED", "").strip()

    # every file that could hold a model, by the name it is found under
    eon: dict[str, list[str]] = {}
    fb: dict[str, list[str]] = {}
    for n in tree.names:
        if not n.startswith(src) or n.endswith("_modelota.cpp"):
            continue
        base = PurePosixPath(n).name
        m = _EON_ANY.match(base)
        if m:
            eon.setdefault(m.group(1), []).append(n)
            continue
        m = _FB_ANY.match(base)
        if m and "/edge-impulse-sdk/" not in f"/{n}" and not m.group(1).endswith("_compiled"):
            array = "trained_tflite" if m.group(1) == "tflite-trained" else m.group(1)
            fb.setdefault(array, []).append(n)

    # what model-parameters references: graphs by their init function (EON) or
    # array (flatbuffer), and every learning block
    eon_refs = _ordered(re.findall(r"\bmodel_init\s*=\s*&?\s*(\w+)_init\b", params))
    fb_refs = _ordered(re.findall(r"\.model\s*=\s*&?\s*(\w+)\s*[,}\n]", params))
    for t in tokens:  # older forms name the functions or the array without a config table
        mt = re.fullmatch(r"(\w+)_(?:init|invoke)", t)
        if mt and mt.group(1) in eon and mt.group(1) not in eon_refs:
            eon_refs.append(mt.group(1))
        mt = re.fullmatch(r"(\w+)_len", t)
        if mt and mt.group(1) in fb and mt.group(1) not in fb_refs:
            fb_refs.append(mt.group(1))
    for t in sorted(token_set):
        mt = re.fullmatch(r"(tflite_\w+?)_(?:compiled|invoke)", t)
        if mt and mt.group(1) not in eon_refs:
            eon_refs.append(mt.group(1))
        mt = re.fullmatch(r"(tflite_\w+?)_len", t)
        if mt and mt.group(1) not in fb_refs:
            fb_refs.append(mt.group(1))
    if not eon_refs and not fb_refs:  # 2020-21: no model_variables.h
        if compiled == "1" and "trained_model" in eon:
            eon_refs = ["trained_model"]
        elif compiled in ("0", "") and "trained_tflite" in fb:
            fb_refs = ["trained_tflite"]
    active: list[tuple[str, str, str]] = []  # (form, name, file)
    for form, refs, files in (("eon", eon_refs, eon), ("tflite", fb_refs, fb)):
        for g in refs:
            if g not in files:
                kind = f"{g}_compiled.cpp" if form == "eon" else f"{g}.h"
                what = "EON model" if form == "eon" else "flatbuffer"
                raise EIExportError(
                    f"{p}: model-parameters uses the {what} {g} but there is no {kind} in the"
                    " export"
                )
            if len(files[g]) > 1:
                raise EIExportError(f"{p}: {g} is defined in several files: {', '.join(files[g])}")
            active.append((form, g, files[g][0]))
    # a name both compiled and embedded: EI_CLASSIFIER_COMPILED decides
    names = [x[1] for x in active]
    for g in {n for n in names if names.count(n) > 1}:
        keep = "eon" if compiled == "1" else "tflite"
        active = [x for x in active if x[1] != g or x[0] == keep]
    used = {x[2] for x in active}
    stale = [f for files in (*eon.values(), *fb.values()) for f in files if f not in used]
    stale = [f for f in stale if _MODEL_FILE.match(PurePosixPath(f).name)]
    _check_blocks(p, params, defs, {x[1] for x in active}, variables in tree.names)
    if not active:
        found = sorted({*eon, *fb})
        raise EIExportError(
            f"{p}: no active model: model-parameters names none of the model files found"
            f" ({', '.join(found) if found else 'none'}); expected trained_model_compiled.cpp,"
            " tflite_learn_<N>_compiled.cpp, tflite-trained.h or tflite_learn_<N>.h under"
            f" {src or './'}"
        )
    # models in the order model-parameters configures them
    ref_at: dict[str, int] = {}
    for rm in re.finditer(
        r"\bmodel_init\s*=\s*&?\s*(\w+)_init\b|\.model\s*=\s*&?\s*(\w+)\s*[,}\n]", params
    ):
        ref_at.setdefault(rm.group(1) or rm.group(2), rm.start())
    active.sort(
        key=lambda x: (
            ref_at.get(x[1], 1 << 40),
            first_use.get(x[1] + "_init", first_use.get(x[1], 1 << 30)),
            _natural(x[1]),
        )
    )
    models: list[EIModel] = []
    for form, name, file in active:
        text = tree.text(file)
        where = f"{p}/{file}" if p.is_dir() else f"{p}:{file}"
        rel = file[len(root) :]
        if form == "eon":
            required = [
                f"{name}_{fn}"
                for fn in ("init", "invoke", "reset", "input", "output")
                if fn in ("init", "invoke") or f"{name}_{fn}" in token_set
            ]
            # and every function its header declares: a file cut after the
            # tables but before the last function is not a whole model
            header = re.sub(r"\.(?:cpp|cc)$", ".h", file)
            if header in tree.names:
                declared = re.findall(
                    rf"\b({re.escape(name)}_\w+)\s*\([^;{{}}]*\)\s*;",
                    _blank_comments(tree.text(header)),
                )
                required = _ordered([*required, *declared])
            models.append(_parse_eon(text, where, name, rel, required))
        else:
            model = _parse_flatbuffer_file(text, where, name, rel, f"{name}_len" in token_set)
            if model is None:
                raise EIExportError(f"{where}: does not define the flatbuffer array {name}[]")
            models.append(model)
    prepared_version = None
    header = f"{src}{GLUE_HEADER}"
    if header in tree.names:
        vm = re.search(r"#define\s+MODELOTA_EI_MODEL_VERSION\s+(\d+)", tree.text(header))
        if vm:
            prepared_version = int(vm.group(1))
    return EIExport(
        path=p,
        root=root,
        src=src,
        models=models,
        interface=_interface(params),
        prepared_version=prepared_version,
        stale=sorted(s[len(root) :] for s in stale),
    )


# ---------------------------------------------------------------- comparing and packing


def _first_item_difference(
    old: Sequence[tuple[str, str]], new: Sequence[tuple[str, str]]
) -> str | None:
    for (ko, vo), (kn, vn) in zip(old, new, strict=False):
        if ko != kn:
            return f"the old export has {ko} where the new one has {kn}"
        if vo != vn:
            return f"{ko} is {_short(vo)} in the old export, {_short(vn)} in the new one"
    if len(old) > len(new):
        return f"{old[len(new)][0]} is only in the old export"
    if len(new) > len(old):
        return f"{new[len(old)][0]} is only in the new export"
    return None


def _short(s: str, n: int = 120) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def architecture_difference(old: EIExport, new: EIExport) -> str | None:
    """The first difference that stops weights moving from ``new`` into a device
    built from ``old``, as one phrase; None when there is none."""
    if len(old.models) != len(new.models):
        return (
            f"the old export has {len(old.models)} model(s)"
            f" ({', '.join(m.name for m in old.models)}),"
            f" the new one {len(new.models)} ({', '.join(m.name for m in new.models)})"
        )
    for mo, mn in zip(old.models, new.models, strict=True):
        if mo.form != mn.form:
            return (
                f"{mo.name} is {mo.form} in the old export, {mn.name} is {mn.form} in the new one"
            )
        if mo.form == "eon":
            d = _first_item_difference(mo.architecture, mn.architecture)
            if d:
                return f"{mo.name}: {d}"
        else:
            tm = _tflite()
            a, b = tm.read_tflite(mo._fb()), tm.read_tflite(mn._fb())
            if a.fingerprint() != b.fingerprint():
                d = tm.first_difference(a, b) or "the graphs differ"
                return f"{mo.name}: {d}"
    d = _first_item_difference(old.interface, new.interface)
    if d:
        return f"model-parameters: {d} (compiled into the firmware, not part of the weights)"
    return None


def _as_export(e: EIExport | str | os.PathLike[str]) -> EIExport:
    return e if isinstance(e, EIExport) else read_export(e)


def pack_ei(
    old_export: EIExport | str | os.PathLike[str],
    new_export: EIExport | str | os.PathLike[str],
    *,
    version: int,
    delta: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    base_version: int | None = None,
    format_version: int = 2,
) -> Payload:
    """A payload that turns a device built from ``old_export`` into ``new_export``'s weights.

    Refuses (EIArchitectureError, naming the first difference) unless both are
    the same architecture. ``delta`` ships only the changed byte ranges; the
    device must then run exactly the old weights at ``base_version`` (default:
    the version a prepared old export was built with). ``format_version``:
    the wire format (docs/FORMAT.md), 2 or 1 for devices built before it.
    """
    old = _as_export(old_export)
    new = _as_export(new_export)
    problem = architecture_difference(old, new)
    if problem:
        raise EIArchitectureError(f"{new.path} is not the architecture of {old.path}: {problem}")
    old_region = old.weights_bytes()
    new_region = b"".join(
        mn.region_in_layout_of(mo) for mo, mn in zip(old.models, new.models, strict=True)
    )
    if len(new_region) != len(old_region):  # pragma: no cover - guarded by the architecture
        raise EIArchitectureError("the weight regions differ in size")
    if not 0 <= version <= U32_MAX:
        raise ValueError(f"version must be between 0 and {U32_MAX}, got {version}")
    if not delta:
        segments: list[tuple[int, int]] = []
        start = 0
        for m in old.models:
            for o, n in m.weight_segments():
                if segments and segments[-1][0] + segments[-1][1] == start + o:
                    segments[-1] = (segments[-1][0], segments[-1][1] + n)
                else:
                    segments.append((start + o, n))
            start += m.region_size
        return pack(
            new_region,
            fingerprint=old.fingerprint(),
            version=version,
            chunk_size=chunk_size,
            segments=segments,
            format_version=format_version,
        )
    if base_version is None:
        base_version = old.prepared_version
    if base_version is None:
        raise ValueError(
            "a delta needs the version the devices run (base_version): the old export is not"
            " a prepared library that would tell"
        )
    if version <= base_version:
        raise ValueError(f"version {version} must be above the base version {base_version}")
    return pack(
        new_region,
        fingerprint=old.fingerprint(),
        version=version,
        chunk_size=chunk_size,
        base=old_region,
        base_version=base_version,
        format_version=format_version,
    )


# ---------------------------------------------------------------- prepare


@dataclass
class PrepareReport:
    """What prepare_ei did (or found already done)."""

    libdir: Path
    models: list[str]
    fingerprint: bytes
    region_size: int
    ram_bytes: int
    version: int
    changed: list[Path]
    already_prepared: bool
    main_header: Path | None
    stale: list[str]

    def summary(self) -> str:
        state = "already prepared" if self.already_prepared else "prepared"
        lines = [
            f"{self.libdir}: {state} for in-place weight updates ({', '.join(self.models)})",
            f"  fingerprint {self.fingerprint.hex()}, factory version {self.version},"
            f" weight region {self.region_size} bytes,"
            f" {self.ram_bytes} bytes of weights now in RAM",
        ]
        if self.changed:
            lines.append(
                "  wrote " + ", ".join(str(c.relative_to(self.libdir)) for c in self.changed)
            )
        else:
            lines.append("  no file changed")
        if self.main_header is None:
            lines.append(f'  no src/*_inferencing.h found: #include "{GLUE_HEADER}" in the sketch')
        if self.stale:
            lines.append("  ignored stale model files: " + ", ".join(self.stale))
        return "\n".join(lines)


def _macro(name: str) -> str:
    return re.sub(r"\W", "_", name).upper()


def _c_ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _entry_kind(a: EIArray) -> str:
    return "MODELOTA_EI_INT" if a.ctype == "int" else "MODELOTA_EI_RAW"


def _region_table(
    model: EIModel,
    start: int,
    ram: dict[str, str],
    factory: dict[str, str],
    objects: list[tuple[str, str]],
) -> str:
    """The region table block appended to a model's translation unit."""
    ident = _c_ident(model.name)
    out = [
        _BLOCK_BEGIN,
        f"/* weight region of {model.name}: bytes {start}..."
        f"{start + model.region_size} of the whole region */",
    ]
    out.append(f"const modelota_ei_object modelota_ei_objects_{ident}[] = {{")
    for r, f in objects:
        out.append(f"    {{ &{r}, &{f}, sizeof({r}) }},")
    out.append("};")
    out.append(f"const modelota_ei_entry modelota_ei_entries_{ident}[] = {{")
    off = start
    asserts = []
    if model.form == "tflite":
        fbn = model.arrays[0].qualified
        out.append(
            f"    {{ {fbn}, {fbn}_factory, {off}u, {model.region_size}u, MODELOTA_EI_RAW }},"
        )
        asserts.append(
            f'static_assert(sizeof({fbn}_factory) == {len(model._fb())}u, "{MARKER}: {fbn} is not'
            f' the {len(model._fb())} bytes the weight region was computed from");'
        )
    else:
        for a in model.arrays:
            out.append(
                f"    {{ {ram[a.name]}, {factory[a.name]}, {off}u, {a.nbytes}u,"
                f" {_entry_kind(a)} }},"
            )
            off += a.nbytes
            if a.kind == "tensor":
                asserts.append(
                    f'static_assert(sizeof({a.qualified}) == {a.nbytes}u, "{MARKER}: {a.name} is'
                    f' not the {a.nbytes} bytes the weight region was computed from");'
                )
    out.append("};")
    out += asserts
    out += [
        "namespace {",
        f"struct ModelotaEiLoad_{ident} {{",
        f"    ModelotaEiLoad_{ident}() {{",
        f"        modelota_ei_load(modelota_ei_objects_{ident}, {len(objects)}u);",
        "    }",
        "};",
        f"ModelotaEiLoad_{ident} modelota_ei_load_{ident}; /* RAM copies <- factory at boot */",
        "}  // namespace",
        _BLOCK_END,
    ]
    return "\n".join(out) + "\n"


def _insert_include(text: str, rel: str) -> tuple[int, str]:
    """Our header goes right after the file's leading comment: global scope, outside
    any #if, whatever the file includes after it."""
    m = re.match(r"\s*/\*.*?\*/[^\n]*\n", text, re.S)
    pos = m.end() if m else 0
    return pos, (
        f'/* {MARKER}: patched so its weights can be updated in place */\n#include "{rel}"\n'
    )


_PP_RE = re.compile(r"^[ \t]*#[ \t]*(if|ifdef|ifndef|endif)\b[^\n]*$", re.M)


def _block_position(text: str, first: int, last: int) -> int | None:
    """Where the region table goes when the model's arrays sit inside an #if that
    wraps the rest of the file: just before that #endif. None: at the end."""
    depth = 0
    depth_at_first: int | None = None
    for m in _PP_RE.finditer(text):
        if depth_at_first is None and m.start() > first:
            depth_at_first = depth
        if m.group(1) == "endif":
            depth -= 1
            if depth_at_first is not None and m.start() > last and depth < depth_at_first:
                return m.start()
        else:
            depth += 1
    return None


def _apply(text: str, edits: list[tuple[int, str]]) -> str:
    parts = []
    last = 0
    for pos, ins in sorted(edits, key=lambda e: e[0]):
        parts.append(text[last:pos])
        parts.append(ins)
        last = pos
    parts.append(text[last:])
    return "".join(parts)


def _replace_block(text: str, block: str, where: tuple[int, int] | None = None) -> str:
    i = text.find(_BLOCK_BEGIN)
    j = text.find(_BLOCK_END)
    if i < 0 or j < 0:
        pos = _block_position(text, *where) if where else None
        if pos is not None:
            return text[:pos] + block + text[pos:]
        if not text.endswith("\n"):
            text += "\n"
        return text + "\n" + block
    j = text.index("\n", j) + 1 if "\n" in text[j:] else len(text)
    return text[:i] + block + text[j:]


def _patch_eon(text: str, model: EIModel, rel_header: str, start: int) -> str:
    """The model's source with const weight arrays turned into factory + RAM copies."""
    ram: dict[str, str] = {}
    factory: dict[str, str] = {}
    objects: list[tuple[str, str]] = []
    for a in model.arrays:
        q = a.qualified
        suffix = ".elem" if a.kind in ("scale", "zero") else ""
        ram[a.name] = q + suffix
        factory[a.name] = q + "_factory" + suffix
        objects.append((q, q + "_factory"))
    if not model.prepared:
        edits: list[tuple[int, str]] = []
        edits.append(_insert_include(text, rel_header))
        for d in model.decls:
            if not d.defined:  # pragma: no cover - pristine files define every array
                continue
            if not d.has_const:
                edits.append((d.stmt_start, "const "))
            edits.append((d.name_end, "_factory"))
            edits.append((d.eq, "MODELOTA_EI_FACTORY "))
            if d.kind == "tensor":
                align = f"{d.align} " if d.align else ""
                decl = f"{align}{d.ctype_text} {d.name}[{d.dim_text}];"
            else:
                decl = f"{d.ctype_text} {d.name};"
            edits.append((d.end, f"\n{decl} /* {MARKER}: RAM copy the model uses */"))
        text = _apply(text, edits)
    blank = _blank_comments(text)
    names = [re.search(rf"\b{re.escape(a.name)}(_factory)?\b", blank) for a in model.arrays]
    spans = [m.start() for m in names if m]
    where = (min(spans), max(spans)) if spans else None
    return _replace_block(text, _region_table(model, start, ram, factory, objects), where)


def _patch_flatbuffer_header(text: str, model: EIModel) -> str:
    if model.prepared:
        return text
    d = model.decls[0]
    guard = f"MODELOTA_EI_DEFINE_{_macro(model.name)}"
    edits: list[tuple[int, str]] = [
        (
            d.stmt_start,
            f"/* {MARKER}: the RAM copy is defined in {model.name}_modelota.cpp */\n"
            f"#ifdef {guard}\n",
        ),
        (d.name_end, "_factory"),
        (d.eq, "MODELOTA_EI_FACTORY "),
        (d.end, f"\n#else\nextern unsigned char {model.name}[];\n#endif"),
    ]
    if not d.has_const:
        edits.append((d.stmt_start, "const "))
    if model.len_var and not model.len_var[1]:
        m = re.search(
            rf"^[ \t]*[^\n;]*\b{re.escape(model.len_var[0])}\s*=[^;]*;[^\n]*\n?", text, re.M
        )
        if m:
            edits.append((m.start(), f"#ifndef {guard}\n"))
            edits.append((m.end(), ("" if m.group(0).endswith("\n") else "\n") + "#endif\n"))
    return _apply(text, edits)


def _flatbuffer_unit(model: EIModel, header_name: str, rel_header: str, start: int) -> str:
    guard = f"MODELOTA_EI_DEFINE_{_macro(model.name)}"
    n = model.name
    head = [
        f"/* {MARKER}: RAM copy of the {n} flatbuffer (generated by `modelota prepare-ei`;",
        " * run it again instead of editing). The model reads this copy; the factory",
        f" * bytes ({n}_factory) stay in flash and are the restore source. */",
        f'#include "{rel_header}"',
        f"#define {guard} 1",
        f'#include "{header_name}"',
        "",
        f"alignas(16) unsigned char {n}[sizeof({n}_factory)];",
        "",
    ]
    table = _region_table(model, start, {}, {}, [(n, n + "_factory")])
    return "\n".join(head) + table


def _glue_header(exp: EIExport, version: int) -> str:
    fp = exp.fingerprint()
    lines = [
        "/*",
        f" * {MARKER}: generated by `modelota prepare-ei`; run it again instead of editing.",
        " *",
        " * In-place weight updates for this Edge Impulse library, over the ModelOTA",
        " * Arduino library (install it too). Sketches written for the edgeimpulse-ota",
        " * patcher keep working:",
        " *",
        ' *   String err = ei_update_weights(Serial);  // "" once the new weights are in place,',
        " *                                            // else the ModelOTA status name",
        ' *   err = ei_restore_weights();              // back to the factory weights: ""',
        " *",
        " * Every chunk is CRC-checked before it is written, the whole region after the last",
        " * one; a refused or broken payload leaves whole weights (the factory copy in flash",
        " * is the restore source: no second copy in RAM). Payloads: `modelota pack --ei",
        " * OLD_EXPORT NEW_EXPORT`. The model reads RAM copies of its weights, loaded from",
        " * the factory copies at startup. Models with prepared state cached at init",
        " * (static allocation) must be re-initialised after an update.",
        " */",
        "#ifndef MODELOTA_EI_MODEL_H",
        "#define MODELOTA_EI_MODEL_H",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#define MODELOTA_EI_PREPARED 1",
        "/* Version of the factory weights compiled into this library. */",
        f"#define MODELOTA_EI_MODEL_VERSION {version}u",
        "/* Bytes a payload rewrites: "
        + ", ".join(f"{m.name} {m.region_size}" for m in exp.models)
        + " */",
        f"#define MODELOTA_EI_REGION_SIZE {exp.region_size}u",
        f'#define MODELOTA_EI_FINGERPRINT_HEX "{fp.hex()}"',
        "/* Chunk buffer (on the stack while an update runs): payloads must be packed",
        " * with --chunk-size no larger than this. */",
        "#ifndef MODELOTA_EI_CHUNK_BUFFER",
        f"#define MODELOTA_EI_CHUNK_BUFFER {DEFAULT_CHUNK}",
        "#endif",
        "/* Longest silence on the stream before an update is given up (Timeout). */",
        "#ifndef MODELOTA_EI_TIMEOUT_MS",
        "#define MODELOTA_EI_TIMEOUT_MS 5000",
        "#endif",
        "",
        "#if defined(__AVR__)",
        "#include <avr/pgmspace.h>",
        "#define MODELOTA_EI_FACTORY PROGMEM",
        "#else",
        "#define MODELOTA_EI_FACTORY",
        "#endif",
        "#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && "
        "__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__",
        '#error "modelota prepare-ei: the weight region is little-endian"',
        "#endif",
        "",
        "#define MODELOTA_EI_RAW 0 /* bytes as in memory */",
        "#define MODELOTA_EI_INT 1 /* int elements, as int32 little-endian in the region */",
        "",
        "/* An object the model uses, loaded whole from its factory copy at boot and by",
        " * ei_restore_weights(). */",
        "typedef struct modelota_ei_object {",
        "    void* ram;",
        "    const void* factory;",
        "    uint32_t size;",
        "} modelota_ei_object;",
        "",
        "/* Where bytes [offset, offset + size) of the weight region live. */",
        "typedef struct modelota_ei_entry {",
        "    void* ram;",
        "    const void* factory;",
        "    uint32_t offset;",
        "    uint32_t size;",
        "    uint8_t kind;",
        "} modelota_ei_entry;",
        "",
        "extern const uint8_t modelota_ei_fingerprint[16];",
    ]
    for m in exp.models:
        ident = _c_ident(m.name)
        n_entries = 1 if m.form == "tflite" else len(m.arrays)
        n_objects = 1 if m.form == "tflite" else len(m.arrays)
        lines += [
            f"extern const modelota_ei_object modelota_ei_objects_{ident}[];",
            f"extern const modelota_ei_entry modelota_ei_entries_{ident}[];",
            f"#define MODELOTA_EI_OBJECTS_{_macro(m.name)} {n_objects}u",
            f"#define MODELOTA_EI_ENTRIES_{_macro(m.name)} {n_entries}u",
        ]
    lines += [
        "void modelota_ei_load(const modelota_ei_object* objects, uint32_t count);",
        "",
        "class String;",
        "class Stream;",
        "/* Reads one payload from `in` (never past its end) and applies it. */",
        "String ei_update_weights(Stream& in);",
        "String ei_update_weights(Stream& in, uint32_t timeout_ms);",
        "/* Copies the factory weights back; their version is current again. */",
        "String ei_restore_weights();",
        "/* Version of the weights the model runs now. */",
        "uint32_t ei_weights_version();",
        "/* false only if a failed update could not put whole weights back. */",
        "bool ei_weights_intact();",
        "",
        "#endif /* MODELOTA_EI_MODEL_H */",
        "",
    ]
    return "\n".join(lines)


_GLUE_BODY = r"""
namespace {

struct ModelotaEiModel {
    const modelota_ei_entry* entries;
    uint32_t entry_count;
    const modelota_ei_object* objects;
    uint32_t object_count;
};

const ModelotaEiModel kModels[] = {
@MODELS@
};
const uint32_t kModelCount = sizeof(kModels) / sizeof(kModels[0]);

uint32_t g_version = MODELOTA_EI_MODEL_VERSION;
bool g_intact = true;

void factory_copy(void* dst, const void* src, size_t n) {
#if defined(__AVR__)
    memcpy_P(dst, src, n);
#else
    memcpy(dst, src, n);
#endif
}

enum { READ_RAM = 0, READ_FACTORY = 1, WRITE_RAM = 2 };

/* One entry's part of a transfer: `at` bytes into the entry, `n` bytes. */
void entry_io(const modelota_ei_entry& e, int mode, uint32_t at, uint8_t* dst, const uint8_t* src,
              uint32_t n) {
    if (e.kind == MODELOTA_EI_RAW || sizeof(int) == 4) {
        if (mode == WRITE_RAM) {
            memcpy(static_cast<uint8_t*>(e.ram) + at, src, n);
        } else if (mode == READ_RAM) {
            memcpy(dst, static_cast<const uint8_t*>(e.ram) + at, n);
        } else {
            factory_copy(dst, static_cast<const uint8_t*>(e.factory) + at, n);
        }
        return;
    }
    /* int elements on a device whose int is not 32 bits: int32 LE in the region */
    for (uint32_t k = 0; k < n; ++k) {
        uint32_t pos = at + k;
        uint32_t index = pos / 4u;
        uint32_t shift = 8u * (pos % 4u);
        int value;
        if (mode == READ_FACTORY) {
            factory_copy(&value, static_cast<const int*>(e.factory) + index, sizeof(value));
        } else {
            value = static_cast<const int*>(e.ram)[index];
        }
        uint32_t word = static_cast<uint32_t>(static_cast<int32_t>(value));
        if (mode == WRITE_RAM) {
            word = (word & ~(0xFFul << shift)) | (static_cast<uint32_t>(src[k]) << shift);
            static_cast<int*>(e.ram)[index] = static_cast<int>(static_cast<int32_t>(word));
        } else {
            dst[k] = static_cast<uint8_t>(word >> shift);
        }
    }
}

int region_io(int mode, uint32_t offset, uint8_t* dst, const uint8_t* src, uint32_t len) {
    if (len > MODELOTA_EI_REGION_SIZE || offset > MODELOTA_EI_REGION_SIZE - len) {
        return -1;
    }
    uint32_t done = 0;
    for (uint32_t m = 0; m < kModelCount && done < len; ++m) {
        for (uint32_t i = 0; i < kModels[m].entry_count && done < len; ++i) {
            const modelota_ei_entry& e = kModels[m].entries[i];
            uint32_t pos = offset + done;
            if (pos >= e.offset + e.size) {
                continue;
            }
            if (pos < e.offset) {
                return -1; /* a hole in the region: the tables are broken */
            }
            uint32_t at = pos - e.offset;
            uint32_t n = e.size - at;
            if (n > len - done) {
                n = len - done;
            }
            entry_io(e, mode, at, dst != nullptr ? dst + done : nullptr,
                     src != nullptr ? src + done : nullptr, n);
            done += n;
        }
    }
    return done == len ? 0 : -1;
}

int ram_read(void*, uint32_t offset, uint8_t* dst, uint32_t len) {
    return region_io(READ_RAM, offset, dst, nullptr, len);
}

int ram_write(void*, uint32_t offset, const uint8_t* src, uint32_t len) {
    return region_io(WRITE_RAM, offset, nullptr, src, len);
}

int factory_read(void*, uint32_t offset, uint8_t* dst, uint32_t len) {
    return region_io(READ_FACTORY, offset, dst, nullptr, len);
}

String status_string(int status) {
    const char* name = modelota_status_str(status);
    if (name != nullptr && name[0] != '\0') {
        return String(name);
    }
    char text[16] = "error -";
    uint32_t v = static_cast<uint32_t>(status < 0 ? -status : status);
    char digits[11];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + v % 10u);
        v /= 10u;
    } while (v != 0u && n < 10);
    int pos = 7;
    while (n > 0) {
        text[pos++] = digits[--n];
    }
    text[pos] = '\0';
    return String(text);
}

}  // namespace

void modelota_ei_load(const modelota_ei_object* objects, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
        factory_copy(objects[i].ram, objects[i].factory, objects[i].size);
    }
}

String ei_update_weights(Stream& in) {
    return ei_update_weights(in, MODELOTA_EI_TIMEOUT_MS);
}

String ei_update_weights(Stream& in, uint32_t timeout_ms) {
    uint8_t buffer[MODELOTA_EI_CHUNK_BUFFER];
    modelota_config cfg;
    modelota_config_init(&cfg,
                         modelota_target_callbacks(ram_read, ram_write, nullptr,
                                                   MODELOTA_EI_REGION_SIZE),
                         modelota_backup_callback(factory_read, nullptr, MODELOTA_EI_REGION_SIZE,
                                                  MODELOTA_EI_MODEL_VERSION),
                         modelota_ei_fingerprint, buffer, sizeof(buffer));
    cfg.current_version = g_version;
    cfg.writable = modelota_writable_flash(modelota_ei_writable, @WRITABLE_COUNT@u);
    modelota_updater u;
    int status = modelota_init(&u, &cfg);
    if (status == MODELOTA_OK) {
        status = modelota_pull(&u, in, timeout_ms);
        g_version = modelota_current_version(&u);
        g_intact = modelota_weights_intact(&u) != 0;
    }
    return status == MODELOTA_OK ? String("") : status_string(status);
}

String ei_restore_weights() {
    for (uint32_t m = 0; m < kModelCount; ++m) {
        modelota_ei_load(kModels[m].objects, kModels[m].object_count);
    }
    g_version = MODELOTA_EI_MODEL_VERSION;
    g_intact = true;
    return String("");
}

uint32_t ei_weights_version() {
    return g_version;
}

bool ei_weights_intact() {
    return g_intact;
}
"""


def _glue_source(exp: EIExport) -> str:
    fp = exp.fingerprint()
    writable = exp.writable_ranges()
    models = "\n".join(
        f"    {{ modelota_ei_entries_{_c_ident(m.name)}, MODELOTA_EI_ENTRIES_{_macro(m.name)},"
        f" modelota_ei_objects_{_c_ident(m.name)}, MODELOTA_EI_OBJECTS_{_macro(m.name)} }},"
        for m in exp.models
    )
    head = [
        f"/* {MARKER}: generated by `modelota prepare-ei`; run it again instead of editing.",
        " * ei_update_weights() / ei_restore_weights() over the ModelOTA Updater: the",
        " * weight region is the model arrays listed in the region tables, read and",
        " * written through callbacks; the factory arrays in flash are the backup. */",
        "#include <Arduino.h>",
        "#include <ModelOTA.h>",
        "",
        "#include <string.h>",
        "",
        f'#include "{GLUE_HEADER}"',
        "",
        "const uint8_t modelota_ei_fingerprint[16] = {"
        + ", ".join(f"0x{b:02x}" for b in fp)
        + "};",
        "/* The only bytes a payload may change: learned parameters and quantization",
        " * arrays (a payload touching anything else is refused with WrongModel). In",
        " * flash (PROGMEM on AVR), read from there by modelota_writable_flash. */",
        f"static const uint32_t modelota_ei_writable[{2 * len(writable) or 2}] MODELOTA_FLASH = {{"
        + (", ".join(f"{o}u, {n}u" for o, n in writable) or "0u, 0u")
        + "};",
    ]
    body = _GLUE_BODY.replace("@MODELS@", models)
    return "\n".join(head) + "\n" + body.replace("@WRITABLE_COUNT@", str(len(writable)))


def _write_if_changed(path: Path, text: str, changed: list[Path]) -> None:
    data = text.encode("utf-8", errors="surrogateescape")
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    changed.append(path)


def prepare_ei(libdir: str | os.PathLike[str], *, version: int = 1) -> PrepareReport:
    """Makes an extracted Edge Impulse Arduino library updatable in place (idempotent).

    ``version`` is the version of the weights compiled in (the factory weights):
    payloads must carry a higher one.
    """
    lib = Path(libdir)
    if not lib.is_dir():
        raise EIExportError(f"{lib}: prepare-ei works on an extracted library folder")
    if not 0 <= version <= U32_MAX:
        raise ValueError(f"version must be between 0 and {U32_MAX}, got {version}")
    exp = read_export(lib)
    src_dir = lib / exp.src
    already = all(m.prepared for m in exp.models)
    new_texts: dict[Path, str] = {}
    start = 0
    for m in exp.models:
        file = lib / exp.root / m.source
        rel_header = os.path.relpath(src_dir / GLUE_HEADER, file.parent).replace(os.sep, "/")
        text = file.read_bytes().decode("utf-8", errors="surrogateescape")
        if m.form == "eon":
            new_texts[file] = _patch_eon(text, m, rel_header, start)
        else:
            new_texts[file] = _patch_flatbuffer_header(text, m)
            unit = file.parent / f"{m.name}_modelota.cpp"
            new_texts[unit] = _flatbuffer_unit(m, file.name, rel_header, start)
        start += m.region_size
    # everything is generated before the first byte is written: a problem found
    # on the way leaves the library as it was
    new_texts[src_dir / GLUE_HEADER] = _glue_header(exp, version)
    new_texts[src_dir / GLUE_SOURCE] = _glue_source(exp)
    main = sorted(src_dir.glob("*_inferencing.h"))
    main_header = main[0] if len(main) == 1 else None
    if main_header is not None:
        text = main_header.read_bytes().decode("utf-8", errors="surrogateescape")
        if MARKER not in text:
            if not text.endswith("\n"):
                text += "\n"
            text += (
                f"\n/* {MARKER}: ei_update_weights() and ei_restore_weights() */\n"
                f'#include "{GLUE_HEADER}"\n'
            )
            new_texts[main_header] = text
    changed: list[Path] = []
    for path, text in new_texts.items():
        _write_if_changed(path, text, changed)
    return PrepareReport(
        libdir=lib,
        models=[m.name for m in exp.models],
        fingerprint=exp.fingerprint(),
        region_size=exp.region_size,
        ram_bytes=sum(m.ram_bytes for m in exp.models),
        version=version,
        changed=changed,
        already_prepared=already,
        main_header=main_header,
        stale=exp.stale,
    )
