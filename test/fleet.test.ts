/**
 * Several hosts through one Redis stream: real redis-server, real `prerender agent` processes, real
 * roots on disk. Each suite starts its own Redis and kills everything it started in its tear-down.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import pLimit from 'p-limit';
import { PrerenderError, createCache, type Cache } from '../src/index.js';
import { CacheRoot } from '../src/cache-root.js';
import { publishPurge } from '../src/fleet/publish.js';
import { agentCheck } from '../src/fleet/status.js';
import { fleetDir, readPosition, readStatus } from '../src/fleet/state.js';
import { FleetRedis, compareIds } from '../src/fleet/stream.js';
import { Gate, freePort, storePage, listFiles, nginxAvailable, startNginx, removeDir, request, runCli, setUpSuite, sleep, startServer, tempDir, waitFor, type Server } from './helpers.js';
import { redisAvailable, startAgentProcess, startRedis, waitForLog, type AgentProcess, type RedisServer } from './redis-helpers.js';

const hasRedis = redisAvailable();


/** A deterministic random source, so a failing mix can be replayed. */
function rng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

interface Fleet {
  redis: RedisServer;
  dir: string;
  roots: string[];
  agents: AgentProcess[];
  link: FleetRedis;
}

async function startFleet(fleet: Fleet, hosts: number, args: string[] = []): Promise<void> {
  fleet.redis = await startRedis();
  fleet.dir = await tempDir();
  fleet.roots = [];
  fleet.agents = [];
  for (let host = 1; host <= hosts; host++) {
    const root = path.join(fleet.dir, `host${host}`);
    await new CacheRoot(root).init();
    fleet.roots.push(root);
    fleet.agents.push(startAgentProcess(root, fleet.redis.url, `host${host}`, { args }));
  }
  for (const agent of fleet.agents) await waitForLog(agent, 'connected to');
  fleet.link = new FleetRedis(fleet.redis.url, { persistent: true });
}

async function stopFleet(fleet: Partial<Fleet>): Promise<void> {
  await fleet.link?.close();
  await Promise.all((fleet.agents ?? []).map((agent) => agent.stop()));
  await fleet.redis?.stop();
  if (fleet.dir !== undefined) await removeDir(fleet.dir);
}

// --- three hosts, 1,000 mixed purges, every root against a model

const mixed = suite<Fleet>('fleet: 1,000 mixed purges through three agents leave every root as the model says');
if (hasRedis) setUpSuite(mixed, (fleet) => startFleet(fleet, 3), stopFleet);

mixed('path, prefix, tag and all purges, in rounds, applied identically on three hosts', async (fleet) => {
  const random = rng(16);
  const limit = pLimit(8);
  const roots = fleet.roots.map((root) => new CacheRoot(root, { durable: false }));
  const pageTags = (section: number, page: number): string[] => [`t${page % 7}`, `s${section}`];
  let published = 0;
  for (let round = 0; round < 5; round++) {
    const model = new Map<string, string[]>();
    const stores: Array<Promise<void>> = [];
    for (let section = 0; section < 4; section++) {
      for (let page = 0; page < 20; page++) {
        const urlPath = `/s${section}/p${page}`;
        model.set(urlPath, pageTags(section, page));
        for (const root of roots) stores.push(limit(() => storePage(root, urlPath, pageTags(section, page))));
      }
    }
    await Promise.all(stores);
    let last = '';
    for (let purge = 0; purge < 200; purge++) {
      const pick = random();
      const section = Math.floor(random() * 4);
      const page = Math.floor(random() * 26);
      let selector;
      if (round === 2 && purge === 150) {
        selector = { all: true };
        model.clear();
      } else if (pick < 0.5) {
        selector = { paths: [`/s${section}/p${page}`] };
        model.delete(`/s${section}/p${page}`);
      } else if (pick < 0.75) {
        const tag = random() < 0.5 ? `t${page % 7}` : `s${section}`;
        selector = { tags: [tag] };
        for (const [urlPath, tags] of model) if (tags.includes(tag)) model.delete(urlPath);
      } else {
        const prefix = random() < 0.3 ? `/s${section}/` : `/s${section}/p${page % 4}`;
        selector = { prefix };
        for (const urlPath of model.keys()) if (urlPath.startsWith(prefix)) model.delete(urlPath);
      }
      last = (await publishPurge(fleet.link, selector)).id;
      published++;
    }
    const waited = await publishPurge(fleet.link, { paths: ['/nothing'] }, { waitMs: 30_000 });
    assert.equal(waited.applied.sort(), ['host1', 'host2', 'host3']);
    assert.ok(compareIds(waited.id, last) > 0);
    const expected = [...model.keys()].map((urlPath) => `${urlPath.slice(1)}/index.html`).sort();
    for (const root of fleet.roots) assert.equal(await listFiles(root), expected, `${root} after round ${round}`);
    // The next round's renders start after this round's purges were applied.
    await sleep(5);
  }
  assert.is(published, 1000);
  for (const root of fleet.roots) {
    const position = await readPosition(fleetDir(root));
    assert.ok(position !== undefined);
  }
});

