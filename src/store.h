/* store.h: where job records live, behind one interface (issue #11).
 *
 * The job store keeps one record per job (od_job_rec: plain data, copied in
 * and out, never shared) and the dispatch queue in front of the workers. It
 * knows nothing of files, metrics, events or HTTP: jobs.c and worker.c do
 * those around it. A backend is a table of functions (od_store_ops) chosen by
 * the URL's scheme, the way curl picks a protocol handler or redis an event
 * loop:
 *
 *   memory:            this process's memory; gone at exit (store_mem.c).
 *                      The test double, and the bench's baseline.
 *   sqlite:PATH        one SQLite file in WAL mode (store_sqlite.c); the
 *                      default, sqlite:DATA_DIR/jobs.db. Survives kill -9.
 *   redis://HOST:PORT  (issue #15) Streams + hashes, shared by several nodes.
 *
 * Both local backends keep every record in one in-memory table (memtab.h):
 * memory: is that table alone; sqlite: is that table as a read cache in
 * front of the database, which is the record (each change is committed
 * before it shows in the table).
 *
 * ---- Changes since the first version (issue #11's second half) ------------
 *
 * Backends must follow these (the redis one of #15 included):
 *  - OD_STORE_GONE (new rc, last before OD_STORE_RC_COUNT): get of a job that
 *    was removed with a reason (a tombstone). A retention removal must
 *    answer 410 with its reason, never a bare 404, so the reason lives
 *    where the record lived. Tombstones are bounded by max_jobs.
 *  - evict takes an od_evict_sel (which job; only idle before a time, for
 *    --result-ttl; the tombstone's reason) instead of an id. evict(NULL...)
 *    skips held jobs (the new od_job_rec.hold_until: an upload whose
 *    generate got 429 keeps its slot until its Retry-After has passed).
 *  - recover's callback also gets the state the job had before recovery
 *    (`was`), so the caller can count what it reclaimed.
 *  - ping (optional, NULL = always up): /ready and orfeas_store_up ask it.
 *  - od_store_stats.tombstones; od_store_opts.max_attempts is used (sqlite
 *    recover); od_store_set_observer times every call (store.c).
 *
 * ---- The model -------------------------------------------------------------
 *
 *   insert      (none) -> uploaded                       upload
 *   transition  compare-and-set of one record: written only when the stored
 *               state is in `from` (and, when fenced, the stored attempt is
 *               the caller's). Every other state change goes through it.
 *   enqueue     hands a queued record to the dispatch queue (bounded)
 *   claim       queued -> processing for one worker; attempt + 1
 *   evict       removes an idle record (uploaded, completed, failed),
 *               leaving a tombstone with the reason when one is given
 *
 *              insert            transition            claim
 *   (none) ----------> UPLOADED ----------> QUEUED ------------> PROCESSING
 *                        ^  ^                 |  (enqueue: dispatch)   |
 *                        |  |   transition    v                        |
 *                        |  +-------------- COMPLETED <--- transition --+
 *                        +----------------- FAILED    <--- (fenced) ---+
 *
 * Release: a fenced transition PROCESSING -> QUEUED hands a claim back
 * (a drain stops a run it cannot wait for). The job goes back to the
 * dispatch queue ahead of the jobs waiting, past queue_size: local
 * backends put it at the head of their queue (a closed queue takes
 * nothing: the record stays QUEUED and the next start's recover queues it
 * in t_queued order); redis keeps its stream entry pending and marks it
 * long idle, so the next claim of any node takes it before new entries, as
 * a queued job (attempt + 1, tries + 1 from what the release wrote; not
 * counted in stats.reclaimed).
 *
 * A generate first transitions an idle job to QUEUED (so a second one gets
 * CONFLICT, the API's 409), then either completes it from the result cache
 * (QUEUED -> COMPLETED) or enqueues it; when the queue is FULL the caller
 * transitions it back. A QUEUED record is therefore either waiting in the
 * dispatch queue or held by the request that claimed it.
 *
 * Store-owned fields: id (the key), seq (insertion order, assigned by
 * insert), attempt (grown only by claim), owner (set by claim), and the
 * upload's ext, image_sha256, upload_bytes and t_created (set by insert).
 * transition never changes them: it writes every other field of `next`.
 * A caller builds `next` from a record it read (get, or a claim's copy) and
 * changes what its transition is about; the store returns what was there
 * before in *prev, read and replaced in one atomic step, so nothing the
 * caller read earlier can be overwritten unseen.
 *
 * Fencing: a worker ends its job with transition(next, PROCESSING,
 * fence = the attempt its claim returned). If the job was claimed again
 * since (a lease expired in the redis backend), the stored attempt is
 * higher and the write is refused with OD_STORE_FENCED, so a late worker can
 * never overwrite the newer attempt's outcome.
 *
 * Leases (the redis backend, issue #15): claim takes a lease; the backend
 * renews the leases of this process's running claims itself (a heartbeat
 * thread) until their end transition, so callers do not change. A claim
 * whose holder died is taken again by another node's claim (attempt + 1,
 * tries + 1); the late holder's end is then FENCED. A run claimed
 * max_attempts times is failed by the backend itself, with a reason, instead
 * of being returned: at recover (sqlite: the process died) or at claim
 * (redis: the lease lapsed). Subscribers learn it from the state a
 * subscribe sends (ws.c) and, in redis, from the event bus the backend
 * feeds. The queue bound (FULL) is then cluster-wide.
 *
 * ---- Guarantees ------------------------------------------------------------
 *
 * Thread-safety: every call may be made from any thread at any time between
 * od_store_open and od_store_close; each call is atomic (one transaction).
 * claim may block (block_ms); no other call waits on another caller's
 * progress. Callers hold no lock of theirs across a call that can block.
 *
 * Durability: when a call that changes a record returns OK, the change is as
 * durable as the backend promises (od_store_durable): memory - never;
 * sqlite - survives kill -9 and power loss (the WAL synced before the call
 * returns, as synchronous=FULL; store_sqlite.c shares one sync between
 * concurrent callers) for insert, transition and evict; claim (no sync)
 * survives kill -9 and may be rolled back by a power loss, which only means
 * the job runs again. A get never shows a change before it is durable. A caller
 * answers 2xx only after the call that backs it returned OK.
 *
 * Errors: every call returns an od_store_rc; od_store_rc_message() turns it
 * into a sentence for the client and the log. Out-parameters are written
 * only on OD_STORE_OK unless said otherwise.
 *
 * Times in records are wall-clock seconds (CLOCK_REALTIME, the store's
 * clock): they must mean the same after a restart or on another node.
 */
