#!/usr/bin/env node
// studio.test.js BUILD_DIR OUT_DIR: the Studio page in a real browser
// (ctest: browser.studio; docs/studio.md).
//
// Starts its own orfeasd (127.0.0.1, port 0, a fresh data dir under OUT_DIR,
// --max-upload-mb 1) and one headless Chromium (Debian's, driven by
// puppeteer-core: nothing downloads a browser; WebGL through SwiftShader),
// then, in that one browser:
//   desktop 1280x800: the page loads with no CSP violation and no script
//     error, every request stays on orfeasd's origin; an image is chosen
//     through input[type=file] and previewed; "Generate" (GLB); progress
//     frames arrive over the WebSocket and the stage label moves; the
//     canvas shows the model (pixels painted on the transparent canvas);
//     the a[href*="/api/download/"] link fetches a GLB the Khronos
//     validator accepts; the next image chosen takes that model away before
//     any Generate; a file over the server's limit is refused as it is
//     chosen, naming the limit, with no upload (and no longer the last
//     result), and one the page lets go that the server refuses shows the
//     413's message in words; a 16 px image says why, once; a
//     generate-3d answered 429 keeps its upload for Generate again (Enter
//     in the depth field: the form submits); another
//     image chosen while an upload is on its way wins (the older upload is
//     neither listed nor shown); a model that is not printable says so in
//     its list line; every
//     control has an accessible name, the file picker's focus shows, the
//     canvas takes the focus; the canvas zooms from the keyboard (+ and -,
//     Page Up and Page Down) and its accessible name says so; the file
//     picker is a button named "Choose an image" that Space and Enter open;
//     a subscription past --ws-max-subscriptions settles Live.follow at once;
//     jobs.js takes over an older page's list and keeps an ended job ended;
//     the reload's /api/models-info held (request interception) while a
//     file over the limit is chosen: it is refused as the limits arrive.
//   phone 390x844 (touch): the reload's /api/models-info answered 429 is
//     said and asked again after its Retry-After (held while an image under
//     the limit is chosen: nothing is said of it); nothing overflows
//     sideways; the job list survived the reload and its "View" shows the
//     model again.
//   the original clients' way: a page written against the original ORFEAS
//     API (tests/browser/original-client/, with socket.io-client's browser
//     build), served from another origin by a small server in this process:
//     allowed by --cors-origins, it runs models-info (with the original's
//     extra headers: preflighted), upload, generate-3d, job_update over
//     Socket.IO, download-base64, download (an STL admesh accepts) and
//     preview; from an origin not allowed, the browser refuses it the API.
//   reconnection: orfeasd restarted on the same port and data dir under the
//     open page, with the page's job running (held past --drain-timeout, so
//     the drain leaves it in the store): a second tab opened mid-job follows
//     it; the live channel goes offline (the page says it cannot reach the
//     server) and comes back by itself, and both tabs show that job finish
//     after the restart (its download link, its model).
//   one job at a time: with the worker held, a job queued behind another is
//     said to wait ("next in line"), in the tab that started it and in a
//     reloaded tab that follows it; the place of the job behind it moves
//     as the one ahead leaves the queue; choosing another image frees Generate
//     there (the followed job goes on in the background), and every job's
//     end reaches both tabs' lists.
// Screenshots of both go to OUT_DIR. Every wait has a deadline.
'use strict';
const fs = require('fs');
const path = require('path');
const http = require('http');
const { execFileSync } = require('child_process');
const lib = require('./lib.js');
const { check, checkWithin, startServer, stopServer, waitFor } = lib;

const ROOT = path.resolve(__dirname, '../..');
const puppeteer = require(path.join(ROOT, 'node_modules', 'puppeteer-core'));

const { BUILD, OUT, ORFEASD, CHROMIUM } = lib.testArgs('studio.test.js');

// The original-style page and socket.io-client's browser build, served from
// another origin than orfeasd (any path not listed is 404).
function startPageServer() {
  const dir = path.join(__dirname, 'original-client');
  const files = {
    '/': [path.join(dir, 'index.html'), 'text/html; charset=utf-8'],
    '/client.js': [path.join(dir, 'client.js'), 'text/javascript'],
    '/socket.io.min.js': [path.join(ROOT, 'node_modules', 'socket.io-client', 'dist', 'socket.io.min.js'),
      'text/javascript'],
  };
  const server = http.createServer((req, res) => {
    const f = files[new URL(req.url, 'http://x').pathname];
    if (!f) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': f[1] });
    res.end(fs.readFileSync(f[0]));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// GET on orfeasd: {status, headers, body}.
function get(port, p) { return lib.request(port, 'GET', p); }

// ---- the page -----------------------------------------------------------------

// Records the stage labels the page shows and the job frames the WebSocket
// brings (through the DevTools protocol: what the browser really received).
async function instrument(page) {
  // Frames as they arrive, each object given the browser's receive time
  // (__ts); frames.posts: the POSTs the page sent, with the same clock's
  // time (both are CDP's Network.MonotonicTime).
  const frames = [];
  frames.posts = [];
  const cdp = await page.createCDPSession();
  await cdp.send('Network.enable');
  cdp.on('Network.webSocketFrameReceived', (e) => {
    let f;
    try { f = JSON.parse(e.response.payloadData); } catch { return; /* not JSON */ }
    if (f && typeof f === 'object') f.__ts = e.timestamp;
    frames.push(f);
  });
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.request.method === 'POST') frames.posts.push({ url: e.request.url, ts: e.timestamp });
  });
  return frames;
}

async function watchStages(page) {
  await page.evaluate(() => {
    window.__stages = [];
    const el = document.getElementById('stage');
    new MutationObserver(() => window.__stages.push(el.textContent))
      .observe(el, { childList: true, characterData: true, subtree: true });
  });
}