mixed('fleet status lists every host as live, storing and caught up; doctor\'s check agrees', async (fleet) => {
  await publishPurge(fleet.link, { paths: ['/status'] }, { waitMs: 10_000 });
  const result = await runCli(['fleet', 'status', '--redis', fleet.redis.url, '--json']);
  assert.is(result.code, 0, result.stderr);
  const status = JSON.parse(result.stdout) as { hosts: Array<{ host: string; live: boolean; storing: boolean; lagMs: number; applied: string }> };
  assert.equal(status.hosts.map((host) => host.host), ['host1', 'host2', 'host3']);
  for (const host of status.hosts) {
    assert.ok(host.live && host.storing, JSON.stringify(host));
    assert.is(host.lagMs, 0);
  }
  const text = await runCli(['fleet', 'status', '--redis', fleet.redis.url]);
  assert.match(text.stdout, /host2\s+\d+-\d+\s+0 ms/);
  const check = await agentCheck(fleet.roots[0] as string);
  assert.ok(check?.ok, JSON.stringify(check));
});

mixed('an entry that is not a purge is skipped and said so; the next purge still applies', async (fleet) => {
  const garbage = await fleet.link.publish('{"kind":"purge","selector":{"paths":["/../../etc/passwd"]}}');
  const root = new CacheRoot(fleet.roots[0] as string, { durable: false });
  await storePage(root, '/kept', ['k']);
  await fleet.link.publish('not json');
  await publishPurge(fleet.link, { tags: ['k'] }, { waitMs: 10_000 });
  assert.not.ok((await listFiles(fleet.roots[0] as string)).includes('kept/index.html'));
  await waitForLog(fleet.agents[0] as AgentProcess, `skipping entry ${garbage}`);
  assert.match(fleet.agents[0]?.log() ?? '', /skipping entry .*: not JSON/);
});

mixed.run();

// --- an agent killed between deleting and recording

const crash = suite<Fleet>('fleet: an agent SIGKILLed after deleting and before recording misses nothing');
if (hasRedis) setUpSuite(crash, (fleet) => startFleet(fleet, 1), stopFleet);

crash('restarted, it applies the entry again and everything after it', async (fleet) => {
  const rootDir = fleet.roots[0] as string;
  await fleet.agents[0]?.stop();
  const root = new CacheRoot(rootDir, { durable: false });
  for (let page = 0; page < 10; page++) await storePage(root, `/p${page}`, []);
  const killed = startAgentProcess(rootDir, fleet.redis.url, 'host1', { env: { PRERENDER_AGENT_TEST_KILL_AFTER_APPLY: '3' } });
  fleet.agents = [killed];
  await waitForLog(killed, 'connected to');
  const ids: string[] = [];
  for (let page = 0; page < 5; page++) ids.push((await publishPurge(fleet.link, { paths: [`/p${page}`] })).id);
  const exit = await killed.exited;
  assert.is(exit.signal, 'SIGKILL');
  // The precondition: the third purge deleted its file, and its position was not recorded.
  const marker = await fs.readFile(path.join(fleetDir(rootDir), 'killed-after-apply'), 'utf8');
  assert.is(marker, ids[2]);
  const files = await listFiles(rootDir);
  assert.not.ok(files.includes('p2/index.html'));
  assert.ok(files.includes('p3/index.html'), 'the fourth purge was not applied before the kill');
  const recorded = await readPosition(fleetDir(rootDir));
  assert.ok(recorded !== undefined && compareIds(recorded, ids[2] as string) < 0, `position ${recorded} is before ${ids[2]}`);

  const restarted = startAgentProcess(rootDir, fleet.redis.url, 'host1');
  fleet.agents = [restarted];
  await publishPurge(fleet.link, { paths: ['/p5'] }, { waitMs: 10_000 });
  assert.equal(await listFiles(rootDir), ['p6/index.html', 'p7/index.html', 'p8/index.html', 'p9/index.html']);
  assert.not.match(restarted.log(), /dropping/);
});

