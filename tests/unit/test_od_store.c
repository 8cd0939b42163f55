/* Job-store conformance (src/store.h): one list of cases that every backend
 * must pass, run once per backend with that backend's set-up (libuv's habit:
 * the same tests on epoll, kqueue and IOCP). Each case gets a fresh, empty
 * store from its set-up and closes it in the tear-down.
 *
 * Backends: memory, sqlite (a fresh file in a temp folder per case), redis
 * (issue #15: run by tests/support/with-redis.sh, which starts a
 * redis-server of its own and names it in ORFEAS_TEST_REDIS; the binary
 * then runs the redis group only, on a Redis emptied before each case). A
 * new one joins by adding an open_<backend>() set-up and one line in main().
 * STORE_CASES hold for every backend; LOCAL_QUEUE_CASES where the dispatch
 * queue is the process's own (not redis: there the waiting jobs stay for
 * the other nodes); REOPEN_CASES for durable backends (a reopen keeps
 * acknowledged jobs), through the backend's reopen(); RECOVER_CASES where
 * the start-up settles what a dead process held (sqlite; redis leaves that
 * to leases, tested by REDIS_ONLY_CASES with two stores on one Redis as two
 * nodes). The sqlite group adds the cases of a damaged or foreign file at
 * open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

#define QSIZE 4    /* queue_size of every store under test */
#define MAXJOBS 64 /* max_jobs */

/* ---- helpers ------------------------------------------------------------- */

/* evict(NULL): the oldest idle job, no tombstone. */
static const od_evict_sel ANY_IDLE = {0};

/* evict(id), no tombstone. */
static od_evict_sel named(const char *id) { return (od_evict_sel){.id = id}; }

static void job_id(int n, char id[37]) {
  snprintf(id, 37, "00000000-0000-4000-8000-%012d", n);
}

/* A freshly uploaded job n, as jobs.c would insert it. */
static od_job_rec uploaded(int n) {
  od_job_rec r;
  memset(&r, 0, sizeof r);
  job_id(n, r.id);
  snprintf(r.ext, sizeof r.ext, "png");
  for (int i = 0; i < 32; i++)
    r.image_sha256[i] = (uint8_t)(n + i);
  r.upload_bytes = 100 + (uint64_t)n;
  r.t_created = od_wall();
  r.state = OD_JOB_UPLOADED;
  return r;
}

static od_job_rec insert_job(od_store *s, int n) {
  od_job_rec r = uploaded(n);
  assert_int_equal(od_store_insert(s, &r), OD_STORE_OK);
  return r;
}

/* Moves job n from an idle state to QUEUED with quality q (a generate's
 * first step); returns the rc. */
static od_store_rc to_queued(od_store *s, int n, int q) {
  char id[37];
  job_id(n, id);
  od_job_rec r;
  assert_int_equal(od_store_get(s, id, &r), OD_STORE_OK);
  r.state = OD_JOB_QUEUED;
  r.req.quality = q;
  r.tries = 0; /* a new run */
  r.t_queued = od_wall();
  snprintf(r.stage, sizeof r.stage, "queued");
  return od_store_transition(s, &r, OD_STATES_IDLE, 0, NULL);
}

/* Inserts job n, queues it and enqueues it; returns its position. */
static int enqueue_new(od_store *s, int n) {
  insert_job(s, n);
  assert_int_equal(to_queued(s, n, 5), OD_STORE_OK);
  char id[37];
  job_id(n, id);
  int pos = -9;
  assert_int_equal(od_store_enqueue(s, id, &pos), OD_STORE_OK);
  return pos;
}

/* Ends a claimed job as completed, fenced by the claim's attempt. */
static od_store_rc complete(od_store *s, const od_job_rec *claimed, int fence) {
  od_job_rec r = *claimed;
  r.state = OD_JOB_COMPLETED;
  r.output_bytes = 1000;
  snprintf(r.output_name, sizeof r.output_name, "model_%s.stl", r.id);
  return od_store_transition(s, &r, OD_STATE_BIT(OD_JOB_PROCESSING), fence,
                             NULL);
}

/* Hands a claim back as a drain does (PROCESSING -> QUEUED, fenced by
 * the claim's attempt, its try given back); returns the rc. */
static od_store_rc release(od_store *s, const od_job_rec *claimed, int fence) {
  od_job_rec r = *claimed;
  r.state = OD_JOB_QUEUED;
  r.tries = claimed->tries - 1;
  snprintf(r.stage, sizeof r.stage, "queued");
  r.t_started = 0;
  return od_store_transition(s, &r, OD_STATE_BIT(OD_JOB_PROCESSING), fence,
                             NULL);
}

/* ---- insert and get ------------------------------------------------------ */

static void insert_then_get_returns_the_record(void **state) {
  od_store *s = *state;
  od_job_rec in = insert_job(s, 1), out;
  assert_int_equal(od_store_get(s, in.id, &out), OD_STORE_OK);
  assert_string_equal(out.id, in.id);
  assert_string_equal(out.ext, "png");
  assert_memory_equal(out.image_sha256, in.image_sha256, 32);
  assert_int_equal(out.upload_bytes, 101);
  assert_int_equal(out.state, OD_JOB_UPLOADED);
  assert_int_equal(out.attempt, 0);
  assert_true(out.seq >= 1);
  assert_int_equal(out.seq, in.seq); /* insert reports the seq it gave */
}

static void insert_gives_each_job_a_later_seq(void **state) {
  od_store *s = *state;
  od_job_rec a = insert_job(s, 1), b = insert_job(s, 2);
  assert_true(b.seq > a.seq);
}

static void get_of_an_unknown_job_is_not_found(void **state) {
  od_store *s = *state;
  od_job_rec out;
  assert_int_equal(
      od_store_get(s, "00000000-0000-4000-8000-000000000999", &out),
      OD_STORE_NOT_FOUND);
}

static void insert_of_an_existing_id_conflicts(void **state) {
  od_store *s = *state;
  insert_job(s, 1);
  od_job_rec again = uploaded(1);
  assert_int_equal(od_store_insert(s, &again), OD_STORE_CONFLICT);
}

static void insert_past_max_jobs_is_full_until_one_is_evicted(void **state) {
  od_store *s = *state;
  for (int n = 1; n <= MAXJOBS; n++)
    insert_job(s, n);
  od_job_rec extra = uploaded(MAXJOBS + 1);
  assert_int_equal(od_store_insert(s, &extra), OD_STORE_FULL);
  assert_int_equal(od_store_evict(s, &ANY_IDLE, NULL), OD_STORE_OK);
  assert_int_equal(od_store_insert(s, &extra), OD_STORE_OK);
}

/* ---- transition (compare-and-set) ---------------------------------------- */

static void transition_writes_from_an_allowed_state(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), out;
  assert_int_equal(to_queued(s, 1, 7), OD_STORE_OK);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_QUEUED);
  assert_int_equal(out.req.quality, 7);
  assert_string_equal(out.stage, "queued");
}

/* The API's 409: a second generate while the first holds the job. */
static void transition_refuses_a_second_claim(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), out;
  assert_int_equal(to_queued(s, 1, 7), OD_STORE_OK);
  assert_int_equal(to_queued(s, 1, 3), OD_STORE_CONFLICT);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_OK);
  assert_int_equal(out.req.quality, 7); /* the loser wrote nothing */
}

static void transition_returns_the_record_it_replaced(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), prev;
  r.state = OD_JOB_FAILED;
  snprintf(r.error, sizeof r.error, "first");
  assert_int_equal(od_store_transition(s, &r, OD_STATES_IDLE, 0, &prev),
                   OD_STORE_OK);
  assert_int_equal(prev.state, OD_JOB_UPLOADED);
  snprintf(r.error, sizeof r.error, "second");
  assert_int_equal(od_store_transition(s, &r, OD_STATES_IDLE, 0, &prev),
                   OD_STORE_OK);
  assert_int_equal(prev.state, OD_JOB_FAILED);
  assert_string_equal(prev.error, "first");
  /* A refused write still says what it found. */
  r.state = OD_JOB_COMPLETED;
  assert_int_equal(
      od_store_transition(s, &r, OD_STATE_BIT(OD_JOB_QUEUED), 0, &prev),
      OD_STORE_CONFLICT);
  assert_int_equal(prev.state, OD_JOB_FAILED);
}

