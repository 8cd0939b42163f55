// studio.js: the ORFEAS Studio page (docs/studio.md). Choose an image,
// set the format, quality, size and mode, Generate, watch the stages go by
// live, turn the model around and download it. Jobs started here are
// listed (this browser only).
//
// Rule for everything that comes from the API or from storage: it reaches
// the page through textContent or a checked attribute, never as HTML.

import * as api from './api.js';
import * as jobs from './jobs.js';
import { Live } from './live.js';

const $ = (id) => document.getElementById(id);

const STAGES = {
  queued: 'Waiting for a worker',
  starting: 'Starting',
  image_loading: 'Loading the image',
  image_preprocessing: 'Finding the shape',
  shape_generation: 'Building the mesh',
  texture_synthesis: 'Colouring',
  mesh_optimization: 'Optimising the mesh',
  mesh_export: 'Writing the file',
  quality_validation: 'Checking the quality',
  completed: 'Done',
  failed: 'Failed',
};

const ui = {
  file: $('file'), drop: $('drop'), preview: $('preview'), dropText: $('drop-text'),
  fileInfo: $('file-info'), form: $('settings'), generate: $('generate'),
  format: $('format'), mode: $('mode'), quality: $('quality'), qualityOut: $('quality-out'),
  width: $('width'), height: $('height'), depth: $('depth'), error: $('error'),
  progress: $('progress'), stage: $('stage'), percent: $('percent'), bar: $('bar'), eta: $('eta'),
  canvas: $('canvas'), hint: $('viewer-hint'), result: $('result'), grade: $('grade'),
  printable: $('printable'), tris: $('tris'), download: $('download'), resultName: $('result-name'),
  jobs: $('jobs'), clearJobs: $('clear-jobs'), live: $('live'), accepted: $('accepted'),
  queueNote: $('queue-note'), limitsNote: $('limits-note'),
};

const HINT_EMPTY = 'Your model appears here. Drag to orbit, scroll or pinch to zoom; with the preview focused, + and - zoom.';
const HINT_SHOWN = 'Drag to orbit, scroll or pinch to zoom; + and - (or Page Up and Page Down) zoom.';

// Jobs followed in the background (for their line in "Your jobs" only) at
// most: one more lets the oldest go (its line is brought up to date at the
// next visit). Below the server's --ws-max-subscriptions (32), with the
// job the model panel follows.
const BACKGROUND_MAX = 8;
// /api/models-info asked at most this many times when the page opens.
const LIMITS_TRIES = 4;
// The followed job's place in the queue asked again at most this often
// (job-status; the rate of the page's polling while the socket is silent).
const PLACE_MIN_MS = 1500;

// The page follows one job at a time in the model panel (state.job): the
// one Generate started, or, when the page opens, the newest one still
// queued or running in the list. Generate is for the chosen image and is
// refused only while its own requests are on their way or while that same
// image's job runs: choosing another image lets the job followed go on in
// the background (its line in the list still follows it) and the panel
// shows nothing of it any more (docs/studio.md).
const state = {
  file: null,
  previewUrl: null,
  job: null,        // {job_id, format, name, file}: followed in the model panel; file: the File it was made from (null: found in the list when the page opened)
  sending: false,   // Generate's upload and generate-3d on their way
  background: new Set(), // job ids followed for their list line only (BACKGROUND_MAX)
  position: -1,     // the followed job's place in the queue (0: next), while queued and known
  stage: null,      // the last setStage's arguments
  shown: 0,         // counts what the model panel was asked to show (a preview that lost the race is dropped)
  pollTimer: 0,
  lastEvent: 0,
  heard: false,     // an event of the current job has arrived
  viewer: null,     // a Promise of the Viewer (three.js loads on first use)
  maxUploadMb: 0,   // from /api/models-info when the server says
  upload: null,     // {file, job_id}: an upload whose generate-3d was refused
  unreachable: false, // the "cannot reach" message is showing for the job
  place: { timer: 0, busy: false, again: false, next: 0 }, // asking the queued job's place again (placeMayHaveMoved)
};

const live = new Live('/ws');

