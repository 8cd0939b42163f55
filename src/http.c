/* http.c: libmicrohttpd glue.
 *
 * MHD calls the access handler several times per request: first with the
 * headers, then once per body chunk, then once with no data. A response is
 * queued only from the second call on: MHD 0.9.75 answers "Connection:
 * close" to a response queued on the first call, which would cost every
 * keep-alive client a new connection. The one exception is a body whose
 * Content-Length is over --max-upload-mb: that gets its 413 at once, before
 * MHD sends "100 Continue" or reads a byte of it (the connection closes).
 * A body without a length (chunked) that crosses the limit is discarded
 * from there on (never buffered) and gets its 413 at its end.
 *
 * Per-request metrics and the access log line are written in the
 * completion callback, which MHD calls once per request whatever happened,
 * so every answered request is counted exactly once with its final status.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <zlib.h>

#include "orfeasd.h"

/* ---- responses ----------------------------------------------------------- */

int od_respond(struct MHD_Connection *conn, od_req *req, int status,
               struct MHD_Response *resp, uint64_t bytes) {
  if (resp == NULL)
    return MHD_NO;
  req->status = status;
  /* The body bytes sent: none for a HEAD (MHD sends its headers only,
   * Content-Length the GET's). */
  req->resp_bytes = req->method_idx == OD_METHOD_HEAD ? 0 : bytes;
  /* Every answer's Content-Type is the one meant (as the original API
   * said on all of them): a downloaded OBJ or PLY is text, a JSON error
   * may quote what a client sent, and neither is for a browser to guess
   * at. */
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  /* CORS (cors.c): decided when the request arrived, added to every answer
   * of an /api/ route, errors included, so a page can read them. */
  if (req->cors)
    MHD_add_response_header(resp, "Vary", "Origin");
  if (req->acao[0]) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", req->acao);
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            OD_CORS_EXPOSE_HEADERS);
  }
  if (req->offloaded == OD_OFFLOAD_QUEUED) {
    /* On a request thread (offload.c): MHD queues responses only from its
     * own callback, so req_end does once the connection is resumed. */
    req->deferred = resp;
    return MHD_YES;
  }
  enum MHD_Result r = MHD_queue_response(conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  /* Refused (a 101 MHD will not send, a response queued in the wrong
   * state): nothing was answered, so req_end returns MHD_NO and MHD closes
   * the connection. With the status kept, MHD called the handler again
   * for an answer, which was refused again, and so on: an HTTP thread
   * spinning on one request (an HTTP/1.0 WebSocket upgrade did that). */
  if (r != MHD_YES)
    req->status = 0;
  return r;
}

/* A JSON response (steals obj): Content-Type and no caching; NULL when out
 * of memory. */
static struct MHD_Response *json_response(json_t *obj, size_t *len) {
  char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (text == NULL)
    return NULL;
  *len = strlen(text);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(*len, text, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(text);
    return NULL;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  return resp;
}

int od_respond_json(struct MHD_Connection *conn, od_req *req, int status,
                    json_t *obj) {
  size_t len = 0;
  /* Two statements: an argument list does not order json_response's write
   * of len before the read of len (GCC read it first: every JSON answer
   * was counted 0 bytes in orfeas_http_response_size_bytes). */
  struct MHD_Response *resp = json_response(obj, &len);
  return od_respond(conn, req, status, resp, len);
}

int od_respond_error_ex(od_service *svc, struct MHD_Connection *conn,
                        od_req *req, const od_error *e) {
  od_metric_error(&svc->m, e->type, req->route);
  json_t *o = json_pack("{s:s, s:i}", "error", e->message, "status", e->status);
  if (o != NULL && e->details != NULL)
    json_object_set(o, "details", e->details);
  json_decref(e->details);
  if (o != NULL && e->retry_after > 0)
    json_object_set_new(o, "retry_after", json_integer(e->retry_after));
  size_t len = 0;
  struct MHD_Response *resp = json_response(o, &len);
  if (resp != NULL && e->retry_after > 0) {
    char ra[16];
    snprintf(ra, sizeof ra, "%d", e->retry_after);
    MHD_add_response_header(resp, "Retry-After", ra);
  }
  if (resp != NULL && e->allow != NULL)
    MHD_add_response_header(resp, "Allow", e->allow);
  if (resp != NULL && e->close)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  if (resp != NULL && e->ws_version != NULL)
    MHD_add_response_header(resp, "Sec-WebSocket-Version", e->ws_version);
  if (resp != NULL && e->content_range != NULL)
    MHD_add_response_header(resp, "Content-Range", e->content_range);
  return od_respond(conn, req, e->status, resp, len);
}

int od_respond_draining(od_service *svc, struct MHD_Connection *conn,
                        od_req *req, int close) {
  return od_respond_error_ex(
      svc, conn, req,
      &(od_error){.status = 503,
                  .type = "draining",
                  .message = "Service shutting down; retry on another "
                             "instance",
                  .retry_after = 10,
                  .close = close});
}

int od_respond_error(od_service *svc, struct MHD_Connection *conn, od_req *req,
                     int status, const char *type, const char *message,
                     json_t *details) {
  return od_respond_error_ex(svc, conn, req,
                             &(od_error){.status = status,
                                         .type = type,
                                         .message = message,
                                         .details = details});
}

/* ---- gzip ---------------------------------------------------------------- */

/* A q value (RFC 9110 12.4.2: "0" or "1", up to three decimals) above 0,
 * read by hand: strtod would follow the locale's decimal point. */
static int q_positive(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (v[i] >= '1' && v[i] <= '9')
      return 1;
  return 0;
}

int od_accepts_gzip(const char *ae) {
  if (ae == NULL)
    return 0;
  /* Tokens separated by commas, each "coding[;param=value]...". gzip's own
   * q decides when gzip is listed ("gzip;q=0" refuses it, whatever "*"
   * says); else "*"'s, which stands for every coding not listed (RFC 9110
   * 12.5.3). -1: not listed. */
  int gzip = -1, star = -1;
  const char *p = ae;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    const char *tok = p;
    while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
      p++;
    size_t tl = (size_t)(p - tok);
    int ok = 1;
    while (*p && *p != ',') {
      while (*p == ' ' || *p == '\t' || *p == ';')
        p++;
      const char *name = p;
      while (*p && *p != '=' && *p != ';' && *p != ',')
        p++;
      size_t nl = (size_t)(p - name);
      while (nl > 0 && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
        nl--;
      if (*p != '=')
        continue;
      const char *v = ++p;
      while (*p && *p != ';' && *p != ',')
        p++;
      if (nl == 1 && (name[0] == 'q' || name[0] == 'Q'))
        ok = q_positive(v, (size_t)(p - v));
    }
    if (tl == 4 && strncasecmp(tok, "gzip", 4) == 0)
      gzip = ok;
    else if (tl == 1 && tok[0] == '*')
      star = ok;
  }
  return gzip >= 0 ? gzip : star > 0;
}

int od_gzip(const void *in, size_t in_len, uint8_t **out, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  /* 15 + 16: a gzip header and trailer, not raw zlib. Level 1: the text
   * compresses about as well and the scrape stays cheap. */
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  size_t cap = deflateBound(&zs, (uLong)in_len) + 32;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    deflateEnd(&zs);
    return -1;
  }
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)in_len;
  zs.next_out = buf;
  zs.avail_out = (uInt)cap;
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    free(buf);
    return -1;
  }
  *out = buf;
  *out_len = cap - zs.avail_out;
  return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* Printable copy of a URL for the log (no control bytes, bounded). */