static void transition_keeps_the_store_owned_fields(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), out;
  od_job_rec next = r;
  next.state = OD_JOB_FAILED;
  next.seq = 999;
  next.upload_bytes = 1;
  next.attempt = 42;
  next.t_created = 1;
  snprintf(next.ext, sizeof next.ext, "jpg");
  snprintf(next.owner, sizeof next.owner, "intruder");
  memset(next.image_sha256, 0xEE, 32);
  assert_int_equal(od_store_transition(s, &next, OD_STATES_IDLE, 0, NULL),
                   OD_STORE_OK);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_FAILED);
  assert_int_equal(out.seq, r.seq);
  assert_int_equal(out.upload_bytes, r.upload_bytes);
  assert_int_equal(out.attempt, 0);
  assert_true(out.t_created == r.t_created);
  assert_string_equal(out.ext, "png");
  assert_string_equal(out.owner, "");
  assert_memory_equal(out.image_sha256, r.image_sha256, 32);
}

static void transition_of_an_unknown_job_is_not_found(void **state) {
  od_store *s = *state;
  od_job_rec r = uploaded(5);
  r.state = OD_JOB_QUEUED;
  assert_int_equal(od_store_transition(s, &r, OD_STATES_ANY, 0, NULL),
                   OD_STORE_NOT_FOUND);
}

/* ---- enqueue and claim --------------------------------------------------- */

static void enqueue_needs_a_queued_job_not_yet_enqueued(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1);
  int pos;
  assert_int_equal(od_store_enqueue(s, r.id, &pos),
                   OD_STORE_CONFLICT); /* uploaded */
  assert_int_equal(to_queued(s, 1, 5), OD_STORE_OK);
  assert_int_equal(od_store_enqueue(s, r.id, &pos), OD_STORE_OK);
  assert_int_equal(od_store_enqueue(s, r.id, &pos),
                   OD_STORE_CONFLICT); /* twice */
  assert_int_equal(
      od_store_enqueue(s, "00000000-0000-4000-8000-000000000999", &pos),
      OD_STORE_NOT_FOUND);
}

static void
enqueue_past_queue_size_is_full_and_the_job_stays_queued(void **state) {
  od_store *s = *state;
  for (int n = 1; n <= QSIZE; n++)
    assert_int_equal(enqueue_new(s, n), n - 1);
  od_job_rec r = insert_job(s, 99), out;
  assert_int_equal(to_queued(s, 99, 5), OD_STORE_OK);
  int pos = -9;
  assert_int_equal(od_store_enqueue(s, r.id, &pos), OD_STORE_FULL);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_QUEUED); /* the caller moves it back */
  assert_int_equal(od_store_position(s, r.id, &pos), OD_STORE_OK);
  assert_int_equal(pos, -1);
}

static void claim_takes_jobs_in_fifo_order(void **state) {
  od_store *s = *state;
  for (int n = 1; n <= 3; n++)
    enqueue_new(s, n);
  for (int n = 1; n <= 3; n++) {
    od_job_rec c;
    char id[37];
    job_id(n, id);
    assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
    assert_string_equal(c.id, id);
  }
}

static void claim_marks_processing_and_grows_the_attempt(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  od_job_rec c, out;
  assert_int_equal(od_store_claim(s, "node-a:w3", 0, &c), OD_STORE_OK);
  assert_int_equal(c.state, OD_JOB_PROCESSING);
  assert_int_equal(c.attempt, 1);
  assert_int_equal(c.tries, 1);
  assert_string_equal(c.owner, "node-a:w3");
  assert_true(c.t_started >= c.t_queued);
  assert_int_equal(od_store_get(s, c.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_PROCESSING);
  assert_int_equal(out.attempt, 1);
  /* Run again: the next claim is attempt 2, the run's first try. */
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK);
  int pos;
  assert_int_equal(to_queued(s, 1, 6), OD_STORE_OK);
  assert_int_equal(od_store_enqueue(s, c.id, &pos), OD_STORE_OK);
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(c.attempt, 2);
  assert_int_equal(c.tries, 1);
}

static void claim_with_nothing_enqueued_is_empty(void **state) {
  od_store *s = *state;
  od_job_rec c;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_EMPTY);
  assert_int_equal(od_store_claim(s, "w0", 30, &c), OD_STORE_EMPTY);
  /* Queued but held by its request (not enqueued): not claimable. */
  insert_job(s, 1);
  assert_int_equal(to_queued(s, 1, 5), OD_STORE_OK);
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_EMPTY);
}

/* A late worker (its attempt superseded) cannot write its outcome. */
static void finish_with_a_stale_attempt_is_fenced(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  od_job_rec first, second, out;
  int pos;
  assert_int_equal(od_store_claim(s, "w0", 0, &first), OD_STORE_OK);
  assert_int_equal(complete(s, &first, first.attempt), OD_STORE_OK);
  assert_int_equal(to_queued(s, 1, 6), OD_STORE_OK);
  assert_int_equal(od_store_enqueue(s, first.id, &pos), OD_STORE_OK);
  assert_int_equal(od_store_claim(s, "w1", 0, &second), OD_STORE_OK);
  assert_int_equal(complete(s, &first, first.attempt), OD_STORE_FENCED);
  assert_int_equal(od_store_get(s, first.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_PROCESSING);
  assert_int_equal(out.attempt, 2);
  assert_int_equal(complete(s, &second, second.attempt), OD_STORE_OK);
  /* Once the newer attempt has ended, the late one is still refused as
   * superseded, not as a busy job: its worker logs why its result went. */
  assert_int_equal(complete(s, &first, first.attempt), OD_STORE_FENCED);
}

/* A released claim (a drain's stop) is queued again ahead of the jobs
 * waiting: the next claim, of any worker or node, takes it, as a new
 * attempt with the try given back; a stale attempt cannot release it. */
static void a_released_claim_is_claimed_again_first(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  enqueue_new(s, 2);
  od_job_rec c, again, out, next;
  assert_int_equal(od_store_claim(s, "node-a:w0", 0, &c), OD_STORE_OK);
  assert_int_equal(c.tries, 1);
  assert_int_equal(release(s, &c, c.attempt + 1), OD_STORE_FENCED);
  assert_int_equal(release(s, &c, c.attempt), OD_STORE_OK);
  assert_int_equal(od_store_get(s, c.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_QUEUED);
  assert_int_equal(out.tries, 0);
  /* Its old attempt can no longer end it. */
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_CONFLICT);
  assert_int_equal(od_store_claim(s, "node-b:w1", 200, &again), OD_STORE_OK);
  assert_string_equal(again.id, c.id);
  assert_int_equal(again.attempt, c.attempt + 1);
  assert_int_equal(again.tries, 1);
  assert_string_equal(again.owner, "node-b:w1");
  assert_int_equal(od_store_claim(s, "node-b:w1", 200, &next), OD_STORE_OK);
  assert_string_not_equal(next.id, c.id);
  assert_int_equal(complete(s, &again, again.attempt), OD_STORE_OK);
  assert_int_equal(complete(s, &next, next.attempt), OD_STORE_OK);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.by_state[OD_JOB_COMPLETED], 2);
  assert_int_equal(st.by_state[OD_JOB_QUEUED], 0);
  assert_int_equal(st.by_state[OD_JOB_PROCESSING], 0);
  assert_int_equal(st.reclaimed, 0); /* redis: not a lease takeover */
  assert_int_equal(od_store_claim(s, "w0", 0, &next), OD_STORE_EMPTY);
}

/* A job left QUEUED outside the queue (its request died between its
 * transition and its enqueue) is dispatched again once it is older than
 * the caller's bound, once; jobs waiting in the queue and recent ones are
 * left alone. */
