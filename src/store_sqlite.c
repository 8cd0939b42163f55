/* store_sqlite.c: the job store in one SQLite file ("sqlite:PATH", the
 * default sqlite:DATA_DIR/jobs.db). Survives kill -9 and, for everything a
 * 2xx rests on, power loss.
 *
 * Shape: the in-memory table (memtab.c) answers every read (get, position,
 * stats: no SQL on the hot paths) and makes every decision (the
 * compare-and-set, the fence, which job a claim or an evict takes); the
 * database is the record. A change is: lock `wmu` (one writer at a time),
 * decide in the table, write the row and commit, apply the change to the
 * table behind a shadow, release `wmu`, wait for the WAL's sync (shared,
 * below), lift the shadow. A reader never sees a change before it is
 * durable.
 *
 *   jobs   one row per record, every od_job_rec field a column (the list
 *          JOB_COLUMNS below makes the schema, the INSERT and the read)
 *   gone   tombstones (id, reason, when), at most max_jobs: the oldest go
 *   probe  one row a ping rewrites while the store is down
 *
 * Durability: journal_mode=WAL, synchronous=NORMAL, and a group commit of
 * our own on top: insert, transition and evict (the writes a 2xx rests on:
 * upload, generate's queued or cached completion, a job's end; and the
 * removals whose files are deleted next) return only once the WAL holding
 * their commit is fdatasync'ed, which is what synchronous=FULL does at each
 * commit, except that the sync is shared: a thread that finds a sync
 * running for its commit waits for it, and one sync covers every commit
 * written before it started (commits are sequential in the WAL, so syncing
 * it up to a point makes everything before that point durable). Under
 * concurrent requests a sync then serves many; it is also done outside
 * `wmu`, so the next change is decided and written while the disk works. A
 * claim does not wait (it survives kill -9, and a power loss only means
 * the job runs again). SQLite's own checkpoints sync the WAL and the
 * database file as NORMAL prescribes.
 *
 * Readers see only what is durable: between its commit and its sync a
 * change is applied to the table (the next change's compare-and-set must
 * see it) but the record as it was stays as a shadow, and get answers from
 * the shadow until the sync; an insert's shadow says "no such job". The
 * shadows live under the table's lock, so a get sees either a shadow or a
 * durable record.
 *
 * Start-up (recover): every row is loaded; a processing row belonged to
 * the dead process: below --max-attempts tries it is queued again, else it
 * fails with a reason; queued rows enter the dispatch queue in t_queued
 * order (past --queue-size if a smaller bound is set now). One commit.
 *
 * Faults: open refuses a file that is not a job store (not SQLite,
 * corrupt per quick_check, or a newer schema: user_version) with a
 * sentence naming it, so orfeasd exits instead of starting empty. A failed
 * write (disk full, I/O error) answers DOWN, changes nothing, marks the
 * store down (ping: DOWN, probing with a real write at most every 0.5 s
 * until one succeeds) and logs once per outage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "memtab.h"

#define SCHEMA_VERSION 1 /* PRAGMA user_version; what open accepts */
#define STR_(x) #x
#define STR(x) STR_(x)
#define PROBE_EVERY_S 0.5

/* name, kind, field of od_job_rec. Kinds: T text (a char array), B a
 * 32-byte blob, I an int or enum, L a 64-bit integer, R a double. */
#define JOB_COLUMNS(X)                                                         \
  X(id, T, id)                                                                 \
  X(seq, L, seq)                                                               \
  X(ext, T, ext)                                                               \
  X(image_sha256, B, image_sha256)                                             \
  X(upload_bytes, L, upload_bytes)                                             \
  X(t_created, R, t_created)                                                   \
  X(state, I, state)                                                           \
  X(format, I, req.format)                                                     \
  X(mode, I, req.mode)                                                         \
  X(quality, I, req.quality)                                                   \
  X(width, R, req.width)                                                       \
  X(height, R, req.height)                                                     \
  X(depth, R, req.depth)                                                       \
  X(cache_key, B, cache_key)                                                   \
  X(cached, I, cached)                                                         \
  X(output_name, T, output_name)                                               \
  X(output_bytes, L, output_bytes)                                             \
  X(score, R, score)                                                           \
  X(grade, T, grade)                                                           \
  X(printable, I, printable)                                                   \
  X(error, T, error)                                                           \
  X(http_status, I, http_status)                                               \
  X(stage, T, stage)                                                           \
  X(progress, R, progress)                                                     \
  X(stage_progress, R, stage_progress)                                         \
  X(t_queued, R, t_queued)                                                     \
  X(t_started, R, t_started)                                                   \
  X(t_ended, R, t_ended)                                                       \
  X(tries, I, tries)                                                           \
  X(hold_until, R, hold_until)                                                 \
  X(attempt, I, attempt)                                                       \
  X(owner, T, owner)

