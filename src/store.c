/* store.c: picks a job-store backend by URL scheme and forwards each call
 * to it (store.h is the contract). The wrappers are the one place every
 * store call passes through: each is timed and its result handed to the
 * observer (jobs.c turns that into orfeas_store_operation_duration_seconds
 * and orfeas_store_errors_total).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

struct od_store {
  const od_store_ops *ops;
  void *be; /* the backend's state; owned through ops->close */
  void (*obs)(void *u, od_store_op op, od_store_rc rc, double seconds);
  void *obs_u;
};

static const od_store_ops *const BACKENDS[] = {
    &od_store_sqlite_ops, &od_store_memory_ops, &od_store_redis_ops};

#define NBACKENDS (sizeof BACKENDS / sizeof BACKENDS[0])

const char *od_store_rc_name(od_store_rc rc) {
  static const char *const n[OD_STORE_RC_COUNT] = {
      "ok",    "not_found", "conflict", "full", "fenced",
      "empty", "closed",    "down",     "gone"};
  return (unsigned)rc < OD_STORE_RC_COUNT ? n[rc] : "unknown";
}

const char *od_store_rc_message(od_store_rc rc) {
  switch (rc) {
  case OD_STORE_OK:
    return "ok";
  case OD_STORE_NOT_FOUND:
    return "no such job: it was never created here or has been forgotten";
  case OD_STORE_CONFLICT:
    return "the job is busy (queued or processing); wait for it to end";
  case OD_STORE_FULL:
    return "the job queue or job table is full; retry after the Retry-After "
           "seconds";
  case OD_STORE_FENCED:
    return "this attempt of the job was superseded by a newer one; its result "
           "is dropped";
  case OD_STORE_EMPTY:
    return "nothing to take";
  case OD_STORE_CLOSED:
    return "the service is shutting down and takes no new work; retry on "
           "another instance";
  case OD_STORE_DOWN:
    return "the job store is unavailable; retry shortly (operators: see the "
           "log)";
  case OD_STORE_GONE:
    return "the job was removed (its results are no longer kept)";
  default:
    return "unknown job-store result";
  }
}

/* The backend whose scheme starts url, or NULL with err filled. */
static const od_store_ops *backend_of(const char *url, char *err,
                                      size_t err_len) {
  const char *colon = strchr(url, ':');
  size_t slen = colon ? (size_t)(colon - url) : strlen(url);
  for (size_t i = 0; i < NBACKENDS; i++)
    if (strlen(BACKENDS[i]->scheme) == slen &&
        strncmp(BACKENDS[i]->scheme, url, slen) == 0)
      return BACKENDS[i];
  char known[128] = "";
  size_t used = 0;
  for (size_t i = 0; i < NBACKENDS && used < sizeof known; i++) {
    int n = snprintf(known + used, sizeof known - used, "%s%s:", i ? ", " : "",
                     BACKENDS[i]->scheme);
    if (n > 0)
      used += (size_t)n;
  }
  snprintf(err, err_len,
           "--store: \"%.200s\" names no known job store (known: %s)", url,
           known);
  return NULL;
}

int od_store_url_check(const char *url, const char *password_file, char *err,
                       size_t err_len) {
  const od_store_ops *ops = backend_of(url, err, err_len);
  if (ops == NULL)
    return -1;
  char shown[256];
  od_store_url_shown(url, shown, sizeof shown);
  if (password_file != NULL && password_file[0] &&
      strcmp(ops->scheme, "redis") != 0) {
    snprintf(err, err_len,
             "--store-password-file is for a redis:// store, not %s", shown);
    return -1;
  }
  const char *colon = strchr(url, ':');
  char berr[384] = "";
  if (ops->check_url != NULL &&
      ops->check_url(colon ? colon + 1 : "", berr, sizeof berr) != 0) {
    snprintf(err, err_len, "--store %s: %s", shown,
             berr[0] ? berr : "malformed");
    return -1;
  }
  return 0;
}

/* A password never belongs in a URL (the redis backend refuses one, and
 * says so without echoing it): never shown either. */
void od_store_url_shown(const char *url, char *out, size_t size) {
  const char *auth = strstr(url, "://");
  const char *at = auth ? strchr(auth + 3, '@') : NULL;
  const char *slash = auth ? strchr(auth + 3, '/') : NULL;
  if (at != NULL && (slash == NULL || at < slash))
    snprintf(out, size, "%.*s***%.200s", (int)(auth + 3 - url), url, at);
  else
    snprintf(out, size, "%.200s", url);
}

od_store *od_store_open(const char *url, const od_store_opts *o, char *err,
                        size_t err_len) {
  const od_store_ops *ops = backend_of(url, err, err_len);
  if (ops == NULL)
    return NULL;
  od_store *s = calloc(1, sizeof *s);
  if (s == NULL) {
    snprintf(err, err_len, "--store: out of memory");
    return NULL;
  }
  s->ops = ops;
  const char *colon = strchr(url, ':');
  char berr[384] = "", shown[256];
  od_store_url_shown(url, shown, sizeof shown);
  if (od_store_url_check(url, o->password_file, err, err_len) != 0) {
    free(s);
    return NULL;
  }
  if (ops->open(colon ? colon + 1 : "", o, &s->be, berr, sizeof berr) !=
      OD_STORE_OK) {
    snprintf(err, err_len, "--store %s: %s", shown,
             berr[0] ? berr : "cannot open");
    free(s);
    return NULL;
  }
  return s;
}

