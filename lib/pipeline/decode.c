/* decode.c: image_loading's front door. Sniffs the type from the magic
 * bytes, applies the size rule, and hands the bytes to the decoder of that
 * type (PNG, JPEG, WebP, GIF, BMP). The rule lives here once: each side
 * 32..4096 px and at most 16,777,216 pixels, both checked on the header
 * before any pixel memory is allocated, so a decompression bomb costs a
 * header parse and nothing more.
 *
 * A type we recognise but do not decode (TIFF, HEIF/AVIF) is
 * ORFEAS_PL_EUNSUPPORTED, whose message names the accepted types (the API
 * answers 415); bytes of no known type are ORFEAS_PL_EFORMAT (400).
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

static int is_webp(const uint8_t *d, size_t n) {
  return n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0;
}

static int is_gif(const uint8_t *d, size_t n) {
  return n >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0);
}

/* "BM" alone is two printable letters; the 14-byte file header then gives
 * a DIB header size that only a real BMP has. */
static int is_bmp(const uint8_t *d, size_t n) {
  if (n < 18 || d[0] != 'B' || d[1] != 'M')
    return 0;
  uint32_t hs = (uint32_t)d[14] | (uint32_t)d[15] << 8 | (uint32_t)d[16] << 16 |
                (uint32_t)d[17] << 24;
  return hs == 12 || hs == 16 || hs == 40 || hs == 52 || hs == 56 || hs == 64 ||
         hs == 108 || hs == 124;
}

/* Types we know by sight but do not decode: named in the 415's message. */
static const char *unsupported_type(const uint8_t *d, size_t n) {
  if (n >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0))
    return "TIFF";
  if (n >= 12 && memcmp(d + 4, "ftyp", 4) == 0) {
    if (memcmp(d + 8, "avif", 4) == 0 || memcmp(d + 8, "avis", 4) == 0)
      return "AVIF";
    if (memcmp(d + 8, "heic", 4) == 0 || memcmp(d + 8, "heix", 4) == 0 ||
        memcmp(d + 8, "mif1", 4) == 0 || memcmp(d + 8, "msf1", 4) == 0)
      return "HEIF";
  }
  return NULL;
}

orfeas_pl_image_type orfeas_pl_image_sniff(const uint8_t *d, size_t n) {
  if (d == NULL)
    return ORFEAS_PL_IMAGE_UNKNOWN;
  if (pl_is_png(d, n))
    return ORFEAS_PL_IMAGE_PNG;
  if (pl_is_jpeg(d, n))
    return ORFEAS_PL_IMAGE_JPEG;
  if (is_webp(d, n))
    return ORFEAS_PL_IMAGE_WEBP;
  if (is_gif(d, n))
    return ORFEAS_PL_IMAGE_GIF;
  if (is_bmp(d, n))
    return ORFEAS_PL_IMAGE_BMP;
  return ORFEAS_PL_IMAGE_UNKNOWN;
}