#define SQL_T "TEXT NOT NULL"
#define SQL_B "BLOB NOT NULL"
#define SQL_I "INTEGER NOT NULL"
#define SQL_L "INTEGER NOT NULL"
#define SQL_R "REAL NOT NULL"
#define COL_DEF(name, kind, field) #name " " SQL_##kind ", "
#define COL_ENUM(name, kind, field) COL_##name,

enum { JOB_COLUMNS(COL_ENUM) NCOLS };

#define SCHEMA                                                                 \
  "CREATE TABLE jobs(" JOB_COLUMNS(                                            \
      COL_DEF) "PRIMARY KEY(id)) WITHOUT ROWID;"                               \
               "CREATE TABLE gone(n INTEGER PRIMARY KEY AUTOINCREMENT, "       \
               "id TEXT NOT NULL UNIQUE, reason TEXT NOT NULL, t_gone REAL "   \
               "NOT NULL);"                                                    \
               "CREATE TABLE probe(k INTEGER PRIMARY KEY, t REAL NOT NULL);"

enum {
  S_PUT,    /* INSERT OR REPLACE INTO jobs VALUES(...) */
  S_DEL,    /* DELETE FROM jobs WHERE id=? */
  S_BURY,   /* a tombstone */
  S_UNBURY, /* DELETE FROM gone WHERE id=? */
  S_TRIM,   /* the tombstones past max_jobs */
  S_PROBE,  /* ping's write */
  S_BEGIN,
  S_COMMIT,
  S_ROLLBACK,
  NSTMT
};

typedef struct {
  od_memtab *t;        /* owned; first, for the od_memtab_call_* functions */
  pthread_mutex_t wmu; /* one change at a time: decide, write, apply */
  sqlite3 *db;         /* owned; used only under wmu */
  sqlite3_stmt *st[NSTMT];
  char path[PATH_MAX];
  int max_jobs, max_attempts;
  _Atomic int up;    /* 0 after a failed write, until a write succeeds */
  double last_probe; /* under wmu */
  /* Group commit: commits counted under wmu; syncs of the WAL under smu. */
  int wal_fd;                 /* owned: PATH-wal, for fdatasync */
  _Atomic uint64_t committed; /* commits written to the WAL so far */
  pthread_mutex_t smu;
  pthread_cond_t synced_cv;
  uint64_t synced; /* commits known durable (under smu) */
  uint64_t failed; /* commits a failed sync was to cover, up to (under smu) */
  int syncing;     /* a thread is in fdatasync (under smu) */
  /* Records as they were before a commit not yet synced (under the
   * table's lock); at most one per writer waiting for a sync. */
  struct shadow *shadows; /* owned */
  size_t nshadows, cap_shadows;
} sq;

typedef struct shadow {
  uint64_t seq;   /* the commit it hides */
  int absent;     /* the job did not exist before it (an insert) */
  od_job_rec rec; /* else the record before it */
} shadow;

/* ---- rows ---------------------------------------------------------------- */

static void bind_rec(sqlite3_stmt *s, const od_job_rec *r) {
#define BIND_T(k, f) sqlite3_bind_text(s, k, r->f, -1, SQLITE_STATIC)
#define BIND_B(k, f) sqlite3_bind_blob(s, k, r->f, 32, SQLITE_STATIC)
#define BIND_I(k, f) sqlite3_bind_int(s, k, (int)r->f)
#define BIND_L(k, f) sqlite3_bind_int64(s, k, (sqlite3_int64)r->f)
#define BIND_R(k, f) sqlite3_bind_double(s, k, r->f)
#define BIND_COL(name, kind, field) BIND_##kind(COL_##name + 1, field);
  JOB_COLUMNS(BIND_COL)
}

static void text_col(sqlite3_stmt *s, int k, char *out, size_t len) {
  const unsigned char *v = sqlite3_column_text(s, k);
  snprintf(out, len, "%s", v ? (const char *)v : "");
}

static void blob_col(sqlite3_stmt *s, int k, uint8_t out[32]) {
  const void *v = sqlite3_column_blob(s, k);
  memset(out, 0, 32);
  if (v != NULL && sqlite3_column_bytes(s, k) == 32)
    memcpy(out, v, 32);
}

static void read_rec(sqlite3_stmt *s, od_job_rec *r) {
  memset(r, 0, sizeof *r);
#define READ_T(k, f) text_col(s, k, r->f, sizeof r->f)
#define READ_B(k, f) blob_col(s, k, r->f)
#define READ_I(k, f) r->f = sqlite3_column_int(s, k)
#define READ_L(k, f) r->f = (uint64_t)sqlite3_column_int64(s, k)
#define READ_R(k, f) r->f = sqlite3_column_double(s, k)
#define READ_COL(name, kind, field) READ_##kind(COL_##name, field);
  JOB_COLUMNS(READ_COL)
  snprintf(r->req.job_id, sizeof r->req.job_id, "%s", r->id);
  if ((unsigned)r->state >= OD_JOB_STATE_COUNT)
    r->state = OD_JOB_FAILED;
}

