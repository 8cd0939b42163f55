/* jobs.c: the job API (od_jobs_* in orfeasd.h) over the job store.
 *
 * A job is born at upload (state uploaded, its image stored durably as
 * DATA/uploads/<id>.<ext> before its record is inserted) and its record
 * lives in the store (store.h, --store). generate-3d moves it to queued (or
 * straight to completed on a cache hit: its model a link to the cached
 * one), a worker (worker.c) to processing, and the committer (commit.c)
 * always ends it completed or failed with a reason: the pipeline's own
 * message, a full disk, or, with the memory store only, "service shutting
 * down" for jobs still queued at SIGTERM or still running at the drain's
 * deadline (od_jobs_drain; a durable store keeps them queued, the running
 * ones queued again, for the next start: worker.c). Every state change is one
 * store call (insert, transition, claim, evict); the store decides races (a
 * second generate gets CONFLICT, the 409), this file decides what they
 * mean. A 2xx is sent only after the store call that backs it returned OK
 * (durable with sqlite:). Start-up recovery is recover.c.
 *
 * Room: jobs are kept at least --result-ttl after they last changed
 * (janitor.c removes them then) unless the data dir's budget needs the
 * room: an upload that does not fit in --max-store-mb removes the idle job
 * (uploaded, completed, failed) that changed longest ago and is not held
 * (an upload whose generate got 429 keeps its slot for its Retry-After
 * plus --refused-hold), record first, then its files, leaving a
 * tombstone: it answers 410 with the reason. When only active or held
 * jobs remain, or the job table (--max-jobs) is full of jobs younger than
 * --result-ttl, the upload is refused (503): retention, not eviction by
 * count.
 *
 * Locks: admit_mu serializes uploads while they make room and insert. No
 * lock of this module is held while the hub, the cache or the metrics are
 * called (jobs_internal.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "jobs_internal.h"

const char *od_job_state_name(od_job_state s) {
  static const char *const n[OD_JOB_STATE_COUNT] = {
      "uploaded", "queued", "processing", "completed", "failed"};
  return (unsigned)s < OD_JOB_STATE_COUNT ? n[s] : "failed";
}

/* ---- files --------------------------------------------------------------- */

void od_jobs_upload_path(const od_jobs *j, const od_job_rec *r, char *out,
                         size_t len) {
  snprintf(out, len, "%s/%s.%s", j->dir_uploads, r->id, r->ext);
}

void od_jobs_output_path(const od_jobs *j, const char *name, char *out,
                         size_t len) {
  snprintf(out, len, "%s/%s", j->dir_outputs, name);
}

void od_jobs_output_name(const od_job_rec *r, char *out, size_t len) {
  snprintf(out, len, "model_%s.%s", r->id,
           orfeas_pl_format_name(r->req.format));
}

/* Deletes a removed job's files (its record is already gone). */
static void remove_files(od_jobs *j, const od_job_rec *gone) {
  char path[PATH_MAX + 128];
  od_jobs_upload_path(j, gone, path, sizeof path);
  unlink(path);
  if (gone->output_name[0]) {
    od_jobs_output_path(j, gone->output_name, path, sizeof path);
    unlink(path);
  }
}

/* A new run replaced prev's model: delete prev's file, unless the new one
 * has the same name (it is replaced in place by the rename that writes it;
 * a run that fails removes it, worker.c). An open download keeps reading
 * an unlinked file. */
static void drop_old_output(od_jobs *j, const od_job_rec *prev,
                            const od_job_rec *now) {
  char name[96], path[PATH_MAX + 128];
  od_jobs_output_name(now, name, sizeof name);
  if (prev->output_name[0] && strcmp(prev->output_name, name) != 0) {
    od_jobs_output_path(j, prev->output_name, path, sizeof path);
    unlink(path);
  }
}

/* ---- events, views ------------------------------------------------------- */

void od_jobs_publish(od_jobs *j, const char *id, od_ws_event ev, json_t *data) {
  json_object_set_new(data, "timestamp", json_real(od_wall()));
  char *text = od_ws_event_json(ev, data);
  if (text == NULL)
    return;
  /* Cluster mode: to every node through the bus (this one's hub gets it
   * back from the listener, fanout.c); here only if the bus refused. */
  if (j->fanout == NULL ||
      od_store_publish(j->store, id, (int)ev, text) != OD_STORE_OK)
    od_hub_publish(j->svc->hub, id, ev, text);
  free(text);
}

int od_jobs_shared(od_jobs *j) { return j->fanout != NULL; }

int od_jobs_rate_take(od_jobs *j, const char *key, double rate, double burst,
                      int *wait_s) {
  return j != NULL && od_store_rate_take(j->store, key, rate, burst, wait_s) ==
                          OD_STORE_OK
             ? 0
             : -1;
}

void od_jobs_quiet(od_jobs *j) {
  if (j != NULL)
    od_fanout_quiet(j->fanout);
}

/* A record as the API shows it: for a running job, where it stands now
 * (worker.c), for a queued one its place in line; with its ETA. */
