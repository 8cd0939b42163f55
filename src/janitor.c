/* janitor.c: the jobs module's housekeeping, once a second on its own
 * thread (and once at start-up, before the listener opens):
 *
 *   store     od_store_ping: orfeas_store_up, and /ready's "store" check
 *   data dir  statvfs (free bytes: orfeas_data_dir_free_bytes; a read-only
 *             mount) and a probe write of DATA/.write-probe: /ready's
 *             "data_dir" check and orfeas_data_dir_writable. A failed
 *             write elsewhere (od_jobs_dir_failed) marks it unwritable at
 *             once; the next successful probe clears it.
 *   bytes     orfeas_store_bytes{kind}: uploads and outputs (the store's
 *             sums), database (the store's files, for sqlite:); with them
 *             the other gauges read from the store (store_gauges), all
 *             left out of /metrics while that read fails
 *   retention jobs idle past --result-ttl are removed, at most EXPIRE_BATCH
 *             a pass, each leaving a tombstone (410 with the reason)
 *   orphans   with a shared store, every quarter of --orphan-age (at most
 *             10 min): files no job owns removed (orphans.c), 500 names
 *             read a tick until the sweep is through
 *   stranded  every STRANDED_PERIOD_S (or --stranded-age if shorter): jobs
 *             queued over --stranded-age ago that wait in no dispatch queue
 *             are queued again
 *             (od_store_requeue_stranded: the generate-3d that queued one
 *             died or lost the store between its two writes, and nothing
 *             else would ever run it; its client's new generate got 409).
 *             orfeas_jobs_requeued_total
 *
 * The checks live in od_jobs_health (orfeasd.h), so /ready and any later
 * check (a free-space threshold, issue #13) read one struct.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jobs_internal.h"

#define EXPIRE_BATCH 256
/* --stranded-age (default 60 s): a request holds a queued job outside the
 * queue for one store call (the enqueue, or the give-back of a refused
 * one): seconds at most, even with a store that answers slowly (redis:
 * OP_TIMEOUT_S). A minute is well past that, and short enough that a
 * stranded job runs soon after. */
#define STRANDED_PERIOD_S 10.0

struct od_janitor {
  od_jobs *j;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* on CLOCK_MONOTONIC */
  int stop, started;
  pthread_t th;
};

void od_jobs_dir_failed(od_jobs *j, int e) {
  if (e == ENOSPC || e == EDQUOT || e == EROFS || e == EIO || e == EACCES) {
    if (j->dir_writable)
      od_log("data dir %s: a write failed: %s; /ready answers 503 until a "
             "write works again",
             j->svc->cfg.data_dir, strerror(e));
    j->dir_writable = 0;
  }
}

/* Writable: not a read-only mount, and a small file can be written. */
static void probe_dir(od_jobs *j) {
  const char *dir = j->svc->cfg.data_dir;
  uint64_t free_bytes;
  int ok = 0, read_only = 1;
  if (od_fs_space(dir, &free_bytes, &read_only) == 0) {
    j->dir_free = free_bytes;
    ok = !read_only;
  }
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/.write-probe", dir);
  int fd = ok ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  int e = errno;
  if (fd >= 0) {
    ok = write(fd, "ok\n", 3) == 3;
    e = errno;
    ok = close(fd) == 0 && ok;
    unlink(path);
  } else {
    ok = 0;
  }
  if (ok && !j->dir_writable)
    od_log("data dir %s: writable again", dir);
  else if (!ok && j->dir_writable)
    od_log("data dir %s: not writable: %s; /ready answers 503", dir,
           strerror(e));
  j->dir_writable = ok;
  om_gauge_set(j->svc->m.data_dir_free, (double)j->dir_free);
  om_gauge_set(j->svc->m.data_dir_writable, ok);
}