// ---- messages ---------------------------------------------------------------

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function setStage(stage, pct, eta) {
  ui.progress.hidden = false;
  state.stage = [stage, pct, eta];
  // A stage this page does not know yet (a newer server) in words, not as
  // an identifier. A queued job's place, when the server said it
  // (generate-3d's 202, job-status; the WebSocket's events do not).
  const queued = stage === 'queued';
  if (!queued) state.position = -1;
  let text = STAGES[stage] || String(stage || '').replace(/_/g, ' ');
  if (queued && state.position >= 0) {
    const n = state.position;
    text += `: ${n === 0 ? 'next in line' : `${n} job${n === 1 ? '' : 's'} ahead`}`;
  }
  ui.stage.textContent = text;
  // While it waits, the way on: another image's job may start meanwhile.
  ui.queueNote.hidden = !(queued && state.job && !state.sending);
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  ui.percent.textContent = `${Math.round(p)}%`;
  ui.bar.value = p;
  ui.eta.textContent = Number.isFinite(eta) && eta > 0.5 && p < 100 ? `about ${Math.ceil(eta)} s left` : '';
}

// ---- choosing an image --------------------------------------------------------

function choose(file) {
  if (!file) return;
  showError('');
  state.file = file;
  state.upload = null;
  // The model panel is the new image's from now on: nothing of the previous
  // one (its model, Download link, figures, progress) can be taken for it.
  // A job still running goes on in the background: its line in the list.
  leaveJob();
  clearResult();
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  ui.preview.src = state.previewUrl;
  ui.preview.hidden = false;
  ui.dropText.hidden = true;
  ui.fileInfo.textContent = `${file.name} · ${sizeText(file.size)}`;
  // Over the server's limit: said at once, not after an upload the server
  // would refuse (413); Generate says it again (run).
  showError(tooLarge(file));
  updateGenerate();
}

function sizeText(bytes) {
  const kb = bytes / 1024;
  return bytes < 1024 ? `${bytes} bytes` : kb < 1024 ? `${kb.toFixed(0)} KB` : `${(kb / 1024).toFixed(1)} MB`;
}

// The server's --max-upload-mb (/api/models-info) bounds the whole request
// body in MiB: a file over it is refused here, before anything is sent; ''
// when it may go. A file just under it can still be refused (the form's own
// bytes count too): the server's 413 is said as before (api.describe).
// Limits not loaded (yet): the server decides, and limits that arrive
// after the choice say it then (limitArrived).
function tooLarge(file) {
  const mb = state.maxUploadMb;
  if (!(mb > 0) || file.size <= mb * 1024 * 1024) return '';
  return `The image is too large: ${file.name} is ${sizeText(file.size)}, and this server takes images up to ${mb} MB. Choose a smaller image.`;
}

// The server's upload limit arrived after the image was chosen (a slow
// link, models-info asked again: loadLimits): a file over it is said at
// once, as choose would have said it, unless the image has been sent
// meanwhile (Generate's upload on its way, its job or its kept upload:
// their own answers are said) or something else is said since the choice
// (a size Generate found out of range, say). Generate still checks (run).
function limitArrived() {
  const f = state.file;
  if (!f || state.sending || (state.job && state.job.file === f) || (state.upload && state.upload.file === f)) return;
  if (!ui.error.hidden) return;
  showError(tooLarge(f));
}

// Generate: for a chosen image, not while Generate's own requests are on
// their way, nor while that very image's job runs.
function updateGenerate() {
  ui.generate.disabled = !state.file || state.sending || !!(state.job && state.job.file === state.file);
}

ui.file.addEventListener('change', () => choose(ui.file.files && ui.file.files[0]));
for (const ev of ['dragenter', 'dragover']) {
  ui.drop.addEventListener(ev, (e) => { e.preventDefault(); ui.drop.classList.add('over'); });
}
for (const ev of ['dragleave', 'drop']) {
  ui.drop.addEventListener(ev, () => ui.drop.classList.remove('over'));
}
ui.drop.addEventListener('drop', (e) => {
  e.preventDefault();
  const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
  if (f) choose(f);
});
ui.preview.addEventListener('error', () => {
  // The browser cannot show it (a BMP variant, say): the server may still
  // take it, so only the preview goes.
  ui.preview.hidden = true;
  ui.dropText.hidden = false;
});
ui.quality.addEventListener('input', () => { ui.qualityOut.textContent = ui.quality.value; });

