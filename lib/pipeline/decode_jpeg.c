/* decode_jpeg.c: JPEG through the TurboJPEG API.
 *
 * The header is parsed first (tjDecompressHeader3) and checked against the
 * size rule; only then is the RGBA buffer allocated. Warnings stop the
 * decode (a truncated scan is a warning to libjpeg) and progressive scans are
 * capped, so a file with thousands of scans cannot burn CPU for minutes.
 */
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "internal.h"

/* libjpeg pads a truncated file with a fake EOI; the real one is how we
 * tell "ends early" from "malformed" in the message. */
static orfeas_pl_code jpeg_error(tjhandle tj, const uint8_t *d, size_t n,
                                 char *msg, size_t msg_len) {
  const char *why = tj ? tjGetErrorStr2(tj) : "cannot start the decoder";
  int has_eoi = n >= 2 && d[n - 2] == 0xff && d[n - 1] == 0xd9;
  if (!has_eoi)
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the JPEG data ends early (%s)", why);
  return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT, "corrupt JPEG: %s", why);
}

static orfeas_pl_code open_jpeg(const uint8_t *d, size_t n, uint32_t max_side,
                                uint64_t max_pixels, tjhandle *out, uint32_t *w,
                                uint32_t *h, char *msg, size_t msg_len) {
  *out = NULL;
  if (n > (size_t)0x7fffffff)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT, "JPEG file too large");
  tjhandle tj = tjInitDecompress();
  if (tj == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM,
                   "cannot start the JPEG decoder");
  int iw = 0, ih = 0, subsamp = 0, cs = 0;
  if (tjDecompressHeader3(tj, d, (unsigned long)n, &iw, &ih, &subsamp, &cs) !=
      0) {
    orfeas_pl_code rc = jpeg_error(tj, d, n, msg, msg_len);
    tjDestroy(tj);
    return rc;
  }
  if (iw <= 0 || ih <= 0) {
    tjDestroy(tj);
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt JPEG: bad dimensions");
  }
  orfeas_pl_code rc = pl_check_dims((uint32_t)iw, (uint32_t)ih, max_side,
                                    max_pixels, msg, msg_len);
  if (rc != ORFEAS_PL_OK) {
    tjDestroy(tj);
    return rc;
  }
  *w = (uint32_t)iw;
  *h = (uint32_t)ih;
  *out = tj;
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_jpeg_probe(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image_info *info,
                             char *msg, size_t msg_len) {
  tjhandle tj;
  orfeas_pl_code rc = open_jpeg(d, n, max_side, max_pixels, &tj, &info->width,
                                &info->height, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  tjDestroy(tj);
  info->type = ORFEAS_PL_IMAGE_JPEG;
  info->has_alpha = 0;
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_jpeg_decode(const uint8_t *d, size_t n, uint32_t max_side,
                              uint64_t max_pixels, orfeas_pl_image *img,
                              char *msg, size_t msg_len) {
  tjhandle tj;
  uint32_t w, h;
  orfeas_pl_code rc =
      open_jpeg(d, n, max_side, max_pixels, &tj, &w, &h, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  size_t size = (size_t)w * h * 4;
  /* Owned by img from here; orfeas_pl_image_free() releases it. */
  uint8_t *rgba = malloc(size);
  if (rgba == NULL) {
    tjDestroy(tj);
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory (%zu bytes)",
                   size);
  }
  if (tjDecompress2(tj, d, (unsigned long)n, rgba, (int)w, 0, (int)h, TJPF_RGBA,
                    TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
    rc = jpeg_error(tj, d, n, msg, msg_len);
    free(rgba);
    tjDestroy(tj);
    return rc;
  }
  tjDestroy(tj);
  img->width = w;
  img->height = h;
  img->has_alpha = 0;
  img->rgba = rgba;
  return ORFEAS_PL_OK;
}

orfeas_pl_code pl_jpeg_verify(const uint8_t *d, size_t n, uint32_t max_side,
                              uint64_t max_pixels, char *msg, size_t msg_len) {
  tjhandle tj;
  uint32_t w, h;
  orfeas_pl_code rc =
      open_jpeg(d, n, max_side, max_pixels, &tj, &w, &h, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  /* The smallest scale TurboJPEG offers (1/8: DC coefficients only), in
   * grey: every entropy-coded segment is still read and checked, a
   * truncated or damaged scan still stops the decode, and the output is
   * 1/64 of the pixels. */
  int nsf = 0;
  tjscalingfactor *sf = tjGetScalingFactors(&nsf);
  tjscalingfactor best = {1, 1};
  for (int i = 0; sf != NULL && i < nsf; i++)
    if (sf[i].num * best.denom < best.num * sf[i].denom)
      best = sf[i];
  int sw = TJSCALED((int)w, best), sh = TJSCALED((int)h, best);
  uint8_t *grey = malloc((size_t)sw * (size_t)sh);
  if (grey == NULL) {
    tjDestroy(tj);
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  }
  if (tjDecompress2(tj, d, (unsigned long)n, grey, sw, 0, sh, TJPF_GRAY,
                    TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
    rc = jpeg_error(tj, d, n, msg, msg_len);
  free(grey);
  tjDestroy(tj);
  return rc;
}
