// live.js: live job progress over orfeasd's WebSocket (/ws, docs/api.md),
// reconnecting with backoff. After a reconnect every job still followed is
// subscribed again, and the server answers each subscription with where
// the job stands, so nothing that happened meanwhile is lost.
//
// Events dispatched: 'state' (detail: 'connecting' | 'open' | 'closed')
// and 'job' (detail: {event, data} for a followed job).

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
      this.setState('open');
      for (const id of this.jobs) this.send({ event: 'subscribe', data: { job_id: id } });
    };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (!msg || typeof msg.event !== 'string' || !msg.data) return;
      if (typeof msg.data.job_id === 'string' && this.jobs.has(msg.data.job_id)) {
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
    if (this.jobs.delete(jobId)) this.send({ event: 'unsubscribe', data: { job_id: jobId } });
  }

  get open() { return this.state === 'open'; }
}
