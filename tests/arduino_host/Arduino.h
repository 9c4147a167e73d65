/*
 * Host stand-in for the few Arduino core declarations src/ModelOTA.{h,cpp}
 * and the glue `modelota prepare-ei` generates use (Stream, String, millis,
 * yield), so tests/test_arduino_glue.py and tests/test_edgeimpulse.py can run
 * the real glue on the host against scripted streams and a fake clock. The
 * signatures are the Arduino core's.
 */
#ifndef MODELOTA_HOST_ARDUINO_H
#define MODELOTA_HOST_ARDUINO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <string>

class Print {
public:
    virtual ~Print() {}
    int getWriteError() { return write_error_; }
    void clearWriteError() { write_error_ = 0; }
    virtual size_t write(uint8_t) = 0;
    virtual size_t write(const uint8_t* buffer, size_t size) {
        size_t n = 0;
        while (size-- > 0 && write(*buffer++) == 1) {
            ++n;
        }
        return n;
    }

protected:
    void setWriteError(int err = 1) { write_error_ = err; }

private:
    int write_error_ = 0;
};

class Stream : public Print {
public:
    virtual int available() = 0;
    virtual int read() = 0;
    virtual int peek() = 0;
};

class String {
public:
    String(const char* s = "") : s_(s != nullptr ? s : "") {}
    const char* c_str() const { return s_.c_str(); }
    bool operator==(const char* o) const { return s_ == o; }
    bool operator!=(const char* o) const { return s_ != o; }

private:
    std::string s_;
};

#define SS 53 /* a Mega's SPI chip select, for the SD stand-in */

unsigned long millis(void);
void yield(void);
/* delayMicroseconds() busy-waits on a board (it counts cycles). Here it
 * calls the driver's hook when one is set (glue_driver.cpp advances its
 * fake clock), and returns at once otherwise. */
typedef void (*arduino_host_delay_fn)(unsigned int us);
inline arduino_host_delay_fn& arduino_host_delay_hook() {
    static arduino_host_delay_fn hook = nullptr;
    return hook;
}
inline void delayMicroseconds(unsigned int us) {
    if (arduino_host_delay_hook() != nullptr) {
        arduino_host_delay_hook()(us);
    }
}

#endif