static void log_safe(const char *in, char *out, size_t len) {
  size_t o = 0;
  for (; in && *in && o + 1 < len; in++)
    out[o++] = (*in >= 0x21 && *in < 0x7f) ? *in : '?';
  out[o] = '\0';
}

/* ---- MHD callbacks ------------------------------------------------------- */

/* The context uri_cb gives a request whose query arguments may not fit in
 * MHD's connection memory: its address only (a static, so nothing leaks
 * when MHD never calls back). req_begin replaces it with a request that
 * answers 414. */
static char query_cut;

/* The connection's entry in the edge table (edge.c). */
static od_conn *conn_of(struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* 413, for a declared length over the limit and for a body that crossed
 * it. */
static int too_large(od_service *svc, struct MHD_Connection *conn,
                     od_req *req) {
  char msg[96];
  if (req->route == OD_ROUTE_UPLOAD)
    snprintf(msg, sizeof msg, "File too large (max %dMB)",
             svc->cfg.max_upload_mb);
  else
    snprintf(msg, sizeof msg, "Request body too large (max %d KiB)",
             svc->cfg.max_json_kb);
  od_metric_validation(&svc->m, "body", "too_large");
  return od_respond_error(svc, conn, req, 413, "payload_too_large", msg, NULL);
}

/* Takes a body's bytes from --max-body-inflight-mb and from its client
 * address's share of it: 0, or -1 with nothing taken (req->over_address
 * set when the share was the one short). */
static int reserve_body(od_service *svc, od_req *req, uint64_t bytes) {
  if (od_edge_reserve_addr(svc->edge, req->conn, bytes) != 0) {
    req->over_address = 1;
    return -1;
  }
  if (od_edge_reserve(svc->edge, bytes) != 0) {
    od_edge_release_addr(svc->edge, req->conn, bytes);
    return -1;
  }
  return 0;
}

/* 503 past --max-body-inflight-mb, or past the address's share of it. */
static int over_budget(od_service *svc, struct MHD_Connection *conn,
                       od_req *req) {
  om_counter_inc(svc->m.body_rejected);
  return od_respond_error_ex(
      svc, conn, req,
      &(od_error){.status = 503,
                  .type = "body_budget",
                  .message = req->over_address
                                 ? "This client address is sending as many "
                                   "request bodies at once as one address "
                                   "may (--max-body-inflight-per-address-mb); "
                                   "retry once one has finished"
                                 : "The server is receiving as many request "
                                   "bodies as it allows "
                                   "(--max-body-inflight-mb); retry shortly",
                  .retry_after = 5});
}

int od_respond_fd_exhausted(od_service *svc, struct MHD_Connection *conn,
                            od_req *req, od_fd_op op) {
  od_metric_fd_exhausted(svc, op);
  return od_respond_error_ex(
      svc, conn, req,
      &(od_error){.status = 503,
                  .type = "fd_exhausted",
                  .message = "The server is out of file descriptors; retry "
                             "shortly",
                  .retry_after = 5});
}

/* The answer to a body that could not be stored (errno e). */
static int body_failed(od_service *svc, struct MHD_Connection *conn,
                       od_req *req, int e) {
  if (od_errno_is_fd_exhaustion(e))
    return od_respond_fd_exhausted(svc, conn, req, OD_FD_UPLOAD);
  od_log("request body not stored: %s", strerror(e));
  if (e == ENOSPC || e == EDQUOT) /* as the store answers a full disk */
    return od_respond_error_ex(
        svc, conn, req,
        &(od_error){.status = 503,
                    .type = "store_unavailable",
                    .message = "No disk space left on the server for the "
                               "request body; retry later",
                    .retry_after = 5});
  if (e == ENOMEM)
    return od_respond_error_ex(
        svc, conn, req,
        &(od_error){.status = 503,
                    .type = "internal",
                    .message = "Out of memory for the request body; retry "
                               "shortly",
                    .retry_after = 5});
  return od_respond_error(svc, conn, req, 500, "internal",
                          "The request body could not be stored (a server "
                          "problem; the service log has the reason)",
                          NULL);
}

/* What one pass over the request headers collects: the framing (framing.c)
 * and X-Forwarded-For, every such header joined with ','. */
typedef struct {
  od_framing f;
  char xff[1024];
  size_t xff_len;
  int xff_seen, xff_cut;
  int expect_continue; /* Expect: 100-continue */
} header_scan;

/* Joins one X-Forwarded-For header to those before it. Past the buffer the
 * rightmost bytes are kept (h->xff_cut; client_of then drops the first,
 * partial, entry): the walk reads from the right (proxy.c), and a proxy
 * such as nginx appends the address it saw to whatever the client wrote,
 * so a client that writes 1 KB of its own must not push that address out
 * (it did: the whole header was then malformed and the proxy became the
 * client). */
static void xff_append(header_scan *h, const char *value) {
  const size_t cap = sizeof h->xff - 1;
  size_t n = strlen(value), sep = h->xff_seen ? 1 : 0;
  h->xff_seen = 1;
  if (h->xff_len + sep + n > cap) {
    h->xff_cut = 1;
    size_t drop = h->xff_len + sep + n - cap;
    if (n >= cap) { /* this header alone: its tail */
      value += n - cap;
      n = cap;
      h->xff_len = 0;
      sep = 0;
    } else if (drop >= h->xff_len) { /* all before it goes */
      h->xff_len = 0;
      sep = 0;
    } else {
      memmove(h->xff, h->xff + drop, h->xff_len - drop);
      h->xff_len -= drop;
    }
  }
  if (sep)
    h->xff[h->xff_len++] = ',';
  memcpy(h->xff + h->xff_len, value, n);
  h->xff_len += n;
  h->xff[h->xff_len] = '\0';
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind,
                                   const char *key, size_t key_size,
                                   const char *value, size_t value_size) {
  (void)kind;
  header_scan *h = cls;
  od_framing_field(&h->f, key, key_size, value, value_size);
  if (key != NULL && value != NULL && strcasecmp(key, "Expect") == 0 &&
      strcasecmp(value, "100-continue") == 0)
    h->expect_continue = 1;
  if (key != NULL && value != NULL && strcasecmp(key, "X-Forwarded-For") == 0)
    xff_append(h, value);
  return MHD_YES;
}

/* req->client: the peer, or the client a trusted proxy names. */
static void client_of(od_service *svc, struct MHD_Connection *conn, od_req *req,
                      const header_scan *h) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  uint32_t peer = 0;
  if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
    peer = ntohl(((const struct sockaddr_in *)(const void *)ci->client_addr)
                     ->sin_addr.s_addr);
  const char *xff = h->xff_seen ? h->xff : NULL;
  if (xff != NULL && h->xff_cut) { /* the first entry is cut: from the next */
    const char *comma = strchr(xff, ',');
    xff = comma ? comma + 1 : "";
  }
  od_xff_result r = od_client_address(&svc->proxies, peer, xff, req->client,
                                      sizeof req->client);
  if (r != OD_XFF_NONE)
    om_counter_inc(svc->m.xff[r]);
}

