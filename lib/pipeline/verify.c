/* verify.c: orfeas_pl_image_verify, the upload check (issue #13): every
 * byte of an image decoded before the service says 200, without the
 * pixels. PNG and JPEG have cheap paths (decode_png.c, decode_jpeg.c); any
 * other type is decoded whole and dropped.
 */
#include "internal.h"

orfeas_pl_code orfeas_pl_image_verify(const uint8_t *data, size_t len,
                                      uint32_t max_side, uint64_t max_pixels,
                                      char *msg, size_t msg_len) {
  pl_limits(&max_side, &max_pixels);
  if (pl_is_png(data, len))
    return pl_png_verify(data, len, max_side, max_pixels, msg, msg_len);
  if (pl_is_jpeg(data, len))
    return pl_jpeg_verify(data, len, max_side, max_pixels, msg, msg_len);
  orfeas_pl_image img;
  orfeas_pl_code rc = orfeas_pl_image_decode(data, len, max_side, max_pixels,
                                             &img, msg, msg_len);
  orfeas_pl_image_free(&img);
  return rc;
}
