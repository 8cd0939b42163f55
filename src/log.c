/* log.c: the service log, one line per event on stderr.
 *
 * A line is "2026-01-31T12:00:00.123Z orfeasd: MESSAGE" (info; other
 * levels say theirs: "orfeasd: warning: ...") or, with --log-format json,
 * {"ts": "...", "level": "info", "msg": "..."}. It is formatted on the
 * caller's thread into a bounded line (1 KiB of message; longer ones are
 * cut) and copied whole into a ring buffer (--log-buffer-kb), which one
 * writer thread empties into stderr. So a request or a worker never waits
 * on stderr: when whoever reads it stops reading, the ring fills and new
 * lines are dropped and counted (orfeas_log_lines_dropped_total), and the
 * writer says how many once it can write again. Lines never interleave:
 * each enters the ring whole, and the writer is the only one to write.
 *
 * Before od_log_start (and in programs that never call it: the unit tests)
 * a line is written at once with one write(2). od_log_stop gives the writer
 * a deadline to empty the ring; a writer stuck on a stderr nobody reads is
 * left behind (the process is about to exit), never waited for.
 *
 * The caller's interface stays od_log(fmt, ...) (info) and od_logl(level,
 * fmt, ...): a line is handed over finished, and how it is written is this
 * file's business alone.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orfeasd.h"

#define MSG_MAX 1024
/* A JSON line escapes at most every byte of the message as \u00XX. */
#define LINE_MAX_BYTES (MSG_MAX * 6 + 128)

static const char *const LEVEL_NAMES[OD_LOG_LEVELS] = {"debug", "info",
                                                       "warning", "error"};

typedef enum { ST_DIRECT = 0, ST_RING, ST_STOPPED } log_state;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t has_data; /* the writer waits on it */
  pthread_cond_t idle;     /* od_log_stop waits on it (CLOCK_MONOTONIC) */
  pthread_t writer;
  char *ring; /* owned; cap bytes */
  size_t cap, head, used;
  int stop;
  _Atomic int writer_done;
  uint64_t dropped_unreported; /* lines dropped since the writer last said */
  _Atomic int state;           /* log_state */
  _Atomic int level;           /* lines below it are not formatted */
  _Atomic int json;
  _Atomic uint64_t dropped; /* all lines dropped, for the metric */
  om_counter *_Atomic dropped_counter;
  int fd;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .has_data = PTHREAD_COND_INITIALIZER,
       .level = OD_LOG_INFO,
       .fd = 2};

int od_log_level_parse(const char *name, od_log_level *out) {
  for (int i = 0; i < OD_LOG_LEVELS; i++)
    if (strcmp(name, LEVEL_NAMES[i]) == 0 ||
        (i == OD_LOG_WARN && strcmp(name, "warn") == 0)) {
      *out = (od_log_level)i;
      return 0;
    }
  return -1;
}

const char *od_log_level_name(od_log_level l) {
  return (unsigned)l < OD_LOG_LEVELS ? LEVEL_NAMES[l] : "info";
}

int od_log_enabled(od_log_level l) { return (int)l >= atomic_load(&g.level); }

uint64_t od_log_dropped(void) { return atomic_load(&g.dropped); }

void od_log_set_counter(om_counter *dropped) {
  /* Lines dropped before the metric existed are added once. */
  atomic_store(&g.dropped_counter, dropped);
  if (dropped != NULL)
    om_counter_add_u64(dropped, atomic_load(&g.dropped));
}

/* Writes all of buf to fd: 0, or -1 on an error that is not EINTR. */
static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Appends s to out as a JSON string body (no quotes); returns the length. */
static size_t json_escape(const char *s, char *out, size_t cap) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (; *s && o + 7 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch == '\n') {
      out[o++] = '\\';
      out[o++] = 'n';
    } else if (ch < 0x20 || ch == 0x7f) {
      memcpy(out + o, "\\u00", 4);
      out[o + 4] = hex[ch >> 4];
      out[o + 5] = hex[ch & 15];
      o += 6;
    } else {
      out[o++] = (char)ch;
    }
  }
  out[o] = '\0';
  return o;
}

