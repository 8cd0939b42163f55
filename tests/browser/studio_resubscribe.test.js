#!/usr/bin/env node
// studio_resubscribe.test.js BUILD_DIR OUT_DIR: the Studio page told to
// "subscribe again" in cluster mode (ctest: browser.studio_resubscribe;
// docs/studio.md).
//
// One orfeasd on a redis-server of the test's own (--store redis://), and
// the Studio page in headless Chromium (puppeteer-core, Debian's chromium).
// The page's job ends while the node cannot hear it: the node's event-bus
// listener is kept off Redis (an ACL that denies SUBSCRIBE, its connection
// killed), so the job's events are lost. Then the listener is let back in
// while Redis refuses the node's scripts (EVALSHA and EVAL denied): the
// node resyncs the page's subscription, its read of the job fails, and the
// page gets the error that says "subscribe again". Once the test has seen
// that error reach the browser it gives the scripts back.
//
// The page must subscribe again by itself at once (static/live.js, a
// bounded backoff), get the job's end over the WebSocket and show the
// model, without falling back to polling /api/job-status (which it does
// after 8 s of silence). Asserted on what the browser recorded (DevTools
// frames and requests, the page's console), not on time: the page logged
// its resubscribe, sent a subscribe after the error, received
// generation_complete after that, shows the download link, and made no
// job-status request for the job. Then, the scripts denied for good, a
// second Live of the page's module gives up after 5 subscribes again, at
// once and then backing off (0.5, 1, 2, 4 s). Every wait has a deadline.
'use strict';
const fs = require('fs');
const path = require('path');
const net = require('net');
const { spawn, execFileSync } = require('child_process');
const lib = require('./lib.js');
const { check, checkWithin, startServer, stopServer, waitFor } = lib;

const ROOT = path.resolve(__dirname, '../..');
const puppeteer = require(path.join(ROOT, 'node_modules', 'puppeteer-core'));

