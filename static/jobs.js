// jobs.js: the jobs started from this browser, kept in localStorage. What
// is read back is checked field by field (it may have been edited or come
// from an older page), and the list is bounded.

import { isJobId, safeDownloadUrl } from './api.js';

export const KEY = 'orfeas.studio.jobs';
const MAX = 30;
const FORMATS = new Set(['stl', 'obj', 'ply', 'glb']);
const STATES = new Set(['uploaded', 'queued', 'processing', 'completed', 'failed']);

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
    error: typeof j.error === 'string' ? j.error.slice(0, 300) : '',
  };
}

export function load() {
  try {
    const raw = JSON.parse(localStorage.getItem(KEY) || '[]');
    return Array.isArray(raw) ? raw.map(clean).filter(Boolean).slice(0, MAX) : [];
  } catch {
    return [];
  }
}

function save(list) {
  try {
    localStorage.setItem(KEY, JSON.stringify(list.slice(0, MAX)));
  } catch {
    /* storage full or disabled: the list simply is not kept */
  }
}

// Adds or updates a job (newest first); returns the list.
export function put(job) {
  const list = load();
  const i = list.findIndex((j) => j.job_id === job.job_id);
  const merged = clean({ ...(i >= 0 ? list[i] : {}), ...job });
  if (!merged) return list;
  if (i >= 0) list[i] = merged; else list.unshift(merged);
  save(list);
  return list;
}

export function clear() {
  save([]);
  return [];
}
