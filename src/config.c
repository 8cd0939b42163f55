/* config.c: orfeasd's flags and their ORFEAS_* environment twins.
 *
 * Every flag --name-with-dashes has a variable ORFEAS_NAME_WITH_UNDERSCORES.
 * The environment is read first and flags override it, so a systemd unit can
 * set defaults that a hand-typed flag still beats. Numbers are parsed with
 * strtol/strtod and checked against a range; a bad value names the flag (or
 * the variable) and the range in the error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "store.h"

/* K_FLAG: a switch, on by its bare name (--reuse-port) or set by
 * --name=1/0 and its variable. */
typedef enum { K_LISTEN, K_STR, K_INT, K_DOUBLE, K_BOOL, K_FLAG } kind;

typedef struct {
  const char *flag; /* without the leading "--" */
  const char *env;
  kind k;
  size_t off;
  size_t size;   /* K_STR: buffer size */
  double lo, hi; /* numeric range */
  const char *help;
} opt_def;

#define OFF(f) offsetof(od_config, f)
#define SZ(f) sizeof(((od_config *)0)->f)

static const opt_def OPTS[] = {
    /* K_LISTEN: off is the host field, size the port field's offset. */
    {"listen", "ORFEAS_LISTEN", K_LISTEN, OFF(listen_host), OFF(listen_port), 0,
     0, "ADDR:PORT to listen on (IPv4; default 127.0.0.1:5000)"},
    {"data-dir", "ORFEAS_DATA_DIR", K_STR, OFF(data_dir), SZ(data_dir), 0, 0,
     "uploads, outputs and the disk cache (default ./data)"},
    {"store", "ORFEAS_STORE", K_STR, OFF(store), SZ(store), 0, 0,
     "where job records live: sqlite:PATH (kept across restarts), memory: "
     "(this process; forgotten at exit) or redis://[USER@]HOST:PORT[/DB] "
     "(shared by every node of a cluster; --store-password-file; "
     "docs/scaling.md) (default "
     "sqlite:DATA_DIR/jobs.db)"},
    {"node-id", "ORFEAS_NODE_ID", K_STR, OFF(node_id), SZ(node_id), 0, 0,
     "this node's name in a cluster: in job owners, the node label of "
     "orfeas_build_info and the Redis consumer group (default the --listen "
     "ADDR:PORT)"},
    {"store-password-file", "ORFEAS_STORE_PASSWORD_FILE", K_STR,
     OFF(store_password_file), SZ(store_password_file), 0, 0,
     "redis store: a file whose first line is the password orfeasd gives "
     "Redis (AUTH; the user, if any, is redis://USER@HOST:PORT), read at "
     "each new connection (rotation without a restart); keep it mode 600. "
     "A password in the URL is refused (default none)"},
    {"orphan-age", "ORFEAS_ORPHAN_AGE", K_DOUBLE, OFF(orphan_age_s), 0, 60,
     3.2e8,
     "redis store (shared data dir): a file no job owns is removed once "
     "older than this many seconds; swept every quarter of it, at most "
     "every 10 minutes (default 3600)"},
    {"stranded-age", "ORFEAS_STRANDED_AGE", K_DOUBLE, OFF(stranded_age_s), 0, 1,
     86400,
     "a queued job found in no dispatch queue this many seconds after it "
     "was queued (its generate-3d died or lost the store between two "
     "writes) is queued again; looked for every 10 s, or every this many "
     "seconds if fewer; keep it above the store's slowest call (default "
     "60)"},
    {"store-lease", "ORFEAS_STORE_LEASE", K_DOUBLE, OFF(store_lease_s), 0, 0.2,
     3600,
     "redis store: seconds a running job's claim lasts unless its node "
     "renews it (every third of it); a node silent this long has its jobs "
     "taken over by another (default 10)"},
    {"max-attempts", "ORFEAS_MAX_ATTEMPTS", K_INT, OFF(max_attempts), 0, 1, 100,
     "runs of a job cut short by a crash before it fails with a reason; a "
     "run a drain stopped at --drain-timeout does not count (default 3)"},
    {"result-ttl", "ORFEAS_RESULT_TTL", K_DOUBLE, OFF(result_ttl_s), 0, 1,
     3.2e8,
     "seconds finished jobs and unused uploads are kept at least, "
     "unless --max-store-mb needs the room; then they answer 410 "
     "(default 86400)"},
    {"refused-hold", "ORFEAS_REFUSED_HOLD", K_INT, OFF(refused_hold_s), 0, 0,
     86400,
     "seconds past its Retry-After an upload whose generate got 429 "
     "keeps its slot (default 60)"},
    {"workers", "ORFEAS_WORKERS", K_INT, OFF(workers), 0, 1, 256,
     "pipeline threads (default: the number of cores)"},
    {"worker-nice", "ORFEAS_WORKER_NICE", K_INT, OFF(worker_nice), 0, 0, 19,
     "nice value of the worker threads, so HTTP and WebSocket stay responsive "
     "under load (default 10; 0 = same as the rest)"},
    {"queue-size", "ORFEAS_QUEUE_SIZE", K_INT, OFF(queue_size), 0, 1, 100000,
     "jobs that may wait for a worker; more get 429 (default 100)"},
    {"max-upload-mb", "ORFEAS_MAX_UPLOAD_MB", K_INT, OFF(max_upload_mb), 0, 1,
     1024, "largest upload body in MB; larger gets 413 (default 50)"},
    {"http-threads", "ORFEAS_HTTP_THREADS", K_INT, OFF(http_threads), 0, 1, 64,
     "HTTP event-loop threads (default 2)"},
    {"request-threads", "ORFEAS_REQUEST_THREADS", K_INT, OFF(request_threads),
     0, 0, 64,
     "threads that answer upload-image and generate-3d (the image check, "
     "the syncs and commits), so the HTTP threads keep serving other "
     "connections meanwhile; 0 = on the HTTP threads (default: the number "
     "of cores, at least 2)"},
    {"max-connections", "ORFEAS_MAX_CONNECTIONS", K_INT, OFF(max_connections),
     0, 4, 100000, "open HTTP connections at most (default 1024)"},
    {"max-ws-clients", "ORFEAS_MAX_WS_CLIENTS", K_INT, OFF(max_ws_clients), 0,
     1, 100000, "WebSocket clients at most; more get 503 (default 1000)"},
    {"ws-queue", "ORFEAS_WS_QUEUE", K_INT, OFF(ws_queue), 0, 1, 100000,
     "frames queued per WebSocket client before events are dropped "
     "(default 256)"},
    {"ws-max-subscriptions", "ORFEAS_WS_MAX_SUBSCRIPTIONS", K_INT,
     OFF(ws_max_subs), 0, 1, 1024,
     "jobs one WebSocket connection follows at once; one more is refused "
     "(counted) (default 32)"},
    {"ws-sndbuf-kb", "ORFEAS_WS_SNDBUF_KB", K_INT, OFF(ws_sndbuf_kb), 0, 4,
     65536, "kernel send buffer per WebSocket socket, KiB (default 64)"},
    {"rate-limit", "ORFEAS_RATE_LIMIT", K_DOUBLE, OFF(rate_limit_rps), 0, 0,
     1e6, "API requests per second per client address; 0 = off (default 0)"},
    {"rate-burst", "ORFEAS_RATE_BURST", K_INT, OFF(rate_limit_burst), 0, 1,
     1000000, "token-bucket size for --rate-limit (default 20)"},
    /* The HTTP edge (issue #13; docs/api.md "Limits"). */
    {"admin-listen", "ORFEAS_ADMIN_LISTEN", K_LISTEN, OFF(admin_host),
     OFF(admin_port), 0, 0,
     "ADDR:PORT of a second listener that alone serves "
     "/health, /ready and /metrics, with its own connections (default: none, "
     "they are served on --listen)"},
    {"admin-connections", "ORFEAS_ADMIN_CONNECTIONS", K_INT,
     OFF(admin_connections), 0, 1, 10000,
     "open connections on "
     "--admin-listen at most (default 16)"},
    {"header-timeout", "ORFEAS_HEADER_TIMEOUT", K_DOUBLE, OFF(header_timeout_s),
     0, 0.1, 3600,
     "seconds a connection may take to send a request's "
     "headers (also the longest idle keep-alive wait); later it is closed "
     "(default 10)"},
    {"body-min-rate", "ORFEAS_BODY_MIN_RATE", K_INT, OFF(body_min_rate), 0, 0,
     1 << 30,
     "bytes/s a request body must average over each "
     "--header-timeout window; slower is closed; 0 = off (default 1024)"},
    {"max-conns-per-address", "ORFEAS_MAX_CONNS_PER_ADDRESS", K_INT,
     OFF(max_conns_per_addr), 0, 0, 1000000,
     "open connections per client "
     "address (trusted proxies exempt); more are refused; 0 = off "
     "(default 128)"},
    {"max-body-inflight-mb", "ORFEAS_MAX_BODY_INFLIGHT_MB", K_INT,
     OFF(max_body_inflight_mb), 0, 1, 1 << 20,
     "request bodies being "
     "received at once, all connections together, MB; past it 503 "
     "(default 512)"},
    {"max-body-inflight-per-address-mb",
     "ORFEAS_MAX_BODY_INFLIGHT_PER_ADDRESS_MB", K_INT,
     OFF(max_body_inflight_addr_mb), 0, 0, 1 << 20,
     "of those, what one client address may be receiving "
     "(trusted proxies exempt), MB; past it 503; 0 = off (default: a quarter "
     "of --max-body-inflight-mb, at least --max-upload-mb)"},
    {"body-memory-mb", "ORFEAS_BODY_MEMORY_MB", K_INT, OFF(body_memory_mb), 0,
     0, 1 << 20,
     "upload bodies received into memory instead of a file in "
     "DATA/tmp, all together, MB; a body of at most an eighth of it that "
     "fits goes to memory, any other to a file; 0 = every upload to a "
     "file (default 32)"},
    {"max-json-kb", "ORFEAS_MAX_JSON_KB", K_INT, OFF(max_json_kb), 0, 1,
     1 << 20,
     "largest body of a request other than an upload, KiB; larger "
     "gets 413 (default 64)"},
    {"trusted-proxies", "ORFEAS_TRUSTED_PROXIES", K_STR, OFF(trusted_proxies),
     SZ(trusted_proxies), 0, 0,
     "comma list of IPv4 CIDRs of reverse proxies "
     "whose X-Forwarded-For names the client (rate limits, logs); default "
     "none: the peer address is the client"},
    {"cache-memory-mb", "ORFEAS_CACHE_MEMORY_MB", K_INT, OFF(cache_memory_mb),
     0, 0, 1 << 20, "memory tier of the result cache (default 256)"},
    {"image-memo-mb", "ORFEAS_IMAGE_MEMO_MB", K_INT, OFF(image_memo_mb), 0, 0,
     1 << 20,
     "uploads' decoded pixels kept for their job's run, and which "
     "images passed the upload check; 0 decodes every image twice (default "
     "128)"},
    {"cache-disk-mb", "ORFEAS_CACHE_DISK_MB", K_INT, OFF(cache_disk_mb), 0, 0,
     1 << 24, "data-dir tier of the result cache (default 2048)"},
    {"max-jobs", "ORFEAS_MAX_JOBS", K_INT, OFF(max_jobs), 0, 16, 10000000,
     "jobs kept (about 1 KB of memory each), and as many removed ones that "
     "answer 410; a full table refuses uploads (default 100000)"},
    {"max-store-mb", "ORFEAS_MAX_STORE_MB", K_INT, OFF(max_store_mb), 0, 1,
     1 << 24,
     "uploads + models kept in the data dir; past it the finished "
     "jobs changed longest ago are removed (410) (default 8192)"},
    {"http-metrics", "ORFEAS_HTTP_METRICS", K_BOOL, OFF(http_metrics), 0, 0, 1,
     "1/0: per-request metrics (0 only for the overhead benchmark) "
     "(default 1)"},
    {"access-log", "ORFEAS_ACCESS_LOG", K_BOOL, OFF(access_log), 0, 0, 1,
     "1/0: one stderr line per request (default 1)"},
    {"nvml-lib", "ORFEAS_NVML_LIB", K_STR, OFF(nvml_lib), SZ(nvml_lib), 0, 0,
     "NVML library to load (default libnvidia-ml.so.1; a fake for tests)"},
    {"gpu-interval", "ORFEAS_GPU_INTERVAL", K_DOUBLE, OFF(gpu_interval_s), 0,
     0.05, 3600, "seconds between GPU samples (default 5)"},
    {"gpu-call-timeout", "ORFEAS_GPU_CALL_TIMEOUT", K_DOUBLE,
     OFF(gpu_call_timeout_s), 0, 0.01, 600,
     "seconds an NVML call may take "
     "before its GPU shows down (default 2)"},
    {"gpus", "ORFEAS_GPUS", K_STR, OFF(gpus), SZ(gpus), 0, 0,
     "the GPUs to watch: all, or a comma list of NVML indexes and UUIDs "
     "(GPU- and 8-4-4-4-12 hex digits, any case, as nvidia-smi -L prints "
     "them; not MIG- instances); others are never sampled or shown. "
     "CUDA_VISIBLE_DEVICES is not read (default all)"},
    {"static-dir", "ORFEAS_STATIC_DIR", K_STR, OFF(static_dir), SZ(static_dir),
     0, 0,
     "the Studio page's folder, served at /, /studio and /static/ (default: "
     "static/ next to the binary, as make stages it, or "
     "PREFIX/share/orfeas/static for PREFIX/bin/orfeasd)"},
    {"sio-ping-interval", "ORFEAS_SIO_PING_INTERVAL", K_DOUBLE,
     OFF(sio_ping_interval_s), 0, 0.1, 3600,
     "seconds between Engine.IO pings "
     "to Socket.IO clients (/socket.io/; default 25)"},
    {"sio-ping-timeout", "ORFEAS_SIO_PING_TIMEOUT", K_DOUBLE,
     OFF(sio_ping_timeout_s), 0, 0.1, 3600,
     "seconds a Socket.IO client has "
     "to answer a ping before it is closed (default 20)"},
    {"cors-origins", "ORFEAS_CORS_ORIGINS", K_STR, OFF(cors_origins),
     SZ(cors_origins), 0, 0,
     "comma list of browser origins (scheme://host"
     "[:port], or *) allowed to call /api/ and open WebSockets; default none: "
     "same-origin only"},
    {"allowed-hosts", "ORFEAS_ALLOWED_HOSTS", K_STR, OFF(allowed_hosts),
     SZ(allowed_hosts), 0, 0,
     "comma list (at most 32) of the host names or IP literals (port "
     "aside; IPv6 in brackets) this server answers in the Host header, or "
     "*; other Hosts get 403 (host_refused), against DNS rebinding. "
     "localhost, *.localhost, 127.x.x.x, [::1] and the listen address always "
     "pass. Default: only those on a loopback --listen, any Host on another "
     "address. Set it there (the names clients use) and behind a reverse "
     "proxy that passes the browser's Host (the site's public names)"},
    {"pause-file", "ORFEAS_PAUSE_FILE", K_STR, OFF(pause_file), SZ(pause_file),
     0, 0,
     "while this file exists, workers hold each job before its first "
     "stage (tests and alert drills); if it holds the word \"drain\", through "
     "a drain too, until --drain-timeout cancels the job; if it holds "
     "\"enqueue\", each generate-3d also waits between queuing its job and "
     "enqueuing it (crash drills); if it holds \"commit\", no worker is "
     "held but each finished run, between making room for its model and "
     "writing it"},
    /* The process (issue #13): start-up, shutdown, log, storage, WebSocket
     * liveness. */
    {"reuse-port", "ORFEAS_REUSE_PORT", K_FLAG, OFF(reuse_port), 0, 0, 1,
     "share the port with other processes (SO_REUSEPORT); without it a "
     "second instance exits 1 with \"Address already in use\""},
    {"drain-timeout", "ORFEAS_DRAIN_TIMEOUT", K_DOUBLE, OFF(drain_timeout_s), 0,
     1, 3600,
     "seconds from SIGTERM to exit at most; jobs still running "
     "past it are stopped: queued again in a durable store, ahead of the "
     "jobs queued after them, they run after the restart (memory: they "
     "fail) (default 25)"},
    {"log-level", "ORFEAS_LOG_LEVEL", K_STR, OFF(log_level), SZ(log_level), 0,
     0,
     "debug, info, warning or error; scrapes and health checks are "
     "logged at debug (default info)"},
    {"log-format", "ORFEAS_LOG_FORMAT", K_STR, OFF(log_format), SZ(log_format),
     0, 0, "text or json (one JSON object a line) (default text)"},
    {"log-buffer-kb", "ORFEAS_LOG_BUFFER_KB", K_INT, OFF(log_buffer_kb), 0, 16,
     1 << 20,
     "log lines waiting for stderr, KiB; past it lines are dropped "
     "and counted (default 1024)"},
    {"min-free-mb", "ORFEAS_MIN_FREE_MB", K_INT, OFF(min_free_mb), 0, 0,
     1 << 24,
     "/ready answers 503 while the data dir's filesystem has less "
     "free; 0 = off (default 256)"},
    {"ws-ping-interval", "ORFEAS_WS_PING_INTERVAL", K_DOUBLE,
     OFF(ws_ping_interval_s), 0, 0.05, 3600,
     "seconds between server pings "
     "to a /ws client (default 25)"},
    {"ws-ping-timeout", "ORFEAS_WS_PING_TIMEOUT", K_DOUBLE,
     OFF(ws_ping_timeout_s), 0, 0.05, 3600,
     "a /ws client that answers no "
     "ping for this long is closed as idle (default 20)"},
};