#ifndef ORFEAS_STORE_H
#define ORFEAS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "orfeasd.h"

typedef enum {
  OD_STORE_OK = 0,
  OD_STORE_NOT_FOUND, /* no such job (404; or forgotten since it was read) */
  OD_STORE_CONFLICT,  /* the job is not in a state this call may change:
                         generate while queued/processing (409), an insert
                         of an id that exists, an evict of an active job */
  OD_STORE_FULL,      /* a bound is reached: the dispatch queue
                         (--queue-size, 429) or the job table (--max-jobs) */
  OD_STORE_FENCED,    /* the caller's claim is not the job's current attempt
                         any more: its result must be dropped */
  OD_STORE_EMPTY,     /* claim: nothing to run within block_ms; evict: no
                         idle job to remove */
  OD_STORE_CLOSED,    /* the dispatch queue is closed (shutting down) */
  OD_STORE_DOWN,      /* the backend is unreachable or failed (503) */
  OD_STORE_GONE,      /* get: the job was removed with a reason (410) */
  OD_STORE_RC_COUNT
} od_store_rc;

/* A sentence for an operator or a client, e.g. for OD_STORE_FULL "the job
 * queue is full; retry after the Retry-After seconds". Static. */
const char *od_store_rc_message(od_store_rc rc);
/* A short word for logs and metric labels: "ok", "not_found", ... */
const char *od_store_rc_name(od_store_rc rc);

/* Bit of a state in a `from` set, and the usual sets. */
#define OD_STATE_BIT(s) (1u << (unsigned)(s))
#define OD_STATES_IDLE                                                         \
  (OD_STATE_BIT(OD_JOB_UPLOADED) | OD_STATE_BIT(OD_JOB_COMPLETED) |            \
   OD_STATE_BIT(OD_JOB_FAILED))