static void a_stranded_queued_job_is_requeued(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1); /* waiting in the queue */
  insert_job(s, 2);
  assert_int_equal(to_queued(s, 2, 5), OD_STORE_OK); /* never enqueued */
  int n = -1;
  assert_int_equal(od_store_requeue_stranded(s, od_wall() - 60, &n),
                   OD_STORE_OK);
  assert_int_equal(n, 0); /* queued just now: its request may hold it */
  assert_int_equal(od_store_requeue_stranded(s, od_wall() + 1, &n),
                   OD_STORE_OK);
  assert_int_equal(n, 1);
  assert_int_equal(od_store_requeue_stranded(s, od_wall() + 1, &n),
                   OD_STORE_OK);
  assert_int_equal(n, 0); /* once */
  char id1[37], id2[37];
  job_id(1, id1);
  job_id(2, id2);
  od_job_rec a, b, none;
  assert_int_equal(od_store_claim(s, "w0", 200, &a), OD_STORE_OK);
  assert_string_equal(a.id, id1);
  assert_int_equal(od_store_claim(s, "w0", 200, &b), OD_STORE_OK);
  assert_string_equal(b.id, id2);
  assert_int_equal(b.tries, 1);
  assert_int_equal(od_store_claim(s, "w0", 0, &none), OD_STORE_EMPTY);
  /* Running or ended jobs are not queued again. */
  assert_int_equal(complete(s, &a, a.attempt), OD_STORE_OK);
  assert_int_equal(od_store_requeue_stranded(s, od_wall() + 1, &n),
                   OD_STORE_OK);
  assert_int_equal(n, 0);
  /* A refused generate's give-back (QUEUED -> idle) leaves nothing. */
  insert_job(s, 3);
  assert_int_equal(to_queued(s, 3, 5), OD_STORE_OK);
  char id3[37];
  job_id(3, id3);
  od_job_rec r;
  assert_int_equal(od_store_get(s, id3, &r), OD_STORE_OK);
  r.state = OD_JOB_UPLOADED;
  assert_int_equal(
      od_store_transition(s, &r, OD_STATE_BIT(OD_JOB_QUEUED), 0, NULL),
      OD_STORE_OK);
  assert_int_equal(od_store_requeue_stranded(s, od_wall() + 1, &n),
                   OD_STORE_OK);
  assert_int_equal(n, 0);
}

static void position_follows_the_queue(void **state) {
  od_store *s = *state;
  for (int n = 1; n <= 3; n++)
    enqueue_new(s, n);
  char id[37];
  int pos = -9;
  job_id(3, id);
  assert_int_equal(od_store_position(s, id, &pos), OD_STORE_OK);
  assert_int_equal(pos, 2);
  od_job_rec c;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(od_store_position(s, id, &pos), OD_STORE_OK);
  assert_int_equal(pos, 1);
  assert_int_equal(od_store_position(s, c.id, &pos), OD_STORE_OK);
  assert_int_equal(pos, -1); /* processing */
  assert_int_equal(
      od_store_position(s, "00000000-0000-4000-8000-000000000999", &pos),
      OD_STORE_NOT_FOUND);
}

/* ---- stats and evict ----------------------------------------------------- */

static void stats_count_jobs_by_state_queue_and_bytes(void **state) {
  od_store *s = *state;
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.jobs, 0);
  assert_int_equal(st.queue_depth, 0);
  insert_job(s, 1);  /* uploaded, 101 bytes */
  enqueue_new(s, 2); /* 102 */
  enqueue_new(s, 3); /* 103 */
  od_job_rec c;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK); /* job 2 */
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK); /* +1000 output */
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.jobs, 3);
  assert_int_equal(st.by_state[OD_JOB_UPLOADED], 1);
  assert_int_equal(st.by_state[OD_JOB_QUEUED], 1);
  assert_int_equal(st.by_state[OD_JOB_PROCESSING], 0);
  assert_int_equal(st.by_state[OD_JOB_COMPLETED], 1);
  assert_int_equal(st.by_state[OD_JOB_FAILED], 0);
  assert_int_equal(st.queue_depth, 1);
  assert_true(st.oldest_queued_s >= 0 && st.oldest_queued_s < 60);
  assert_int_equal(st.upload_bytes, 101 + 102 + 103);
  assert_int_equal(st.output_bytes, 1000);
}

static void evict_refuses_an_active_job(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  char id[37];
  job_id(1, id);
  od_evict_sel it = named(id);
  assert_int_equal(od_store_evict(s, &it, NULL),
                   OD_STORE_CONFLICT); /* queued */
  od_job_rec c;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(od_store_evict(s, &it, NULL),
                   OD_STORE_CONFLICT); /* processing */
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK);
  assert_int_equal(od_store_evict(s, &it, NULL), OD_STORE_OK);
  assert_int_equal(od_store_evict(s, &it, NULL), OD_STORE_NOT_FOUND);
}

static void evict_oldest_skips_active_jobs(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1); /* oldest, but queued */
  insert_job(s, 2);
  insert_job(s, 3);
  od_job_rec gone;
  char id[37];
  assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_OK);
  job_id(2, id);
  assert_string_equal(gone.id, id);
  assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_OK);
  job_id(3, id);
  assert_string_equal(gone.id, id);
  assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_EMPTY);
}

static void evict_forgets_the_job_and_its_bytes(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), gone, out;
  od_evict_sel it = named(r.id);
  assert_int_equal(od_store_evict(s, &it, &gone), OD_STORE_OK);
  assert_string_equal(gone.id, r.id);
  assert_int_equal(gone.upload_bytes, r.upload_bytes);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_NOT_FOUND);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.jobs, 0);
  assert_int_equal(st.upload_bytes, 0);
  /* The id may be used again. */
  od_job_rec again = uploaded(1);
  assert_int_equal(od_store_insert(s, &again), OD_STORE_OK);
}

/* ---- shutdown and start-up ----------------------------------------------- */

static char handed[8][37];
static int nhanded;

static void collect(const char *id, void *u) {
  (void)u;
  snprintf(handed[nhanded++], 37, "%s", id);
}

static void close_queue_hands_back_waiting_jobs_in_order(void **state) {
  od_store *s = *state;
  for (int n = 1; n <= 3; n++)
    enqueue_new(s, n);
  od_job_rec c, out;
  assert_int_equal(od_store_claim(s, "w0", 0, &c),
                   OD_STORE_OK); /* job 1 runs on */
  nhanded = 0;
  od_store_close_queue(s, collect, NULL);
  assert_int_equal(nhanded, 2);
  char id[37];
  job_id(2, id);
  assert_string_equal(handed[0], id);
  assert_int_equal(od_store_get(s, id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_QUEUED); /* the caller decides */
  job_id(3, id);
  assert_string_equal(handed[1], id);
  assert_int_equal(od_store_claim(s, "w0", -1, &out), OD_STORE_CLOSED);
  int pos;
  insert_job(s, 4);
  assert_int_equal(to_queued(s, 4, 5), OD_STORE_OK);
  job_id(4, id);
  assert_int_equal(od_store_enqueue(s, id, &pos), OD_STORE_CLOSED);
  assert_int_equal(complete(s, &c, c.attempt),
                   OD_STORE_OK);          /* running job ends */
  od_store_close_queue(s, collect, NULL); /* idempotent */
  assert_int_equal(nhanded, 2);
}

static int recovered;

static void count_recovered(const od_job_rec *r, od_job_state was, void *u) {
  (void)r;
  (void)was;
  (void)u;
  recovered++;
}

static void recover_of_a_new_store_finds_nothing(void **state) {
  od_store *s = *state;
  recovered = 0;
  assert_int_equal(od_store_recover(s, count_recovered, NULL), OD_STORE_OK);
  assert_int_equal(recovered, 0);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.jobs, 0);
}

/* ---- retention: tombstones, holds, age ---------------------------------- */

static void evict_with_a_reason_leaves_a_tombstone(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), out;
  od_evict_sel sel = {.id = r.id, .reason = "removed for space"};
  assert_int_equal(od_store_evict(s, &sel, NULL), OD_STORE_OK);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_GONE);
  assert_string_equal(out.id, r.id);
  assert_string_equal(out.error, "removed for space");
  assert_true(out.t_ended > 0);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.jobs, 0);
  assert_int_equal(st.tombstones, 1);
  /* The id may be used again: the tombstone goes. */
  od_job_rec again = uploaded(1);
  assert_int_equal(od_store_insert(s, &again), OD_STORE_OK);
  assert_int_equal(od_store_get(s, r.id, &out), OD_STORE_OK);
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.tombstones, 0);
}

static void tombstones_are_bounded_by_max_jobs(void **state) {
  od_store *s = *state;
  od_evict_sel sel = {.reason = "expired"};
  for (int n = 1; n <= MAXJOBS + 5; n++) {
    insert_job(s, n);
    assert_int_equal(od_store_evict(s, &sel, NULL), OD_STORE_OK);
  }
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.tombstones, MAXJOBS);
  char id[37];
  od_job_rec out;
  job_id(5, id);
  assert_int_equal(od_store_get(s, id, &out), OD_STORE_NOT_FOUND); /* gone */
  job_id(6, id);
  assert_int_equal(od_store_get(s, id, &out), OD_STORE_GONE);
  job_id(MAXJOBS + 5, id);
  assert_int_equal(od_store_get(s, id, &out), OD_STORE_GONE);
}

