// client.js: the original ORFEAS pages' flow against an API on another
// origin (?api=http://host:port). window.runFlow() resolves to what the
// page saw; every step throws with a sentence when the API disappoints.
'use strict';
(function () {
  const API = new URLSearchParams(location.search).get('api');
  const extra = { 'ngrok-skip-browser-warning': 'true' };
  const log = (m) => { document.getElementById('log').textContent += m + '\n'; };

  async function modelsInfo() {
    const r = await fetch(API + '/api/models-info', {
      headers: { 'Cache-Control': 'no-cache', Pragma: 'no-cache', ...extra },
    });
    const type = r.headers.get('Content-Type') || '';
    const data = await r.json();
    if (!type.includes('application/json') || !data.device) throw new Error('models-info without a device');
    return data;
  }

  function connect() {
    return new Promise((resolve, reject) => {
      const socket = io(API, { transports: ['websocket', 'polling'], reconnection: true, timeout: 10000 });
      socket.on('connect', () => resolve(socket));
      socket.on('connect_error', (e) => reject(new Error('Socket.IO: ' + e.message)));
    });
  }

  window.runFlow = async function () {
    const seen = { updates: [], transport: '' };
    window.flowSeen = seen; // the test watches its job_update events arrive
    seen.device = (await modelsInfo()).device;
    const socket = await connect();
    seen.transport = socket.io.engine.transport.name;
    const form = new FormData();
    form.append('image', document.getElementById('image').files[0]);
    const up = await (await fetch(API + '/api/upload-image', { method: 'POST', body: form, headers: extra })).json();
    if (!up.job_id) throw new Error('upload: ' + (up.error || 'no job_id'));
    seen.preview = up.preview_url;
    const done = new Promise((resolve) => {
      socket.on('job_update', (data) => {
        if (data.job_id !== up.job_id) return;
        seen.updates.push({ status: data.status, progress: data.progress, step: data.step });
        if (data.status === 'completed' || data.status === 'failed') resolve(data);
      });
    });
    const g = await fetch(API + '/api/generate-3d', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...extra },
      body: JSON.stringify({ job_id: up.job_id, format: 'stl', dimensions: { width: 100, height: 100, depth: 20 }, quality: 7 }),
    });
    if (!g.ok) throw new Error('generate-3d: HTTP ' + g.status);
    socket.emit('subscribe_job', { job_id: up.job_id });
    const end = await done;
    if (end.status !== 'completed') throw new Error('job failed: ' + end.error);
    const b64 = await (await fetch(`${API}/api/download-base64/${up.job_id}/${end.output_file}`, { headers: extra })).json();
    seen.base64Bytes = atob(b64.data).length;
    seen.originalSize = b64.original_size;
    seen.downloadUrl = end.download_url;
    const model = await fetch(API + end.download_url);
    seen.downloadBytes = (await model.arrayBuffer()).byteLength;
    const preview = await fetch(API + up.preview_url);
    seen.previewType = preview.headers.get('Content-Type');
    socket.close();
    log(JSON.stringify(seen));
    return seen;
  };
})();
