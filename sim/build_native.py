"""cffi out-of-line API-mode build of the real firmware_lib sources.

``pip install`` runs this through ``cffi_modules`` (setup.py) and produces
``modelota._native``. Tests also call :func:`make_ffi` with a sanitizer
variant (ASan + UBSan) built into a temporary directory.

The C declarations are not repeated by hand where they can be read: every
``MODELOTA_*`` status, state and restore constant is taken from the headers,
so the Python side cannot drift from the C side.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware_lib"
SIM = ROOT / "sim"

CORE_SOURCES = [
    FIRMWARE / "modelota" / n
    for n in ("crc32.cpp", "status.cpp", "decode.cpp", "updater.cpp", "store.cpp", "link.cpp")
]
SIM_SOURCES = [SIM / "sim_storage.cpp", SIM / "sim_flash.cpp"]

STRICT_FLAGS = [
    "-std=c++11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wconversion",
    "-fno-exceptions",
    "-fno-rtti",
]
SANITIZE_FLAGS = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
]

CDEF_TYPES = """
typedef int (*modelota_read_fn)(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
typedef int (*modelota_write_fn)(void* ctx, uint32_t offset, const uint8_t* src, uint32_t len);

typedef struct modelota_target {
    uint8_t* ram;
    modelota_read_fn read;
    modelota_write_fn write;
    void* ctx;
    uint32_t size;
    int (*commit)(void* ctx, uint32_t version);
} modelota_target;

typedef struct modelota_source {
    const uint8_t* image;
    modelota_read_fn read;
    void* ctx;
    uint32_t version;
    uint32_t base;
    uint32_t size;
} modelota_source;

typedef int (*modelota_verify_fn)(void* ctx, const uint8_t* msg, uint32_t len,
                                  const uint8_t* sig);
typedef struct modelota_verifier {
    modelota_verify_fn verify;
    void* ctx;
} modelota_verifier;

typedef struct modelota_writable {
    const uint32_t* ranges;
    uint32_t count;
} modelota_writable;

typedef struct modelota_config {
    modelota_target target;
    modelota_source backup;
    const uint8_t* fingerprint;
    uint32_t current_version;
    uint8_t* buffer;
    uint32_t buffer_len;
    uint8_t verify_only;
    uint32_t min_version;
    modelota_verifier verifier;
    modelota_writable writable;
} modelota_config;

typedef struct modelota_updater { ...; } modelota_updater;

typedef struct modelota_storage modelota_storage;
struct modelota_storage {
    void* context;
    int (*read)(const modelota_storage* s, uint32_t block, uint32_t off, uint8_t* buf,
                uint32_t size);
    int (*prog)(const modelota_storage* s, uint32_t block, uint32_t off, const uint8_t* buf,
                uint32_t size);
    int (*erase)(const modelota_storage* s, uint32_t block);
    int (*sync)(const modelota_storage* s);
    uint32_t prog_size;
    uint32_t block_size;
    uint32_t block_count;
    uint8_t erased_value;
};

typedef struct modelota_store_config {
    const modelota_storage* storage;
    uint32_t region_block;
    uint32_t region_size;
    uint32_t meta_block;
    uint32_t backup_block;
    uint32_t journal_block;
    uint32_t journal_blocks;
    uint32_t log_block;
    uint32_t log_blocks;
    uint8_t* block_buf;
} modelota_store_config;

typedef struct modelota_store { ...; } modelota_store;

typedef struct sim_region {
    uint8_t* bytes;
    uint32_t size;
    uint32_t reads;
    uint32_t writes;
    int32_t fail_write_at;
    int32_t fail_read_at;
} sim_region;

uint32_t modelota_crc32(uint32_t crc, const uint8_t* data, size_t len);
const char* modelota_status_str(int status);
int modelota_init(modelota_updater* u, const modelota_config* cfg);
int modelota_begin(modelota_updater* u);
int modelota_feed(modelota_updater* u, const uint8_t* data, size_t n);
int modelota_finish(modelota_updater* u);
int modelota_abort(modelota_updater* u, int reason);
int modelota_state_of(const modelota_updater* u);
int modelota_last_status(const modelota_updater* u);
int modelota_restore_of(const modelota_updater* u);
uint32_t modelota_current_version(const modelota_updater* u);
uint32_t modelota_bytes_in(const modelota_updater* u);
uint32_t modelota_data_applied(const modelota_updater* u);
uint32_t modelota_data_total(const modelota_updater* u);
uint32_t modelota_bytes_wanted(const modelota_updater* u);
int modelota_weights_intact(const modelota_updater* u);
int modelota_memory_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
modelota_source modelota_backup_image(const uint8_t* weights, uint32_t len, uint32_t version);
modelota_source modelota_backup_flash(const uint8_t* weights, uint32_t len, uint32_t version);
modelota_source modelota_backup_ram(const uint8_t* weights, uint32_t len, uint32_t version);
modelota_source modelota_backup_callback(modelota_read_fn read, void* ctx, uint32_t len,
                                         uint32_t version);
int modelota_source_read(const modelota_source* src, uint32_t offset, uint8_t* dst, uint32_t len);
modelota_target modelota_target_ram(uint8_t* weights, uint32_t size);
modelota_target modelota_target_callbacks(modelota_read_fn read, modelota_write_fn write,
                                          void* ctx, uint32_t size);
void modelota_config_init(modelota_config* cfg, modelota_target target, modelota_source backup,
                          const uint8_t* fingerprint, uint8_t* buffer, uint32_t buffer_len);
int modelota_store_init(modelota_store* st, const modelota_store_config* cfg);
int modelota_store_recover(modelota_store* st);
int modelota_store_format(modelota_store* st, const uint8_t* weights, uint32_t version);
int modelota_store_load(modelota_store* st, uint8_t* ram, uint32_t size);
int modelota_store_state_of(const modelota_store* st);
uint32_t modelota_store_version(const modelota_store* st);
int modelota_store_begin(modelota_store* st);
int modelota_store_log(modelota_store* st, const uint8_t* data, uint32_t n);
int modelota_store_commit(modelota_store* st, uint32_t version);
void modelota_store_cancel(modelota_store* st);
int modelota_store_region_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
int modelota_store_commit_hook(void* ctx, uint32_t version);
void modelota_store_attach_ram(modelota_config* cfg, modelota_store* st, uint8_t* ram);
void modelota_store_attach_flash(modelota_config* cfg, modelota_store* st);
int sim_region_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len);
typedef struct modelota_decoder { uint16_t lit[256]; uint16_t lane[128]; ...; } modelota_decoder;
void modelota_decoder_reset(modelota_decoder* d);
void modelota_decode_begin(modelota_decoder* d, uint8_t enc, uint32_t offset, uint32_t length);
uint32_t modelota_decode(modelota_decoder* d, const uint8_t* in, uint32_t n, uint8_t* out,
                         uint32_t from, uint32_t to);