const { BUILD, OUT, ORFEASD, CHROMIUM } = lib.testArgs('studio_resubscribe.test.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A redis-server of the test's own (loopback, its own folder), stopped by
// its PID.
async function startRedis(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no',
    '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
  const cli = (...args) => execFileSync('redis-cli', ['-p', String(port), ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  await waitFor(() => {
    if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode})`);
    try { return cli('ping') === 'PONG'; } catch { return false; }
  }, 'redis-server to answer', 10000);
  return { proc, port, cli };
}

async function main() {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const star = path.join(OUT, 'star.png');
  execFileSync(path.join(BUILD, 'tests', 'od-testimg'), ['png', '96', star]);
  const redis = await startRedis(path.join(OUT, 'redis'));
  const srv = startServer(ORFEASD, path.join(OUT, 'data'),
    ['--store', `redis://127.0.0.1:${redis.port}`, '--node-id', 'a', '--workers', '1']);
  let browser = null;
  const t0 = Date.now();
  try {
    const port = await srv.ready;
    const base = `http://127.0.0.1:${port}`;
    browser = await lib.launchChromium(puppeteer, CHROMIUM);
    const page = await browser.newPage();
    page.setDefaultTimeout(30000);
    const problems = [], logged = [];
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => logged.push(m.text()));
    // What the browser really sent and received (DevTools), in order.
    const got = [], sent = [], statusReqs = [];
    const cdp = await page.createCDPSession();
    await cdp.send('Network.enable');
    const parse = (s) => { try { return JSON.parse(s); } catch { return null; } };
    cdp.on('Network.webSocketFrameReceived', (e) => got.push({ f: parse(e.response.payloadData), ts: e.timestamp }));
    cdp.on('Network.webSocketFrameSent', (e) => sent.push({ f: parse(e.response.payloadData), ts: e.timestamp }));
    cdp.on('Network.requestWillBeSent', (e) => {
      if (e.request.url.includes('/api/job-status/')) statusReqs.push({ url: e.request.url, ts: e.timestamp });
    });

    await page.goto(base + '/', { waitUntil: 'load' });
    await checkWithin(page.waitForFunction(() => document.getElementById('live').textContent === 'live',
      { timeout: 15000 }), 'the WebSocket is live');

    // The node's listener off the bus: SUBSCRIBE denied, its connection
    // killed (it retries every 200 ms and fails). The job's events are
    // published to nobody from now on.
    check(redis.cli('ACL', 'SETUSER', 'default', '-subscribe') === 'OK', 'Redis denies SUBSCRIBE');
    check(Number(redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub')) >= 1, 'the node\'s listener connection killed');

    await (await page.$('input[type=file]')).uploadFile(star);
    await page.waitForFunction(() => !document.getElementById('preview').hidden, { timeout: 10000 });
    const [button] = await page.$$('xpath/.//button[normalize-space(text())="Generate"]');
    await button.click();
    const id = await waitFor(() => {
      const s = sent.find((x) => x.f && x.f.event === 'subscribe');
      return s ? s.f.data.job_id : null;
    }, 'the page to follow its job', 10000);
    await waitFor(async () => JSON.parse((await lib.request(port, 'GET', `/api/job-status/${id}`)).body).status === 'completed',
      'the page\'s job to complete (asked by the test, not the page)', 20000);
    check(!got.some((x) => x.f && x.f.event === 'generation_complete' && x.f.data.job_id === id),
      'its generation_complete did not reach the page (the listener was off the bus)');

    // The listener back, the node's scripts refused: the resync's read of
    // the job fails and the page is told to subscribe again.
    check(redis.cli('ACL', 'SETUSER', 'default', '-evalsha', '-eval', '+subscribe') === 'OK',
      'Redis allows SUBSCRIBE again, denies EVALSHA and EVAL');
    const isAgain = (x) => x.f && x.f.event === 'error' && x.f.data && x.f.data.job_id === id;
    const firstError = await waitFor(() => got.find(isAgain), 'the "subscribe again" error to reach the page', 15000);
    console.log(`the page got ${JSON.stringify(firstError.f.data)}`);
    check(firstError.f.data.code === 'resubscribe' && /subscribe again/.test(firstError.f.data.message || ''),
      'the error says so by its code, resubscribe, and in its message as before');
    check(redis.cli('ACL', 'SETUSER', 'default', '+@all') === 'OK', 'Redis allows every command again');

    await checkWithin(page.waitForSelector(`a[href*="/api/download/${id}/"]:not([hidden])`, { timeout: 30000 }),
      'the page shows the job\'s download link');
    await checkWithin(page.waitForFunction(() => Number(document.getElementById('canvas').dataset.triangles) > 0,
      { timeout: 30000 }), 'and its model in the viewer');

    const again = sent.filter((x) => x.f && x.f.event === 'subscribe' && x.f.data.job_id === id && x.ts >= firstError.ts);
    check(again.length >= 1, `the page subscribed again after the error (${again.length} subscribe(s) sent after it)`);
    const end = got.find((x) => x.f && x.f.event === 'generation_complete' && x.f.data.job_id === id);
    check(end && end.ts >= again[0].ts, 'generation_complete reached the page after its subscribe again');
    const errors = got.filter(isAgain).length;
    check(again.length <= errors, `at most one subscribe again per error (${again.length} for ${errors})`);
    const said = logged.filter((t) => t.includes(id) && /subscrib\w* again/.test(t));
    check(said.length === again.length, `the page logged each resubscribe (${said.join(' | ') || 'none'})`);
    const mine = statusReqs.filter((r) => r.url.includes(id));
    check(mine.length === 0, `the page never fell back to polling job-status (${mine.length} request(s))`);
    await page.screenshot({ path: path.join(OUT, 'resubscribed.png') });

    // A server that keeps refusing is not hammered: with the scripts
    // denied for good, a second Live of the page's own module following the
    // same job subscribes again 5 times (at once, then after 0.5, 1, 2 and
    // 4 s), then gives up and says so (the page would poll job-status).
    check(redis.cli('ACL', 'SETUSER', 'default', '-evalsha', '-eval') === 'OK', 'Redis denies EVALSHA and EVAL again');
    const tries = await page.evaluate(async (jobId) => {
      const { Live } = await import('/static/live.js');
      const l = new Live('/ws');
      const seen = [];
      const opened = new Promise((resolve) => l.addEventListener('state', () => l.open && resolve()));
      const done = new Promise((resolve) => l.addEventListener('resubscribe', (e) => {
        seen.push(e.detail);
        if (e.detail.gave_up) resolve();
      }));
      l.start();
      await opened;
      l.follow(jobId);
      const late = new Promise((resolve) => setTimeout(resolve, 30000));
      await Promise.race([done, late]);
      l.unfollow(jobId);
      return seen;
    }, id);
    check(redis.cli('ACL', 'SETUSER', 'default', '+@all') === 'OK', 'Redis allows every command again');
    const delays = tries.filter((t) => !t.gave_up).map((t) => t.delay_ms);
    check(JSON.stringify(delays) === '[0,500,1000,2000,4000]' && tries.length === 6 && tries[5].gave_up === true,
      `a server that keeps refusing: 5 subscribes again (after ${delays.join(', ')} ms), then it gave up`);
    // What the page takes for "subscribe again" (live.js): the code, and
    // the message only from a node that sends no code (an older one, in a
    // cluster being upgraded node by node). Another code is never taken
    // for it, whatever its message says.
    const verdicts = await page.evaluate(async (jobId) => {
      const { isResubscribe } = await import('/static/live.js');
      return [
        { code: 'resubscribe', message: 'no current state sent for this job', job_id: jobId },
        { message: 'no current state sent for this job: ...; subscribe again later', job_id: jobId },
        { code: 'too_many_subscriptions', message: 'at most 2 ...; subscribe again later', job_id: jobId },
        { code: 'bad_job_id', message: 'subscribe again' },
        { message: 'at most 32 subscriptions per connection', job_id: jobId },
      ].map(isResubscribe);
    }, id);
    check(JSON.stringify(verdicts) === '[true,true,false,false,false]',
      `live.js takes the code resubscribe, or an older node's message, for a subscribe again (${verdicts})`);
    check(problems.length === 0, `no script error (${problems.join('; ') || 'none'})`);
  } finally {
    if (browser) await browser.close().catch(() => browser.process() && browser.process().kill('SIGKILL'));
    const rc = await stopServer(srv);
    redis.proc.kill('SIGTERM');
    if (lib.failures()) console.log(srv.log.slice(-20).map((l) => `  | ${l}`).join('\n'));
    check(rc === 0, `orfeasd exited 0 after SIGTERM (${rc})`);
  }
  console.log(`browser.studio_resubscribe: all checks passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
