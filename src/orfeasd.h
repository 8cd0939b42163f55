/* orfeasd.h: the one header every file of the orfeasd service includes.
 *
 * orfeasd is split by subsystem (docs/api.md describes what it serves):
 *
 *   main.c       start-up, signals, the drain on SIGTERM/SIGINT
 *   config.c     flags and ORFEAS_* environment variables
 *   validate.c   job-id (UUID) and file-name checks, JSON request parsing
 *   multipart.c  the multipart/form-data parser for uploads (pure, fuzzed)
 *   ratelimit.c  per-client-address token buckets
 *   queue.c      the bounded FIFO in front of the workers
 *   fileio.c     whole-file reads, durable (tmp, sync, rename) writes
 *   cache.c      the result cache: memory LRU + data-dir tier, bounded bytes
 *   store.c      the job store: records and the dispatch queue behind one
 *                interface (store.h), a backend per --store URL scheme
 *   memtab.c     the in-memory job table both local backends share
 *   store_mem.c  the memory: backend
 *   store_sqlite.c the sqlite: backend (the default; survives restarts)
 *   jobs.c       the job API over the store: upload, generate, view, files
 *   recover.c    start-up: what the store kept, files no job owns
 *   worker.c     the worker pool and the live progress of running jobs
 *   commit.c     a finished run's model and end recorded off the worker
 *   janitor.c    store and data-dir health, byte gauges, --result-ttl
 *   eta.c        stage and job durations: ETAs, Retry-After, bottleneck
 *   jobjson.c    a job as JSON: job-status, the 202s, the WebSocket events
 *   svc_metrics.c every orfeas_* metric, registered and pre-created at 0
 *   clock.c      the request clock (TSC or CLOCK_MONOTONIC), od_now, od_wall
 *   log.c        the service log (od_log)
 *   http.c       libmicrohttpd glue: request contexts, bodies, request metrics,
 *                error answers, gzip, the access log
 *   router.c     the route table (OD_ROUTE_LIST): matching, methods, Allow
 *   routes.c     the API handlers and the dispatch to them
 *   ws.c         WebSocket upgrade, the hub thread, per-client queues
 *   wsproto.c    client-message handling shared by the hub and the fuzzer
 *   socketio.c   Engine.IO v4 / Socket.IO v5 framing for /socket.io/ (pure)
 *   static.c     the Studio page and its files from --static-dir
 *   range.c      one byte range from a Range header, If-Range (pure)
 *   precond.c    entity tags, If-Match/-None-Match/-(Un)Modified-Since,
 *                and the answer of a file: whole, a range, 304, 412, 416
 *   cors.c       --cors-origins: which browser origins may call the API
 *   gpu_summary.c the GPU part of /api/health, from the GPU manager
 *
 * Threads: MHD's pool runs the handlers; `workers` threads run jobs; one hub
 * thread owns every WebSocket; main waits for a signal. Shared state is the
 * job store (its records and its queue, each under its own mutex), the cache
 * (its own mutex) and the hub's outbox (ws.c). Metrics are lock-free, except
 * the request metrics' per-thread batches, each behind a one-word spin lock
 * (reqstats.c).
 */
#ifndef ORFEASD_H
#define ORFEASD_H

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "orfeas/gpu.h"
#include "orfeas/metrics.h"
#include "orfeas/pipeline.h"

/* ---- the image memo (imgmemo.c) ----------------------------------------- */

typedef struct od_imgmemo od_imgmemo;
typedef struct od_offload od_offload;

/* bound: bytes (pixels + a fixed cost per entry); 0 keeps nothing. */
od_imgmemo *od_imgmemo_new(size_t bound);
void od_imgmemo_free(od_imgmemo *m);
/* 1 when a w x h image's pixels would be kept (at most a quarter of the
 * bound). */
int od_imgmemo_keeps_pixels(const od_imgmemo *m, uint32_t w, uint32_t h);
/* 1 when an image with this SHA-256 passed the upload check before. */
int od_imgmemo_checked(od_imgmemo *m, const uint8_t digest[32]);
/* Remembers that the image passed, with its pixels when img is not NULL
 * (taken: *img is zeroed, or freed when the memo cannot keep it). */
void od_imgmemo_put(od_imgmemo *m, const uint8_t digest[32],
                    orfeas_pl_image *img);
/* Makes the image's kept pixels the grid of quality (orfeas_pl_prepare),
 * on the calling thread; nothing when no pixels are kept. */
void od_imgmemo_prepare(od_imgmemo *m, const uint8_t digest[32], int quality);
/* Moves out what the memo kept for a run at quality (the image stays
 * remembered as checked): its grid of that quality to *prep, or else its
 * pixels to *out. 1, or 0 when neither is kept (*out zeroed, *prep NULL). */
int od_imgmemo_take(od_imgmemo *m, const uint8_t digest[32], int quality,
                    orfeas_pl_image *out, orfeas_pl_prepared **prep);
/* Notes that job id stored these bytes as uploads/<id>.<ext>, durably. */
void od_imgmemo_stored(od_imgmemo *m, const uint8_t digest[32], const char *id,
                       const char *ext);
/* The "<id>.<ext>" file name of such an upload: 1, or 0 when none. */
int od_imgmemo_stored_as(od_imgmemo *m, const uint8_t digest[32], char *name,
                         size_t len);
size_t od_imgmemo_bytes(od_imgmemo *m);

/* What the memo saved (orfeas_image_memo_events_total{event}): an upload
 * not checked again, a run on the check's pixels, a run that decoded the
 * upload itself (no pixels kept for it). */
typedef enum {
  OD_MEMO_CHECK_SKIPPED = 0,
  OD_MEMO_PIXELS_USED,
  OD_MEMO_PIXELS_DECODED,
  OD_MEMO_EVENTS
} od_memo_event;
extern const char *const OD_MEMO_EVENT_NAMES[OD_MEMO_EVENTS];
/* The version is ORFEAS_VERSION of the generated orfeas_build.h (version,
 * git revision, build type), which the files that print it include: the
 * fuzz builds compile some of src/ without the build tree. */

/* ---- config.c ------------------------------------------------------------ */

typedef struct {
  char listen_host[64]; /* numeric IPv4 address */
  uint16_t listen_port;
  char data_dir[PATH_MAX];
  char store[PATH_MAX + 16]; /* job store URL (store.h) */
  char node_id[64];          /* --node-id: this node's name (cluster mode);
                                default LISTEN_HOST:LISTEN_PORT */
  double store_lease_s;      /* --store-lease: redis claim lease */
  double orphan_age_s;       /* --orphan-age: shared data dir sweep */
  double stranded_age_s;     /* --stranded-age: janitor.c requeue_stranded */
  char store_password_file[PATH_MAX]; /* --store-password-file: redis AUTH */
  int max_attempts;                   /* runs cut short before a job fails */
  double result_ttl_s;        /* finished jobs and uploads kept at least */
  int refused_hold_s;         /* a 429'd upload's slot: Retry-After + this */
  int workers;                /* pipeline threads */
  int worker_nice;            /* nice value of the worker threads */
  int queue_size;             /* jobs waiting beyond the running ones */
  int max_upload_mb;          /* upload body limit */
  int http_threads;           /* MHD thread pool */
  int request_threads;        /* offload.c: uploads and generates */
  int max_connections;        /* MHD connection limit */
  int max_ws_clients;         /* WebSocket clients before 503 */
  int ws_queue;               /* frames queued per WebSocket client */
  int ws_sndbuf_kb;           /* kernel send buffer per WebSocket socket */
  int ws_max_subs;            /* jobs one WebSocket connection follows */
  double rate_limit_rps;      /* tokens per second per address; 0 = off */
  int rate_limit_burst;       /* bucket size */
  int cache_memory_mb;        /* memory tier bound */
  int image_memo_mb;          /* imgmemo.c bound */
  int cache_disk_mb;          /* data-dir tier bound */
  int max_jobs;               /* job table size */
  int max_store_mb;           /* uploads + models kept in the data dir */
  int http_metrics;           /* 0: request metrics off (the bench baseline) */
  int access_log;             /* 0: no per-request log line */
  char pause_file[PATH_MAX];  /* while it exists, workers hold jobs (tests) */
  char nvml_lib[PATH_MAX];    /* NVML to load; "" = libnvidia-ml.so.1 */
  double gpu_interval_s;      /* GPU sampling interval */
  double gpu_call_timeout_s;  /* one NVML call's deadline */
  char gpus[4096];            /* --gpus: "all" or NVML indexes and UUIDs */
  char static_dir[PATH_MAX];  /* the Studio page; "" = next to the binary */
  double sio_ping_interval_s; /* Engine.IO pings to Socket.IO clients */
  double sio_ping_timeout_s;  /* a pong later than this closes the client */
  char cors_origins[2048];    /* --cors-origins, as given (cors.c parses it) */
  char allowed_hosts[2048];   /* --allowed-hosts, as given (hosts.c) */
  /* The HTTP edge (issue #13: http.c, edge.c, body.c, proxy.c, fdlimit.c) */
  char admin_host[64]; /* --admin-listen; "" = admin routes on --listen */
  uint16_t admin_port;
  int admin_connections;    /* connections the admin listener holds */
  double header_timeout_s;  /* a request's headers must arrive within it */
  int body_min_rate;        /* bytes/s a body must keep up; 0 = off */
  int max_conns_per_addr;   /* open connections per client address; 0 = off */
  int max_body_inflight_mb; /* request bodies being received, all together */
  int max_body_inflight_addr_mb; /* of which one client address; 0 = off */
  int body_memory_mb;            /* of which upload bodies kept in memory */
  int max_json_kb;               /* bodies of routes other than uploads */
  char trusted_proxies[1024]; /* CIDR list whose X-Forwarded-For is believed */
  /* The process: start-up, shutdown, the log, storage health, WebSocket
   * liveness (issue #13, branch proc). */
  int reuse_port;            /* 1: share the port (SO_REUSEPORT) */
  double drain_timeout_s;    /* SIGTERM to exit, at most */
  char log_level[16];        /* debug, info, warning, error */
  char log_format[8];        /* text, json */
  int log_level_n;           /* log_level parsed: an od_log_level */
  int log_json;              /* log_format parsed */
  int log_buffer_kb;         /* the ring between od_log and stderr */
  int min_free_mb;           /* /ready 503 below this free on the data dir */
  double ws_ping_interval_s; /* a server ping to a /ws client this often */
  double ws_ping_timeout_s;  /* ... unanswered this long: closed (idle) */
} od_config;

/* Defaults (see --help). */
void od_config_defaults(od_config *c);

/* Reads ORFEAS_* variables through getenv_fn (getenv in the service; tests
 * pass their own), then argv. Returns 0 on success, 1 when --help was asked
 * (usage printed to `out` by the caller with od_config_usage), 2 when
 * --version was asked (orfeas_print_version), -1 on a bad
 * value with a sentence naming the flag in err. */