/* An upload whose generate got 429 keeps its slot while it is held. */
static void evict_oldest_passes_over_held_jobs(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), gone;
  insert_job(s, 2);
  r.hold_until = od_wall() + 60;
  assert_int_equal(od_store_transition(s, &r, OD_STATES_IDLE, 0, NULL),
                   OD_STORE_OK);
  assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_OK);
  char id[37];
  job_id(2, id);
  assert_string_equal(gone.id, id);
  assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_EMPTY);
  /* Named, it goes all the same (the caller decides). */
  od_evict_sel it = named(r.id);
  assert_int_equal(od_store_evict(s, &it, NULL), OD_STORE_OK);
}

/* "Oldest" is the idle job that changed longest ago, not the first one
 * uploaded: a job that just finished goes last. */
static void evict_takes_the_idle_job_changed_longest_ago(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  insert_job(s, 2);
  insert_job(s, 3);
  od_job_rec c, gone;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK); /* job 1 */
  od_job_rec r3;
  char id[37];
  job_id(3, id);
  assert_int_equal(od_store_get(s, id, &r3), OD_STORE_OK);
  r3.state = OD_JOB_FAILED; /* job 3 changes after job 1 */
  assert_int_equal(od_store_transition(s, &r3, OD_STATES_IDLE, 0, NULL),
                   OD_STORE_OK);
  static const int order[3] = {2, 1, 3};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_OK);
    job_id(order[k], id);
    assert_string_equal(gone.id, id);
  }
}

static void evict_idle_before_takes_only_jobs_idle_that_long(void **state) {
  od_store *s = *state;
  double now = od_wall();
  od_job_rec old = insert_job(s, 1);
  insert_job(s, 2); /* uploaded now: idle since its t_created */
  old.state = OD_JOB_FAILED;
  old.t_ended = now + 0.5;
  assert_int_equal(od_store_transition(s, &old, OD_STATES_IDLE, 0, NULL),
                   OD_STORE_OK);
  /* Job 1 ended after job 2 was uploaded: job 2 goes first though older
   * in seq only if it is idle long enough; nothing is before now - 10. */
  od_evict_sel sel = {.idle_before = now - 10, .reason = "expired"};
  assert_int_equal(od_store_evict(s, &sel, NULL), OD_STORE_EMPTY);
  sel.idle_before = now + 0.25; /* job 2 (t_created < now + 0.25) only */
  od_job_rec gone;
  assert_int_equal(od_store_evict(s, &sel, &gone), OD_STORE_OK);
  char id[37];
  job_id(2, id);
  assert_string_equal(gone.id, id);
  assert_int_equal(od_store_evict(s, &sel, &gone), OD_STORE_EMPTY);
  sel.idle_before = now + 1;
  assert_int_equal(od_store_evict(s, &sel, &gone), OD_STORE_OK);
  assert_string_equal(gone.id, old.id);
}

static void ping_answers_ok(void **state) {
  assert_int_equal(od_store_ping(*state), OD_STORE_OK);
}

/* ---- durable backends: reopen and recover -------------------------------- */

/* Set by a durable set-up: closes the store in *state and opens it again
 * on the same file with max_attempts (0: the default), without
 * recovering. */
static int (*reopen)(void **state, int max_attempts, int queue_size);

static od_job_state was_of[8];
static int nwas;

static void note_was(const od_job_rec *r, od_job_state was, void *u) {
  (void)r;
  (void)u;
  if (nwas < 8)
    was_of[nwas++] = was;
}

static void recover_now(void **state) {
  nwas = 0;
  assert_int_equal(od_store_recover(*state, note_was, NULL), OD_STORE_OK);
}

static void reopen_keeps_acknowledged_jobs(void **state) {
  od_store *s = *state;
  od_job_rec up = insert_job(s, 1);
  enqueue_new(s, 2);
  enqueue_new(s, 3);
  od_job_rec c, out;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK); /* job 2 */
  c.score = 0.75;
  snprintf(c.grade, sizeof c.grade, "B+");
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK);
  od_job_rec f = insert_job(s, 4);
  f.state = OD_JOB_FAILED;
  snprintf(f.error, sizeof f.error, "bad image");
  f.http_status = 400;
  assert_int_equal(od_store_transition(s, &f, OD_STATES_IDLE, 0, NULL),
                   OD_STORE_OK);
  od_evict_sel sel = {.id = f.id, .reason = "removed for space"};
  insert_job(s, 5);
  sel.id = "00000000-0000-4000-8000-000000000005";
  assert_int_equal(od_store_evict(s, &sel, NULL), OD_STORE_OK);
  assert_int_equal(reopen(state, 0, 0), 0);
  s = *state;
  recover_now(state);
  assert_int_equal(nwas, 4);
  assert_int_equal(od_store_get(s, up.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_UPLOADED);
  assert_memory_equal(out.image_sha256, up.image_sha256, 32);
  assert_int_equal(out.seq, up.seq);
  assert_true(out.t_created == up.t_created);
  assert_int_equal(od_store_get(s, c.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_COMPLETED);
  assert_int_equal(out.req.quality, 5);
  assert_string_equal(out.req.job_id, c.id);
  char name[96];
  snprintf(name, sizeof name, "model_%s.stl", c.id);
  assert_string_equal(out.output_name, name);
  assert_int_equal(out.output_bytes, 1000);
  assert_true(out.score == 0.75);
  assert_string_equal(out.grade, "B+");
  assert_int_equal(out.attempt, 1);
  assert_int_equal(od_store_get(s, f.id, &out), OD_STORE_OK);
  assert_string_equal(out.error, "bad image");
  assert_int_equal(out.http_status, 400);
  assert_int_equal(od_store_get(s, sel.id, &out), OD_STORE_GONE);
  assert_string_equal(out.error, "removed for space");
  /* Job 3 is still queued and first in line. */
  char id[37];
  job_id(3, id);
  int pos = -9;
  assert_int_equal(od_store_position(s, id, &pos), OD_STORE_OK);
  assert_int_equal(pos, 0);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.jobs, 4);
  assert_int_equal(st.upload_bytes, 101 + 102 + 103 + 104);
  assert_int_equal(st.output_bytes, 1000);
  assert_int_equal(st.tombstones, 1);
  /* New jobs come after the old ones. */
  od_job_rec later = insert_job(s, 6);
  assert_true(later.seq > f.seq);
}

/* The order an evict takes idle jobs in survives a restart. */
static void reopen_keeps_the_eviction_order(void **state) {
  od_store *s = *state;
  double now = od_wall();
  for (int n = 1; n <= 3; n++) {
    od_job_rec r = insert_job(s, n);
    r.state = OD_JOB_FAILED;
    r.t_ended = now + (n == 1 ? 30 : n == 2 ? 10 : 20); /* 2, 3, 1 */
    assert_int_equal(od_store_transition(s, &r, OD_STATES_IDLE, 0, NULL),
                     OD_STORE_OK);
  }
  assert_int_equal(reopen(state, 0, 0), 0);
  s = *state;
  recover_now(state);
  static const int order[3] = {2, 3, 1};
  for (int k = 0; k < 3; k++) {
    od_job_rec gone;
    char id[37];
    assert_int_equal(od_store_evict(s, &ANY_IDLE, &gone), OD_STORE_OK);
    job_id(order[k], id);
    assert_string_equal(gone.id, id);
  }
}

/* The job that was running when the process died runs again, counted by
 * its tries (not its attempt, which grows over the job's whole life). */
static void recover_requeues_a_processing_job_below_max_attempts(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  od_job_rec c, out;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK); /* attempt 1 */
  int pos;
  assert_int_equal(to_queued(s, 1, 6), OD_STORE_OK); /* run 2 */
  assert_int_equal(od_store_enqueue(s, c.id, &pos), OD_STORE_OK);
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(c.attempt, 2);
  assert_int_equal(c.tries, 1);
  assert_int_equal(reopen(state, 2, 0), 0); /* killed while processing */
  s = *state;
  recover_now(state);
  assert_int_equal(nwas, 1);
  assert_int_equal(was_of[0], OD_JOB_PROCESSING);
  assert_int_equal(od_store_get(s, c.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_QUEUED);
  assert_string_equal(out.owner, "");
  assert_int_equal(out.req.quality, 6);
  assert_int_equal(od_store_position(s, c.id, &pos), OD_STORE_OK);
  assert_int_equal(pos, 0);
  assert_int_equal(od_store_claim(s, "w1", 0, &c), OD_STORE_OK);
  assert_int_equal(c.attempt, 3);
  assert_int_equal(c.tries, 2);
  /* A fenced end by the dead process's attempt would be refused. */
  assert_int_equal(complete(s, &c, 2), OD_STORE_FENCED);
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK);
}

