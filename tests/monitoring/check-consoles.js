#!/usr/bin/env node
// The console pages (monitoring/consoles/, served by a live Prometheus) render
// in headless Chromium with data in every panel, and runbook links open their
// section. Debian's /usr/bin/chromium, driven by puppeteer-core (npm, pinned by
// package-lock.json; no browser is downloaded).
//
// usage: check-consoles.js PROMETHEUS_URL OUT_DIR [--params QUERY] [--span S]
//          [--pages orfeas-gpu,orfeas-generation,orfeas-system,index]
//          [--runbook-links FILE] [--timeout S]
//
// For each page: open PROMETHEUS_URL/consoles/PAGE.html?QUERY#pctc{duration:S}
// (QUERY: e.g. "rate=10s&range=300s", the page's variables), wait until
// every graph has answered, then check each panel (<div class="panel"
// data-kind=...>): a graph panel drew at least one finite point (its
// prom_console.js graph has a series with a value), a values panel shows at
// least one value that is not NaN. A panel without data is tried again
// (reload) until --timeout (default 30 s). The index page must link every
// dashboard page and the runbook. A full-page screenshot of each page goes to
// OUT_DIR/PAGE.png and must not be blank (at least 2% of its pixels differ
// from the page's background). --runbook-links: a file with one runbook_url
// per line (as Alertmanager delivered them), waited for up to 300 s after the
// pages (the live run writes it once its drills are done, so one browser
// does both): each must open a page whose element with the URL's #anchor is
// a heading naming the alert.
// Prints "ok: ..." / "FAIL: ..." lines; exit 1 on any failure.
'use strict';
const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

function parseArgs(argv) {
  const a = {params: '', span: 900, timeout: 30, runbookLinks: null,
             pages: ['orfeas-gpu', 'orfeas-generation', 'orfeas-system', 'index']};
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--params') a.params = argv[++i];
    else if (k === '--span') a.span = Number(argv[++i]);
    else if (k === '--timeout') a.timeout = Number(argv[++i]);
    else if (k === '--pages') a.pages = argv[++i].split(',');
    else if (k === '--runbook-links') a.runbookLinks = argv[++i];
    else rest.push(k);
  }
  if (rest.length !== 2) {
    console.error('usage: check-consoles.js PROMETHEUS_URL OUT_DIR [options]');
    process.exit(2);
  }
  [a.prom, a.out] = rest;
  a.prom = a.prom.replace(/\/$/, '');
  return a;
}

// In the page: every graph answered (drawn or an error shown)?
function graphsSettled() {
  if (typeof PromConsole === 'undefined') return true;
  return PromConsole._graph_registry.every(g =>
    g.rickshawGraph !== null || g.graphTd.querySelector('.prom_graph_error') !== null);
}

// In the page: [{panel, title, kind, ok, detail}] for every panel.
function panelStates() {
  const graphs = typeof PromConsole === 'undefined' ? [] : PromConsole._graph_registry;
  return Array.from(document.querySelectorAll('div.panel')).map(div => {
    const r = {panel: div.dataset.panel, title: div.dataset.title, kind: div.dataset.kind};
    if (r.kind === 'graph') {
      const g = graphs.find(x => div.contains(x.params.node));
      const series = g && g.rickshawGraph ? g.rickshawGraph.series : [];
      const points = series.reduce((n, s) =>
        n + s.data.filter(p => p.y !== null && isFinite(p.y)).length, 0);
      const err = div.querySelector('.prom_graph_error');
      r.ok = points > 0;
      r.detail = `${series.length} series, ${points} points` +
                 (err ? `, "${err.textContent}"` : '');
    } else {
      const vals = Array.from(div.querySelectorAll('td.value')).map(td => td.textContent.trim());
      const real = vals.filter(v => v !== 'NaN');
      r.ok = real.length > 0;
      r.detail = `${real.length} of ${vals.length} values` +
                 (div.querySelector('.nodata') ? ', "No data"' : '');
    }
    return r;
  });
}

// Share of the screenshot's pixels that differ from its top-left pixel.
async function inkShare(browser, png) {
  const page = await browser.newPage();
  try {
    await page.setContent('<canvas id="c"></canvas>');
    return await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = 'data:image/png;base64,' + b64;
      await img.decode();
      const c = document.getElementById('c');
      c.width = img.width; c.height = img.height;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let differ = 0;
      for (let i = 0; i < d.length; i += 4)
        if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 30) differ++;
      return differ / (d.length / 4);
    }, png.toString('base64'));
  } finally {
    await page.close();
  }
}

