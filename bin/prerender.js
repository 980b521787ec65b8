#!/usr/bin/env node
// Crawls and refreshes fsync many files at once; libuv's default of 4 threads would serialise them.
// Set before the CLI loads, while the thread pool does not exist yet.
process.env.UV_THREADPOOL_SIZE ??= '16';
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv);