/* A job released by a drain (the queue closed, the process about to exit)
 * is queued at the next start ahead of the jobs queued after it, as
 * queued, not as a run the dead process held. */
static void recover_queues_a_released_job_first(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  enqueue_new(s, 2);
  od_job_rec c, out;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  od_store_close_queue(s, NULL, NULL);
  assert_int_equal(release(s, &c, c.attempt), OD_STORE_OK);
  assert_int_equal(reopen(state, 1, 0), 0);
  s = *state;
  recover_now(state);
  assert_int_equal(nwas, 2);
  assert_int_equal(was_of[0], OD_JOB_QUEUED);
  assert_int_equal(was_of[1], OD_JOB_QUEUED);
  assert_int_equal(od_store_claim(s, "w1", 0, &out), OD_STORE_OK);
  assert_string_equal(out.id, c.id);
  assert_int_equal(out.tries, 1); /* --max-attempts 1: still runs */
}

static void recover_fails_a_job_past_max_attempts(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1);
  od_job_rec c, out;
  for (int k = 1; k <= 2; k++) {
    assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
    assert_int_equal(c.tries, k);
    assert_int_equal(reopen(state, 2, 0), 0);
    s = *state;
    recover_now(state);
    assert_int_equal(was_of[0], OD_JOB_PROCESSING);
  }
  assert_int_equal(od_store_get(s, c.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_FAILED);
  assert_non_null(strstr(out.error, "stopped 2 times"));
  assert_int_equal(out.http_status, 500);
  assert_true(out.t_ended > 0);
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_EMPTY);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.by_state[OD_JOB_FAILED], 1);
  assert_int_equal(st.queue_depth, 0);
}

/* Queued jobs run after a restart in the order they were queued, all of
 * them, even past a --queue-size lowered meanwhile. */
static void recover_enqueues_queued_jobs_in_t_queued_order(void **state) {
  od_store *s = *state;
  static const double when[3] = {300, 100, 200}; /* jobs 1, 2, 3 */
  for (int n = 1; n <= 3; n++) {
    od_job_rec r = insert_job(s, n);
    r.state = OD_JOB_QUEUED;
    r.t_queued = od_wall() - 1000 + when[n - 1];
    assert_int_equal(od_store_transition(s, &r, OD_STATES_IDLE, 0, NULL),
                     OD_STORE_OK);
    int pos;
    assert_int_equal(od_store_enqueue(s, r.id, &pos), OD_STORE_OK);
  }
  assert_int_equal(reopen(state, 0, 2), 0);
  s = *state;
  recover_now(state);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  assert_int_equal(st.queue_depth, 3);
  static const int order[3] = {2, 3, 1};
  for (int k = 0; k < 3; k++) {
    od_job_rec c;
    char id[37];
    job_id(order[k], id);
    assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
    assert_string_equal(c.id, id);
  }
}

/* ---- concurrency (run under TSan too) ------------------------------------ */

#define CJOBS 48
#define CWORKERS 3

typedef struct {
  od_store *s;
  _Atomic int claimed[CJOBS + 1];
  _Atomic int done;
  _Atomic int bad;
} crun;

static void *claimer(void *arg) {
  crun *cr = arg;
  od_job_rec c;
  od_store_rc rc;
  while ((rc = od_store_claim(cr->s, "w", -1, &c)) == OD_STORE_OK) {
    int n = (int)strtol(c.id + 24, NULL, 10);
    if (n < 1 || n > CJOBS || c.attempt != 1 ||
        complete(cr->s, &c, c.attempt) != OD_STORE_OK)
      cr->bad++;
    else
      cr->claimed[n]++;
    cr->done++;
  }
  if (rc != OD_STORE_CLOSED)
    cr->bad++;
  return NULL;
}

/* Workers blocked in claim take every job exactly once while another
 * thread keeps the bounded queue full; closing the queue ends them. */
static void concurrent_claims_take_each_job_once(void **state) {
  static crun cr;
  memset(&cr, 0, sizeof cr);
  cr.s = *state;
  pthread_t t[CWORKERS];
  for (int i = 0; i < CWORKERS; i++)
    pthread_create(&t[i], NULL, claimer, &cr);
  for (int n = 1; n <= CJOBS; n++) {
    insert_job(cr.s, n);
    assert_int_equal(to_queued(cr.s, n, 5), OD_STORE_OK);
    char id[37];
    job_id(n, id);
    int pos;
    od_store_rc rc;
    while ((rc = od_store_enqueue(cr.s, id, &pos)) == OD_STORE_FULL)
      sched_yield();
    assert_int_equal(rc, OD_STORE_OK);
  }
  while (cr.done < CJOBS)
    sched_yield();
  od_store_close_queue(cr.s, NULL, NULL);
  for (int i = 0; i < CWORKERS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(cr.bad, 0);
  for (int n = 1; n <= CJOBS; n++)
    assert_int_equal(cr.claimed[n], 1);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(cr.s, &st), OD_STORE_OK);
  assert_int_equal(st.by_state[OD_JOB_COMPLETED], CJOBS);
}

/* ---- the list, and the backends ------------------------------------------ */

#define STORE_CASES(X)                                                         \
  X(insert_then_get_returns_the_record)                                        \
  X(insert_gives_each_job_a_later_seq)                                         \
  X(get_of_an_unknown_job_is_not_found)                                        \
  X(insert_of_an_existing_id_conflicts)                                        \
  X(insert_past_max_jobs_is_full_until_one_is_evicted)                         \
  X(transition_writes_from_an_allowed_state)                                   \
  X(transition_refuses_a_second_claim)                                         \
  X(transition_returns_the_record_it_replaced)                                 \
  X(transition_keeps_the_store_owned_fields)                                   \
  X(transition_of_an_unknown_job_is_not_found)                                 \
  X(enqueue_needs_a_queued_job_not_yet_enqueued)                               \
  X(enqueue_past_queue_size_is_full_and_the_job_stays_queued)                  \
  X(claim_takes_jobs_in_fifo_order)                                            \
  X(claim_marks_processing_and_grows_the_attempt)                              \
  X(claim_with_nothing_enqueued_is_empty)                                      \
  X(finish_with_a_stale_attempt_is_fenced)                                     \
  X(a_released_claim_is_claimed_again_first)                                   \
  X(a_stranded_queued_job_is_requeued)                                         \
  X(position_follows_the_queue)                                                \
  X(stats_count_jobs_by_state_queue_and_bytes)                                 \
  X(evict_refuses_an_active_job)                                               \
  X(evict_oldest_skips_active_jobs)                                            \
  X(evict_forgets_the_job_and_its_bytes)                                       \
  X(recover_of_a_new_store_finds_nothing)                                      \
  X(evict_with_a_reason_leaves_a_tombstone)                                    \
  X(tombstones_are_bounded_by_max_jobs)                                        \
  X(evict_oldest_passes_over_held_jobs)                                        \
  X(evict_takes_the_idle_job_changed_longest_ago)                              \
  X(evict_idle_before_takes_only_jobs_idle_that_long)                          \
  X(ping_answers_ok)                                                           \
  X(concurrent_claims_take_each_job_once)

/* Backends whose dispatch queue is this process's (not redis: there the
 * waiting jobs stay for the other nodes). */
#define LOCAL_QUEUE_CASES(X) X(close_queue_hands_back_waiting_jobs_in_order)

/* Durable backends: what a reopen keeps. */
#define REOPEN_CASES(X)                                                        \
  X(reopen_keeps_acknowledged_jobs)                                            \
  X(reopen_keeps_the_eviction_order)

/* A durable backend of one process: its start-up settles what the dead
 * process held (redis leaves that to the leases, below). */
#define RECOVER_CASES(X)                                                       \
  X(recover_requeues_a_processing_job_below_max_attempts)                      \
  X(recover_fails_a_job_past_max_attempts)                                     \
  X(recover_queues_a_released_job_first)                                       \
  X(recover_enqueues_queued_jobs_in_t_queued_order)

static const od_store_opts OPTS = {.queue_size = QSIZE, .max_jobs = MAXJOBS};

static int open_url(void **state, const char *url) {
  char err[256];
  od_store *s = od_store_open(url, &OPTS, err, sizeof err);
  if (s == NULL)
    print_error("open %s: %s\n", url, err);
  *state = s;
  return s ? 0 : -1;
}

static int open_memory(void **state) { return open_url(state, "memory:"); }