int od_config_parse(od_config *c, int argc, char **argv,
                    const char *(*getenv_fn)(const char *), char *err,
                    size_t err_len);
void od_config_usage(char *buf, size_t len);

/* ---- validate.c ---------------------------------------------------------- */

/* The next item of a comma-separated flag value (--cors-origins,
 * --allowed-hosts) at *p, blanks around it trimmed: its start, its length
 * in *n (> 0), *p moved past it; NULL at the end. */
const char *od_list_next(const char **p, size_t *n);
/* 1 when s is a canonical lower- or upper-case 8-4-4-4-12 hex UUID. */
int od_uuid_valid(const char *s);
/* A client's job id as the service stores it: when s is such a UUID, its
 * lower-case form into out (which may be s itself) and 1; else 0 and out
 * untouched. Hex digits are case-insensitive on input (RFC 9562 section
 * 4), and the service writes ids in lower case (od_uuid_new), so an id a
 * client upper-cased finds its job instead of a 404. */
int od_uuid_canon(const char *s, char out[37]);
/* The length of s's longest prefix of at most max bytes that is whole,
 * valid UTF-8 (it stops at a NUL): a message that quotes a client's text
 * cuts it there, so that the JSON which carries the message can be made. */
size_t od_utf8_prefix(const char *s, size_t max);
/* Writes a version-4 UUID (lower case, 36 chars + NUL) from /dev/urandom or
 * getrandom; -1 when no randomness is available. */
int od_uuid_new(char out[37]);
/* Copies a client-supplied file name as its last path component, keeping
 * [A-Za-z0-9._-] and replacing anything else by '_', at most out_len-1
 * bytes, never "", "." or ".." (then "upload"). */
void od_filename_sanitize(const char *in, size_t in_len, char *out,
                          size_t out_len);
/* 1 when name is a plain file name: [A-Za-z0-9._-]{1,128}, no leading dot. */
int od_filename_plain(const char *name);

/* The generate-3d limits (validate.c checks them, /api/models-info
 * publishes them; the pipeline's own check agrees). */
#define OD_QUALITY_MIN 1
#define OD_QUALITY_MAX 10
#define OD_SIDE_MM_MIN 1.0
#define OD_SIDE_MM_MAX 1000.0 /* width and height */
#define OD_DEPTH_MM_MAX 500.0

/* A parsed and checked POST /api/generate-3d body. */
typedef struct {
  char job_id[37];
  orfeas_pl_format format;
  orfeas_pl_mode mode;
  int quality;
  double width, height, depth;
  int unknown_fields; /* fields ignored (top level and in dimensions) */
} od_generate_req;

/* One field-level problem: field is one of a fixed set of names (it becomes
 * a metric label, so never a client string) and error_type a fixed word. */
typedef struct {
  const char *field;
  const char *error_type;
  char message[160];
} od_field_error;

#define OD_MAX_FIELD_ERRORS 8

/* Parses and checks the JSON body. Returns the number of errors written to
 * errs (0 = valid). Wrong types and values are errors; unknown fields are
 * ignored (the original API's behaviour) and counted in unknown_fields. */
int od_generate_parse(const char *body, size_t len, od_generate_req *req,
                      od_field_error *errs, int max_errs);

/* ---- multipart.c --------------------------------------------------------- */

/* Finds the boundary parameter in a multipart/form-data Content-Type;
 * 0 on success. */
int od_multipart_boundary(const char *content_type, char *boundary, size_t len);

typedef struct {
  const uint8_t *data; /* points into the body */
  size_t len;
  char filename[256]; /* as sent (unsanitized), "" when absent */
  int found;
} od_multipart_part;

/* Finds the part named `field` in a complete multipart body. Returns 0 when
 * the body is well formed (part->found says whether the field was there),
 * -1 when it is malformed (err says how). Never reads outside body. */
int od_multipart_find(const uint8_t *body, size_t len, const char *boundary,
                      const char *field, od_multipart_part *part, char *err,
                      size_t err_len);

/* ---- ratelimit.c --------------------------------------------------------- */

typedef struct od_ratelimit od_ratelimit;

/* rate tokens/s, burst tokens, at most max_clients addresses tracked (the
 * least recently seen one is forgotten past it). NULL when out of memory. */
od_ratelimit *od_ratelimit_new(double rate, double burst, size_t max_clients);
void od_ratelimit_free(od_ratelimit *rl);
/* Takes a token for `key` at time now_s. Returns 0 when allowed, otherwise
 * the whole seconds (>= 1) until a token is available. Thread-safe. */
int od_ratelimit_take(od_ratelimit *rl, const char *key, double now_s);

/* ---- queue.c ------------------------------------------------------------- */

/* A bounded FIFO of job ids (UUIDs, 36 chars). Thread-safe. */
typedef struct od_queue od_queue;

od_queue *od_queue_new(size_t capacity);
void od_queue_free(od_queue *q);
/* Appends a copy of id; returns its 0-based position, -1 when full, -2
 * when closed. */
int od_queue_push(od_queue *q, const char *id);
/* Puts id past the bound (the ring grows): at the front (a take given
 * back) or at the end (jobs found queued at start-up). 0, -1 when out of
 * memory, -2 when closed. */
int od_queue_push_over(od_queue *q, const char *id, int front);
/* Takes the oldest id into id[37]. Waits up to timeout_ms for one (-1:
 * until one comes or the queue is closed; 0: not at all). Returns 0 with an
 * id, 1 when none came in time, -1 when the queue is closed and empty. */
int od_queue_pop(od_queue *q, char id[37], int timeout_ms);
/* Closes the queue: pushes fail, and the ids still waiting are handed to
 * drop(id, user) one by one (in FIFO order, no queue lock held) and
 * removed; pops then return -1. */
void od_queue_close(od_queue *q, void (*drop)(const char *id, void *user),
                    void *user);
size_t od_queue_depth(od_queue *q);
/* 0-based position of id, -1 when not waiting. */
int od_queue_position(od_queue *q, const char *id);
/* A copy of the waiting ids in FIFO order: *ids (malloc'd, the caller
 * frees it; NULL when none) holds *n of them, 37 bytes each. 0, or -1 when
 * out of memory. */
int od_queue_ids(od_queue *q, char **ids, size_t *n);
/* Copies the oldest id without taking it: 0, or -1 when empty. */
int od_queue_peek(od_queue *q, char id[37]);

/* ---- fileio.c ----------------------------------------------------------- */

/* Durable write: PATH.tmp, fdatasync, rename over PATH, fsync of the
 * directory (fileio.c says why); 0, or -1 with errno (PATH.tmp removed). */
int od_file_write(const char *path, const uint8_t *data, size_t len);
/* The same; durable 0 skips both syncs (a file whose loss is harmless). */
int od_file_write_opt(const char *path, const uint8_t *data, size_t len,
                      int durable);
/* Gives the file src a second name path (a hard link through PATH.tmp and a
 * rename, replacing path; a copy where links are impossible), then, when
 * durable, fsyncs path's directory. 0, or -1 with errno. */
int od_file_link(const char *src, const char *path, int durable);
/* fsync of a directory: its entries (creations, renames) survive power
 * loss. 0, or -1 with errno. */
int od_dir_fsync(const char *dir);
/* The bytes an unprivileged writer has free on dir's file system, and
 * whether it is mounted read-only (read_only may be NULL). 0, or -1 with
 * errno. */
int od_fs_space(const char *dir, uint64_t *free_bytes, int *read_only);
/* The whole file, malloc'd (caller frees); NULL on any error or a short
 * read. */
uint8_t *od_file_read(const char *path, size_t *len);

/* ---- cache.c ------------------------------------------------------------- */

typedef struct od_cache od_cache;

typedef enum {
  OD_CACHE_MEMORY = 0,
  OD_CACHE_DISK,
  OD_CACHE_TIERS
} od_cache_tier;

/* A result's quality report, kept with its model. */
typedef struct {
  double score;
  char grade[3];
  int printable;
} od_cache_meta;

/* dir: the disk tier's folder (created; complete entries already there are
 * adopted, oldest first, within disk_bytes). NULL and err filled on
 * failure. */
od_cache *od_cache_new(size_t mem_bytes, const char *dir, size_t disk_bytes,
                       char *err, size_t err_len);
void od_cache_free(od_cache *c);
/* Looks the key up, memory first, then disk. On a hit, dest is created as
 * the model (a hard link to the disk entry, else a durable write of the
 * memory entry: never a second copy when the disk has it; synced when
 * durable), *meta and *len are the report and the model's size, *tier
 * where it was found: 1. 0: a miss. -1: a hit whose model could not be made
 * at dest (errno). miss_tiers (may be NULL) gets a bit per tier that
 * missed. Thread-safe. */
int od_cache_get(od_cache *c, const uint8_t key[32], const char *dest,
                 int durable, od_cache_meta *meta, size_t *len,
                 od_cache_tier *tier, unsigned *miss_tiers);
/* Stores a result: the memory tier takes model (stolen: the cache frees
 * it), the disk tier links path (the model file, already durable; NULL:
 * memory only) with the report beside it; least recently used entries
 * make room, and an entry larger than a tier's bound skips it.
 * Thread-safe. */
void od_cache_put(od_cache *c, const uint8_t key[32], const od_cache_meta *meta,
                  uint8_t *model, size_t len, const char *path);
size_t od_cache_bytes(od_cache *c, od_cache_tier tier);
size_t od_cache_entries(od_cache *c, od_cache_tier tier);

/* ---- router.c ------------------------------------------------------------ */

/* Methods with a label of their own ("OTHER" last: any other method, so a
 * client string never becomes a label value). */
typedef enum {
  OD_METHOD_GET = 0,
  OD_METHOD_POST,
  OD_METHOD_HEAD,
  OD_METHOD_PUT,
  OD_METHOD_DELETE,
  OD_METHOD_OPTIONS,
  OD_METHOD_PATCH,
  OD_METHOD_OTHER,
  OD_METHODS
} od_method;

/* Method sets, for the route table. HEAD is implied by GET and OPTIONS is
 * answered on every route (router.c, od_route_allows). */
#define OD_M_GET (1u << OD_METHOD_GET)
#define OD_M_POST (1u << OD_METHOD_POST)
#define OD_M_PUT (1u << OD_METHOD_PUT)
#define OD_M_DELETE (1u << OD_METHOD_DELETE)
#define OD_M_PATCH (1u << OD_METHOD_PATCH)

typedef enum {
  OD_MATCH_EXACT,  /* the path equals the route's path */
  OD_MATCH_PREFIX, /* the path starts with it; the rest is the argument */
  OD_MATCH_NONE    /* "other": matched when nothing else is */
} od_match;

