#!/usr/bin/env node
// socketio.test.js BUILD_DIR OUT_DIR: orfeasd's /socket.io/ against the real
// socket.io-client 4.8.4 from npm (ctest: compat.socketio; docs/api.md).
//
// Starts its own orfeasd (127.0.0.1, port 0) with a fast Engine.IO heartbeat
// (--sio-ping-interval 0.3) and, as the original ORFEAS page does:
//   io(base, {transports: ['websocket', 'polling']}) connects, hears
//   "connected"; an image is uploaded, subscribe_job {job_id} is emitted
//   (with an ack) and generate-3d asked; job_update arrives through
//   processing to completed with rising progress, step names, output_file
//   and a download_url that serves the model. The connection survives
//   several heartbeats. A polling-only client is refused at once (the 400),
//   and one listing polling first falls back to websocket (tryAllTransports).
// Then a restart while such a client follows a job (reconnection on, one
// subscribe_job after generate-3d, the job held by the pause
// file): orfeasd is killed (-9) and started again on the same port and data
// dir; the client reconnects by itself, sends back the offset of the last
// job_update it heard (the job id: socketio.c, "Reconnects") and hears the
// job complete on the new process.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { check, checkWithin, waitFor, startServer, stopServer, request } = require('./lib.js');

const ROOT = path.resolve(__dirname, '../..');
const { io } = require(path.join(ROOT, 'node_modules', 'socket.io-client'));

const [BUILD, OUT] = process.argv.slice(2).map((p) => path.resolve(p));
const ORFEASD = process.env.ORFEASD_BIN || path.join(BUILD, 'orfeasd');

function multipart(field, name, data) {
  const b = '----orfeasSocketIoTest';
  const body = Buffer.concat([
    Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="${field}"; filename="${name}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n'),
    data, Buffer.from(`\r\n--${b}--\r\n`)]);
  return { body, type: `multipart/form-data; boundary=${b}` };
}

function connect(base, opts) {
  const s = io(base, { reconnection: false, timeout: 10000, ...opts });
  const out = { socket: s, events: [], error: null, connected: false };
  s.on('connect', () => { out.connected = true; });
  s.on('connect_error', (e) => { out.error = e; });
  s.onAny((name, data, offset) => out.events.push({ name, data, offset }));
  return out;
}

async function restart(img) {
  const data = path.join(OUT, 'restart-data');
  const pause = path.join(OUT, 'pause');
  fs.writeFileSync(pause, '');
  let srv = startServer(ORFEASD, data, ['--workers', '1', '--pause-file', pause]);
  let c = null;
  try {
    const port = await srv.ready;
    c = connect(`http://127.0.0.1:${port}`, { transports: ['websocket', 'polling'], reconnection: true,
      reconnectionDelay: 100, reconnectionDelayMax: 500 });
    let connects = 0;
    c.socket.on('connect', () => { connects++; });
    await waitFor(() => c.connected, 'connect');
    const up = multipart('image', 'star.png', fs.readFileSync(img));
    const job = JSON.parse((await request(port, 'POST', '/api/upload-image', up.body,
      { 'Content-Type': up.type })).body).job_id;
    const g = await request(port, 'POST', '/api/generate-3d', JSON.stringify({ job_id: job, format: 'stl' }),
      { 'Content-Type': 'application/json' });
    check(g.status === 202, 'restart case: generate-3d 202');
    c.socket.emit('subscribe_job', { job_id: job }); // as the original page: once, after generate-3d
    // Queued or processing (held before its first stage: no progress is
    // published while held), never ended: what the client heard last is
    // an update of the job, whose offset it will send back.
    const seen = await waitFor(() => c.events.find((e) => e.name === 'job_update' && e.data.job_id === job),
      'a job_update of the held job');
    check(['queued', 'processing'].includes(seen.data.status) && seen.offset === job,
      `a job_update (${seen.data.status}) carries the job id as its offset`);
    const exited = new Promise((r) => srv.proc.once('exit', r));
    srv.proc.kill('SIGKILL');
    await exited;
    fs.unlinkSync(pause);
    srv = startServer(ORFEASD, data, ['--workers', '1'], port);
    await srv.ready;
    await checkWithin(waitFor(() => c.events.find((e) => e.name === 'job_update' && e.data.status === 'completed'),
      'the job_update completed after the restart', 30000),
    'after kill -9 and a restart the client reconnected by itself and heard the job complete');
    check(connects >= 2 && c.socket.connected && !c.socket.recovered,
      `reconnected (${connects} connects), subscribed again by the offset, recovered false (no replay)`);
  } finally {
    if (c) c.socket.close();
    await stopServer(srv);
  }
}