uint32_t modelota_decoded(const modelota_decoder* d);
uint32_t modelota_fdiv(uint32_t a, uint32_t d);
void modelota_predict_add(uint8_t* out, const uint8_t* src, uint32_t count, uint32_t divisor);

typedef struct modelota_link_io {
    void* ctx;
    int (*write)(void* ctx, const uint8_t* data, uint32_t n);
    uint32_t (*now_ms)(void* ctx);
} modelota_link_io;
typedef struct modelota_link_config {
    modelota_updater* updater;
    const modelota_config* cfg;
    modelota_store* store;
    modelota_link_io io;
    uint8_t* frame_buf;
    uint32_t frame_buf_len;
    uint32_t resume_timeout_ms;
    uint8_t window;
    uint32_t (*weights_crc)(void* app);
    int32_t (*probe)(void* app);
    void* app;
} modelota_link_config;
typedef struct modelota_link { ...; } modelota_link;
int modelota_link_init(modelota_link* l, const modelota_link_config* c);
int modelota_link_rx(modelota_link* l, const uint8_t* data, uint32_t n);
int modelota_link_poll(modelota_link* l);
int modelota_link_busy(const modelota_link* l);
int modelota_link_last_result(const modelota_link* l);
uint32_t modelota_link_acked(const modelota_link* l);
uint32_t modelota_link_max_data(const modelota_link* l);
uint32_t modelota_link_frames_bad(const modelota_link* l);
extern "Python" int modelota_py_link_write(void* ctx, const uint8_t* data, uint32_t n);
extern "Python" uint32_t modelota_py_link_now(void* ctx);
extern "Python" uint32_t modelota_py_weights_crc(void* app);
extern "Python" int32_t modelota_py_probe(void* app);
int sim_region_write(void* ctx, uint32_t offset, const uint8_t* src, uint32_t len);

#define SIM_FLASH_OK ...
#define SIM_FLASH_EINVAL ...
#define SIM_FLASH_ENOTERASED ...
#define SIM_FLASH_ECUT ...
#define SIM_FLASH_EDEAD ...
#define SIM_FLASH_EREAD ...

