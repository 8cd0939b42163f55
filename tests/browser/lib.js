// lib.js: what the Node tests of tests/browser/ share. orfeasd is started
// on 127.0.0.1 port 0 (the port is read from its "listening on" line) and
// stopped by its PID; every wait has a deadline; check() prints each
// assertion with the seconds since the test began.
'use strict';
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');

const T0 = Date.now();
let failures = 0;

function check(cond, what) {
  const t = ((Date.now() - T0) / 1000).toFixed(1).padStart(5);
  console.log(`${cond ? 'ok' : 'FAIL'} [${t}s]: ${what}`);
  if (!cond) {
    failures++;
    throw new Error(what);
  }
}

// check() for a condition that must come true within a deadline: `wait` is
// the promise that waits for it (waitFor, page.waitForFunction: each has its
// deadline); "ok" when it resolves, "FAIL" naming why when it rejects.
async function checkWithin(wait, what) {
  let why = '';
  try {
    await wait;
  } catch (e) {
    why = e.message || String(e);
  }
  check(why === '', why ? `${what} (${why})` : what);
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function waitFor(pred, what, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await sleep(20);
  }
}

// Starts bin with --listen 127.0.0.1:PORT (0: a free one) --data-dir
// dataDir and args; srv.ready resolves to the port.
function startServer(bin, dataDir, args, port = 0) {
  const proc = spawn(bin, ['--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  const srv = { proc, log: [], port: 0 };
  let buf = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      srv.log.push(line);
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) srv.port = Number(m[1]);
    }
  });
  srv.ready = waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`orfeasd exited early (${proc.exitCode}):\n${srv.log.join('\n')}`);
    return srv.port;
  }, 'orfeasd to listen');
  return srv;
}

// SIGTERM (SIGKILL after 30 s); resolves to the exit status.
function stopServer(srv) {
  return new Promise((resolve) => {
    if (srv.proc.exitCode !== null) return resolve(srv.proc.exitCode);
    const t = setTimeout(() => srv.proc.kill('SIGKILL'), 30000);
    srv.proc.once('exit', (code) => { clearTimeout(t); resolve(code); });
    srv.proc.kill('SIGTERM');
  });
}

// One HTTP request to 127.0.0.1:port: {status, headers, body (Buffer)}.
function request(port, method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.setTimeout(20000, () => req.destroy(new Error('timeout')));
    if (body) req.write(body);
    req.end();
  });
}

// A browser test's arguments (BUILD_DIR OUT_DIR, exit 2 with usage when
// missing) and the binaries it runs: orfeasd (ORFEASD_BIN) and Debian's
// chromium (CHROMIUM_BIN).
function testArgs(script) {
  const [BUILD, OUT] = process.argv.slice(2).map((p) => path.resolve(p));
  if (!BUILD || !OUT) {
    console.error(`usage: ${script} BUILD_DIR OUT_DIR`);
    process.exit(2);
  }
  return {
    BUILD, OUT,
    ORFEASD: process.env.ORFEASD_BIN || path.join(BUILD, 'orfeasd'),
    CHROMIUM: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
  };
}

// One headless Chromium (puppeteer-core: nothing downloads a browser).
// WebGL without a GPU: ANGLE on SwiftShader, opted in explicitly.
function launchChromium(puppeteer, executablePath) {
  return puppeteer.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
      '--disable-dev-shm-usage', '--no-first-run', '--disable-extensions'],
    timeout: 30000,
  });
}

module.exports = {
  check, checkWithin, sleep, waitFor, startServer, stopServer, request, testArgs, launchChromium,
  failures: () => failures,
};
