/* examples/CApi/model_update.c: the model's weights and their updates. */
#ifndef MODEL_UPDATE_H
#define MODEL_UPDATE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

extern uint8_t model_weights[256];

/* Reads up to `max` bytes of the payload into buf; 0 when the source has
 * been silent too long. */
typedef uint32_t (*model_read_fn)(uint8_t* buf, uint32_t max);

int model_setup(void);                    /* weights = factory weights, version 1 */
int model_update(model_read_fn read_some); /* one payload; MODELOTA_OK or a refusal */
uint32_t model_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MODEL_UPDATE_H */
