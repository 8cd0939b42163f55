/* decode_webp.c: WebP through libwebp, hardened like the PNG and JPEG paths.
 *
 * WebPGetFeatures() reads the headers only (the VP8X canvas, or the VP8/VP8L
 * frame header) and gives the size; it is checked against the rule before a
 * byte of pixels is allocated. A still image is then decoded straight into
 * our own RGBA buffer (external memory: libwebp allocates no output).
 *
 * An animation gives its first frame, as a browser shows before it plays:
 * libwebpdemux's animation decoder composes it on the canvas, whose size is
 * the one already checked (WebPAnimDecoderNew allocates two canvases, so it
 * must never see an unchecked size).
 */
#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

#include "internal.h"

static orfeas_pl_code map_status(VP8StatusCode st, char *msg, size_t msg_len) {
  switch (st) {
  case VP8_STATUS_NOT_ENOUGH_DATA:
    return pl_fail(msg, msg_len, ORFEAS_PL_ETRUNCATED,
                   "the WebP data ends early");
  case VP8_STATUS_OUT_OF_MEMORY:
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory");
  case VP8_STATUS_UNSUPPORTED_FEATURE:
    return pl_fail(msg, msg_len, ORFEAS_PL_EUNSUPPORTED,
                   "this WebP uses a feature the decoder does not support; "
                   "send %s",
                   ORFEAS_PL_ACCEPTED_TYPES);
  default:
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt WebP (libwebp status %d)", (int)st);
  }
}

static orfeas_pl_code open_webp(const uint8_t *d, size_t n, uint32_t max_side,
                                uint64_t max_pixels, WebPBitstreamFeatures *f,
                                char *msg, size_t msg_len) {
  VP8StatusCode st = WebPGetFeatures(d, n, f);
  if (st != VP8_STATUS_OK)
    return map_status(st, msg, msg_len);
  if (f->width <= 0 || f->height <= 0)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt WebP: bad dimensions");
  return pl_check_dims((uint32_t)f->width, (uint32_t)f->height, max_side,
                       max_pixels, msg, msg_len);
}

orfeas_pl_code pl_webp_probe(const uint8_t *d, size_t n, uint32_t max_side,
                             uint64_t max_pixels, orfeas_pl_image_info *info,
                             char *msg, size_t msg_len) {
  WebPBitstreamFeatures f;
  orfeas_pl_code rc = open_webp(d, n, max_side, max_pixels, &f, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  info->width = (uint32_t)f.width;
  info->height = (uint32_t)f.height;
  info->has_alpha = f.has_alpha;
  return ORFEAS_PL_OK;
}

/* The first frame of an animation, composed on its (checked) canvas. */
static orfeas_pl_code first_frame(const uint8_t *d, size_t n, uint32_t w,
                                  uint32_t h, uint8_t *rgba, char *msg,
                                  size_t msg_len) {
  WebPAnimDecoderOptions o;
  if (!WebPAnimDecoderOptionsInit(&o))
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM,
                   "cannot start the WebP animation decoder");
  o.color_mode = MODE_RGBA;
  o.use_threads = 0;
  WebPData data = {d, n};
  WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &o);
  if (dec == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                   "corrupt animated WebP (the demuxer refused it)");
  WebPAnimInfo info;
  uint8_t *frame = NULL;
  int ts = 0;
  orfeas_pl_code rc = ORFEAS_PL_OK;
  if (!WebPAnimDecoderGetInfo(dec, &info) || info.canvas_width != w ||
      info.canvas_height != h)
    rc = pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                 "corrupt animated WebP: the canvas size disagrees");
  else if (!WebPAnimDecoderHasMoreFrames(dec) ||
           !WebPAnimDecoderGetNext(dec, &frame, &ts) || frame == NULL)
    rc = pl_fail(msg, msg_len, ORFEAS_PL_ECORRUPT,
                 "corrupt animated WebP: its first frame does not decode");
  else
    memcpy(rgba, frame, (size_t)w * h * 4);
  WebPAnimDecoderDelete(dec);
  return rc;
}

orfeas_pl_code pl_webp_decode(const uint8_t *d, size_t n, uint32_t max_side,
                              uint64_t max_pixels, orfeas_pl_image *img,
                              char *msg, size_t msg_len) {
  WebPBitstreamFeatures f;
  orfeas_pl_code rc = open_webp(d, n, max_side, max_pixels, &f, msg, msg_len);
  if (rc != ORFEAS_PL_OK)
    return rc;
  uint32_t w = (uint32_t)f.width, h = (uint32_t)f.height;
  size_t size = (size_t)w * h * 4;
  /* Owned by img once the decode succeeds; freed here otherwise. */
  uint8_t *rgba = malloc(size);
  if (rgba == NULL)
    return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM, "out of memory (%zu bytes)",
                   size);
  if (f.has_animation) {
    rc = first_frame(d, n, w, h, rgba, msg, msg_len);
  } else {
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) {
      free(rgba);
      return pl_fail(msg, msg_len, ORFEAS_PL_ENOMEM,
                     "cannot start the WebP decoder");
    }
    cfg.output.colorspace = MODE_RGBA;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = rgba;
    cfg.output.u.RGBA.stride = (int)w * 4;
    cfg.output.u.RGBA.size = size;
    VP8StatusCode st = WebPDecode(d, n, &cfg);
    WebPFreeDecBuffer(&cfg.output); /* external memory: frees nothing of ours */
    if (st != VP8_STATUS_OK)
      rc = map_status(st, msg, msg_len);
  }
  if (rc != ORFEAS_PL_OK) {
    free(rgba);
    return rc;
  }
  img->width = w;
  img->height = h;
  img->has_alpha = f.has_alpha;
  img->rgba = rgba;
  return ORFEAS_PL_OK;
}
