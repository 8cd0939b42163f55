/* errors.c: status names and the om_error filler. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

const char *om_strerror(int status) {
  switch (status) {
  case OM_OK:
    return "success";
  case OM_EINVAL:
    return "invalid argument";
  case OM_EBADNAME:
    return "invalid metric name";
  case OM_EBADLABEL:
    return "invalid label name";
  case OM_EEXISTS:
    /* Both uses: a name taken at registration, and a collector's second
     * report of one label set in a scrape (om_collect_value). */
    return "metric already registered, or series reported twice in one "
           "scrape";
  case OM_ENOMEM:
    return "out of memory";
  case OM_ETYPE:
    return "wrong metric type";
  case OM_EBUCKETS:
    return "invalid histogram buckets";
  case OM_EUNIT:
    return "invalid unit";
  case OM_EOVERFLOW:
    return "series limit reached";
  default:
    return "unknown error";
  }
}

int om__fail(om_error *err, int code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  }
  return code;
}