#define NOPTS (sizeof OPTS / sizeof OPTS[0])

void od_config_defaults(od_config *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
  c->listen_port = 5000;
  snprintf(c->data_dir, sizeof c->data_dir, "data");
  /* "" until parsed: then sqlite:DATA_DIR/jobs.db, once DATA_DIR is known. */
  c->store[0] = '\0';
  c->max_attempts = 3;
  c->store_lease_s = 10;
  c->result_ttl_s = 86400;
  c->orphan_age_s = 3600;
  c->stranded_age_s = 60;
  c->refused_hold_s = 60;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  /* The cores, at most the flag's 256 (a larger machine gets 256 workers,
   * not the 2 of an unknown count). */
  c->workers = n > 256 ? 256 : n > 0 ? (int)n : 2;
  c->queue_size = 100;
  c->worker_nice = 10;
  c->max_upload_mb = 50;
  c->http_threads = 2;
  c->request_threads = n >= 2 && n <= 64 ? (int)n : n > 64 ? 64 : 2;
  c->max_connections = 1024;
  c->max_ws_clients = 1000;
  c->ws_queue = 256;
  c->ws_sndbuf_kb = 64;
  c->ws_max_subs = 32;
  c->rate_limit_rps = 0;
  c->rate_limit_burst = 20;
  c->cache_memory_mb = 256;
  c->image_memo_mb = 128;
  c->cache_disk_mb = 2048;
  c->max_jobs = 100000;
  c->max_store_mb = 8192;
  c->http_metrics = 1;
  c->access_log = 1;
  c->gpu_interval_s = 5;
  c->gpu_call_timeout_s = 2;
  snprintf(c->gpus, sizeof c->gpus, "all");
  c->sio_ping_interval_s = 25; /* python-socketio's and socket.io's defaults */
  c->sio_ping_timeout_s = 20;
  c->admin_connections = 16;
  c->header_timeout_s = 10;
  c->body_min_rate = 1024;
  c->max_conns_per_addr = 128;
  c->max_body_inflight_mb = 512;
  c->max_body_inflight_addr_mb = -1; /* from --max-body-inflight-mb (parse) */
  c->body_memory_mb = 32;
  c->max_json_kb = 64;
  c->drain_timeout_s = 25;
  snprintf(c->log_level, sizeof c->log_level, "info");
  snprintf(c->log_format, sizeof c->log_format, "text");
  c->log_level_n = OD_LOG_INFO;
  c->log_buffer_kb = 1024;
  c->min_free_mb = 256;
  c->ws_ping_interval_s = 25;
  c->ws_ping_timeout_s = 20;
}