static int close_store(void **state) {
  od_store_close(*state);
  return 0;
}

/* sqlite: a fresh folder per case (the WAL and its index lie beside the
 * file), removed in the tear-down. */
static char sq_dir[64], sq_url[128];

/* The folder only: for the cases that open nothing themselves. */
static int sqlite_folder(void **state) {
  *state = NULL;
  snprintf(sq_dir, sizeof sq_dir, "/tmp/od-store-test-XXXXXX");
  if (mkdtemp(sq_dir) == NULL)
    return -1;
  snprintf(sq_url, sizeof sq_url, "sqlite:%s/jobs.db", sq_dir);
  return 0;
}

static int open_sqlite(void **state) {
  return sqlite_folder(state) == 0 ? open_url(state, sq_url) : -1;
}

static int reopen_sqlite(void **state, int max_attempts, int queue_size) {
  od_store_close(*state);
  od_store_opts o = OPTS;
  o.max_attempts = max_attempts;
  if (queue_size > 0)
    o.queue_size = queue_size;
  char err[256];
  *state = od_store_open(sq_url, &o, err, sizeof err);
  if (*state == NULL)
    print_error("reopen %s: %s\n", sq_url, err);
  return *state ? 0 : -1;
}

static int close_sqlite(void **state) {
  od_store_close(*state);
  char path[128];
  static const char *const files[] = {"jobs.db", "jobs.db-wal", "jobs.db-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", sq_dir, files[i]);
    unlink(path);
  }
  rmdir(sq_dir);
  return 0;
}

#define MEMORY_CASE(name)                                                      \
  cmocka_unit_test_setup_teardown(name, open_memory, close_store),
#define SQLITE_CASE(name)                                                      \
  cmocka_unit_test_setup_teardown(name, open_sqlite, close_sqlite),

/* Not a backend case: the URL is checked before any backend runs. */
static void open_refuses_an_unknown_scheme(void **state) {
  (void)state;
  char err[256];
  assert_null(od_store_open("postgres://x", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "postgres://x"));
  assert_non_null(strstr(err, "memory:"));
  assert_non_null(strstr(err, "sqlite:"));
  assert_null(od_store_open("memory:/some/path", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "takes no path"));
  assert_null(od_store_open("sqlite:", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "sqlite:PATH"));
}

/* ---- sqlite: what open refuses ------------------------------------------- */

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

/* A file that is not SQLite: a clear error naming it, never a fresh store. */
static void sqlite_open_refuses_a_file_that_is_not_a_database(void **state) {
  (void)state;
  char path[128], err[512], junk[8192];
  snprintf(path, sizeof path, "%s/jobs.db", sq_dir);
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (char)(i * 131 + 7);
  write_file(path, junk, sizeof junk);
  assert_null(od_store_open(sq_url, &OPTS, err, sizeof err));
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "not a readable job store"));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_size, sizeof junk); /* left as it was */
}

/* A database whose pages are damaged past its header. */
static void sqlite_open_refuses_a_damaged_database(void **state) {
  od_store *s = *state;
  for (int n = 1; n <= 40; n++)
    insert_job(s, n);
  od_store_close(s);
  *state = NULL;
  char path[128], wal[140], err[512];
  snprintf(path, sizeof path, "%s/jobs.db", sq_dir);
  snprintf(wal, sizeof wal, "%s-wal", path);
  unlink(wal); /* closing checkpointed it into the file */
  size_t len = 0;
  uint8_t *db = od_file_read(path, &len);
  assert_non_null(db);
  assert_true(len > 4096);
  for (size_t i = 4096 + 100; i < len; i += 7)
    db[i] ^= 0x5A; /* every page after the first */
  write_file(path, db, len);
  free(db);
  assert_null(od_store_open(sq_url, &OPTS, err, sizeof err));
  assert_non_null(strstr(err, path));
}

static void sqlite_open_refuses_a_newer_schema(void **state) {
  od_store_close(*state);
  *state = NULL;
  char cmd[256], err[512];
  snprintf(cmd, sizeof cmd,
           "sqlite3 %s/jobs.db 'PRAGMA user_version=7' >/dev/null", sq_dir);
  assert_int_equal(system(cmd), 0);
  assert_null(od_store_open(sq_url, &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "jobs.db"));
  assert_non_null(strstr(err, "version 7"));
  assert_non_null(strstr(err, "up to 1"));
}

static void sqlite_open_refuses_a_folder(void **state) {
  (void)state;
  char path[128], err[512];
  snprintf(path, sizeof path, "%s/jobs.db", sq_dir);
  assert_int_equal(mkdir(path, 0700), 0);
  assert_null(od_store_open(sq_url, &OPTS, err, sizeof err));
  assert_non_null(strstr(err, path));
  rmdir(path);
}

/* ---- redis: several nodes on one Redis (issue #15) -----------------------
 *
 * Run by tests/support/with-redis.sh, which starts a redis-server of its
 * own and names it in ORFEAS_TEST_REDIS; each case starts on an emptied
 * Redis. A second od_store on the same URL is another node. */

#define LEASE_S 0.4

static char rd_url[128];
static redisContext *rd_admin; /* the test's own connection (FLUSHALL...) */

/* A command on the test's connection; 0 when Redis answered without an
 * error. */
static int admin(const char *fmt, const char *arg) {
  redisReply *r = redisCommand(rd_admin, fmt, arg);
  int ok = r != NULL && r->type != REDIS_REPLY_ERROR;
  if (r)
    freeReplyObject(r);
  return ok ? 0 : -1;
}

static od_store *open_node_lease(const char *node, int max_attempts,
                                 double lease_s) {
  od_store_opts o = OPTS;
  o.node_id = node;
  o.lease_s = lease_s;
  o.max_attempts = max_attempts;
  char err[512];
  od_store *s = od_store_open(rd_url, &o, err, sizeof err);
  if (s == NULL)
    print_error("open %s: %s\n", rd_url, err);
  return s;
}

static od_store *open_node(const char *node, int max_attempts) {
  return open_node_lease(node, max_attempts, LEASE_S);
}

static int open_redis(void **state) {
  od_store_redis_claim_hook = NULL; /* a failed case may have left it */
  if (admin("FLUSHALL", NULL) != 0)
    return -1;
  *state = open_node(NULL, 0);
  return *state ? 0 : -1;
}

static int reopen_redis(void **state, int max_attempts, int queue_size) {
  (void)queue_size;
  od_store_close(*state);
  *state = open_node(NULL, max_attempts);
  return *state ? 0 : -1;
}

/* Waits up to 5 s for node's stats to satisfy want (its field >= n). */
static int64_t stat_field(od_store *s, size_t off) {
  od_store_stats st;
  assert_int_equal(od_store_get_stats(s, &st), OD_STORE_OK);
  return *(int64_t *)(void *)((char *)&st + off);
}