#define OD_STATES_ACTIVE                                                       \
  (OD_STATE_BIT(OD_JOB_QUEUED) | OD_STATE_BIT(OD_JOB_PROCESSING))
#define OD_STATES_ANY ((1u << OD_JOB_STATE_COUNT) - 1u)

/* One job as stored: plain data, memcpy-able, one row / one hash. */
typedef struct {
  /* Set by insert; never changed afterwards. */
  char id[37];
  uint64_t seq;             /* insertion order (store-assigned, from 1) */
  char ext[8];              /* of the stored upload: "png", "jpg" */
  uint8_t image_sha256[32]; /* digest of the upload, computed once */
  uint64_t upload_bytes;
  double t_created;
  /* Written by transition. */
  od_job_state state;
  od_generate_req req;   /* the parameters, from queued on */
  uint8_t cache_key[32]; /* od_jobs cache key of image + req */
  int cached;            /* completed from the result cache */
  char output_name[96];  /* model_<id>.<fmt> once completed, else "" */
  uint64_t output_bytes;
  double score;
  char grade[3];
  int printable;
  char error[256]; /* why it failed */
  int http_status; /* of a failed job: 400 the client's fault */
  /* Where the job stood at its last transition (live progress while it
   * runs is kept apart, in worker.c, so it never costs a store write). */
  char stage[32];
  double progress;       /* 0..100 */
  double stage_progress; /* 0..1 */
  double t_queued, t_started, t_ended;
  int tries; /* claims of this run: the generate that queues it writes 0,
                each claim adds 1; past max_attempts the backend fails it */
  double hold_until; /* evict(NULL) passes over the job until then (wall
                        clock): an upload refused with 429 keeps its slot */
  /* Owned by claim. */
  int attempt;    /* 0 until claimed; +1 per claim: the fence */
  char owner[64]; /* who holds it while processing */
} od_job_rec;

/* Counters over every record, taken in one atomic read. */
typedef struct {
  int64_t by_state[OD_JOB_STATE_COUNT];
  int64_t jobs;           /* records held */
  int64_t queue_depth;    /* enqueued and not yet claimed */
  double oldest_queued_s; /* age of the head of the queue; 0 if empty */
  uint64_t upload_bytes;  /* sum over records */
  uint64_t output_bytes;  /* sum over records */
  int64_t tombstones;     /* removed jobs remembered (at most max_jobs) */
  /* redis (issue #15), counted by this process since open; 0 elsewhere: */
  int64_t reclaimed; /* claims it took over from a lapsed lease */
  int64_t fenced;    /* lease renewals refused: another node took the job */
  int64_t nodes;     /* redis: node ids the cluster knows (orfeas:lease) */
} od_store_stats;

/* Which job evict removes, and what it leaves behind. */
typedef struct {
  const char *id;     /* this job; NULL: the oldest idle job (lowest seq)
                         not held (hold_until <= now) */
  double idle_before; /* id NULL and > 0: only a job idle since before this
                         wall time (t_ended; t_created if it never ran) */
  const char *reason; /* its tombstone (get answers GONE with it, at most
                         255 bytes); NULL: none, get says NOT_FOUND */
} od_evict_sel;

typedef struct {
  int queue_size;            /* --queue-size: the dispatch queue's bound */
  int max_jobs;              /* --max-jobs: records held at most */
  int max_attempts;          /* claims of one job before it fails (recover;
                                redis reclaim). 0 = 3 */
  const char *data_dir;      /* for relative paths; may be NULL */
  const char *node_id;       /* redis: this node's name (--node-id), in owners
                                and as its stream consumer; may be NULL */
  double lease_s;            /* redis: a claim not renewed this long is taken
                                over by another node (--store-lease). 0 = 10 */
  const char *password_file; /* redis: AUTH's password is this file's first
                                line (--store-password-file); NULL: none.
                                Other backends refuse it */
} od_store_opts;

typedef struct od_store od_store;