/* Route flags: what a route takes part in besides its handler.
 * RATE_LIMIT: counted against --rate-limit, per client address.
 * PAST_CONN_LIMIT: still answered past --max-connections (the monitoring
 *   that must tell an operator about the overload).
 * ADMIN: a monitoring route, for an admin-only listener (issue #13).
 * CORS: a browser API route: CORS headers and preflight (issue #14).
 * OFFLOAD: answered on a request thread, not the HTTP thread (offload.c):
 *   the routes that decode images, write files and wait for syncs. */
#define OD_RF_RATE_LIMIT 0x1u
#define OD_RF_PAST_CONN_LIMIT 0x2u
#define OD_RF_ADMIN 0x4u
#define OD_RF_CORS 0x8u
#define OD_RF_OFFLOAD 0x10u
#define OD_RF_API (OD_RF_RATE_LIMIT | OD_RF_CORS)
#define OD_RF_MONITORING (OD_RF_ADMIN | OD_RF_PAST_CONN_LIMIT)

/* THE route table: every path orfeasd serves, in matching order (the first
 * route that matches wins: a path that starts with a prefix route's path
 * must come before that route). It drives the matcher, the 405 and OPTIONS
 * answers and their Allow header (router.c), the dispatch to the handler
 * (routes.c) and the request metrics created at 0 for each route and method
 * (svc_metrics.c).
 *
 *   X(ID, METHODS, MATCH, PATH, ENDPOINT, FLAGS, HANDLER)
 *
 * ENDPOINT is the route's `endpoint` label (fixed: users' dashboards hold
 * it). A prefix route gets the rest of the path in od_req.rest (and split
 * at its first '/' in arg1/arg2). HANDLER is a static function of routes.c:
 * void HANDLER(od_service *, struct MHD_Connection *, od_req *).
 * To add a route: one line here, and its handler in routes.c. */
/* clang-format off */
#define OD_ROUTE_LIST(X)                                                       \
  X(UPLOAD,     OD_M_POST, OD_MATCH_EXACT,  "/api/upload-image",               \
    "/api/upload-image",  OD_RF_API | OD_RF_OFFLOAD,       handle_upload)      \
  X(GENERATE,   OD_M_POST, OD_MATCH_EXACT,  "/api/generate-3d",                \
    "/api/generate-3d",   OD_RF_API | OD_RF_OFFLOAD,       handle_generate)    \
  X(STATUS,     OD_M_GET,  OD_MATCH_PREFIX, "/api/job-status/",                \
    "/api/job-status/{job_id}",          OD_RF_API,        handle_status)      \
  X(DOWNLOAD,   OD_M_GET,  OD_MATCH_PREFIX, "/api/download/",                  \
    "/api/download/{job_id}/{filename}", OD_RF_API,        handle_download)    \
  X(HEALTH,     OD_M_GET,  OD_MATCH_EXACT,  "/health",                         \
    "/health",                           OD_RF_MONITORING, handle_health)      \
  X(READY,      OD_M_GET,  OD_MATCH_EXACT,  "/ready",                          \
    "/ready",                            OD_RF_ADMIN,      handle_ready)       \
  X(API_HEALTH, OD_M_GET,  OD_MATCH_EXACT,  "/api/health",                     \
    "/api/health",                       OD_RF_CORS,       handle_api_health)  \
  X(METRICS,    OD_M_GET,  OD_MATCH_EXACT,  "/metrics",                        \
    "/metrics",                          OD_RF_MONITORING, handle_metrics)     \
  X(WS,         OD_M_GET,  OD_MATCH_EXACT,  "/ws",                             \
    "/ws",                               OD_RF_RATE_LIMIT, handle_ws)          \
  X(SOCKETIO,   OD_M_GET,  OD_MATCH_EXACT,  "/socket.io/",                     \
    "/socket.io/",                       OD_RF_RATE_LIMIT, handle_socketio)    \
  X(MODELS_INFO, OD_M_GET, OD_MATCH_EXACT,  "/api/models-info",                \
    "/api/models-info",                  OD_RF_API,        handle_models_info) \
  X(DOWNLOAD_B64, OD_M_GET, OD_MATCH_PREFIX, "/api/download-base64/",          \
    "/api/download-base64/{job_id}/{filename}", OD_RF_API, handle_download_b64) \
  X(PREVIEW,    OD_M_GET,  OD_MATCH_PREFIX, "/api/preview/",                   \
    "/api/preview/{job_id}",             OD_RF_API,        handle_preview)     \
  /* The Studio page and its files (static.c): no rate limit, no CORS. */     \
  X(PAGE,       OD_M_GET,  OD_MATCH_EXACT,  "/",                               \
    "/",                                 0,                handle_page)        \
  X(STUDIO,     OD_M_GET,  OD_MATCH_EXACT,  "/studio",                         \
    "/studio",                           0,                handle_page)        \
  X(STATIC,     OD_M_GET,  OD_MATCH_PREFIX, "/static/",                        \
    "/static/{path}",                    0,                handle_static)      \
  /* Last: no path; GET is only the method of its series created at 0. */      \
  X(OTHER,      OD_M_GET,  OD_MATCH_NONE,   "",                                \
    "other",                             0,                handle_not_found)
/* clang-format on */

typedef enum {
#define OD_ROUTE_ENUM(id, methods, match, path, endpoint, flags, handler)      \
  OD_ROUTE_##id,
  OD_ROUTE_LIST(OD_ROUTE_ENUM)
#undef OD_ROUTE_ENUM
      OD_ROUTE_COUNT
} od_route;

typedef struct od_req od_req;

/* Finds the route of a request path (no query string) and fills req->route,
 * req->rest, req->arg1 and req->arg2. Pure. */
void od_route_match(const char *path, od_req *req);
/* The endpoint label: the route template ("other" out of range). */
const char *od_route_template(od_route r);
unsigned od_route_flags(od_route r);
/* The route's method set (OD_M_*), as written in the table. */
unsigned od_route_methods(od_route r);
/* 1 when the route serves method m: its own methods, HEAD where GET is, and
 * OPTIONS everywhere but "other". */
int od_route_allows(od_route r, od_method m);
/* The Allow header for the route ("GET, HEAD, OPTIONS"); "" for "other". */
const char *od_route_allow_header(od_route r);
/* The method's index (OD_METHOD_OTHER for anything not listed) and its
 * label value. */
od_method od_method_index(const char *method);
const char *od_method_name(od_method m);

/* ---- the HTTP edge (issue #13) ------------------------------------------- */

/* proxy.c: --trusted-proxies and the client address of a request. */
#define OD_PROXIES_MAX 32
typedef struct {
  uint32_t net, mask; /* IPv4, host order */
} od_cidr4;
typedef struct {
  int n;
  od_cidr4 nets[OD_PROXIES_MAX];
} od_proxies;
/* Parses "CIDR,CIDR,..." (IPv4 ADDR or ADDR/BITS); "" = none. 0, or -1
 * with err naming the bad entry. */
int od_proxies_parse(od_proxies *p, const char *spec, char *err,
                     size_t err_len);
/* 1 when addr (IPv4, host order) is inside one of the networks. */
int od_proxies_trusted_v4(const od_proxies *p, uint32_t addr);
/* What X-Forwarded-For did for a request (orfeas_http_forwarded_for_total's
 * result label, "none" not counted). */
typedef enum {
  OD_XFF_NONE = 0,  /* no header: the peer is the client */
  OD_XFF_USED,      /* a trusted proxy's header named the client */
  OD_XFF_IGNORED,   /* a header from a peer that is not a trusted proxy */
  OD_XFF_MALFORMED, /* a trusted proxy's header held a non-address */
  OD_XFF_RESULTS
} od_xff_result;
const char *od_xff_result_name(od_xff_result r);
/* The client address of a request from peer (IPv4, host order) with the
 * X-Forwarded-For value xff (several headers joined with ','; NULL when
 * none): the rightmost address that is not a trusted proxy when the peer
 * is trusted, else the peer. Canonical text into out. Pure. */
/* The rate limit's key for a client address (od_client_address's text):
 * an IPv6 address by its /64 ("2001:db8:1:2::/64"), the prefix a site or
 * a host is given (a client holds every address in it, and would take a
 * new bucket with each); anything else as it is. Pure. */
void od_rate_key(const char *client, char *out, size_t out_len);
od_xff_result od_client_address(const od_proxies *p, uint32_t peer,
                                const char *xff, char *out, size_t out_len);

/* framing.c: the headers that say where a request's body ends. */
typedef struct {
  int lengths; /* Content-Length headers seen */
  unsigned long long length;
  int bad_length; /* one is not a number, or two differ */
  int codings;    /* Transfer-Encoding headers seen */
  int bad_coding; /* one is not exactly "chunked" */
  int bad_field;  /* a name that is not a token, a value with NUL/CR/LF */
  int hosts;      /* Host headers seen */
  int need_host;  /* set by the caller: not HTTP/1.0 (RFC 9112 3.2) */
  int ws_upgrade; /* an Upgrade header names websocket */
} od_framing;
/* Feeds one request header (zero the struct first). */
void od_framing_header(od_framing *f, const char *name, const char *value);
/* The same for a header line as received, with its lengths (a NUL inside
 * a name or a value is seen): the bytes are checked first (RFC 9110 5.1,
 * 5.5; RFC 9112 5.1), and a Host header counted. */
void od_framing_field(od_framing *f, const char *name, size_t name_len,
                      const char *value, size_t value_len);
/* NULL when the body's end is unambiguous, else why not (a sentence for
 * the client: the request is refused with 400 and its connection closed). */
const char *od_framing_verdict(const od_framing *f);
/* 1 when a header value (a comma list, such as Connection or Upgrade)
 * holds tok, case-insensitively; 0 for a NULL value. */
int od_header_has_token(const char *value, const char *tok);
/* Query arguments. libmicrohttpd records each one in the connection's
 * memory (MHD_OPTION_CONNECTION_MEMORY_LIMIT, OD_CONN_MEMORY) while it
 * parses the request line, and when they do not fit there it answers
 * nothing (the connection waits for --header-timeout). So a request line
 * is judged from MHD's URI callback, before that: more than
 * OD_QUERY_MAX_ARGS arguments is a 414 (the access handler answers it),
 * and a target whose length plus OD_QUERY_ARG_COST bytes per argument
 * passes 7/8 of OD_CONN_MEMORY is closed at once (MHD would not call the
 * handler). Measured on 0.9.75: an argument takes 64 bytes, and it stops
 * answering past about 32,400 bytes of target plus arguments. */