// ---- settings -------------------------------------------------------------------

function readSettings() {
  const dims = {};
  for (const k of ['width', 'height', 'depth']) {
    const el = ui[k];
    const v = Number(el.value);
    const lo = Number(el.min), hi = Number(el.max);
    if (!Number.isFinite(v) || v < lo || v > hi) {
      throw new Error(`The ${k} must be a number from ${lo} to ${hi} mm.`);
    }
    dims[k] = v;
  }
  return {
    format: ui.format.value,
    mode: ui.mode.value,
    quality: Number.parseInt(ui.quality.value, 10),
    dimensions: dims,
  };
}

// The server's own limits, when it publishes them (/api/models-info). Not
// answered (a 429 or 503, or the server unreachable): said under the form,
// and asked again after its Retry-After (1 to 30 s; 2, 4, 6 s without
// one), LIMITS_TRIES times in all; the page works with its defaults
// meanwhile, and the server checks every request anyway.
async function loadLimits() {
  for (let attempt = 1; ; attempt++) {
    let info;
    try {
      info = await api.modelsInfo();
    } catch (err) {
      const status = err && Number.isInteger(err.status) ? err.status : -1;
      const why = status === 429 ? 'too many requests'
        : status === 503 ? 'the service is unavailable'
          : status === 0 ? 'the server cannot be reached'
            : status > 0 ? `HTTP ${status}` : String(err && err.message ? err.message : err);
      const again = attempt < LIMITS_TRIES && [0, 429, 503].includes(status);
      const wait = Math.min(Math.max((err && err.retryAfter) || 2 * attempt, 1), 30);
      ui.limitsNote.textContent = `The server's limits could not be loaded (${why}); the page uses its defaults ` +
        (again ? `meanwhile. Trying again in ${wait} s.` : 'and the server still checks every request. Reload the page to try again.');
      if (!again) return;
      await new Promise((r) => setTimeout(r, wait * 1000));
      continue;
    }
    ui.limitsNote.textContent = '';
    applyLimits(info);
    return;
  }
}

function applyLimits(info) {
  const lim = info && info.limits;
  if (!lim) return;
  const dims = lim.dimensions_mm || {};
  for (const k of ['width', 'height', 'depth']) {
    const d = dims[k];
    if (d && Number.isFinite(d.min) && Number.isFinite(d.max)) {
      ui[k].min = String(d.min);
      ui[k].max = String(d.max);
    }
  }
  if (lim.quality && Number.isFinite(lim.quality.max)) ui.quality.max = String(lim.quality.max);
  if (Number.isFinite(lim.max_upload_mb)) {
    state.maxUploadMb = lim.max_upload_mb;
    limitArrived();
  }
  if (Array.isArray(info.input_types) && info.input_types.length) {
    ui.accepted.textContent = info.input_types.filter((t) => typeof t === 'string')
      .map((t) => t.toUpperCase()).join(', ');
  }
}

// ---- generating -------------------------------------------------------------------

ui.form.addEventListener('submit', (e) => {
  e.preventDefault();
  run().catch((err) => showError(err && err.message ? err.message : String(err)));
});