/* What a node does with the events of the cluster's event bus (redis). */
typedef struct {
  /* A job's event, published by some node (this one included): ev is an
   * od_ws_event, text its JSON; or ev -1 (text ""): the job's state
   * changed without an event (the store failed it), look it up. */
  void (*on_event)(void *u, const char *id, int ev, const char *text);
  /* The bus was (re)connected: messages may have been lost meanwhile. */
  void (*on_resync)(void *u);
  void *u;
} od_store_listener;

/* ---- the backend interface ------------------------------------------------
 *
 * Implement every function; the od_store_* wrappers below document each and
 * are what callers use. `be` is the backend's own state from open. */
typedef struct od_store_ops {
  const char *scheme; /* "memory": matches "memory:..." */
  int durable;        /* 1 when OK means it survives kill -9 */
  int shared;         /* 1 when other orfeasd processes use it too */
  /* rest: the URL after "scheme:". */
  od_store_rc (*open)(const char *rest, const od_store_opts *o, void **be,
                      char *err, size_t err_len);
  /* Optional: 0 when rest is well formed, else -1 with a sentence in err;
   * no connection, nothing opened (config.c refuses a bad --store with it
   * before anything starts: exit 2). */
  int (*check_url)(const char *rest, char *err, size_t err_len);
  void (*close)(void *be);
  od_store_rc (*recover)(void *be,
                         void (*each)(const od_job_rec *r, od_job_state was,
                                      void *u),
                         void *u);
  od_store_rc (*insert)(void *be, od_job_rec *r);
  od_store_rc (*get)(void *be, const char *id, od_job_rec *out);
  od_store_rc (*transition)(void *be, const od_job_rec *next, unsigned from,
                            int fence, od_job_rec *prev);
  od_store_rc (*enqueue)(void *be, const char *id, int *position);
  od_store_rc (*claim)(void *be, const char *owner, int block_ms,
                       od_job_rec *out);
  od_store_rc (*position)(void *be, const char *id, int *position);
  od_store_rc (*requeue_stranded)(void *be, double before, int *n);
  od_store_rc (*evict)(void *be, const od_evict_sel *sel, od_job_rec *gone);
  od_store_rc (*stats)(void *be, od_store_stats *st);
  void (*close_queue)(void *be, void (*each)(const char *id, void *u), void *u);
  od_store_rc (*ping)(void *be); /* may be NULL: always up */
  /* The event bus (redis; NULL elsewhere): see od_store_publish. */
  od_store_rc (*publish)(void *be, const char *id, int ev, const char *text);
  int (*listen)(void *be, const od_store_listener *l, char *err,
                size_t err_len);
  /* A cluster-wide rate limit (redis; NULL elsewhere): see
   * od_store_rate_take. */
  od_store_rc (*rate_take)(void *be, const char *key, double rate, double burst,
                           int *wait_s);
} od_store_ops;

/* The backends compiled in (store.c lists them). */
extern const od_store_ops od_store_memory_ops;
extern const od_store_ops od_store_sqlite_ops;
extern const od_store_ops od_store_redis_ops;

/* ---- calls --------------------------------------------------------------- */

/* Opens the store named by url ("memory:"; see the top). NULL with a
 * sentence in err naming the URL when the scheme is unknown or the backend
 * cannot start. */
od_store *od_store_open(const char *url, const od_store_opts *o, char *err,
                        size_t err_len);
/* 0 when url names a known backend ("scheme:...") in a form it takes (a
 * redis:// URL without a password), and password_file (NULL or "" for none)
 * is for a backend that takes one; else -1 with a sentence in err (naming
 * the known backends for an unknown scheme). config.c checks --store and
 * --store-password-file with it; od_store_open checks the same again. */
int od_store_url_check(const char *url, const char *password_file, char *err,
                       size_t err_len);
/* url as logs and messages may show it: the user part of
 * "scheme://USER:PASS@..." replaced by "***". */
void od_store_url_shown(const char *url, char *out, size_t size);
/* Closes the queue (if still open) and frees everything. No call may run
 * meanwhile or after. NULL is fine. */
void od_store_close(od_store *s);
/* "memory", "sqlite", ... */
const char *od_store_kind(const od_store *s);
/* 1 when an OK survives kill -9 (see Durability above). */
int od_store_durable(const od_store *s);
/* 1 when other orfeasd nodes use the same store (redis): the records and
 * the data dir are not this process's alone, so start-up removes no file
 * as an orphan and counts no running job as its own. */