#define OD_CONN_MEMORY (32 * 1024)
#define OD_QUERY_MAX_ARGS 64
#define OD_QUERY_ARG_COST 128
#define OD_QUERY_BUDGET (OD_CONN_MEMORY / 8 * 7)
typedef enum {
  OD_QUERY_OK,
  OD_QUERY_TOO_MANY,   /* 414 */
  OD_QUERY_PAST_MEMORY /* closed at the request line */
} od_query_verdict;
/* The verdict on a raw request target; *args gets its number of query
 * arguments (an upper bound: pieces between '&', empty ones included). */
od_query_verdict od_query_check(const char *raw_uri, int *args);
/* 1 when the path of a raw request target (before '?') holds a control
 * byte (0x00-0x1f, 0x7f), raw or percent-encoded. */
int od_path_has_control(const char *raw_uri);

/* edge.c: the connection table (header deadline, body rate, per-address
 * count) and the in-flight body budget. Thread-safe. */
#define OD_CONN_HEADROOM 64 /* MHD's hard limit past --max-connections */
typedef struct od_edge od_edge;
typedef struct od_conn od_conn;
typedef enum {
  OD_CONN_HEADERS = 0, /* waiting for a request's headers */
  OD_CONN_BODY,        /* receiving a body (--body-min-rate applies) */
  OD_CONN_BUSY         /* being answered, or a WebSocket */
} od_conn_phase;
/* Why the server closed or refused a connection (the reason label of
 * orfeas_http_connections_closed_total). */
#define OD_CLOSE_REASON_LIST(X)                                                \
  X(HEADER_TIMEOUT, "header_timeout")                                          \
  X(BODY_TOO_SLOW, "body_too_slow")                                            \
  X(PER_ADDRESS, "per_address_limit")                                          \
  X(BAD_FRAMING, "bad_framing")                                                \
  X(BODY_CUT, "body_cut")                                                      \
  X(DRAINING, "draining")
/* clang-format off */
typedef enum {
#define OD_CLOSE_ENUM(id, name) OD_CLOSE_##id,
  OD_CLOSE_REASON_LIST(OD_CLOSE_ENUM)
#undef OD_CLOSE_ENUM
  OD_CLOSE_REASONS
} od_close_reason;
/* clang-format on */
typedef struct od_service od_service;
od_edge *od_edge_new(od_service *svc, char *err, size_t err_len);
/* Starts the sweeper thread: od_edge_sweep a few times per
 * --header-timeout. */
int od_edge_start(od_edge *e, char *err, size_t err_len);
/* One pass at time `now` (od_now() seconds): shuts down connections past
 * the header deadline or below the body rate (tests call it directly). */
void od_edge_sweep(od_edge *e, double now);
/* Stops the sweeper; call after the HTTP daemons stopped. */
void od_edge_free(od_edge *e);
/* MHD's accept policy: 1 to accept, 0 past --max-conns-per-address
 * (counted). */
struct sockaddr;
int od_edge_admit(od_edge *e, const struct sockaddr *sa);
/* A connection opened (tracked from here; NULL when out of memory) and
 * closed (call before its fd is closed). */
od_conn *od_edge_open(od_edge *e, int fd, const struct sockaddr *sa, int admin);
void od_edge_close(od_edge *e, od_conn *c);
/* 1 when c is a public connection opened after SIGTERM (svc->draining):
 * http.c starts nothing new on it (see refuse_early). 0 for NULL. */
int od_edge_late(const od_conn *c);
/* What the connection does now (restarts its clock). */
void od_edge_phase(od_edge *e, od_conn *c, od_conn_phase phase);
/* Body bytes received (for --body-min-rate). */
void od_edge_body(od_conn *c, size_t n);
/* Open public connections from sa's address (tests, logs). */
int od_edge_conns_of(od_edge *e, const struct sockaddr *sa);
/* Takes bytes from --max-body-inflight-mb: 0, or -1 when they do not fit
 * (nothing taken). od_edge_release gives them back. */
int od_edge_reserve(od_edge *e, uint64_t bytes);
void od_edge_release(od_edge *e, uint64_t bytes);
/* Takes bytes from the connection's address's share of that budget
 * (--max-body-inflight-per-address-mb): 0, or -1 when they do not fit
 * (nothing taken); always 0 for an address not counted (a trusted proxy,
 * the admin listener, the limit off). od_edge_release_addr gives them
 * back. */
int od_edge_reserve_addr(od_edge *e, od_conn *c, uint64_t bytes);
void od_edge_release_addr(od_edge *e, od_conn *c, uint64_t bytes);
/* Takes bytes from --body-memory-mb for an upload body kept in memory: 0,
 * or -1 when the body is over an eighth of it or does not fit (nothing
 * taken: the body goes to a file). od_edge_release_memory gives them back. */
int od_edge_reserve_memory(od_edge *e, uint64_t bytes);
void od_edge_release_memory(od_edge *e, uint64_t bytes);
void od_edge_count_close(od_edge *e, od_close_reason why);

/* body.c: a request body, in memory or in a file under DATA/tmp. */
typedef struct {
  uint8_t *mem; /* owned: a memory body */
  size_t cap;
  size_t len; /* bytes stored */
  int fd;     /* owned: the body file, -1 for a memory body */
  char path[PATH_MAX];
  void *map;         /* owned: the file mapped for the handler */
  uint64_t reserved; /* bytes it holds in the edge's body budget */
  uint64_t held;     /* bytes it holds in --body-memory-mb (memory body) */
} od_body;
void od_body_init(od_body *b);
/* Makes b a memory body for a declared length of n bytes (allocated now,
 * touched as they arrive). 0, or -1 with errno ENOMEM. */
int od_body_to_memory(od_body *b, size_t n);
/* Makes b a file body: a new DATA/tmp/body-XXXXXX. 0, or -1 with errno. */
int od_body_to_file(od_body *b, const char *tmp_dir);
/* Stores n more bytes. 0, or -1 with errno (ENOSPC, EIO, ENOMEM...). */
int od_body_append(od_body *b, const void *data, size_t n);
/* The whole body, readable until od_body_free (a file is mapped); NULL
 * when empty or the mapping failed. */
const uint8_t *od_body_data(od_body *b);
/* Releases memory, mapping, descriptor and file. */
void od_body_free(od_body *b);
/* Start-up: creates tmp_dir and deletes the body files a previous run
 * left. 0 (*removed set), or -1 with err. */
int od_body_sweep(const char *tmp_dir, int *removed, char *err, size_t err_len);

/* fdlimit.c: the file descriptors the configured limits need. */
typedef struct {
  uint64_t http, admin, websocket, workers, base, total;
  uint64_t soft_before, soft, hard;
} od_fd_parts;
/* Adds up what the flags allow at once. Pure. */
void od_fd_need(const od_config *c, od_fd_parts *p);
/* od_fd_need, then raises the soft RLIMIT_NOFILE to the hard limit when it
 * is below the need. 0 with a summary line in msg; -1 with the numbers
 * when the hard limit is below the need (the caller refuses to start). */
int od_fd_ensure(const od_config *c, od_fd_parts *p, char *msg, size_t msg_len);
/* 1 for EMFILE and ENFILE. */
int od_errno_is_fd_exhaustion(int e);
/* Where the process ran out of descriptors (orfeas_fd_exhausted_total's op
 * label). */
#define OD_FD_OP_LIST(X)                                                       \
  X(ACCEPT, "accept")                                                          \
  X(UPLOAD, "upload")                                                          \
  X(DOWNLOAD, "download")                                                      \
  X(JOB, "job")
/* clang-format off */
typedef enum {
#define OD_FD_OP_ENUM(id, name) OD_FD_##id,
  OD_FD_OP_LIST(OD_FD_OP_ENUM)
#undef OD_FD_OP_ENUM
  OD_FD_OPS
} od_fd_op;
/* clang-format on */
/* Counts one (any thread). */
void od_metric_fd_exhausted(od_service *svc, od_fd_op op);
/* What a Range header comes to for a file of `size` bytes (range.c). */
typedef enum {
  OD_RANGE_NONE,          /* no Range header */
  OD_RANGE_PARTIAL,       /* one satisfiable range: 206 of [first, last] */
  OD_RANGE_UNSATISFIABLE, /* 416: starts at or past the end, or bytes=-0 */
  OD_RANGE_IGNORED,       /* 200 whole: invalid, another unit, several
                             ranges, a suffix of an empty file, If-Range */
  OD_RANGE_KINDS
} od_range_kind;
/* Counts a Range evaluated on a download (orfeas_http_range_requests_total;
 * OD_RANGE_NONE is not counted). */
void od_metric_range(od_service *svc, od_range_kind kind);

/* ---- svc_metrics.c ------------------------------------------------------- */

/* WebSocket events the server sends (event_type label values). */
#define OD_WS_EVENT_LIST(X)                                                    \
  X(CONNECTION_ESTABLISHED, "connection_established")                          \
  X(SUBSCRIBED, "subscribed")                                                  \
  X(UNSUBSCRIBED, "unsubscribed")                                              \
  X(PROGRESS, "generation_progress")                                           \
  X(STAGE_CHANGE, "stage_change")                                              \
  X(COMPLETE, "generation_complete")                                           \
  X(ERROR_EVENT, "generation_error")                                           \
  X(PONG, "pong")                                                              \
  X(ERROR, "error")

typedef enum {
#define OD_WS_ENUM(id, name) OD_WS_##id,
  OD_WS_EVENT_LIST(OD_WS_ENUM)
#undef OD_WS_ENUM
      OD_WS_EVENT_COUNT
} od_ws_event;

const char *od_ws_event_name(od_ws_event e);

/* Why a WebSocket client went (ws.c): client (it closed or vanished), idle
 * (no pong within --ws-ping-timeout), flood (sent faster than it read its
 * answers: 1008), protocol (a broken frame), shutdown, error. */
typedef enum {
  OD_WS_CLOSE_CLIENT = 0,
  OD_WS_CLOSE_IDLE,
  OD_WS_CLOSE_FLOOD,
  OD_WS_CLOSE_PROTOCOL,
  OD_WS_CLOSE_SHUTDOWN,
  OD_WS_CLOSE_ERROR,
  OD_WS_CLOSE_SLOW, /* a job's end could not be queued: see ws.c */
  OD_WS_CLOSE_REASONS_N
} od_ws_close_reason;
extern const char *const OD_WS_CLOSE_REASONS[OD_WS_CLOSE_REASONS_N];

/* What od_jobs_refresh did: asked for the job's current state (or it was
 * asked already, or there is no fan-out, or it is stopping), or refused
 * it: the connection (owner) already has max_waiting refreshes waiting
 * (client), or the queue is full (full). A refusal is counted in
 * orfeas_websocket_refreshes_refused_total{reason} (OD_REFRESH_NAMES);
 * the caller tells the client (ws.c). owner 0: no connection, no share.
 * OD_REFRESH_STORE is never returned: it is a read asked for that failed
 * later, on the refresher's thread (Redis slow past its command timeout,
 * or answering an error); fanout.c counts it and sends the job's
 * subscribers the same "subscribe again" error through the hub. */