async function checkPage(browser, a, name) {
  const t0 = Date.now();
  const problems = [];
  const page = await browser.newPage();
  await page.setViewport({width: 1280, height: 900});
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  const url = `${a.prom}/consoles/${name}.html?${a.params}` +
              `#pctc${encodeURIComponent(JSON.stringify({duration: a.span, endTime: 0}))}`;
  const deadline = Date.now() + a.timeout * 1000;
  let states = [];
  for (let first = true; ; first = false) {
    const res = first ? await page.goto(url, {waitUntil: 'load'})
                      : await page.reload({waitUntil: 'load'});
    if (!res || res.status() !== 200) {
      problems.push(`${name}: HTTP ${res ? res.status() : 'no answer'} for ${url}`);
      break;
    }
    try {
      await page.waitForFunction(graphsSettled, {timeout: 15000, polling: 100});
    } catch (e) {
      problems.push(`${name}: graphs still loading after 15 s`);
    }
    states = await page.evaluate(panelStates);
    if (states.every(s => s.ok) || Date.now() > deadline) break;
    await new Promise(r => setTimeout(r, 1000));
  }
  for (const s of states) {
    const line = `${name} / ${s.title} (${s.kind}): ${s.detail}`;
    if (s.ok) console.log(`ok: ${line}`);
    else problems.push(`${line}: no data`);
  }
  if (name !== 'index' && states.length === 0) problems.push(`${name}: no panel on the page`);
  if (name === 'index') {
    const links = await page.$$eval('a', as => as.map(x => x.getAttribute('href')));
    for (const want of ['orfeas-gpu.html', 'orfeas-generation.html', 'orfeas-system.html', 'runbook.html'])
      if (!links.some(l => l && l.endsWith('/consoles/' + want))) problems.push(`index: no link to ${want}`);
  }
  for (const e of errors) problems.push(`${name}: script error: ${e}`);
  const png = await page.screenshot({fullPage: true, path: path.join(a.out, name + '.png')});
  const ink = await inkShare(browser, png);
  if (ink < 0.02) problems.push(`${name}: the screenshot is blank (${(ink * 100).toFixed(2)}% ink)`);
  else console.log(`ok: ${name}: screenshot ${path.join(a.out, name + '.png')} (${(ink * 100).toFixed(1)}% ink; ` +
                   `${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  await page.close();
  return problems;
}

// Opens each page the links point at once, then checks every link's #anchor
// in it: the element with that id is a heading naming the alert.
async function checkRunbookLinks(browser, links) {
  const problems = [];
  const byPage = new Map();
  for (const l of links) {
    const u = new URL(l);
    const anchor = decodeURIComponent(u.hash.slice(1));
    u.hash = '';
    if (!byPage.has(u.href)) byPage.set(u.href, []);
    byPage.get(u.href).push([l, anchor]);
  }
  for (const [href, items] of byPage) {
    const page = await browser.newPage();
    try {
      const res = await page.goto(href, {waitUntil: 'domcontentloaded'});
      if (!res || res.status() !== 200) {
        problems.push(`runbook page ${href}: HTTP ${res ? res.status() : 'none'}`);
        continue;
      }
      for (const [link, anchor] of items) {
        const h = await page.evaluate(id => {
          const el = document.getElementById(id);
          return el ? {tag: el.tagName, text: el.textContent.trim()} : null;
        }, anchor);
        if (!h || !/^H[1-6]$/.test(h.tag) || h.text.toLowerCase() !== anchor)
          problems.push(`runbook link ${link}: no heading with id '${anchor}' (${JSON.stringify(h)})`);
        else
          console.log(`ok: runbook link ${link} opens the section "${h.text}"`);
      }
    } finally {
      await page.close();
    }
  }
  return problems;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  fs.mkdirSync(a.out, {recursive: true});
  const browser = await puppeteer.launch({executablePath: '/usr/bin/chromium', headless: true,
                                          args: ['--no-sandbox', '--disable-gpu']});
  let problems = [];
  try {
    for (const name of a.pages) problems = problems.concat(await checkPage(browser, a, name));
    if (a.runbookLinks) {
      for (const until = Date.now() + 300000; !fs.existsSync(a.runbookLinks) && Date.now() < until;)
        await new Promise(r => setTimeout(r, 200));
      const links = fs.existsSync(a.runbookLinks)
          ? fs.readFileSync(a.runbookLinks, 'utf8').split('\n').filter(Boolean) : [];
      if (links.length === 0) problems.push('no runbook link to check');
      problems = problems.concat(await checkRunbookLinks(browser, links));
    }
  } finally {
    await browser.close();
  }
  for (const p of problems) console.log(`FAIL: ${p}`);
  process.exit(problems.length ? 1 : 0);
}

main().catch(e => { console.log(`FAIL: ${e.stack || e}`); process.exit(1); });
