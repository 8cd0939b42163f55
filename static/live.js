// live.js: live job progress over orfeasd's WebSocket (/ws, docs/api.md),
// reconnecting with backoff. After a reconnect every job still followed is
// subscribed again, and the server answers each subscription with where
// the job stands, so nothing that happened meanwhile is lost.
//
// In cluster mode the server may answer a subscription with an error
// naming the job whose code is "resubscribe" (its node could not read
// where the job stands: Redis slow or failing, or too many reads waiting;
// docs/api.md; isResubscribe below). Nothing else would bring that job's state, so the
// job is subscribed again at once, then after 0.5, 1, 2, 4 s, at most
// AGAIN_MAX times in a row; any news of the job (progress, its end), or a
// new connection, starts the count again. Past that the page's own polling of job-status is what
// is left (studio.js).
//
// Events dispatched: 'state' (detail: 'connecting' | 'open' | 'closed'),
// 'job' (detail: {event, data} for a followed job) and 'resubscribe'
// (detail: {job_id, attempt, delay_ms}, when a subscribe again is sent,
// or {job_id, attempt, gave_up: true} once AGAIN_MAX is spent).

const AGAIN_MAX = 5;
const AGAIN_BASE_MS = 500;

// An error event's data that says to subscribe again: its code. The message
// is read only when there is no code at all, from a node older than the
// codes: in a cluster upgraded one node at a time the page can come from a
// new node and its WebSocket land on an old one, whose message ends
// "subscribe again later". Drop that fallback once no such node runs. A
// coded error is never taken by its text (messages are for people).
export function isResubscribe(data) {
  if (!data || typeof data !== 'object') return false;
  if ('code' in data) return data.code === 'resubscribe';
  return /subscribe again/.test(String(data.message));
}

export class Live extends EventTarget {
  constructor(path = '/ws') {
    super();
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.url = `${proto}//${location.host}${path}`;
    this.jobs = new Set();
    this.ws = null;
    this.delay = 500;
    this.timer = 0;
    this.state = 'closed';
    this.again = new Map(); // job id -> {tries, timer}: subscribes again
  }

  start() {
    this.connect();
    // A laptop waking up or a phone coming back online: try at once.
    window.addEventListener('online', () => this.reconnectNow());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.reconnectNow();
    });
  }

  setState(s) {
    this.state = s;
    this.dispatchEvent(new CustomEvent('state', { detail: s }));
  }

  connect() {
    clearTimeout(this.timer);
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.delay = 500;
      // Every followed job is subscribed below, on a new connection: the
      // subscribes again pending are dropped, and their count starts afresh.
      for (const a of this.again.values()) clearTimeout(a.timer);
      this.again.clear();
      this.setState('open');
      for (const id of this.jobs) this.send({ event: 'subscribe', data: { job_id: id } });
    };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (!msg || typeof msg.event !== 'string' || !msg.data) return;
      const id = msg.data.job_id;
      if (typeof id === 'string' && this.jobs.has(id)) {
        if (msg.event === 'error' && isResubscribe(msg.data)) {
          this.subscribeAgain(id);
        } else if (msg.event !== 'subscribed' && msg.event !== 'unsubscribed' && msg.event !== 'error') {
          this.forgetAgain(id); // the job's state came: a later refusal starts afresh
        }
        this.dispatchEvent(new CustomEvent('job', { detail: msg }));
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setState('closed');
      this.retry();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  retry() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 8000);
  }

  // The server could not send where the job stands: ask again, at once the
  // first time, then with a doubling delay, AGAIN_MAX times at most until
  // the job is heard from (see the top).
  subscribeAgain(jobId) {
    const a = this.again.get(jobId) || { tries: 0, timer: 0 };
    this.again.set(jobId, a);
    clearTimeout(a.timer);
    if (a.tries >= AGAIN_MAX) {
      this.dispatchEvent(new CustomEvent('resubscribe', { detail: { job_id: jobId, attempt: a.tries, gave_up: true } }));
      return;
    }
    const delay = a.tries === 0 ? 0 : AGAIN_BASE_MS * 2 ** (a.tries - 1);
    a.tries++;
    const attempt = a.tries;
    a.timer = setTimeout(() => {
      if (!this.jobs.has(jobId) || !this.open) return; // a reconnect subscribes anyway
      this.dispatchEvent(new CustomEvent('resubscribe', { detail: { job_id: jobId, attempt, delay_ms: delay } }));
      this.send({ event: 'subscribe', data: { job_id: jobId } });
    }, delay);
  }

  forgetAgain(jobId) {
    const a = this.again.get(jobId);
    if (a) {
      clearTimeout(a.timer);
      this.again.delete(jobId);
    }
  }

  reconnectNow() {
    if (this.ws === null) {
      this.delay = 500;
      this.connect();
    }
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  // Follows a job. The promise settles once the server has answered the
  // subscription ("subscribed": every event it publishes for the job after
  // that reaches us; "error" with the job's id: refused, over
  // --ws-max-subscriptions), or after `ms` without an answer, or at once
  // while the socket is down (a reconnect subscribes again and the server
  // answers with where the job stands). It resolves true only on
  // "subscribed".
  // Sending the subscribe is not enough: the server reads the socket on
  // another thread than the HTTP request that starts the job, and a job of a
  // few milliseconds could end before it reads the subscribe.
  follow(jobId, ms = 2000) {
    this.jobs.add(jobId);
    if (!this.open) return Promise.resolve(false);
    return new Promise((resolve) => {
      let timer = 0;
      const onJob = (e) => {
        if (e.detail.data.job_id !== jobId) return;
        if (e.detail.event === 'subscribed') settle(true);
        else if (e.detail.event === 'error') settle(false);
      };
      const settle = (ok) => {
        clearTimeout(timer);
        this.removeEventListener('job', onJob);
        resolve(ok);
      };
      this.addEventListener('job', onJob);
      timer = setTimeout(() => settle(false), ms);
      this.send({ event: 'subscribe', data: { job_id: jobId } });
    });
  }

  unfollow(jobId) {
    this.forgetAgain(jobId);
    if (this.jobs.delete(jobId)) this.send({ event: 'unsubscribe', data: { job_id: jobId } });
  }

  get open() { return this.state === 'open'; }
}
