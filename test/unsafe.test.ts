/**
 * Invalidation after unsafe methods (RFC 9111 4.4), through a real nginx: a POST, PUT, DELETE or a
 * method the app does not know as safe, answered 2xx/3xx, makes the next GET of its URL (and of its
 * same-origin Location / Content-Location) a miss; error answers, safe methods and other origins don't.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import { invalidationTargets } from '../src/unsafe.js';
import { Gate, nginxAvailable, request, setUpSuite, startCachedSite, stopCachedSite, type CachedSite } from './helpers.js';

const hasNginx = nginxAvailable();
const html = 'text/html; charset=utf-8';
const host = 'www.example.com';

interface Site extends CachedSite {
  version: number;
  /** When set, a GET of /slow holds here after reading the version, until the test releases it. */
  slowGate?: Gate | undefined;
}

/** GETs render the version; other methods answer with the status and headers the request's x- headers ask for. */
function app(site: Site) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET') {
      const version = site.version;
      if (url.pathname === '/slow') await site.slowGate?.pass();
      res.writeHead(200, { 'Content-Type': html });
      res.end(`<p>${url.pathname} v${version}</p>`);
      return;
    }
    for await (const _ of req) void _;
    site.version++;
    const status = Number(req.headers['x-status'] ?? 200);
    const headers: Record<string, string> = { 'Content-Type': 'text/plain' };
    const location = req.headers['x-location'];
    const contentLocation = req.headers['x-content-location'];
    if (typeof location === 'string') headers.Location = location;
    if (typeof contentLocation === 'string') headers['Content-Location'] = contentLocation;
    res.writeHead(status, headers);
    res.end('done');
  };
}

const get = (site: Site, target: string, hostName = host) => request(site.nginx.port, target, { headers: { host: hostName } });
const send = (site: Site, method: string, target: string, answer: Record<string, string> = {}, hostName = host) =>
  request(site.nginx.port, target, { method, headers: { host: hostName, 'content-length': '0', ...answer } });

async function warm(site: Site, targets: string[], hostName = host): Promise<void> {
  for (const target of targets) await get(site, target, hostName);
  await site.cache.idle();
  for (const target of targets) assert.is((await get(site, target, hostName)).headers['x-cache'], 'HIT', `${target} is stored`);
}

// ---

const methods = suite<Site>('unsafe methods invalidate their target');
setUpSuite(methods, async (site) => {
  if (!hasNginx) return;
  site.version = 1;
  await startCachedSite(site, app(site));
}, stopCachedSite);

methods('POST, PUT, DELETE, PATCH and an unknown method (REPORT), each followed by a GET that misses', async (site) => {
  if (!hasNginx) return;
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'REPORT']) {
    const target = `/m-${method.toLowerCase()}`;
    await warm(site, [target]);
    const answer = await send(site, method, target);
    assert.is(answer.status, 200, method);
    const next = await get(site, target);
    assert.is(next.headers['x-cache'], 'MISS', `GET after ${method}`);
    assert.is(next.body.toString(), `<p>${target} v${site.version}</p>`);
  }
});

methods('error answers, safe methods and query-string targets leave the page', async (site) => {
  if (!hasNginx) return;
  await warm(site, ['/kept']);
  assert.is((await send(site, 'POST', '/kept', { 'x-status': '500' })).status, 500);
  assert.is((await send(site, 'DELETE', '/kept', { 'x-status': '404' })).status, 404);
  assert.is((await send(site, 'OPTIONS', '/kept')).status, 200);
  // Another URI: /kept?x=1 is never stored, and /kept is not it.
  assert.is((await send(site, 'POST', '/kept?x=1')).status, 200);
  assert.is((await get(site, '/kept')).headers['x-cache'], 'HIT');
  // A 204 is a non-error answer: it does invalidate.
  assert.is((await send(site, 'POST', '/kept', { 'x-status': '204' })).status, 204);
  assert.is((await get(site, '/kept')).headers['x-cache'], 'MISS');
});