int od_store_shared(const od_store *s);

/* Start-up, once, before any claim: settles what a previous run of the
 * service left behind (a durable backend re-queues processing jobs whose
 * tries are below max_attempts, fails the others with a reason, and
 * re-enqueues queued jobs in t_queued order, past queue_size if need be)
 * and then calls each(record, was) once for every job kept, in seq order,
 * with `was` the state stored before recovery, so the caller can account
 * for files and gauges. memory: nothing was left behind; each() is called
 * for every record held (none after open). */
od_store_rc od_store_recover(od_store *s,
                             void (*each)(const od_job_rec *r, od_job_state was,
                                          void *u),
                             void *u);

/* Adds a new job (r->state must be UPLOADED). Assigns r->seq, zeroes
 * r->attempt and r->owner. The upload's bytes are already durable (the
 * caller wrote them first). CONFLICT: the id exists; FULL: max_jobs
 * records are held (evict one, then retry). */
od_store_rc od_store_insert(od_store *s, od_job_rec *r);

/* Copies a job's record. NOT_FOUND when there is none; GONE when it was
 * evicted with a reason: then (only) out->id, out->error (the reason) and
 * out->t_ended (when) are set, the rest zero. */
od_store_rc od_store_get(od_store *s, const char *id, od_job_rec *out);

/* Compare-and-set: replaces the record next->id with next (store-owned
 * fields excepted, see the top) when its stored state is in `from` (a set
 * of OD_STATE_BIT) and, if fence > 0, its stored attempt equals fence.
 * prev (may be NULL) receives the record as it was just before, on OK and on
 * CONFLICT/FENCED (to say what was found). NOT_FOUND: no such job;
 * CONFLICT: the state is not in `from`; FENCED: the attempt differs. On any
 * rc but OK nothing was written. next->state == QUEUED does not enqueue. */
od_store_rc od_store_transition(od_store *s, const od_job_rec *next,
                                unsigned from, int fence, od_job_rec *prev);

/* Puts a QUEUED job at the end of the dispatch queue; *position is its
 * 0-based place in line. CONFLICT: the job is not QUEUED or is already
 * enqueued; FULL: queue_size jobs wait (the record stays QUEUED: the caller
 * transitions it back); CLOSED: the queue is closed. */
od_store_rc od_store_enqueue(od_store *s, const char *id, int *position);

/* Takes the oldest enqueued job for a worker named owner: its record goes
 * QUEUED -> PROCESSING with attempt and tries + 1, t_started = now and owner
 * set, and
 * *out is the record as written. Waits up to block_ms for one (-1: until one
 * comes or the queue closes; 0: not at all). EMPTY: none in time; CLOSED:
 * the queue is closed and nothing waits. */
od_store_rc od_store_claim(od_store *s, const char *owner, int block_ms,
                           od_job_rec *out);

/* Dispatches again the QUEUED jobs queued (t_queued) before `before`, wall
 * clock, that wait in no dispatch queue: a request that queued one (a
 * generate's transition) and died or lost the store before its next write
 * (the enqueue, or the give-back of a refused one) left it so, and nothing
 * else would ever run or release it (a client's new generate gets 409).
 * They go to the end of the queue, past queue_size; *n: how many. A
 * request holds such a record only for its next store call, so `before`
 * must be well past any call's time (jobs.c: a minute ago). Duplicates
 * are harmless: a claim skips an id that is not QUEUED any more. CLOSED:
 * the queue is closed (the next start's recover queues them). */
od_store_rc od_store_requeue_stranded(od_store *s, double before, int *n);

/* The job's 0-based place in the dispatch queue, -1 when it does not wait
 * there (not queued, or claimed-but-not-enqueued). NOT_FOUND: no such job. */
od_store_rc od_store_position(od_store *s, const char *id, int *position);

/* Removes an idle job (uploaded, completed or failed) chosen by sel (see
 * od_evict_sel), leaves a tombstone when sel->reason is set, and copies
 * what the job was into *gone (may be NULL), so the caller can delete its
 * files (after: the record goes first). CONFLICT: the named job is queued
 * or processing; NOT_FOUND: no such job; EMPTY (id NULL): no idle job fits
 * (every job is active, held or too recent, or there is none). */
