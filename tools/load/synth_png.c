/* synth_png.c: synthetic test images as PNG bytes, made with zlib alone.
 * Variant v changes the shape, so different variants are different cache
 * keys and equal variants are cache hits. */
#include "synth_png.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

/* Appends a chunk: length, type, data, CRC over type + data. */
static size_t chunk(unsigned char *out, const char *type,
                    const unsigned char *data, uint32_t len) {
  put32(out, len);
  memcpy(out + 4, type, 4);
  if (len)
    memcpy(out + 8, data, len);
  uLong crc = crc32(0, out + 4, 4 + len);
  put32(out + 8 + len, (uint32_t)crc);
  return 12 + len;
}

unsigned char *synth_png(unsigned side, unsigned variant, size_t *out_len) {
  size_t row = 1 + 4 * (size_t)side;
  size_t raw_len = row * side;
  unsigned char *raw = calloc(raw_len, 1);
  if (raw == NULL)
    return NULL;
  /* A disk with a hole, radius and hole position set by the variant. */
  double c = side / 2.0, r = side * (0.30 + 0.015 * (variant % 10));
  double hx = c + side * 0.08 * ((variant / 10) % 3), hr = side * 0.08;
  for (unsigned y = 0; y < side; y++) {
    unsigned char *p = raw + y * row;
    p[0] = 0; /* filter: none */
    for (unsigned x = 0; x < side; x++) {
      double d = hypot(x - c, y - c), h = hypot(x - hx, y - c);
      bool in = d < r && h > hr;
      unsigned char *px = p + 1 + 4 * x;
      px[0] = (unsigned char)(40 + (variant * 37) % 200);
      px[1] = (unsigned char)(x * 255 / side);
      px[2] = (unsigned char)(y * 255 / side);
      px[3] = in ? 255 : 0;
    }
  }
  uLongf zlen = compressBound(raw_len);
  unsigned char *z = malloc(zlen);
  unsigned char *png = malloc(zlen + 128);
  if (z == NULL || png == NULL ||
      compress2(z, &zlen, raw, raw_len, 6) != Z_OK) {
    free(raw);
    free(z);
    free(png);
    return NULL;
  }
  free(raw);
  static const unsigned char sig[8] = {0x89, 'P',  'N',  'G',
                                       '\r', '\n', 0x1a, '\n'};
  size_t n = 0;
  memcpy(png, sig, 8);
  n = 8;
  unsigned char ihdr[13];
  put32(ihdr, side);
  put32(ihdr + 4, side);
  ihdr[8] = 8; /* bit depth */
  ihdr[9] = 6; /* RGBA */
  ihdr[10] = ihdr[11] = ihdr[12] = 0;
  n += chunk(png + n, "IHDR", ihdr, 13);
  n += chunk(png + n, "IDAT", z, (uint32_t)zlen);
  n += chunk(png + n, "IEND", NULL, 0);
  free(z);
  *out_len = n;
  return png;
}
