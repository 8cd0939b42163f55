/* log.c: the service log, one line per event on stderr.
 *
 * Each line is "2026-01-31T12:00:00.123Z orfeasd: MESSAGE", formatted into
 * a bounded buffer (1 KiB; longer messages are cut) and written with one
 * call, so lines from different threads never interleave.
 *
 * The interface is od_log(fmt, ...) and nothing else, on purpose: the
 * caller hands over a finished line and learns nothing about how it is
 * written. That is what lets the write move off the request threads (a
 * bounded queue and a writer thread, so a stalled stderr cannot stall a
 * request) without touching a single caller. There are no levels: every
 * line is one an operator may need, and the access log has its own switch
 * (--access-log).
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "orfeasd.h"

void od_log(const char *fmt, ...) {
  char line[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n,
                        ".%03ldZ orfeasd: ", ts.tv_nsec / 1000000);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