const char *orfeas_pl_image_type_name(orfeas_pl_image_type t) {
  static const char *const names[] = {"unknown", "PNG", "JPEG",
                                      "WEBP",    "GIF", "BMP"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : names[0];
}

const char *orfeas_pl_image_type_ext(orfeas_pl_image_type t) {
  static const char *const exts[] = {NULL, "png", "jpg", "webp", "gif", "bmp"};
  return (unsigned)t < sizeof exts / sizeof exts[0] ? exts[t] : NULL;
}

const char *orfeas_pl_image_type_mime(orfeas_pl_image_type t) {
  static const char *const mimes[] = {"application/octet-stream",
                                      "image/png",
                                      "image/jpeg",
                                      "image/webp",
                                      "image/gif",
                                      "image/bmp"};
  return (unsigned)t < sizeof mimes / sizeof mimes[0] ? mimes[t] : mimes[0];
}

/* A prefix of a signature is a truncated file, not a foreign one: the
 * client sent the right kind of file and lost its end. */
static int is_signature_prefix(const uint8_t *d, size_t n) {
  static const struct {
    const char *sig;
    size_t len;
  } sigs[] = {{"\x89PNG\r\n\x1a\n", 8},
              {"\xff\xd8\xff", 3},
              {"GIF87a", 6},
              {"GIF89a", 6},
              {"RIFF", 4}};
  if (n == 0)
    return 0;
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (n < sigs[i].len && memcmp(d, sigs[i].sig, n) == 0)
      return 1;
  /* RIFF....WEBP cut before its form type. */
  if (n >= 4 && n < 12 && memcmp(d, "RIFF", 4) == 0 &&
      (n <= 8 || memcmp(d + 8, "WEBP", n - 8) == 0))
    return 1;
  /* BM + a file header cut before the DIB header size. */
  return n >= 2 && n < 18 && d[0] == 'B' && d[1] == 'M';
}

static orfeas_pl_code unknown_format(const uint8_t *d, size_t n, char *msg,
                                     size_t msg_len) {
  if (d == NULL || n == 0)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED, "the image is empty");
  const char *other = unsupported_type(d, n);
  if (other != NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_EUNSUPPORTED,
                   "%s images are not supported; send %s", other,
                   ORFEAS_PL_ACCEPTED_TYPES);
  if (is_signature_prefix(d, n))
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the image ends after %zu bytes", n);
  return pl_fail(msg, msg_len, ORFEAS_PL_EFORMAT,
                 "not an image (unknown magic bytes); send %s",
                 ORFEAS_PL_ACCEPTED_TYPES);
}

typedef orfeas_pl_code (*probe_fn)(const uint8_t *, size_t, uint32_t, uint64_t,
                                   orfeas_pl_image_info *, char *, size_t);
typedef orfeas_pl_code (*decode_fn)(const uint8_t *, size_t, uint32_t, uint64_t,
                                    orfeas_pl_image *, char *, size_t);

/* Indexed by orfeas_pl_image_type. */
static const struct {
  probe_fn probe;
  decode_fn decode;
} DECODERS[] = {
    {NULL, NULL},
    {pl_png_probe, pl_png_decode},
    {pl_jpeg_probe, pl_jpeg_decode},
    {pl_webp_probe, pl_webp_decode},
    {pl_gif_probe, pl_gif_decode},
    {pl_bmp_probe, pl_bmp_decode},
};

orfeas_pl_code orfeas_pl_image_probe(const uint8_t *data, size_t len,
                                     uint32_t max_side, uint64_t max_pixels,
                                     orfeas_pl_image_info *info, char *msg,
                                     size_t msg_len) {
  memset(info, 0, sizeof *info);
  pl_limits(&max_side, &max_pixels);
  orfeas_pl_image_type t = orfeas_pl_image_sniff(data, len);
  orfeas_pl_code rc = t == ORFEAS_PL_IMAGE_UNKNOWN
                          ? unknown_format(data, len, msg, msg_len)
                          : DECODERS[t].probe(data, len, max_side, max_pixels,
                                              info, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    memset(info, 0, sizeof *info);
  else
    info->type = t;
  return rc;
}

orfeas_pl_code orfeas_pl_image_decode(const uint8_t *data, size_t len,
                                      uint32_t max_side, uint64_t max_pixels,
                                      orfeas_pl_image *img, char *msg,
                                      size_t msg_len) {
  memset(img, 0, sizeof *img);
  pl_limits(&max_side, &max_pixels);
  orfeas_pl_image_type t = orfeas_pl_image_sniff(data, len);
  if (t == ORFEAS_PL_IMAGE_UNKNOWN)
    return unknown_format(data, len, msg, msg_len);
  orfeas_pl_code rc =
      DECODERS[t].decode(data, len, max_side, max_pixels, img, msg, msg_len);
  if (rc != ORFEAS_PL_OK) {
    /* Whatever a decoder left behind, a failure leaves img zeroed. */
    free(img->rgba);
    memset(img, 0, sizeof *img);
  }
  return rc;
}

void orfeas_pl_image_free(orfeas_pl_image *img) {
  if (img == NULL)
    return;
  free(img->rgba);
  memset(img, 0, sizeof *img);
}
