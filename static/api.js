// api.js: the ORFEAS HTTP API as the Studio uses it (docs/api.md), and
// every failure turned into a sentence a person can act on.

export class ApiError extends Error {
  constructor(message, status, retryAfter, body) {
    super(message);
    this.status = status;           // 0: the server could not be reached
    this.retryAfter = retryAfter;   // seconds, or 0
    this.body = body;
  }
}

function retryAfterOf(res, body) {
  const h = Number.parseInt(res.headers.get('Retry-After') || '', 10);
  if (Number.isFinite(h) && h > 0) return h;
  const b = body && Number.parseInt(body.retry_after, 10);
  return Number.isFinite(b) && b > 0 ? b : 0;
}

// The upload check's messages start as the original API's did ("Security
// validation failed: image is 16x16 px; ..."): to a person whose picture is
// too small that reads as an alarm, so the page says what it is.
function plain(s) {
  const m = /^Security validation failed:\s*(.+)$/s.exec(s);
  return m ? `The image cannot be used: ${m[1]}` : s;
}

// The server's own words first; then what the status means for the user.
// A detail that only repeats the error (a 400 names its one field's
// message twice) is said once.
export function describe(status, body, retryAfter) {
  const said = body && typeof body.error === 'string' ? plain(body.error) : '';
  const details = body && Array.isArray(body.details)
    ? body.details.map((d) => d && typeof d.message === 'string' ? plain(d.message) : '')
        .filter((m) => m && m !== said).join('; ')
    : '';
  const wait = retryAfter ? ` Try again in ${retryAfter} s.` : ' Try again later.';
  switch (status) {
    case 413:
      return `${said || 'The file is too large'}. Choose a smaller image.`;
    case 415:
      return said || 'This image type is not supported.';
    case 429:
      return (said ? `${said}.` : 'Too many requests.') + wait;
    case 503:
      return (said ? `${said}.` : 'The service is unavailable.') + wait;
    case 404:
      return said || 'Not found.';
    default:
      if (details) return `${said || 'The request was refused'}: ${details}.`;
      if (said) return /[.!?]$/.test(said) ? said : `${said}.`;
      return `The server answered HTTP ${status}.`;
  }
}

async function request(method, path, init = {}) {
  let res;
  try {
    res = await fetch(path, { method, cache: 'no-store', ...init });
  } catch (e) {
    throw new ApiError('Cannot reach the ORFEAS server. Check that orfeasd is running, then try again.', 0, 0);
  }
  let body = null;
  if ((res.headers.get('Content-Type') || '').includes('application/json')) {
    try { body = await res.json(); } catch { body = null; }
  }
  if (!res.ok) {
    const ra = retryAfterOf(res, body);
    throw new ApiError(describe(res.status, body, ra), res.status, ra, body);
  }
  return body;
}

export function upload(file) {
  const form = new FormData();
  form.append('image', file, file.name || 'image');
  return request('POST', '/api/upload-image', { body: form });
}

export function generate(params) {
  return request('POST', '/api/generate-3d', {
    body: JSON.stringify(params),
    headers: { 'Content-Type': 'application/json' },
  });
}

export function jobStatus(jobId) {
  return request('GET', `/api/job-status/${encodeURIComponent(jobId)}`);
}

// What this server can do (formats, limits). A refusal (a 429 at page
// load, say) is an ApiError like any other: the page says so and asks
// again (studio.js, applyLimits).
export function modelsInfo() {
  return request('GET', '/api/models-info');
}

// The model's bytes for the viewer. A 429 or 503 (--rate-limit counts the
// download too: it comes right after the job's own requests) is waited out,
// its Retry-After up to 10 s, twice at most, rather than left as an error.
export async function fetchModel(url) {
  for (let tries = 0; ; tries++) {
    let res;
    try {
      res = await fetch(url, { cache: 'no-store' });
    } catch {
      throw new ApiError('Cannot download the model: the server is unreachable.', 0, 0);
    }
    if (res.ok) return res.arrayBuffer();
    let body = null;
    if ((res.headers.get('Content-Type') || '').includes('application/json')) {
      try { body = await res.json(); } catch { body = null; }
    }
    const ra = retryAfterOf(res, body);
    if ((res.status === 429 || res.status === 503) && tries < 2) {
      await new Promise((r) => setTimeout(r, Math.min(ra || 1, 10) * 1000));
      continue;
    }
    throw new ApiError(`The preview cannot load the model: ${describe(res.status, body, ra)}`, res.status, ra, body);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isJobId(s) { return typeof s === 'string' && UUID.test(s); }

// Only the API's own download paths become links (never javascript: or
// another origin, whatever a response says).
export function safeDownloadUrl(u) {
  return typeof u === 'string' && /^\/api\/download\/[0-9a-fA-F-]{36}\/[A-Za-z0-9._-]{1,128}$/.test(u)
    ? u : null;
}
