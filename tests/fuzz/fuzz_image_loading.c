/* fuzz_image_loading.c: libFuzzer target for image_loading (and whatever
 * runs behind it when the bytes decode).
 *
 *   scripts/fuzz [SECONDS]        builds with clang and runs it
 * (docs/pipeline.md)
 *
 * Every input must end in ORFEAS_PL_OK or a clean error with a message,
 * never a crash, leak, hang or sanitizer report. The pixel limit is lowered
 * to 256 Ki so that one execution stays in the milliseconds; the code paths
 * are the same as at 16.7 M. The upload check's two calls run first on the
 * same bytes: the header probe and the whole-image verify (a PNG inflated
 * a row at a time, a JPEG at 1/8 scale: paths orfeas_pl_run never takes).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "orfeas/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A refusal must be the client's (or out of memory) and say why. */
static void clean_refusal(orfeas_pl_code rc, const char *msg) {
  if (rc != ORFEAS_PL_OK &&
      (msg[0] == '\0' ||
       !(orfeas_pl_is_client_error(rc) || rc == ORFEAS_PL_ENOMEM)))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  orfeas_pl_image_info info;
  char pmsg[256] = "";
  orfeas_pl_code prc =
      orfeas_pl_image_probe(data, size, 0, 262144, &info, pmsg, sizeof pmsg);
  clean_refusal(prc, pmsg);
  if (prc == ORFEAS_PL_OK && (uint64_t)info.width * info.height > 262144)
    abort(); /* a probe that passed an image past the limit */
  char vmsg[256] = "";
  clean_refusal(
      orfeas_pl_image_verify(data, size, 0, 262144, vmsg, sizeof vmsg), vmsg);
  orfeas_pl_options o;
  orfeas_pl_options_init(&o);
  o.max_pixels = 262144;
  o.quality = 1;
  o.format = (orfeas_pl_format)(size % 4);
  orfeas_pl_result r;
  char msg[256] = "";
  orfeas_pl_code rc = orfeas_pl_run(data, size, &o, &r, msg, sizeof msg);
  if (rc == ORFEAS_PL_OK) {
    /* A decoded image always makes a closed mesh and a file. */
    if (!r.quality.closed || r.file.size == 0 ||
        (uint64_t)r.image_width * r.image_height > o.max_pixels)
      abort();
  } else if (msg[0] == '\0' ||
             !(orfeas_pl_is_client_error(rc) || rc == ORFEAS_PL_ENOMEM)) {
    abort(); /* an error without a message, or not the client's fault */
  }
  orfeas_pl_result_free(&r);
  return 0;
}