/* A request answered when its body has been discarded (req_body), not
 * stored: rate-limited, a POST from a page of another origin, or a Host
 * this listener does not answer. */
static int discarding(const od_req *req) {
  return req->rate_wait > 0 || req->cross_origin || req->host_refused ||
         req->late_refused;
}

/* 403 for a Host this listener does not answer (hosts.c: DNS rebinding).
 * The first refusal is also logged, once per process, so that an operator
 * who forgot --allowed-hosts behind a proxy finds the flag in the log; the
 * rest are only counted (an attacker's page may send many). */
static int refuse_host(od_service *svc, struct MHD_Connection *conn,
                       od_req *req) {
  static atomic_int logged;
  char host[128], msg[256];
  log_safe(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"), host,
           sizeof host);
  snprintf(msg, sizeof msg,
           "Host \"%s\" is not one this server answers to: add it to "
           "--allowed-hosts",
           host);
  if (atomic_exchange(&logged, 1) == 0)
    od_logl(OD_LOG_WARN,
            "refused a request for Host \"%s\" on the %s listener: not in "
            "--allowed-hosts (a DNS rebinding page, or a name clients use "
            "that the flag must list); further refusals are counted in "
            "orfeas_errors_total{type=\"host_refused\"}, not logged",
            host, req->admin ? "admin" : "public");
  return od_respond_error(svc, conn, req, 403, "host_refused", msg, NULL);
}

/* A request with a body takes its rate-limit token with its headers, so a
 * limited client's body is never stored and holds no budget. When refused:
 * answered now if the client waits for 100 Continue (its body not sent;
 * 1), else 0, and its body is discarded as it comes and the 429 answered
 * at its end (req_body, req_end): a client that sends its body at once
 * would see the connection reset under it, not the 429 and its
 * Retry-After. */
static int rate_limited_early(od_service *svc, struct MHD_Connection *conn,
                              od_req *req, const header_scan *h) {
  od_route_rate_take(svc, req);
  return req->rate_wait > 0 && h->expect_continue &&
         od_route_rate_limited(svc, conn, req);
}

/* Late connections' requests closed unanswered (refuse_early) whose line
 * from MHD ("Application reported internal error, closing connection.",
 * one per MHD_NO) mhd_logger has yet to drop: a GET during a drain is not
 * an error, and a line each would flood the log while clients poll. Only
 * ever raised while draining, so a line MHD did not write costs at most
 * one genuine one of the drain. */
static atomic_int late_closes_unlogged;

/* The answers given on the first call, before any body is read (MHD then
 * closes the connection: whatever the client sent after the headers is
 * never parsed as a request). 1 when one was queued (*rc set). */