typedef enum {
  OD_REFRESH_ASKED = 0,
  OD_REFRESH_CLIENT,
  OD_REFRESH_FULL,
  OD_REFRESH_STORE,
  OD_REFRESH_N
} od_refresh;
extern const char *const OD_REFRESH_NAMES[OD_REFRESH_N];

/* Why a generation failed: the reason label of
 * orfeas_generation_failures_total (jobs.c names them; svc_metrics.c
 * creates each at 0). decode: the image cannot be made into a model (the
 * client's input); pipeline: a pipeline error; disk_full: the model could
 * not be written, no space (ENOSPC, EDQUOT); storage: another write
 * failure (read-only, I/O error) or the job store refused the end;
 * shutdown: queued or running at SIGTERM; internal: anything else (the
 * upload vanished). */
typedef enum {
  OD_FAIL_DECODE = 0,
  OD_FAIL_PIPELINE,
  OD_FAIL_DISK_FULL,
  OD_FAIL_STORAGE,
  OD_FAIL_SHUTDOWN,
  OD_FAIL_INTERNAL,
  OD_FAIL_REASONS
} od_fail_reason;
extern const char *const OD_FAIL_REASON_NAMES[OD_FAIL_REASONS];
/* disk_full for ENOSPC/EDQUOT, storage for any other errno. */
od_fail_reason od_fail_reason_of_errno(int e);

/* The statuses whose request-counter handle is cached. */
#define OD_STATUS_SLOTS 12

typedef struct {
  om_registry *reg;
  om_family *gen_total;    /* {format,status} */
  om_family *gen_duration; /* {format} */
  om_histogram *quality_score;
  om_counter *printable;     /* models that are printable */
  om_family *stage_duration; /* {stage} */
  om_family *bottleneck;     /* {stage} */
  om_gauge *ws_active;
  om_family *ws_sent_family; /* {event_type} */
  om_counter *ws_sent[OD_WS_EVENT_COUNT];
  om_counter *ws_progress;
  om_counter *ws_dropped;
  om_gauge *queue_depth;
  om_histogram *queue_wait;
  om_family *cache_hits_family; /* {cache_type} */
  om_family *cache_misses_family;
  om_family *cache_size_family;
  om_counter *cache_hits[OD_CACHE_TIERS];
  om_counter *cache_misses[OD_CACHE_TIERS];
  om_gauge *cache_size[OD_CACHE_TIERS];
  om_family *http_requests;       /* {method,endpoint,status} */
  om_family *http_duration;       /* {method,endpoint} */
  om_family *http_req_size;       /* {method,endpoint} */
  om_family *http_resp_size;      /* {method,endpoint} */
  om_family *errors;              /* {type,endpoint} */
  om_family *validation_errors;   /* {field,error_type} */
  om_family *rate_limited;        /* {endpoint} */
  om_counter *gen_unknown_fields; /* generate-3d fields ignored */
  om_gauge *active_jobs;
  om_gauge *workers_busy;
  om_gauge *uptime;
  /* ---- the job store and the data dir (issue #11): svc_metrics.c's
   * od_metrics_store_init registers them; jobs.c, commit.c and janitor.c
   * move them. */
  om_gauge *store_up;
  om_family *store_op_duration; /* {op} */
  om_family *store_errors;      /* {op} */
  om_family *jobs_recovered;    /* {previous_state} */
  om_family *jobs_reclaimed;    /* {reason} */
  om_family *jobs_removed;      /* {reason} */
  om_family *orphans_removed;   /* {dir}: orphans.c */
  om_family *store_bytes;       /* {kind}: od_store_bytes_kind() */
  om_gauge *tombstones;
  om_gauge *store_oldest_queued; /* issue #15 */
  om_gauge *store_nodes;         /* redis: orfeas:lease fields */
  om_counter *jobs_fenced;
  om_counter *jobs_requeued;
  om_gauge *commit_queue;
  om_gauge *data_dir_free;
  om_gauge *data_dir_writable;
  /* The HTTP edge (issue #13). */
  om_family *conns_closed_family; /* {reason} */
  om_counter *conns_closed[OD_CLOSE_REASONS];
  om_family *conns_open_family; /* {listener}: public, admin */
  om_gauge *conns_open[2];
  om_gauge *body_inflight;
  om_gauge *body_memory;
  om_family *bodies_family; /* {kept} */
  om_counter *bodies[2];    /* memory, file */
  om_counter *body_rejected;
  om_family *fd_exhausted_family; /* {op} */
  om_counter *fd_exhausted[OD_FD_OPS];
  om_family *xff_family; /* {result} */
  om_counter *xff[OD_XFF_RESULTS];
  om_family *range_family; /* {outcome}: partial, unsatisfiable, ignored */
  om_counter *range[OD_RANGE_KINDS]; /* by od_range_kind (NONE unused) */
  /* The process (issue #13, branch proc). */
  om_counter *log_dropped;
  om_family *ws_closed_family; /* {reason} */
  om_counter *ws_closed[OD_WS_CLOSE_REASONS_N];
  om_family *ws_refused_family;         /* {reason}: client, full, store */
  om_counter *ws_refused[OD_REFRESH_N]; /* [OD_REFRESH_ASKED] unused */
  om_family *gen_failures_family;       /* {reason} */
  om_counter *gen_failures[OD_FAIL_REASONS];
  om_gauge *data_dir_min_free;
  /* The image memo (imgmemo.c). */
  om_gauge *image_memo_bytes;
  om_gauge *http_offloaded;       /* offload.c: waiting or running */
  om_gauge *http_request_threads; /* --request-threads (0: inline) */
  om_family *image_memo_family;   /* {event} */
  om_counter *image_memo[OD_MEMO_EVENTS];
  double start_time; /* CLOCK_MONOTONIC seconds */
  /* Per-request handles, resolved on first use and kept: the request path
   * then costs no label hashing (http.c). Indexed by route, method (see
   * od_method_index) and, for the counter, a status slot. */
  _Atomic(om_histogram *) h_dur[OD_ROUTE_COUNT][OD_METHODS];
  _Atomic(om_histogram *) h_req[OD_ROUTE_COUNT][OD_METHODS];
  _Atomic(om_histogram *) h_resp[OD_ROUTE_COUNT][OD_METHODS];
  _Atomic(om_counter *) c_req[OD_ROUTE_COUNT][OD_METHODS][OD_STATUS_SLOTS];
  /* reqstats.c: the per-thread batches of request metrics (owned). */
  pthread_mutex_t batches_mu;
  struct od_reqbatch *batches;
  uint64_t rs_id; /* process-unique; 0 when not set up */
} od_metrics;

/* reqstats.c: one finished request's metrics, applied in per-thread batches
 * (why: the comment at the top of reqstats.c). */
typedef struct od_reqbatch od_reqbatch;
typedef struct {
  const char *method; /* static: one of the method label values */
  int route, method_idx, status;
  double seconds;
  uint64_t req_bytes, resp_bytes;
} od_reqev;
void od_reqstats_init(od_metrics *m); /* od_metrics_init calls it */
void od_reqstats_free(od_metrics *m); /* od_metrics_free calls it */
/* Records e; any thread. Visible to the next od_reqstats_flush at latest. */
void od_reqstats_add(od_metrics *m, const od_reqev *e);
/* Applies every thread's pending requests: call before rendering. */
void od_reqstats_flush(od_metrics *m);

/* orfeas_store_bytes{kind}: the kinds, and their label values. */
enum { OD_BYTES_UPLOADS, OD_BYTES_OUTPUTS, OD_BYTES_DATABASE, OD_BYTES_KINDS };
const char *od_store_bytes_kind(int kind);

/* Registers every family and creates the label sets alerts need at 0.
 * Returns 0, or -1 with err filled. */
/* node_id: the node label of orfeas_build_info (--node-id). */
int od_metrics_init(od_metrics *m, const char *node_id, char *err,
                    size_t err_len);
void od_metrics_free(od_metrics *m);
void od_metric_error(od_metrics *m, const char *type, od_route r);
void od_metric_validation(od_metrics *m, const char *field,
                          const char *error_type);

/* ---- jobs.c (with worker.c, eta.c: jobs_internal.h) ---------------------- */

typedef enum {
  OD_JOB_UPLOADED = 0, /* an image is stored; no generation asked yet */
  OD_JOB_QUEUED,
  OD_JOB_PROCESSING,
  OD_JOB_COMPLETED,
  OD_JOB_FAILED,
  OD_JOB_STATE_COUNT
} od_job_state;

const char *od_job_state_name(od_job_state s);

typedef struct od_service od_service;

/* A snapshot of a job: its stored record (store.h) with, while it runs,
 * its live progress, and its place in line and ETA. */
typedef struct {
  char id[37];
  od_job_state state;
  double progress; /* 0..100 */
  char stage[32];
  double stage_progress; /* 0..1 */
  double eta_seconds;
  int cached;
  int position; /* while queued */
  orfeas_pl_format format;
  char output_name[96]; /* model_<id>.<fmt> once completed */
  double score;
  char grade[3];
  int printable;
  char error[256];
  int http_status; /* for failed jobs: 400 when the client's fault */
} od_job_view;

/* Results of od_jobs_generate. */
typedef enum {
  OD_GEN_QUEUED = 0,
  OD_GEN_CACHED, /* completed at once from the cache */
  OD_GEN_NOT_FOUND,
  OD_GEN_CONFLICT, /* already queued or processing */
  OD_GEN_QUEUE_FULL,
  OD_GEN_DRAINING, /* shutting down */
  OD_GEN_INTERNAL,
  OD_GEN_GONE,       /* removed (retention): 410 with the reason */
  OD_GEN_UNAVAILABLE /* the job store is down: 503 */
} od_gen_result;

typedef struct od_jobs od_jobs;

od_jobs *od_jobs_new(od_service *svc, char *err, size_t err_len);
/* Starts the worker threads. */
int od_jobs_start(od_jobs *j, char *err, size_t err_len);
/* Stores an uploaded image (sha256: its digest) as a new job. 0; -2 when
 * every slot (or all of --max-store-mb) is held by active or held jobs; -3
 * when the job store or the data dir cannot take it now (down, disk full:
 * 503); -1 on other errors. */
int od_jobs_add_upload(od_jobs *j, const uint8_t *img, size_t len,
                       const uint8_t sha256[32], const char *ext,
                       char id_out[37], char *err, size_t err_len);
od_gen_result od_jobs_generate(od_jobs *j, const od_generate_req *req,
                               int *position);