// The page's next request whose URL contains `part` is answered 429 with
// {error} and Retry-After, made in the page (its fetch wrapped once), not
// by filling a queue or a rate limit; every other request goes through.
// Runs in the page: refuseOnce (now) or refuseOnLoad (in the next document,
// before the page's own scripts).
function installRefusal(part, error, retryAfter) {
  const real = window.fetch;
  window.fetch = (u, init) => {
    if (!String(u).includes(part)) return real(u, init);
    window.fetch = real;
    return Promise.resolve(new Response(JSON.stringify({ error, status: 429 }),
      { status: 429, headers: { 'Content-Type': 'application/json', 'Retry-After': String(retryAfter) } }));
  };
}

function refuseOnce(page, part, error, retryAfter) {
  return page.evaluate(installRefusal, part, error, retryAfter);
}

// The same for the page's next load; resolves to what removes it
// (page.removeScriptToEvaluateOnNewDocument's identifier).
async function refuseOnLoad(page, part, error, retryAfter) {
  return (await page.evaluateOnNewDocument(installRefusal, part, error, retryAfter)).identifier;
}

// The page's requests whose URL contains `part` are held (DevTools request
// interception) until release() lets them go; every other request goes
// through. off() ends the interception (it also turns the cache off).
async function holdRequests(page, part) {
  const held = [];
  const onRequest = (r) => {
    if (r.isInterceptResolutionHandled()) return;
    if (r.url().includes(part)) held.push(r);
    else r.continue();
  };
  page.on('request', onRequest);
  await page.setRequestInterception(true);
  return {
    held,
    release: () => Promise.all(held.splice(0).map((r) => r.continue())),
    off: async () => {
      page.off('request', onRequest);
      await page.setRequestInterception(false);
    },
  };
}

// Pixels the renderer painted: the canvas is transparent where there is
// no model.
function paintedShare(page) {
  return page.evaluate(() => {
    const src = document.getElementById('canvas');
    const c = document.createElement('canvas');
    c.width = src.width;
    c.height = src.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(src, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n / (c.width * c.height);
  });
}

// What a keyboard or screen-reader user gets: every control in the
// accessibility tree has a name, the file picker (transparent, over the drop
// zone) shows where the focus is, and the 3D preview can take the focus
// (its arrow keys pan, Shift+arrows turn the model).
async function checkKeyboard(page, what) {
  const unnamed = [];
  const walk = (n) => {
    if (/^(button|link|combobox|slider|spinbutton|textbox|progressbar|checkbox)$/.test(n.role) && !n.name) {
      unnamed.push(n.role);
    }
    (n.children || []).forEach(walk);
  };
  walk(await page.accessibility.snapshot({ interestingOnly: false }));
  check(unnamed.length === 0, `${what}: every control has an accessible name (unnamed: ${unnamed.join(', ') || 'none'})`);
  await page.focus('#file');
  const ring = await page.$eval('#drop', (e) => getComputedStyle(e).outlineStyle);
  check(ring !== 'none', `${what}: the drop zone shows the focus of its file picker (outline ${ring})`);
  check(await page.$eval('#canvas', (e) => e.tabIndex === 0 && e.getAttribute('tabindex') === '0'),
    `${what}: the 3D preview takes the keyboard focus (tabindex 0)`);
  // The drop zone's file picker is a button to a keyboard or screen-reader
  // user: named for what it does (not by the zone's text, which goes once
  // an image is chosen), the accepted types its description, and opened by
  // Enter as by Space.
  await checkPicker(page, what, /PNG/);
  await checkPickerKeys(page, what);
  // The 3D preview's accessible name says how to zoom with the keyboard.
  const view = await page.accessibility.snapshot({ root: await page.$('#canvas'), interestingOnly: false });
  check(view && /\+ and -/.test(view.name) && /Page Up/.test(view.name),
    `${what}: the 3D preview's name says how to zoom from the keyboard ("${view && view.name}")`);
}

// Space and Enter on the focused file picker each open the file chooser
// (intercepted: Page.fileChooserOpened names the picker's node). Through a
// DevTools session of the test's own, so that nothing races: interception
// is on (its command answered) before a key goes, and each key's down and up
// go out together. Space opens a file input on its keyup, and Chromium opens
// a chooser only within 5 s of the keydown's user activation ("File chooser
// dialog can only be shown with a user activation"); page.keyboard.press
// sends the keyup only once the keydown's answer is back, which on a loaded
// machine (load 12-21 on 2 cores) took longer than that: a key held 5 s, not
// a keystroke. waitForFileChooser's own interception command is not awaited
// before the key either.
async function checkPickerKeys(page, what) {
  const cdp = await page.createCDPSession();
  await cdp.send('Page.enable'); // else no Page.fileChooserOpened comes
  await cdp.send('Page.setInterceptFileChooserDialog', { enabled: true });
  const { root } = await cdp.send('DOM.getDocument');
  const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector: '#file' });
  const { node } = await cdp.send('DOM.describeNode', { nodeId });
  const keys = {
    Space: { key: ' ', code: 'Space', windowsVirtualKeyCode: 32, text: ' ' },
    Enter: { key: 'Enter', code: 'Enter', windowsVirtualKeyCode: 13, text: '\r' },
  };
  for (const [name, k] of Object.entries(keys)) {
    await page.focus('#file');
    let onOpen, timer;
    const opened = new Promise((resolve) => {
      onOpen = resolve;
      cdp.on('Page.fileChooserOpened', onOpen);
      timer = setTimeout(resolve, 15000, null);
    });
    const { text, ...key } = k;
    await Promise.all([
      cdp.send('Input.dispatchKeyEvent', { type: 'keyDown', ...key, text, unmodifiedText: text }),
      cdp.send('Input.dispatchKeyEvent', { type: 'keyUp', ...key }),
    ]);
    const ev = await opened;
    clearTimeout(timer);
    cdp.off('Page.fileChooserOpened', onOpen);
    check(ev !== null && ev.backendNodeId === node.backendNodeId,
      `${what}: ${name} on the drop zone opens the file chooser` +
      (ev === null ? ' (none within 15 s)' : ev.backendNodeId === node.backendNodeId ? '' : ' (another element\'s)'));
  }
  await cdp.detach();
}