/* ---- statements ---------------------------------------------------------- */

/* Runs a prepared statement to its end and resets it; 0, or -1 (the
 * connection's message says why). */
static int run(sq *q, int k) {
  sqlite3_stmt *s = q->st[k];
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW)
    ;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* A write failed: the store is down until one succeeds (logged once). */
static void write_failed(sq *q, const char *what) {
  if (q->up)
    od_log("job store %s: %s failed: %s; the store is down until writes work "
           "again (/ready 503)",
           q->path, what, sqlite3_errmsg(q->db));
  q->up = 0;
}

static void write_worked(sq *q) {
  if (!q->up)
    od_log("job store %s: writes work again", q->path);
  q->up = 1;
}

/* The end of a write: 0 when ok; else what was begun is rolled back, the
 * store is marked down, and -1. */
static int write_done(sq *q, int ok, const char *what) {
  if (!ok) {
    write_failed(q, what);
    if (!sqlite3_get_autocommit(q->db))
      run(q, S_ROLLBACK);
    return -1;
  }
  write_worked(q);
  return 0;
}

/* Waits until commit number seq is durable: syncs the WAL itself (for
 * every commit written so far) unless a sync that covers seq is running or
 * done. 0, or -1 when the sync failed (the store is then down). Called
 * without wmu.
 *
 * A failed sync fails every commit written before it returned, not only
 * its caller's (q->failed): Linux reports a writeback error once per file
 * description, so a waiter that synced again after it would get 0 for
 * bytes the failed sync may have lost, and answer 2xx. As fileio.c's
 * shared folder fsync does for renames. */
static int wait_durable(sq *q, uint64_t seq) {
  int rc = 0;
  pthread_mutex_lock(&q->smu);
  while (q->synced < seq && rc == 0) {
    if (q->failed >= seq) {
      rc = -1;
      break;
    }
    if (q->syncing) {
      pthread_cond_wait(&q->synced_cv, &q->smu);
      continue;
    }
    q->syncing = 1;
    uint64_t target = q->committed;
    pthread_mutex_unlock(&q->smu);
    int e = fdatasync(q->wal_fd) == 0 ? 0 : errno;
    pthread_mutex_lock(&q->smu);
    q->syncing = 0;
    if (e == 0 && target > q->synced)
      q->synced = target;
    if (e != 0) {
      od_log("job store %s: syncing the WAL failed: %s", q->path, strerror(e));
      q->up = 0;
      /* Every commit written so far, not only those it was to cover: the
       * pages of a commit written while it ran may be what failed, and
       * their error is reported to this sync only. */
      uint64_t upto = atomic_load(&q->committed);
      if (upto > q->failed)
        q->failed = upto;
      rc = -1;
    }
    pthread_cond_broadcast(&q->synced_cv);
  }
  pthread_mutex_unlock(&q->smu);
  return rc;
}

/* Hides commit seq's change of a job from readers until it is durable:
 * before (NULL: the job did not exist). Under the table's lock, before the
 * change is applied. -1 when out of memory (the caller then waits for the
 * sync before applying). */
static int shadow_add(sq *q, uint64_t seq, const od_job_rec *before,
                      const char *id) {
  if (q->nshadows == q->cap_shadows) {
    size_t nc = q->cap_shadows ? q->cap_shadows * 2 : 16;
    shadow *g = realloc(q->shadows, nc * sizeof *g);
    if (g == NULL)
      return -1;
    q->shadows = g;
    q->cap_shadows = nc;
  }
  shadow *h = &q->shadows[q->nshadows++];
  h->seq = seq;
  h->absent = before == NULL;
  if (before != NULL)
    h->rec = *before;
  else
    snprintf(h->rec.id, sizeof h->rec.id, "%s", id);
  return 0;
}

/* The shadow of commit seq goes (it is durable now). Table's lock. */
static void shadow_drop(sq *q, uint64_t seq) {
  for (size_t i = 0; i < q->nshadows; i++)
    if (q->shadows[i].seq == seq) {
      q->shadows[i] = q->shadows[--q->nshadows];
      return;
    }
}

/* Applies a committed change to the table behind a shadow, waits for its
 * sync, then lifts the shadow. apply(q, arg) runs under the table's lock.
 * Called with wmu held; returns with it released. 0, or -1 when the sync
 * failed. */
