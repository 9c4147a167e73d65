/*
 * Compile-only stand-in for the Arduino SD library: there is no card driver,
 * so there is never a card. The answers come from a volatile flag (always
 * 0) rather than constants, so that link-time optimisation cannot prove the
 * sketch's update path dead and drop it: the compile test then compiles and
 * links everything the sketch would run with a card.
 */
#include "SD.h"

namespace {
volatile uint8_t g_card = 0; /* never set: "no card" */
}

namespace SDLib {

File::File(void) { name_[0] = 0; }
size_t File::write(uint8_t) { return g_card; }
size_t File::write(const uint8_t*, size_t size) { return g_card ? size : 0; }
int File::availableForWrite() { return g_card; }
int File::read() { return g_card ? 0 : -1; }
int File::peek() { return g_card ? 0 : -1; }
int File::available() { return g_card; }
void File::flush() {}
int File::read(void*, uint16_t nbyte) { return g_card ? nbyte : -1; }
bool File::seek(uint32_t) { return g_card != 0; }
uint32_t File::position() { return g_card; }
uint32_t File::size() { return g_card; }
void File::close() {}
File::operator bool() { return g_card != 0; }
char* File::name() { return name_; }
bool File::isDirectory(void) { return false; }
File File::openNextFile(uint8_t) { return File(); }
void File::rewindDirectory(void) {}

bool SDClass::begin(uint8_t) { return g_card != 0; }
bool SDClass::begin(uint32_t, uint8_t) { return g_card != 0; }
void SDClass::end() {}
File SDClass::open(const char*, uint8_t) { return File(); }
bool SDClass::exists(const char*) { return g_card != 0; }
bool SDClass::mkdir(const char*) { return g_card != 0; }
bool SDClass::remove(const char*) { return g_card != 0; }
bool SDClass::rmdir(const char*) { return g_card != 0; }

SDClass SD;

}  // namespace SDLib