async function run() {
  if (state.sending) return;
  showError('');
  const file = state.file;
  if (!file) throw new Error('Choose an image first.');
  if (state.job && state.job.file === file) return; // its job runs (Generate is disabled)
  const big = tooLarge(file);
  if (big) throw new Error(big);
  const settings = readSettings();
  leaveJob();
  clearResult();
  state.sending = true;
  state.position = -1;
  updateGenerate();
  let id = '';
  try {
    setStage('queued', 0);
    ui.stage.textContent = 'Uploading the image';
    // On a phone the model panel is below the settings: bring it up.
    if (window.matchMedia('(max-width: 720px)').matches) {
      ui.progress.scrollIntoView({ behavior: 'smooth', block: 'start' });
    }
    // A generate refused (429, 503) left its upload on the server, which
    // keeps it a while (docs/api.md): Generate again asks for that job, not
    // for a second upload (one more request against a rate limit, and an
    // orphan in the list). If the server has let it go, upload again.
    id = state.upload && state.upload.file === file ? state.upload.job_id : '';
    let g = null;
    for (;;) {
      const reused = !!id;
      if (!id) {
        const up = await api.upload(file);
        if (!up || !api.isJobId(up.job_id)) throw new Error('The server did not return a job id.');
        // Another image chosen while this one was on its way: the newer
        // choice wins, and this upload's answer is ignored. Not listed (nobody
        // asked to generate it: an "uploaded" line would be a stray the user
        // never wanted), not kept for Generate again, nothing of it shown;
        // the server removes an upload nobody generates by itself
        // (--result-ttl, --max-store-mb; docs/api.md).
        if (state.file !== file) return;
        id = up.job_id;
        state.upload = { file, job_id: id };
        renderJobs(jobs.put({ job_id: id, name: file.name, format: settings.format, status: 'uploaded', created: Date.now() }));
      } else {
        renderJobs(jobs.put({ job_id: id, format: settings.format }));
      }
      state.job = { job_id: id, format: settings.format, name: file.name, file };
      state.heard = false;
      // Subscribed (the server's answer awaited) before generate-3d, so no
      // event of even a job of a few milliseconds is missed.
      await live.follow(id);
      try {
        g = await api.generate({ job_id: id, ...settings });
        break;
      } catch (err) {
        forget(id);
        if ((err.status === 404 || err.status === 410) && reused && state.file === file) {
          state.upload = null;
          id = '';
          continue;
        }
        throw err;
      }
    }
    state.upload = null;
    const done = g && g.status === 'completed';
    // Its line says queued unless its events, heard meanwhile, said more.
    const line = jobs.load().find((x) => x.job_id === id);
    if (done || (line && line.status === 'uploaded')) renderJobs(jobs.put({ job_id: id, status: done ? 'completed' : 'queued' }));
    // Another image chosen meanwhile: the job goes on in the background
    // (leaveJob), and its end comes to its line in the list.
    if (!state.job || state.job.job_id !== id) return;
    state.sending = false;
    if (done) {
      // A cache hit: the model already exists.
      await finished(id, await api.jobStatus(id));
    } else {
      if (g && Number.isInteger(g.position)) state.position = g.position;
      // Events may already have come (a short job, a fast socket): the
      // queued label is only for a job not heard from yet, or still queued.
      if (!state.heard) setStage('queued', 0);
      else if (state.stage && state.stage[0] === 'queued') setStage(...state.stage);
      watch(id);
    }
  } catch (err) {
    // Said only while it is about the image chosen: another chosen
    // meanwhile has nothing to do with it.
    if (id && state.job && state.job.job_id === id) forget(id);
    if (state.file !== file) return;
    if (!state.job) ui.progress.hidden = true;
    throw err;
  } finally {
    state.sending = false;
    updateGenerate();
  }
}

// A job no longer followed at all: its generate was refused, or it ended.
function forget(id) {
  live.unfollow(id);
  state.background.delete(id);
  if (state.job && state.job.job_id === id) {
    state.job = null;
    clearTimeout(state.pollTimer);
  }
}

// The job followed in the panel goes on in the background: the WebSocket
// still follows it, for its line in the list (onBackground).
function leaveJob() {
  const j = state.job;
  if (!j) return;
  state.job = null;
  clearTimeout(state.pollTimer);
  state.unreachable = false;
  ui.queueNote.hidden = true;
  background(j.job_id);
}

function background(id) {
  state.background.add(id);
  if (!live.jobs.has(id)) live.follow(id);
  if (state.background.size > BACKGROUND_MAX) {
    const oldest = state.background.values().next().value;
    state.background.delete(oldest);
    live.unfollow(oldest);
  }
}

// A background job's news: its line in the list. One that leaves the
// queue or ends moves the queue: the followed job's place may have changed.
function onBackground(id, event, data) {
  if (event === 'generation_complete') {
    const q = data.quality_metrics || {};
    forget(id);
    renderJobs(jobs.put({ job_id: id, status: 'completed', download_url: api.safeDownloadUrl(data.download_url), grade: q.grade, printable: q.printable }));
    placeMayHaveMoved();
  } else if (event === 'generation_error') {
    forget(id);
    renderJobs(jobs.put({ job_id: id, status: 'failed', error: typeof data.error === 'string' && data.error ? data.error : 'no reason given' }));
    placeMayHaveMoved();
  } else if (event === 'generation_progress') {
    const status = data.stage === 'queued' ? 'queued' : 'processing';
    const j = jobs.load().find((x) => x.job_id === id);
    if (j && j.status !== status) {
      renderJobs(jobs.put({ job_id: id, status }));
      placeMayHaveMoved();
    }
  } else if (event === 'error' && data.code === 'too_many_subscriptions') {
    forget(id); // not followed: its line is brought up to date at the next visit
  }
}