void od_config_usage(char *buf, size_t len) {
  size_t used = 0;
  int n = snprintf(buf, len,
                   "usage: orfeasd [--flag VALUE]...\n"
                   "The ORFEAS 2D->3D service (HTTP + WebSocket). Every flag "
                   "may also come from its ORFEAS_* variable;\nflags win.\n\n");
  if (n > 0)
    used = (size_t)n < len ? (size_t)n : len;
  for (size_t i = 0; i < NOPTS && used < len; i++) {
    /* A number's range as apply() checks it, so --help tells the bound
     * before a start refuses the value. */
    char range[48] = "";
    if (OPTS[i].k == K_INT || OPTS[i].k == K_DOUBLE)
      snprintf(range, sizeof range, " [%.10g..%.10g]", OPTS[i].lo, OPTS[i].hi);
    n = snprintf(buf + used, len - used, "  --%-17s %-24s %s%s\n", OPTS[i].flag,
                 OPTS[i].env, OPTS[i].help, range);
    if (n > 0)
      used += (size_t)n < len - used ? (size_t)n : len - used;
  }
  if (used < len)
    snprintf(
        buf + used, len - used,
        "  --help              print this\n"
        "  --version           print the version, git revision and build "
        "type\n\n"
        "Environment only: ORFEAS_CLOCK=monotonic times requests with "
        "CLOCK_MONOTONIC\n"
        "instead of the TSC (used where the kernel's clocksource is tsc).\n");
}

