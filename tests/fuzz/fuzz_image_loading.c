/* fuzz_image_loading.c: libFuzzer target for image_loading (and whatever
 * runs behind it when the bytes decode).
 *
 *   scripts/fuzz [SECONDS]        builds with clang and runs it
 * (docs/pipeline.md)
 *
 * Every input must end in ORFEAS_PL_OK or a clean error with a message,
 * never a crash, leak, hang or sanitizer report. The pixel limit is lowered
 * to 256 Ki so that one execution stays in the milliseconds; the code paths
 * are the same as at 16.7 M.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "orfeas/pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
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
