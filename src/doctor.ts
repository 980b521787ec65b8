/**
 * `prerender doctor`: is nginx really serving the cache? The most common complaint about page caches
 * is "it writes files but nothing is served from them", so this stores a probe page, requests it through
 * the public URL, and checks each thing that commonly goes wrong, saying how to fix it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import fetch from 'node-fetch';
import { CacheRoot } from './cache-root.js';
import { PrerenderError } from './errors.js';
import { STATE_DIR } from './url-path.js';
import { agentCheck } from './fleet/status.js';

export interface DoctorCheck {
  check: string;
  ok: boolean;
  detail: string;
  /** What to do about it, when `ok` is false. */
  fix?: string;
}

interface Reply {
  status: number;
  xCache: string | null;
  body: string;
}

export interface DoctorOptions {
  /** The site as clients reach it, e.g. `https://www.example.com`: where the probes connect. */
  url: string;
  root: string;
  /**
   * The Host header to send instead of the URL's, to test a config with a host allowlist from the
   * machine itself: `{ url: 'http://127.0.0.1', host: 'www.example.com' }`. Over https it is also
   * the name sent for SNI and checked against the certificate.
   */
  host?: string;
  /** @default 10_000 */
  timeoutMs?: number;
}

const hostHeader = /^([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/i;

export async function doctor(options: DoctorOptions): Promise<DoctorCheck[]> {
  let base: URL;
  try {
    base = new URL(options.url);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new PrerenderError('EUSAGE', `--url ${JSON.stringify(options.url)} is not an http(s) URL (e.g. https://www.example.com)`, { input: options.url });
  }
  if (options.host !== undefined && !hostHeader.test(options.host)) {
    throw new PrerenderError('EUSAGE', `--host ${JSON.stringify(options.host)} is not a host name (e.g. www.example.com, or www.example.com:8080)`, { input: options.host });
  }
  const host = options.host ?? base.host;
  const agent = options.host !== undefined && base.protocol === 'https:' ? new https.Agent({ servername: options.host.replace(/:\d+$/, '') }) : undefined;
  const root = new CacheRoot(options.root, { durable: false });
  await root.store.checkRoot();
  const checks: DoctorCheck[] = [];
  const add = (check: DoctorCheck): DoctorCheck => {
    checks.push(check);
    return check;
  };
  const timeoutMs = options.timeoutMs ?? 10_000;
  const get = async (pathname: string, method = 'GET'): Promise<Reply | string> => {
    try {
      const response = await fetch(new URL(pathname, base), {
        method,
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
        headers: { 'accept-encoding': 'identity', ...(options.host === undefined ? {} : { host: options.host }) },
        ...(agent === undefined ? {} : { agent }),
      });
      return { status: response.status, xCache: response.headers.get('x-cache'), body: await response.text() };
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    }
  };

  add(await permissions(root.root));

  const name = `__prerender-doctor-${randomBytes(6).toString('hex')}.html`;
  const probe = path.join(root.root, name);
  const canary = path.join(root.store.stateDir, `doctor-${randomBytes(6).toString('hex')}.txt`);
  const write = async (body: string): Promise<void> => {
    await root.store.writeFile(name, body);
  };
  try {
    await write('prerender doctor probe v1');
    const first = await get(`/${name}`);
    // The generated config sends a request to the app before any location when it fails a server-wide
    // rule; the state directory's location would answer 404 itself. Doctor sends no cookie, credential
    // or query, so what is left of those rules is the host allowlist.
    const early = typeof first !== 'string' && first.xCache === 'MISS' ? await get(`/${STATE_DIR}/${name}`) : undefined;
    const allowlisted = early === undefined || typeof early === 'string' || early.xCache !== 'MISS';
    const served = add(allowlisted ? servedCheck(first, root.root) : hostRefused(first, host));
    if (served.ok) {
      const second = await get(`/${name}`);
      const repeated = isHit(second, 'v1');
      add({
        check: 'repeat hits come from disk',
        ok: repeated,
        detail: describe(second),
        ...(repeated ? {} : { fix: 'the same file came from disk once and not again: is a proxy or CDN in front of --url answering from its own cache, or do the servers behind it serve different roots?' }),
      });

      await write('prerender doctor probe v2');
      const updated = await get(`/${name}`);
      add({
        check: 'a rewritten file is served at once',
        ok: isHit(updated, 'v2'),
        detail: describe(updated),
        fix: 'turn open_file_cache off for the cache root (it keeps serving the old file)',
      });

      const query = await get(`/${name}?prerender-doctor=1`);
      add({
        check: 'requests with a query string go to the app',
        ok: typeof query !== 'string' && query.xCache !== 'HIT',
        detail: describe(query),
        fix: 'send requests with a query string to the app (`prerender nginx` does): nginx cannot key a file on them',
      });
      const post = await get(`/${name}`, 'POST');
      add({
        check: 'POST goes to the app, not a 405 from nginx',
        ok: typeof post !== 'string' && post.status !== 405 && post.xCache !== 'HIT',
        detail: describe(post),
        fix: 'send methods other than GET and HEAD to the app (`prerender nginx` does)',
      });
    }

    await root.store.unlinkFile(probe);
    if (served.ok) {
      const purged = await get(`/${name}`);
      add({
        check: 'a deleted file stops being served',
        ok: typeof purged !== 'string' && purged.xCache !== 'HIT',
        detail: describe(purged),
        fix: 'turn open_file_cache off for the cache root: purged pages are still being served',
      });
    }

    // A canary in the state directory: if nginx hands it out, it would hand out the index and temp files.
    await root.store.writeFile(path.basename(canary), 'prerender doctor canary.txt', { state: true });
    const state = await get(`/${STATE_DIR}/${path.basename(canary)}`);
    add({
      check: `the state directory /${STATE_DIR}/ is denied`,
      ok: typeof state !== 'string' && state.status !== 200 && !state.body.includes('canary'),
      detail: describe(state),
      fix: `deny /${STATE_DIR}/ in nginx (\`location ^~ /${STATE_DIR}/ { return 404; }\`): it holds the index and temp files`,
    });
  } finally {
    await root.store.unlinkFile(probe);
    await root.store.unlinkFile(canary);
  }
  const fleetAgent = await agentCheck(options.root);
  if (fleetAgent !== undefined) add(fleetAgent);
  return checks.map((check) => (check.ok ? { check: check.check, ok: true, detail: check.detail } : check));
}

function servedCheck(reply: Reply | string, root: string): DoctorCheck {
  const check = 'nginx serves files stored in the root';
  if (typeof reply === 'string') {
    return { check, ok: false, detail: `request failed: ${reply}`, fix: 'nothing answers at --url: is nginx running and listening there?' };
  }
  if (isHit(reply, 'v1')) return { check, ok: true, detail: 'probe page served from disk with X-Cache: HIT' };
  if (reply.status === 403) {
    return { check, ok: false, detail: describe(reply), fix: `nginx may not read ${root}: every directory above it needs o+x, files o+r (see the permissions check)` };
  }
  if (reply.status === 200 && reply.body.includes('prerender doctor probe') && reply.xCache === null) {
    return { check, ok: false, detail: 'the probe came back without X-Cache: HIT', fix: 'use the config `prerender nginx` prints (it marks disk hits with X-Cache), or check a CDN is not stripping it' };
  }
  return {
    check,
    ok: false,
    detail: describe(reply),
    fix: `nginx is not serving ${root}: its \`root\` must be that directory and \`try_files $uri/index.html $uri @app\` must come before the app (run \`prerender nginx\`)`,
  };
}

function hostRefused(reply: Reply | string, host: string): DoctorCheck {
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return {
    check: 'nginx serves files stored in the root',
    ok: false,
    detail: `${describe(reply)}: nginx sends requests for host ${JSON.stringify(name)} to the app before it looks at the disk`,
    fix: `the config's host allowlist (\`prerender nginx --host\`) does not list ${JSON.stringify(name)}: run doctor with --host <a listed name> (it still connects to --url), or give the public --url`,
  };
}

function isHit(reply: Reply | string, version: string): boolean {
  return typeof reply !== 'string' && reply.status === 200 && reply.xCache === 'HIT' && reply.body === `prerender doctor probe ${version}`;
}

function describe(reply: Reply | string): string {
  if (typeof reply === 'string') return `request failed: ${reply}`;
  return `status ${reply.status}, X-Cache: ${reply.xCache ?? '(none)'}`;
}

/** nginx's workers run as another user: every directory from / to the root must be world-searchable. */
async function permissions(root: string): Promise<DoctorCheck> {
  const blocked: string[] = [];
  for (let dir = root; ; dir = path.dirname(dir)) {
    const stats = await fs.stat(dir);
    if ((stats.mode & 0o001) === 0) blocked.push(dir);
    if (dir === path.dirname(dir)) break;
  }
  const unreadable: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 3 || unreadable.length >= 5) return;
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      if (entry.name === STATE_DIR) continue;
      const full = path.join(dir, entry.name);
      const stats = await fs.stat(full).catch(() => undefined);
      if (stats === undefined) continue;
      if (entry.isDirectory() && (stats.mode & 0o005) !== 0o005) unreadable.push(full);
      else if (entry.isFile() && (stats.mode & 0o004) === 0) unreadable.push(full);
      if (entry.isDirectory()) await walk(full, depth + 1);
    }
  };
  await walk(root, 0);
  const check = "nginx's worker can reach and read the cache";
  if (blocked.length === 0 && unreadable.length === 0) return { check, ok: true, detail: 'every directory is world-searchable and files world-readable' };
  const fixes = [
    ...blocked.map((dir) => `chmod o+x ${dir}`),
    ...(unreadable.length > 0 ? [`chmod -R o+rX ${root}`] : []),
  ];
  return { check, ok: false, detail: [...blocked.map((d) => `${d} is not searchable by others`), ...unreadable.map((f) => `${f} is not readable by others`)].join('; '), fix: fixes.join(' && ') };
}