/* 1 and *v filled when the job exists. */
int od_jobs_view(od_jobs *j, const char *id, od_job_view *v);
/* 1 when the job was removed with a reason (retention; it answers 410):
 * *v is then a failed job whose error says why (http_status 410); also 1
 * when the store is down (http_status 503: the job's fate is unknown). */
int od_jobs_gone(od_jobs *j, const char *id, od_job_view *v);
/* Cluster mode (issue #15, fanout.c): 1 when job events travel through the
 * store's event bus; then a subscribe asks od_jobs_refresh for the job's
 * current state (read off the hub's thread, then published into the hub)
 * instead of reading the store itself. Never blocks. */
int od_jobs_shared(od_jobs *j);
od_refresh od_jobs_refresh(od_jobs *j, const char *id, uint64_t owner,
                           int max_waiting);
/* Stops events reaching the hub: before the hub is freed. Idempotent. */
void od_jobs_quiet(od_jobs *j);
/* The cluster's rate limit (a shared store's): 0 and *wait_s as
 * od_ratelimit_take; -1 when there is none or the store is down (the
 * caller uses its own, per-node limiter). */
int od_jobs_rate_take(od_jobs *j, const char *key, double rate, double burst,
                      int *wait_s);

/* What /ready checks besides the workers and the drain (one struct, so a
 * new check is one field): the job store answers and writes; a file can
 * be written in the data dir; the bytes free there. */
typedef struct {
  int store_up;
  int data_dir_writable;
  uint64_t data_dir_free_bytes;
  int data_dir_low; /* free below --min-free-mb (issue #13) */
} od_health;
void od_jobs_health(od_jobs *j, od_health *h);
/* Opens the job's model for reading: the fd and size, -1 when the job has
 * no such file (name must equal the job's output name), -2 when the process
 * is out of file descriptors, -3 when the file is there but cannot be read
 * (logged: a permission or disk error, a link, which is never followed). */
int od_jobs_open_output(od_jobs *j, const char *id, const char *name,
                        uint64_t *size, orfeas_pl_format *fmt);
/* Opens the job's uploaded image (the preview): the fd, its size and its
 * stored extension ("png", "jpg", "webp", "gif", "bmp"); -1 when the job or
 * its file is gone, -2 when the process is out of file descriptors, -3 as
 * od_jobs_open_output. */
int od_jobs_open_upload(od_jobs *j, const char *id, uint64_t *size,
                        char ext[8]);
/* Closes the store's queue (a durable store keeps waiting jobs queued for
 * the next start; the memory store fails them with a reason), then waits
 * for running jobs and for their ends to be recorded until finish_by
 * (od_now() seconds); past it cancels them (they end failed, "service
 * shutting down") and waits until cancelled_by. Returns how many workers
 * still run then (0: all joined; else the caller must not free what they
 * use). */
int od_jobs_drain(od_jobs *j, double finish_by, double cancelled_by);
void od_jobs_free(od_jobs *j);
int od_jobs_workers_running(od_jobs *j);
/* Seconds until the queue has likely drained by one: the mean job time x
 * (depth + 1) / workers, 1..3600 (the 429's Retry-After). */
int od_jobs_retry_after(od_jobs *j);
int od_jobs_busy(od_jobs *j);
size_t od_jobs_queue_depth(od_jobs *j);
/* Job counts by state and the dispatch queue's depth, from one read of
 * the store's figures: 0, or -1 when the store cannot answer (Redis down),
 * with nothing filled. */
int od_jobs_counts(od_jobs *j, int counts[OD_JOB_STATE_COUNT], size_t *depth);

/* ---- jobjson.c ----------------------------------------------------------- */

/* A job as the API shows it, from a snapshot (docs/api.md). Each returns a
 * new reference (NULL when out of memory). Event payloads carry "job_id";
 * the sender adds "timestamp". */
/* "/api/download/<id>/<output name>", or "" before there is an output. */
void od_job_download_url(const od_job_view *v, char *out, size_t len);
/* {overall_score, grade, printable} */
json_t *od_job_quality_json(const od_job_view *v);
/* The GET /api/job-status/{job_id} body. */
json_t *od_job_status_json(const od_job_view *v);
/* generation_progress and stage_change payloads. */
json_t *od_job_progress_json(const od_job_view *v);
json_t *od_job_stage_json(const od_job_view *v);
/* The event that says where the job stands: generation_complete or
 * generation_error once it ended, generation_progress while queued or
 * processing (*ev says which); NULL for a job only uploaded. */
json_t *od_job_event_json(const od_job_view *v, od_ws_event *ev);
/* The 202 body of generate-3d: queued at `position` (done NULL), or
 * completed from the cache (done: the job's view, for its download URL). */
json_t *od_job_accepted_json(const od_generate_req *g, int position,
                             const od_job_view *done);

/* ---- ws.c / wsproto.c ---------------------------------------------------- */

typedef struct od_hub od_hub;

od_hub *od_hub_new(od_service *svc, char *err, size_t err_len);
int od_hub_start(od_hub *h, char *err, size_t err_len);
/* Sends the final events still queued, closes every client (1001) and
 * joins the hub thread, by `deadline` (od_now() seconds): halfway there a
 * client still behind gets its close anyway, at it the socket closes. */
void od_hub_stop(od_hub *h, double deadline);
void od_hub_free(od_hub *h);
/* Queues `json` (a full {"event":..,"data":..} text) for every subscriber
 * of job_id. Any thread; never blocks on a client. */
void od_hub_publish(od_hub *h, const char *job_id, od_ws_event ev,
                    const char *json);
int od_hub_clients(od_hub *h);
/* Soon, on the hub's thread: od_jobs_refresh for every job a client
 * follows (the cluster's event bus reconnected: events may be lost). */
void od_hub_resync(od_hub *h);
/* Counts a client in before its upgrade is answered: -1 past
 * --max-ws-clients (the caller answers 503). od_hub_release undoes it when
 * the upgrade fails. Any thread. */
int od_hub_reserve(od_hub *h);
void od_hub_release(od_hub *h);
/* Hands an upgraded socket to the hub (from MHD's upgrade callback). */
struct MHD_UpgradeResponseHandle;
void od_ws_adopt(od_hub *h, int fd, struct MHD_UpgradeResponseHandle *urh,
                 const char *extra, size_t extra_len);
/* The same for a Socket.IO client (/socket.io/): the hub speaks Engine.IO
 * to it (socketio.c) and sends it the job events as job_update. */
void od_ws_adopt_socketio(od_hub *h, int fd,
                          struct MHD_UpgradeResponseHandle *urh,
                          const char *extra, size_t extra_len);

/* What a client message asks for (wsproto.c). */
typedef enum {
  OD_WSMSG_SUBSCRIBE,
  OD_WSMSG_UNSUBSCRIBE,
  OD_WSMSG_PING,
  OD_WSMSG_BAD
} od_wsmsg_kind;

/* The codes of the "error" event, /ws and Socket.IO alike, and of a
 * Socket.IO CONNECT_ERROR's data (unknown_namespace; docs/api.md lists
 * each with what the client should do): a client matches these, never the
 * message, which is for people and may be reworded. */
#define OD_WS_ERR_LIST(X)                                                      \
  X(BAD_JSON, "bad_json")                                                      \
  X(BAD_MESSAGE, "bad_message")                                                \
  X(UNKNOWN_EVENT, "unknown_event")                                            \
  X(BAD_JOB_ID, "bad_job_id")                                                  \
  X(BINARY_FRAME, "binary_frame")                                              \
  X(BAD_PACKET, "bad_packet")                                                  \
  X(BINARY_PACKET, "binary_packet")                                            \
  X(NOT_CONNECTED, "not_connected")                                            \
  X(TOO_MANY_SUBSCRIPTIONS, "too_many_subscriptions")                          \
  X(RESUBSCRIBE, "resubscribe")                                                \
  X(UNKNOWN_NAMESPACE, "unknown_namespace")

typedef enum {
#define OD_WS_ERR_ENUM(id, name) OD_WSE_##id,
  OD_WS_ERR_LIST(OD_WS_ERR_ENUM)
#undef OD_WS_ERR_ENUM
      OD_WSE_COUNT
} od_ws_err;

const char *od_ws_err_name(od_ws_err e);
/* The data of every "error" event sent to a client: {"message", "job_id"
 * (when job_id is not NULL), "code"}, the code last so the fields clients
 * had before it keep their place. The one builder of that object (ws.c,
 * socketio.c, fanout.c). New reference, or NULL. */
json_t *od_ws_error_data(od_ws_err code, const char *message,
                         const char *job_id);

/* Parses one text message from a client; job_id filled for (un)subscribe,
 * err and *code (an OD_WSE_ code) for BAD. */
od_wsmsg_kind od_wsmsg_parse(const uint8_t *msg, size_t len, char job_id[37],
                             char *err, size_t err_len, od_ws_err *code);
/* Builds {"event": name, "data": data} (steals data). malloc'd text. */
char *od_ws_event_json(od_ws_event ev, json_t *data);
/* The handshake answer to a client's Sec-WebSocket-Key: out gets the
 * Sec-WebSocket-Accept value (28 characters). 0; -1 when the key is not 16
 * bytes in base64 (RFC 6455 4.1); -2 when SHA-1 is unavailable. Pure. */
int od_ws_accept_key(const char *key, char out[29]);

/* ---- socketio.c ---------------------------------------------------------- */

/* Engine.IO v4 / Socket.IO v5 over the WebSocket transport (the framing is
 * described at the top of socketio.c). Pure functions: the hub (ws.c)
 * owns the sockets and calls these. */
#define OD_SIO_MAX_PAYLOAD 4096 /* = the hub's message limit */

/* Engine.IO's handshake error codes (the 400's {"code", "message"}). */
enum {
  OD_SIO_ERR_TRANSPORT = 0, /* "Transport unknown": polling */
  OD_SIO_ERR_SID = 1,       /* "Session ID unknown": an upgrade */
  OD_SIO_ERR_VERSION = 5    /* "Unsupported protocol version": EIO != 4 */
};

/* Checks the handshake's query values (NULL when absent): 0 when this is a
 * websocket handshake for EIO=4 without a sid, else -1 with *code (above)
 * and a sentence in msg for the 400. */
int od_sio_query_check(const char *eio, const char *transport, const char *sid,
                       int *code, char *msg, size_t msg_len);

/* One connection's protocol state (the hub keeps one per client). */
typedef struct {
  char sid[37];  /* the Engine.IO session id (a UUID) */
  int connected; /* joined namespace "/" */
} od_sio_conn;