crash.run();

// --- a render on host 3 that started before a purge published on host 1


interface RaceFleet extends Fleet {
  publisher: Cache;
  host3: Cache;
  app: Server;
  events: string[];
}

const race = suite<RaceFleet>('fleet: a render on host 3 that started before a purge published on host 1 is not stored');
if (hasRedis) {
  setUpSuite(race, async (fleet) => {
    await startFleet(fleet, 3);
    fleet.events = [];
    fleet.publisher = createCache({ root: fleet.roots[0] as string, fleet: { redis: fleet.redis.url, waitMs: 10_000 }, log: () => undefined });
    fleet.host3 = createCache({
      // Without coalescing: the held request must reach the handler, not share the page just stored.
      root: fleet.roots[2] as string, fleet: { redis: fleet.redis.url }, log: () => undefined, coalesce: false,
      onEvent: (event) => fleet.events.push(event.type === 'stored' ? `stored ${event.urlPath}` : `skipped ${event.urlPath}: ${event.reason}`),
    });
  }, async (fleet) => {
    await fleet.app?.close();
    await fleet.publisher?.close();
    await fleet.host3?.close();
    await stopFleet(fleet);
  });
}

race('once the fleet purge returned, the old render is refused on host 3, and a new one stores', async (fleet) => {
  let data = 'old';
  let gate: Gate | undefined;
  fleet.app = await startServer(fleet.host3.wrap((req: IncomingMessage, res: ServerResponse) => {
    const read = data;
    const held = gate;
    void (async () => {
      if (held !== undefined && req.url === '/page') await held.pass();
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<p>${read}</p>`);
    })();
  }));
  const file = path.join(fleet.roots[2] as string, 'page', 'index.html');
  await waitFor(async () => {
    await request(fleet.app.port, '/page');
    await fleet.host3.idle();
    return (await fs.readFile(file, 'utf8').catch(() => '')) === '<p>old</p>';
  }, 10_000, 'host 3 storing the old page');

  gate = new Gate();
  const slow = request(fleet.app.port, '/page');
  await gate.entered;
  data = 'new';
  const result = await fleet.publisher.purge({ paths: ['/page'] });
  assert.equal(result.fleet?.applied.sort(), ['host1', 'host2', 'host3']);
  assert.not.ok(await fs.stat(file).then(() => true, () => false), 'the purge removed the old page on host 3');
  gate.release();
  assert.is((await slow).body.toString(), '<p>old</p>');
  await fleet.host3.idle();
  assert.not.ok(await fs.stat(file).then(() => true, () => false), 'the render that read old data was not stored');
  assert.ok(fleet.events.some((event) => /skipped \/page: .*purged while it rendered/.test(event)), fleet.events.join('\n'));

  gate = undefined;
  await request(fleet.app.port, '/page');
  await fleet.host3.idle();
  assert.is(await fs.readFile(file, 'utf8'), '<p>new</p>');
});

race.run();

// --- an unsafe request on one host invalidates on every host

interface UnsafeFleet extends Fleet {
  cache: Cache;
  app: Server;
}

const unsafe = suite<UnsafeFleet>('fleet: a POST answered on host 1 invalidates its page on every host');
if (hasRedis) {
  setUpSuite(unsafe, async (fleet) => {
    await startFleet(fleet, 2);
    fleet.cache = createCache({ root: fleet.roots[0] as string, fleet: { redis: fleet.redis.url, waitMs: 10_000 }, log: () => undefined });
    fleet.app = await startServer(fleet.cache.wrap((req: IncomingMessage, res: ServerResponse) => {
      if (req.method === 'POST') {
        res.writeHead(303, { location: '/other' });
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<p>page</p>');
    }));
  }, async (fleet) => {
    await fleet.app?.close();
    await fleet.cache?.close();
    await stopFleet(fleet);
  });
}

unsafe('once the 303 has arrived, /page and its Location are gone from host 2 too', async (fleet) => {
  const host2 = new CacheRoot(fleet.roots[1] as string, { durable: false });
  await storePage(host2, '/page', ['x']);
  await storePage(host2, '/other', ['x']);
  await storePage(host2, '/kept', ['x']);
  const reply = await request(fleet.app.port, '/page', { method: 'POST' });
  assert.is(reply.status, 303);
  const left = await listFiles(fleet.roots[1] as string);
  assert.not.ok(left.includes('page/index.html'), left.join(', '));
  assert.not.ok(left.includes('other/index.html'), left.join(', '));
  assert.ok(left.includes('kept/index.html'), left.join(', '));
});

unsafe.run();

// --- the stream trimmed past a stopped agent

const trimmed = suite<Fleet>('fleet: a host whose place in the stream was trimmed away drops its tree on restart');
if (hasRedis) setUpSuite(trimmed, (fleet) => startFleet(fleet, 2, ['--retention', '1500']), stopFleet);

trimmed('the stopped host counts as gone after the retention, the stream is trimmed, and it starts empty', async (fleet) => {
  const gone = fleet.roots[1] as string;
  const root = new CacheRoot(gone, { durable: false });
  for (let page = 0; page < 5; page++) await storePage(root, `/p${page}`, ['x']);
  await fleet.agents[1]?.stop();
  const stoppedAt = await readPosition(fleetDir(gone));
  assert.ok(stoppedAt !== undefined);
  // While it is within the retention, a waiting purge names it.
  try {
    await publishPurge(fleet.link, { paths: ['/p0'] }, { waitMs: 300 });
    assert.unreachable('host2 is down but live');
  } catch (error) {
    assert.instance(error, PrerenderError);
    assert.is((error as PrerenderError).code, 'EFLEET');
    assert.equal((error as PrerenderError).hosts, ['host2']);
  }
  for (let entry = 0; entry < 3; entry++) await publishPurge(fleet.link, { paths: [`/q${entry}`] });
  await waitFor(async () => {
    const info = await fleet.link.info();
    return info.entriesAdded > info.length && compareIds(info.firstId, stoppedAt) > 0;
  }, 10_000, 'the stream trimmed past host2');
  // Gone: purges no longer wait for it.
  const result = await publishPurge(fleet.link, { paths: ['/p1'] }, { waitMs: 5_000 });
  assert.equal(result.applied, ['host1']);
  const status = JSON.parse((await runCli(['fleet', 'status', '--redis', fleet.redis.url, '--json'])).stdout) as { hosts: Array<{ host: string; live: boolean; storing: boolean }> };
  assert.equal(status.hosts.find((host) => host.host === 'host2'), { ...status.hosts.find((host) => host.host === 'host2'), live: false, storing: false });

  if (nginxAvailable()) {
    // doctor on each host: the stopped agent fails the fleet check (and says what to do), the running one passes.
    const app = await startServer((_req, res) => res.writeHead(404).end());
    try {
      for (const [root, ok] of [[fleet.roots[0] as string, true], [gone, false]] as const) {
        const nginx = await startNginx({ root, upstream: app.url });
        try {
          const result = await runCli(['doctor', '--url', nginx.url, '--root', root, '--json']);
          const report = JSON.parse(result.stdout) as { checks: Array<{ check: string; ok: boolean; fix?: string }> };
          const check = report.checks.find((entry) => entry.check.startsWith('the fleet agent'));
          assert.is(check?.ok, ok, result.stdout);
          if (!ok) {
            assert.is(result.code, 1);
            assert.match(check?.fix ?? '', /prerender agent/);
          }
        } finally {
          await nginx.stop();
        }
      }
    } finally {
      await app.close();
    }
  }

  const back = startAgentProcess(gone, fleet.redis.url, 'host2', { args: ['--retention', '1500'] });
  fleet.agents[1] = back;
  await waitForLog(back, 'connected to');
  assert.match(back.log(), /was trimmed away while it was gone .*dropping the whole tree/, back.log());
  assert.equal(await listFiles(gone), []);
  const after = await publishPurge(fleet.link, { paths: ['/p2'] }, { waitMs: 5_000 });
  assert.equal(after.applied.sort(), ['host1', 'host2']);
});

trimmed('a Redis that lost its data (restarted without its append-only file): every host drops its tree', async (fleet) => {
  const root = new CacheRoot(fleet.roots[0] as string, { durable: false });
  for (let page = 0; page < 3; page++) await storePage(root, `/lost${page}`, []);
  await fleet.redis.kill();
  await fs.rm(path.join(fleet.redis.dir, 'appendonlydir'), { recursive: true, force: true });
  await fleet.redis.restart();
  for (const agent of fleet.agents) await waitForLog(agent, /not the one this host applied up to .*dropping the whole tree/);
  // The log line comes first, then the tree goes, then the agent reads on.
  for (const agent of fleet.agents) await waitForLog(agent, /dropping the whole tree[^\n]*\n[^\n]*connected to/);
  assert.equal(await listFiles(fleet.roots[0] as string), []);
  const result = await publishPurge(fleet.link, { paths: ['/again'] }, { waitMs: 10_000 });
  assert.equal(result.applied.sort(), ['host1', 'host2']);
});

trimmed.run();

// --- Redis SIGKILLed and restarted mid-stream

interface OutageFleet extends Fleet {
  cache: Cache;
  app: Server;
  events: string[];
  logs: string[];
}

const outage = suite<OutageFleet>('fleet: Redis killed and restarted mid-stream');
if (hasRedis) {
  setUpSuite(outage, async (fleet) => {
    await startFleet(fleet, 2);
    fleet.events = [];
    fleet.logs = [];
    fleet.cache = createCache({
      root: fleet.roots[0] as string, fleet: { redis: fleet.redis.url, waitMs: 10_000 }, log: (message) => fleet.logs.push(message),
      onEvent: (event) => fleet.events.push(event.type === 'stored' ? `stored ${event.urlPath}` : `skipped ${event.urlPath}: ${event.reason}`),
    });
    fleet.app = await startServer(fleet.cache.wrap((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<p>${req.url ?? ''}</p>`);
    }));
  }, async (fleet) => {
    await fleet.app?.close();
    await fleet.cache?.close();
    await stopFleet(fleet);
  });
}