/* ADDR:PORT into the host field (64 bytes) and the port field. */
static int parse_listen(char *host_out, uint16_t *port_out, const char *v,
                        const char *who, char *err, size_t err_len) {
  const char *colon = strrchr(v, ':');
  if (colon == NULL || colon == v || (size_t)(colon - v) >= 64) {
    snprintf(err, err_len,
             "%s: expected ADDR:PORT (e.g. 127.0.0.1:5000), got \"%s\"", who,
             v);
    return -1;
  }
  char host[64];
  memcpy(host, v, (size_t)(colon - v));
  host[colon - v] = '\0';
  struct in_addr a;
  if (inet_pton(AF_INET, host, &a) != 1) {
    snprintf(err, err_len, "%s: \"%s\" is not a numeric IPv4 address", who,
             host);
    return -1;
  }
  char *end;
  errno = 0;
  long port = strtol(colon + 1, &end, 10);
  if (errno || end == colon + 1 || *end != '\0' || port < 0 || port > 65535) {
    snprintf(err, err_len, "%s: port \"%s\" is not a number in 0..65535", who,
             colon + 1);
    return -1;
  }
  snprintf(host_out, 64, "%s", host);
  *port_out = (uint16_t)port;
  return 0;
}

static int apply(od_config *c, const opt_def *o, const char *v, const char *who,
                 char *err, size_t err_len) {
  char *base = (char *)c;
  char *end;
  switch (o->k) {
  case K_LISTEN:
    return parse_listen(base + o->off, (uint16_t *)(void *)(base + o->size), v,
                        who, err, err_len);
  case K_STR:
    if (strlen(v) >= o->size) {
      snprintf(err, err_len, "%s: value longer than %zu bytes", who,
               o->size - 1);
      return -1;
    }
    snprintf(base + o->off, o->size, "%s", v);
    return 0;
  case K_FLAG:
  case K_INT:
  case K_BOOL: {
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < (long)o->lo ||
        n > (long)o->hi) {
      snprintf(err, err_len, "%s: \"%s\" is not an integer in %.0f..%.0f", who,
               v, o->lo, o->hi);
      return -1;
    }
    *(int *)(void *)(base + o->off) = (int)n;
    return 0;
  }
  case K_DOUBLE: {
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !(d >= o->lo && d <= o->hi)) {
      snprintf(err, err_len, "%s: \"%s\" is not a number in %g..%g", who, v,
               o->lo, o->hi);
      return -1;
    }
    *(double *)(void *)(base + o->off) = d;
    return 0;
  }
  }
  return -1;
}

