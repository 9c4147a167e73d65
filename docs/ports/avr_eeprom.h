/* AVR EEPROM as ModelOTA storage (Arduino EEPROM library): 64-byte blocks,
 * byte writes. EEPROM has no erase: erase writes the erased value. */
#include <EEPROM.h>
#include <ModelOTA.h>

static const uint32_t kEeBlock = 64;

static int ee_read(const modelota_storage*, uint32_t b, uint32_t off, uint8_t* buf, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) buf[i] = EEPROM.read((int)(b * kEeBlock + off + i));
    return 0;
}
static int ee_prog(const modelota_storage*, uint32_t b, uint32_t off, const uint8_t* buf,
                   uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) EEPROM.update((int)(b * kEeBlock + off + i), buf[i]);
    return 0;
}
static int ee_erase(const modelota_storage*, uint32_t b) {
    for (uint32_t i = 0; i < kEeBlock; ++i) EEPROM.update((int)(b * kEeBlock + i), 0xFF);
    return 0;
}
/* the whole EEPROM: 4 KiB on a Mega, 64 blocks */
static const modelota_storage kEeprom = {nullptr, ee_read, ee_prog, ee_erase, nullptr,
                                         1, kEeBlock, (E2END + 1) / kEeBlock, 0xFF};
