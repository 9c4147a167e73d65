/*
 * What a sketch gets from the Arduino core beyond tests/arduino_host/Arduino.h
 * (Serial with print/println, F(), HEX, delay), for running an example sketch
 * on the host: g++ -include Arduino.h -include host_sketch.h -x c++ X.ino.
 * Serial writes to stdout.
 */
#ifndef MODELOTA_HOST_SKETCH_H
#define MODELOTA_HOST_SKETCH_H

#include <Arduino.h>
#include <stdio.h>

#include <type_traits>

#define F(s) (s)
#define DEC 10
#define HEX 16

void delay(unsigned long ms);

class HostSerial : public Stream {
public:
    void begin(unsigned long) {}
    operator bool() { return true; }
    size_t write(uint8_t c) { return fputc(c, stdout) == EOF ? 0 : 1; }
    int available() { return 0; }
    int read() { return -1; }
    int peek() { return -1; }
    void print(const char* s) { fputs(s, stdout); }
    void print(const String& s) { fputs(s.c_str(), stdout); }
    void print(char c) { fputc(c, stdout); }
    template <typename T>
    typename std::enable_if<std::is_integral<T>::value>::type print(T v, int base = DEC) {
        if (base == HEX) {
            printf("%llX", static_cast<unsigned long long>(v));
        } else if (std::is_signed<T>::value) {
            printf("%lld", static_cast<long long>(v));
        } else {
            printf("%llu", static_cast<unsigned long long>(v));
        }
    }
    template <typename T>
    void println(const T& v) {
        print(v);
        println();
    }
    template <typename T>
    void println(T v, int base) {
        print(v, base);
        println();
    }
    void println() {
        fputc('\n', stdout);
        fflush(stdout);
    }
};

extern HostSerial Serial;

#endif
