/*
 * Host stand-in for the Arduino core's Client.h (and the IPAddress it
 * needs), with the core's pure virtual methods and signatures, so
 * src/ModelOTAHttp and the WiFi shim compile with host g++ on top of
 * tests/arduino_host/Arduino.h.
 */
#ifndef MODELOTA_HOST_CLIENT_H
#define MODELOTA_HOST_CLIENT_H

#include <Arduino.h>

class IPAddress {
public:
    IPAddress() : addr_(0) {}
    IPAddress(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
        : addr_(static_cast<uint32_t>(a) | static_cast<uint32_t>(b) << 8 |
                static_cast<uint32_t>(c) << 16 | static_cast<uint32_t>(d) << 24) {}
    uint8_t operator[](int i) const { return static_cast<uint8_t>(addr_ >> (8 * i)); }

private:
    uint32_t addr_;
};

class Client : public Stream {
public:
    virtual int connect(IPAddress ip, uint16_t port) = 0;
    virtual int connect(const char* host, uint16_t port) = 0;
    virtual size_t write(uint8_t) = 0;
    virtual size_t write(const uint8_t* buf, size_t size) = 0;
    virtual int available() = 0;
    virtual int read() = 0;
    virtual int read(uint8_t* buf, size_t size) = 0;
    virtual int peek() = 0;
    virtual void flush() = 0;
    virtual void stop() = 0;
    virtual uint8_t connected() = 0;
    virtual operator bool() = 0;
};

#endif