static int refuse_early(od_service *svc, struct MHD_Connection *conn,
                        od_req *req, const header_scan *h, int has_body,
                        enum MHD_Result *rc) {
  const char *framing = od_framing_verdict(&h->f);
  if (req->bad_path) {
    od_metric_validation(&svc->m, "path", "control_character");
    *rc = (enum MHD_Result)od_respond_error(
        svc, conn, req, 400, "bad_path",
        "The request path holds a control character (such as %00)", NULL);
  } else if (req->query_cut || req->query_args > OD_QUERY_MAX_ARGS) {
    char msg[160];
    if (req->query_cut) /* counted in uri_cb */
      snprintf(msg, sizeof msg,
               "The query is too long: the request target's length plus %d "
               "bytes per query argument must stay within %d bytes",
               OD_QUERY_ARG_COST, OD_QUERY_BUDGET);
    else
      snprintf(msg, sizeof msg,
               "At most %d query arguments are taken; the request has %d",
               OD_QUERY_MAX_ARGS, req->query_args);
    if (!req->query_cut)
      od_metric_validation(&svc->m, "query", "too_many_arguments");
    *rc = (enum MHD_Result)od_respond_error(svc, conn, req, 414, "validation",
                                            msg, NULL);
  } else if (framing != NULL) {
    od_edge_count_close(svc->edge, OD_CLOSE_BAD_FRAMING);
    *rc = (enum MHD_Result)od_respond_error(svc, conn, req, 400, "bad_framing",
                                            framing, NULL);
  } else if (od_edge_late(req->conn)) {
    /* A connection opened after SIGTERM (accept_cb): nothing new is done
     * on it. A load balancer in front (deploy/nginx/orfeas.conf) may have
     * written its request before the node accepted the connection, so
     * closing it unread would reset the request under nginx: a 502 for a
     * POST, which nginx never sends twice. So it is read and answered: a
     * safe method (GET, HEAD, OPTIONS) is closed unanswered, which nginx
     * passes on to the next node; any other gets 503 draining with
     * Retry-After and Connection: close, its body discarded as it comes
     * and the 503 answered at its end (req_end: answered now, the
     * connection would close under the body and the client see a reset). */
    if (req->method_idx == OD_METHOD_GET || req->method_idx == OD_METHOD_HEAD ||
        req->method_idx == OD_METHOD_OPTIONS) {
      req->late_closed = 1;
      od_edge_count_close(svc->edge, OD_CLOSE_DRAINING);
      atomic_fetch_add(&late_closes_unlogged, 1);
      *rc = MHD_NO; /* MHD closes the connection, nothing sent */
    } else {
      req->late_refused = 1;
      if (has_body && !h->expect_continue &&
          !(h->f.lengths > 0 && h->f.length > req->body_limit))
        return 0;
      *rc = (enum MHD_Result)od_respond_draining(svc, conn, req, 1);
    }
  } else if (req->host_refused || req->cross_origin) {
    /* A Host this listener does not answer, or a POST from a page of
     * another origin: refused before anything else is spent on it (a
     * connection slot's 429, the rate limit's token, the body budget). A
     * body sent at once (no Expect: 100-continue), within the limit, is
     * discarded as it comes and the 403 answered at its end (req_body,
     * req_end), as a rate limit's 429: answered now, the connection would
     * close under the body and the client (a browser, or nginx, which sends
     * a buffered upload at once) would see a reset, not the 403 that says
     * why. */
    if (has_body && !h->expect_continue &&
        !(h->f.lengths > 0 && h->f.length > req->body_limit))
      return 0;
    if (req->host_refused) {
      *rc = (enum MHD_Result)refuse_host(svc, conn, req);
    } else {
      od_route_cross_origin(svc, conn, req);
      *rc = MHD_YES;
    }
  } else if (!req->admin &&
             atomic_load(&svc->open_conns) - atomic_load(&svc->ws_open) >
                 svc->cfg.max_connections &&
             !(od_route_flags(req->route) & OD_RF_PAST_CONN_LIMIT)) {
    /* Upgraded sockets (WebSocket clients) are budgeted apart, under
     * --max-ws-clients (ws.c). */
    /* Over --max-connections: answer 429 instead of letting the kernel or
     * MHD drop the connection unseen; MHD's own hard limit is set a little
     * higher so this path sees them. Monitoring routes
     * (OD_RF_PAST_CONN_LIMIT) stay reachable for whoever must tell an
     * operator about it. */
    *rc = (enum MHD_Result)od_respond_error(
        svc, conn, req, 429, "too_many_connections",
        "Too many open connections; retry later", NULL);
  } else if (h->f.lengths > 0 && h->f.length > req->body_limit) {
    *rc = (enum MHD_Result)too_large(svc, conn, req);
  } else if (has_body && rate_limited_early(svc, conn, req, h)) {
    *rc = MHD_YES; /* the 429 */
  } else if (req->rate_wait == 0 && h->f.lengths > 0 && h->f.length > 0 &&
             reserve_body(svc, req, h->f.length) != 0) {
    *rc = (enum MHD_Result)over_budget(svc, conn, req);
  } else {
    if (h->f.lengths > 0 && req->rate_wait == 0)
      req->b.reserved = h->f.length;
    return 0;
  }
  req->calls++;
  return 1;
}

/* Where an upload's body waits (body.c): memory when its declared length
 * fits in --body-memory-mb, else a file. 0, or -1 with errno. */
static int upload_body(od_service *svc, od_req *req, const header_scan *h) {
  if (h->f.lengths > 0 && od_edge_reserve_memory(svc->edge, h->f.length) == 0) {
    if (od_body_to_memory(&req->b, (size_t)h->f.length) == 0) {
      req->b.held = h->f.length;
      om_counter_inc(svc->m.bodies[0]);
      return 0;
    }
    od_edge_release_memory(svc->edge, h->f.length); /* then try a file */
  }
  if (od_body_to_file(&req->b, svc->tmp_dir) != 0)
    return -1;
  om_counter_inc(svc->m.bodies[1]);
  return 0;
}

/* The first call, with the headers: the request's context (made by
 * uri_cb when MHD got the request line), its route, its client, the
 * answers given at once (refuse_early), and where its body will go. */
