/* synth_png.h: synthetic PNG images for orfeas-load. */
#ifndef ORFEAS_LOAD_SYNTH_PNG_H
#define ORFEAS_LOAD_SYNTH_PNG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A side x side RGBA PNG of shape `variant`; the caller frees it. NULL when
 * out of memory. */
unsigned char *synth_png(unsigned side, unsigned variant, size_t *out_len);

#endif