od_store_rc od_store_evict(od_store *s, const od_evict_sel *sel,
                           od_job_rec *gone);

/* Counts by state, queue depth and age, stored bytes. */
od_store_rc od_store_get_stats(od_store *s, od_store_stats *st);

/* Shutdown: closes the dispatch queue (enqueue then says CLOSED, claim
 * CLOSED once nothing waits) and hands each job id that was still waiting
 * to each(id) in queue order, with no store lock held; the record stays
 * QUEUED: what becomes of it is the caller's choice (fail it with a reason,
 * or leave it queued for the next start of a durable store). Idempotent. */
void od_store_close_queue(od_store *s, void (*each)(const char *id, void *u),
                          void *u);

/* OK while the backend can read and write; DOWN otherwise (sqlite: its last
 * write failed and a probe write still fails; redis: no connection). Cheap
 * enough for every /ready. */
od_store_rc od_store_ping(od_store *s);

/* ---- the event bus (issue #15) ------------------------------------------
 * A shared store carries the jobs' progress events between nodes: a node
 * publishes each event of a job it runs, and every node (itself included)
 * gets it back through its listener and forwards it to its own WebSocket
 * clients. Delivery is at most once (Redis pub/sub): the job's record
 * stays the truth, which a subscribe, and on_resync, send again. */

/* 1 when the store has an event bus (then events go through it). */
int od_store_has_bus(const od_store *s);
/* Hands an event to the bus without waiting for Redis (a bounded queue,
 * sent in order by one thread). FULL: the queue is full, dropped; EMPTY:
 * no bus. */
od_store_rc od_store_publish(od_store *s, const char *id, int ev,
                             const char *text);
/* Starts the listener thread (once; it stops at od_store_close). 0, or -1
 * with err filled (no bus, or no thread). */
int od_store_listen(od_store *s, const od_store_listener *l, char *err,
                    size_t err_len);

/* A token of key's bucket (rate tokens/s, burst tokens) shared by every
 * node (redis: one hash per key with Redis' clock, expiring once it would
 * be full again, so the keys held are the clients of the last burst/rate
 * seconds). OK and *wait_s: 0 allowed, else whole seconds (>= 1) until a
 * token; EMPTY: the store has no shared limiter; DOWN. */
od_store_rc od_store_rate_take(od_store *s, const char *key, double rate,
                               double burst, int *wait_s);

/* ---- observation (store.c) ------------------------------------------------
 * Every call but claim (it waits for work) is timed and its rc reported to
 * fn, for the orfeas_store_* metrics. fn runs on the calling thread, must
 * be quick and must not call the store. Set before any other thread uses
 * the store. */
typedef enum {
#define OD_STORE_OP_LIST(X)                                                    \
  X(RECOVER, "recover")                                                        \
  X(INSERT, "insert")                                                          \
  X(GET, "get")                                                                \
  X(TRANSITION, "transition")                                                  \
  X(ENQUEUE, "enqueue")                                                        \
  X(POSITION, "position")                                                      \
  X(EVICT, "evict")                                                            \
  X(REQUEUE, "requeue")                                                        \
  X(STATS, "stats")                                                            \
  X(PING, "ping")
#define OD_STORE_OP_ENUM(id, name) OD_STORE_OP_##id,
  OD_STORE_OP_LIST(OD_STORE_OP_ENUM)
#undef OD_STORE_OP_ENUM
      OD_STORE_OP_COUNT
} od_store_op;
/* "insert", ...: the op label. */
const char *od_store_op_name(od_store_op op);
void od_store_set_observer(od_store *s,
                           void (*fn)(void *u, od_store_op op, od_store_rc rc,
                                      double seconds),
                           void *u);

/* ---- test hook (redis) ---------------------------------------------------
 * NULL in orfeasd. When set (tests/unit/test_od_store.c, before any claim),
 * a redis claim calls it on the claiming thread with "" just before each
 * blocking XREADGROUP, and with the entry that read delivered just before
 * it starts it: a test can add the entry then, and stall a node between
 * the delivery and the start past its lease. */
extern void (*od_store_redis_claim_hook)(const char *entry);

#endif