static enum MHD_Result req_begin(od_service *svc, int admin,
                                 struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 void **con_cls) {
  od_req *req = *con_cls;
  int cut = req == (void *)&query_cut;
  if (req == NULL || cut) {
    if ((req = calloc(1, sizeof *req)) == NULL)
      return MHD_NO;
    od_body_init(&req->b);
    req->query_cut = cut;
    if (cut) /* the arguments MHD recorded after all */
      req->query_args =
          MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, NULL, NULL);
    *con_cls = req;
  }
  req->begun = 1;
  if (svc->cfg.http_metrics || svc->cfg.access_log)
    req->t0 = od_ticks();
  req->method_idx = (int)od_method_index(method);
  req->method = od_method_name((od_method)req->method_idx);
  req->http10 = version != NULL && strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
  od_route_match(url, req);
  /* CORS (cors.c): decided here, applied to every answer (od_respond);
   * a POST from a page of another origin is refused (refuse_early). */
  if (od_route_flags(req->route) & OD_RF_CORS) {
    const char *origin =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *acao = od_cors_allow(&svc->cors, origin);
    req->cors = 1;
    if (acao != NULL && strlen(acao) < sizeof req->acao)
      snprintf(req->acao, sizeof req->acao, "%s", acao);
    req->cross_origin =
        req->method_idx == OD_METHOD_POST &&
        !od_cors_page_allowed(
            &svc->cors, origin,
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"));
  }
  req->conn = conn_of(conn);
  req->admin = admin;
  /* DNS rebinding (hosts.c): every request on either listener, every route
   * and WebSocket or Socket.IO upgrade included, refused in refuse_early
   * before its body is stored or anything else is done. */
  req->host_refused = !od_hosts_allowed(
      &svc->hosts[admin ? 1 : 0],
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"));
  req->body_limit = req->route == OD_ROUTE_UPLOAD
                        ? (size_t)svc->cfg.max_upload_mb << 20
                        : (size_t)svc->cfg.max_json_kb << 10;
  header_scan h;
  memset(&h, 0, sizeof h);
  /* RFC 9112 3.2: an HTTP/1.1 request without Host is a 400, as one with
   * two (framing.c); HTTP/1.0 may leave it out. */
  h.f.need_host = !req->http10;
  MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &h);
  client_of(svc, conn, req, &h);
  enum MHD_Result rc = MHD_YES;
  int has_body = (h.f.lengths > 0 && h.f.length > 0) || h.f.codings > 0;
  if (refuse_early(svc, conn, req, &h, has_body, &rc)) {
    od_edge_phase(svc->edge, req->conn, OD_CONN_BUSY);
    return rc;
  }
  if (has_body && req->route == OD_ROUTE_UPLOAD && !discarding(req) &&
      upload_body(svc, req, &h) != 0) {
    req->calls++;
    od_edge_phase(svc->edge, req->conn, OD_CONN_BUSY);
    return (enum MHD_Result)body_failed(svc, conn, req, errno);
  }
  od_edge_phase(svc->edge, req->conn, has_body ? OD_CONN_BODY : OD_CONN_BUSY);
  return MHD_YES;
}

/* A body cut past 4x its limit: MHD closes the connection with nothing
 * answered, so the request is counted as the answer it was due (not as a
 * client that left: 499), and the connection as cut. */
static void body_cut(od_service *svc, od_req *req) {
  const char *type = "payload_too_large";
  req->status = 413;
  if (req->late_refused) {
    type = "draining";
    req->status = 503;
  } else if (req->host_refused) {
    type = "host_refused";
    req->status = 403;
  } else if (req->cross_origin) {
    type = "cors_refused";
    req->status = 403;
  } else if (req->rate_wait > 0) {
    om_counter_inc(om_family_counter(svc->m.rate_limited,
                                     OM_LABELS(od_route_template(req->route))));
    type = "rate_limited";
    req->status = 429;
  } else if (req->body_error) {
    type = "internal";
    req->status = 500;
  } else if (req->over_budget) {
    om_counter_inc(svc->m.body_rejected);
    type = "body_budget";
    req->status = 503;
  } else {
    od_metric_validation(&svc->m, "body", "too_large");
  }
  od_metric_error(&svc->m, type, req->route);
  od_edge_count_close(svc->edge, OD_CLOSE_BODY_CUT);
}

/* A body chunk: stored up to the limit. A body without a declared length
 * takes its bytes from the body budget as they come. A body that crosses
 * the limit or the budget, or that cannot be stored, or a rate-limited
 * request's: MHD 0.9.75 refuses a response queued mid-body, so the rest is
 * discarded unread and answered at its end (see access_cb); past 4x the
 * limit the connection is simply closed. */
static enum MHD_Result req_body(od_service *svc, od_req *req, const char *data,
                                size_t *size) {
  size_t n = *size;
  *size = 0;
  od_edge_body(req->conn, n);
  if (req->overflow == 0 && !req->over_budget && !req->body_error &&
      !discarding(req)) {
    if (req->b.len + n > req->body_limit) {
      req->overflow = 1; /* counted below */
    } else if (req->b.len + n > req->b.reserved) {
      uint64_t more = req->b.len + n - req->b.reserved;
      if (reserve_body(svc, req, more) == 0)
        req->b.reserved += more;
      else
        req->over_budget = 1;
    }
    if (req->overflow == 0 && !req->over_budget &&
        od_body_append(&req->b, data, n) != 0)
      req->body_error = errno ? errno : EIO;
    if (req->overflow == 0 && !req->over_budget && !req->body_error)
      return MHD_YES;
  }
  req->overflow += n;
  if (req->overflow <= 4 * (uint64_t)req->body_limit)
    return MHD_YES;
  body_cut(svc, req);
  return MHD_NO;
}

/* The answer a request thread made, now that MHD called back. */
static enum MHD_Result send_deferred(struct MHD_Connection *conn, od_req *req) {
  struct MHD_Response *resp = req->deferred;
  req->deferred = NULL;
  req->offloaded = OD_OFFLOAD_NONE;
  if (resp == NULL)
    return MHD_NO; /* nothing could be made: MHD closes the connection */
  enum MHD_Result r = MHD_queue_response(conn, (unsigned)req->status, resp);
  MHD_destroy_response(resp);
  return r;
}