typedef struct sim_flash {
    uint8_t* mem;
    uint32_t block_size;
    uint32_t block_count;
    uint32_t prog_size;
    uint8_t erased_value;
    uint8_t strict;
    uint8_t tear;
    uint8_t dead;
    uint32_t seed;
    int64_t cut_at;
    int64_t fail_read_at;
    const uint8_t* bad_read;
    uint32_t* erase_counts;
    uint64_t ops;
    uint64_t reads;
    uint64_t progs;
    uint64_t erases;
    uint64_t syncs;
    uint64_t errors;
    uint64_t bytes_programmed;
} sim_flash;

int sim_flash_init(sim_flash* f, uint8_t* mem, uint32_t block_size, uint32_t block_count,
                   uint32_t prog_size, uint8_t erased_value);
void sim_flash_storage(sim_flash* f, modelota_storage* out);
void sim_flash_cut_power(sim_flash* f, int64_t at, int tear, uint32_t seed);
void sim_flash_reboot(sim_flash* f);
int sim_flash_read(const modelota_storage* s, uint32_t block, uint32_t off, uint8_t* buf,
                   uint32_t size);
int sim_flash_prog(const modelota_storage* s, uint32_t block, uint32_t off, const uint8_t* buf,
                   uint32_t size);
int sim_flash_erase(const modelota_storage* s, uint32_t block);
int sim_flash_sync(const modelota_storage* s);
"""

# Sample logger (firmware_lib/modelota/samples.h, docs/COLLECT.md): sources and declarations.
CORE_SOURCES.append(FIRMWARE / "modelota" / "samples.cpp")
CDEF_TYPES += """
typedef struct modelota_sensor { const char* name; const char* units; } modelota_sensor;
typedef int (*modelota_samples_write_fn)(void* ctx, const uint8_t* data, uint32_t n);
typedef struct modelota_samples_config {
    const modelota_sensor* sensors;
    uint8_t sensor_count;
    uint16_t window;
    uint16_t hop;
    float interval_ms;
    float* buffer;
    uint32_t buffer_len;
} modelota_samples_config;
typedef struct modelota_samples { ...; } modelota_samples;
int modelota_samples_init(modelota_samples* s, const modelota_samples_config* c);
int modelota_samples_push(modelota_samples* s, const float* row, uint32_t n);
int modelota_samples_ready(const modelota_samples* s);
uint32_t modelota_samples_frame_len(const modelota_samples* s);
int modelota_samples_write(modelota_samples* s, modelota_samples_write_fn write, void* ctx);
int32_t modelota_samples_encode(modelota_samples* s, uint8_t* out, uint32_t cap);
uint32_t modelota_samples_seq(const modelota_samples* s);
uint32_t modelota_samples_total(const modelota_samples* s);
uint32_t modelota_samples_dropped(const modelota_samples* s);
#define MODELOTA_SAMPLES_FORMAT_VERSION ...
#define MODELOTA_SAMPLES_HEAD_LEN ...
#define MODELOTA_SAMPLES_MAX_SENSORS ...
#define MODELOTA_SAMPLES_MAX_NAME ...
#define MODELOTA_SAMPLES_MAX_UNITS ...
#define MODELOTA_SAMPLES_MAX_VALUES ...
"""
SAMPLES_INCLUDE = '#include "modelota/samples.h"\n'

# Crypto primitives (firmware_lib/modelota/sha256.h, sha512.h, ed25519.h; docs/SECURITY.md).
CORE_SOURCES += [FIRMWARE / "modelota" / n for n in ("sha256.cpp", "sha512.cpp", "ed25519.cpp")]
CDEF_TYPES += """
typedef struct modelota_sha256 { ...; } modelota_sha256;
void modelota_sha256_init(modelota_sha256* c);
void modelota_sha256_update(modelota_sha256* c, const uint8_t* data, size_t n);
void modelota_sha256_final(modelota_sha256* c, uint8_t out[32]);
typedef struct modelota_sha512 { ...; } modelota_sha512;
void modelota_sha512_init(modelota_sha512* c);
void modelota_sha512_update(modelota_sha512* c, const uint8_t* data, size_t n);
void modelota_sha512_final(modelota_sha512* c, uint8_t out[64]);
int modelota_ed25519_verify(const uint8_t signature[64], const uint8_t* msg, size_t len,
                            const uint8_t public_key[32]);