static int apply_durably(sq *q, uint64_t seq, const od_job_rec *before,
                         const char *id, void (*apply)(sq *q, const void *a),
                         const void *arg) {
  od_memtab_lock(q->t);
  int shadowed = shadow_add(q, seq, before, id) == 0;
  if (shadowed)
    apply(q, arg);
  od_memtab_unlock(q->t);
  if (!shadowed) { /* out of memory: apply once durable, wmu still held */
    int rc = wait_durable(q, seq);
    od_memtab_lock(q->t);
    apply(q, arg);
    od_memtab_unlock(q->t);
    pthread_mutex_unlock(&q->wmu);
    return rc;
  }
  pthread_mutex_unlock(&q->wmu);
  int rc = wait_durable(q, seq);
  od_memtab_lock(q->t);
  shadow_drop(q, seq);
  od_memtab_unlock(q->t);
  return rc;
}

/* One committed write of record r (insert or replace); the commit's number
 * for wait_durable, 0 on failure. */
static uint64_t put_row(sq *q, const od_job_rec *r, int unbury) {
  int ok = 1;
  if (unbury) {
    ok = run(q, S_BEGIN) == 0;
    sqlite3_bind_text(q->st[S_UNBURY], 1, r->id, -1, SQLITE_STATIC);
    ok = ok && run(q, S_UNBURY) == 0;
  }
  if (ok) {
    bind_rec(q->st[S_PUT], r);
    ok = run(q, S_PUT) == 0;
  }
  if (unbury)
    ok = ok && run(q, S_COMMIT) == 0;
  return write_done(q, ok, "a job write") == 0 ? ++q->committed : 0;
}

/* A removed job's tombstone (410 with the reason, across restarts), the
 * oldest past max_jobs trimmed; inside the caller's transaction. 0, or -1. */
static int bury(sq *q, const char *id, const char *reason, double t_gone) {
  sqlite3_bind_text(q->st[S_BURY], 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(q->st[S_BURY], 2, reason, -1, SQLITE_STATIC);
  sqlite3_bind_double(q->st[S_BURY], 3, t_gone);
  if (run(q, S_BURY) != 0)
    return -1;
  sqlite3_int64 last = sqlite3_last_insert_rowid(q->db);
  sqlite3_bind_int64(q->st[S_TRIM], 1, last - q->max_jobs);
  return run(q, S_TRIM);
}

/* Deletes a row and, with a reason, buries it (bounded), in one commit;
 * the commit's number, 0 on failure. */
static uint64_t delete_row(sq *q, const char *id, const char *reason,
                           double t_gone) {
  int ok = run(q, S_BEGIN) == 0;
  sqlite3_bind_text(q->st[S_DEL], 1, id, -1, SQLITE_STATIC);
  ok = ok && run(q, S_DEL) == 0;
  if (ok && reason != NULL)
    ok = bury(q, id, reason, t_gone) == 0;
  ok = ok && run(q, S_COMMIT) == 0;
  return write_done(q, ok, "a job removal") == 0 ? ++q->committed : 0;
}

/* ---- open and close ------------------------------------------------------ */

/* The first row's first column of sql as text into out; 0, or -1. */
static int query_text(sqlite3 *db, const char *sql, char *out, size_t len) {
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
  if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    const unsigned char *v = sqlite3_column_text(s, 0);
    snprintf(out, len, "%s", v ? (const char *)v : "");
    rc = SQLITE_OK;
  }
  sqlite3_finalize(s);
  return rc == SQLITE_OK ? 0 : -1;
}

static void sq_free(sq *q) {
  for (int k = 0; k < NSTMT; k++)
    sqlite3_finalize(q->st[k]);
  sqlite3_close(q->db);
  if (q->wal_fd >= 0)
    close(q->wal_fd);
  od_memtab_free(q->t);
  free(q->shadows);
  pthread_cond_destroy(&q->synced_cv);
  pthread_mutex_destroy(&q->smu);
  pthread_mutex_destroy(&q->wmu);
  free(q);
}

/* Opens the file and checks it is a job store this build can use; creates
 * the schema in a new (empty) file. 0, or -1 with a sentence in err. */