outage('stores pause while Redis is away, agents reconnect without hanging, nothing is missed', async (fleet) => {
  const roots = fleet.roots.map((root) => new CacheRoot(root, { durable: false }));
  for (let page = 0; page < 40; page++) for (const root of roots) await storePage(root, `/p${page}`, [`t${page % 4}`]);
  for (let page = 0; page < 10; page++) await publishPurge(fleet.link, { paths: [`/p${page}`] });
  await publishPurge(fleet.link, { tags: ['t0'] }, { waitMs: 10_000 });

  await fleet.redis.kill();
  // A purge published now fails loudly.
  try {
    await fleet.cache.purge({ paths: ['/p11'] });
    assert.unreachable('Redis is down');
  } catch (error) {
    assert.is((error as PrerenderError).code, 'EREDIS');
    assert.match((error as Error).message, /NOT published/);
  }
  // Within seconds the host stops storing, and says so.
  await waitFor(async () => {
    await request(fleet.app.port, `/down-${Date.now()}`);
    await fleet.cache.idle();
    return fleet.events.at(-1)?.includes('not storing') === true;
  }, 8_000, 'storing to pause');
  // Said in the log by the guard's own poll (every 250 ms), which may come after a store refused.
  await waitFor(() => fleet.logs.some((line) => /not storing under .*cannot reach Redis|not storing under .*silent|not storing under .*behind/.test(line)), 3_000, 'the log to say storing paused');
  await waitFor(async () => (await readStatus(fleetDir(fleet.roots[0] as string)))?.redis === 'down', 5_000, 'the agent to say Redis is down');

  await fleet.redis.restart();
  for (let page = 10; page < 20; page++) await publishPurge(fleet.link, { paths: [`/p${page}`] });
  // publishPurge throws when its wait runs out; what must hold is that both agents, caught up after
  // the outage, applied it (a host that died would not be waited for, so name them).
  const caughtUp = await publishPurge(fleet.link, { tags: ['t1'] }, { waitMs: 15_000 });
  assert.equal(caughtUp.applied.sort(), ['host1', 'host2']);
  const expected: string[] = [];
  for (let page = 20; page < 40; page++) if (page % 4 !== 0 && page % 4 !== 1) expected.push(`p${page}/index.html`);
  for (const root of fleet.roots) assert.equal((await listFiles(root)).filter((file) => /^p\d/.test(file)), expected.sort(), root);

  await waitFor(async () => {
    await request(fleet.app.port, '/after');
    await fleet.cache.idle();
    return fleet.events.at(-1) === 'stored /after';
  }, 8_000, 'storing to resume');
  await waitFor(() => fleet.logs.some((line) => /storing again under/.test(line)), 3_000, 'the log to say storing resumed');
});