void od_store_close(od_store *s) {
  if (s == NULL)
    return;
  od_store_close_queue(s, NULL, NULL);
  s->ops->close(s->be);
  free(s);
}

const char *od_store_kind(const od_store *s) { return s->ops->scheme; }
int od_store_durable(const od_store *s) { return s->ops->durable; }
int od_store_shared(const od_store *s) { return s->ops->shared; }

const char *od_store_op_name(od_store_op op) {
  static const char *const n[OD_STORE_OP_COUNT] = {
#define OD_STORE_OP_NAME(id, name) name,
      OD_STORE_OP_LIST(OD_STORE_OP_NAME)
#undef OD_STORE_OP_NAME
  };
  return (unsigned)op < OD_STORE_OP_COUNT ? n[op] : "unknown";
}

void od_store_set_observer(od_store *s,
                           void (*fn)(void *u, od_store_op op, od_store_rc rc,
                                      double seconds),
                           void *u) {
  s->obs = fn;
  s->obs_u = u;
}

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs CALL (an expression of type od_store_rc), timed for the observer. */
#define OBSERVED(s, op, CALL)                                                  \
  do {                                                                         \
    if ((s)->obs == NULL)                                                      \
      return CALL;                                                             \
    double t0_ = mono();                                                       \
    od_store_rc rc_ = CALL;                                                    \
    (s)->obs((s)->obs_u, op, rc_, mono() - t0_);                               \
    return rc_;                                                                \
  } while (0)

od_store_rc od_store_recover(od_store *s,
                             void (*each)(const od_job_rec *r, od_job_state was,
                                          void *u),
                             void *u) {
  OBSERVED(s, OD_STORE_OP_RECOVER, s->ops->recover(s->be, each, u));
}

od_store_rc od_store_insert(od_store *s, od_job_rec *r) {
  OBSERVED(s, OD_STORE_OP_INSERT, s->ops->insert(s->be, r));
}

od_store_rc od_store_get(od_store *s, const char *id, od_job_rec *out) {
  OBSERVED(s, OD_STORE_OP_GET, s->ops->get(s->be, id, out));
}

od_store_rc od_store_transition(od_store *s, const od_job_rec *next,
                                unsigned from, int fence, od_job_rec *prev) {
  OBSERVED(s, OD_STORE_OP_TRANSITION,
           s->ops->transition(s->be, next, from, fence, prev));
}

od_store_rc od_store_enqueue(od_store *s, const char *id, int *position) {
  OBSERVED(s, OD_STORE_OP_ENQUEUE, s->ops->enqueue(s->be, id, position));
}

od_store_rc od_store_claim(od_store *s, const char *owner, int block_ms,
                           od_job_rec *out) {
  return s->ops->claim(s->be, owner, block_ms, out);
}

od_store_rc od_store_position(od_store *s, const char *id, int *position) {
  OBSERVED(s, OD_STORE_OP_POSITION, s->ops->position(s->be, id, position));
}

od_store_rc od_store_requeue_stranded(od_store *s, double before, int *n) {
  OBSERVED(s, OD_STORE_OP_REQUEUE, s->ops->requeue_stranded(s->be, before, n));
}

od_store_rc od_store_evict(od_store *s, const od_evict_sel *sel,
                           od_job_rec *gone) {
  OBSERVED(s, OD_STORE_OP_EVICT, s->ops->evict(s->be, sel, gone));
}

od_store_rc od_store_get_stats(od_store *s, od_store_stats *st) {
  OBSERVED(s, OD_STORE_OP_STATS, s->ops->stats(s->be, st));
}

void od_store_close_queue(od_store *s, void (*each)(const char *id, void *u),
                          void *u) {
  s->ops->close_queue(s->be, each, u);
}

int od_store_has_bus(const od_store *s) { return s->ops->publish != NULL; }

od_store_rc od_store_publish(od_store *s, const char *id, int ev,
                             const char *text) {
  return s->ops->publish ? s->ops->publish(s->be, id, ev, text)
                         : OD_STORE_EMPTY;
}

int od_store_listen(od_store *s, const od_store_listener *l, char *err,
                    size_t err_len) {
  if (s->ops->listen == NULL) {
    snprintf(err, err_len, "the %s store has no event bus", s->ops->scheme);
    return -1;
  }
  return s->ops->listen(s->be, l, err, err_len);
}

od_store_rc od_store_rate_take(od_store *s, const char *key, double rate,
                               double burst, int *wait_s) {
  return s->ops->rate_take ? s->ops->rate_take(s->be, key, rate, burst, wait_s)
                           : OD_STORE_EMPTY;
}

od_store_rc od_store_ping(od_store *s) {
  if (s->ops->ping == NULL)
    return OD_STORE_OK;
  OBSERVED(s, OD_STORE_OP_PING, s->ops->ping(s->be));
}
