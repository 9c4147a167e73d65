/*
 * Power for the storage stand-ins (tests/test_porting_doc.py): every write
 * or erase a stand-in performs takes one unit; once none is left the power
 * is gone, and the operation fails and changes nothing (nor do the ones
 * after it) until the driver "reboots" with standin_power_set(-1).
 */
#ifndef MODELOTA_STANDIN_POWER_H
#define MODELOTA_STANDIN_POWER_H

#ifdef __cplusplus
extern "C" {
#endif

/* 1: the operation runs (and is counted); 0: the power is gone. Defined by
 * the driver; the SD stand-in, also built for AVR without a driver, links
 * it weakly and runs every operation when it is missing. */
int modelota_standin_power_take(void);

#ifdef __cplusplus
}
#endif

#endif
