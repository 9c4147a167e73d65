/*
 * Runs an example sketch once on the host: setup(), then loop() `loops`
 * times (argv[2], default 1), then writes the sketch's `weights` array to
 * argv[1]. The sketch prints through Serial (stdout).
 */
#include <Arduino.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "arduino/host_sketch.h"

HostSerial Serial;

unsigned long millis(void) {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<unsigned long>(ts.tv_sec) * 1000ul +
           static_cast<unsigned long>(ts.tv_nsec) / 1000000ul;
}

void yield(void) {}

void delay(unsigned long ms) {
    timespec ts;
    ts.tv_sec = static_cast<time_t>(ms / 1000ul);
    ts.tv_nsec = static_cast<long>((ms % 1000ul) * 1000000ul);
    nanosleep(&ts, NULL);
}

void setup();
void loop();
extern uint8_t weights[1024];

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sketch WEIGHTS_OUT [LOOPS]\n");
        return 2;
    }
    setup();
    const long loops = argc > 2 ? atol(argv[2]) : 1;
    for (long i = 0; i < loops; ++i) {
        loop();
    }
    FILE* f = fopen(argv[1], "wb");
    if (f == NULL || fwrite(weights, 1, sizeof(weights), f) != sizeof(weights)) {
        return 2;
    }
    fclose(f);
    return 0;
}
