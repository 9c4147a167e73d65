/*
 * A port (docs/ports/NAME.h, through its adapter) under the Store, against its
 * stand-in (tests/port_standins): tests/test_porting_doc.py.
 *
 *   port_driver MODE REGION_BLOCK REGION_SIZE META BACKUP JOURNAL JOURNAL_BLOCKS
 *               LOG LOG_BLOCKS V1 V2 PAYLOAD CUT_STEP
 *
 * MODE ram: the weights run from RAM, the Store keeps their committed copy
 * (examples/PersistentUpdate); flash: the weights live in the storage and
 * the Store rewrites them in place. V1, V2: the weights before and after
 * PAYLOAD (version 2). Steps, each printed as key=value:
 *   format   a new medium formatted with V1; a reboot loads V1 back;
 *   update   PAYLOAD applied; a reboot loads V2 and version 2;
 *   cuts     the same update with the power cut after 0, CUT_STEP, ...
 *            storage operations, each followed by a reboot: the store must
 *            load V1 or V2 exactly (old=, new=; bad= otherwise), and after
 *            V1 the update done again must give V2 (retry_bad= otherwise).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "modelota.h"
#include "port.h"
#include "slurp.h"

namespace {

long g_power = -1; /* operations left before the cut; < 0: no cut */
unsigned long g_ops = 0;

const uint8_t kFingerprint[16] = {'p', 'o', 'r', 't', '-', 't', 'e', 's',
                                  't', '-', 'f', 'i', 'n', 'g', 'e', 'r'};


struct Device {
    modelota_store_config layout;
    std::vector<uint8_t> block_buf;
    modelota_store store;
    bool flash_model;
};

uint32_t blocks(const modelota_store_config& c) { return c.log_block + c.log_blocks; }

/* A (re)boot: the port opens its medium, the Store finishes or drops an
 * interrupted update. */
int boot(Device& d) {
    port_power_cycle();
    d.layout.storage = port_open(blocks(d.layout));
    if (d.layout.storage == NULL) return MODELOTA_STORAGE_IO;
    d.block_buf.assign(d.layout.storage->block_size, 0);
    d.layout.block_buf = d.block_buf.data();
    int st = modelota_store_init(&d.store, &d.layout);
    return st < 0 ? st : modelota_store_recover(&d.store);
}

/* What a boot finds: the committed weights (CRC checked) and version. */
int load(Device& d, std::vector<uint8_t>& out) {
    int st = boot(d);
    out.assign(d.layout.region_size, 0);
    return st < 0 ? st : modelota_store_load(&d.store, out.data(), d.layout.region_size);
}

int update(Device& d, const std::vector<uint8_t>& payload) {
    std::vector<uint8_t> ram(d.layout.region_size, 0);
    static uint8_t chunk_buf[512];
    modelota_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    if (d.flash_model) {
        modelota_store_attach_flash(&cfg, &d.store);
    } else {
        int st = modelota_store_load(&d.store, ram.data(), d.layout.region_size);
        if (st < 0) return st;
        modelota_store_attach_ram(&cfg, &d.store, ram.data());
    }
    cfg.fingerprint = kFingerprint;
    cfg.current_version = modelota_store_version(&d.store);
    cfg.buffer = chunk_buf;
    cfg.buffer_len = sizeof(chunk_buf);
    modelota_updater u;
    int st = modelota_init(&u, &cfg);
    if (st == MODELOTA_OK) st = modelota_store_begin(&d.store);
    if (st == MODELOTA_OK) st = modelota_begin(&u);
    for (size_t at = 0; st == MODELOTA_OK && at < payload.size(); at += 32) {
        uint32_t n = static_cast<uint32_t>(payload.size() - at < 32 ? payload.size() - at : 32);
        st = modelota_store_log(&d.store, payload.data() + at, n);
        if (st == MODELOTA_OK) st = modelota_feed(&u, payload.data() + at, n);
    }
    if (st == MODELOTA_OK) st = modelota_finish(&u); /* commits through the Store */
    if (st != MODELOTA_OK) modelota_store_cancel(&d.store);
    return st;
}

/* A new medium formatted with v1 (at full power). */
int fresh(Device& d, const std::vector<uint8_t>& v1) {
    g_power = -1;
    port_wipe();
    int st = boot(d);
    return st < 0 ? st : modelota_store_format(&d.store, v1.data(), 1);
}

}  // namespace

extern "C" int modelota_standin_power_take(void) {
    if (g_power == 0) return 0;
    if (g_power > 0) --g_power;
    ++g_ops;
    return 1;
}

int main(int argc, char** argv) {
    if (argc != 14) {
        fprintf(stderr, "usage: see the top of port_driver.cpp\n");
        return 2;
    }
    Device d;
    memset(&d.layout, 0, sizeof(d.layout));
    d.flash_model = strcmp(argv[1], "flash") == 0;
    uint32_t* fields[] = {&d.layout.region_block, &d.layout.region_size, &d.layout.meta_block,
                          &d.layout.backup_block, &d.layout.journal_block,
                          &d.layout.journal_blocks, &d.layout.log_block, &d.layout.log_blocks};
    for (int i = 0; i < 8; ++i) *fields[i] = static_cast<uint32_t>(strtoul(argv[2 + i], NULL, 10));
    std::vector<uint8_t> v1 = slurp(argv[10]), v2 = slurp(argv[11]), payload = slurp(argv[12]);
    long step = strtol(argv[13], NULL, 10);
    std::vector<uint8_t> got;

    int st = fresh(d, v1);
    printf("format=%s\n", modelota_status_str(st));
    st = load(d, got);
    printf("format_load=%s\nformat_same=%d\n", modelota_status_str(st), got == v1 ? 1 : 0);

    g_ops = 0;
    st = update(d, payload);
    unsigned long ops = g_ops;
    printf("update=%s\nupdate_ops=%lu\n", modelota_status_str(st), ops);
    st = load(d, got);
    printf("update_load=%s\nupdate_version=%u\nupdate_same=%d\n", modelota_status_str(st),
           static_cast<unsigned>(modelota_store_version(&d.store)), got == v2 ? 1 : 0);

    unsigned long cuts = 0, old_w = 0, new_w = 0, bad = 0, retry_bad = 0;
    for (long cut = 0; step > 0 && cut < static_cast<long>(ops); cut += step, ++cuts) {
        if (fresh(d, v1) != MODELOTA_OK) {
            ++bad;
            continue;
        }
        g_power = cut;
        update(d, payload); /* fails where the power goes */
        g_power = -1;
        st = load(d, got);
        uint32_t version = modelota_store_version(&d.store);
        if (st == MODELOTA_OK && version == 2 && got == v2) {
            ++new_w;
        } else if (st == MODELOTA_OK && version == 1 && got == v1) {
            ++old_w;
            if (update(d, payload) != MODELOTA_OK || load(d, got) != MODELOTA_OK || got != v2) {
                ++retry_bad;
            }
        } else {
            ++bad;
            printf("bad_cut=%ld (%s, version %u)\n", cut, modelota_status_str(st),
                   static_cast<unsigned>(version));
        }
    }
    printf("cuts=%lu\nold=%lu\nnew=%lu\nbad=%lu\nretry_bad=%lu\n", cuts, old_w, new_w, bad,
           retry_bad);
    return 0;
}