static void wait_stat(od_store *s, size_t off, int64_t n) {
  double until = od_now() + 5;
  while (stat_field(s, off) < n && od_now() < until) {
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  assert_true(stat_field(s, off) >= n);
}

/* A node that stops (its process gone: no more renewals) has its job taken
 * over by another node after the lease, as the next attempt; the dead
 * node's late end is fenced. */
static void a_lapsed_claim_is_taken_over_by_another_node(void **state) {
  od_store *a = *state, *b = open_node("node-b", 3);
  assert_non_null(b);
  enqueue_new(a, 1);
  od_job_rec first, second, out;
  assert_int_equal(od_store_claim(a, "w0", 0, &first), OD_STORE_OK);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(b, &st), OD_STORE_OK);
  assert_int_equal(st.queue_depth, 0); /* running is not backlog */
  assert_int_equal(od_store_claim(b, "w0", 0, &second), OD_STORE_EMPTY);
  od_store_close(a); /* node a dies: its heartbeat stops */
  *state = NULL;
  assert_int_equal(od_store_claim(b, "w0", 5000, &second), OD_STORE_OK);
  assert_string_equal(second.id, first.id);
  assert_int_equal(second.attempt, 2);
  assert_int_equal(second.tries, 2);
  assert_string_equal(second.owner, "node-b:w0");
  assert_int_equal(od_store_get_stats(b, &st), OD_STORE_OK);
  assert_int_equal(st.reclaimed, 1);
  assert_int_equal(complete(b, &first, first.attempt), OD_STORE_FENCED);
  assert_int_equal(complete(b, &second, second.attempt), OD_STORE_OK);
  assert_int_equal(complete(b, &first, first.attempt), OD_STORE_FENCED);
  assert_int_equal(od_store_get(b, first.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_COMPLETED);
  assert_int_equal(out.attempt, 2);
  *state = b;
}

/* The lapsed claim is found behind many live ones (XAUTOCLAIM looks at a
 * few pending entries per call). */
static void a_lapsed_claim_behind_live_ones_is_found(void **state) {
  od_store *b = *state, *a = open_node("node-a", 3);
  assert_non_null(a);
  od_job_rec c, lost;
  for (int n = 1; n <= 12; n++) { /* b runs 1..12, renewing them */
    enqueue_new(b, n);
    assert_int_equal(od_store_claim(b, "w0", 0, &c), OD_STORE_OK);
  }
  enqueue_new(a, 13);
  assert_int_equal(od_store_claim(a, "w0", 0, &lost), OD_STORE_OK);
  od_store_close(a); /* node a dies */
  assert_int_equal(od_store_claim(b, "w1", 5000, &c), OD_STORE_OK);
  assert_string_equal(c.id, lost.id);
  assert_int_equal(c.attempt, 2);
}

/* A live node's heartbeat keeps its claim past many leases. */
static void a_renewed_claim_is_not_taken(void **state) {
  /* A 1 s lease (renewed every 0.33 s): only a stall of 0.67 s on a loaded
   * machine would let b take it over. */
  od_store_close(*state);
  od_store *a = open_node_lease("node-a", 3, 1.0),
           *b = open_node_lease("node-b", 3, 1.0);
  *state = a;
  assert_non_null(a);
  assert_non_null(b);
  enqueue_new(a, 1);
  od_job_rec c, other;
  assert_int_equal(od_store_claim(a, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(od_store_claim(b, "w0", 1600, &other), OD_STORE_EMPTY);
  assert_int_equal(complete(a, &c, c.attempt), OD_STORE_OK);
  od_store_close(b);
}

/* When another node has taken the job, the heartbeat's renewal is refused
 * (counted) and the claim dropped. The takeover is made by hand here, as
 * a node that found the lease lapsed while this one was cut off would. */
static void a_superseded_claim_is_fenced_at_renewal(void **state) {
  od_store *a = *state;
  enqueue_new(a, 1);
  od_job_rec c;
  assert_int_equal(od_store_claim(a, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(admin("HINCRBY orfeas:job:%s attempt 1", c.id), 0);
  wait_stat(a, offsetof(od_store_stats, fenced), 1);
  assert_int_equal(complete(a, &c, c.attempt), OD_STORE_FENCED);
}

/* Lost max_attempts times: the job fails with a reason, not run again. */
static void a_job_lost_max_attempts_times_fails(void **state) {
  od_store_close(*state);
  od_store *a = open_node("node-a", 1), *b = open_node("node-b", 1);
  *state = b;
  assert_non_null(a);
  enqueue_new(a, 1);
  od_job_rec c, out;
  assert_int_equal(od_store_claim(a, "w0", 0, &c), OD_STORE_OK);
  od_store_close(a);
  assert_int_equal(od_store_claim(b, "w0", (int)(LEASE_S * 4000), &out),
                   OD_STORE_EMPTY);
  assert_int_equal(od_store_get(b, c.id, &out), OD_STORE_OK);
  assert_int_equal(out.state, OD_JOB_FAILED);
  assert_non_null(strstr(out.error, "lost 1 time ("));
  assert_int_equal(out.http_status, 500);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(b, &st), OD_STORE_OK);
  assert_int_equal(st.by_state[OD_JOB_FAILED], 1);
  assert_int_equal(st.by_state[OD_JOB_PROCESSING], 0);
  assert_int_equal(st.queue_depth, 0);
}

/* A node stalled between its blocking read's delivery of an entry and
 * starting it (the claim hook stands in for the stall): the first time it
 * is about to block, job 1 is enqueued, so that read delivers its entry;
 * then, before the start, stall_taker claims the job, which it can only
 * do once the entry sat a lease with the stalled node (XAUTOCLAIM). */
static od_store *stall_taker;
static od_job_rec stall_took;
static od_store_rc stall_rc;
static int stall_enqueued, stall_delivered;

static void stall_past_the_lease(const char *entry) {
  if (entry[0] == '\0') {
    if (stall_enqueued++ == 0)
      enqueue_new(stall_taker, 1);
  } else if (stall_delivered++ == 0) {
    stall_rc = od_store_claim(stall_taker, "w0", 5000, &stall_took);
  }
}

/* Node y, stalled past its lease with an entry just delivered, resumes
 * after node x (same_node: another worker of its own node, the same
 * consumer) took the entry over and started the job: y starts nothing
 * (no takeover of a healthy run) and x's run ends normally. */
static void stalled_delivery(void **state, int same_node) {
  od_store_close(*state);
  /* A 1 s lease, renewed every 0.33 s: only a stall of 0.67 s of x's
   * heartbeat on a loaded machine would let y take the job legitimately. */
  od_store *x = open_node_lease("node-x", 3, 1.0),
           *y = open_node_lease(same_node ? "node-x" : "node-y", 3, 1.0);
  *state = x;
  assert_non_null(x);
  assert_non_null(y);
  stall_taker = x;
  stall_enqueued = stall_delivered = 0;
  stall_rc = OD_STORE_DOWN;
  od_store_redis_claim_hook = stall_past_the_lease;
  od_job_rec cy;
  od_store_rc rc = od_store_claim(y, "w1", 200, &cy);
  od_store_redis_claim_hook = NULL;
  assert_int_equal(stall_delivered, 1);
  assert_int_equal(stall_rc, OD_STORE_OK);
  assert_int_equal(stall_took.attempt, 1);
  assert_string_equal(stall_took.owner, "node-x:w0");
  assert_int_equal(rc, OD_STORE_EMPTY); /* was: OK, attempt 2 (a takeover) */
  od_job_rec r;
  assert_int_equal(od_store_get(x, stall_took.id, &r), OD_STORE_OK);
  assert_int_equal(r.state, OD_JOB_PROCESSING);
  assert_int_equal(r.attempt, 1);
  assert_int_equal(r.tries, 1);
  assert_string_equal(r.owner, "node-x:w0");
  assert_int_equal(stat_field(y, offsetof(od_store_stats, reclaimed)), 0);
  assert_int_equal(complete(x, &stall_took, stall_took.attempt), OD_STORE_OK);
  assert_int_equal(stat_field(x, offsetof(od_store_stats, fenced)), 0);
  od_store_close(y);
}

static void a_stalled_delivery_steals_from_no_other_node(void **state) {
  stalled_delivery(state, 0);
}

static void a_stalled_delivery_steals_from_no_other_worker(void **state) {
  stalled_delivery(state, 1);
}

/* Shutdown of one node leaves the waiting jobs to the others. */
static void close_queue_leaves_waiting_jobs_to_other_nodes(void **state) {
  od_store *a = *state, *b = open_node("node-b", 3);
  assert_non_null(b);
  for (int n = 1; n <= 2; n++)
    enqueue_new(a, n);
  nhanded = 0;
  od_store_close_queue(a, collect, NULL);
  assert_int_equal(nhanded, 0);
  od_job_rec c;
  assert_int_equal(od_store_claim(a, "w0", -1, &c), OD_STORE_CLOSED);
  for (int n = 1; n <= 2; n++) {
    char id[37];
    job_id(n, id);
    assert_int_equal(od_store_claim(b, "w0", 0, &c), OD_STORE_OK);
    assert_string_equal(c.id, id);
  }
  od_store_close(b);
}

/* The queue bound holds across nodes. */
static void the_queue_bound_is_cluster_wide(void **state) {
  od_store *a = *state, *b = open_node("node-b", 3);
  assert_non_null(b);
  for (int n = 1; n <= QSIZE; n++)
    enqueue_new(n % 2 ? a : b, n);
  insert_job(b, 99);
  assert_int_equal(to_queued(b, 99, 5), OD_STORE_OK);
  int pos;
  char id[37];
  job_id(99, id);
  assert_int_equal(od_store_enqueue(b, id, &pos), OD_STORE_FULL);
  od_store_stats st;
  assert_int_equal(od_store_get_stats(b, &st), OD_STORE_OK);
  assert_int_equal(st.queue_depth, QSIZE);
  assert_true(st.oldest_queued_s >= 0 && st.oldest_queued_s < 60);
  od_store_close(b);
}

/* 1 when orfeas:lease has a field for node, 0 when not. */
static int lease_kept(const char *node) {
  redisReply *r = redisCommand(rd_admin, "HEXISTS orfeas:lease %s", node);
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  int kept = (int)r->integer;
  freeReplyObject(r);
  return kept;
}

/* 1 when the stream's group lists node as a consumer (Redis adds one at
 * its first delivery). */
static int consumer_kept(const char *node) {
  redisReply *r = redisCommand(rd_admin, "XINFO CONSUMERS orfeas:jobs workers");
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  int kept = 0;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *c = r->element[i];
    for (size_t k = 0; k + 1 < c->elements; k += 2)
      if (strcmp(c->element[k]->str, "name") == 0 &&
          strcmp(c->element[k + 1]->str, node) == 0)
        kept = 1;
  }
  freeReplyObject(r);
  return kept;
}

/* Reads live's stats (what every node's janitor does each second) until
 * node's lease field is gone, for 5 s at most; 1 when it went. */
static int forgotten_within(od_store *live, const char *node) {
  double until = od_now() + 5;
  for (;;) {
    (void)stat_field(live, offsetof(od_store_stats, nodes));
    if (!lease_kept(node))
      return 1;
    if (od_now() >= until)
      return 0;
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Every node id that ever claimed had a field in orfeas:lease (and a
 * consumer in the group) for ever: an autoscaled cluster with generated
 * ids grew both without bound. A node silent for 10 of its leases, whose
 * claims are all taken over, is forgotten at the next stats read of any
 * node; a live node stays, and so does a dead one whose claim is still
 * pending to it (its lease is what tells the others when to take it).
 * A node that comes back under the same id is known again at its claim. */
static void a_node_gone_long_ago_is_forgotten(void **state) {
  od_store_close(*state);
  /* Leases of 0.05 s: 10 of them are 0.5 s. */
  od_store *live = open_node_lease("node-live", 3, 1.0),
           *dead = open_node_lease("node-dead", 3, 0.05),
           *gone = open_node_lease("node-gone", 3, 0.05);
  *state = live;
  assert_non_null(live);
  assert_non_null(dead);
  assert_non_null(gone);
  od_job_rec c;
  assert_int_equal(od_store_claim(live, "w0", 0, &c), OD_STORE_EMPTY);
  enqueue_new(live, 1);
  assert_int_equal(od_store_claim(dead, "w0", 0, &c), OD_STORE_OK);
  od_store_close(dead); /* dies holding job 1 */
  assert_int_equal(od_store_claim(gone, "w0", 0, &c), OD_STORE_EMPTY);
  od_store_close(gone); /* stops with nothing held, after dead */
  assert_int_equal(stat_field(live, offsetof(od_store_stats, nodes)), 3);
  assert_true(forgotten_within(live, "node-gone"));
  /* dead went silent first: it was looked at too, and stays for its
   * pending claim; live has not been silent 10 of its leases. */
  assert_true(lease_kept("node-dead"));
  assert_true(consumer_kept("node-dead"));
  assert_true(lease_kept("node-live"));
  assert_int_equal(stat_field(live, offsetof(od_store_stats, nodes)), 2);
  /* Its claim taken over and ended: dead goes too. */
  assert_int_equal(od_store_claim(live, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(c.attempt, 2);
  assert_int_equal(complete(live, &c, c.attempt), OD_STORE_OK);
  assert_true(forgotten_within(live, "node-dead"));
  assert_false(consumer_kept("node-dead"));
  assert_true(lease_kept("node-live"));
  assert_int_equal(stat_field(live, offsetof(od_store_stats, nodes)), 1);
  /* Back under its old id: known again from its first claim. */
  gone = open_node_lease("node-gone", 3, 0.05);
  assert_non_null(gone);
  assert_int_equal(od_store_claim(gone, "w0", 0, &c), OD_STORE_EMPTY);
  assert_true(lease_kept("node-gone"));
  assert_int_equal(stat_field(live, offsetof(od_store_stats, nodes)), 2);
  od_store_close(gone);
}

static void open_refuses_an_unreachable_redis(void **state) {
  (void)state;
  char err[512];
  assert_null(od_store_open("redis://127.0.0.1:1", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "cannot connect to Redis at 127.0.0.1:1"));
  assert_null(od_store_open("redis://nohost", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "HOST:PORT"));
  /* A password in the URL: refused, and not repeated in the message. */
  assert_null(
      od_store_open("redis://u:hunter2@127.0.0.1:1", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "--store-password-file"));
  assert_null(strstr(err, "hunter2"));
  assert_null(
      od_store_open("redis://:hunter2@127.0.0.1:1", &OPTS, err, sizeof err));
  assert_null(strstr(err, "hunter2"));
  /* A user is fine (the connection then fails: nothing listens there). */
  assert_null(
      od_store_open("redis://orfeas@127.0.0.1:1", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "cannot connect to Redis at 127.0.0.1:1"));
}

#define REDIS_ONLY_CASES(X)                                                    \
  X(a_lapsed_claim_is_taken_over_by_another_node)                              \
  X(a_lapsed_claim_behind_live_ones_is_found)                                  \
  X(a_renewed_claim_is_not_taken)                                              \
  X(a_superseded_claim_is_fenced_at_renewal)                                   \
  X(a_job_lost_max_attempts_times_fails)                                       \
  X(a_stalled_delivery_steals_from_no_other_node)                              \
  X(a_stalled_delivery_steals_from_no_other_worker)                            \
  X(close_queue_leaves_waiting_jobs_to_other_nodes)                            \
  X(the_queue_bound_is_cluster_wide)                                           \
  X(a_node_gone_long_ago_is_forgotten)

#define REDIS_CASE(name)                                                       \
  cmocka_unit_test_setup_teardown(name, open_redis, close_store),

static int run_redis(const char *where) {
  snprintf(rd_url, sizeof rd_url, "redis://%s", where);
  const char *colon = strrchr(where, ':');
  char host[64];
  snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - where) : 0, where);
  char *end = NULL;
  long port = colon ? strtol(colon + 1, &end, 10) : 0;
  if (colon == NULL || end == colon + 1 || *end != '\0' || port < 1 ||
      port > 65535) {
    fprintf(stderr, "ORFEAS_TEST_REDIS: want HOST:PORT, got %s\n", where);
    return 1;
  }
  rd_admin = redisConnect(host, (int)port);
  if (rd_admin == NULL || rd_admin->err) {
    fprintf(stderr, "cannot connect to Redis at %s\n", where);
    return 1;
  }
  const struct CMUnitTest redis[] = {
      STORE_CASES(REDIS_CASE) REOPEN_CASES(REDIS_CASE)
          REDIS_ONLY_CASES(REDIS_CASE)
              cmocka_unit_test(open_refuses_an_unreachable_redis)};
  reopen = reopen_redis;
  int failed = cmocka_run_group_tests_name("redis", redis, NULL, NULL);
  redisFree(rd_admin);
  return failed;
}

int main(void) {
  /* tests/support/with-redis.sh names its server: the redis group only. */
  const char *where = getenv("ORFEAS_TEST_REDIS");
  if (where != NULL && where[0] != '\0')
    return run_redis(where);
  const struct CMUnitTest common[] = {
      cmocka_unit_test(open_refuses_an_unknown_scheme)};
  const struct CMUnitTest memory[] = {STORE_CASES(MEMORY_CASE)
                                          LOCAL_QUEUE_CASES(MEMORY_CASE)};
  const struct CMUnitTest sqlite[] = {
      STORE_CASES(SQLITE_CASE) LOCAL_QUEUE_CASES(SQLITE_CASE)
          REOPEN_CASES(SQLITE_CASE) RECOVER_CASES(SQLITE_CASE)
              cmocka_unit_test_setup_teardown(
                  sqlite_open_refuses_a_file_that_is_not_a_database,
                  sqlite_folder, close_sqlite),
      cmocka_unit_test_setup_teardown(sqlite_open_refuses_a_damaged_database,
                                      open_sqlite, close_sqlite),
      cmocka_unit_test_setup_teardown(sqlite_open_refuses_a_newer_schema,
                                      open_sqlite, close_sqlite),
      cmocka_unit_test_setup_teardown(sqlite_open_refuses_a_folder,
                                      sqlite_folder, close_sqlite)};
  int failed = cmocka_run_group_tests_name("store", common, NULL, NULL);
  failed += cmocka_run_group_tests_name("memory", memory, NULL, NULL);
  reopen = reopen_sqlite;
  failed += cmocka_run_group_tests_name("sqlite", sqlite, NULL, NULL);
  return failed;
}
