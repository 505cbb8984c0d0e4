/* Ly – the inspector's form (eftersyn). Plain JavaScript, no framework, no build step.
 *
 * Works offline: the drafts and their photos are kept on the device (IndexedDB), keyed by
 * ids the device generates (eftersyn_id, foto_id); "Gem kladde" and "Indsend" write locally
 * first and put the inspection in an outbox. The outbox is sent when the device is online
 * (at start, on the `online` event, on "Synkroniser", and with back-off after a failure):
 * PUT the inspection, then PUT each photo. Every request is idempotent (the same ids and the
 * same body every time), so a replay after a lost response is harmless.
 * The service worker (/eftersyn/sw.js) keeps the page, this script, the styles and the
 * API GETs so that the form also reloads offline.
 *
 * The contract: docs/eftersyn-api.md.
 */
'use strict';

(() => {
  // ---------------------------------------------------------------- constants and helpers

  const ROOT = new URL('../', location.href);           // the service root (…/eftersyn/formular)
  const api = (path) => new URL(path, ROOT).href;
  const TOKEN_KEY = 'ly_token';
  const DB_NAME = 'ly-eftersyn';
  const DB_VERSION = 1;
  const MAX_PHOTO = 10000000;                           // the API's limit (10 MB)
  const PHOTO_TYPES = ['image/jpeg', 'image/png'];
  const RETRY_MS = [5000, 15000, 30000, 60000, 120000, 300000];

  const GRADES = [['0', '0 – OK'], ['1', '1 – let'], ['2', '2 – væsentlig'], ['3', '3 – kritisk'],
                  ['S', 'S – sikkerhed']];
  const SYNC_TEXT = {
    lokal: 'Gemt på enheden',
    venter: 'Venter på netværk',
    sender: 'Sender …',
    sendt: 'Sendt',
    fejl: 'Fejl',
  };
  /** The form's own status of an inspection the server has: only a draft (or a rejected
   *  inspection, to be corrected) can be edited. */
  const LOCAL_STATUS = { kladde: 'kladde', afvist: 'kladde', indsendt: 'indsendt',
                         godkendt: 'godkendt', indberettet: 'godkendt' };
  const STATUS_TEXT = { kladde: 'kladde', indsendt: 'indsendt', godkendt: 'godkendt',
                        afvist: 'afvist' };

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** A DOM element: h('p.meta', {id: 'x', onclick: f}, 'text', child, …). */
  function h(spec, attrs, ...children) {
    const [tag, ...classes] = spec.split('.');
    const node = document.createElement(tag || 'div');
    if (classes.length) node.className = classes.join(' ');
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else if (k in node && typeof v !== 'string') node[k] = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  const answered = (v) => v !== undefined && v !== null && v !== '';
  const fmtTime = (iso) => iso ? new Date(iso).toLocaleString('da-DK', {
    dateStyle: 'short', timeStyle: 'short' }) : '';
  const today = () => {
    const d = new Date();
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${
      String(d.getDate()).padStart(2, '0')}`;
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------------------------------------------------------------- IndexedDB

  let dbPromise = null;

  function db() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB_NAME, DB_VERSION);
        req.onupgradeneeded = () => {
          const d = req.result;
          const drafts = d.createObjectStore('kladder', { keyPath: 'eftersyn_id' });
          drafts.createIndex('objekt_id', 'objekt_id');
          const photos = d.createObjectStore('fotos', { keyPath: 'foto_id' });
          photos.createIndex('eftersyn_id', 'eftersyn_id');
          d.createObjectStore('udbakke', { keyPath: 'eftersyn_id' });
          d.createObjectStore('skabeloner', { keyPath: 'noegle' });
          d.createObjectStore('meta', { keyPath: 'noegle' });
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
        req.onblocked = () => reject(new Error('IndexedDB er blokeret af et andet faneblad'));
      });
    }
    return dbPromise;
  }

  /** Run fn(stores…) in one transaction; resolves with fn's result once it has committed. */
  async function tx(names, mode, fn) {
    const d = await db();
    return new Promise((resolve, reject) => {
      const t = d.transaction(names, mode);
      let result;
      t.oncomplete = () => resolve(result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error || new Error('transaktionen blev afbrudt'));
      const stores = [].concat(names).map((n) => t.objectStore(n));
      Promise.resolve(fn(...stores)).then((r) => { result = r; }, (e) => {
        reject(e);
        try { t.abort(); } catch (_) { /* already finished */ }
      });
    });
  }

  const req2p = (r) => new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });

  const idb = {
    get: (store, key) => tx(store, 'readonly', (s) => req2p(s.get(key))),
    all: (store) => tx(store, 'readonly', (s) => req2p(s.getAll())),
    put: (store, value) => tx(store, 'readwrite', (s) => req2p(s.put(value))),
    del: (store, key) => tx(store, 'readwrite', (s) => req2p(s.delete(key))),
    byIndex: (store, index, key) => tx(store, 'readonly',
      (s) => req2p(s.index(index).getAll(key))),
  };

  // ---------------------------------------------------------------- token

  function takeTokenFromUrl() {
    const hash = new URLSearchParams(location.hash.slice(1));
    const t = hash.get('token');
    if (t) {
      localStorage.setItem(TOKEN_KEY, t.trim());
      hash.delete('token');
      const rest = hash.toString();
      history.replaceState(history.state, '', location.pathname + location.search +
                           (rest ? '#' + rest : ''));
    }
  }

  const token = () => localStorage.getItem(TOKEN_KEY);

  /** The claims of a JWT (not verified: only to show who is signed in and when it expires). */
  function claims(t) {
    try {
      const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const json = decodeURIComponent(Array.from(atob(part),
        (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
      return JSON.parse(json);
    } catch (_) {
      return null;
    }
  }

  // ---------------------------------------------------------------- HTTP

  class HttpError extends Error {
    constructor(status, problem) {
      super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  /** fetch with the token; throws HttpError for a non-2xx answer, TypeError when offline. */
  async function call(method, url, { body, type, timeout = 30000 } = {}) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    if (type) headers['Content-Type'] = type;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeout);
    let res;
    try {
      res = await fetch(url, { method, headers, body, signal: ctl.signal, cache: 'no-store' });
    } catch (e) {
      throw new TypeError('netværksfejl: ' + e.message);
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    const ct = res.headers.get('content-type') || '';
    if (ct.includes('json')) data = await res.json().catch(() => null);
    if (!res.ok) throw new HttpError(res.status, data);
    return { status: res.status, data, fromCache: res.headers.get('x-ly-fra-cache') === '1' };
  }

  // ---------------------------------------------------------------- state

  const S = {
    tasks: [],            // the tasks as last fetched (or cached)
    draft: null,          // the open inspection (a record of the `kladder` store)
    template: null,       // its checklist template
    photos: [],           // its photos (records of the `fotos` store)
    outbox: new Set(),    // eftersyn_ids waiting to be sent
    syncing: null,        // the running sync (a promise)
    syncAgain: false,
    retry: 0,
    retryTimer: null,
    objectUrls: [],
    opening: false,       // a task is being opened
  };

  // ---------------------------------------------------------------- templates (checklists)

  const templateKey = (kode, version) => `${kode}/${version}`;

  async function loadTemplate(kode, version) {
    const key = templateKey(kode, version);
    try {
      const url = api(version ? `tjeklister/${encodeURIComponent(kode)}/${version}`
                              : `tjeklister/${encodeURIComponent(kode)}`);
      const { data } = await call('GET', url);
      await idb.put('skabeloner', { noegle: templateKey(data.kode, data.version), data });
      return data;
    } catch (e) {
      let stored = version ? await idb.get('skabeloner', key) : null;
      if (!version) {
        const all = (await idb.all('skabeloner')).filter((x) => x.data.kode === kode);
        stored = all.sort((a, b) => b.data.version - a.data.version)[0];
      }
      if (stored) return stored.data;
      throw e;
    }
  }

  const itemsOf = (t) => (t.sektioner || []).flatMap((s) => s.punkter);
  const roomItemsOf = (t) => (t.rum_sektioner || []).flatMap((s) => s.punkter);

  // ---------------------------------------------------------------- what is missing, local checks

  /** Required items still unanswered: [{felt, punkt}] in template order. */
  function missing(t, d) {
    const required = new Set(itemsOf(t).filter((p) => p.paakraevet).map((p) => p.id));
    for (const [id, rule] of Object.entries(t.ekstra_paakraevet || {})) {
      if (Object.entries(rule.naar || {}).every(([k, v]) => d.svar[k] === v)) required.add(id);
    }
    const out = [];
    for (const p of itemsOf(t)) {
      if (required.has(p.id) && !answered(d.svar[p.id])) out.push({ felt: `svar.${p.id}`, punkt: p });
    }
    d.rum.forEach((room, i) => {
      for (const p of roomItemsOf(t)) {
        if (p.paakraevet && !answered(room[p.id])) {
          out.push({ felt: `rum[${i + 1}].${p.id}`, punkt: p, rum: i + 1 });
        }
      }
    });
    return out;
  }

  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  /** A local error for one answer, or null (the server checks again). */
  function checkAnswer(p, v) {
    if (!answered(v)) return null;
    switch (p.type) {
      case 'heltal':
        if (!Number.isInteger(v)) return 'Skal være et helt tal';
        break;
      case 'tal':
        if (typeof v !== 'number' || !Number.isFinite(v)) return 'Skal være et tal';
        break;
      case 'dato':
        if (!/^\d{4}-\d{2}-\d{2}$/.test(v) || Number.isNaN(Date.parse(v))) {
          return 'Skal være en dato (ÅÅÅÅ-MM-DD)';
        }
        break;
      case 'uuid':
        if (!UUID_RE.test(v)) return 'Skal være et UUID (fx fra danmarksadresser.dk)';
        break;
      case 'tekst':
        if (p.maks_laengde && v.length > p.maks_laengde) {
          return `Højst ${p.maks_laengde} tegn (nu ${v.length})`;
        }
        break;
      default:
    }
    if ((p.type === 'heltal' || p.type === 'tal') && p.min !== undefined && p.max !== undefined &&
        (v < p.min || v > p.max)) {
      return `Skal være mellem ${p.min} og ${p.max}`;
    }
    return null;
  }

  function localErrors(t, d) {
    const out = {};
    for (const p of itemsOf(t)) {
      const e = checkAnswer(p, d.svar[p.id]);
      if (e) out[`svar.${p.id}`] = e;
    }
    d.rum.forEach((room, i) => {
      for (const p of roomItemsOf(t)) {
        const e = checkAnswer(p, room[p.id]);
        if (e) out[`rum[${i + 1}].${p.id}`] = e;
      }
    });
    return out;
  }

  // ---------------------------------------------------------------- drafts

  function newDraft(task, template, id) {
    const now = new Date().toISOString();
    return {
      eftersyn_id: id || uuid(),
      objekt_id: task.objekt_id,
      kampagne_id: task.kampagne_id || null,
      tjekliste_kode: template.kode,
      tjekliste_version: template.version,
      opgave: task,
      status: 'kladde',
      svar: {},
      rum: [],
      position: null,
      position_tid: null,
      oprettet: now,
      aendret: now,
      rev: 0,
      sync: { tilstand: 'lokal', tid: null, fejl: null, felter: {} },
    };
  }

  /** The body of PUT /eftersyn/{id}: the same draft always gives the same body. */
  function body(d) {
    const clean = (o) => Object.fromEntries(Object.entries(o).filter(([, v]) => answered(v)));
    const b = {
      objekt_id: d.objekt_id,
      tjekliste_kode: d.tjekliste_kode,
      tjekliste_version: d.tjekliste_version,
      kampagne_id: d.kampagne_id || null,
      status: d.status,
      svar: clean(d.svar),
      rum: d.rum.map(clean),
    };
    if (d.position) {
      b.position = d.position;
      b.position_tid = d.position_tid;
    }
    return JSON.stringify(b);
  }

  let saveChain = Promise.resolve();

  /** Save the open draft (serialised, so the last change is the last write). */
  function saveDraft(d = S.draft) {
    if (!d) return saveChain;
    const copy = structuredClone(d);
    saveChain = saveChain.then(() => idb.put('kladder', copy)).catch((e) => {
      notify('Kladden kunne ikke gemmes på enheden: ' + e.message, 'fejl');
    });
    return saveChain;
  }

  async function draftFor(task) {
    const drafts = await idb.byIndex('kladder', 'objekt_id', task.objekt_id);
    const same = drafts.filter((d) => (d.kampagne_id || null) === (task.kampagne_id || null));
    if (task.eftersyn_id) {
      const exact = same.find((d) => d.eftersyn_id === task.eftersyn_id);
      if (exact) return exact;
    }
    same.sort((a, b) => b.aendret.localeCompare(a.aendret));
    return same[0] || null;
  }

  // ---------------------------------------------------------------- photos

  async function addPhotos(files, punkt, rum) {
    const d = S.draft;
    if (!d || d.status !== 'kladde') return;
    for (const file of files) {
      let blob = file;
      try {
        if (!PHOTO_TYPES.includes(blob.type) || blob.size > MAX_PHOTO) blob = await toJpeg(blob);
      } catch (_) {
        notify(`Billedet ${file.name} kan ikke læses (kun JPEG og PNG).`, 'fejl');
        continue;
      }
      if (blob.size > MAX_PHOTO) {
        notify(`Billedet ${file.name} er for stort (højst 10 MB).`, 'fejl');
        continue;
      }
      const photo = {
        foto_id: uuid(), eftersyn_id: d.eftersyn_id, punkt: punkt || null, rum: rum || null,
        blob, type: blob.type, navn: file.name || 'foto', stoerrelse: blob.size,
        tid: new Date().toISOString(), sendt: false, fejl: null,
      };
      await idb.put('fotos', photo);
      S.photos.push(photo);
    }
    changed();
    renderPhotos();
  }

  /** Re-encode an image as JPEG (other formats, or too large), at most 3000 px. */
  async function toJpeg(file) {
    const bmp = await createImageBitmap(file);
    const scale = Math.min(1, 3000 / Math.max(bmp.width, bmp.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(bmp.width * scale);
    canvas.height = Math.round(bmp.height * scale);
    canvas.getContext('2d').drawImage(bmp, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve, reject) => canvas.toBlob(
      (b) => (b ? resolve(b) : reject(new Error('toBlob'))), 'image/jpeg', 0.85));
  }

  async function removePhoto(fotoId) {
    const photo = S.photos.find((p) => p.foto_id === fotoId);
    if (!photo || photo.sendt) return;
    await idb.del('fotos', fotoId);
    S.photos = S.photos.filter((p) => p.foto_id !== fotoId);
    changed();
    renderPhotos();
  }

  // ---------------------------------------------------------------- position

  function readPosition(timeout = 4000) {
    if (!('geolocation' in navigator)) return Promise.resolve(null);
    return Promise.race([
      new Promise((resolve) => navigator.geolocation.getCurrentPosition(
        (pos) => resolve(pos), () => resolve(null),
        { enableHighAccuracy: true, timeout, maximumAge: 60000 })),
      sleep(timeout + 500).then(() => null),
    ]);
  }

  async function recordPosition({ quiet = false } = {}) {
    const d = S.draft;
    if (!d || d.status !== 'kladde') return;
    const pos = await readPosition();
    // the inspection may have been submitted meanwhile: a submitted body never changes
    if (S.draft !== d || d.status !== 'kladde') return;
    if (!pos) {
      if (!quiet) notify('Positionen kunne ikke bestemmes (tilladelse eller GPS).', 'info');
      return;
    }
    d.position = { type: 'Point', coordinates: [round6(pos.coords.longitude),
                                                round6(pos.coords.latitude)] };
    d.position_tid = new Date(pos.timestamp || Date.now()).toISOString();
    d.position_noejagtighed = Math.round(pos.coords.accuracy || 0);
    changed({ render: false });
    renderPosition();
  }
  const round6 = (x) => Math.round(x * 1e6) / 1e6;

  // ---------------------------------------------------------------- outbox and sync

  async function enqueue(d) {
    d.sync = { ...d.sync, tilstand: 'venter', fejl: null, felter: {} };
    await saveDraft(d);
    await idb.put('udbakke', { eftersyn_id: d.eftersyn_id, tid: new Date().toISOString() });
    S.outbox.add(d.eftersyn_id);
    renderOutbox();
    sync();
  }

  /** Send the outbox (one run at a time; a request during a run starts one more after it). */
  function sync() {
    if (S.syncing) {
      S.syncAgain = true;
      return S.syncing;
    }
    S.syncing = (async () => {
      document.body.dataset.synkroniserer = '1';
      try {
        do {
          S.syncAgain = false;
          await runOutbox();
        } while (S.syncAgain);
      } finally {
        S.syncing = null;
        delete document.body.dataset.synkroniserer;
        document.body.dataset.sidsteSynk = new Date().toISOString();
        renderOutbox();
      }
    })();
    return S.syncing;
  }

  async function runOutbox() {
    const entries = await idb.all('udbakke');
    S.outbox = new Set(entries.map((e) => e.eftersyn_id));
    renderOutbox();
    if (!entries.length || !token() || !navigator.onLine) return;
    let networkDown = false;
    for (const entry of entries) {
      if (networkDown) break;
      const outcome = await sendOne(entry.eftersyn_id);
      if (outcome === 'net') networkDown = true;
      if (outcome === 'auth') break;
    }
    clearTimeout(S.retryTimer);
    if (networkDown && navigator.onLine) {
      const wait = RETRY_MS[Math.min(S.retry, RETRY_MS.length - 1)];
      S.retry += 1;
      S.retryTimer = setTimeout(sync, wait);
    } else {
      S.retry = 0;
    }
  }

  /** One inspection: 'ok', 'net' (try again later), 'auth' (sign in again) or 'afvist'. */
  async function sendOne(id) {
    const d = id === S.draft?.eftersyn_id ? S.draft : await idb.get('kladder', id);
    if (!d) {
      await idb.del('udbakke', id);
      return 'ok';
    }
    const rev = d.rev;
    setSync(d, 'sender');
    let stored;
    try {
      ({ data: stored } = await call('PUT', api(`eftersyn/${d.eftersyn_id}`),
                                     { body: body(d), type: 'application/json' }));
    } catch (e) {
      return failed(d, e, { photo: false });
    }
    d.server = { status: stored?.status ?? d.status, version: stored?.version ?? null,
                 mangler_svar: stored?.mangler_svar ?? [] };
    const photos = await idb.byIndex('fotos', 'eftersyn_id', d.eftersyn_id);
    let rejected = 0;
    for (const photo of photos.filter((p) => !p.sendt && !p.fejl)) {
      const q = new URLSearchParams();
      if (photo.punkt) q.set('punkt', photo.punkt);
      if (photo.rum) q.set('rum', String(photo.rum));
      const qs = q.toString();
      try {
        await call('PUT', api(`eftersyn/${d.eftersyn_id}/fotos/${photo.foto_id}${qs ? '?' + qs : ''}`),
                   { body: photo.blob, type: photo.type, timeout: 120000 });
        photo.sendt = true;
      } catch (e) {
        if (e instanceof HttpError && [413, 415, 422].includes(e.status)) {
          photo.fejl = describe(e);
          rejected += 1;
        } else {
          return failed(d, e, { photo: true });
        }
      }
      await idb.put('fotos', photo);
      const shown = S.photos.find((p) => p.foto_id === photo.foto_id);
      if (shown) Object.assign(shown, { sendt: photo.sendt, fejl: photo.fejl });
    }
    await idb.del('udbakke', d.eftersyn_id);
    S.outbox.delete(d.eftersyn_id);
    const edited = d.rev !== rev;
    d.sync = {
      tilstand: rejected ? 'fejl' : (edited ? 'lokal' : 'sendt'),
      tid: new Date().toISOString(),
      fejl: rejected ? `${rejected} foto(s) blev afvist af serveren` : null,
      felter: {},
    };
    await commit(d);
    return 'ok';
  }

  function describe(e) {
    return e instanceof HttpError ? (e.problem.detail || e.problem.title || `HTTP ${e.status}`)
                                  : e.message;
  }

  /** A failed request: keep it in the outbox when it may succeed later. */
  async function failed(d, e, { photo }) {
    if (!(e instanceof HttpError) || e.status >= 500 || e.status === 429 || e.status === 408 ||
        (photo && e.status === 404)) {
      // offline, a lost response, server trouble, or (404) a photo before its inspection:
      // the same requests are sent again later.
      d.sync = { ...d.sync, tilstand: 'venter',
                 fejl: e instanceof HttpError ? describe(e) : null };
      await commit(d);
      return 'net';
    }
    if (e.status === 401) {
      d.sync = { ...d.sync, tilstand: 'venter', fejl: 'Log ind igen: ' + describe(e) };
      await commit(d);
      notify('Adgangsnøglen er ikke gyldig længere. Log ind igen; kladderne bliver på enheden.',
             'fejl');
      return 'auth';
    }
    // 400, 403, 404, 409, 422, …: the server refuses this content; it stays on the device and
    // the inspector must act (fix the answers, or ask the municipality).
    const felter = {};
    for (const err of e.problem.errors || []) {
      if (err.field) felter[err.field] = err.detail || 'Fejl';
    }
    if (e.status === 422 && d.status === 'indsendt') d.status = 'kladde'; // fix and send again
    d.sync = { tilstand: 'fejl', tid: new Date().toISOString(), fejl: describe(e), felter,
               http: e.status };
    await idb.del('udbakke', d.eftersyn_id);
    S.outbox.delete(d.eftersyn_id);
    await commit(d);
    return 'afvist';
  }

  /** Store a draft the outbox changed; the open form keeps its own (maybe newer) answers. */
  async function commit(d) {
    if (S.draft && S.draft.eftersyn_id === d.eftersyn_id && S.draft !== d) {
      Object.assign(S.draft, { sync: d.sync, status: d.status, server: d.server });
      await saveDraft(S.draft);
    } else {
      await saveDraft(d);
    }
    afterSync(d);
  }

  function setSync(d, tilstand) {
    d.sync = { ...d.sync, tilstand };
    afterSync(d);
  }

  function afterSync(d) {
    if (S.draft && S.draft.eftersyn_id === d.eftersyn_id) {
      if (S.draft !== d) Object.assign(S.draft, { sync: d.sync, status: d.status, server: d.server });
      renderState();
      renderPhotos();
    }
    renderTaskStates();
    renderOutbox();
  }

  // ---------------------------------------------------------------- UI: general

  let noticeTimer = null;

  function notify(text, kind = 'info') {
    const box = $('#besked');
    box.textContent = text;
    box.dataset.kind = kind;
    box.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { box.hidden = true; }, kind === 'fejl' ? 12000 : 5000);
  }

  function renderNet() {
    const net = $('#net');
    net.dataset.online = navigator.onLine ? 'ja' : 'nej';
    net.textContent = navigator.onLine ? 'Online' : 'Offline';
  }

  function renderOutbox() {
    const n = S.outbox.size;
    const text = S.syncing && navigator.onLine ? 'Sender …'
      : n ? `${n} venter på at blive sendt` : 'Alt er sendt';
    $('#udbakke').textContent = text;
    $('#udbakke').dataset.antal = String(n);
  }

  function show(section) {
    for (const id of ['log-ind', 'opgaver', 'formular']) $('#' + id).hidden = id !== section;
    document.body.dataset.visning = section;
    window.scrollTo(0, 0);
  }

  function syncLabel(d) {
    if (!d) return { key: 'ingen', text: 'Ikke påbegyndt' };
    const t = d.sync?.tilstand || 'lokal';
    let text = SYNC_TEXT[t] || t;
    if (t === 'venter' && navigator.onLine && S.syncing) text = SYNC_TEXT.sender;
    if (t === 'sendt') text += ` (${STATUS_TEXT[d.server?.status || d.status] || d.status})`;
    if (t === 'venter' && d.status === 'indsendt') text += ' (indsendt på enheden)';
    if (t === 'fejl' && d.sync.fejl) text += ': ' + d.sync.fejl;
    return { key: t, text };
  }

  // ---------------------------------------------------------------- UI: sign-in and tasks

  function renderUser() {
    const c = claims(token() || '');
    const who = c ? (c.name || c.sub || '') : '';
    const exp = c && c.exp ? new Date(c.exp * 1000) : null;
    const expired = exp && exp < new Date();
    $('#bruger').textContent = who ? `Logget ind som ${who}` +
      (exp ? (expired ? ' (nøglen er udløbet)' : ` · gyldig til ${fmtTime(exp.toISOString())}`) : '')
      : '';
  }

  async function showTasks() {
    S.draft = null;
    S.template = null;
    show('opgaver');
    renderUser();
    renderOutbox();
    await renderTaskList();
    await loadTasks();
  }

  async function loadTasks({ quiet = false } = {}) {
    const source = $('#opgaver-kilde');
    if (!quiet) source.textContent = 'Henter opgaver …';
    try {
      const { data, fromCache } = await call('GET', api('eftersyn/opgaver'));
      S.tasks = data.opgaver || [];
      await idb.put('meta', { noegle: 'opgaver:' + (claims(token())?.sub || ''),
                              opgaver: S.tasks, tid: new Date().toISOString() });
      source.textContent = fromCache ? 'Offline – viser opgaverne fra sidst.'
                                     : `Hentet ${fmtTime(new Date().toISOString())}.`;
      prefetchTemplates(S.tasks);
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) {
        source.textContent = '';
        $('#token-fejl').textContent = 'Adgangsnøglen blev afvist: ' + describe(e);
        $('#token-fejl').hidden = false;
        show('log-ind');
        return;
      }
      const saved = await idb.get('meta', 'opgaver:' + (claims(token())?.sub || ''));
      if (saved) {
        S.tasks = saved.opgaver;
        source.textContent = `Offline – viser opgaverne fra ${fmtTime(saved.tid)}.`;
      } else if (!quiet) {
        source.textContent = 'Opgaverne kunne ikke hentes: ' + describe(e);
      }
    }
    if (document.body.dataset.visning === 'opgaver') await renderTaskList();
  }

  async function prefetchTemplates(tasks) {
    const seen = new Set();
    for (const t of tasks) {
      const key = templateKey(t.tjekliste_kode, t.tjekliste_version);
      if (!t.tjekliste_kode || seen.has(key)) continue;
      seen.add(key);
      loadTemplate(t.tjekliste_kode, t.tjekliste_version).catch(() => {});
    }
  }

  async function renderTaskList() {
    const list = $('#opgave-liste');
    const drafts = await idb.all('kladder');
    list.replaceChildren();
    const shown = new Set();
    if (!S.tasks.length) list.append(h('li.tom', {}, 'Ingen opgaver er tildelt dig.'));
    for (const task of S.tasks) {
      const d = pickDraft(drafts, task);
      if (d) shown.add(d.eftersyn_id);
      list.append(taskCard(task, d));
    }
    const others = drafts.filter((d) => !shown.has(d.eftersyn_id) &&
      (d.sync?.tilstand !== 'sendt' || S.outbox.has(d.eftersyn_id)));
    $('#andre-titel').hidden = $('#andre-liste').hidden = !others.length;
    $('#andre-liste').replaceChildren(...others.map((d) => taskCard(d.opgave, d)));
  }

  function pickDraft(drafts, task) {
    const same = drafts.filter((d) => d.objekt_id === task.objekt_id &&
      (d.kampagne_id || null) === (task.kampagne_id || null));
    return same.find((d) => d.eftersyn_id === task.eftersyn_id) ||
      same.sort((a, b) => b.aendret.localeCompare(a.aendret))[0] || null;
  }

  /** The cards' tasks by key: one click handler on the lists, so a card re-rendered while
   *  it is tapped still opens its task. */
  const cards = new Map();
  const cardKey = (task) => {
    const key = `${task.objekt_id}/${task.kampagne_id || ''}`;
    cards.set(key, task);
    return key;
  };

  function taskCard(task, d) {
    const label = syncLabel(d);
    if (d && label.key === 'sendt' && task.status && task.eftersyn_id === d.eftersyn_id) {
      label.text = `${SYNC_TEXT.sendt} (${STATUS_TEXT[task.status] || task.status})`;
    }
    const serverStatus = !d && task.status ? `På serveren: ${STATUS_TEXT[task.status] || task.status}` : '';
    return h('li.opgave', { dataset: { objektId: task.objekt_id } },
      h('button.opgave-knap', { type: 'button', dataset: { kort: cardKey(task) } },
        h('strong', {}, task.navn || task.adresse || task.objekt_id),
        h('span.meta', {}, [task.adresse, task.beskyt_rum,
                            task.pladser != null ? `${task.pladser} pladser` : null]
          .filter(Boolean).join(' · ')),
        task.kampagne ? h('span.meta', {}, 'Kampagne: ' + task.kampagne) : null,
        h('span.sync', { dataset: { sync: label.key } }, d ? label.text : (serverStatus || 'Ikke påbegyndt'))));
  }

  function renderTaskStates() {
    if (document.body.dataset.visning === 'opgaver') renderTaskList();
  }

  // ---------------------------------------------------------------- UI: the form

  async function openTask(task) {
    if (S.opening) return;   // a double tap must not start two inspections
    S.opening = true;
    try {
      await openTaskNow(task);
    } finally {
      S.opening = false;
    }
  }

  async function openTaskNow(task) {
    let template;
    try {
      template = await loadTemplate(task.tjekliste_kode, task.tjekliste_version);
    } catch (e) {
      notify('Tjeklisten kunne ikke hentes, og den er ikke gemt på enheden: ' + describe(e), 'fejl');
      return;
    }
    let d = await draftFor(task);
    if (!d && task.eftersyn_id) {
      // an inspection the server already has (started on another device): continue it
      try {
        const { data } = await call('GET', api(`eftersyn/${task.eftersyn_id}`));
        d = newDraft(task, template, task.eftersyn_id);
        Object.assign(d, { svar: data.svar || {}, rum: data.rum || [], status: data.status,
                           position: data.position || null,
                           position_tid: data.position_tid || null,
                           tjekliste_kode: data.tjekliste_kode || d.tjekliste_kode,
                           tjekliste_version: data.tjekliste_version || d.tjekliste_version,
                           server: { status: data.status, version: data.version },
                           sync: { tilstand: 'sendt', tid: new Date().toISOString(),
                                   fejl: null, felter: {} } });
        d.status = LOCAL_STATUS[data.status] || 'indsendt';
        if (data.status === 'afvist') rejected(d, data.afvist_begrundelse);
      } catch (e) {
        notify('Eftersynet findes på serveren, men kan ikke hentes nu. Åbn det igen, når ' +
               'du er online.', 'fejl');
        return;
      }
    }
    const fresh = !d;
    if (!d) {
      d = newDraft(task, template);
    } else {
      d.opgave = { ...d.opgave, ...task };
      if (task.status === 'afvist' && task.eftersyn_id === d.eftersyn_id && d.status !== 'kladde' &&
          !S.outbox.has(d.eftersyn_id)) {
        // the municipality rejected it: the inspector corrects it and submits it again
        d.status = 'kladde';
        let reason = null;
        try {
          const { data } = await call('GET', api(`eftersyn/${d.eftersyn_id}`));
          reason = data.afvist_begrundelse;
        } catch (_) { /* offline: the reason is shown when online */ }
        rejected(d, reason);
      }
    }
    if (d.tjekliste_version !== template.version || d.tjekliste_kode !== template.kode) {
      template = await loadTemplate(d.tjekliste_kode, d.tjekliste_version);
    }
    await saveDraft(d);
    await openDraft(d, template);
    if (fresh) recordPosition({ quiet: true });
  }

  function rejected(d, reason) {
    d.sync = { tilstand: 'lokal', tid: null, fejl: null, felter: {} };
    d.afvist_begrundelse = reason || null;
    notify('Kommunen har afvist eftersynet' + (reason ? `: ${reason}` : '') +
           '. Ret det og indsend igen.', 'fejl');
  }

  async function openDraftById(id) {
    const d = await idb.get('kladder', id);
    if (!d) return false;
    let template;
    try {
      template = await loadTemplate(d.tjekliste_kode, d.tjekliste_version);
    } catch (e) {
      notify('Tjeklisten for kladden er ikke gemt på enheden.', 'fejl');
      return false;
    }
    await openDraft(d, template);
    return true;
  }

  async function openDraft(d, template) {
    S.draft = d;
    S.template = template;
    S.photos = await idb.byIndex('fotos', 'eftersyn_id', d.eftersyn_id);
    if (location.hash !== '#eftersyn=' + d.eftersyn_id) {
      history.pushState({ eftersyn: d.eftersyn_id }, '', '#eftersyn=' + d.eftersyn_id);
    }
    const task = d.opgave || {};
    $('#formular-titel').textContent = task.navn || task.adresse || 'Eftersyn';
    $('#formular-adresse').textContent = [task.adresse, task.beskyt_rum,
      task.pladser != null ? `${task.pladser} pladser i registret` : null].filter(Boolean).join(' · ');
    $('#formular-tjekliste').textContent = `${template.titel} (version ${template.version})`;
    $('#formular').dataset.eftersynId = d.eftersyn_id;
    renderForm();
    show('formular');
  }

  function renderForm() {
    const t = S.template;
    const box = $('#sektioner');
    box.replaceChildren(...(t.sektioner || []).map((s) => h('section.sektion', {},
      h('h2', {}, s.titel),
      s.punkter.map((p) => itemBlock(p, 'svar.' + p.id, S.draft.svar[p.id], null)))));
    const rooms = roomItemsOf(t);
    $('#rum-blok').hidden = !(t.rum_max > 0 && rooms.length);
    $('#rum-max').textContent = String(t.rum_max || 0);
    renderRooms();
    renderPosition();
    renderState();
    renderPhotos();
  }

  function renderRooms() {
    const t = S.template;
    const d = S.draft;
    const list = $('#rum-liste');
    list.replaceChildren(...d.rum.map((room, i) => {
      const n = i + 1;
      return h('section.rum', { dataset: { rum: n } },
        h('div.linje', {},
          h('h3', {}, `Rum ${n}`),
          h('button.diskret', { type: 'button', class: 'diskret fjern-rum',
                                onclick: () => removeRoom(n) }, `Fjern rum ${n}`)),
        (t.rum_sektioner || []).map((s) => h('div.rum-sektion', {},
          h('h4', {}, s.titel),
          s.punkter.map((p) => itemBlock(p, `rum[${n}].${p.id}`, room[p.id], n)))));
    }));
    $('#tilfoej-rum').hidden = d.rum.length >= (t.rum_max || 0);
  }

  function addRoom() {
    if (!S.draft || S.draft.status !== 'kladde') return;
    if (S.draft.rum.length >= S.template.rum_max) return;
    S.draft.rum.push({});
    changed();
    renderRooms();
    renderState();
    renderPhotos();
    const last = $$('#rum-liste .rum').pop();
    if (last) last.scrollIntoView({ block: 'start' });
  }

  async function removeRoom(n) {
    const d = S.draft;
    if (!d || d.status !== 'kladde') return;
    if (S.photos.some((p) => p.sendt && p.rum && p.rum >= n)) {
      notify('Rummet kan ikke fjernes: der er allerede sendt fotos af det eller af et senere rum.',
             'fejl');
      return;
    }
    d.rum.splice(n - 1, 1);
    for (const p of [...S.photos]) {
      if (p.rum === n) {
        await idb.del('fotos', p.foto_id);
        S.photos = S.photos.filter((x) => x !== p);
      } else if (p.rum && p.rum > n) {
        p.rum -= 1;
        await idb.put('fotos', p);
      }
    }
    changed();
    renderRooms();
    renderState();
    renderPhotos();
  }

  /** One item: question, the right input for its type, a photo button, its errors. */
  function itemBlock(p, felt, value, rum) {
    const id = 'f-' + felt.replace(/[^\w-]/g, '_');
    const question = h('span.spoergsmaal', { id: 'q-' + id }, p.spoergsmaal,
      p.paakraevet ? h('abbr.paakraevet', { title: 'påkrævet' }, ' *') : null,
      p.kritisk ? h('span.kritisk', { title: 'kritisk punkt' }, 'K') : null);
    let control;
    const choice = (options, current) => h('div.valg', { role: 'radiogroup',
                                                         'aria-labelledby': 'q-' + id },
      options.map(([v, text]) => h('label.valg-knap', {},
        h('input', { type: 'radio', name: felt, value: String(v),
                     checked: answered(current) && String(current) === String(v) }),
        h('span', {}, text))));
    switch (p.type) {
      case 'ja_nej_ved_ikke':
      case 'kode': {
        const codes = (p.koder || []).map((k) => [k.kode, k.tekst]);
        if (codes.length <= 5) {
          control = choice(codes, value);
        } else {
          control = h('select', { id, name: felt },
            h('option', { value: '' }, '– vælg –'),
            codes.map(([k, txt]) => h('option', { value: String(k),
                                                   selected: String(value) === String(k) }, txt)));
        }
        break;
      }
      case 'boolesk':
        control = choice([['true', 'Ja'], ['false', 'Nej']], value);
        break;
      case 'grad':
        control = choice(GRADES, value);
        break;
      case 'heltal':
        control = h('input', { id, name: felt, type: 'number', inputmode: 'numeric', step: '1',
                               min: p.min, max: p.max, value: answered(value) ? String(value) : '' });
        break;
      case 'tal':
        control = h('input', { id, name: felt, type: 'number', inputmode: 'decimal', step: 'any',
                               min: p.min, max: p.max, value: answered(value) ? String(value) : '' });
        break;
      case 'dato':
        control = h('span.dato', {},
          h('input', { id, name: felt, type: 'date', value: value || '' }),
          h('button', { type: 'button', class: 'diskret i-dag',
                        onclick: () => setValue(felt, today(), true) }, 'I dag'));
        break;
      case 'uuid':
        control = h('input', { id, name: felt, type: 'text', spellcheck: 'false',
                               autocapitalize: 'off', placeholder: '00000000-0000-0000-0000-000000000000',
                               value: value || '' });
        break;
      default: {
        const long = (p.maks_laengde || 0) > 100;
        control = long
          ? h('textarea', { id, name: felt, rows: 2, maxlength: p.maks_laengde }, value || '')
          : h('input', { id, name: felt, type: 'text', maxlength: p.maks_laengde,
                         value: value || '' });
      }
    }
    const labelled = ['ja_nej_ved_ikke', 'kode', 'boolesk', 'grad'].includes(p.type) &&
      !(control.tagName === 'SELECT');
    return h('div.punkt', { dataset: { felt, punkt: p.id, type: p.type,
                                       paakraevet: p.paakraevet ? '1' : '0' } },
      labelled ? h('div.label', {}, question) : h('label.label', { for: id }, question),
      p.beskrivelse ? h('details.hjaelp', {}, h('summary', {}, 'Vejledning'), p.beskrivelse) : null,
      control,
      h('p.felt-fejl', { hidden: true, role: 'alert' }),
      photoBlock(p.id, rum, felt));
  }

  function photoBlock(punkt, rum, felt) {
    const input = h('input', { type: 'file', accept: 'image/*', capture: 'environment',
                               multiple: true, class: 'foto-input',
                               onchange: (ev) => {
                                 const files = Array.from(ev.target.files || []);
                                 ev.target.value = '';
                                 addPhotos(files, punkt, rum);
                               } });
    return h('div.fotos', { dataset: { fotoFor: felt, punkt: punkt || '', rum: rum || '' } },
      h('ul.foto-liste'),
      h('label.foto-knap', { title: 'Tag eller vælg et foto' }, input, h('span', {}, 'Foto')));
  }

  // ---------------------------------------------------------------- reading answers

  function parseValue(p, input) {
    const raw = input.value;
    if (raw === '' || raw === undefined) {
      if (input.type === 'number' && input.validity && input.validity.badInput) return NaN;
      return undefined;
    }
    switch (p.type) {
      case 'ja_nej_ved_ikke':
      case 'kode':
      case 'heltal':
        return Number(raw);
      case 'tal':
        return Number(raw.replace(',', '.'));
      case 'boolesk':
        return raw === 'true';
      case 'tekst':
        return raw;
      default:
        return raw.trim();
    }
  }

  function itemFor(felt) {
    const m = /^svar\.(.+)$/.exec(felt) || /^rum\[(\d+)\]\.(.+)$/.exec(felt);
    if (!m) return null;
    if (m.length === 2) {
      return { p: itemsOf(S.template).find((x) => x.id === m[1]), rum: null, id: m[1] };
    }
    return { p: roomItemsOf(S.template).find((x) => x.id === m[2]), rum: Number(m[1]), id: m[2] };
  }

  function setValue(felt, value, updateInput = false) {
    const d = S.draft;
    const it = itemFor(felt);
    if (!d || !it || !it.p || d.status !== 'kladde') return;
    const target = it.rum ? d.rum[it.rum - 1] : d.svar;
    if (!target) return;
    if (answered(value)) target[it.id] = value;  // NaN (unreadable number) is kept: an error
    else delete target[it.id];
    if (updateInput) {
      const input = $(`[name="${CSS.escape(felt)}"]`);
      if (input) input.value = value;
    }
    if (d.sync.felter && d.sync.felter[felt]) delete d.sync.felter[felt];
    changed();
    renderState();
  }

  function onInput(ev) {
    const input = ev.target;
    if (!input.name || input.classList.contains('foto-input')) return;
    const it = itemFor(input.name);
    if (!it || !it.p) return;
    if (input.type === 'radio' && !input.checked) return;
    setValue(input.name, parseValue(it.p, input));
  }

  /** Something changed in the open draft: save it on the device now. */
  function changed({ render = true } = {}) {
    const d = S.draft;
    if (!d) return;
    d.aendret = new Date().toISOString();
    d.rev = (d.rev || 0) + 1;
    if (d.sync.tilstand === 'sendt' || d.sync.tilstand === 'fejl') {
      d.sync = { ...d.sync, tilstand: S.outbox.has(d.eftersyn_id) ? 'venter' : 'lokal',
                 fejl: d.sync.tilstand === 'fejl' ? d.sync.fejl : null };
    }
    saveDraft(d);
    if (render) renderSyncLabel();
  }

  // ---------------------------------------------------------------- rendering state

  function renderSyncLabel() {
    const d = S.draft;
    const label = syncLabel(d);
    const el = $('#synk-tilstand');
    el.dataset.sync = label.key;
    el.textContent = label.text;
    $('#gemt-tid').textContent = d ? `Senest ændret ${fmtTime(d.aendret)}` +
      (d.sync?.tid && d.sync.tilstand === 'sendt' ? ` · sendt ${fmtTime(d.sync.tid)}` : '') : '';
  }

  function renderState() {
    const d = S.draft;
    const t = S.template;
    if (!d || !t) return;
    const locked = d.status !== 'kladde';
    $('#svar-felter').disabled = locked;
    $('#formular').dataset.status = d.status;

    // what is missing
    const miss = missing(t, d);
    const list = $('#mangler-liste');
    list.replaceChildren(...miss.map((m) => h('li', { dataset: { felt: m.felt, punkt: m.punkt.id } },
      h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); focusField(m.felt); } },
        (m.rum ? `Rum ${m.rum}: ` : '') + m.punkt.spoergsmaal))));
    $('#mangler-antal').textContent = String(miss.length);
    $('#mangler-ingen').hidden = miss.length > 0;
    $('#mangler').dataset.antal = String(miss.length);

    // errors: local checks, then what the server said
    const errors = localErrors(t, d);
    const server = d.sync?.felter || {};
    const shownServer = new Set();
    for (const block of $$('.punkt')) {
      const felt = block.dataset.felt;
      const msg = errors[felt] || server[felt];
      if (server[felt]) shownServer.add(felt);
      const p = $('.felt-fejl', block);
      p.textContent = msg || '';
      p.hidden = !msg;
      block.classList.toggle('har-fejl', !!msg);
      block.classList.toggle('mangler', miss.some((m) => m.felt === felt));
    }
    const problem = $('#problem');
    const unplaced = Object.entries(server).filter(([f]) => !shownServer.has(f));
    if (d.sync?.tilstand === 'fejl' && (d.sync.fejl || unplaced.length)) {
      problem.replaceChildren(h('strong', {}, 'Serveren afviste eftersynet: '), d.sync.fejl || '',
        unplaced.length ? h('ul', {}, unplaced.map(([f, msg]) => h('li', { dataset: { felt: f } },
          `${f}: ${msg}`))) : null);
      problem.hidden = false;
    } else if (d.afvist_begrundelse && d.status === 'kladde') {
      problem.replaceChildren(h('strong', {}, 'Afvist af kommunen: '), d.afvist_begrundelse,
                              ' Ret eftersynet og indsend det igen.');
      problem.hidden = false;
    } else {
      problem.hidden = true;
    }

    // buttons
    const nErrors = Object.keys(errors).length;
    const ready = !locked && miss.length === 0 && nErrors === 0;
    const submit = $('#indsend');
    submit.disabled = !ready;
    submit.dataset.klar = ready ? '1' : '0';
    $('#gem-kladde').disabled = locked;
    $('#indsend-hjaelp').textContent = locked
      ? (d.status === 'indsendt' ? 'Eftersynet er indsendt og kan ikke ændres.'
                                 : 'Eftersynet er godkendt af kommunen.')
      : miss.length ? `Mangler ${miss.length} påkrævede svar.`
        : nErrors ? `${nErrors} svar skal rettes.` : 'Klar til at indsende.';
    $('#hent-position').hidden = locked;
    renderSyncLabel();
  }

  function focusField(felt) {
    const block = $(`.punkt[data-felt="${CSS.escape(felt)}"]`);
    if (!block) return;
    block.scrollIntoView({ block: 'center' });
    const input = $('input, select, textarea', block);
    if (input) input.focus({ preventScroll: true });
  }

  function renderPhotos() {
    for (const url of S.objectUrls) URL.revokeObjectURL(url);
    S.objectUrls = [];
    const locked = !S.draft || S.draft.status !== 'kladde';
    for (const box of $$('.fotos')) {
      const punkt = box.dataset.punkt || null;
      const rum = box.dataset.rum ? Number(box.dataset.rum) : null;
      const mine = S.photos.filter((p) => (p.punkt || null) === punkt && (p.rum || null) === rum);
      $('.foto-liste', box).replaceChildren(...mine.map((p) => {
        const url = URL.createObjectURL(p.blob);
        S.objectUrls.push(url);
        return h('li.foto', { dataset: { fotoId: p.foto_id, sendt: p.sendt ? '1' : '0' } },
          h('img', { src: url, alt: p.navn, loading: 'lazy' }),
          h('span.meta', {}, p.fejl ? 'Afvist: ' + p.fejl : p.sendt ? 'Sendt' : 'På enheden'),
          !p.sendt && !locked ? h('button', { type: 'button', class: 'diskret fjern-foto',
            'aria-label': 'Fjern foto', onclick: () => removePhoto(p.foto_id) }, '✕') : null);
      }));
      $('.foto-knap', box).hidden = locked;
    }
  }

  function renderPosition() {
    const d = S.draft;
    const el = $('#position');
    if (d && d.position) {
      const [lon, lat] = d.position.coordinates;
      el.textContent = `${lat.toFixed(5)}° N, ${lon.toFixed(5)}° Ø` +
        (d.position_noejagtighed ? ` (±${d.position_noejagtighed} m)` : '') +
        ` · ${fmtTime(d.position_tid)}`;
      el.dataset.lon = String(lon);
      el.dataset.lat = String(lat);
    } else {
      el.textContent = 'Ingen position registreret.';
      delete el.dataset.lon;
      delete el.dataset.lat;
    }
  }

  // ---------------------------------------------------------------- save and submit

  async function saveAsDraft() {
    const d = S.draft;
    if (!d || d.status !== 'kladde') return;
    await enqueue(d);
    renderState();
    notify(navigator.onLine ? 'Kladden er gemt og sendes.' :
      'Kladden er gemt på enheden og sendes, når der er netværk.');
  }

  async function submit() {
    const d = S.draft;
    if (!d || d.status !== 'kladde') return;
    const miss = missing(S.template, d);
    const errors = localErrors(S.template, d);
    if (miss.length || Object.keys(errors).length) {
      renderState();
      focusField(miss.length ? miss[0].felt : Object.keys(errors)[0]);
      return;
    }
    $('#indsend').disabled = true;
    await recordPosition({ quiet: true });
    d.status = 'indsendt';
    d.indsendt_tid = new Date().toISOString();
    d.afvist_begrundelse = null;
    changed({ render: false });
    renderState();
    renderPhotos();
    await enqueue(d);
    renderState();
    notify(navigator.onLine ? 'Eftersynet er indsendt og sendes nu.' :
      'Eftersynet er gemt på enheden og sendes, når der er netværk.');
  }

  // ---------------------------------------------------------------- service worker

  async function registerServiceWorker() {
    if (!('serviceWorker' in navigator)) return;
    try {
      const url = new URL(document.body.dataset.sw || 'sw.js', location.href);
      const reg = await navigator.serviceWorker.register(url.href, { scope: './' });
      const assets = [document.body.dataset.staticLyCss, document.body.dataset.staticAppCss,
                      document.body.dataset.staticAppJs, location.href.split('#')[0]]
        .filter(Boolean);
      const tell = (sw) => sw && sw.postMessage({ type: 'gem', urls: assets });
      tell(reg.active || reg.waiting || reg.installing);
      navigator.serviceWorker.addEventListener('controllerchange', () => {
        tell(navigator.serviceWorker.controller);
        document.body.dataset.sw = 'aktiv';
        // fetch the API GETs once more through the worker, so it keeps them for offline use
        if (token() && navigator.onLine) loadTasks({ quiet: true });
      });
      if (navigator.serviceWorker.controller) document.body.dataset.sw = 'aktiv';
    } catch (e) {
      console.warn('service worker', e);
    }
  }

  // ---------------------------------------------------------------- routing and start

  async function route() {
    const hash = new URLSearchParams(location.hash.slice(1));
    if (!token()) {
      show('log-ind');
      return;
    }
    const id = hash.get('eftersyn');
    if (id && (await openDraftById(id))) return;
    await showTasks();
  }

  function wire() {
    $('#log-ind-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const value = $('#token').value.trim().replace(/^Bearer\s+/i, '');
      const c = claims(value);
      if (!c || !c.sub) {
        $('#token-fejl').textContent = 'Det ligner ikke en adgangsnøgle (JWT).';
        $('#token-fejl').hidden = false;
        return;
      }
      $('#token-fejl').hidden = true;
      $('#token').value = '';
      localStorage.setItem(TOKEN_KEY, value);
      await route();
      sync();
    });
    $('#log-ud').addEventListener('click', async () => {
      if (S.outbox.size && !window.confirm(
        'Der er eftersyn, som ikke er sendt endnu. De bliver på enheden. Log ud alligevel?')) return;
      localStorage.removeItem(TOKEN_KEY);
      if (navigator.serviceWorker?.controller) {
        navigator.serviceWorker.controller.postMessage({ type: 'log-ud' });
      }
      S.tasks = [];
      show('log-ind');
    });
    for (const b of $$('[data-handling="synkroniser"]')) {
      b.addEventListener('click', async () => {
        await sync();
        if (document.body.dataset.visning === 'opgaver' && navigator.onLine) await loadTasks();
      });
    }
    for (const list of [$('#opgave-liste'), $('#andre-liste')]) {
      list.addEventListener('click', (ev) => {
        const button = ev.target.closest('button[data-kort]');
        const task = button && cards.get(button.dataset.kort);
        if (task) openTask(task);
      });
    }
    $('#tilbage').addEventListener('click', (ev) => {
      ev.preventDefault();
      history.pushState(null, '', location.pathname + location.search);
      showTasks();
    });
    const form = $('#svar-form');
    form.addEventListener('input', onInput);
    form.addEventListener('change', onInput);
    form.addEventListener('submit', (ev) => ev.preventDefault());
    $('#tilfoej-rum').addEventListener('click', addRoom);
    $('#hent-position').addEventListener('click', () => recordPosition());
    $('#gem-kladde').addEventListener('click', saveAsDraft);
    $('#indsend').addEventListener('click', submit);
    window.addEventListener('online', () => { renderNet(); S.retry = 0; sync(); });
    window.addEventListener('offline', () => { renderNet(); renderOutbox(); renderSyncLabel(); });
    window.addEventListener('popstate', () => route());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && navigator.onLine) sync();
    });
  }

  async function start() {
    if (!('indexedDB' in window)) {
      $('#ikke-understoettet').hidden = false;
      return;
    }
    takeTokenFromUrl();
    wire();
    renderNet();
    registerServiceWorker();
    try {
      await db();
      if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
      S.outbox = new Set((await idb.all('udbakke')).map((e) => e.eftersyn_id));
      await route();
    } catch (e) {
      notify('Lageret på enheden kunne ikke åbnes: ' + e.message, 'fejl');
      return;
    }
    document.body.dataset.klar = '1';
    if (navigator.onLine) sync();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