typedef enum {
  OD_SIO_NOTHING = 0, /* handled (noop, upgrade, ACK, a client ping) */
  OD_SIO_PONG,        /* the answer to our ping */
  OD_SIO_CONNECTED,   /* joined "/": *reply is the CONNECT answer; job_id
                         the job a reconnecting client followed, or "" */
  OD_SIO_SUBSCRIBE,   /* subscribe_job: job_id filled */
  OD_SIO_UNSUBSCRIBE, /* unsubscribe_job: job_id filled */
  OD_SIO_CLOSE,       /* Engine.IO close, or DISCONNECT from "/" */
  OD_SIO_BAD          /* err says why; *reply may carry it to the client */
} od_sio_kind;

/* Handles one text frame from a client. *reply is a malloc'd text frame to
 * send back (or NULL), *reply_len bytes long: a CONNECT_ERROR names the
 * client's namespace byte for byte, and that may hold a NUL. The caller
 * frees it. */
od_sio_kind od_sio_handle(od_sio_conn *c, const uint8_t *msg, size_t len,
                          char job_id[37], char **reply, size_t *reply_len,
                          char *err, size_t err_len);
/* "0{...}": the open packet, with the heartbeat the hub keeps (seconds;
 * --sio-ping-interval, --sio-ping-timeout). malloc'd. */
char *od_sio_open(const char *sid, double ping_interval_s,
                  double ping_timeout_s);
/* 42["name", data] (steals data; NULL = {}). malloc'd. */
char *od_sio_event_text(const char *name, json_t *data);
/* The hub's event text ({"event", "data"}, as od_ws_event_json makes it)
 * as 42["job_update", {...}, "<job_id>"] (the job id is the offset a
 * reconnecting client sends back: socketio.c); an "error" naming a job (a
 * failed read of its state, cluster mode: fanout.c) as 42["error",
 * {"message", "job_id", "code"}], the frame ws.c sends for a refused one;
 * NULL for other events. malloc'd. */
char *od_sio_job_update(const char *hub_json, size_t len);

/* ---- cors.c -------------------------------------------------------------- */

#define OD_CORS_MAX 32         /* origins in --cors-origins */
#define OD_CORS_ORIGIN_MAX 256 /* bytes of one origin */

typedef struct {
  int any; /* "*" was listed */
  int n;
  char origins[OD_CORS_MAX][OD_CORS_ORIGIN_MAX];
} od_cors;

/* The request headers a preflight may ask for (what the original clients
 * send), and the response headers a page may read. */
extern const char OD_CORS_ALLOW_HEADERS[];
extern const char OD_CORS_EXPOSE_HEADERS[];
/* Parses "--cors-origins": a comma list of scheme://host[:port] or "*".
 * 0, or -1 with err naming the bad entry. */
int od_cors_parse(od_cors *c, const char *spec, char *err, size_t err_len);
/* The Access-Control-Allow-Origin value for a request's Origin: "*", the
 * origin itself (a static pointer into c or the origin passed), or NULL
 * when the origin is not allowed (or absent). */
const char *od_cors_allow(const od_cors *c, const char *origin);
/* 1 when Origin names the Host this request was sent to (scheme aside). */
int od_cors_same_origin(const char *origin, const char *host);
/* Whether a page of this Origin may act here, for the requests CORS alone
 * does not stop (a WebSocket handshake; a POST to the API, which a page of
 * another origin may send as a "simple" request, a form's multipart or
 * JSON as text/plain, with no preflight): no Origin (not a browser), this
 * server's own, or an allowed one. */
int od_cors_page_allowed(const od_cors *c, const char *origin,
                         const char *host);

/* ---- hosts.c ------------------------------------------------------------- */

#define OD_HOSTS_MAX 32      /* names in --allowed-hosts */
#define OD_HOST_NAME_MAX 256 /* bytes of one name, brackets included */

/* The Host header values one listener answers (DNS rebinding: hosts.c). */
typedef struct {
  int given;     /* --allowed-hosts named something */
  int any;       /* "*", or not given on a listener off loopback */
  char self[64]; /* the listener's address: always allowed */
  int n;
  char names[OD_HOSTS_MAX][OD_HOST_NAME_MAX]; /* compared form */
} od_hosts;

/* Parses --allowed-hosts (a comma list of names, IP literals or "*") for
 * the listener on listen_addr (IPv4), which decides the default. 0, or -1
 * with err naming the bad entry. */
int od_hosts_parse(od_hosts *h, const char *spec, const char *listen_addr,
                   char *err, size_t err_len);
/* 1 when a request with this Host header (NULL: none) is answered. */
int od_hosts_allowed(const od_hosts *h, const char *host);
/* 1 for a numeric IPv4 address in 127.0.0.0/8. */
int od_hosts_listen_is_loopback(const char *addr);

/* ---- static.c ------------------------------------------------------------ */

/* The Studio page's Content-Security-Policy. */
extern const char OD_STATIC_CSP[];
/* 1 when path (relative, no leading slash) may name a static file: plain
 * components, none starting with a dot, at most 8 deep, 255 bytes. */
int od_static_path_ok(const char *path);
/* The Content-Type for path's extension; NULL when not served. */
const char *od_static_type(const char *path);
/* 1 for files under vendor/NAME-VERSION/ (cached for a year, immutable). */
int od_static_immutable(const char *path);
/* Opens path under dirfd without following any symbolic link; a regular
 * file's fd (caller closes) with its size and mtime, or -1. */
int od_static_open(int dirfd, const char *path, uint64_t *size, time_t *mtime);
/* Finds the static folder (--static-dir, else next to the binary `exe`)
 * and opens it (svc->static_fd). 0, also when none is installed (then the
 * page is 404); -1 with err when --static-dir names no page. */
int od_static_init(od_service *svc, const char *exe, char *err, size_t err_len);
void od_static_free(od_service *svc);
struct MHD_Connection;
struct MHD_Response;
/* For HTML: the CSP and frame/referrer headers (nosniff: od_respond). */
void od_static_headers(struct MHD_Response *resp, const char *type);

/* ---- gpu_summary.c ------------------------------------------------------- */

/* The "gpu" object of /api/health (new reference), from the GPU manager's
 * last sample (include/orfeas/gpu.h). */
json_t *od_gpu_summary(od_service *svc);

/* ---- the service --------------------------------------------------------- */

struct od_service {
  od_config cfg;
  od_metrics m;
  od_jobs *jobs;
  od_hub *hub;
  od_cache *cache;
  od_imgmemo *imgmemo; /* uploads' check results and pixels */
  od_offload *offload; /* request threads (NULL: answered inline) */
  od_ratelimit *rl;
  struct MHD_Daemon *daemon;
  orfeas_gpu *gpu;        /* NVML sampler; reports no GPU without NVML */
  _Atomic int open_conns; /* HTTP connections open now (MHD notifications) */
  _Atomic int ws_open;    /* ... of which upgraded to WebSocket (ws.c) */
  _Atomic int ready;      /* workers started and not draining */
  _Atomic int draining;
  int static_fd; /* the Studio folder (static.c); -1 when none */
  char static_path[PATH_MAX];
  od_cors cors; /* --cors-origins, parsed */
  /* --allowed-hosts, parsed per listener ([0] public, [1] admin: each with
   * its own address and default; hosts.c). */
  od_hosts hosts[2];
  /* The HTTP edge (issue #13). */
  struct MHD_Daemon *admin_daemon; /* --admin-listen; NULL when unset */
  /* Each daemon's callback context (http.c): [0] public, [1] admin. Set
   * before the daemons start; their threads only read it. */
  struct od_listener {
    od_service *svc;
    int admin;
  } listeners[2];
  od_edge *edge;
  od_proxies proxies;     /* --trusted-proxies, parsed */
  char tmp_dir[PATH_MAX]; /* DATA/tmp: upload bodies while they arrive */
};

/* One HTTP request, from its first access-handler call to its completion
 * callback (http.c owns it; routes.c fills the answer). */
struct MHD_Connection;
struct od_req {
  uint64_t t0; /* od_ticks() at the first access-handler call */
  od_route route;
  const char *method; /* "GET", "POST", "HEAD", ... or "OTHER" */
  int method_idx;     /* its od_method */
  /* A prefix route's rest of the path, and the same split at its first
   * '/'. A piece too long for its field starts with '!' (it then fails
   * every validation: no id, name or path has a '!'). */
  char rest[256];
  char arg1[64], arg2[160]; /* e.g. job id, file name */
  const uint8_t *body;      /* the whole body (b's), set before dispatch */
  size_t body_len, body_limit;
  int calls;
  int status; /* answered status, 0 until then */
  uint64_t resp_bytes;
  char client[48]; /* peer address */
  int cors;        /* an /api/ route: answers carry Vary: Origin */
  char acao[OD_CORS_ORIGIN_MAX]; /* Access-Control-Allow-Origin, "" = none */
  int recorded;                  /* metrics and log line written */
  int ws_reserved;               /* holds a WebSocket client slot not yet handed
                                    to the hub (released if the upgrade never
                                    happens: the client left before the 101) */
  uint64_t overflow;             /* body bytes discarded past the limit */
  /* The HTTP edge (issue #13). */
  od_body b;        /* where the body is kept (body.c) */
  od_conn *conn;    /* the connection's entry in the edge table */
  int admin;        /* came in on the --admin-listen listener */
  int begun;        /* the headers were seen (first handler call) */
  int bad_path;     /* the raw path holds a control byte */
  int query_args;   /* query arguments, past OD_QUERY_MAX_ARGS: 414 */
  int query_cut;    /* its arguments may not fit in MHD's memory: the
                       connection's receiving side was shut (uri_cb), 414 */
  int body_error;   /* errno of a failed body write, 0 = none */
  int over_budget;  /* a chunked body crossed the body budget */
  int over_address; /* ... its client address's share of it */
  int rate_taken;   /* od_route_rate_take ran */
  int rate_wait;    /* > 0: rate limited, Retry-After seconds */
  int cross_origin; /* a POST from a page of another origin (cors.c): 403,
                       its body discarded as it comes */
  int host_refused; /* its Host is not one the listener answers (hosts.c) */
  int late_refused; /* on a connection opened while draining, not a safe
                       method: its body discarded, 503 draining, closed */
  int late_closed;  /* ... a safe method: closed unanswered, counted by the
                       edge (reason draining), not as a request */
  int http10;       /* an HTTP/1.0 request (no upgrade: RFC 6455 4.1) */
  /* offload.c: answered on a request thread, the connection suspended. */
  int offloaded;                   /* an od_offload_state */
  struct MHD_Response *deferred;   /* the answer, until MHD calls back */
  struct MHD_Connection *off_conn; /* while queued or running */
  struct od_req *off_next;         /* the queue's link */
};

/* ---- request threads (offload.c) ----------------------------------------- */

typedef enum {
  OD_OFFLOAD_NONE = 0, /* answered on the HTTP thread */
  OD_OFFLOAD_QUEUED,   /* suspended, queued or being answered */
  OD_OFFLOAD_ANSWERED  /* resumed: od_req.deferred holds the answer */
} od_offload_state;