static int open_db(sq *q, char *err, size_t err_len) {
  struct stat st;
  int exists = stat(q->path, &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    snprintf(err, err_len, "%s is not a regular file", q->path);
    return -1;
  }
  /* An existing non-empty file must open as it is: never created anew. */
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (!exists || st.st_size == 0)
    flags |= SQLITE_OPEN_CREATE;
  if (sqlite3_open_v2(q->path, &q->db, flags, NULL) != SQLITE_OK) {
    snprintf(err, err_len, "cannot open %s: %s", q->path,
             q->db ? sqlite3_errmsg(q->db) : "out of memory");
    return -1;
  }
  sqlite3_extended_result_codes(q->db, 1);
  sqlite3_busy_timeout(q->db, 5000);
  char v[64] = "";
  if (query_text(q->db, "PRAGMA user_version", v, sizeof v) != 0) {
    snprintf(err, err_len,
             "%s is not a readable job store (%s); move it away to start "
             "with no jobs, or restore it from a backup",
             q->path, sqlite3_errmsg(q->db));
    return -1;
  }
  long version = strtol(v, NULL, 10);
  if (version > SCHEMA_VERSION) {
    snprintf(err, err_len,
             "%s has job-store schema version %ld; this orfeasd reads "
             "versions up to %d: run a newer orfeasd, or move the file away",
             q->path, version, SCHEMA_VERSION);
    return -1;
  }
  if (query_text(q->db, "PRAGMA journal_mode=WAL", v, sizeof v) != 0 ||
      strcmp(v, "wal") != 0) {
    snprintf(err, err_len, "%s: cannot switch to WAL mode (%s)", q->path,
             sqlite3_errmsg(q->db));
    return -1;
  }
  if (version > 0 &&
      (query_text(q->db, "PRAGMA quick_check", v, sizeof v) != 0 ||
       strcmp(v, "ok") != 0)) {
    snprintf(err, err_len,
             "%s is damaged (quick_check: %s); move it away to start with "
             "no jobs, or restore it from a backup",
             q->path, v[0] ? v : sqlite3_errmsg(q->db));
    return -1;
  }
  char *msg = NULL;
  if (version == 0)
    sqlite3_exec(q->db,
                 "BEGIN;" SCHEMA
                 "PRAGMA user_version=" STR(SCHEMA_VERSION) ";"
                                                            "COMMIT;",
                 NULL, NULL, &msg);
  if (msg != NULL) {
    snprintf(err, err_len, "%s: cannot create the job tables: %s", q->path,
             msg);
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static int prepare_all(sq *q, char *err, size_t err_len) {
  char put[64 + 2 * NCOLS] = "INSERT OR REPLACE INTO jobs VALUES(?";
  for (int k = 1; k < NCOLS; k++)
    strncat(put, ",?", sizeof put - strlen(put) - 1);
  strncat(put, ")", sizeof put - strlen(put) - 1);
  const char *sql[NSTMT] = {
      [S_PUT] = put,
      [S_DEL] = "DELETE FROM jobs WHERE id=?",
      [S_BURY] = "INSERT OR REPLACE INTO gone(id, reason, t_gone) "
                 "VALUES(?, ?, ?)",
      [S_UNBURY] = "DELETE FROM gone WHERE id=?",
      [S_TRIM] = "DELETE FROM gone WHERE n <= ?",
      [S_PROBE] = "INSERT OR REPLACE INTO probe VALUES(1, ?)",
      [S_BEGIN] = "BEGIN",
      [S_COMMIT] = "COMMIT",
      [S_ROLLBACK] = "ROLLBACK",
  };
  for (int k = 0; k < NSTMT; k++)
    if (sqlite3_prepare_v2(q->db, sql[k], -1, &q->st[k], NULL) != SQLITE_OK) {
      snprintf(err, err_len, "%s: %s: %s", q->path, sql[k],
               sqlite3_errmsg(q->db));
      return -1;
    }
  /* NORMAL: the group commit syncs the WAL itself (the top says why). A
   * first write makes sure the WAL file exists, to hold its descriptor. */
  char *msg = NULL;
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", q->path);
  sqlite3_bind_double(q->st[S_PROBE], 1, od_wall());
  if (sqlite3_exec(q->db, "PRAGMA synchronous=NORMAL", NULL, NULL, &msg) !=
          SQLITE_OK ||
      run(q, S_PROBE) != 0 || (q->wal_fd = open(wal, O_RDWR | O_CLOEXEC)) < 0) {
    snprintf(err, err_len, "%s: cannot set up its write-ahead log: %s", q->path,
             msg ? msg : strerror(errno));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static od_store_rc sq_open(const char *rest, const od_store_opts *o, void **be,
                           char *err, size_t err_len) {
  if (rest[0] == '\0') {
    snprintf(err, err_len, "the sqlite store needs a file (sqlite:PATH)");
    return OD_STORE_DOWN;
  }
  sq *q = calloc(1, sizeof *q);
  if (q == NULL) {
    snprintf(err, err_len, "out of memory");
    return OD_STORE_DOWN;
  }
  pthread_mutex_init(&q->wmu, NULL);
  pthread_mutex_init(&q->smu, NULL);
  pthread_cond_init(&q->synced_cv, NULL);
  q->wal_fd = -1;
  q->up = 1;
  q->max_jobs = o->max_jobs;
  q->max_attempts = o->max_attempts > 0 ? o->max_attempts : 3;
  if (snprintf(q->path, sizeof q->path, "%s", rest) >= (int)sizeof q->path) {
    snprintf(err, err_len, "the path is too long");
    sq_free(q);
    return OD_STORE_DOWN;
  }
  if ((q->t = od_memtab_new(o, err, err_len)) == NULL ||
      open_db(q, err, err_len) != 0 || prepare_all(q, err, err_len) != 0) {
    sq_free(q);
    return OD_STORE_DOWN;
  }
  *be = q;
  return OD_STORE_OK;
}

static void sq_close(void *be) { sq_free(be); }

/* ---- recover ------------------------------------------------------------- */

typedef struct {
  od_job_rec r;
  od_job_state was;
} loaded;

static int by_t_queued(const void *a, const void *b) {
  const od_job_rec *x = *(od_job_rec *const *)a, *y = *(od_job_rec *const *)b;
  if (x->t_queued != y->t_queued)
    return x->t_queued < y->t_queued ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* What a processing row of the dead process becomes. */
static void settle(sq *q, od_job_rec *r, double now) {
  r->owner[0] = '\0';
  if (r->tries < q->max_attempts) {
    r->state = OD_JOB_QUEUED;
    snprintf(r->stage, sizeof r->stage, "queued");
    r->progress = r->stage_progress = 0;
    r->t_started = 0;
    return;
  }
  r->state = OD_JOB_FAILED;
  snprintf(r->error, sizeof r->error,
           "orfeasd stopped %d time%s while this job ran (--max-attempts "
           "%d); it is not run again: submit it again, or report the "
           "image if this repeats",
           r->tries, r->tries == 1 ? "" : "s", q->max_attempts);
  r->http_status = 500;
  r->output_name[0] = '\0';
  r->output_bytes = 0;
  r->t_ended = now;
}

/* Reads every row into *out (malloc'd; *n of them) and every tombstone into
 * the table. 0, or -1 with the connection's message. */
static int load(sq *q, loaded **out, size_t *n) {
  sqlite3_stmt *s = NULL;
  size_t cap = 0;
  *out = NULL;
  *n = 0;
  int rc = sqlite3_prepare_v2(q->db, "SELECT * FROM jobs ORDER BY seq", -1, &s,
                              NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    rc = SQLITE_OK;
    if (*n == cap) {
      size_t nc = cap ? cap * 2 : 256;
      loaded *g = realloc(*out, nc * sizeof *g);
      if (g == NULL) {
        rc = SQLITE_NOMEM;
        break;
      }
      *out = g;
      cap = nc;
    }
    read_rec(s, &(*out)[*n].r);
    (*out)[*n].was = (*out)[*n].r.state;
    (*n)++;
  }
  sqlite3_finalize(s);
  s = NULL;
  if (rc == SQLITE_DONE)
    rc = sqlite3_prepare_v2(
        q->db, "SELECT id, reason, t_gone FROM gone ORDER BY n", -1, &s, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    rc = SQLITE_OK;
    const unsigned char *id = sqlite3_column_text(s, 0);
    const unsigned char *why = sqlite3_column_text(s, 1);
    if (id != NULL && why != NULL)
      od_memtab_bury(q->t, (const char *)id, (const char *)why,
                     sqlite3_column_double(s, 2));
  }
  sqlite3_finalize(s);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* Settles, loads into the table and enqueues; under wmu and the table's
 * lock. Returns OK or DOWN. */
static od_store_rc recover_locked(sq *q, loaded *rows, size_t n) {
  double now = od_wall();
  size_t changed = 0;
  int ok = run(q, S_BEGIN) == 0;
  for (size_t i = 0; ok && i < n; i++) {
    od_job_rec *r = &rows[i].r;
    if (r->state == OD_JOB_PROCESSING) {
      settle(q, r, now);
      bind_rec(q->st[S_PUT], r);
      ok = run(q, S_PUT) == 0;
      changed++;
    }
    if (ok && od_memtab_add(q->t, r, 1) == OD_STORE_FULL) {
      /* More rows than --max-jobs allows now: the oldest idle go. */
      od_evict_sel sel = {.reason = "removed at start-up: more jobs were "
                                    "stored than --max-jobs allows"};
      od_job_rec v;
      ok = od_memtab_pick(q->t, &sel, now, &v) == OD_STORE_OK;
      if (ok) { /* deleted and buried: 410 after the next restart too */
        sqlite3_bind_text(q->st[S_DEL], 1, v.id, -1, SQLITE_TRANSIENT);
        ok = run(q, S_DEL) == 0 && bury(q, v.id, sel.reason, now) == 0;
      }
      if (ok) {
        od_memtab_remove(q->t, v.id, sel.reason, now);
        ok = od_memtab_add(q->t, r, 1) == OD_STORE_OK;
      }
    }
  }
  ok = ok && run(q, S_COMMIT) == 0 && fdatasync(q->wal_fd) == 0 &&
       od_memtab_sort_idle(q->t) == 0;
  if (!ok) {
    od_log("job store %s: recovery failed: %s", q->path, sqlite3_errmsg(q->db));
    if (!sqlite3_get_autocommit(q->db))
      run(q, S_ROLLBACK);
    return OD_STORE_DOWN;
  }
  /* The queue, in the order the jobs were queued. */
  od_job_rec **wait = n ? malloc(n * sizeof *wait) : NULL;
  size_t k = 0;
  for (size_t i = 0; wait && i < n; i++)
    if (rows[i].r.state == OD_JOB_QUEUED)
      wait[k++] = &rows[i].r;
  if (k > 0)
    qsort(wait, k, sizeof *wait, by_t_queued);
  for (size_t i = 0; i < k; i++)
    od_queue_push_over(od_memtab_queue(q->t), wait[i]->id, 0);
  free(wait);
  if (changed > 0)
    od_log("job store %s: %zu job(s) were running when orfeasd stopped: "
           "queued again or failed (--max-attempts %d)",
           q->path, changed, q->max_attempts);
  return n > 0 && wait == NULL ? OD_STORE_DOWN : OD_STORE_OK;
}

static od_store_rc sq_recover(void *be,
                              void (*each)(const od_job_rec *r,
                                           od_job_state was, void *u),
                              void *u) {
  sq *q = be;
  loaded *rows = NULL;
  size_t n = 0;
  od_store_rc rc = OD_STORE_OK;
  pthread_mutex_lock(&q->wmu);
  od_memtab_lock(q->t);
  if (load(q, &rows, &n) != 0) {
    od_log("job store %s: cannot read the jobs: %s", q->path,
           sqlite3_errmsg(q->db));
    rc = OD_STORE_DOWN;
  } else {
    rc = recover_locked(q, rows, n);
  }
  od_memtab_unlock(q->t);
  pthread_mutex_unlock(&q->wmu);
  /* each() runs with no store lock held, on the records as kept. */
  for (size_t i = 0; rc == OD_STORE_OK && each && i < n; i++)
    if (od_memtab_call_get(q, rows[i].r.id, &rows[i].r) == OD_STORE_OK)
      each(&rows[i].r, rows[i].was, u);
  free(rows);
  return rc;
}

/* ---- changes ------------------------------------------------------------- */

static od_store_rc sq_insert(void *be, od_job_rec *r) {
  sq *q = be;
  if (r->state != OD_JOB_UPLOADED)
    return OD_STORE_CONFLICT;
  od_job_rec old;
  pthread_mutex_lock(&q->wmu);
  /* Added first (it assigns the seq and finds a full table), hidden by a
   * shadow until its commit is durable. */
  uint64_t next = q->committed + 1; /* what put_row will return */
  od_memtab_lock(q->t);
  int buried = od_memtab_get(q->t, r->id, &old) == OD_STORE_GONE;
  od_store_rc rc = od_memtab_add(q->t, r, 0);
  int shadowed = rc == OD_STORE_OK && shadow_add(q, next, NULL, r->id) == 0;
  od_memtab_unlock(q->t);
  uint64_t seq = 0;
  if (rc == OD_STORE_OK && (seq = put_row(q, r, buried)) == 0) {
    od_memtab_lock(q->t);
    od_memtab_remove(q->t, r->id, buried ? old.error : NULL, old.t_ended);
    od_memtab_unlock(q->t);
    rc = OD_STORE_DOWN;
  }
  pthread_mutex_unlock(&q->wmu);
  if (seq > 0 && wait_durable(q, seq) != 0)
    rc = OD_STORE_DOWN;
  if (shadowed) {
    od_memtab_lock(q->t);
    shadow_drop(q, next);
    od_memtab_unlock(q->t);
  }
  return rc;
}

static void apply_put(sq *q, const void *w) { od_memtab_put(q->t, w); }

typedef struct {
  const char *id, *reason;
  double t_gone;
} removal;

static void apply_remove(sq *q, const void *a) {
  const removal *rm = a;
  od_memtab_remove(q->t, rm->id, rm->reason, rm->t_gone);
}

static od_store_rc sq_transition(void *be, const od_job_rec *next,
                                 unsigned from, int fence, od_job_rec *prev) {
  sq *q = be;
  od_job_rec w;
  pthread_mutex_lock(&q->wmu);
  od_memtab_lock(q->t);
  od_store_rc rc = od_memtab_check(q->t, next, from, fence, prev, &w);
  od_memtab_unlock(q->t);
  uint64_t seq = rc == OD_STORE_OK ? put_row(q, &w, 0) : 0;
  if (seq == 0) {
    pthread_mutex_unlock(&q->wmu);
    return rc == OD_STORE_OK ? OD_STORE_DOWN : rc;
  }
  od_job_rec before;
  od_memtab_lock(q->t);
  od_memtab_get(q->t, w.id, &before);
  od_memtab_unlock(q->t);
  if (apply_durably(q, seq, &before, w.id, apply_put, &w) != 0)
    return OD_STORE_DOWN;
  od_memtab_released(q->t, before.state, &w);
  return OD_STORE_OK;
}

static od_store_rc sq_claim(void *be, const char *owner, int block_ms,
                            od_job_rec *out) {
  sq *q = be;
  od_queue *dq = od_memtab_queue(q->t);
  char id[37];
  for (;;) {
    int got = od_queue_pop(dq, id, block_ms);
    if (got != 0)
      return got < 0 ? OD_STORE_CLOSED : OD_STORE_EMPTY;
    pthread_mutex_lock(&q->wmu);
    od_memtab_lock(q->t);
    od_store_rc rc = od_memtab_claim_rec(q->t, id, owner, od_wall(), out);
    od_memtab_unlock(q->t);
    if (rc == OD_STORE_OK && put_row(q, out, 0) == 0) {
      /* Not recorded: the job goes back to the head of the line. */
      od_queue_push_over(dq, id, 1);
      rc = OD_STORE_DOWN;
    } else if (rc == OD_STORE_OK) {
      od_memtab_lock(q->t);
      od_memtab_put(q->t, out);
      od_memtab_unlock(q->t);
    }
    pthread_mutex_unlock(&q->wmu);
    if (rc != OD_STORE_NOT_FOUND)
      return rc;
  }
}

static od_store_rc sq_evict(void *be, const od_evict_sel *sel,
                            od_job_rec *gone) {
  sq *q = be;
  od_job_rec v;
  double now = od_wall();
  pthread_mutex_lock(&q->wmu);
  od_memtab_lock(q->t);
  od_store_rc rc = od_memtab_pick(q->t, sel, now, &v);
  od_memtab_unlock(q->t);
  uint64_t seq = rc == OD_STORE_OK ? delete_row(q, v.id, sel->reason, now) : 0;
  if (seq == 0) {
    pthread_mutex_unlock(&q->wmu);
    return rc == OD_STORE_OK ? OD_STORE_DOWN : rc;
  }
  if (gone)
    *gone = v;
  /* The caller deletes the files next: the removal must be durable. */
  removal rm = {.id = v.id, .reason = sel->reason, .t_gone = now};
  return apply_durably(q, seq, &v, v.id, apply_remove, &rm) == 0
             ? OD_STORE_OK
             : OD_STORE_DOWN;
}

static od_store_rc sq_get(void *be, const char *id, od_job_rec *out) {
  sq *q = be;
  od_memtab_lock(q->t);
  /* The oldest shadow of the job is its durable record. */
  const shadow *h = NULL;
  for (size_t i = 0; i < q->nshadows; i++)
    if (strcmp(q->shadows[i].rec.id, id) == 0 &&
        (h == NULL || q->shadows[i].seq < h->seq))
      h = &q->shadows[i];
  od_store_rc rc = h == NULL   ? od_memtab_get(q->t, id, out)
                   : h->absent ? OD_STORE_NOT_FOUND
                               : OD_STORE_OK;
  if (h != NULL && !h->absent)
    *out = h->rec;
  od_memtab_unlock(q->t);
  return rc;
}

static od_store_rc sq_ping(void *be) {
  sq *q = be;
  if (q->up)
    return OD_STORE_OK;
  pthread_mutex_lock(&q->wmu);
  double now = od_now();
  if (!q->up && now - q->last_probe >= PROBE_EVERY_S) {
    q->last_probe = now;
    sqlite3_bind_double(q->st[S_PROBE], 1, od_wall());
    if (run(q, S_PROBE) == 0 && fdatasync(q->wal_fd) == 0)
      write_worked(q);
  }
  pthread_mutex_unlock(&q->wmu);
  return q->up ? OD_STORE_OK : OD_STORE_DOWN;
}

const od_store_ops od_store_sqlite_ops = {
    .scheme = "sqlite",
    .durable = 1,
    .open = sq_open,
    .close = sq_close,
    .recover = sq_recover,
    .insert = sq_insert,
    .get = sq_get,
    .transition = sq_transition,
    .enqueue = od_memtab_call_enqueue,
    .claim = sq_claim,
    .position = od_memtab_call_position,
    .requeue_stranded = od_memtab_call_requeue_stranded,
    .evict = sq_evict,
    .stats = od_memtab_call_stats,
    .close_queue = od_memtab_call_close_queue,
    .ping = sq_ping,
};
