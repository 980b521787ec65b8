/** `prerender agent`: applies the fleet's purges and crawls to this host's root until stopped (fleet/agent.ts). */
import type { Command } from 'commander';
import { parseOrigin } from '../origin.js';
import { positiveInteger, redisOption } from './arguments.js';
import type { CommandContext } from './context.js';

export function registerAgent(program: Command, { io, rootOption }: CommandContext): void {
  program.command('agent')
    .description('apply the fleet\'s purges (and crawls) from Redis to this host\'s root; runs until stopped')
    .addOption(rootOption())
    .addOption(redisOption(io.env))
    .option('--id <host>', 'this host\'s name in the fleet (default: the host name)')
    .option('--origin <url>', 'this host\'s app, for fleet crawls and refreshes, e.g. http://127.0.0.1:3000')
    .option('--retention <ms>', 'a host silent this long counts as gone (the stream is trimmed past it)', '600000')
    .action(async (options: { root: string; redis?: string; id?: string; origin?: string; retention: string }) => {
      const [{ startAgent }, { checkRedisUrl }] = await Promise.all([import('../fleet/agent.js'), import('../fleet/stream.js')]);
      const agent = startAgent({
        root: options.root,
        redis: checkRedisUrl(options.redis),
        ...(options.id === undefined ? {} : { id: options.id }),
        ...(options.origin === undefined ? {} : { origin: parseOrigin(options.origin) }),
        retentionMs: positiveInteger(options.retention, '--retention', 'milliseconds'),
        log: (line) => io.stderr(`prerender agent: ${line}\n`),
      });
      const stop = (): void => void agent.stop();
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      try {
        await agent.stopped;
      } finally {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
      }
    });
}
