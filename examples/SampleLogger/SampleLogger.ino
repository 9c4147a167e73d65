/*
 * SampleLogger: send real sensor windows back so the next model is trained on
 * field data (docs/COLLECT.md).
 *
 * Three sensor columns are sampled every INTERVAL_MS; every WINDOW_ROWS rows
 * the window is streamed over Serial as one CRC-checked frame. On the host:
 *
 *   modelota collect --port /dev/ttyACM0 field-data/ --count 10
 *
 * writes each window as an Edge Impulse data acquisition JSON file (+ CSV)
 * ready for `edge-impulse-uploader`. The text line printed at boot is not a
 * frame: the host skips it, as it skips any other bytes between frames.
 *
 * The sensor: by default a synthetic one whose values are exact in float32
 * (the test suite runs this sketch in qemu-system-avr, which has no ADC, and
 * checks every value the host receives). Build with -DSAMPLE_ANALOG=1 to log
 * analogRead(A0..A2) in volts instead.
 *
 * Timing: the interval is declared, not measured (under qemu-system-avr 7.2
 * millis() stands still). The sketch paces rows with delayMicroseconds();
 * writing a frame (~460 bytes, 40 ms at 115200 baud) pauses sampling, so
 * with a real sensor at a high rate sample from a timer interrupt instead.
 *
 * RAM: the ring (3 x 32 floats = 384 bytes) and the logger state; the frame
 * is never held in memory.
 */
#include <ModelOTA.h>

#ifndef SAMPLE_ANALOG
#define SAMPLE_ANALOG 0
#endif
#define SENSORS 3u
#define WINDOW_ROWS 32u
#define INTERVAL_MS 10u

static const modelota_sensor sensors[SENSORS] = {
#if SAMPLE_ANALOG
    {"A0", "V"}, {"A1", "V"}, {"A2", "V"},
#else
    {"accX", "m/s2"}, {"accY", "m/s2"}, {"temp", "C"},
#endif
};
static float ring[SENSORS * WINDOW_ROWS];
static ModelOTALogger logger(sensors, SENSORS, (float)INTERVAL_MS, ring,
                             sizeof(ring) / sizeof(ring[0]), WINDOW_ROWS);
static uint32_t row_index = 0;

/* Row i of the synthetic sensor: small multiples of 1/8, exact in float32
 * (host_tools: tests/test_collect_board.py computes the same numbers). */
static void synthetic(uint32_t i, float* row) {
    row[0] = (float)((int16_t)(i % 64u) - 32) / 8.0f;  /* sawtooth -4..3.875 */
    row[1] = (float)((i * 7u) % 50u) * 0.25f - 6.0f;   /* -6..6.25 */
    row[2] = 20.0f + (float)(i % 16u) * 0.125f;        /* 20..21.875 */
}

static void sample(float* row) {
#if SAMPLE_ANALOG
    row[0] = analogRead(A0) * (5.0f / 1023.0f);
    row[1] = analogRead(A1) * (5.0f / 1023.0f);
    row[2] = analogRead(A2) * (5.0f / 1023.0f);
#else
    synthetic(row_index, row);
#endif
    row_index++;
}

void setup() {
    Serial.begin(115200);
    Serial.print(F("# SampleLogger: "));
    Serial.print(SENSORS);
    Serial.print(F(" sensors, "));
    Serial.print(WINDOW_ROWS);
    Serial.print(F(" rows per window, "));
    Serial.print(INTERVAL_MS);
    Serial.print(F(" ms; logger "));
    Serial.println(ModelOTALogger::statusName(logger.status()));
}

void loop() {
    float row[SENSORS];
    sample(row);
    if (logger.push(row, SENSORS) == 1) {
        logger.writeTo(Serial); /* a failed write leaves the window ready: retried next row */
    }
    for (uint8_t ms = 0; ms < INTERVAL_MS; ++ms) {
        delayMicroseconds(1000); /* counts cycles: runs where millis() does not */
    }
}