async function checkPicker(page, what, described) {
  const picker = await page.accessibility.snapshot({ root: await page.$('#file'), interestingOnly: false });
  check(picker && picker.role === 'button' && picker.name === 'Choose an image' && described.test(picker.description),
    `${what}: the drop zone's file picker is a button named "${picker && picker.name}" (${picker && picker.role}; described "${picker && picker.description}")`);
}

// Keyboard zoom in the 3D preview (focused): + and PageUp bring the model
// closer (more of the canvas painted), - and PageDown take it back.
async function checkKeyboardZoom(page, what) {
  await page.focus('#canvas');
  for (const [inKey, outKey] of [['+', '-'], ['PageUp', 'PageDown']]) {
    const before = await paintedShare(page);
    for (let i = 0; i < 2; i++) await page.keyboard.press(inKey);
    const near = await paintedShare(page);
    for (let i = 0; i < 2; i++) await page.keyboard.press(outKey);
    const back = await paintedShare(page);
    check(near > before * 1.5 && Math.abs(back - before) < before * 0.1,
      `${what}: ${inKey} zooms in, ${outKey} out (${(before * 100).toFixed(1)}% > ${(near * 100).toFixed(1)}% > ${(back * 100).toFixed(1)}% of the canvas)`);
  }
  check(await page.evaluate(() => window.scrollY === 0), `${what}: PageDown in the preview did not scroll the page`);
}

async function generateOnce(page, port, image, format, frames, what) {
  const input = await page.$('input[type=file]');
  await input.uploadFile(image);
  await checkWithin(page.waitForFunction(() => {
    const img = document.getElementById('preview');
    return !img.hidden && img.naturalWidth > 0;
  }, { timeout: 10000 }), `${what}: the chosen image is previewed`);
  await page.select('#format', format);
  // The quality slider, moved as a user would (a 96 px image caps the mesh
  // anyway, so the job stays small).
  await page.$eval('#quality', (q) => { q.value = '3'; q.dispatchEvent(new Event('input')); });
  await watchStages(page);
  const before = frames.length, postsBefore = frames.posts.length;
  const [button] = await page.$$('xpath/.//button[normalize-space(text())="Generate"]');
  check(!!button, `${what}: a button whose text is "Generate"`);
  await button.click();
  const link = await page.waitForSelector('a[href*="/api/download/"]:not([hidden])', { timeout: 60000 });
  await page.waitForFunction(() => Number(document.getElementById('canvas').dataset.triangles) > 0,
    { timeout: 30000 });
  const href = await link.evaluate((a) => a.getAttribute('href'));
  const id = /\/api\/download\/([0-9a-f-]{36})\//.exec(href)[1];
  const mine = frames.slice(before).filter((f) => f && f.data && f.data.job_id === id);
  // The page follows the job and waits for the server's "subscribed" before
  // generate-3d (static/live.js): a job of a few milliseconds ends before a
  // subscribe the server has not read yet, and its progress is lost.
  const subscribed = mine.find((f) => f.event === 'subscribed');
  const post = frames.posts.slice(postsBefore).find((p) => p.url.endsWith('/api/generate-3d'));
  check(subscribed && post && subscribed.__ts <= post.ts,
    `${what}: "subscribed" arrived before the page sent generate-3d (${subscribed ? subscribed.__ts : 'none'} <= ${post ? post.ts : 'none'}, CDP monotonic s)`);
  const progress = mine.filter((f) => f.event === 'generation_progress');
  check(progress.length >= 7, `${what}: ${progress.length} progress frames arrived over the WebSocket`);
  check(mine.some((f) => f.event === 'generation_complete'), `${what}: generation_complete arrived`);
  const stages = await page.evaluate(() => window.__stages);
  check(stages.includes('Done') && new Set(stages).size >= 4,
    `${what}: the stage label moved (${[...new Set(stages)].join(' > ')})`);
  const share = await paintedShare(page);
  check(share > 0.02, `${what}: the canvas shows the model (${(share * 100).toFixed(1)}% of its pixels)`);
  const grade = await page.$eval('#grade', (e) => e.textContent);
  const printable = await page.$eval('#printable', (e) => e.textContent);
  check(/^[A-F][+-]?$/.test(grade) && /printable/.test(printable),
    `${what}: quality grade ${grade} and "${printable}" shown`);
  const res = await get(port, href);
  check(res.status === 200 && res.body.length > 100, `${what}: the download link answers 200 (${res.body.length} bytes)`);
  const file = path.join(OUT, `model.${format}`);
  fs.writeFileSync(file, res.body);
  return file;
}

