/**
 * Miss coalescing under a stampede: 200 concurrent requests for one cold page that takes 50 ms to
 * render, with coalescing on (the default) and off, in the same run. Counts renders (goal: 1 with
 * coalescing) and the clients' p99 latency.
 *
 * Two renders: `cpu` spends its 50 ms on the event loop (template rendering: with coalescing off, 200
 * renders queue behind each other), `wait` spends them waiting (a database call: they overlap). The
 * app runs in this process behind `cache.wrap` on loopback; the clients run in a child process (a
 * render that holds this event loop must not hold theirs), each on its own connection, all started
 * at once, and report their latencies from start to the last byte. Every round uses a fresh cold path
 * and a fresh root, and modes take turns so drift hits both alike.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createCache } from '../src/cache.js';
import type { BenchRow } from './report.js';

const execFileAsync = promisify(execFile);
const BENCH = 'coalesce';
const CLIENTS = 200;
const RENDER_MS = 50;
const ROUNDS = 3;

type Render = 'cpu' | 'wait';

interface Round {
  renders: number;
  latencies: number[];
}

export async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const render of ['cpu', 'wait'] as const) {
    const results: Record<'on' | 'off', Round[]> = { on: [], off: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        results[mode].push(await stampede(render, mode === 'on', round));
      }
    }
    const p99 = (rounds: Round[]) => percentile(rounds.flatMap((r) => r.latencies), 0.99);
    const renders = (rounds: Round[]) => Math.max(...rounds.map((r) => r.renders));
    const on = p99(results.on);
    const off = p99(results.off);
    rows.push(
      { bench: BENCH, case: `${render}: renders, coalescing on`, value: renders(results.on), unit: 'renders', note: `${CLIENTS} clients, worst of ${ROUNDS} rounds (goal 1)` },
      { bench: BENCH, case: `${render}: renders, coalescing off`, value: renders(results.off), unit: 'renders', note: 'baseline' },
      { bench: BENCH, case: `${render}: client p99, coalescing on`, value: on, unit: 'ms', note: `render ${RENDER_MS} ms` },
      { bench: BENCH, case: `${render}: client p99, coalescing off`, value: off, unit: 'ms', note: 'baseline' },
      { bench: BENCH, case: `${render}: p99 off / on`, value: off / on, unit: 'x', note: 'same run' },
    );
  }
  return rows;
}

async function stampede(render: Render, coalesce: boolean, round: number): Promise<Round> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'prerender-bench-coalesce-'));
  const cache = createCache({ root: path.join(dir, 'cache'), coalesce, log: () => undefined });
  let renders = 0;
  const server = http.createServer(cache.wrap((req, res) => {
    renders++;
    const send = (): void => {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><title>cold</title><p>${req.url}</p>${'<p>filler text for a page of some size</p>'.repeat(200)}\n`);
    };
    if (render === 'wait') {
      setTimeout(send, RENDER_MS);
      return;
    }
    const until = performance.now() + RENDER_MS;
    while (performance.now() < until) {
      // A render that keeps the event loop busy, as template rendering does.
    }
    send();
  }));
  server.maxConnections = CLIENTS * 2;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', 2048, resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const latencies = await clients(port, `/cold-${render}-${round}`);
    await cache.idle();
    return { renders, latencies };
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await cache.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** CLIENTS requests at once from a child process; their latencies in ms (each request must answer 200). */
async function clients(port: number, target: string): Promise<number[]> {
  const script = `
    const http = require('node:http');
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const one = () => new Promise((resolve, reject) => {
      const started = performance.now();
      http.get({ host: '127.0.0.1', port: ${port}, path: ${JSON.stringify(target)}, agent }, (res) => {
        res.resume();
        res.on('end', () => res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error('status ' + res.statusCode)));
      }).on('error', reject);
    });
    Promise.all(Array.from({ length: ${CLIENTS} }, one)).then((ms) => process.stdout.write(JSON.stringify(ms)), (error) => { console.error(error); process.exit(1); });
  `;
  const { stdout } = await execFileAsync(process.execPath, ['-e', script], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as number[];
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? 0;
}
