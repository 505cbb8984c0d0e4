/* Ly – the service worker of the inspector's form, served at /eftersyn/sw.js
 * (scope /eftersyn/, header Service-Worker-Allowed: /eftersyn/).
 *
 * It keeps what the form needs to load offline: the page, its script and styles (the
 * "shell"), and the API GETs the form reads (the tasks and the checklist templates).
 * Everything is network-first: online, the device always gets the current version; offline
 * (or when the network hangs for NETWORK_WAIT_MS), the kept copy, marked with the header
 * `X-Ly-Fra-Cache: 1`. Writes (PUT) are never touched: the page's outbox sends them.
 * The drafts and photos themselves live in IndexedDB (app.js), not here.
 */
'use strict';

const VERSION = 'v1';
const SHELL = `ly-eftersyn-skal-${VERSION}`;
const API = `ly-eftersyn-api-${VERSION}`;
const NETWORK_WAIT_MS = 6000;

const HERE = new URL('./', self.location.href);       // …/eftersyn/
const ROOT = new URL('../', self.location.href);      // the service root
const FORM = new URL('formular', HERE).href;
const SHELL_URLS = [
  FORM,
  new URL('static/eftersyn/app.js', ROOT).href,
  new URL('static/eftersyn/app.css', ROOT).href,
  new URL('static/ly.css', ROOT).href,
];
const API_PATHS = [
  new URL('eftersyn/opgaver', ROOT).pathname,
  new URL('tjeklister', ROOT).pathname,
];

async function keep(urls) {
  const cache = await caches.open(SHELL);
  await Promise.all(urls.map(async (url) => {
    try {
      const res = await fetch(new Request(url, { cache: 'reload', credentials: 'same-origin' }));
      if (res.ok) await cache.put(url, res);
    } catch (_) {
      // offline while installing: kept on the next visit
    }
  }));
}

self.addEventListener('install', (event) => {
  event.waitUntil(keep(SHELL_URLS).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((n) => n.startsWith('ly-eftersyn-') && n !== SHELL && n !== API)
      .map((n) => caches.delete(n)));
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  const msg = event.data || {};
  if (msg.type === 'gem' && Array.isArray(msg.urls)) {
    // the page's exact asset URLs (the static mount may differ from the guesses above)
    const same = msg.urls.filter((u) => {
      try { return new URL(u).origin === self.location.origin; } catch (_) { return false; }
    }).map((u) => u.split('#')[0]);
    event.waitUntil(keep(same));
  } else if (msg.type === 'log-ud') {
    // what one inspector fetched is not shown to the next one on this device
    event.waitUntil(caches.delete(API));
  }
});

function isApi(url) {
  return API_PATHS.some((p) => url.pathname === p || url.pathname.startsWith(p + '/'));
}

function isShell(url) {
  return SHELL_URLS.some((u) => new URL(u).pathname === url.pathname) ||
    url.pathname.startsWith(new URL('static/eftersyn/', ROOT).pathname);
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.mode === 'navigate') {
    if (url.pathname === new URL(FORM).pathname) {
      event.respondWith(networkFirst(req, SHELL, FORM));
    }
    return;
  }
  if (isApi(url)) {
    event.respondWith(networkFirst(req, API, null));
  } else if (isShell(url)) {
    event.respondWith(networkFirst(req, SHELL, url.origin + url.pathname));
  }
});

/** The network's answer (kept for later), or the kept copy when the network fails or hangs. */
async function networkFirst(req, cacheName, key) {
  const cache = await caches.open(cacheName);
  const cacheKey = key || req;
  const fromNetwork = fetch(req).then(async (res) => {
    if (res.ok && res.type === 'basic') await cache.put(cacheKey, res.clone());
    return res;
  });
  fromNetwork.catch(() => {});  // handled below; a late failure after a kept copy is fine
  let timer;
  const slow = new Promise((resolve) => { timer = setTimeout(resolve, NETWORK_WAIT_MS, null); });
  try {
    const first = await Promise.race([fromNetwork, slow]);
    if (first) return first;
    // the network hangs: a kept copy now, if there is one; otherwise keep waiting
    const kept = await cached(cache, cacheKey);
    return kept || await fromNetwork;
  } catch (err) {
    const kept = await cached(cache, cacheKey);
    if (kept) return kept;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function cached(cache, key) {
  const res = await cache.match(key, { ignoreVary: true, ignoreSearch: typeof key === 'string' });
  if (!res) return null;
  const headers = new Headers(res.headers);
  headers.set('X-Ly-Fra-Cache', '1');
  return new Response(await res.blob(), { status: res.status, statusText: res.statusText,
                                          headers });
}