int modelota_ed25519_public_key_valid(const uint8_t public_key[32]);
"""
CRYPTO_INCLUDE = (
    '#include "modelota/sha256.h"\n#include "modelota/sha512.h"\n#include "modelota/ed25519.h"\n'
)

# Signed payloads and anti-rollback (updater.h, store.h; docs/SECURITY.md).
CDEF_TYPES += """
uint32_t modelota_min_version(const modelota_updater* u);
int modelota_ed25519_verify_cb(void* ctx, const uint8_t* msg, uint32_t len, const uint8_t* sig);
modelota_verifier modelota_ed25519_verifier(const uint8_t* public_key);
uint32_t modelota_store_min_version(const modelota_store* st);
int modelota_store_raise_min_version(modelota_store* st, uint32_t min_version);
extern "Python" int modelota_py_verify(void* ctx, const uint8_t* msg, uint32_t len,
                                       const uint8_t* sig);
static const int MODELOTA_SHA256;
static const int MODELOTA_SIGNATURES;
"""


# Model-quality summary (firmware_lib/modelota/quality.h, docs/FLEET.md "Model quality").
CORE_SOURCES.append(FIRMWARE / "modelota" / "quality.cpp")
CDEF_TYPES += """
typedef struct modelota_quality { ...; } modelota_quality;
int modelota_quality_init(modelota_quality* q, uint16_t classes, uint16_t window,
                          uint32_t version);
void modelota_quality_reset(modelota_quality* q, uint32_t version);
int modelota_quality_record(modelota_quality* q, uint16_t cls, float confidence, int32_t label);
int modelota_quality_record_scores(modelota_quality* q, const float* scores, uint16_t n,
                                   int32_t label);
int modelota_quality_ready(const modelota_quality* q);
uint32_t modelota_quality_windows(const modelota_quality* q);
int32_t modelota_quality_json(const modelota_quality* q, char* out, uint32_t cap);
#define MODELOTA_QUALITY_MAX_CLASSES ...
#define MODELOTA_QUALITY_FORMAT ...
#define MODELOTA_QUALITY_JSON_MAX ...
"""
QUALITY_INCLUDE = '#include "modelota/quality.h"\n'


def header_constants() -> list[str]:
    """Every MODELOTA_* enum constant and integer #define in the core headers."""
    names: list[str] = []
    for header in ("status.h", "updater.h", "format.h", "decode.h", "store.h", "link.h"):
        text = (FIRMWARE / "modelota" / header).read_text()
        names += re.findall(r"^\s*(MODELOTA_[A-Z0-9_]+)\s*=", text, flags=re.M)
        names += re.findall(
            r"^#define\s+(MODELOTA_[A-Z0-9_]+)\s+\(?-?(?:0x[0-9A-Fa-f]+|\d+)u?\)?\s*(?:/\*.*)?$",
            text,
            flags=re.M,
        )
    return sorted(set(names))


def source_hash() -> str:
    """Hash of every C/C++ source and header that goes into the build."""
    h = hashlib.sha256()
    files = sorted(FIRMWARE.rglob("*.[ch]*")) + sorted(SIM.glob("*.[ch]*"))
    for f in files:
        if f.suffix in {".h", ".cpp", ".c"}:
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def make_ffi(
    module_name: str = "modelota._native",
    sanitize: bool = False,
    defines: dict[str, str] | None = None,
    absolute_paths: bool = False,
) -> FFI:
    """The cffi builder. setuptools wants source paths relative to the project
    root (where pip runs this); ffi.compile() into another directory wants
    absolute ones."""
    ffi = FFI()
    consts = "\n".join(f"static const int {n};" for n in header_constants())
    ffi.cdef(CDEF_TYPES + consts + "\nstatic const char MODELOTA_SOURCE_HASH[];\n")
    flags = list(STRICT_FLAGS)
    if sanitize:
        flags += SANITIZE_FLAGS
    macros = [(k, v) for k, v in (defines or {}).items()]
    ffi.set_source(
        module_name,
        '#include "modelota.h"\n#include "sim_storage.h"\n#include "sim_flash.h"\n'
        + SAMPLES_INCLUDE
        + QUALITY_INCLUDE
        + CRYPTO_INCLUDE +
        "#include <string.h>\n"
        f'static const char MODELOTA_SOURCE_HASH[] = "{source_hash()}";\n',
        sources=[
            str(p) if absolute_paths else os.path.relpath(p) for p in CORE_SOURCES + SIM_SOURCES
        ],
        include_dirs=[str(FIRMWARE), str(SIM)],
        source_extension=".cpp",
        extra_compile_args=flags,
        extra_link_args=["-fsanitize=address,undefined"] if sanitize else [],
        define_macros=macros,
    )
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
