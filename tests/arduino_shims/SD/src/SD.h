/*
 * Compile-only stand-in for the Arduino SD library (arduino-libraries/SD).
 *
 * tests/test_arduino_examples.py uses it to compile examples/UpdateFromSD
 * when the real library is not installed (Debian does not package it and
 * the tests download nothing). The declarations follow the official SD.h:
 * same names, namespace, constants and signatures, so a sketch that compiles
 * against this compiles against the real one. There is no card driver:
 * SD.begin() returns false and open() returns a closed File.
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
    char name_[13];
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

}  // namespace SDLib

using namespace SDLib;
typedef SDLib::File SDFile;
typedef SDLib::SDClass SDFileSystemClass;
#define SDFileSystem SDLib::SD

#endif /* MODELOTA_SD_SHIM_H */