/* Bytes of the store's own files (sqlite: the database and its WAL). */
static uint64_t database_bytes(od_jobs *j) {
  const char *url = j->svc->cfg.store;
  if (strncmp(url, "sqlite:", 7) != 0)
    return 0;
  uint64_t sum = 0;
  static const char *const ext[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    char path[PATH_MAX + 32];
    struct stat st;
    snprintf(path, sizeof path, "%s%s", url + 7, ext[i]);
    if (stat(path, &st) == 0)
      sum += (uint64_t)st.st_size;
  }
  return sum;
}

static void set_bytes(od_metrics *m, int kind, uint64_t v) {
  om_gauge_set(
      om_family_gauge(m->store_bytes, OM_LABELS(od_store_bytes_kind(kind))),
      (double)v);
}

/* What the store reports beside the bytes: the head of the queue's age;
 * with a shared store the cluster backlog (other nodes change it), the
 * nodes it knows, and what the backend counted itself (lease takeovers,
 * refused renewals), added to the counters as it grows. */
static void store_gauges(od_jobs *j, const od_store_stats *st) {
  od_metrics *m = &j->svc->m;
  om_gauge_set(m->store_oldest_queued, st->oldest_queued_s);
  if (!od_store_shared(j->store))
    return;
  om_gauge_set(m->queue_depth, (double)st->queue_depth);
  om_gauge_set(m->active_jobs, (double)(st->by_state[OD_JOB_QUEUED] +
                                        st->by_state[OD_JOB_PROCESSING]));
  om_gauge_set(m->store_nodes, (double)st->nodes);
  if (st->reclaimed > j->seen_reclaimed)
    om_counter_add_u64(
        om_family_counter(m->jobs_reclaimed, OM_LABELS("lease_expired")),
        (uint64_t)(st->reclaimed - j->seen_reclaimed));
  if (st->fenced > j->seen_fenced)
    om_counter_add_u64(m->jobs_fenced, (uint64_t)(st->fenced - j->seen_fenced));
  j->seen_reclaimed = st->reclaimed;
  j->seen_fenced = st->fenced;
}

/* The store cannot be read (Redis down): the gauges read from it are left
 * out of /metrics until it can, the Prometheus habit for a value one does
 * not know (orfeas_store_up 0 says why). Kept at their last values, they
 * showed a frozen, plausible backlog through an outage. The queue and
 * active-job figures of a local store are the process's own, not read. */
static void store_gauges_unknown(od_jobs *j) {
  od_metrics *m = &j->svc->m;
  om_gauge_unset(om_family_gauge(
      m->store_bytes, OM_LABELS(od_store_bytes_kind(OD_BYTES_UPLOADS))));
  om_gauge_unset(om_family_gauge(
      m->store_bytes, OM_LABELS(od_store_bytes_kind(OD_BYTES_OUTPUTS))));
  om_gauge_unset(m->tombstones);
  om_gauge_unset(m->store_oldest_queued);
  if (!od_store_shared(j->store))
    return;
  om_gauge_unset(m->queue_depth);
  om_gauge_unset(m->active_jobs);
  om_gauge_unset(m->store_nodes);
}

static void byte_gauges(od_jobs *j) {
  od_store_stats st;
  od_metrics *m = &j->svc->m;
  if (od_store_get_stats(j->store, &st) == OD_STORE_OK) {
    set_bytes(m, OD_BYTES_UPLOADS, st.upload_bytes);
    set_bytes(m, OD_BYTES_OUTPUTS, st.output_bytes);
    om_gauge_set(m->tombstones, (double)st.tombstones);
    store_gauges(j, &st);
  } else {
    store_gauges_unknown(j);
  }
  set_bytes(m, OD_BYTES_DATABASE, database_bytes(j));
}

static void expire(od_jobs *j) {
  od_evict_sel sel = {.idle_before = od_wall() - j->svc->cfg.result_ttl_s};
  for (int n = 0; n < EXPIRE_BATCH; n++)
    if (od_jobs_remove(j, &sel, OD_RM_EXPIRED) != OD_STORE_OK)
      break;
}