static void view_of(od_jobs *j, const od_job_rec *r, od_job_view *v) {
  memset(v, 0, sizeof *v);
  snprintf(v->id, sizeof v->id, "%s", r->id);
  v->state = r->state;
  v->progress = r->progress;
  snprintf(v->stage, sizeof v->stage, "%s", r->stage);
  v->stage_progress = r->stage_progress;
  v->position = -1;
  v->cached = r->cached;
  v->format = r->req.format;
  snprintf(v->output_name, sizeof v->output_name, "%s", r->output_name);
  v->score = r->score;
  snprintf(v->grade, sizeof v->grade, "%s", r->grade);
  v->printable = r->printable;
  snprintf(v->error, sizeof v->error, "%s", r->error);
  v->http_status = r->http_status;
  int workers = od_workers_running(j->workers);
  if (r->state == OD_JOB_QUEUED) {
    int pos = -1;
    if (od_store_position(j->store, r->id, &pos) == OD_STORE_OK)
      v->position = pos;
    v->eta_seconds = od_eta_queued(j->eta, pos < 0 ? 0 : pos, workers);
  } else if (r->state == OD_JOB_PROCESSING) {
    od_live l;
    if (od_workers_live(j->workers, r->id, &l) ||
        od_committer_holds(j->committer, r->id, &l)) {
      snprintf(v->stage, sizeof v->stage, "%s", l.stage);
      v->progress = l.progress;
      v->stage_progress = l.stage_progress;
      v->eta_seconds = od_eta_running(j->eta, l.stage_idx, l.stage_progress,
                                      od_now() - l.stage_t0);
    } else if (od_fanout_live(j->fanout, r->id, &l)) { /* another node's */
      snprintf(v->stage, sizeof v->stage, "%s", l.stage);
      v->progress = l.progress;
      v->stage_progress = l.stage_progress;
      v->eta_seconds = od_eta_running(j->eta, -1, 0, 0);
    } else { /* claimed, not started yet */
      snprintf(v->stage, sizeof v->stage, "starting");
      v->progress = v->stage_progress = 0;
      v->eta_seconds = od_eta_running(j->eta, -1, 0, 0);
    }
  }
}

int od_jobs_view(od_jobs *j, const char *id, od_job_view *v) {
  od_job_rec r;
  if (od_store_get(j->store, id, &r) != OD_STORE_OK)
    return 0;
  view_of(j, &r, v);
  return 1;
}

/* A removed job as a failed one whose error is the removal's reason. */
static void gone_view(const od_job_rec *r, od_job_view *v) {
  memset(v, 0, sizeof *v);
  snprintf(v->id, sizeof v->id, "%s", r->id);
  v->state = OD_JOB_FAILED;
  v->position = -1;
  snprintf(v->error, sizeof v->error, "job removed: %.240s", r->error);
  v->http_status = 410;
}

int od_jobs_gone(od_jobs *j, const char *id, od_job_view *v) {
  od_job_rec r;
  od_store_rc rc = od_store_get(j->store, id, &r);
  if (rc == OD_STORE_DOWN) { /* cannot tell: never a 404 (issue #15) */
    memset(v, 0, sizeof *v);
    snprintf(v->id, sizeof v->id, "%s", id);
    v->state = OD_JOB_FAILED;
    v->position = -1;
    snprintf(v->error, sizeof v->error, "%s",
             od_store_rc_message(OD_STORE_DOWN));
    v->http_status = 503;
    return 1;
  }
  if (rc != OD_STORE_GONE)
    return 0;
  gone_view(&r, v);
  return 1;
}

od_store_rc od_jobs_current(od_jobs *j, const char *id, od_job_view *v) {
  od_job_rec r;
  od_store_rc rc = od_store_get(j->store, id, &r);
  if (rc == OD_STORE_OK)
    view_of(j, &r, v);
  else if (rc == OD_STORE_GONE)
    gone_view(&r, v);
  else if (rc != OD_STORE_NOT_FOUND)
    rc = OD_STORE_DOWN; /* nothing else answers a get */
  return rc;
}

static void count_gen(od_jobs *j, orfeas_pl_format f, const char *status) {
  om_counter_inc(om_family_counter(
      j->svc->m.gen_total, OM_LABELS(orfeas_pl_format_name(f), status)));
}

const char *const OD_FAIL_REASON_NAMES[OD_FAIL_REASONS] = {
    "decode", "pipeline", "disk_full", "storage", "shutdown", "internal"};

od_fail_reason od_fail_reason_of_errno(int e) {
  return e == ENOSPC || e == EDQUOT ? OD_FAIL_DISK_FULL : OD_FAIL_STORAGE;
}

od_store_rc od_jobs_end(od_jobs *j, od_job_rec *r, unsigned from, int fence,
                        od_fail_reason why) {
  r->t_ended = od_wall();
  od_store_rc rc = od_store_transition(j->store, r, from, fence, NULL);
  if (rc != OD_STORE_OK) {
    od_log("job %s: its %s was not recorded: %s", r->id,
           r->state == OD_JOB_COMPLETED ? "completion" : "failure",
           od_store_rc_message(rc));
    return rc;
  }
  od_jobs_ended(j, r, why);
  return OD_STORE_OK;
}

void od_jobs_ended(od_jobs *j, const od_job_rec *r, od_fail_reason why) {
  int ok = r->state == OD_JOB_COMPLETED;
  if (j->fanout == NULL) /* cluster mode: the janitor sets it */
    om_gauge_dec(j->svc->m.active_jobs);
  count_gen(j, r->req.format, ok ? "success" : "failed");
  if (!ok && (unsigned)why < OD_FAIL_REASONS)
    om_counter_inc(j->svc->m.gen_failures[why]);
  if (ok)
    od_log("job %s completed format=%s score=%.3f grade=%s", r->id,
           orfeas_pl_format_name(r->req.format), r->score, r->grade);
  else
    od_log("job %s failed: %s", r->id, r->error);
  od_job_view v;
  od_ws_event ev;
  view_of(j, r, &v);
  json_t *data = od_job_event_json(&v, &ev);
  if (data != NULL)
    od_jobs_publish(j, r->id, ev, data);
}