/* The process block's values that are words (issue #13). */
static int check_process(od_config *c, char *err, size_t err_len) {
  od_log_level lvl;
  if (od_log_level_parse(c->log_level, &lvl) != 0) {
    snprintf(err, err_len,
             "--log-level: \"%s\" is not one of debug, info, warning, error",
             c->log_level);
    return -1;
  }
  c->log_level_n = (int)lvl;
  if (strcmp(c->log_format, "text") != 0 &&
      strcmp(c->log_format, "json") != 0) {
    snprintf(err, err_len, "--log-format: \"%s\" is not text or json",
             c->log_format);
    return -1;
  }
  c->log_json = c->log_format[0] == 'j';
  return 0;
}

int od_config_parse(od_config *c, int argc, char **argv,
                    const char *(*getenv_fn)(const char *), char *err,
                    size_t err_len) {
  /* The environment first, so flags override it. */
  for (size_t i = 0; getenv_fn != NULL && i < NOPTS; i++) {
    const char *v = getenv_fn(OPTS[i].env);
    if (v != NULL && apply(c, &OPTS[i], v, OPTS[i].env, err, err_len) != 0)
      return -1;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      return 1;
    if (strcmp(a, "--version") == 0)
      return 2;
    if (strncmp(a, "--", 2) != 0) {
      snprintf(err, err_len,
               "unexpected argument \"%s\" (flags start with --; see --help)",
               a);
      return -1;
    }
    /* Both "--flag value" and "--flag=value". */
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    const opt_def *o = NULL;
    for (size_t k = 0; k < NOPTS; k++)
      if (strlen(OPTS[k].flag) == nlen &&
          strncmp(OPTS[k].flag, name, nlen) == 0)
        o = &OPTS[k];
    if (o == NULL) {
      snprintf(err, err_len, "unknown flag \"%.*s\" (see --help)",
               (int)(nlen + 2), a);
      return -1;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (v == NULL && o->k == K_FLAG)
      v = "1";
    if (v == NULL) {
      if (i + 1 >= argc) {
        snprintf(err, err_len, "--%s needs a value (see --help)", o->flag);
        return -1;
      }
      v = argv[++i];
    }
    char who[64];
    snprintf(who, sizeof who, "--%s", o->flag);
    if (apply(c, o, v, who, err, err_len) != 0)
      return -1;
  }
  if (c->data_dir[0] == '\0') {
    snprintf(err, err_len, "--data-dir: must not be empty");
    return -1;
  }
  if (c->store[0] == '\0' &&
      snprintf(c->store, sizeof c->store, "sqlite:%s/jobs.db", c->data_dir) >=
          (int)sizeof c->store) {
    snprintf(err, err_len, "--data-dir: too long for the job store's path");
    return -1;
  }
  /* One address may hold a quarter of the body budget, and at least one
   * whole upload (within the budget itself). */
  if (c->max_body_inflight_addr_mb < 0) {
    int q = c->max_body_inflight_mb / 4;
    if (q < c->max_upload_mb)
      q = c->max_upload_mb;
    if (q > c->max_body_inflight_mb)
      q = c->max_body_inflight_mb;
    c->max_body_inflight_addr_mb = q;
  }
  if (c->node_id[0] == '\0') {
    /* The default, the --listen address, names a node only where that
     * address is its own: 0.0.0.0:5000 is every machine's that listens on
     * all addresses, and port 0 every node's that takes a free port. In a
     * cluster two nodes of one name share a Redis consumer, the owner
     * names of their workers and the node label of their metrics: one
     * node's claims, takeovers and alerts are taken for the other's. */
    if (strncmp(c->store, "redis:", 6) == 0 &&
        (strcmp(c->listen_host, "0.0.0.0") == 0 || c->listen_port == 0)) {
      snprintf(err, err_len,
               "--node-id: required with a redis:// store when --listen is "
               "%s:%u (the default node id, that address, would be the same "
               "on every node): give each node a name of its own, e.g. its "
               "host name",
               c->listen_host, (unsigned)c->listen_port);
      return -1;
    }
    snprintf(c->node_id, sizeof c->node_id, "%.50s:%u", c->listen_host,
             (unsigned)c->listen_port);
  }
  od_proxies proxies;
  if (od_proxies_parse(&proxies, c->trusted_proxies, err, err_len) != 0)
    return -1;
  if (c->admin_host[0] && strcmp(c->admin_host, c->listen_host) == 0 &&
      c->admin_port == c->listen_port && c->listen_port != 0) {
    snprintf(err, err_len, "--admin-listen: must differ from --listen");
    return -1;
  }
  if (check_process(c, err, err_len) != 0)
    return -1;
  char why[256];
  if (orfeas_gpu_select_check(c->gpus, why, sizeof why) != 0) {
    snprintf(err, err_len, "--gpus: %s", why);
    return -1;
  }
  return od_store_url_check(c->store, c->store_password_file, err, err_len);
}
