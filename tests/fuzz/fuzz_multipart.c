/* fuzz_multipart.c: libFuzzer target for orfeasd's request-body parsers.
 *
 *   scripts/fuzz-orfeasd multipart [SECONDS]   (docs/api.md, "Fuzzing")
 *
 * Input: a Content-Type line, "\n", then the body. The body goes through the
 * multipart parser (the upload path) and the generate-3d JSON parser. Every
 * input must end in a clean accept or refusal: no crash, no read outside the
 * body (ASan), no leak, and a found part must lie inside the body.
 */
#include <stdlib.h>
#include <string.h>

#include "orfeasd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
  if (nl == NULL)
    return 0;
  char ct[257];
  size_t cl = (size_t)(nl - data);
  memcpy(ct, data, cl);
  ct[cl] = '\0';
  /* A heap copy of exactly the body, so ASan sees any overread. */
  size_t blen = size - cl - 1;
  uint8_t *body = malloc(blen ? blen : 1);
  if (body == NULL)
    return 0;
  memcpy(body, nl + 1, blen);
  char boundary[80], err[128];
  if (od_multipart_boundary(ct, boundary, sizeof boundary) == 0) {
    od_multipart_part p;
    if (od_multipart_find(body, blen, boundary, "image", &p, err, sizeof err) ==
            0 &&
        p.found && (p.data < body || p.data + p.len > body + blen))
      abort();
  }
  od_generate_req req;
  od_field_error errs[OD_MAX_FIELD_ERRORS];
  int n = od_generate_parse((const char *)body, blen, &req, errs,
                            OD_MAX_FIELD_ERRORS);
  if (n < 0 || n > OD_MAX_FIELD_ERRORS)
    abort();
  for (int i = 0; i < n; i++)
    if (errs[i].field == NULL || errs[i].error_type == NULL)
      abort();
  free(body);
  return 0;
}