/* The whole request is in: answer it. */
static enum MHD_Result req_end(od_service *svc, struct MHD_Connection *conn,
                               od_req *req) {
  if (req->offloaded == OD_OFFLOAD_ANSWERED)
    return send_deferred(conn, req);
  od_edge_phase(svc->edge, req->conn, OD_CONN_BUSY);
  if (req->late_refused) /* its body discarded (refuse_early) */
    return (enum MHD_Result)od_respond_draining(svc, conn, req, 1);
  if (req->host_refused) /* its body discarded (refuse_early) */
    return (enum MHD_Result)refuse_host(svc, conn, req);
  if (discarding(req)) { /* its body discarded: the 403 or 429 (or 404/405) */
    od_route_dispatch(svc, conn, req);
    return req->status ? MHD_YES : MHD_NO;
  }
  if (req->body_error)
    return (enum MHD_Result)body_failed(svc, conn, req, req->body_error);
  if (req->over_budget)
    return (enum MHD_Result)over_budget(svc, conn, req);
  if (req->overflow > 0)
    return (enum MHD_Result)too_large(svc, conn, req);
  req->body = od_body_data(&req->b);
  req->body_len = req->b.len;
  if (req->body_len > 0 && req->body == NULL)
    return (enum MHD_Result)body_failed(svc, conn, req, errno ? errno : EIO);
  /* The routes that decode, write, sync and commit go to a request thread
   * (offload.c); MHD calls this handler again once it is done. Not on the
   * admin listener: it serves none of them, and its daemon cannot suspend
   * (MHD aborts). */
  if (!req->admin && (od_route_flags(req->route) & OD_RF_OFFLOAD) &&
      od_offload_submit(svc->offload, conn, req))
    return MHD_YES;
  od_route_dispatch(svc, conn, req);
  if (req->status == 0)
    return MHD_NO; /* could not queue anything: MHD closes the connection */
  return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls) {
  const struct od_listener *l = cls;
  od_service *svc = l->svc;
  od_req *req = *con_cls;
  if (req == NULL || req == (void *)&query_cut || !req->begun)
    return req_begin(svc, l->admin, conn, url, method, version, con_cls);
  req->calls++;
  if (*upload_size > 0)
    return req_body(svc, req, upload_data, upload_size);
  return req_end(svc, conn, req);
}

/* MHD has the request line: the request's context starts here, while the
 * raw target is still there to check (MHD decodes %XX before the access
 * handler sees the path). */
static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn) {
  od_service *svc = ((const struct od_listener *)cls)->svc;
  int args = 0;
  if (od_query_check(uri, &args) == OD_QUERY_PAST_MEMORY) {
    /* MHD may run out of connection memory recording the arguments, and
     * then it answers nothing and never calls the handlers, the
     * completion callback included (framing.c). The receiving side is
     * shut now, so MHD closes the connection at once; the context is
     * query_cut, which owns nothing (nothing to free if MHD never calls
     * back), and a handler that is called after all (the arguments did
     * fit) answers 414. Counted here, once, either way. */
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (fi != NULL)
      shutdown(fi->connect_fd, SHUT_RD);
    od_metric_validation(&svc->m, "query", "too_many_arguments");
    return (void *)&query_cut;
  }
  od_req *req = calloc(1, sizeof *req);
  if (req == NULL)
    return NULL; /* req_begin tries again */
  od_body_init(&req->b);
  req->bad_path = od_path_has_control(uri);
  req->query_args = args;
  return req;
}

void od_req_record(od_service *svc, od_req *req, int aborted) {
  if (req->recorded)
    return;
  req->recorded = 1;
  if (!req->begun || req->late_closed)
    return; /* the headers never came, or closed unanswered while draining:
               counted by the edge, not here */
  if (!svc->cfg.http_metrics && !svc->cfg.access_log)
    return; /* the overhead benchmark's baseline: no clock read either */
  double dt = od_ticks_seconds(req->t0, od_ticks());
  int status = req->status ? req->status : 499; /* client went away first */
  if (svc->cfg.http_metrics) {
    od_reqev e = {.method = req->method,
                  .route = (int)req->route,
                  .method_idx = req->method_idx,
                  .status = status,
                  .seconds = dt,
                  .req_bytes = req->body_len ? req->body_len : req->b.len,
                  .resp_bytes = req->resp_bytes};
    od_reqstats_add(&svc->m, &e);
  }
  /* Scrapes and health checks (the admin routes) are debug lines: at
   * info they would be most of the log and say nothing. */
  od_log_level lvl = (od_route_flags(req->route) & OD_RF_ADMIN) && status < 500
                         ? OD_LOG_DEBUG
                         : OD_LOG_INFO;
  if (svc->cfg.access_log && od_log_enabled(lvl)) {
    char path[160];
    log_safe(od_route_template(req->route), path, sizeof path);
    od_logl(lvl, "req %s %s %d %.2fms in=%zu out=%llu client=%s%s", req->method,
            path, status, dt * 1e3, req->b.len,
            (unsigned long long)req->resp_bytes, req->client,
            aborted ? " (aborted)" : "");
  }
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  od_service *svc = ((const struct od_listener *)cls)->svc;
  od_req *req = *con_cls;
  *con_cls = NULL;
  if (req == NULL || req == (void *)&query_cut)
    return;
  /* A 101 was queued but the upgrade never happened (the client left):
   * give the WebSocket slot back, or it would leak. */
  if (req->ws_reserved)
    od_hub_release(svc->hub);
  /* A request libmicrohttpd answered itself after the handler had seen its
   * headers (a malformed chunked body: 400; a chunk size past 64 bits:
   * 413): counted with the status the client got, not as a client that
   * went away (499). mhd_logger counts it in
   * orfeas_errors_total{type="bad_request"} already. Its 500 for a chunk
   * line past its buffer stays a 499: the client chose it, and as a 500 any
   * client could move the 5xx ratio that pages an operator. */
  int mhd_answered = 0;
  if (req->begun && req->status == 0) {
    const union MHD_ConnectionInfo *si =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
    if (si != NULL && si->http_status >= 400 && si->http_status < 500) {
      req->status = (int)si->http_status;
      mhd_answered = 1;
    }
  }
  od_req_record(svc, req,
                toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !mhd_answered);
  /* A request thread's answer MHD never asked for (closed after the
   * resume, e.g. at stop). */
  if (req->deferred != NULL)
    MHD_destroy_response(req->deferred);
  od_edge_release(svc->edge, req->b.reserved);
  od_edge_release_addr(svc->edge, req->conn, req->b.reserved);
  od_edge_release_memory(svc->edge, req->b.held);
  od_body_free(&req->b);
  /* Keep-alive: the next request's headers are due within
   * --header-timeout. */
  od_edge_phase(svc->edge, conn_of(conn), OD_CONN_HEADERS);
  free(req);
}