/* ---- upload -------------------------------------------------------------- */

static const char *const RM_LABEL[OD_RM_COUNT] = {"expired", "space"};

/* The tombstone's reason (the 410's message after "job removed: "). */
static void rm_reason(const od_jobs *j, od_rm why, char *out, size_t len) {
  if (why == OD_RM_EXPIRED)
    snprintf(out, len,
             "expired: finished jobs and unused uploads are kept "
             "--result-ttl %g s after they last changed; upload the image "
             "again",
             j->svc->cfg.result_ttl_s);
  else
    snprintf(out, len,
             "space: the data dir was full (--max-store-mb) and this was the "
             "finished job or unused upload that had waited longest; upload "
             "the image again");
}

od_store_rc od_jobs_remove(od_jobs *j, od_evict_sel *sel, od_rm why) {
  char reason[256];
  rm_reason(j, why, reason, sizeof reason);
  sel->reason = reason;
  od_job_rec gone;
  od_store_rc rc = od_store_evict(j->store, sel, &gone);
  if (rc == OD_STORE_OK) {
    remove_files(j, &gone);
    om_counter_inc(
        om_family_counter(j->svc->m.jobs_removed, OM_LABELS(RM_LABEL[why])));
    od_log("job %s removed (%s, state %s)", gone.id, RM_LABEL[why],
           od_job_state_name(gone.state));
  }
  return rc;
}

/* Removes jobs until `len` more bytes fit in --max-store-mb. Called with
 * admit_mu held. FULL when only active or held jobs are left. */
static od_store_rc make_room(od_jobs *j, uint64_t len) {
  for (;;) {
    od_store_stats st;
    od_store_rc rc = od_store_get_stats(j->store, &st);
    if (rc != OD_STORE_OK)
      return rc;
    if (st.upload_bytes + st.output_bytes + j->reserved + len <= j->store_cap)
      return OD_STORE_OK;
    od_evict_sel sel = {0};
    rc = od_jobs_remove(j, &sel, OD_RM_SPACE);
    if (rc != OD_STORE_OK)
      return rc == OD_STORE_EMPTY ? OD_STORE_FULL : rc;
  }
}

void od_jobs_fit_budget(od_jobs *j, uint64_t extra) {
  pthread_mutex_lock(&j->admit_mu);
  make_room(j, extra);
  j->reserved += extra;
  pthread_mutex_unlock(&j->admit_mu);
}

void od_jobs_budget_release(od_jobs *j, uint64_t extra) {
  pthread_mutex_lock(&j->admit_mu);
  j->reserved -= extra < j->reserved ? extra : j->reserved;
  pthread_mutex_unlock(&j->admit_mu);
}

/* Less than --min-free-mb (plus `more` bytes about to be written) free on
 * the data dir's file system, as the janitor last measured it. */
static int space_low(od_jobs *j, uint64_t more) {
  uint64_t min = (uint64_t)j->svc->cfg.min_free_mb << 20;
  return min > 0 && j->dir_free < min + more;
}

/* 1 when the data dir's file system is full (under 1 MiB free: a SQLite
 * commit needs room for its WAL frames): a store write that failed then
 * most likely failed for it, and the client is told so. */
static int disk_full(const od_jobs *j) {
  uint64_t free_bytes;
  return od_fs_space(j->dir_uploads, &free_bytes, NULL) == 0 &&
         free_bytes < (1u << 20);
}

/* The same bytes stored before (the image memo knows a job's upload file
 * of this digest, durable since its record committed): path becomes a
 * hard link to it, no write and no sync of the data (the link's rename is
 * made durable). 1 when done; 0 when there is none, or it is gone (that
 * job was removed): then the bytes are written. */
static int link_same_upload(od_jobs *j, const od_job_rec *r, const char *path) {
  char name[48], src[PATH_MAX + 64];
  if (!od_imgmemo_stored_as(j->svc->imgmemo, r->image_sha256, name,
                            sizeof name))
    return 0;
  const char *dot = strrchr(name, '.');
  if (dot == NULL || strcmp(dot + 1, r->ext) != 0)
    return 0;
  snprintf(src, sizeof src, "%s/%s", j->dir_uploads, name);
  return od_file_link(src, path, j->durable) == 0;
}

