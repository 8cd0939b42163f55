/* fuzz_ws_frames.c: libFuzzer target for orfeasd's WebSocket input path.
 *
 *   scripts/fuzz-orfeasd ws_frames [SECONDS]   (docs/api.md, "Fuzzing")
 *
 * The input is what a client sends after the upgrade: raw RFC 6455 frames.
 * A wslay server context (configured as the hub configures it: 4 KiB
 * message limit) reads them and hands each complete text message to the
 * hub's message parser, whose answer is rendered as the hub would send it.
 * Each message also goes through the Socket.IO path (/socket.io/: the
 * Engine.IO/Socket.IO framing with one connection's state kept across the
 * messages, and the job_update translation of hub events), since the hub
 * runs the same frames through it for Socket.IO clients.
 * Broken frames must end in a close frame, never a crash, leak or overread.
 * The input's first bytes also go through the handshake's accept-key
 * computation, as a client's Sec-WebSocket-Key header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wslay/wslay.h>

#include "orfeasd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
  const uint8_t *data;
  size_t len, off;
} feed;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user) {
  (void)flags;
  feed *f = user;
  if (f->off == f->len) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  /* Short reads, as a socket gives them, so partial frames are exercised. */
  size_t n = f->len - f->off;
  if (n > len)
    n = len;
  if (n > 7)
    n = 7 + (f->off % 64);
  if (n > f->len - f->off)
    n = f->len - f->off;
  memcpy(buf, f->data + f->off, n);
  f->off += n;
  return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user) {
  (void)ctx;
  (void)data;
  (void)flags;
  (void)user;
  return (ssize_t)len;
}

static od_sio_conn sio; /* one connection's state, reset per input */

static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  (void)user;
  if (arg->opcode != WSLAY_TEXT_FRAME)
    return;
  char sid[37], serr[160], *reply = NULL;
  size_t reply_len = 0;
  od_sio_handle(&sio, arg->msg, arg->msg_length, sid, &reply, &reply_len, serr,
                sizeof serr);
  /* The hub sends reply_len bytes: they end where the text does. */
  if (reply != NULL && (reply_len < strlen(reply) || reply[reply_len] != '\0'))
    abort();
  free(reply);
  free(od_sio_job_update((const char *)arg->msg, arg->msg_length));
  char id[37], err[160];
  od_ws_err code;
  od_wsmsg_kind k =
      od_wsmsg_parse(arg->msg, arg->msg_length, id, err, sizeof err, &code);
  json_t *d = k == OD_WSMSG_BAD ? od_ws_error_data(code, err, NULL)
                                : json_pack("{s:s}", "job_id", id);
  char *text =
      od_ws_event_json(k == OD_WSMSG_BAD ? OD_WS_ERROR : OD_WS_SUBSCRIBED, d);
  if (text) {
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text,
                                strlen(text)};
    wslay_event_queue_msg(ctx, &m);
    free(text);
  }
}

/* The first line of the input as a Sec-WebSocket-Key: a valid key must
 * give 28 characters, anything else be refused. */
static void accept_key(const uint8_t *data, size_t size) {
  char key[64], out[29];
  size_t n = 0;
  while (n < size && n < sizeof key - 1 && data[n] != '\n' && data[n] != 0)
    n++;
  memcpy(key, data, n);
  key[n] = '\0';
  int rc = od_ws_accept_key(key, out);
  if (rc == 0 && strlen(out) != 28)
    abort();
  if (rc == 0 && n != 24)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  accept_key(data, size);
  static const struct wslay_event_callbacks cb = {recv_cb, send_cb, NULL,  NULL,
                                                  NULL,    NULL,    on_msg};
  feed f = {data, size, 0};
  memset(&sio, 0, sizeof sio);
  snprintf(sio.sid, sizeof sio.sid, "123e4567-e89b-42d3-a456-426614174000");
  wslay_event_context_ptr ctx;
  if (wslay_event_context_server_init(&ctx, &cb, &f) != 0)
    return 0;
  wslay_event_config_set_max_recv_msg_length(ctx, 4096);
  while (f.off < f.len && wslay_event_want_read(ctx)) {
    if (wslay_event_recv(ctx) != 0)
      break;
    if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0)
      break;
  }
  wslay_event_context_free(ctx);
  return 0;
}
