/*
 * Stand-in for the Arduino SD library (arduino-libraries/SD 1.2, with its
 * bundled SdFat): same names, namespace, constants and signatures, so a
 * sketch that compiles against this compiles against the real one, and on
 * the host the same behaviour for what ModelOTA's SD port uses
 * (docs/ports/sd_file.h, tests/test_porting_doc.py):
 *
 *   - open() needs O_CREAT to create a file; FILE_WRITE is
 *     O_READ | O_WRITE | O_CREAT | O_APPEND and starts at the end;
 *   - with O_APPEND every write goes to the end of the file, whatever
 *     seek() said (SdFile::write: "if O_APPEND, seekEnd() first");
 *   - seek() past the end of the file fails; reads stop at the end;
 *   - writes go through SdFat's one 512-byte block cache: a block reaches
 *     the card when another block is touched, on flush() and on close();
 *     the file's size reaches the card (its directory entry) only on flush()
 *     and close(). A power cut loses the rest.
 *
 * tests/test_arduino_examples.py compiles examples/UpdateFromSD against it
 * for the Mega when the real library is not installed (Debian does not
 * package it and the tests download nothing); there (on AVR) there is no
 * card: SD.begin() returns false. On the host the card is in RAM: 4 files
 * of up to 64 KiB, 8.3 names.
 */
#ifndef MODELOTA_SD_SHIM_H
#define MODELOTA_SD_SHIM_H

#include <Arduino.h>

/* open() flags, with the values of the SD library's bundled SdFat. */
uint8_t const O_READ = 0x01;
uint8_t const O_RDONLY = O_READ;
uint8_t const O_WRITE = 0x02;
uint8_t const O_WRONLY = O_WRITE;
uint8_t const O_RDWR = (O_READ | O_WRITE);
uint8_t const O_APPEND = 0x04;
uint8_t const O_SYNC = 0x08;
uint8_t const O_CREAT = 0x10;
uint8_t const O_EXCL = 0x20;
uint8_t const O_TRUNC = 0x40;

#define FILE_READ O_READ
#define FILE_WRITE (O_READ | O_WRITE | O_CREAT | O_APPEND)

uint8_t const SD_CHIP_SELECT_PIN = SS;

namespace SDLib {

class File : public Stream {
public:
    File(void);
    virtual size_t write(uint8_t);
    virtual size_t write(const uint8_t* buf, size_t size);
    virtual int availableForWrite();
    virtual int read();
    virtual int peek();
    virtual int available();
    virtual void flush();
    int read(void* buf, uint16_t nbyte);
    bool seek(uint32_t pos);
    uint32_t position();
    uint32_t size();
    void close();
    operator bool();
    char* name();

    bool isDirectory(void);
    File openNextFile(uint8_t mode = O_RDONLY);
    void rewindDirectory(void);

    using Print::write;

private:
    friend class SDClass;
    int8_t handle_; /* open-file slot shared by copies, as the real File shares its SdFile */
};

class SDClass {
public:
    bool begin(uint8_t csPin = SD_CHIP_SELECT_PIN);
    bool begin(uint32_t clock, uint8_t csPin);
    void end();

    File open(const char* filename, uint8_t mode = FILE_READ);
    File open(const String& filename, uint8_t mode = FILE_READ) {
        return open(filename.c_str(), mode);
    }
    bool exists(const char* filepath);
    bool exists(const String& filepath) { return exists(filepath.c_str()); }
    bool mkdir(const char* filepath);
    bool mkdir(const String& filepath) { return mkdir(filepath.c_str()); }
    bool remove(const char* filepath);
    bool remove(const String& filepath) { return remove(filepath.c_str()); }
    bool rmdir(const char* filepath);
    bool rmdir(const String& filepath) { return rmdir(filepath.c_str()); }
};

extern SDClass SD;

/* Test side (host): the power gets cut or comes back. Cutting drops what
 * SdFat still held in RAM (the cached block, sizes not yet flushed) and
 * closes every File; the card keeps the rest. */
namespace shim {
void power_cycle();
void wipe(); /* a freshly formatted, empty card */
}  // namespace shim

}  // namespace SDLib

using namespace SDLib;
typedef SDLib::File SDFile;
typedef SDLib::SDClass SDFileSystemClass;
#define SDFileSystem SDLib::SD

#endif /* MODELOTA_SD_SHIM_H */