/* The finished line, newline included, in out; its length. */
static size_t format_line(od_log_level lvl, const char *msg, char *out,
                          size_t cap) {
  struct timespec ts;
  struct tm tm;
  char when[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
  int k;
  if (atomic_load(&g.json)) {
    k = snprintf(out, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", when,
                 LEVEL_NAMES[lvl]);
    if (k < 0 || (size_t)k >= cap)
      return 0;
    n = (size_t)k;
    n += json_escape(msg, out + n, cap - n - 3);
    memcpy(out + n, "\"}\n", 3);
    return n + 3;
  }
  if (lvl == OD_LOG_INFO)
    k = snprintf(out, cap, "%s orfeasd: %s\n", when, msg);
  else
    k = snprintf(out, cap, "%s orfeasd: %s: %s\n", when, LEVEL_NAMES[lvl], msg);
  if (k < 0)
    return 0;
  if ((size_t)k >= cap) { /* cut: keep the newline */
    out[cap - 2] = '\n';
    return cap - 1;
  }
  return (size_t)k;
}

static void count_drop(void) {
  atomic_fetch_add(&g.dropped, 1);
  om_counter *c = atomic_load(&g.dropped_counter);
  if (c != NULL)
    om_counter_inc(c);
}

/* Copies a whole line into the ring, or drops it. */
static void ring_put(const char *line, size_t len) {
  pthread_mutex_lock(&g.mu);
  if (g.stop || g.cap - g.used < len) {
    g.dropped_unreported++;
    pthread_mutex_unlock(&g.mu);
    count_drop();
    return;
  }
  size_t tail = (g.head + g.used) % g.cap;
  size_t first = g.cap - tail < len ? g.cap - tail : len;
  memcpy(g.ring + tail, line, first);
  memcpy(g.ring, line + first, len - first);
  g.used += len;
  pthread_cond_signal(&g.has_data);
  pthread_mutex_unlock(&g.mu);
}

static void emit(od_log_level lvl, const char *msg) {
  char line[LINE_MAX_BYTES];
  size_t len = format_line(lvl, msg, line, sizeof line);
  if (len == 0)
    return;
  switch ((log_state)atomic_load(&g.state)) {
  case ST_RING:
    ring_put(line, len);
    break;
  case ST_DIRECT:
    write_all(g.fd, line, len);
    break;
  case ST_STOPPED:
    /* After od_log_stop: written only if the writer had emptied the ring
     * (stderr was being read); never a wait on a stalled stderr. */
    if (g.writer_done)
      write_all(g.fd, line, len);
    else
      count_drop();
    break;
  }
}

static void logv(od_log_level lvl, const char *fmt, va_list ap) {
  if (!od_log_enabled(lvl))
    return;
  char msg[MSG_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  emit(lvl, msg);
}

void od_logl(od_log_level lvl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(lvl, fmt, ap);
  va_end(ap);
}

void od_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  logv(OD_LOG_INFO, fmt, ap);
  va_end(ap);
}

/* ---- the writer thread ----------------------------------------------------
 */

static void *writer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&g.mu);
  for (;;) {
    while (g.used == 0 && g.dropped_unreported == 0 && !g.stop)
      pthread_cond_wait(&g.has_data, &g.mu);
    if (g.used == 0 && g.dropped_unreported > 0) {
      /* The reader caught up: say what it missed, in the line's format. */
      uint64_t n = g.dropped_unreported;
      g.dropped_unreported = 0;
      pthread_mutex_unlock(&g.mu);
      char msg[128], line[512];
      snprintf(msg, sizeof msg,
               "log: %llu lines dropped: stderr was not read fast enough "
               "(--log-buffer-kb)",
               (unsigned long long)n);
      size_t len = format_line(OD_LOG_WARN, msg, line, sizeof line);
      int ok = write_all(g.fd, line, len) == 0;
      pthread_mutex_lock(&g.mu);
      if (!ok)
        break;
      continue;
    }
    if (g.used == 0) /* stop, and nothing left */
      break;
    size_t chunk = g.cap - g.head < g.used ? g.cap - g.head : g.used;
    const char *from = g.ring + g.head;
    pthread_mutex_unlock(&g.mu);
    /* The only place that may block on stderr; producers meanwhile append
     * past the used region, which this write does not touch. */
    int ok = write_all(g.fd, from, chunk) == 0;
    pthread_mutex_lock(&g.mu);
    if (!ok) {
      /* stderr is gone (EPIPE, closed): what is left is dropped, and
       * counted by its lines, like everything after it. */
      uint64_t lines = 0;
      for (size_t i = 0; i < g.used; i++)
        lines += g.ring[(g.head + i) % g.cap] == '\n';
      g.head = g.used = 0;
      atomic_fetch_add(&g.dropped, lines);
      om_counter *c = atomic_load(&g.dropped_counter);
      if (c != NULL)
        om_counter_add_u64(c, lines);
      continue;
    }
    g.head = (g.head + chunk) % g.cap;
    g.used -= chunk;
  }
  g.writer_done = 1;
  pthread_cond_broadcast(&g.idle);
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

int od_log_start(const od_log_opts *o, char *err, size_t err_len) {
  atomic_store(&g.level, o->level);
  atomic_store(&g.json, o->json);
  if (atomic_load(&g.state) != ST_DIRECT)
    return 0;
  g.fd = o->fd > 0 ? o->fd : 2;
  g.cap = o->buffer_bytes < 4096 ? 4096 : o->buffer_bytes;
  g.ring = malloc(g.cap);
  if (g.ring == NULL) {
    snprintf(err, err_len, "out of memory for the log buffer (%zu bytes)",
             g.cap);
    return -1;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g.idle, &ca);
  pthread_condattr_destroy(&ca);
  int rc = pthread_create(&g.writer, NULL, writer_main, NULL);
  if (rc != 0) {
    snprintf(err, err_len, "cannot start the log writer: %s", strerror(rc));
    free(g.ring);
    g.ring = NULL;
    return -1;
  }
  atomic_store(&g.state, ST_RING);
  return 0;
}

void od_log_stop(double timeout_s) {
  if (atomic_load(&g.state) != ST_RING)
    return;
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  double t = (double)until.tv_sec + until.tv_nsec * 1e-9 + timeout_s;
  until.tv_sec = (time_t)t;
  until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
  pthread_mutex_lock(&g.mu);
  g.stop = 1;
  /* The metric goes away after this (od_metrics_free); the writer touches
   * it only under mu. */
  atomic_store(&g.dropped_counter, NULL);
  pthread_cond_signal(&g.has_data);
  while (!g.writer_done &&
         pthread_cond_timedwait(&g.idle, &g.mu, &until) != ETIMEDOUT)
    ;
  int done = g.writer_done;
  pthread_mutex_unlock(&g.mu);
  atomic_store(&g.state, ST_STOPPED);
  if (done) {
    pthread_join(g.writer, NULL);
    free(g.ring);
    g.ring = NULL;
  } else {
    /* Stuck in write(2) on a stderr nobody reads: the process exits
     * without it; the ring stays allocated for it until then. */
    pthread_detach(g.writer);
  }
}