int od_jobs_add_upload(od_jobs *j, const uint8_t *img, size_t len,
                       const uint8_t sha256[32], const char *ext,
                       char id_out[37], char *err, size_t err_len) {
  od_job_rec r;
  memset(&r, 0, sizeof r);
  if (od_uuid_new(r.id) != 0) {
    snprintf(err, err_len, "no randomness for a job id");
    return -1;
  }
  snprintf(r.ext, sizeof r.ext, "%s", ext);
  memcpy(r.image_sha256, sha256, 32);
  if (space_low(j, len)) {
    /* Keep the last --min-free-mb for the models of jobs already taken. */
    snprintf(err, err_len,
             "the server's disk is nearly full (less than --min-free-mb "
             "would be left); retry later");
    return -2;
  }
  r.state = OD_JOB_UPLOADED;
  r.upload_bytes = len;
  r.t_created = od_wall();
  char path[PATH_MAX + 64];
  od_jobs_upload_path(j, &r, path, sizeof path);
  if (!link_same_upload(j, &r, path) &&
      od_file_write_opt(path, img, len, j->durable) != 0) {
    int e = errno;
    od_jobs_dir_failed(j, e);
    od_log("upload: cannot write %s: %s", path, strerror(e));
    snprintf(err, err_len, "cannot store the upload in the data dir: %s",
             strerror(e));
    return e == ENOSPC || e == EDQUOT || e == EROFS ? -3 : -1;
  }
  pthread_mutex_lock(&j->admit_mu);
  /* The data dir is bounded too (--max-store-mb): uploads and models of
   * finished jobs go, oldest first, to make room; so do whole jobs past
   * --max-jobs. */
  od_store_rc rc = make_room(j, len);
  int table_full = 0;
  if (rc == OD_STORE_OK &&
      (rc = od_store_insert(j->store, &r)) == OD_STORE_FULL) {
    /* Retention, not eviction by count: only a job past --result-ttl
     * (which the janitor is about to remove anyway) makes room here. */
    od_evict_sel sel = {.idle_before = od_wall() - j->svc->cfg.result_ttl_s};
    table_full = 1;
    if (od_jobs_remove(j, &sel, OD_RM_EXPIRED) == OD_STORE_OK)
      rc = od_store_insert(j->store, &r);
  }
  pthread_mutex_unlock(&j->admit_mu);
  if (rc != OD_STORE_OK) {
    unlink(path);
    if (rc == OD_STORE_FULL && table_full) {
      snprintf(err, err_len,
               "the job table is full (--max-jobs %d) of jobs younger than "
               "--result-ttl; retry later",
               j->svc->cfg.max_jobs);
      return -2;
    }
    if (rc == OD_STORE_FULL) {
      snprintf(err, err_len,
               "the whole --max-store-mb holds queued or running jobs, or "
               "uploads waiting out a Retry-After; retry later");
      return -2;
    }
    if (rc == OD_STORE_DOWN && disk_full(j))
      snprintf(err, err_len,
               "the job store cannot commit: no disk space left on the "
               "server; retry later");
    else
      snprintf(err, err_len, "%s", od_store_rc_message(rc));
    return rc == OD_STORE_DOWN ? -3 : -1;
  }
  snprintf(id_out, 37, "%s", r.id);
  od_imgmemo_stored(j->svc->imgmemo, r.image_sha256, r.id, r.ext);
  od_log("job %s uploaded bytes=%zu type=%s", id_out, len, ext);
  return 0;
}

/* ---- generate ------------------------------------------------------------ */

/* SHA-256(image digest || parameters): every parameter that changes the
 * model is in the key, dimensions included. */
static int cache_key(const uint8_t digest[32], const od_generate_req *r,
                     uint8_t key[32]) {
  uint8_t buf[32 + 256];
  memcpy(buf, digest, 32);
  int n =
      snprintf((char *)buf + 32, sizeof buf - 32,
               "|format=%s|mode=%s|quality=%d|w=%.17g|h=%.17g|d=%.17g",
               orfeas_pl_format_name(r->format), orfeas_pl_mode_name(r->mode),
               r->quality, r->width, r->height, r->depth);
  unsigned int out_len = 0;
  if (n < 0 || (size_t)n >= sizeof buf - 32)
    return -1;
  return EVP_Digest(buf, 32 + (size_t)n, key, &out_len, EVP_sha256(), NULL) ==
                     1 &&
                 out_len == 32
             ? 0
             : -1;
}

void od_jobs_update_cache_gauges(od_jobs *j) {
  for (int t = 0; t < OD_CACHE_TIERS; t++)
    om_gauge_set(j->svc->m.cache_size[t],
                 (double)od_cache_bytes(j->svc->cache, (od_cache_tier)t));
}

/* A transition that no longer finds a job read moments before (the
 * caller holds its gen_mu) lost a race with its removal, by retention or
 * for --max-store-mb: 410 with the reason, as a generate coming a moment
 * later would get, never a bare 404 (docs/api.md). Until the removal is
 * durable the store still reads the record as it was (store_sqlite.c's
 * shadows), so its tombstone is waited for: the removal's sync, a few ms,
 * at most a second (then 503, retry). */
