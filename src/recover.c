/* recover.c: start-up, before the workers and the listener: what a
 * previous run of the service left behind (docs/api.md, "Restarts").
 *
 *  1. The store settles its records (store.h's recover: processing jobs
 *     queued again below --max-attempts tries or failed with a reason,
 *     queued jobs back in line in the order they were queued) and hands
 *     each kept job here: it is counted by the state it had
 *     (orfeas_jobs_recovered_total, orfeas_jobs_reclaimed_total), and a
 *     completed job whose model file is missing (deleted by hand) is
 *     failed with that reason, so it never points at nothing. Not with a
 *     shared store (redis://): the record is the cluster's and the data
 *     dir is a mount this node may not see whole (not mounted, the wrong
 *     path), and another node may be writing the job's new result; one
 *     node's view must not fail every completed job of the cluster. The
 *     missing models are counted and logged once, the records left as
 *     they are (a download answers what the mount holds).
 *  2. The files in uploads/ and outputs/ that no kept job owns are
 *     deleted: an upload whose record never committed, a model whose job
 *     was removed before its files went, a temporary file of a write cut
 *     short (never a half file under a final name: fileio.c). After this,
 *     the store's byte sums are what the data dir holds, so --max-store-mb
 *     holds across restarts. With the memory store nothing is kept and
 *     every such file goes.
 *
 * The result cache's folder is the cache's (it adopts its own entries).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs_internal.h"

typedef struct {
  char name[104]; /* "<id>.<ext>" in uploads/, "<output name>" in outputs/ */
} owned;

typedef struct {
  od_jobs *j;
  owned *up, *out; /* owned; files kept jobs own, sorted before the sweep */
  size_t nup, nout, cap_up, cap_out;
  int oom;
  int64_t by_state[OD_JOB_STATE_COUNT];
  int reclaimed;
  int64_t unseen; /* shared store: completed jobs whose model is not here */
  char first_unseen[96];
} recovery;

static void own(recovery *rv, owned **v, size_t *n, size_t *cap,
                const char *name) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 256;
    owned *g = realloc(*v, nc * sizeof *g);
    if (g == NULL) {
      rv->oom = 1;
      return;
    }
    *v = g;
    *cap = nc;
  }
  snprintf((*v)[(*n)++].name, sizeof(*v)[0].name, "%s", name);
}

/* A completed job without its model: failed, with why. */
static void model_missing(od_jobs *j, const od_job_rec *r) {
  od_job_rec f = *r;
  f.state = OD_JOB_FAILED;
  snprintf(f.error, sizeof f.error,
           "its model file %s is missing from the data dir (removed by "
           "hand?); generate it again",
           r->output_name);
  f.http_status = 500;
  f.output_name[0] = '\0';
  f.output_bytes = 0;
  if (od_store_transition(j->store, &f, OD_STATE_BIT(OD_JOB_COMPLETED), 0,
                          NULL) == OD_STORE_OK)
    od_log("job %s: %s", r->id, f.error);
}

static void on_job(const od_job_rec *r, od_job_state was, void *u) {
  recovery *rv = u;
  od_jobs *j = rv->j;
  od_metrics *m = &j->svc->m;
  om_counter_inc(
      om_family_counter(m->jobs_recovered, OM_LABELS(od_job_state_name(was))));
  /* A shared store's running jobs run on other nodes (a dead node's are
   * taken over by lease, not here). */
  if (was == OD_JOB_PROCESSING && !od_store_shared(j->store)) {
    rv->reclaimed++;
    om_counter_inc(om_family_counter(m->jobs_reclaimed, OM_LABELS("restart")));
    if (r->state == OD_JOB_FAILED) {
      om_counter_inc(om_family_counter(
          m->gen_total,
          OM_LABELS(orfeas_pl_format_name(r->req.format), "failed")));
      od_log("job %s failed: %s", r->id, r->error);
    } else {
      od_log("job %s was running when orfeasd stopped: queued again (try "
             "%d of %d)",
             r->id, r->tries + 1, j->svc->cfg.max_attempts);
    }
  }
  char name[PATH_MAX + 64];
  snprintf(name, sizeof name, "%s.%s", r->id, r->ext);
  own(rv, &rv->up, &rv->nup, &rv->cap_up, name);
  od_job_state now = r->state;
  if (r->output_name[0]) {
    struct stat st;
    od_jobs_output_path(j, r->output_name, name, sizeof name);
    int gone = r->state == OD_JOB_COMPLETED && stat(name, &st) != 0;
    if (gone && !od_store_shared(j->store)) {
      model_missing(j, r);
      now = OD_JOB_FAILED;
    } else {
      if (gone && rv->unseen++ == 0)
        snprintf(rv->first_unseen, sizeof rv->first_unseen, "%s",
                 r->output_name);
      own(rv, &rv->out, &rv->nout, &rv->cap_out, r->output_name);
    }
  }
  rv->by_state[now]++;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const owned *)a)->name, ((const owned *)b)->name);
}