// Nothing shown in the model panel: no progress, no result, no model.
function clearResult() {
  state.shown++;
  ui.progress.hidden = true;
  ui.result.hidden = true;
  ui.tris.textContent = '';
  ui.hint.textContent = HINT_EMPTY;
  if (state.viewer) state.viewer.then((v) => v.clear(), () => {});
}

// Progress comes over the WebSocket; while it is down (or silent for a
// while) job-status is polled instead, so the page never hangs.
function watch(id) {
  state.lastEvent = Date.now();
  const tick = async () => {
    if (!state.job || state.job.job_id !== id) return;
    if (!live.open || Date.now() - state.lastEvent > 8000) {
      try {
        const s = await api.jobStatus(id);
        reachable();
        if (state.job && state.job.job_id === id) onStatus(id, s);
      } catch (err) {
        if (err.status === 404) {
          fail(id, 'The server no longer knows this job.');
          return;
        }
        if (err.status === 0 && state.job && state.job.job_id === id) {
          // Stopped, restarted, or gone: the job is kept and followed again
          // once the server answers; meanwhile the page says so.
          state.unreachable = true;
          showError('Cannot reach the ORFEAS server; still trying. The job is followed again once it answers (a restarted server runs it again).');
        }
      }
    }
    if (state.job && state.job.job_id === id) state.pollTimer = setTimeout(tick, 1500);
  };
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(tick, 1500);
}

// The followed job's place in the queue (its stage label: "N jobs ahead")
// comes from generate-3d's 202 and job-status; the WebSocket's events do
// not carry it. It is asked again when something says it may have moved:
// a job this page follows in the background leaves the queue or ends
// (onBackground), or the followed job's own queued state arrives again
// (the 'job' listener); the 8 s poll of a silent job (watch) stays as it
// was. Jobs of other browsers move the queue too, unseen: that is the
// poll's.
// One request at a time, PLACE_MIN_MS apart at least, and none before a
// refusal's Retry-After (a 429 under --rate-limit, a 503): what asks
// meanwhile is answered by the next one. An answer that no longer says
// queued changes nothing (the job's events say where it went).
function placeMayHaveMoved() {
  const p = state.place;
  if (!state.job || state.sending || !state.stage || state.stage[0] !== 'queued') return;
  if (p.busy) {
    p.again = true; // the answer on its way may predate the move
    return;
  }
  if (!p.timer) p.timer = setTimeout(askPlace, Math.max(0, p.next - Date.now()));
}

async function askPlace() {
  const p = state.place;
  p.timer = 0;
  const j = state.job;
  if (!j || state.sending || !state.stage || state.stage[0] !== 'queued') return;
  const id = j.job_id;
  p.busy = true;
  p.again = false;
  p.next = Date.now() + PLACE_MIN_MS;
  try {
    const s = await api.jobStatus(id);
    reachable();
    if (state.job && state.job.job_id === id && state.stage && state.stage[0] === 'queued' &&
        s && s.status === 'queued' && Number.isInteger(s.position)) {
      state.position = s.position;
      setStage(...state.stage);
    }
  } catch (err) {
    const wait = err && Number.isInteger(err.retryAfter) && err.retryAfter > 0 ? Math.min(err.retryAfter, 30) : 0;
    if (wait) p.next = Math.max(p.next, Date.now() + wait * 1000);
    // Otherwise the label keeps the place last known; the poll of a silent
    // job says what is wrong (watch).
  } finally {
    p.busy = false;
    if (p.again) {
      p.again = false;
      placeMayHaveMoved();
    }
  }
}

// The server answers again: the "cannot reach" message goes.
function reachable() {
  if (!state.unreachable) return;
  state.unreachable = false;
  showError('');
}