static od_gen_result missing(od_jobs *j, const char *id) {
  for (int k = 0; k < 1000; k++) {
    od_job_rec r;
    od_store_rc rc = od_store_get(j->store, id, &r);
    if (rc == OD_STORE_GONE)
      return OD_GEN_GONE;
    if (rc == OD_STORE_NOT_FOUND)
      return OD_GEN_NOT_FOUND;
    if (rc != OD_STORE_OK)
      return OD_GEN_UNAVAILABLE;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return OD_GEN_UNAVAILABLE;
}

/* Completes the job r (idle in the store, r its next record as generate
 * would queue it) from the result cache: its model is made a link to the
 * cached one (no copy, durable: od_file_link), then the completion is
 * recorded by one compare-and-set from the idle states, one synced commit.
 * Called with the job's gen_mu held, so no other generate of this job runs
 * in this process meanwhile; the compare-and-set decides against anything
 * else (an eviction, another process on a shared store). OD_GEN_CACHED when
 * done; *miss = 1 on a miss (or a hit that could not be used: the job
 * runs); else why it was refused (the link is removed again).
 *
 * cur is the job's record as it stands. When its model has the name the
 * hit would link (the same format again), the link replaces the file that
 * record points at before the commit: a refused or failed commit would
 * leave the record completed with another result's model, or with none
 * once the link is removed. So a hit onto that name is taken only for the
 * result the job already has (the same cache key: the same bytes, linked
 * over themselves), and then never removed; another result runs (the run
 * path queues the record before it writes the model). */
static od_gen_result complete_from_cache(od_jobs *j, const od_job_rec *cur,
                                         const od_job_rec *r, int key_ok,
                                         int *miss) {
  od_metrics *m = &j->svc->m;
  od_job_rec done = *r, prev;
  char out[PATH_MAX + 128];
  od_jobs_output_name(&done, done.output_name, sizeof done.output_name);
  od_jobs_output_path(j, done.output_name, out, sizeof out);
  int over_own =
      cur->output_name[0] && strcmp(cur->output_name, done.output_name) == 0;
  if (over_own && (cur->state != OD_JOB_COMPLETED ||
                   memcmp(cur->cache_key, r->cache_key, 32) != 0)) {
    for (int t = 0; t < OD_CACHE_TIERS; t++) /* not answered from it */
      om_counter_inc(m->cache_misses[t]);
    *miss = 1;
    return OD_GEN_QUEUED;
  }
  od_cache_meta meta;
  size_t len = 0;
  od_cache_tier tier = OD_CACHE_MEMORY;
  unsigned missed = 0;
  int hit = key_ok ? od_cache_get(j->svc->cache, r->cache_key, out, j->durable,
                                  &meta, &len, &tier, &missed)
                   : 0;
  for (int t = 0; t < OD_CACHE_TIERS; t++)
    if (missed & (1u << t))
      om_counter_inc(m->cache_misses[t]);
  if (hit < 0) {
    od_jobs_dir_failed(j, errno);
    od_log("job %s: a cache hit could not be linked (%s); running it", r->id,
           strerror(errno));
  }
  *miss = hit != 1;
  if (hit != 1)
    return OD_GEN_QUEUED;
  om_counter_inc(m->cache_hits[tier]);
  done.state = OD_JOB_COMPLETED;
  done.cached = 1;
  done.output_bytes = len;
  done.score = meta.score;
  snprintf(done.grade, sizeof done.grade, "%s", meta.grade);
  done.printable = meta.printable;
  done.progress = 100;
  done.stage_progress = 1;
  snprintf(done.stage, sizeof done.stage, "completed");
  done.t_ended = od_wall();
  od_jobs_fit_budget(j, len); /* the linked model counts as the job's */
  od_store_rc rc =
      od_store_transition(j->store, &done, OD_STATES_IDLE, 0, &prev);
  od_jobs_budget_release(j, len);
  if (rc != OD_STORE_OK) {
    /* Nothing points at the link: the job is gone, or no longer idle
     * (only another process can have moved it: this one holds gen_mu).
     * Over its own model, the record still points at it. */
    if (rc != OD_STORE_CONFLICT && !over_own)
      unlink(out);
    return rc == OD_STORE_NOT_FOUND  ? missing(j, cur->id)
           : rc == OD_STORE_GONE     ? OD_GEN_GONE
           : rc == OD_STORE_CONFLICT ? OD_GEN_CONFLICT
                                     : OD_GEN_UNAVAILABLE;
  }
  drop_old_output(j, &prev, &done);
  od_jobs_update_cache_gauges(j);
  count_gen(j, done.req.format, "cached");
  od_log("job %s completed from the %s cache format=%s bytes=%zu", done.id,
         tier == OD_CACHE_MEMORY ? "memory" : "disk",
         orfeas_pl_format_name(done.req.format), len);
  od_job_view v;
  od_ws_event ev;
  view_of(j, &done, &v);
  json_t *ev_data = od_job_event_json(&v, &ev);
  if (ev_data != NULL)
    od_jobs_publish(j, done.id, ev, ev_data);
  return OD_GEN_CACHED;
}

/* A refused generate: the job as it was, its previous model included,
 * held (when the queue was full) so its client finds it after Retry-After
 * (+ --refused-hold) even if uploads need room meanwhile. */
static void give_back(od_jobs *j, od_job_rec *prev, int hold) {
  if (hold)
    prev->hold_until =
        od_wall() + od_jobs_retry_after(j) + j->svc->cfg.refused_hold_s;
  od_store_transition(j->store, prev, OD_STATE_BIT(OD_JOB_QUEUED), 0, NULL);
}

/* Crash-drill hook: while --pause-file holds the word "enqueue" (and no
 * drain runs), a generate waits here, its job queued in the store and in
 * no dispatch queue: the instant a crash strands it (janitor.c,
 * --stranded-age; service.cluster_stranded kills the node here). */
static void hold_before_enqueue(od_jobs *j) {
  while (!j->svc->draining &&
         od_pause_file_says(j->svc->cfg.pause_file, "enqueue")) {
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Called with the job's gen_mu held (od_jobs_generate). */
static od_gen_result generate_locked(od_jobs *j, const od_generate_req *req,
                                     int *position) {
  od_metrics *m = &j->svc->m;
  *position = 0;
  od_job_rec r, prev;
  od_store_rc rc = od_store_get(j->store, req->job_id, &r);
  if (rc != OD_STORE_OK)
    return rc == OD_STORE_NOT_FOUND ? OD_GEN_NOT_FOUND
           : rc == OD_STORE_GONE    ? OD_GEN_GONE
                                    : OD_GEN_UNAVAILABLE;
  const od_job_rec cur = r; /* as it stands, for complete_from_cache */
  if (OD_STATE_BIT(r.state) & OD_STATES_ACTIVE)
    return OD_GEN_CONFLICT;
  if (j->svc->draining) {
    count_gen(j, req->format, "rejected");
    return OD_GEN_DRAINING;
  }
  r.state = OD_JOB_QUEUED;
  r.req = *req;
  int key_ok = cache_key(r.image_sha256, req, r.cache_key) == 0;
  r.cached = 0;
  r.output_name[0] = '\0';
  r.output_bytes = 0;
  r.score = 0;
  r.grade[0] = '\0';
  r.printable = 0;
  r.error[0] = '\0';
  r.http_status = 0;
  snprintf(r.stage, sizeof r.stage, "queued");
  r.progress = r.stage_progress = 0;
  r.t_queued = od_wall();
  r.t_started = r.t_ended = 0;
  r.tries = 0;
  r.hold_until = 0;

  /* A cache hit goes from idle to completed in one commit (one sync where
   * a queued commit first would cost two). */
  int miss = 1;
  od_gen_result g = complete_from_cache(j, &cur, &r, key_ok, &miss);
  if (!miss)
    return g;

  /* The upload check's pixels, decoded moments ago as a rule (the upload
   * came on this connection just before), become the grid the worker
   * starts from (imgmemo.c). */
  od_imgmemo_prepare(j->svc->imgmemo, r.image_sha256, req->quality);
  om_gauge_set(m->image_memo_bytes, (double)od_imgmemo_bytes(j->svc->imgmemo));

  /* Queued now: of two racing requests (here, or in another process on a
   * shared store) the store's compare-and-set lets one win. */
  rc = od_store_transition(j->store, &r, OD_STATES_IDLE, 0, &prev);
  if (rc == OD_STORE_NOT_FOUND)
    return missing(j, r.id);
  if (rc == OD_STORE_GONE)
    return OD_GEN_GONE;
  if (rc == OD_STORE_CONFLICT)
    return OD_GEN_CONFLICT;
  if (rc != OD_STORE_OK)
    return OD_GEN_UNAVAILABLE;

  hold_before_enqueue(j);
  rc = od_store_enqueue(j->store, r.id, position);
  if (rc == OD_STORE_CONFLICT) {
    /* Dispatched already: only the janitor enqueues a job this request
     * queued (the gen stripe and the transition keep other generates
     * out), after this request held it past --stranded-age between its
     * two writes. The job was accepted and runs (or ran): a 202, and
     * nothing given back, which would take a running job's record. */
    od_log("job %s was queued again by the janitor while its generate-3d "
           "waited (over --stranded-age) to enqueue it",
           req->job_id);
    if (od_store_position(j->store, r.id, position) != OD_STORE_OK ||
        *position < 0)
      *position = 0;
    rc = OD_STORE_OK;
  }
  if (rc != OD_STORE_OK) {
    give_back(j, &prev, rc == OD_STORE_FULL);
    count_gen(j, req->format, "rejected");
    if (rc == OD_STORE_FULL)
      od_log("job %s rejected: the queue is full (%d)", req->job_id,
             j->svc->cfg.queue_size);
    else
      od_log("job %s rejected: %s", req->job_id, od_store_rc_message(rc));
    return j->svc->draining || rc == OD_STORE_CLOSED ? OD_GEN_DRAINING
           : rc == OD_STORE_FULL                     ? OD_GEN_QUEUE_FULL
                                                     : OD_GEN_UNAVAILABLE;
  }
  drop_old_output(j, &prev, &r);
  if (j->fanout == NULL) /* cluster mode: the janitor sets it */
    om_gauge_inc(m->active_jobs);
  od_jobs_gauge_depth(j);
  od_log("job %s queued position=%d format=%s quality=%d", req->job_id,
         *position, orfeas_pl_format_name(req->format), req->quality);
  return OD_GEN_QUEUED;
}

od_gen_result od_jobs_generate(od_jobs *j, const od_generate_req *req,
                               int *position) {
  /* FNV-1a of the id picks the stripe. */
  uint32_t h = 2166136261u;
  for (const char *p = req->job_id; *p; p++)
    h = (h ^ (uint8_t)*p) * 16777619u;
  pthread_mutex_t *mu = &j->gen_mu[h % OD_GEN_STRIPES];
  pthread_mutex_lock(mu);
  od_gen_result g = generate_locked(j, req, position);
  pthread_mutex_unlock(mu);
  return g;
}

/* ---- life cycle ---------------------------------------------------------- */

static int make_dir(const char *path, char *err, size_t err_len) {
  if (mkdir(path, 0700) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* The store's call metrics (store.c's observer). */
static void on_store_op(void *u, od_store_op op, od_store_rc rc,
                        double seconds) {
  od_jobs *j = u;
  om_histogram_observe(j->op_duration[op], seconds);
  if (rc == OD_STORE_DOWN)
    om_counter_inc(j->op_errors[op]);
  /* A run's end refused: another node took the job over (issue #15). */
  if (rc == OD_STORE_FENCED)
    om_counter_inc(j->svc->m.jobs_fenced);
}

od_jobs *od_jobs_new(od_service *svc, char *err, size_t err_len) {
  od_jobs *j = calloc(1, sizeof *j);
  if (j == NULL) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  j->svc = svc;
  pthread_mutex_init(&j->admit_mu, NULL);
  for (int k = 0; k < OD_GEN_STRIPES; k++)
    pthread_mutex_init(&j->gen_mu[k], NULL);
  j->store_cap = (uint64_t)svc->cfg.max_store_mb << 20;
  j->store_up = j->dir_writable = 1;
  snprintf(j->dir_uploads, sizeof j->dir_uploads, "%.*s/uploads", PATH_MAX - 16,
           svc->cfg.data_dir);
  snprintf(j->dir_outputs, sizeof j->dir_outputs, "%.*s/outputs", PATH_MAX - 16,
           svc->cfg.data_dir);
  od_metrics *m = &svc->m;
  for (int op = 0; op < OD_STORE_OP_COUNT; op++) {
    const char *n = od_store_op_name((od_store_op)op);
    j->op_duration[op] =
        om_family_histogram(m->store_op_duration, OM_LABELS(n));
    j->op_errors[op] = om_family_counter(m->store_errors, OM_LABELS(n));
  }
  j->claim_errors = om_family_counter(m->store_errors, OM_LABELS("claim"));
  j->orphans_removed[0] =
      om_family_counter(m->orphans_removed, OM_LABELS("uploads"));
  j->orphans_removed[1] =
      om_family_counter(m->orphans_removed, OM_LABELS("outputs"));
  /* main.c made the data dir itself. */
  if (make_dir(j->dir_uploads, err, err_len) != 0 ||
      make_dir(j->dir_outputs, err, err_len) != 0) {
    od_jobs_free(j);
    return NULL;
  }
  od_store_opts so = {.queue_size = svc->cfg.queue_size,
                      .max_jobs = svc->cfg.max_jobs,
                      .max_attempts = svc->cfg.max_attempts,
                      .data_dir = svc->cfg.data_dir,
                      .node_id = svc->cfg.node_id,
                      .lease_s = svc->cfg.store_lease_s,
                      .password_file = svc->cfg.store_password_file};
  if ((j->store = od_store_open(svc->cfg.store, &so, err, err_len)) == NULL ||
      (j->workers = od_workers_new(j, svc->cfg.workers, err, err_len)) ==
          NULL ||
      (j->committer = od_committer_new(j, svc->cfg.workers, err, err_len)) ==
          NULL) {
    od_jobs_free(j);
    return NULL;
  }
  od_store_set_observer(j->store, on_store_op, j);
  j->durable = od_store_durable(j->store);
  j->eta = od_eta_new();
  j->janitor = od_janitor_new(j);
  if (od_store_has_bus(j->store))
    j->fanout = od_fanout_new(j);
  if (j->eta == NULL || j->janitor == NULL ||
      (od_store_has_bus(j->store) && j->fanout == NULL)) {
    snprintf(err, err_len, "out of memory");
    od_jobs_free(j);
    return NULL;
  }
  /* What a previous run left behind (recover.c). */
  if (od_jobs_recover(j, err, err_len) != 0) {
    od_jobs_free(j);
    return NULL;
  }
  od_jobs_housekeep(j);
  return j;
}

int od_jobs_start(od_jobs *j, char *err, size_t err_len) {
  if (j->fanout != NULL && od_fanout_start(j->fanout, err, err_len) != 0)
    return -1;
  return od_committer_start(j->committer, err, err_len) != 0 ||
                 od_janitor_start(j->janitor, err, err_len) != 0
             ? -1
             : od_workers_start(j->workers, err, err_len);
}

static void fail_queued(const char *id, void *user) {
  od_jobs *j = user;
  od_job_rec r;
  if (od_store_get(j->store, id, &r) != OD_STORE_OK)
    return;
  r.state = OD_JOB_FAILED;
  snprintf(
      r.error, sizeof r.error, "%s",
      "service shutting down: the job was still queued and was not started; "
      "submit it again");
  r.http_status = 503;
  r.output_name[0] = '\0';
  r.output_bytes = 0;
  od_jobs_end(j, &r, OD_STATE_BIT(OD_JOB_QUEUED), 0, OD_FAIL_SHUTDOWN);
}

static void count_kept(const char *id, void *user) {
  (void)id;
  (*(int *)user)++;
}

int od_jobs_drain(od_jobs *j, double finish_by, double cancelled_by) {
  /* The memory store forgets queued jobs at exit, so they fail now with a
   * reason; a durable store keeps them queued for the next start. */
  if (od_store_durable(j->store)) {
    int kept = 0;
    od_store_close_queue(j->store, count_kept, &kept);
    if (kept > 0)
      od_log("%d queued job(s) stay queued in the store and run after the "
             "next start",
             kept);
  } else {
    od_store_close_queue(j->store, fail_queued, j);
  }
  om_gauge_set(j->svc->m.queue_depth, 0);
  od_fanout_quiet(j->fanout); /* the hub stops after the drain */
  int left = od_workers_wait(j->workers, finish_by);
  if (left > 0) {
    od_log("drain: %d job%s still running at the deadline: cancelling", left,
           left == 1 ? "" : "s");
    od_workers_cancel(j->workers);
    left = od_workers_wait(j->workers, cancelled_by);
  }
  if (left > 0) {
    /* They may still hand an end to the committer: it stays too. */
    od_logl(OD_LOG_WARN,
            "drain: %d worker%s did not stop in time (a stage still running); "
            "exiting without them",
            left, left == 1 ? "" : "s");
    return left;
  }
  od_committer_stop_by(j->committer, cancelled_by);
  od_janitor_stop(j->janitor);
  return 0;
}

void od_jobs_free(od_jobs *j) {
  if (j == NULL)
    return;
  /* Workers still running (start-up failed after od_jobs_start): stop them
   * before what they use goes. */
  if (j->store != NULL && j->workers != NULL) {
    od_store_close_queue(j->store, NULL, NULL);
    od_workers_join(j->workers);
  }
  od_committer_free(j->committer);
  od_janitor_free(j->janitor);
  od_jobs_sweep_orphans_stop(j); /* after its janitor */
  od_workers_free(j->workers);
  od_fanout_quiet(j->fanout);
  od_store_close(j->store); /* its listener calls into the fan-out */
  od_fanout_free(j->fanout);
  od_eta_free(j->eta);
  pthread_mutex_destroy(&j->admit_mu);
  for (int k = 0; k < OD_GEN_STRIPES; k++)
    pthread_mutex_destroy(&j->gen_mu[k]);
  free(j);
}

void od_jobs_health(od_jobs *j, od_health *h) {
  h->store_up = od_store_ping(j->store) == OD_STORE_OK;
  h->data_dir_writable = j->dir_writable;
  h->data_dir_free_bytes = j->dir_free;
  h->data_dir_low = space_low(j, 0);
}

/* ---- figures ------------------------------------------------------------- */

int od_jobs_retry_after(od_jobs *j) {
  double t = od_eta_drain_one(j->eta, od_jobs_queue_depth(j),
                              od_workers_running(j->workers));
  return t < 1 ? 1 : t > 3600 ? 3600 : (int)ceil(t);
}

int od_jobs_workers_running(od_jobs *j) {
  return od_workers_running(j->workers);
}
int od_jobs_busy(od_jobs *j) { return od_workers_busy(j->workers); }

void od_jobs_gauge_depth(od_jobs *j) {
  od_store_stats st;
  if (od_store_get_stats(j->store, &st) == OD_STORE_OK)
    om_gauge_set(j->svc->m.queue_depth, (double)st.queue_depth);
  else
    om_gauge_unset(j->svc->m.queue_depth);
}

size_t od_jobs_queue_depth(od_jobs *j) {
  od_store_stats st;
  return od_store_get_stats(j->store, &st) == OD_STORE_OK
             ? (size_t)st.queue_depth
             : 0;
}

int od_jobs_counts(od_jobs *j, int counts[OD_JOB_STATE_COUNT], size_t *depth) {
  od_store_stats st;
  if (od_store_get_stats(j->store, &st) != OD_STORE_OK)
    return -1;
  for (int s = 0; s < OD_JOB_STATE_COUNT; s++)
    counts[s] = (int)st.by_state[s];
  *depth = (size_t)st.queue_depth;
  return 0;
}

/* Opens a job file its record names, never through a link: the fd (and
 * *size); -1 when it is not there (removed or replaced meanwhile: the caller
 * asks the store why), -2 when the process is out of fds, -3 when it is
 * there but cannot be read (a permission or disk error, a link or other
 * non-file in the data dir): a server fault, logged here with the path and
 * the reason, which the client is not told. */
static int open_job_file(const char *id, const char *path, uint64_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && od_errno_is_fd_exhaustion(errno))
    return -2;
  if (fd < 0 && errno == ENOENT)
    return -1;
  struct stat st;
  const char *why = NULL;
  if (fd < 0 || fstat(fd, &st) != 0)
    why = errno == ELOOP ? "a symbolic link (never followed)" : strerror(errno);
  else if (!S_ISREG(st.st_mode))
    why = "not a regular file";
  if (why != NULL) {
    od_log("job %s: %s cannot be read: %s", id, path, why);
    if (fd >= 0)
      close(fd);
    return -3;
  }
  *size = (uint64_t)st.st_size;
  return fd;
}

int od_jobs_open_output(od_jobs *j, const char *id, const char *name,
                        uint64_t *size, orfeas_pl_format *fmt) {
  od_job_rec r;
  /* The name must be the job's own output name: a client string never
   * becomes part of a path. */
  if (od_store_get(j->store, id, &r) != OD_STORE_OK ||
      r.state != OD_JOB_COMPLETED || !r.output_name[0] ||
      strcmp(r.output_name, name) != 0)
    return -1;
  char out[PATH_MAX + 128];
  od_jobs_output_path(j, r.output_name, out, sizeof out);
  *fmt = r.req.format;
  return open_job_file(r.id, out, size);
}

int od_jobs_open_upload(od_jobs *j, const char *id, uint64_t *size,
                        char ext[8]) {
  od_job_rec r;
  if (od_store_get(j->store, id, &r) != OD_STORE_OK)
    return -1;
  char up[PATH_MAX + 64];
  od_jobs_upload_path(j, &r, up, sizeof up);
  /* The job's own file, by the id it was stored under: no client string
   * reaches the path. */
  int fd = open_job_file(r.id, up, size);
  if (fd < 0)
    return fd;
  snprintf(ext, 8, "%s", r.ext);
  return fd;
}