/* MHD's accept policy, before it sets a connection up: the edge's
 * per-address limit. While draining, a new public connection is still
 * accepted (the edge marks it late) and its requests are read, then
 * refused (refuse_early): closing it here instead resets a request a load
 * balancer may already have written into it. The listener itself stays
 * open until MHD_stop_daemon closes it (taking it away earlier with
 * MHD_quiesce_daemon races inside MHD 0.9.75 with a pool thread at its
 * connection limit removing it from its epoll set: a panic, "Failed to
 * remove listen FD from epoll set", seen at SIGTERM). */
static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr,
                                 socklen_t addrlen) {
  (void)addrlen;
  od_service *svc = ((const struct od_listener *)cls)->svc;
  return od_edge_admit(svc->edge, addr) ? MHD_YES : MHD_NO;
}

/* Tracks connections in the edge table, and counts open public ones for
 * the --max-connections answer in refuse_early. */
static void notify_conn_cb(void *cls, struct MHD_Connection *conn,
                           void **socket_context,
                           enum MHD_ConnectionNotificationCode toe) {
  const struct od_listener *l = cls;
  od_service *svc = l->svc;
  int admin = l->admin;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    if (!admin)
      atomic_fetch_add(&svc->open_conns, 1);
    const union MHD_ConnectionInfo *fi =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *socket_context = fi == NULL
                          ? NULL
                          : od_edge_open(svc->edge, fi->connect_fd,
                                         ai ? ai->client_addr : NULL, admin);
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
    if (!admin)
      atomic_fetch_sub(&svc->open_conns, 1);
    od_edge_close(svc->edge, *socket_context);
    *socket_context = NULL;
  }
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  od_service *svc = cls;
  int e = errno; /* MHD logs a failed accept() right after it */
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  /* MHD 0.9.75 says "Error accepting connection: <strerror>" and, out of
   * descriptors, stops accepting until a connection closes. */
  if (svc != NULL && strncmp(msg, "Error accepting connection", 26) == 0 &&
      (od_errno_is_fd_exhaustion(e) || strstr(msg, strerror(EMFILE)) ||
       strstr(msg, strerror(ENFILE))))
    od_metric_fd_exhausted(svc, OD_FD_ACCEPT);
  /* MHD answers a Content-Length that is not a number (400) or that does
   * not fit in 64 bits (413) with its own HTML page (and closes) before
   * the access handler: counted as framing abuse like the ones
   * refuse_early answers, and not logged (below). */
  int bad_length =
      strncmp(msg, "Failed to parse `Content-Length' header", 39) == 0 ||
      strncmp(msg, "Too large value of 'Content-Length' header", 42) == 0;
  if (bad_length && svc != NULL && svc->edge != NULL) {
    od_edge_count_close(svc->edge, OD_CLOSE_BAD_FRAMING);
    od_metric_error(&svc->m, "bad_framing", OD_ROUTE_OTHER); /* no route */
  }
  /* Any other request MHD answers itself (a header past its memory, 431; a
   * request line too long, 414; an unknown HTTP version, 505; a header
   * line without a colon, 400) never reaches the access handler: counted
   * here as bad_request, and not logged (one cheap request, one line).
   * The Content-Length ones are bad_framing (above; MHD's second line
   * names the header). */
  int mhd_answered =
      strncmp(msg, "Error processing request (HTTP response code is ", 48) == 0;
  if (mhd_answered && strstr(msg, "<b>Content-Length</b>") == NULL &&
      svc != NULL)
    od_metric_error(&svc->m, "bad_request", OD_ROUTE_OTHER);
  /* A client that leaves mid-request (or that the edge cut, edge.c) is
   * counted already (a 499, orfeas_http_connections_closed_total), and so
   * is a bad length with MHD's answer to it (its second line names the
   * header): a line for each would let a slowloris or a stream of bad
   * requests flood the log. */
  /* MHD says this before its 431 (or 414) for headers past its memory: the
   * answer's own line counts the request (above). */
  int pool_full =
      strncmp(msg, "Not enough memory in pool to allocate header", 44) == 0;
  /* A GET on a connection opened while draining, closed unanswered
   * (refuse_early): counted in orfeas_http_connections_closed_total. */
  int late_close = 0;
  if (strncmp(msg, "Application reported internal error", 35) == 0) {
    int left = atomic_load(&late_closes_unlogged);
    while (left > 0 && !atomic_compare_exchange_weak(&late_closes_unlogged,
                                                     &left, left - 1))
      ;
    late_close = left > 0;
  }
  if (bad_length || mhd_answered || pool_full || late_close ||
      strncmp(msg, "Connection socket is closed", 27) == 0 ||
      strncmp(msg, "Connection was closed by remote side", 36) == 0)
    return;
  od_logl(OD_LOG_WARN, "http: %s", msg);
}

int od_listen_socket(const char *host, uint16_t port, int reuse_port,
                     uint16_t *bound_port, char *err, size_t err_len) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    snprintf(err, err_len, "%s is not a numeric IPv4 address", host);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, err_len, "cannot create a socket: %s", strerror(errno));
    return -1;
  }
  /* SO_REUSEADDR: a restart binds while the last run's connections linger
   * in TIME_WAIT; it never lets two listeners share the port. Sharing
   * (SO_REUSEPORT: the kernel splits connections between the processes)
   * only when asked. */
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    snprintf(err, err_len, "--reuse-port: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    snprintf(err, err_len, "cannot listen on %s:%u: %s%s", host, port,
             strerror(e),
             e == EADDRINUSE      ? " (another process listens there; "
                                    "--reuse-port shares a port on purpose)"
             : e == EADDRNOTAVAIL ? " (not an address of this host)"
             : e == EACCES ? " (a port below 1024 needs CAP_NET_BIND_SERVICE)"
                           : "");
    close(fd);
    return -1;
  }
  socklen_t sl = sizeof sa;
  if (listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
    snprintf(err, err_len, "cannot listen on %s:%u: %s", host, port,
             strerror(errno));
    close(fd);
    return -1;
  }
  *bound_port = ntohs(sa.sin_port);
  return fd;
}

