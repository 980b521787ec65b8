/** `prerender nginx`: prints the server { } block that serves the cache (nginx-config.ts). */
import { Option, type Command } from 'commander';
import { brotliModuleInstalled, nginxConfig } from '../nginx-config.js';
import { collect } from './arguments.js';
import type { CommandContext } from './context.js';

interface NginxCliOptions {
  root: string;
  upstream: string;
  listen: string;
  serverName: string;
  bypassCookie?: string[];
  brotli: 'auto' | 'on' | 'off';
  host?: string[];
  multiSite?: boolean;
  accessLog?: string;
}

export function registerNginx(program: Command, { io, rootOption }: CommandContext): void {
  program.command('nginx')
    .description('print an nginx server { } block that serves the cache and sends misses to the app')
    .addOption(rootOption())
    .requiredOption('--upstream <url>', 'the app, e.g. http://127.0.0.1:3000')
    .option('--listen <addr:port>', 'what nginx listens on', '80')
    .option('--server-name <name>', 'server_name', '_')
    .option('--bypass-cookie <name>', 'send requests with this cookie to the app (repeatable; default: the middleware defaults)', collect, undefined)
    .option('--host <name>', 'serve from disk only for this host (repeatable; the middleware\'s hosts)', collect, undefined)
    .option('--multi-site', 'serve <root>/$host/ (the middleware\'s multiSite); needs --host')
    .option('--access-log <file>', 'log requests with their X-Cache (HIT/MISS) here, for prerender stats')
    .addOption(new Option('--brotli <when>', 'serve .br siblings with brotli_static (auto: if the Debian module is installed)').choices(['auto', 'on', 'off']).default('auto'))
    .action((options: NginxCliOptions) => {
      io.stdout(nginxConfig({
        ...(options.accessLog === undefined ? {} : { accessLog: options.accessLog }),
        ...(options.host === undefined ? {} : { hosts: options.host }),
        multiSite: options.multiSite === true,
        brotli: options.brotli === 'auto' ? brotliModuleInstalled() : options.brotli === 'on',
        root: options.root,
        upstream: options.upstream,
        listen: options.listen,
        serverName: options.serverName,
        ...(options.bypassCookie === undefined ? {} : { bypassCookies: options.bypassCookie }),
      }));
    });
}