outage.run();

// --- Redis down when publishing

const unreachable = suite('fleet: Redis down when a purge is published');

unreachable('the CLI fails with exit 1 and says the purge was not published; the API throws EREDIS', async () => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const cli = await runCli(['purge', '/x', '--redis', url, '--wait', '1000']);
  assert.is(cli.code, 1);
  assert.match(cli.stderr, new RegExp(`Redis at redis://127\\.0\\.0\\.1:${port}.*NOT published`));
  const env = await runCli(['purge', '--tag', 'a'], { env: { PRERENDER_REDIS: url } });
  assert.is(env.code, 1);
  assert.match(env.stderr, /NOT published/);
  const crawl = await runCli(['crawl', '-', '--fleet', '--wait', '1000'], { env: { PRERENDER_REDIS: url }, input: '/a\n' });
  assert.is(crawl.code, 1);
  assert.match(crawl.stderr, /Redis at .*the crawl was NOT published/);
  const dir = await tempDir();
  const events: string[] = [];
  const cache = createCache({
    root: path.join(dir, 'cache'), fleet: { redis: url }, log: () => undefined,
    onEvent: (event) => events.push(event.type === 'stored' ? 'stored' : event.reason),
  });
  const app = await startServer(cache.wrap((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<p>page</p>');
  }));
  try {
    await cache.purge({ tags: ['a'] });
    assert.unreachable('Redis is down');
  } catch (error) {
    assert.instance(error, PrerenderError);
    assert.is((error as PrerenderError).code, 'EREDIS');
    // A cache configured for a fleet whose agent never reported stores nothing.
    await request(app.port, '/page');
    await cache.idle();
    assert.equal(events, ['not storing: its fleet agent has not reported (is `prerender agent` running for this root?)']);
    assert.equal(await listFiles(path.join(dir, 'cache')), []);
  } finally {
    await app.close();
    await cache.close();
    await removeDir(dir);
  }
});