/* Starts `threads` request threads; NULL with err set when they cannot
 * start, NULL and no error for 0 (everything answered inline). */
od_offload *od_offload_start(od_service *svc, int threads, char *err,
                             size_t err_len);
/* From the access handler, the request's body in: suspends the connection
 * and queues the request for od_route_dispatch on a request thread (1), or
 * 0 when the caller must answer it itself (no request threads, or
 * stopping). */
int od_offload_submit(od_offload *o, struct MHD_Connection *conn, od_req *req);
/* Answers what is queued, resumes every connection, joins the threads and
 * frees o. Before the HTTP daemon stops. */
void od_offload_stop(od_offload *o);

/* Writes the request's metrics and access-log line once (http.c). MHD
 * reports an upgraded connection complete only when it closes, so /ws
 * requests are recorded when the upgrade happens. */
void od_req_record(od_service *svc, od_req *req, int aborted);

/* static.c: answers GET/HEAD for a static file (path relative to the
 * static folder, already checked by nothing: od_static_path_ok runs). */
void od_static_serve(od_service *svc, struct MHD_Connection *conn, od_req *req,
                     const char *path);

/* ---- range.c, precond.c: byte ranges and conditional requests ------------ */

/* od_range_kind: with the metrics, above. */
/* Parses value (NULL: OD_RANGE_NONE); first and last set for PARTIAL. */
od_range_kind od_range_parse(const char *value, uint64_t size, uint64_t *first,
                             uint64_t *last);
/* 1 when a range may apply: no If-Range (NULL), or If-Range is the current
 * strong tag etag exactly; a date or another tag: 0. */
int od_if_range_holds(const char *if_range, const char *etag);

/* A file's strong entity tag, quoted: inode, size, mtime in ns (precond.c
 * says why). */
#define OD_ETAG_MAX 64
struct stat;
void od_etag_of(const struct stat *st, char out[OD_ETAG_MAX]);
/* 1 when list (If-Match / If-None-Match: "*" or entity tags, comma
 * separated) holds etag; weak: W/ tags match by their opaque part
 * (If-None-Match's weak comparison), else only a strong equal tag. An
 * element that is not a tag never matches. */
int od_etag_list_has(const char *list, const char *etag, int weak);
/* An HTTP-date (IMF-fixdate, RFC 850 or asctime) in *out; -1 if not one. */
int od_http_date(const char *s, time_t *out);
typedef struct {
  const char *if_match, *if_unmodified_since; /* NULL: absent */
  const char *if_none_match, *if_modified_since;
} od_cond_headers;
/* RFC 9110 13.2.2's order for GET/HEAD of a file with this tag and time:
 * 412, 304, or 0 to go on (to Range). */
int od_precond_eval(const od_cond_headers *h, const char *etag,
                    time_t last_modified);

/* A file answer: what identifies the file, what the request gets. */
typedef struct {
  const char *etag;     /* od_etag_of */
  time_t last_modified; /* the file's, never after now (8.8.2.1) */
  uint64_t size;
  int ranges; /* 1: Range is honoured here (downloads), Accept-Ranges */
} od_file_validators;
typedef struct {
  int status;              /* 200, 206, 304, 412, 416 */
  uint64_t offset, length; /* the bytes sent (200, 206) */
} od_file_plan;
/* v (pointing at etag) for the open file fd; -1 when fstat fails. */
int od_file_validators_of(int fd, int ranges, char etag[OD_ETAG_MAX],
                          od_file_validators *v);
/* Reads the request's conditions and Range; counts a Range that was
 * evaluated in orfeas_http_range_requests_total. */
void od_file_plan_for(od_service *svc, struct MHD_Connection *conn,
                      const od_file_validators *v, od_file_plan *plan);
/* The answer to plan for the open file fd (taken): a 412 or 416 (its
 * Content-Range names the size) is answered here and NULL returned; so is
 * a 500. Else the response of the slice (200, 206 with Content-Range) or an
 * empty 304, with ETag, Last-Modified and Accept-Ranges; the caller adds
 * its headers and answers with od_respond(..., plan->length). */
struct MHD_Response *od_file_answer(od_service *svc,
                                    struct MHD_Connection *conn, od_req *req,
                                    int fd, const od_file_validators *v,
                                    const od_file_plan *plan);

/* routes.c: answers a complete request (queues exactly one response). */
void od_route_dispatch(od_service *svc, struct MHD_Connection *conn,
                       od_req *req);
/* The rate limit (--rate-limit): takes req's token once, if its route is
 * limited; req->rate_wait > 0 (Retry-After seconds) when it had none.
 * http.c takes it when a request with a body begins, so a limited client's
 * body is never stored (discarded as it comes, or not sent at all after
 * Expect: 100-continue); od_route_dispatch otherwise. */
void od_route_rate_take(od_service *svc, od_req *req);
/* Takes the token (if not yet) and, when refused, counts it and answers
 * 429 with Retry-After: 1 then, else 0. */
int od_route_rate_limited(od_service *svc, struct MHD_Connection *conn,
                          od_req *req);
/* The 403 cors_refused of a POST that req->cross_origin marks. */
void od_route_cross_origin(od_service *svc, struct MHD_Connection *conn,
                           od_req *req);
/* http.c helpers the routes use. Each queues the response and records the
 * status; they steal `obj`. */
int od_respond_json(struct MHD_Connection *conn, od_req *req, int status,
                    json_t *obj);

/* An error answer: JSON {"error": message, "status": status}, plus
 * "details" and "retry_after" when set. */
typedef struct {
  int status;
  const char *type;          /* orfeas_errors_total's type: a fixed word */
  const char *message;       /* for the user: what went wrong, what to do */
  json_t *details;           /* stolen; NULL for none */
  int retry_after;           /* > 0: seconds, in Retry-After and the body */
  const char *allow;         /* the Allow header (405) */
  const char *ws_version;    /* the Sec-WebSocket-Version header (426) */
  int close;                 /* 1: Connection: close (MHD closes after it) */
  const char *content_range; /* the Content-Range header (416) */
} od_error;

/* The one way an error is answered: queues the JSON answer with its headers
 * and counts it in orfeas_errors_total{type, endpoint}. */
int od_respond_error_ex(od_service *svc, struct MHD_Connection *conn,
                        od_req *req, const od_error *e);
/* 503 fd_exhausted (Retry-After: 5), counted in orfeas_fd_exhausted_total
 * under op: the answer whenever EMFILE/ENFILE stops a request. */
int od_respond_fd_exhausted(od_service *svc, struct MHD_Connection *conn,
                            od_req *req, od_fd_op op);
/* The same without the optional headers (details stolen, may be NULL). */
int od_respond_error(od_service *svc, struct MHD_Connection *conn, od_req *req,
                     int status, const char *type, const char *message,
                     json_t *details);
/* 503 draining ("retry on another instance", Retry-After: 10); close: 1
 * adds Connection: close. */
int od_respond_draining(od_service *svc, struct MHD_Connection *conn,
                        od_req *req, int close);
struct MHD_Response;
int od_respond(struct MHD_Connection *conn, od_req *req, int status,
               struct MHD_Response *resp, uint64_t bytes);
/* 1 when the Accept-Encoding value allows gzip. */
int od_accepts_gzip(const char *accept_encoding);
/* gzip-compresses into a malloc'd buffer; 0 on success. */
int od_gzip(const void *in, size_t in_len, uint8_t **out, size_t *out_len);

/* http.c */
/* A listening TCP socket on host:port (numeric IPv4; port 0: any free
 * one), non-blocking, close-on-exec; SO_REUSEPORT only with reuse_port.
 * Returns the fd and the port bound, or -1 with the reason in err
 * ("cannot listen on ADDR:PORT: Address already in use (...)"). */
int od_listen_socket(const char *host, uint16_t port, int reuse_port,
                     uint16_t *bound_port, char *err, size_t err_len);
int od_http_start(od_service *svc, char *err, size_t err_len);
void od_http_stop(od_service *svc);

/* clock.c: the clock for per-request timing. Ticks are TSC cycles where the
 * kernel keeps time with the TSC, else CLOCK_MONOTONIC nanoseconds; only
 * differences of two od_ticks() from this process mean anything. */
enum { OD_CLOCK_MONOTONIC = 0, OD_CLOCK_TSC = 1 };
/* Picks and calibrates the clock once (20 ms; ORFEAS_CLOCK=monotonic forces
 * the fallback); call before the threads that time requests start.
 * Returns the OD_CLOCK_* in use. Thread-safe, idempotent. */
int od_clock_init(void);
/* The same, unconditionally, for tests: want_tsc 0 forces the fallback.
 * Not thread-safe: no od_ticks() may run meanwhile. */
int od_clock_setup(int want_tsc);
uint64_t od_ticks(void);
double od_ticks_seconds(uint64_t from, uint64_t to); /* 0 if to <= from */
int od_clock_mode(void);
double od_clock_tsc_hz(void); /* the calibrated TSC rate, 0 on the fallback */

double od_now(void);  /* CLOCK_MONOTONIC seconds */
double od_wall(void); /* CLOCK_REALTIME seconds */

/* log.c: one line, prefixed with the UTC time, to the service log (stderr).
 * Any thread; never interleaved with another line; never blocks on stderr
 * once od_log_start ran (a full buffer drops the line and counts it). */
typedef enum {
  OD_LOG_DEBUG = 0,
  OD_LOG_INFO,
  OD_LOG_WARN,
  OD_LOG_ERROR,
  OD_LOG_LEVELS
} od_log_level;

typedef struct {
  od_log_level level;  /* lines below it are not written */
  int json;            /* 1: JSON lines {"ts","level","msg"} */
  size_t buffer_bytes; /* the ring between callers and the writer thread */
  int fd;              /* where lines go; 0 = stderr (the service; tests
                          give a pipe) */
} od_log_opts;

/* od_log is info. */
void od_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void od_logl(od_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* 1 when a line at `level` would be written (to skip building one). */
int od_log_enabled(od_log_level level);
/* "debug", "info", "warning" (or "warn"), "error": 0, or -1. */
int od_log_level_parse(const char *name, od_log_level *out);
const char *od_log_level_name(od_log_level level);
/* Starts the writer thread (call with the signal mask set): lines go
 * through the ring from here on. 0, or -1 with err filled. */
int od_log_start(const od_log_opts *o, char *err, size_t err_len);
/* Lets the writer empty the ring for up to timeout_s, then stops using it
 * (a writer stuck on an unread stderr is left behind, never waited for). */
void od_log_stop(double timeout_s);
/* Counts dropped lines in `dropped` from now on (the ones dropped before
 * are added at once). */
void od_log_set_counter(om_counter *dropped);
uint64_t od_log_dropped(void);

#endif
