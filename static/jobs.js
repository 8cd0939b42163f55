// jobs.js: the jobs started from this browser, kept in localStorage. What
// is read back is checked field by field (it may have been edited or come
// from an older page), and the list is bounded.
//
// One key per job (PREFIX + its id), not one list: two tabs of the page
// write at once (each follows jobs, docs/studio.md), and a tab's copy of
// localStorage may lag another tab's writes by a moment; a whole list
// written from such a copy put back the other tab's lines as they were (a
// job listed queued after it had ended). A write now touches only its own
// job, and a job's end is never undone by an older state.

import { isJobId, safeDownloadUrl } from './api.js';

export const PREFIX = 'orfeas.studio.job.';
const OLD_KEY = 'orfeas.studio.jobs'; // the one list pages before 2026-12 kept
const MAX = 30;
const FORMATS = new Set(['stl', 'obj', 'ply', 'glb']);
const STATES = new Set(['uploaded', 'queued', 'processing', 'completed', 'failed']);
const ENDED = new Set(['completed', 'failed']);

function clean(j) {
  if (!j || !isJobId(j.job_id)) return null;
  return {
    job_id: j.job_id,
    name: typeof j.name === 'string' ? j.name.slice(0, 120) : 'image',
    format: FORMATS.has(j.format) ? j.format : 'stl',
    status: STATES.has(j.status) ? j.status : 'uploaded',
    created: Number.isFinite(j.created) ? j.created : Date.now(),
    download_url: safeDownloadUrl(j.download_url),
    grade: typeof j.grade === 'string' ? j.grade.slice(0, 3) : '',
    // The quality report's flag: false is said in the list; null: not
    // known (a line kept by a page before 2026-12-03, or not ended).
    printable: typeof j.printable === 'boolean' ? j.printable : null,
    error: typeof j.error === 'string' ? j.error.slice(0, 300) : '',
  };
}

function read(key) {
  try {
    return clean(JSON.parse(localStorage.getItem(key) || 'null'));
  } catch {
    return null;
  }
}

function write(job) {
  try {
    localStorage.setItem(PREFIX + job.job_id, JSON.stringify(job));
  } catch {
    /* storage full or disabled: the job simply is not kept */
  }
}

function keys() {
  const out = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k && k.startsWith(PREFIX)) out.push(k);
    }
  } catch {
    /* storage disabled */
  }
  return out;
}

// An older page's single list becomes one key per job (a job already kept
// under its own key wins), once.
function migrate() {
  let raw;
  try {
    raw = localStorage.getItem(OLD_KEY);
  } catch {
    return;
  }
  if (raw === null) return;
  try {
    const list = JSON.parse(raw);
    if (Array.isArray(list)) {
      for (const j of list.map(clean).filter(Boolean).slice(0, MAX)) {
        if (!read(PREFIX + j.job_id)) write(j);
      }
    }
  } catch {
    /* not JSON: nothing to keep */
  }
  try { localStorage.removeItem(OLD_KEY); } catch { /* disabled */ }
}

// Newest first, MAX at most (older ones are removed).
export function load() {
  migrate();
  const list = [];
  for (const k of keys()) {
    const j = read(k);
    if (j && k === PREFIX + j.job_id) list.push(j);
    else try { localStorage.removeItem(k); } catch { /* disabled */ }
  }
  list.sort((a, b) => b.created - a.created);
  for (const j of list.slice(MAX)) {
    try { localStorage.removeItem(PREFIX + j.job_id); } catch { /* disabled */ }
  }
  return list.slice(0, MAX);
}

// Adds or updates a job; returns the list. A job that has ended keeps its
// end: a state older than that (from a tab that had not heard yet) does
// not replace it.
export function put(job) {
  const old = job && isJobId(job.job_id) ? read(PREFIX + job.job_id) : null;
  const update = old && ENDED.has(old.status) && !ENDED.has(job.status) ? { ...job, status: old.status } : job;
  const merged = clean({ ...(old || {}), ...update });
  if (merged) write(merged);
  return load();
}

// Whether a storage event's key is one of this list's.
export function isKey(key) {
  return key === null || key.startsWith(PREFIX) || key === OLD_KEY;
}

export function clear() {
  for (const k of keys()) {
    try { localStorage.removeItem(k); } catch { /* disabled */ }
  }
  try { localStorage.removeItem(OLD_KEY); } catch { /* disabled */ }
  return [];
}
