/* decode.c: image_loading's front door. Sniffs the format from the magic
 * bytes, applies the size rule, and hands the bytes to the PNG or JPEG
 * decoder. The rule lives here once: each side 32..4096 px and at most
 * 16,777,216 pixels, both checked on the header before any pixel memory is
 * allocated, so a decompression bomb costs a header parse and nothing more.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

orfeas_pl_code pl_fail(char *msg, size_t msg_len, orfeas_pl_code code,
                       const char *fmt, ...) {
  if (msg != NULL && msg_len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msg_len, fmt, ap);
    va_end(ap);
  }
  return code;
}

void pl_limits(uint32_t *max_side, uint64_t *max_pixels) {
  if (*max_side == 0 || *max_side > ORFEAS_PL_MAX_SIDE)
    *max_side = ORFEAS_PL_MAX_SIDE;
  if (*max_pixels == 0 || *max_pixels > ORFEAS_PL_MAX_PIXELS)
    *max_pixels = ORFEAS_PL_MAX_PIXELS;
}

orfeas_pl_code pl_check_dims(uint32_t w, uint32_t h, uint32_t max_side,
                             uint64_t max_pixels, char *msg, size_t msg_len) {
  pl_limits(&max_side, &max_pixels);
  if (w < ORFEAS_PL_MIN_SIDE || h < ORFEAS_PL_MIN_SIDE || w > max_side ||
      h > max_side)
    return pl_fail(msg, msg_len, ORFEAS_PL_ESIZE,
                   "image is %ux%u px; each side must be %u-%u px", w, h,
                   ORFEAS_PL_MIN_SIDE, max_side);
  if ((uint64_t)w * h > max_pixels)
    return pl_fail(msg, msg_len, ORFEAS_PL_EPIXELS,
                   "image is %ux%u px = %llu pixels; at most %llu allowed", w,
                   h, (unsigned long long)w * h,
                   (unsigned long long)max_pixels);
  return ORFEAS_PL_OK;
}

int pl_is_png(const uint8_t *d, size_t n) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return n >= 8 && memcmp(d, sig, 8) == 0;
}

int pl_is_jpeg(const uint8_t *d, size_t n) {
  return n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff;
}

/* A prefix of a signature is a truncated file, not a foreign one: the
 * client sent the right kind of file and lost its end. */
static int is_signature_prefix(const uint8_t *d, size_t n) {
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  static const uint8_t jpg[3] = {0xff, 0xd8, 0xff};
  if (n == 0)
    return 0;
  return (n < 8 && memcmp(d, png, n) == 0) || (n < 3 && memcmp(d, jpg, n) == 0);
}

static orfeas_pl_code unknown_format(const uint8_t *d, size_t n, char *msg,
                                     size_t msg_len) {
  if (d == NULL || n == 0)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED, "the image is empty");
  if (is_signature_prefix(d, n))
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the image ends after %zu bytes", n);
  return pl_fail(msg, msg_len, ORFEAS_PL_EFORMAT,
                 "not a PNG or JPEG file (unknown magic bytes)");
}

const char *orfeas_pl_image_type_name(orfeas_pl_image_type t) {
  return t == ORFEAS_PL_IMAGE_PNG    ? "PNG"
         : t == ORFEAS_PL_IMAGE_JPEG ? "JPEG"
                                     : "unknown";
}

orfeas_pl_code orfeas_pl_image_probe(const uint8_t *data, size_t len,
                                     uint32_t max_side, uint64_t max_pixels,
                                     orfeas_pl_image_info *info, char *msg,
                                     size_t msg_len) {
  memset(info, 0, sizeof *info);
  pl_limits(&max_side, &max_pixels);
  orfeas_pl_code rc;
  if (pl_is_png(data, len))
    rc = pl_png_probe(data, len, max_side, max_pixels, info, msg, msg_len);
  else if (pl_is_jpeg(data, len))
    rc = pl_jpeg_probe(data, len, max_side, max_pixels, info, msg, msg_len);
  else
    rc = unknown_format(data, len, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    memset(info, 0, sizeof *info);
  return rc;
}

orfeas_pl_code orfeas_pl_image_decode(const uint8_t *data, size_t len,
                                      uint32_t max_side, uint64_t max_pixels,
                                      orfeas_pl_image *img, char *msg,
                                      size_t msg_len) {
  memset(img, 0, sizeof *img);
  pl_limits(&max_side, &max_pixels);
  if (pl_is_png(data, len))
    return pl_png_decode(data, len, max_side, max_pixels, img, msg, msg_len);
  if (pl_is_jpeg(data, len))
    return pl_jpeg_decode(data, len, max_side, max_pixels, img, msg, msg_len);
  return unknown_format(data, len, msg, msg_len);
}

void orfeas_pl_image_free(orfeas_pl_image *img) {
  if (img == NULL)
    return;
  free(img->rgba);
  memset(img, 0, sizeof *img);
}