/* Deletes the files of dir not in v (sorted); adds to *files and *bytes. */
static void sweep(const char *dir, const owned *v, size_t n, int *files,
                  uint64_t *bytes) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    owned key;
    if (de->d_name[0] == '.') /* . and .. (orfeasd makes no hidden files) */
      continue;
    int fits = snprintf(key.name, sizeof key.name, "%s", de->d_name) <
               (int)sizeof key.name;
    if (fits && n > 0 && bsearch(&key, v, n, sizeof *v, by_name) != NULL)
      continue; /* a kept job's */
    char path[PATH_MAX + 300];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    if (lstat(path, &st) != 0 || S_ISDIR(st.st_mode))
      continue;
    if (unlink(path) == 0) {
      (*files)++;
      *bytes += (uint64_t)st.st_size;
    }
  }
  closedir(d);
}

int od_jobs_recover(od_jobs *j, char *err, size_t err_len) {
  recovery rv = {.j = j};
  od_store_rc rc = od_store_recover(j->store, on_job, &rv);
  if (rc != OD_STORE_OK || rv.oom) {
    snprintf(err, err_len, "--store %s: recovery failed: %s", j->svc->cfg.store,
             rv.oom ? "out of memory" : od_store_rc_message(rc));
    free(rv.up);
    free(rv.out);
    return -1;
  }
  if (rv.nup > 0)
    qsort(rv.up, rv.nup, sizeof *rv.up, by_name);
  if (rv.nout > 0)
    qsort(rv.out, rv.nout, sizeof *rv.out, by_name);
  int files = 0;
  uint64_t bytes = 0;
  /* With a shared store the data dir is shared too (docs/scaling.md): a
   * file no job owns yet may be another node's upload whose record is
   * being written, so nothing is removed as an orphan. */
  if (!od_store_shared(j->store)) {
    sweep(j->dir_uploads, rv.up, rv.nup, &files, &bytes);
    sweep(j->dir_outputs, rv.out, rv.nout, &files, &bytes);
  }
  free(rv.up);
  free(rv.out);
  od_metrics *m = &j->svc->m;
  om_gauge_set(m->active_jobs, (double)(rv.by_state[OD_JOB_QUEUED] +
                                        rv.by_state[OD_JOB_PROCESSING]));
  od_jobs_gauge_depth(j);
  od_log(
      "start-up: the %s store kept %lld job(s): %lld uploaded, %lld "
      "queued (%d of them were running), %lld completed, %lld failed; %d "
      "file(s) no job owns removed (%llu bytes)",
      od_store_kind(j->store),
      (long long)(rv.by_state[OD_JOB_UPLOADED] + rv.by_state[OD_JOB_QUEUED] +
                  rv.by_state[OD_JOB_COMPLETED] + rv.by_state[OD_JOB_FAILED]),
      (long long)rv.by_state[OD_JOB_UPLOADED],
      (long long)rv.by_state[OD_JOB_QUEUED], rv.reclaimed,
      (long long)rv.by_state[OD_JOB_COMPLETED],
      (long long)rv.by_state[OD_JOB_FAILED], files, (unsigned long long)bytes);
  if (rv.unseen > 0)
    od_log("start-up: %lld completed job(s) of the shared store have no model "
           "file in %s (%s, ...): left completed (is the shared data dir "
           "mounted there?)",
           (long long)rv.unseen, j->dir_outputs, rv.first_unseen);
  return 0;
}