function onStatus(id, s) {
  if (!s) return;
  if (s.status === 'completed') finished(id, s);
  else if (s.status === 'failed') fail(id, s.error);
  else if (s.status === 'queued') {
    state.position = Number.isInteger(s.position) ? s.position : -1;
    setStage('queued', s.progress, s.eta_seconds);
  } else setStage(s.stage, s.progress, s.eta_seconds);
}

live.addEventListener('job', (e) => {
  const { event, data } = e.detail;
  const id = data.job_id;
  if (state.background.has(id)) {
    onBackground(id, event, data);
    return;
  }
  if (!state.job || state.job.job_id !== id) return;
  if (event === 'subscribed' || event === 'error') return; // Live.follow's answers
  state.lastEvent = Date.now();
  const first = !state.heard;
  state.heard = true;
  if (event === 'generation_progress') {
    setStage(data.stage, data.progress, data.eta_seconds);
    // Its queued state again (its subscription answered after a reconnect,
    // or queued again by a server's drain): its place may have moved. The
    // first comes with the place known (generate-3d's 202, job-status).
    if (data.stage === 'queued' && !first) placeMayHaveMoved();
  } else if (event === 'generation_complete') {
    finished(id, data).catch((err) => showError(err.message));
  } else if (event === 'generation_error') {
    fail(id, data.error);
  }
});

function fail(id, reason) {
  if (!state.job || state.job.job_id !== id) return;
  const why = typeof reason === 'string' && reason ? reason : 'no reason given';
  renderJobs(jobs.put({ job_id: id, status: 'failed', error: why }));
  setStage('failed', 0);
  showError(`The job failed: ${why}`);
  forget(id);
  updateGenerate();
}

async function finished(id, s) {
  if (!state.job || state.job.job_id !== id) return;
  const { format, name } = state.job;
  forget(id);
  const url = api.safeDownloadUrl(s.download_url);
  const q = s.quality_metrics || {};
  renderJobs(jobs.put({ job_id: id, status: 'completed', download_url: url, grade: q.grade, printable: q.printable }));
  setStage('completed', 100);
  updateGenerate();
  showResult(q, url, name, format);
  if (url) await preview(url, format);
}

// The result row names the image its model was made from, and so does its
// Download link for a screen reader.
function showResult(q, url, name, format) {
  ui.result.hidden = false;
  ui.resultName.textContent = name || '';
  if (name) ui.download.setAttribute('aria-label', `Download the model of ${name} (${String(format).toUpperCase()})`);
  else ui.download.removeAttribute('aria-label');
  ui.grade.textContent = typeof q.grade === 'string' ? q.grade : '–';
  // Not known (a line kept by an older page, viewed again): not said,
  // rather than said "not printable".
  const printable = q.printable === true;
  ui.printable.hidden = typeof q.printable !== 'boolean';
  ui.printable.textContent = printable ? 'printable' : 'not printable';
  ui.printable.className = `pill ${printable ? 'ok' : 'bad'}`;
  if (url) {
    ui.download.href = url;
    ui.download.hidden = false;
  } else {
    ui.download.hidden = true;
  }
}

// ---- the 3D preview -------------------------------------------------------------

function viewer() {
  if (!state.viewer) {
    state.viewer = import('./viewer.js').then((m) => {
      if (!m.webglAvailable()) throw new Error('The 3D preview needs WebGL, which this browser does not offer; the download still works.');
      return new m.Viewer(ui.canvas);
    });
    state.viewer.catch(() => { state.viewer = null; });
  }
  return state.viewer;
}

async function preview(url, format) {
  const turn = ++state.shown;
  const wanted = () => turn === state.shown; // nothing else asked for since
  ui.hint.textContent = 'Loading the model…';
  try {
    const [v, bytes] = await Promise.all([viewer(), api.fetchModel(url)]);
    if (!wanted()) return;
    const tris = await v.show(bytes, format, wanted);
    if (tris < 0) return;
    ui.tris.textContent = `${tris.toLocaleString()} triangles`;
    ui.hint.textContent = HINT_SHOWN;
  } catch (err) {
    if (wanted()) ui.hint.textContent = err && err.message ? err.message : 'The preview failed; the download still works.';
  }
}

// ---- the jobs list ----------------------------------------------------------------