unreachable('bad input is refused before anything is published', async () => {
  const port = await freePort();
  const bad = await runCli(['purge', '/x', '--redis', 'http://127.0.0.1:1']);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /must start with redis:\/\//);
  const dotted = await runCli(['purge', '/a/../b', '--redis', `redis://127.0.0.1:${port}`]);
  assert.is(dotted.code, 2);
  const noRedis = await runCli(['purge', '/x', '--wait', '100']);
  assert.is(noRedis.code, 2);
  const agentId = await runCli(['agent', '--root', '/tmp', '--redis', `redis://127.0.0.1:${port}`, '--id', 'a b']);
  assert.is(agentId.code, 2);
  assert.match(agentId.stderr, /--id "a b" must be/);
  const agentRedis = await runCli(['agent', '--root', '/tmp']);
  assert.is(agentRedis.code, 2);
  assert.match(agentRedis.stderr, /--redis needs the fleet's Redis URL/);
  assert.throws(() => createCache({ root: '/tmp/x', fleet: { redis: 'localhost:6379' } }), /fleet\.redis/);
});

unreachable.run();

// --- a fleet crawl, with a purge published during the build

interface CrawlFleet extends Fleet {
  apps: Server[];
}

const fleetCrawl = suite<CrawlFleet>('fleet: crawl --fleet has every agent build a --swap generation from its own app');
let version = 1;
const gates = new Map<string, Gate>();
let failing: string | undefined;
if (hasRedis) {
  setUpSuite(fleetCrawl, async (fleet) => {
    fleet.redis = await startRedis();
    fleet.dir = await tempDir();
    fleet.roots = [];
    fleet.agents = [];
    fleet.apps = [];
    for (const host of ['host1', 'host2']) {
      const app = await startServer((req, res) => {
        const read = version;
        void (async () => {
          if (req.url === '/z') await gates.get(host)?.pass();
          if (failing === host && req.url === '/b') {
            res.writeHead(500).end();
            return;
          }
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
          res.end(`<p>${host} ${req.url ?? ''} v${read}</p>`);
        })();
      });
      fleet.apps.push(app);
      const base = path.join(fleet.dir, host);
      await fs.mkdir(base);
      fleet.roots.push(base);
      fleet.agents.push(startAgentProcess(base, fleet.redis.url, host, { args: ['--origin', app.url] }));
    }
    for (const agent of fleet.agents) await waitForLog(agent, 'connected to');
    fleet.link = new FleetRedis(fleet.redis.url, { persistent: true });
  }, async (fleet) => {
    for (const gate of gates.values()) gate.release();
    for (const app of fleet.apps ?? []) await app.close();
    await stopFleet(fleet);
  });
}

fleetCrawl('each host switches to its own new tree; a purge made during the build is carried into it; a failed host fails the step', async (fleet) => {
  const list = path.join(fleet.dir, 'urls.txt');
  await fs.writeFile(list, '/a\n/b\n/z\n');
  const page = (host: number, name: string): string => path.join(fleet.roots[host - 1] as string, 'current', name, 'index.html');
  const first = await runCli(['crawl', list, '--fleet', '--redis', fleet.redis.url, '--wait', '20000', '--concurrency', '1']);
  assert.is(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, /ok +host1: switched, 3 pages stored/);
  assert.match(first.stdout, /ok +host2: switched, 3 pages stored/);
  assert.is(await fs.readFile(page(2, 'a'), 'utf8'), '<p>host2 /a v1</p>');
  const firstGeneration = await fs.readlink(path.join(fleet.roots[0] as string, 'current'));

  version = 2;
  for (const host of ['host1', 'host2']) gates.set(host, new Gate());
  const second = runCli(['crawl', '-', '--fleet', '--redis', fleet.redis.url, '--wait', '20000', '--concurrency', '1', '--json'], { input: '/a\n/b\n/z\n' });
  for (const gate of gates.values()) await gate.entered;
  // /a was fetched into both new trees already; the app changes it and purges it.
  await publishPurge(fleet.link, { paths: ['/a'] }, { waitMs: 10_000 });
  for (const gate of gates.values()) gate.release();
  gates.clear();
  const done = await second;
  assert.is(done.code, 0, done.stdout + done.stderr);
  const report = JSON.parse(done.stdout) as { hosts: Array<{ host: string; ok: boolean; swapped: boolean }> };
  assert.equal(report.hosts.map((host) => [host.host, host.ok, host.swapped]), [['host1', true, true], ['host2', true, true]]);
  for (const host of [1, 2]) {
    assert.not.ok(await fs.stat(page(host, 'a')).then(() => true, () => false), `host${host}: the purged page built before the purge is gone`);
    assert.is(await fs.readFile(page(host, 'z'), 'utf8'), `<p>host${host} /z v2</p>`);
  }
  assert.is.not(await fs.readlink(path.join(fleet.roots[0] as string, 'current')), firstGeneration);

  failing = 'host2';
  const third = await runCli(['crawl', list, '--fleet', '--redis', fleet.redis.url, '--wait', '20000']);
  failing = undefined;
  assert.is(third.code, 1, third.stdout + third.stderr);
  assert.match(third.stdout, /ok +host1/);
  assert.match(third.stdout, /FAIL +host2: 1 URLs failed/);
  assert.is(await fs.readFile(page(2, 'z'), 'utf8'), '<p>host2 /z v2</p>', 'host2 kept its tree');
});

fleetCrawl.run();