async function main() {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const img = path.join(OUT, 'star.png');
  execFileSync(path.join(BUILD, 'tests', 'od-testimg'), ['png', '96', img]);
  const srv = startServer(ORFEASD, path.join(OUT, 'data'), ['--workers', '1',
    '--sio-ping-interval', '0.3', '--sio-ping-timeout', '2']);
  const clients = [];
  try {
    await srv.ready;
    check(srv.port > 0, `orfeasd listening on ${srv.port}`);
    const base = `http://127.0.0.1:${srv.port}`;

    // The original page's options: websocket first, polling listed too.
    const c = connect(base, { transports: ['websocket', 'polling'] });
    clients.push(c);
    await waitFor(() => c.connected || c.error, 'connect');
    check(c.connected && c.socket.io.engine.transport.name === 'websocket',
      'socket.io-client 4.8.4 connects over the websocket transport');
    await checkWithin(waitFor(() => c.events.find((e) => e.name === 'connected'), '"connected"'),
      'the server says "connected" (as the original did)');
    let pings = 0;
    c.socket.io.engine.on('ping', () => { pings++; });

    const up = multipart('image', 'star.png', fs.readFileSync(img));
    const r = await request(srv.port, 'POST', '/api/upload-image', up.body, { 'Content-Type': up.type });
    const job = JSON.parse(r.body).job_id;
    check(r.status === 200 && /^[0-9a-f-]{36}$/.test(job), `uploaded: job ${job}`);
    const ack = await c.socket.timeout(5000).emitWithAck('subscribe_job', { job_id: job });
    check(ack && ack.status === 'subscribed' && ack.job_id === job, 'subscribe_job is acknowledged');
    const g = await request(srv.port, 'POST', '/api/generate-3d',
      JSON.stringify({ job_id: job, format: 'stl', quality: 3, method: 'orfeas' }),
      { 'Content-Type': 'application/json' });
    check(g.status === 202, 'generate-3d with an unknown field ("method") is accepted: 202');
    await waitFor(() => c.events.find((e) => e.name === 'job_update' &&
      ['completed', 'failed'].includes(e.data.status)), 'job_update completed', 60000);
    const ups = c.events.filter((e) => e.name === 'job_update').map((e) => e.data);
    check(ups.every((u) => u.job_id === job), `${ups.length} job_update events, all for the job`);
    const running = ups.filter((u) => u.status === 'processing');
    const prog = running.map((u) => u.progress);
    check(running.length >= 7 && prog.every((p, i) => i === 0 || p >= prog[i - 1]),
      `processing updates with rising progress (${prog.map((p) => Math.round(p)).join(' ')})`);
    const steps = new Set(running.map((u) => u.step));
    check(steps.has('image_loading') && steps.has('mesh_export') && steps.size >= 5,
      `step names the stages (${[...steps].join(', ')})`);
    const done = ups[ups.length - 1];
    check(done.status === 'completed' && done.progress === 100 && done.output_file === `model_${job}.stl` &&
      done.download_url === `/api/download/${job}/model_${job}.stl` && done.cached === false,
    'the last job_update: completed, 100, output_file, download_url, cached false');
    const dl = await request(srv.port, 'GET', done.download_url);
    const n = dl.body.length >= 84 ? dl.body.readUInt32LE(80) : -1;
    check(dl.status === 200 && n > 0 && dl.body.length === 84 + 50 * n,
      `the download_url serves a well-formed STL (${n} facets)`);
    // Subscribing to a finished job answers where it stands.
    const before = c.events.length;
    c.socket.emit('subscribe_job', { job_id: job });
    await checkWithin(waitFor(() => c.events.slice(before).find((e) => e.name === 'job_update' &&
      e.data.status === 'completed'), 'the state of a finished job on subscribe'),
    'subscribing to a finished job sends its completed job_update');
    c.socket.emit('launch_rockets', {});
    await waitFor(() => c.events.find((e) => e.name === 'error'), 'an error event');
    const unknown = c.events.find((e) => e.name === 'error').data;
    check(/unknown event/.test(unknown.message) && unknown.code === 'unknown_event',
      `an unknown event is answered with an error event naming it, code unknown_event (${JSON.stringify(unknown)})`);
    // A namespace that does not exist (on the same connection: the client
    // multiplexes): connect_error, the code in err.data as socket.io-client
    // hands a CONNECT_ERROR's data over; "/" stays connected.
    const admin = connect(`${base}/admin`, { transports: ['websocket'] });
    clients.push(admin);
    await waitFor(() => admin.connected || admin.error, 'the /admin namespace to answer');
    check(!admin.connected && admin.error.message === 'Invalid namespace' && admin.error.data &&
      admin.error.data.code === 'unknown_namespace' && c.socket.connected,
    `an unknown namespace: connect_error "Invalid namespace", data.code unknown_namespace (${
      JSON.stringify(admin.error && admin.error.data)}), "/" still connected`);
    // Ten heartbeats (3 s and more) outlast the 2 s timeout: the numbered
    // WebSocket pings beside them were echoed by the client's ws on its own
    // (a "3" alone does not keep a client: ws.c, heartbeat).
    await waitFor(() => pings >= 10, 'ten heartbeats', 20000);
    check(c.socket.connected, `still connected after ${pings} Engine.IO pings`);

    // Polling only: refused with the 400, never a hang (a 5 s deadline on
    // the wait, not a time measured on this client's clock).
    const p = connect(base, { transports: ['polling'] });
    clients.push(p);
    await waitFor(() => p.connected || p.error, 'the polling client to give up', 5000);
    check(!p.connected, `polling only: connect_error within 5 s (${p.error && p.error.message})`);
    const raw = await request(srv.port, 'GET', '/socket.io/?EIO=4&transport=polling');
    const body = JSON.parse(raw.body);
    check(raw.status === 400 && body.code === 0 && /websocket/.test(body.message),
      `GET /socket.io/?transport=polling: 400 {code 0, "${body.message}"}`);
    // Polling listed first: the client moves on to websocket.
    const f = connect(base, { transports: ['polling', 'websocket'], tryAllTransports: true });
    clients.push(f);
    await waitFor(() => f.connected || (f.error && !f.socket.active), 'fallback', 10000);
    check(f.connected && f.socket.io.engine.transport.name === 'websocket',
      'polling listed first (tryAllTransports): falls back to websocket');
    await restart(img);
  } finally {
    for (const c of clients) c.socket.close();
    const rc = await stopServer(srv);
    check(rc === 0, `orfeasd exited 0 (${rc})`);
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