/* The orphan sweep's period: a quarter of --orphan-age, at most 10 min. */
static double orphan_period(const od_jobs *j) {
  double p = j->svc->cfg.orphan_age_s / 4;
  return p < 600 ? p : 600;
}

static void requeue_stranded(od_jobs *j) {
  int n = 0;
  double age = j->svc->cfg.stranded_age_s;
  od_store_rc rc = od_store_requeue_stranded(j->store, od_wall() - age, &n);
  if (n > 0) {
    om_counter_add_u64(j->svc->m.jobs_requeued, (uint64_t)n);
    od_log("%d queued job%s found in no dispatch queue %gs after being "
           "queued (their generate-3d request died or lost the store "
           "before enqueuing them): queued again",
           n, n == 1 ? "" : "s", age);
  }
  if (rc != OD_STORE_OK && rc != OD_STORE_CLOSED)
    od_log("janitor: looking for stranded queued jobs: %s",
           od_store_rc_message(rc));
}

void od_jobs_housekeep(od_jobs *j) {
  j->store_up = od_store_ping(j->store) == OD_STORE_OK;
  om_gauge_set(j->svc->m.store_up, j->store_up);
  probe_dir(j);
  if (j->store_up) {
    expire(j);
    /* Within --max-store-mb again: at start-up after the flag was
     * lowered, or a crash left more than it (docs/api.md). */
    od_jobs_fit_budget(j, 0);
  }
  byte_gauges(j);
  double now = od_now();
  double every = j->svc->cfg.stranded_age_s < STRANDED_PERIOD_S
                     ? j->svc->cfg.stranded_age_s
                     : STRANDED_PERIOD_S;
  if (j->store_up && !j->svc->draining &&
      (j->t_stranded == 0 || now - j->t_stranded >= every)) {
    j->t_stranded = now;
    requeue_stranded(j);
  }
  if (j->store_up && od_store_shared(j->store) &&
      (j->orphans.running || j->t_orphans == 0 ||
       now - j->t_orphans >= orphan_period(j))) {
    if (!j->orphans.running)
      j->t_orphans = now;
    od_jobs_sweep_orphans(j); /* a slice; the rest at the next ticks */
  }
}

static void *janitor_main(void *arg) {
  od_janitor *k = arg;
  pthread_setname_np(pthread_self(), "od-janitor");
  pthread_mutex_lock(&k->mu);
  while (!k->stop) {
    pthread_mutex_unlock(&k->mu);
    od_jobs_housekeep(k->j);
    pthread_mutex_lock(&k->mu);
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    while (!k->stop &&
           pthread_cond_timedwait(&k->cv, &k->mu, &until) != ETIMEDOUT)
      ;
  }
  pthread_mutex_unlock(&k->mu);
  return NULL;
}

od_janitor *od_janitor_new(od_jobs *j) {
  od_janitor *k = calloc(1, sizeof *k);
  if (k == NULL)
    return NULL;
  k->j = j;
  pthread_mutex_init(&k->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&k->cv, &ca);
  pthread_condattr_destroy(&ca);
  return k;
}

int od_janitor_start(od_janitor *k, char *err, size_t err_len) {
  int rc = pthread_create(&k->th, NULL, janitor_main, k);
  if (rc != 0) {
    snprintf(err, err_len, "cannot start the janitor: %s", strerror(rc));
    return -1;
  }
  k->started = 1;
  return 0;
}

void od_janitor_stop(od_janitor *k) {
  if (k == NULL || !k->started)
    return;
  pthread_mutex_lock(&k->mu);
  k->stop = 1;
  pthread_cond_signal(&k->cv);
  pthread_mutex_unlock(&k->mu);
  pthread_join(k->th, NULL);
  k->started = 0;
}

void od_janitor_free(od_janitor *k) {
  if (k == NULL)
    return;
  od_janitor_stop(k);
  pthread_cond_destroy(&k->cv);
  pthread_mutex_destroy(&k->mu);
  free(k);
}