methods('Location and Content-Location: same-origin ones are invalidated, cross-origin ones are not', async (site) => {
  if (!hasNginx) return;
  await warm(site, ['/loc-rel', '/loc-abs', '/cl-rel', '/cl-abs', '/loc-other', '/cl-other', '/dir/sibling']);
  const cases: Array<[string, string, string]> = [
    ['location', '/loc-rel', 'MISS'],
    ['location', `http://${host}/loc-abs`, 'MISS'],
    ['content-location', '/cl-rel', 'MISS'],
    ['content-location', `https://${host.toUpperCase()}/cl-abs`, 'MISS'],
    ['location', 'http://other.example/loc-other', 'HIT'],
    ['content-location', '//other.example/cl-other', 'HIT'],
  ];
  for (const [header, value] of cases) {
    const answer = await send(site, 'POST', '/form', { 'x-status': '303', [`x-${header}`]: value });
    assert.is(answer.status, 303);
  }
  for (const [header, value, expected] of cases) {
    const target = new URL(value, 'http://x').pathname;
    assert.is((await get(site, target)).headers['x-cache'], expected, `${header}: ${value}`);
  }
  // Relative to the request's path, as a browser resolves it.
  await send(site, 'PUT', '/dir/form', { 'x-status': '201', 'x-location': 'sibling' });
  assert.is((await get(site, '/dir/sibling')).headers['x-cache'], 'MISS');
});

methods('a render that started before the POST cannot store the old page after it', async (site) => {
  if (!hasNginx) return;
  const gate = new Gate();
  site.slowGate = gate;
  const versionBefore = site.version;
  const slow = get(site, '/slow');
  // The render has read the old data before the POST, and answers only after it: the race, every time.
  await gate.entered;
  await send(site, 'POST', '/slow');
  gate.release();
  const old = await slow;
  site.slowGate = undefined;
  await site.cache.idle();
  assert.match(old.body.toString(), `v${versionBefore}<`, 'the render answered with the data from before the POST');
  const next = await get(site, '/slow');
  assert.is(next.headers['x-cache'], 'MISS', 'the render that read the old data was not stored');
});

methods.run();

// ---

const sites = suite<Site>('unsafe methods in a multi-site root');
setUpSuite(sites, async (site) => {
  if (!hasNginx) return;
  site.version = 1;
  const hosts = ['a.example', 'b.example'];
  await startCachedSite(site, app(site), { hosts, multiSite: true }, { hosts, multiSite: true });
}, stopCachedSite);

sites('a POST to a.example/x invalidates a.example/x only', async (site) => {
  if (!hasNginx) return;
  await warm(site, ['/x'], 'a.example');
  await warm(site, ['/x'], 'b.example');
  assert.is((await send(site, 'POST', '/x', {}, 'a.example')).status, 200);
  assert.is((await get(site, '/x', 'a.example')).headers['x-cache'], 'MISS');
  assert.is((await get(site, '/x', 'b.example')).headers['x-cache'], 'HIT');
  // Location naming the other site is cross-origin for this one.
  await send(site, 'POST', '/y', { 'x-location': 'http://b.example/x' }, 'a.example');
  assert.is((await get(site, '/x', 'b.example')).headers['x-cache'], 'HIT');
});

sites.run();

// ---

const framework = suite<Site>('unsafe methods under Express');
setUpSuite(framework, async (site) => {
  if (!hasNginx) return;
  site.version = 1;
  await startCachedSite(site, (req, res) => {
    const app = express();
    app.get('/posts/:id', (request, response) => {
      response.type('html').send(`<p>post ${request.params.id} v${site.version}</p>`);
    });
    app.post('/posts/:id', (request, response) => {
      site.version++;
      response.redirect(303, `/posts/${request.params.id}`);
    });
    app(req, res);
  });
}, stopCachedSite);

framework('a POST answered with res.redirect(303) purges the page it redirects to before the 303 leaves', async (site) => {
  if (!hasNginx) return;
  await warm(site, ['/posts/1']);
  const answer = await send(site, 'POST', '/posts/1');
  assert.is(answer.status, 303);
  const next = await get(site, '/posts/1');
  assert.is(next.headers['x-cache'], 'MISS');
  assert.is(next.body.toString(), '<p>post 1 v2</p>');
});

framework.run();

// ---

const targets = suite('invalidationTargets');

targets('request path, relative and absolute references; query strings and foreign hosts are left out', () => {
  assert.equal(invalidationTargets('/a/b', host, '../c', `http://${host}:8080/d`), ['/a/b', '/c', '/d']);
  assert.equal(invalidationTargets('/a?x=1', host, '/e?y', 'http://evil.example/f'), []);
  assert.equal(invalidationTargets(`http://${host}/g`, host, undefined, undefined), ['/g']);
  assert.equal(invalidationTargets('/h', undefined, `http://${host}/i`, '//x.example/j'), ['/h']);
  assert.equal(invalidationTargets('/k/../l', host, 'mailto:a@b', 'javascript:x'), []);
});

targets.run();