function renderJobs(list) {
  ui.jobs.replaceChildren();
  for (const j of list) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = j.name;
    name.title = j.job_id;
    li.append(name);
    if (j.status === 'completed' && j.download_url) {
      const show = document.createElement('button');
      show.type = 'button';
      show.className = 'link';
      show.textContent = 'View';
      // Each list line has its View: a screen reader names which one.
      show.setAttribute('aria-label', `View ${j.name} (${j.format.toUpperCase()})`);
      show.addEventListener('click', () => {
        showResult({ grade: j.grade, printable: j.printable }, j.download_url, j.name, j.format);
        preview(j.download_url, j.format);
      });
      li.append(show);
    } else {
      li.append(document.createElement('span'));
    }
    const meta = document.createElement('span');
    meta.className = 'meta';
    const when = new Date(j.created).toLocaleString();
    // Not printable is said in words (the quality report's flag), not by a
    // colour; a printable model's line says nothing more.
    const flag = j.printable === false ? ' · not printable' : '';
    meta.textContent = `${j.format.toUpperCase()} · ${j.status}${j.grade ? ` · ${j.grade}` : ''}${flag}${j.error ? ` · ${j.error}` : ''} · ${when}`;
    li.append(meta);
    ui.jobs.append(li);
  }
}

ui.clearJobs.addEventListener('click', () => renderJobs(jobs.clear()));

// Jobs left unfinished by an earlier visit (a reload, another tab): ask
// where they stand, and follow the newest one still queued or running as
// this page's job (its progress, its end, its model), as if it had been
// started here, unless an image was chosen meanwhile; the others (at most
// BACKGROUND_MAX) are followed for their line in the list.
async function refreshJobs() {
  const open = [];
  for (const j of jobs.load()) {
    if (j.status === 'completed' || j.status === 'failed') continue;
    try {
      const s = await api.jobStatus(j.job_id);
      const q = s.quality_metrics || {};
      jobs.put({ job_id: j.job_id, status: s.status, download_url: s.download_url, grade: q.grade, printable: q.printable, error: s.error });
      if (s.status === 'queued' || s.status === 'processing') open.push({ j, s });
    } catch (err) {
      if (err.status === 404 || err.status === 410) {
        jobs.put({ job_id: j.job_id, status: 'failed', error: 'forgotten by the server' });
      }
    }
  }
  renderJobs(jobs.load());
  let rest = open;
  if (open.length && !state.sending && !state.job && !state.file) {
    const { j, s } = open[0];
    rest = open.slice(1);
    state.job = { job_id: j.job_id, format: j.format, name: j.name, file: null };
    state.heard = false;
    ui.result.hidden = true;
    onStatus(j.job_id, s);
    await live.follow(j.job_id);
    if (state.job && state.job.job_id === j.job_id) watch(j.job_id);
  }
  for (const { j } of rest) if (!state.job || state.job.job_id !== j.job_id) background(j.job_id);
}

// Another tab of this page changed the list: show it here too.
window.addEventListener('storage', (e) => {
  if (jobs.isKey(e.key)) renderJobs(jobs.load());
});

// ---- start --------------------------------------------------------------------------

// Told to subscribe again (cluster mode, live.js): said in the console, so
// whoever looks at a page that waits can see why.
live.addEventListener('resubscribe', (e) => {
  const { job_id: id, attempt, delay_ms: ms, gave_up: gaveUp } = e.detail;
  if (gaveUp) {
    console.info(`live: job ${id}: the server still cannot say where it stands after ${attempt} subscribes again; polling job-status instead`);
  } else {
    console.info(`live: job ${id}: the server could not say where it stands; subscribed again (attempt ${attempt}, after ${ms} ms)`);
  }
});

live.addEventListener('state', (e) => {
  const s = e.detail;
  ui.live.textContent = s === 'open' ? 'live' : s === 'connecting' ? 'connecting…' : 'offline: retrying';
  ui.live.className = `pill ${s === 'open' ? 'ok' : s === 'closed' ? 'bad' : ''}`;
  if (s === 'open') reachable();
});
live.start();
renderJobs(jobs.load());
// Neither may end in an unhandled rejection: what goes wrong is said.
refreshJobs().catch((err) => console.error('studio: the jobs list could not be brought up to date:', err));
loadLimits().catch((err) => console.error('studio: the server\'s limits could not be applied:', err));
