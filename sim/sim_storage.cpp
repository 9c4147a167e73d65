#include "sim_storage.h"

#include <string.h>

namespace {

bool in_range(const sim_region* r, uint32_t offset, uint32_t len) {
    return offset <= r->size && len <= r->size - offset;
}

/* true when this call is the one chosen to fail */
bool take_fault(int32_t fail_at, uint32_t count) {
    return fail_at >= 0 && static_cast<uint32_t>(fail_at) == count;
}

}  // namespace

extern "C" int sim_region_read(void* ctx, uint32_t offset, uint8_t* dst, uint32_t len) {
    sim_region* r = static_cast<sim_region*>(ctx);
    uint32_t n = r->reads++;
    if (!in_range(r, offset, len) || take_fault(r->fail_read_at, n)) {
        return -1;
    }
    memcpy(dst, r->bytes + offset, len);
    return 0;
}

extern "C" int sim_region_write(void* ctx, uint32_t offset, const uint8_t* src, uint32_t len) {
    sim_region* r = static_cast<sim_region*>(ctx);
    uint32_t n = r->writes++;
    if (!in_range(r, offset, len)) {
        return -1;
    }
    if (take_fault(r->fail_write_at, n)) {
        /* a failing write may have changed part of its range */
        memcpy(r->bytes + offset, src, len / 2u);
        return -1;
    }
    memcpy(r->bytes + offset, src, len);
    return 0;
}