/* --admin-listen: one event-loop thread, its own small connection limit,
 * the same handlers (od_route_dispatch serves only the OD_RF_ADMIN routes
 * there). The header deadline applies; the per-address limit does not
 * (an admin address is for the monitoring, on a private network). */
static int start_admin(od_service *svc, char *err, size_t err_len) {
  struct od_listener *l = &svc->listeners[1];
  char why[400];
  uint16_t port = 0;
  /* Never shared (--reuse-port is for the public port's rolling restarts). */
  int lfd = od_listen_socket(svc->cfg.admin_host, svc->cfg.admin_port, 0, &port,
                             why, sizeof why);
  if (lfd < 0) {
    snprintf(err, err_len, "--admin-listen: %s", why);
    return -1;
  }
  svc->admin_daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0, NULL,
      NULL, access_cb, l, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, svc,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)svc->cfg.admin_connections, MHD_OPTION_NOTIFY_CONNECTION,
      notify_conn_cb, l, MHD_OPTION_URI_LOG_CALLBACK, uri_cb, l,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)OD_CONN_MEMORY,
      MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_NOTIFY_COMPLETED,
      completed_cb, l, MHD_OPTION_END);
  if (svc->admin_daemon == NULL) {
    close(lfd);
    snprintf(err, err_len,
             "--admin-listen: the HTTP server did not start on %s:%u (the log "
             "line before says why)",
             svc->cfg.admin_host, port);
    return -1;
  }
  svc->cfg.admin_port = port;
  return 0;
}

/* What the edge needs before the first connection: the trusted proxies,
 * the file-descriptor budget, the upload folder (emptied of what a
 * previous run left) and the connection table with its sweeper. */
static int edge_start(od_service *svc, char *err, size_t err_len) {
  if (od_proxies_parse(&svc->proxies, svc->cfg.trusted_proxies, err, err_len) !=
      0)
    return -1;
  od_fd_parts fds;
  char msg[512];
  if (od_fd_ensure(&svc->cfg, &fds, msg, sizeof msg) != 0) {
    snprintf(err, err_len, "%s", msg);
    return -1;
  }
  od_log("%s", msg);
  snprintf(svc->tmp_dir, sizeof svc->tmp_dir, "%.*s/tmp", PATH_MAX - 16,
           svc->cfg.data_dir);
  int removed = 0;
  if (od_body_sweep(svc->tmp_dir, &removed, err, err_len) != 0)
    return -1;
  if (removed > 0)
    od_log("removed %d upload body file(s) a previous run left in %s", removed,
           svc->tmp_dir);
  if ((svc->edge = od_edge_new(svc, err, err_len)) == NULL ||
      od_edge_start(svc->edge, err, err_len) != 0)
    return -1;
  return 0;
}

int od_http_start(od_service *svc, char *err, size_t err_len) {
  /* Before the daemon's threads exist: they read the clock it picks. */
  if (od_clock_init() == OD_CLOCK_TSC)
    od_log("request timing: TSC at %.3f GHz", od_clock_tsc_hz() / 1e9);
  else
    od_log("request timing: CLOCK_MONOTONIC");
  if (edge_start(svc, err, err_len) != 0)
    return -1;
  uint16_t port = 0;
  int lfd = od_listen_socket(svc->cfg.listen_host, svc->cfg.listen_port,
                             svc->cfg.reuse_port, &port, err, err_len);
  if (lfd < 0)
    return -1;
  struct od_listener *l = &svc->listeners[0];
  svc->listeners[0] = (struct od_listener){.svc = svc, .admin = 0};
  svc->listeners[1] = (struct od_listener){.svc = svc, .admin = 1};
  /* MHD owns lfd from a successful start on (it closes it at stop). */
  if (svc->cfg.request_threads > 0 &&
      (svc->offload = od_offload_start(svc, svc->cfg.request_threads, err,
                                       err_len)) == NULL) {
    close(lfd);
    return -1;
  }
  om_gauge_set(svc->m.http_request_threads,
               svc->offload != NULL ? svc->cfg.request_threads : 0);
  svc->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_UPGRADE | MHD_USE_ITC |
          MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
      0, accept_cb, l, access_cb, l, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
      svc, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)svc->cfg.http_threads,
      /* The hard limit, past ours (see refuse_early): room to answer 429,
       * and the WebSocket clients, which MHD still counts as connections
       * (they are budgeted apart, under --max-ws-clients). */
      MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)svc->cfg.max_connections + (unsigned)svc->cfg.max_ws_clients +
          OD_CONN_HEADROOM,
      MHD_OPTION_NOTIFY_CONNECTION, notify_conn_cb, l,
      MHD_OPTION_URI_LOG_CALLBACK, uri_cb, l,
      /* Its default, set here because od_query_check is sized on it. */
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)OD_CONN_MEMORY,
      /* MHD's own idle timeout (renewed by every byte): for answers a
       * client does not read. Headers and bodies have the edge's
       * deadlines (edge.c). */
      MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_NOTIFY_COMPLETED,
      completed_cb, l, MHD_OPTION_END);
  if (svc->daemon == NULL) {
    close(lfd);
    od_offload_stop(svc->offload);
    svc->offload = NULL;
    snprintf(err, err_len,
             "the HTTP server did not start on %s:%u (the log line before "
             "says why)",
             svc->cfg.listen_host, port);
    return -1;
  }
  svc->cfg.listen_port = port;
  if (svc->cfg.admin_host[0] && start_admin(svc, err, err_len) != 0)
    return -1;
  if (svc->admin_daemon != NULL)
    od_log("admin listener on http://%s:%u (/health /ready /metrics)",
           svc->cfg.admin_host, svc->cfg.admin_port);
  return 0;
}

void od_http_stop(od_service *svc) {
  /* First: MHD aborts when stopped with a connection suspended. */
  od_offload_stop(svc->offload);
  svc->offload = NULL;
  if (svc->daemon)
    MHD_stop_daemon(svc->daemon);
  svc->daemon = NULL;
  if (svc->admin_daemon)
    MHD_stop_daemon(svc->admin_daemon);
  svc->admin_daemon = NULL;
  /* After the daemons: every connection has left the table. */
  od_edge_free(svc->edge);
  svc->edge = NULL;
}