async function main() {
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });
  const star = path.join(OUT, 'star.png');
  execFileSync(path.join(BUILD, 'tests', 'od-testimg'), ['png', '96', star]);
  const tiny = path.join(OUT, 'tiny.png');
  execFileSync(path.join(BUILD, 'tests', 'od-testimg'), ['png', '16', tiny]);
  // Three more images (each its own job, none a cache hit); the second,
  // 4096 px (121 KB), is a job of a second or more (see job B).
  const [q1, q2, q3] = [48, 4096, 64].map((px) => {
    const f = path.join(OUT, `q${px}.png`);
    execFileSync(path.join(BUILD, 'tests', 'od-testimg'), ['png', String(px), f]);
    return f;
  });
  const big = path.join(OUT, 'big.png');
  fs.writeFileSync(big, Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(1536 * 1024, 7)]));
  // Exactly --max-upload-mb (1 MiB): the page lets it go, and the server
  // refuses it (its limit bounds the whole body, the form's bytes too).
  const edge = path.join(OUT, 'edge.png');
  fs.writeFileSync(edge, Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(1024 * 1024 - 8, 7)]));

  const pages = await startPageServer();
  const pagePort = pages.address().port;
  // Jobs are held before their first stage while `pause` exists
  // (--pause-file; "drain" in it: through a drain too, until
  // --drain-timeout stops the job).
  const pause = path.join(OUT, 'pause');
  if (fs.existsSync(pause)) fs.unlinkSync(pause);
  const args = ['--max-upload-mb', '1', '--workers', '1', '--cors-origins', `http://127.0.0.1:${pagePort}`,
    '--drain-timeout', '2', '--pause-file', pause];
  let srv = startServer(ORFEASD, path.join(OUT, 'data'), args);
  let browser = null;
  const t0 = Date.now();
  try {
    const port = await srv.ready;
    const base = `http://127.0.0.1:${port}`;
    browser = await lib.launchChromium(puppeteer, CHROMIUM);
    console.log(`chromium up after ${Date.now() - t0} ms`);
    const page = await browser.newPage();
    console.log(`page open after ${Date.now() - t0} ms`);
    page.setDefaultTimeout(30000);
    const problems = [], offOrigin = [];
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => {
      const t = m.text();
      if (/Content Security Policy|Refused to/.test(t)) problems.push(`CSP: ${t}`);
    });
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(base + '/') && !u.startsWith('blob:') && !u.startsWith('data:') &&
          !u.startsWith(`ws://127.0.0.1:${port}/`)) offOrigin.push(u);
    });
    const frames = await instrument(page);

    // ---- desktop ----
    await page.setViewport({ width: 1280, height: 800 });
    const resp = await page.goto(base + '/', { waitUntil: 'load' });
    const h = resp.headers();
    check(resp.status() === 200 && /script-src 'self'/.test(h['content-security-policy'] || '') &&
      !/unsafe-inline|unsafe-eval/.test(h['content-security-policy']),
    'GET /: 200 with a strict Content-Security-Policy');
    await checkWithin(page.waitForFunction(() => document.getElementById('live').textContent === 'live',
      { timeout: 15000 }), 'desktop: the WebSocket is live');
    // Before any job there is no result: no Download link to click (its
    // href is "#" then), whatever the panels' CSS says about display.
    check(await page.$eval('#result', (e) => getComputedStyle(e).display === 'none'),
      'desktop: no result (and no Download link) is shown before a job');
    await checkKeyboard(page, 'desktop');
    const glb = await generateOnce(page, port, star, 'glb', frames, 'desktop GLB');
    const v = execFileSync('node', [path.join(ROOT, 'tests', 'pipeline', 'gltf-validate.js'), glb],
      { encoding: 'utf8' });
    check(/errors=0/.test(v), `desktop GLB: the Khronos glTF validator accepts it (${v.trim()})`);
    await page.screenshot({ path: path.join(OUT, 'desktop-1280x800.png') });
    check((await page.$$('#jobs li')).length === 1, 'desktop: the job is listed under "Your jobs"');
    await checkKeyboardZoom(page, 'desktop GLB');

    // The error path: a file over --max-upload-mb 1. Choosing it already
    // takes the previous image's model away: its result row, its Download
    // link and the viewer's model are not the new image's.
    const input = await page.$('input[type=file]');
    await input.uploadFile(big);
    await checkWithin(page.waitForFunction(() => document.getElementById('file-info').textContent.startsWith('big.png'),
      { timeout: 5000 }), 'a new image chosen: the page names it');
    const after = await page.evaluate(() => ({
      result: getComputedStyle(document.getElementById('result')).display,
      progress: document.getElementById('progress').hidden,
      triangles: document.getElementById('canvas').dataset.triangles,
      hint: document.getElementById('viewer-hint').textContent,
    }));
    await checkPicker(page, 'a new image chosen', /big\.png/);
    const painted = await paintedShare(page);
    check(after.result === 'none' && after.progress && after.triangles === '0' && painted === 0 &&
      /^Your model appears here/.test(after.hint),
    `a new image chosen: the previous model is gone before Generate (result ${after.result}, progress hidden ${after.progress}, ${after.triangles} triangles, ${(painted * 100).toFixed(1)}% painted, hint "${after.hint}")`);
    // Over the server's --max-upload-mb (models-info's limits.max_upload_mb):
    // said as it is chosen, naming the limit, and Generate sends nothing.
    const uploads = () => frames.posts.filter((x) => x.url.endsWith('/api/upload-image')).length;
    const oversize = 'The image is too large: big.png is 1.5 MB, and this server takes images up to 1 MB. Choose a smaller image.';
    await checkWithin(page.waitForFunction((want) => !document.getElementById('error').hidden &&
      document.getElementById('error').textContent === want, { timeout: 5000 }, oversize),
    `a file over the server's limit: the page says so as it is chosen ("${oversize}")`);
    const [button] = await page.$$('xpath/.//button[normalize-space(text())="Generate"]');
    const bigUploads = uploads();
    await button.click();
    check(await page.$eval('#error', (e, want) => !e.hidden && e.textContent === want, oversize),
      'a file over the server\'s limit: Generate says why again (and sends nothing: the uploads are counted below)');
    await page.screenshot({ path: path.join(OUT, 'desktop-413.png') });
    check(await page.$eval('#result', (e) => getComputedStyle(e).display === 'none'),
      'oversize file: the previous model\'s result and Download link are no longer shown');
    // A file the page lets go that the server still refuses (413): the
    // server's message, in words.
    await input.uploadFile(edge);
    await checkWithin(page.waitForFunction(() => document.getElementById('error').hidden, { timeout: 5000 }),
      'a file of exactly the limit: the page has nothing against it');
    await button.click();
    await page.waitForFunction(() => !document.getElementById('error').hidden, { timeout: 15000 });
    const err = await page.$eval('#error', (e) => e.textContent);
    check(err === 'File too large (max 1MB). Choose a smaller image.' && uploads() === bigUploads + 1,
      `a file of exactly the limit: uploaded (the one upload since the file over it: ${uploads() - bigUploads}), and the server's 413 said "${err}"`);
    // An image under 32 px: the server's reason, once, in plain words.
    await input.uploadFile(tiny);
    await button.click();
    await page.waitForFunction(() => /16x16/.test(document.getElementById('error').textContent), { timeout: 15000 });
    const small = await page.$eval('#error', (e) => e.textContent);
    check(small.split('16x16').length === 2 && !/Security validation/.test(small) && /32-4096 px/.test(small),
      `16 px image: the page says why, once, in plain words ("${small}")`);
    // A generate refused with 429 (queue full): its upload is kept, so
    // pressing Generate again sends generate-3d for the same job, with no
    // second upload and no orphaned "uploaded" line in the list. The 429 is
    // made in the page (its fetch wrapped once), not by filling a queue.
    await input.uploadFile(star);
    await refuseOnce(page, '/api/generate-3d', 'Queue full; retry later', 3);
    const upBefore = uploads();
    await button.click();
    await page.waitForFunction(() => /Queue full/.test(document.getElementById('error').textContent), { timeout: 15000 });
    const full = await page.$eval('#error', (e) => e.textContent);
    check(full === 'Queue full; retry later. Try again in 3 s.', `429: the page says "${full}"`);
    // The model's download for the preview answered 429 once too (made in
    // the page as above): the preview waits it out and shows the model.
    await refuseOnce(page, '/api/download/', 'Rate limit exceeded', 1);
    await page.evaluate(() => { document.getElementById('canvas').dataset.triangles = '0'; });
    // Generate again from the keyboard: Enter in a field of the form
    // submits it (the browser's implicit submission through its Generate
    // button; the page adds no key handler of its own).
    await page.focus('#depth');
    await page.keyboard.press('Enter');
    await page.waitForSelector('a[href*="/api/download/"]', { visible: true, timeout: 30000 });
    await checkWithin(page.waitForFunction(() => Number(document.getElementById('canvas').dataset.triangles) > 0,
      { timeout: 15000 }), 'a preview download answered 429: the page waited it out and shows the model');
    const listed = await page.$$eval('#jobs li .meta', (l) => l.map((e) => e.textContent));
    check(uploads() - upBefore === 1 && listed.length === 2 && !listed.some((m) => /uploaded/.test(m)),
      `429 then Generate again (Enter in the depth field): one upload (${uploads() - upBefore}), the job ran, the list has no orphan (${listed.length} jobs)`);

    // Another image chosen while the upload of the one Generate was given is
    // on its way (its answer held in the page, its fetch wrapped once): the
    // newer choice wins. The older upload's job is not listed, and nothing of
    // it is shown; Generate is the new image's once that upload has answered.
    await input.uploadFile(star);
    await page.evaluate(() => {
      const real = window.fetch;
      const held = new Promise((resolve) => { window.__releaseUpload = resolve; });
      window.fetch = (u, init) => {
        if (!String(u).includes('/api/upload-image')) return real(u, init);
        window.fetch = real;
        return real(u, init).then(async (res) => { await held; return res; });
      };
    });
    const heldUploads = uploads();
    await button.click();
    await waitFor(() => uploads() > heldUploads, 'the held upload to be sent', 10000);
    await input.uploadFile(tiny);
    await page.evaluate(() => window.__releaseUpload());
    await checkWithin(page.waitForFunction(() => !document.getElementById('generate').disabled, { timeout: 10000 }),
      'another image chosen while an upload was on its way: Generate is the new image\'s once it answered');
    const stale = await page.evaluate(() => ({
      info: document.getElementById('file-info').textContent,
      progress: document.getElementById('progress').hidden,
      error: document.getElementById('error').hidden,
      jobs: [...document.querySelectorAll('#jobs li .meta')].map((e) => e.textContent),
    }));
    check(/^tiny\.png/.test(stale.info) && stale.progress && stale.error && stale.jobs.length === 2 &&
      !stale.jobs.some((m) => /uploaded/.test(m)),
    `an upload overtaken by a newer image: not listed, nothing of it shown (${stale.info}; ${stale.jobs.length} jobs: ${stale.jobs.join(' | ')})`);

    // A model that is not printable: its line in "Your jobs" says so in
    // words (not a colour). No image tried makes one (noise, checkers,
    // lines, dots, discs, every mode, quality 1 and 10, extreme sizes: the
    // score stays at 0.80 or more, printable), so the quality report of a real job
    // is changed in the page: its generation_complete frame, as the page's
    // WebSocket handler reads it (MessageEvent's data, wrapped once), says
    // printable false. Another quality: a job that runs (a cache hit could
    // be shown from job-status instead).
    await input.uploadFile(star);
    await page.$eval('#quality', (q) => { q.value = '4'; q.dispatchEvent(new Event('input')); });
    await page.evaluate(() => {
      const real = Object.getOwnPropertyDescriptor(MessageEvent.prototype, 'data');
      Object.defineProperty(MessageEvent.prototype, 'data', {
        configurable: true,
        get() {
          const d = real.get.call(this);
          if (typeof d !== 'string' || !d.includes('"generation_complete"')) return d;
          Object.defineProperty(MessageEvent.prototype, 'data', real);
          const m = JSON.parse(d);
          m.data.quality_metrics.printable = false;
          window.__notPrintable = m.data.job_id;
          return JSON.stringify(m);
        },
      });
    });
    await button.click();
    await checkWithin(page.waitForFunction(() => window.__notPrintable &&
      document.getElementById('printable').textContent === 'not printable', { timeout: 15000 }),
    'a job whose generation_complete says printable false: the result says "not printable"');
    const line = await page.evaluate(() => {
      const n = document.querySelector(`#jobs .name[title="${window.__notPrintable}"]`);
      return n ? n.parentElement.querySelector('.meta').textContent : 'not listed';
    });
    check(/ · not printable · /.test(line), `a model that is not printable: its line in the list says so ("${line}")`);

    // A subscription the server refuses (one past --ws-max-subscriptions,
    // 32): the refusal names the job, so Live.follow settles false at once
    // instead of waiting out its timer (60 s here; 10 s is the page's
    // deadline for an answer). A second Live of the page's own module.
    const answers = await page.evaluate(async () => {
      const { Live } = await import('/static/live.js');
      const l = new Live('/ws');
      const opened = new Promise((resolve) => l.addEventListener('state', () => l.open && resolve()));
      l.start();
      await opened;
      const ids = Array.from({ length: 33 }, () => crypto.randomUUID());
      const late = new Promise((resolve) => setTimeout(() => resolve('no answer in 10 s'), 10000));
      const got = await Promise.all(ids.map((id) => Promise.race([l.follow(id, 60000), late])));
      for (const id of ids) l.unfollow(id);
      return got;
    });
    check(answers.slice(0, 32).every((a) => a === true) && answers[32] === false,
      `33 follows on one socket: 32 subscribed, the 33rd refused and settled at once (${answers.slice(30)})`);

    // The list kept by an older page (one localStorage key) is taken over,
    // and a job's end is never undone by an older state (another tab's
    // late write): the page's own jobs.js, on a line of its own.
    const kept = await page.evaluate(async () => {
      const jobs = await import('/static/jobs.js');
      const id = crypto.randomUUID();
      localStorage.setItem('orfeas.studio.jobs',
        JSON.stringify([{ job_id: id, name: 'old.png', format: 'stl', status: 'completed', created: 1 }]));
      const found = jobs.load().find((j) => j.job_id === id);
      const after = jobs.put({ job_id: id, status: 'queued' }).find((j) => j.job_id === id);
      localStorage.removeItem(jobs.PREFIX + id);
      return { name: found && found.name, old: localStorage.getItem('orfeas.studio.jobs'), status: after && after.status };
    });
    check(kept.name === 'old.png' && kept.old === null && kept.status === 'completed',
      `jobs.js: an older page's list taken over (${kept.name}, old key ${kept.old}), an ended job stays ${kept.status}`);

    // The server's limits arriving after the image is chosen (a slow link:
    // the reload's /api/models-info held until the test lets it go): a file
    // over --max-upload-mb chosen meanwhile is refused as they arrive, in
    // the words of a choice made after them.
    const limits = await holdRequests(page, '/api/models-info');
    await page.reload({ waitUntil: 'load' });
    await waitFor(() => limits.held.length, 'the reloaded page to ask for its limits (held)', 10000);
    await (await page.$('input[type=file]')).uploadFile(big);
    await page.waitForFunction(() => document.getElementById('file-info').textContent.startsWith('big.png'),
      { timeout: 5000 });
    check(await page.$eval('#error', (e) => e.hidden), 'limits not loaded yet: nothing is said of big.png as it is chosen');
    await limits.release();
    await checkWithin(page.waitForFunction((want) => !document.getElementById('error').hidden &&
      document.getElementById('error').textContent === want, { timeout: 5000 }, oversize),
    'the limits arrived after a file over them was chosen: the page says so at once, naming the limit');
    await limits.off();

    // ---- phone ----
    await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
    // The reloaded page's /api/models-info answered 429 (made in the page,
    // before its scripts run): the page says so and that it will try again,
    // and after the Retry-After it has the server's limits (their accepted
    // types, in the server's words) and the message is gone.
    const refusal = await refuseOnLoad(page, '/api/models-info', 'Rate limit exceeded', 1);
    const retried = await holdRequests(page, '/api/models-info'); // after setViewport's own reload
    await page.reload({ waitUntil: 'load' });
    await checkWithin(page.waitForFunction(() => {
      const n = document.getElementById('limits-note');
      return n.getAttribute('role') === 'status' && /could not be loaded/.test(n.textContent) && /again in 1 s/.test(n.textContent);
    }, { timeout: 5000 }), 'models-info answered 429 at load: the page says the limits could not be loaded and when it tries again');
    // Its second try held (request interception, as above) while an image
    // under the limit is chosen: the limits that arrive then say nothing of it.
    await waitFor(() => retried.held.length, 'the page to ask for its limits again (held)', 10000);
    await (await page.$('input[type=file]')).uploadFile(q1);
    await page.waitForFunction(() => document.getElementById('file-info').textContent.startsWith('q48.png'),
      { timeout: 5000 });
    await retried.release();
    await checkWithin(page.waitForFunction(() => document.getElementById('limits-note').textContent === '' &&
      document.getElementById('accepted').textContent === 'PNG, JPEG, WEBP, GIF, BMP', { timeout: 10000 }),
    'models-info tried again after its Retry-After: the server\'s limits apply and the message is gone');
    check(await page.$eval('#error', (e) => e.hidden && e.textContent === ''),
      'an image under the limit chosen before the limits arrived: nothing is said of it');
    await retried.off();
    await page.removeScriptToEvaluateOnNewDocument(refusal);
    await page.waitForFunction(() => document.getElementById('live').textContent === 'live', { timeout: 15000 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `phone 390x844: nothing overflows sideways (${overflow} px)`);
    check((await page.$$('#jobs li')).length === 3, 'phone: the job list survived the reload (localStorage)');
    // The finished job, shown again from the list ("View"): the viewer at
    // phone size, without a second generation.
    const [view] = await page.$$('xpath/.//li//button[normalize-space(text())="View"]');
    check(!!view, 'phone: the listed job offers "View"');
    await view.click();
    await page.waitForFunction(() => Number(document.getElementById('canvas').dataset.triangles) > 0,
      { timeout: 30000 });
    const share = await paintedShare(page);
    check(share > 0.02, `phone: "View" shows the model again (${(share * 100).toFixed(1)}% of the canvas)`);
    await page.screenshot({ path: path.join(OUT, 'phone-390x844.png') });

    // Reconnection with a job running: the page's job is held running
    // through the drain, so SIGTERM stops it at --drain-timeout and it stays
    // in the store; orfeasd stops (its close frame reaches the page) and a
    // new one starts on the same port and data dir; the page reconnects by
    // itself and shows the job it was following finish there.
    fs.writeFileSync(pause, 'drain\n');
    const input2 = await page.$('input[type=file]');
    await input2.uploadFile(star);
    await page.waitForFunction(() => !document.getElementById('preview').hidden, { timeout: 10000 });
    const framesBefore = frames.length;
    const [again] = await page.$$('xpath/.//button[normalize-space(text())="Generate"]');
    await again.click();
    const heldId = await waitFor(() => {
      const f = frames.slice(framesBefore).find((x) => x && x.event === 'subscribed');
      return f ? f.data.job_id : null;
    }, 'the page to follow its new job', 10000);
    await waitFor(async () => JSON.parse((await get(port, `/api/job-status/${heldId}`)).body).status === 'processing',
      'the page\'s job to be running (held)', 10000);
    const live = () => page.$eval('#live', (e) => e.textContent);
    // A second tab (or this one reloaded) opened mid-job finds the job in
    // the list and follows it: its progress, then its end below.
    const tab2 = await browser.newPage();
    await tab2.setViewport({ width: 390, height: 844 });
    await tab2.goto(base + '/', { waitUntil: 'load' });
    await checkWithin(tab2.waitForFunction(() => !document.getElementById('progress').hidden &&
      document.getElementById('generate').disabled, { timeout: 10000 }),
    'a second tab opened mid-job shows the running job\'s progress');
    await page.bringToFront(); // a tab in the background has its timers slowed
    await watchStages(page);
    check(await stopServer(srv) === 0, 'orfeasd stopped with the page\'s job running (SIGTERM, exit 0)');
    check(srv.log.some((l) => l.includes(`job ${heldId}: still running at --drain-timeout`) &&
      l.includes('queued again')), 'the drain queued the job again (the log)');
    await page.waitForFunction(() => document.getElementById('live').textContent !== 'live', { timeout: 10000 });
    const down = await live();
    await checkWithin(page.waitForFunction(() => /Cannot reach the ORFEAS server/.test(document.getElementById('error').textContent) &&
      !document.getElementById('error').hidden, { timeout: 10000 }),
    'server stopped mid-job: the page says it cannot reach the server');
    srv = startServer(ORFEASD, path.join(OUT, 'data'), args, port);
    await srv.ready;
    await checkWithin(page.waitForFunction(() => document.getElementById('live').textContent === 'live',
      { timeout: 15000 }), `reconnection: the page showed "${down}", then "live" again with the restarted orfeasd`);
    fs.unlinkSync(pause); // the restarted orfeasd runs the job again
    await checkWithin(page.waitForSelector(`a[href*="/api/download/${heldId}/"]:not([hidden])`, { timeout: 30000 }),
      'the job running at the restart finished after it, and the page shows its download link');
    await checkWithin(page.waitForFunction(() => Number(document.getElementById('canvas').dataset.triangles) > 0,
      { timeout: 30000 }), 'and its model in the viewer');
    check(await page.$eval('#error', (e) => e.hidden), 'the "cannot reach" message went once the server answered');
    const raw = (await page.evaluate(() => window.__stages)).filter((x) => /^[a-z_]+$/.test(x));
    check(raw.length === 0, `the stage label never showed a raw stage name (${raw.join(', ') || 'none'})`);
    // The second tab is in the background (hidden): no animation frames,
    // so a wait that polls on them (waitForSelector's visible, a
    // waitForFunction's default) would see only the page as it was when the
    // wait began. Polled on a timer instead.
    await checkWithin(tab2.waitForFunction((id) => {
      const a = document.querySelector(`a[href*="/api/download/${id}/"]`);
      return a && !a.hidden && getComputedStyle(document.getElementById('result')).display !== 'none';
    }, { polling: 200, timeout: 30000 }, heldId), 'the second tab shows that job finish too (its download link)');

    // A job waiting in the queue (docs/studio.md, "one job at a time"): the
    // one worker is held by this tab's job A and its job B waits behind.
    // Choosing another image while A runs lets A go on in the background
    // (its line in the list) and Generate starts B at once. The second tab,
    // reloaded, follows B, which it did not start: it says where B waits
    // and how to start another job, and does so with an image of its own
    // (C), B keeping its place. All three end, and both tabs' lists say so.
    fs.writeFileSync(pause, '');
    const newest = (p) => p.evaluate(async () => (await import('/static/jobs.js')).load()[0].job_id);
    const generateIn = async (p, image, what) => {
      const before = await newest(p);
      await (await p.$('input[type=file]')).uploadFile(image);
      await checkWithin(p.waitForFunction(() => !document.getElementById('generate').disabled, { timeout: 5000 }),
        `${what}: Generate is available for the new image`);
      await p.click('#generate');
      return waitFor(async () => { const id = await newest(p); return id !== before && id; }, `${what}: its job`, 10000);
    };
    const queued = (p, ahead, what) => checkWithin(p.waitForFunction((ahead) => {
      const note = document.getElementById('queue-note');
      return !document.getElementById('progress').hidden && !note.hidden && /another image/.test(note.textContent) &&
        document.getElementById('stage').textContent === `Waiting for a worker: ${ahead}`;
    }, { timeout: 10000 }, ahead), `${what}: "Waiting for a worker: ${ahead}", and how to start another job meanwhile`);
    const jobA = await generateIn(page, q1, 'job A');
    await waitFor(async () => JSON.parse((await get(port, `/api/job-status/${jobA}`)).body).status === 'processing',
      'job A to be running (held)', 10000);
    // B runs a while (4096 px at quality 1: about 1.3 s on an idle 2-core
    // machine, longer on a loaded one; a model of 136 KB), so that the place
    // of the job queued behind it (C, below) can be seen to move as B
    // leaves the queue.
    await page.$eval('#quality', (q) => { q.value = '1'; q.dispatchEvent(new Event('input')); });
    const jobB = await generateIn(page, q2, 'another image while job A runs');
    await queued(page, 'next in line', 'job B, started behind A');
    await tab2.bringToFront();
    await tab2.reload({ waitUntil: 'load' });
    await queued(tab2, 'next in line', 'a reloaded tab following job B');
    check(await tab2.$eval('#generate', (b) => b.disabled), 'the reloaded tab: Generate waits for an image of its own');
    const jobC = await generateIn(tab2, q3, 'the tab following job B, given an image');
    await queued(tab2, '1 job ahead', 'its job C');
    // Its place moves when B leaves the queue: B's events (followed in
    // this tab's background) say so, and the tab asks job-status again
    // rather than waiting for 8 s of C's silence. Its stage label's texts
    // and the states its job-status answers for C said are recorded from
    // here. Whether "next in line" shows depends on B still running when
    // that answer comes (B is slow, but a loaded machine may stretch the
    // page's request past B's end): the check is that the tab asked
    // again, and showed "next in line" when an answer said so.
    await watchStages(tab2);
    const askedC = [];
    const onStatus = (r) => {
      if (r.url().includes(`/api/job-status/${jobC}`))
        r.json().then((b) => askedC.push(b.status + (b.status === 'queued' ? `:${b.position}` : '')),
          () => askedC.push('unread'));
    };
    tab2.on('response', onStatus);
    fs.unlinkSync(pause);
    await checkWithin(tab2.waitForSelector(`a[href*="/api/download/${jobC}/"]`, { visible: true, timeout: 60000 }),
      'job C finished: that tab shows its download link');
    tab2.off('response', onStatus);
    const placesC = await tab2.evaluate(() => window.__stages.filter((t) => t.startsWith('Waiting for a worker')));
    const toldNext = askedC.includes('queued:0');
    check(askedC.length > 0 && (placesC.includes('Waiting for a worker: next in line') || !toldNext),
      `job C's place asked again as the jobs ahead left the queue (answers: ${askedC.join(', ') || 'none'}), ` +
      `"next in line" shown when told (${placesC.join(' > ') || 'no queued label'})`);
    await page.bringToFront();
    await checkWithin(page.waitForSelector(`a[href*="/api/download/${jobB}/"]`, { visible: true, timeout: 60000 }),
      'job B finished: the first tab shows its download link');
    const ended = (p) => p.evaluate((ids) => ids.map((id) => {
      const n = document.querySelector(`#jobs .name[title="${id}"]`);
      return n ? n.parentElement.querySelector('.meta').textContent.split(' · ')[1] : 'not listed';
    }), [jobA, jobB, jobC]);
    let lists = [];
    const allEnded = await waitFor(async () => {
      lists = [...await ended(page), ...await ended(tab2)];
      return lists.every((x) => x === 'completed');
    }, 'every job listed completed', 10000).then(() => true, () => false);
    check(allEnded, `jobs A, B and C are listed completed in both tabs (${lists.join(', ')})`);
    await tab2.close();
    // The original-style page below subscribes after its generate-3d, as the
    // original client did, and a small job can end before that: held again.
    fs.writeFileSync(pause, '');

    check(problems.length === 0, `no script error and no CSP violation (${problems.join('; ') || 'none'})`);
    check(offOrigin.length === 0, `every request stayed on orfeasd (${offOrigin.join(', ') || 'all local'})`);

    // ---- a page written for the original API, from another origin ----
    const other = page; // the same tab: a new one costs a renderer start
    const api = `?api=http://127.0.0.1:${port}`;
    await other.goto(`http://127.0.0.1:${pagePort}/${api}`, { waitUntil: 'load' });
    await (await other.$('#image')).uploadFile(star);
    // Its job is held running until the page has heard where it stands
    // (the subscribe's answer), then goes on: "processing" is seen on a
    // loaded machine too (it ended before the subscribe once, under load).
    const flow = other.evaluate(() => window.runFlow());
    await waitFor(() => other.evaluate(() => (window.flowSeen ? window.flowSeen.updates.length : 0)),
      'the original-style page\'s first job_update');
    fs.unlinkSync(pause);
    const seen = await flow;
    const steps = seen.updates.map((u) => u.status);
    check(seen.device === 'cpu' && seen.transport === 'websocket',
      'original-style page (allowed origin): models-info has a device; Socket.IO over websocket');
    check(steps.includes('processing') && steps[steps.length - 1] === 'completed',
      `original-style page: job_update ${steps.length} times, processing to completed`);
    check(seen.base64Bytes === seen.originalSize && seen.downloadBytes === seen.originalSize &&
      seen.previewType === 'image/png',
    `original-style page: download-base64 and download agree (${seen.originalSize} bytes), preview is image/png`);
    const stl = path.join(OUT, 'model.stl');
    fs.writeFileSync(stl, (await get(port, seen.downloadUrl)).body);
    const adm = execFileSync('admesh', [stl], { encoding: 'utf8' });
    const facets = /Number of facets\s*:\s*(\d+)/.exec(adm);
    const disc = /Total disconnected facets\s*:\s*(\d+)/.exec(adm);
    check(facets && Number(facets[1]) > 0 && disc && disc[1] === '0',
      `original-style page's STL: admesh reads ${facets && facets[1]} facets, none disconnected`);
    // The same page from an origin not in --cors-origins (localhost is not
    // 127.0.0.1 to a browser): the browser keeps the API from it.
    await other.goto(`http://localhost:${pagePort}/${api}`, { waitUntil: 'load' });
    await (await other.$('#image')).uploadFile(star);
    const refused = await other.evaluate(() => window.runFlow().then(() => 'ran', (e) => String(e)));
    check(refused !== 'ran', `original-style page from a refused origin: the browser refuses it (${refused})`);
  } finally {
    if (browser) await browser.close().catch(() => browser.process() && browser.process().kill('SIGKILL'));
    pages.close();
    const rc = await stopServer(srv);
    if (lib.failures()) console.log(srv.log.slice(-20).map((l) => `  | ${l}`).join('\n'));
    check(rc === 0, `orfeasd exited 0 after SIGTERM (${rc})`);
  }
  console.log(`browser.studio: all checks passed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
