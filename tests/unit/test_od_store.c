/* Job-store conformance (src/store.h): one list of cases that every backend
 * must pass, run once per backend with that backend's set-up (libuv's habit:
 * the same tests on epoll, kqueue and IOCP). Each case gets a fresh, empty
 * store from its set-up and closes it in the tear-down.
 *
 * Today: memory. A new backend joins by adding an open_<backend>() set-up
 * and one line in main() (the SQLite one with a temp file, the Redis one
 * with a redis-server started by its group set-up). Cases that only a
 * durable backend can pass (reopen keeps acknowledged jobs, recover re-queues
 * a processing job) go in a second list run only where od_store_durable().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

#define QSIZE 4    /* queue_size of every store under test */
#define MAXJOBS 64 /* max_jobs */

/* ---- helpers ------------------------------------------------------------- */

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
  assert_int_equal(od_store_evict(s, NULL, NULL), OD_STORE_OK);
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
  assert_int_equal(od_store_evict(s, id, NULL), OD_STORE_CONFLICT); /* queued */
  od_job_rec c;
  assert_int_equal(od_store_claim(s, "w0", 0, &c), OD_STORE_OK);
  assert_int_equal(od_store_evict(s, id, NULL),
                   OD_STORE_CONFLICT); /* processing */
  assert_int_equal(complete(s, &c, c.attempt), OD_STORE_OK);
  assert_int_equal(od_store_evict(s, id, NULL), OD_STORE_OK);
  assert_int_equal(od_store_evict(s, id, NULL), OD_STORE_NOT_FOUND);
}

static void evict_oldest_skips_active_jobs(void **state) {
  od_store *s = *state;
  enqueue_new(s, 1); /* oldest, but queued */
  insert_job(s, 2);
  insert_job(s, 3);
  od_job_rec gone;
  char id[37];
  assert_int_equal(od_store_evict(s, NULL, &gone), OD_STORE_OK);
  job_id(2, id);
  assert_string_equal(gone.id, id);
  assert_int_equal(od_store_evict(s, NULL, &gone), OD_STORE_OK);
  job_id(3, id);
  assert_string_equal(gone.id, id);
  assert_int_equal(od_store_evict(s, NULL, &gone), OD_STORE_EMPTY);
}

static void evict_forgets_the_job_and_its_bytes(void **state) {
  od_store *s = *state;
  od_job_rec r = insert_job(s, 1), gone, out;
  assert_int_equal(od_store_evict(s, r.id, &gone), OD_STORE_OK);
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

static void count_recovered(const od_job_rec *r, void *u) {
  (void)r;
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
  X(position_follows_the_queue)                                                \
  X(stats_count_jobs_by_state_queue_and_bytes)                                 \
  X(evict_refuses_an_active_job)                                               \
  X(evict_oldest_skips_active_jobs)                                            \
  X(evict_forgets_the_job_and_its_bytes)                                       \
  X(close_queue_hands_back_waiting_jobs_in_order)                              \
  X(recover_of_a_new_store_finds_nothing)                                      \
  X(concurrent_claims_take_each_job_once)

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

#define MEMORY_CASE(name)                                                      \
  cmocka_unit_test_setup_teardown(name, open_memory, close_store),

/* Not a backend case: the URL is checked before any backend runs. */
static void open_refuses_an_unknown_scheme(void **state) {
  (void)state;
  char err[256];
  assert_null(od_store_open("postgres://x", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "postgres://x"));
  assert_non_null(strstr(err, "memory:"));
  assert_null(od_store_open("memory:/some/path", &OPTS, err, sizeof err));
  assert_non_null(strstr(err, "takes no path"));
}

int main(void) {
  const struct CMUnitTest common[] = {
      cmocka_unit_test(open_refuses_an_unknown_scheme)};
  const struct CMUnitTest memory[] = {STORE_CASES(MEMORY_CASE)};
  int failed = cmocka_run_group_tests_name("store", common, NULL, NULL);
  failed += cmocka_run_group_tests_name("memory", memory, NULL, NULL);
  return failed;
}
