/**
 * The nginx `server { }` block that serves the cache tree and sends everything else to the app. It must
 * route to the app exactly the requests whose responses the policy would not store (policy.ts), so a
 * file on disk is only ever served where the app would have produced it.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { OptionError } from './options.js';
import { parseOrigin } from './origin.js';
import { UTF8_TYPES } from './mime.js';
import { DEFAULT_BYPASS_COOKIES } from './policy.js';
import { exactHostPattern, isHostEntry } from './host.js';
import { STATE_DIR } from './url-path.js';
import { CRAWL_MARK_HEADER } from './crawl-mark.js';

export interface NginxConfigOptions {
  /** Absolute path of the cache root (the `root` nginx serves). */
  root: string;
  /** The app, e.g. `http://127.0.0.1:3000`: where misses, bypasses and non-GET requests go. */
  upstream: string;
  /** @default '80' */
  listen?: string;
  /** @default '_' */
  serverName?: string;
  /** @default DEFAULT_BYPASS_COOKIES, the same list the middleware uses */
  bypassCookies?: readonly string[];
  /**
   * Serve `.br` siblings (`brotli_static on`). Needs the brotli static module loaded in nginx's main
   * context (Debian: libnginx-mod-http-brotli-static).
   * @default false
   */
  brotli?: boolean;
  /**
   * Serve from disk only when the Host header is exactly one of these (nginx `$http_host`, port
   * included); others go to the app. Pass the middleware's `hosts`.
   */
  hosts?: readonly string[];
  /** Serve `<root>/$host/` (the middleware's `multiSite`); needs `hosts`. @default false */
  multiSite?: boolean;
  /**
   * Write an access log here in prerender's format (one JSON object a line, with the X-Cache the
   * response carried), for `prerender stats --access-log`. Off when not given.
   */
  accessLog?: string;
}

/** Where Debian's libnginx-mod-http-brotli-static puts the module. */
export const BROTLI_MODULE = '/usr/lib/nginx/modules/ngx_http_brotli_static_module.so';

export function brotliModuleInstalled(): boolean {
  return existsSync(BROTLI_MODULE);
}

/** charset_types always includes text/html: listing it again makes `nginx -t` warn of a duplicate. */
const CHARSET_TYPES = UTF8_TYPES.filter((type) => type !== 'text/html');

const cookieName = /^[A-Za-z0-9._-]+$/;
const listenValue = /^(\[[0-9A-Fa-f:.]+\]:|[A-Za-z0-9.-]+:)?[0-9]{1,5}$/;
const serverNameValue = /^[A-Za-z0-9.*_~-]+$/;
const unquotable = /["\\$\u0000-\u001f\u007f;{}]/;

export function nginxConfig(options: NginxConfigOptions): string {
  const root = checkRoot(options.root);
  const upstream = parseOrigin(options.upstream, 'upstream');
  const listen = options.listen ?? '80';
  if (!listenValue.test(listen)) {
    throw new OptionError('listen', 'a port or address:port (e.g. 127.0.0.1:8080)', listen);
  }
  const serverName = options.serverName ?? '_';
  if (!serverNameValue.test(serverName)) {
    throw new OptionError('serverName', 'an nginx server_name (a host name, * and ~ allowed)', serverName);
  }
  const cookies = options.bypassCookies ?? DEFAULT_BYPASS_COOKIES;
  for (const name of cookies) {
    if (!cookieName.test(name)) {
      throw new OptionError('bypassCookies', 'cookie names of letters, digits, ".", "_" or "-"', name);
    }
  }
  const hosts = options.hosts ?? [];
  for (const host of hosts) {
    if (!isHostEntry(host)) {
      throw new OptionError('hosts', 'lowercase host names, each with an optional :port', host);
    }
  }
  if (options.multiSite === true && hosts.length === 0) {
    throw new OptionError('multiSite', 'used with `hosts`: one allowlisted host per site');
  }
  const hostTest = hosts.length === 0
    ? ''
    // The Host header exactly as sent, as the middleware checks it (host.ts): $host would lowercase it
    // and drop a port or trailing dot, and serve the stored page for spellings the app never stored.
    // $host too: an absolute-form request-target (GET http://other/ HTTP/1.1) names another host
    // than its Host header, and is that host's business.
    : `    if ($http_host !~ "${exactHostPattern(hosts)}") { return 418; }\n    if ($host !~ "${exactHostPattern([...new Set(hosts.map((host) => host.replace(/:\d+$/, '')))])}") { return 418; }\n`;
  // Only ever evaluated for an allowlisted $http_host (any other went to the app above).
  const rootLine = options.multiSite === true ? `"${root}/$http_host"` : `"${root}"`;
  const cookieTest = cookies.length === 0
    ? ''
    : `    if ($http_cookie ~ "(^|;)\\s*(${cookies.map((name) => name.replaceAll('.', '\\.')).join('|')})\\s*(=|;|$)") { return 418; }\n`;

  const app = new URL(upstream);
  const upstreamName = `prerender_${createHash('sha256').update(JSON.stringify([root, upstream, listen, serverName, hosts, options.multiSite === true])).digest('hex').slice(0, 12)}`;
  const brotliNote = options.brotli === true ? ' and <file>.br' : '';
  const brotliLine = options.brotli === true ? '    brotli_static on;\n' : '';
  const log = options.accessLog === undefined ? undefined : accessLogLines(options.accessLog, upstreamName);

  return `# Generated by \`prerender nginx\`. Include inside http { } after \`include mime.types;\`.

# Misses reuse idle connections to the app instead of opening one per request. Idle ones are closed
# after 4 s, before Node's default keepAliveTimeout (5 s) would close them under nginx (a 502).
upstream ${upstreamName} {
    server ${app.hostname}:${app.port === '' ? (app.protocol === 'https:' ? '443' : '80') : app.port};
    keepalive 32;
    keepalive_timeout 4s;
}
${log?.format ?? ''}
server {
    listen ${listen};
    server_name ${serverName};
    root ${rootLine};
${log?.directive ?? ''}
    # Stored text was checked to be UTF-8, so nginx may declare it (charset_types always includes
    # text/html); binary types get no charset.
    charset utf-8;
    charset_types ${CHARSET_TYPES.join(' ')};
    # A cached descriptor would keep serving a purged file for up to open_file_cache_valid.
    open_file_cache off;
    # No symlink below the root is followed (the root itself may be one, as a --swap \`current\` is):
    # one planted in the tree would serve any file nginx can read. Costs a hit an openat per path
    # component (bench/symlinks.bench.ts). from= is the root spelled out, not $document_root: with a
    # variable there brotli_static serves no .br at all (google/ngx_brotli#134).
    disable_symlinks on "from=${root}";
    # Precompressed siblings (precompress / crawl --precompress): <file>.gz${brotliNote}.
    gzip_static on;
${brotliLine}    # Vary comes from add_header below: gzip_vary would open <file>.gz on every hit, even for clients
    # that do not accept gzip, only to decide whether to send it.
    gzip_vary off;

    # Requests whose response the middleware never stores go to the app, so a file on disk is never
    # served where the app would have answered differently: other methods (nginx would answer 405),
    # query strings and fragments (nginx cannot key on them), credentials, session cookies, and targets nginx would
    # normalise (//, dot segments, encoded dots or slashes) to a file the app never produced for them.
    error_page 418 = @app;
    if ($request_method !~ ^(GET|HEAD)$) { return 418; }
    if ($request_uri ~ "[?#]|//|/\\.\\.?(/|$)|%2[eEfF]") { return 418; }
    if ($http_authorization != "") { return 418; }
${cookieTest}${hostTest}
    # prerender's own state: tag index, temp files.
    location = /${STATE_DIR} { return 404; }
    location ^~ /${STATE_DIR}/ { return 404; }

    # /a, an HTML page, is the file a/index.html; /a.css is the file a.css. At most one of the two can
    # exist (the middleware never stores both), so the order of the lookups changes no answer, only
    # what a hit costs: each miss of try_files is a stat. Pages look up a/index.html first; names with
    # a dot in their last segment, most likely files, look up the name first. A file try_files found
    # and a purge deleted before nginx opened it is a miss, not a 404: error_page sends it to the app.
    location / {
        try_files $uri/index.html $uri @app;
        add_header X-Cache HIT;
        add_header Vary Accept-Encoding;
        error_page 404 = @app;
    }

    location ~ "\\.[^/]+$" {
        try_files $uri $uri/index.html @app;
        add_header X-Cache HIT;
        add_header Vary Accept-Encoding;
        error_page 404 = @app;
    }

    # try_files tests a name ending in / as a directory, and would then 403 on a directory that holds
    # other pages but no index.html; look the file up instead.
    location ~ /$ {
        try_files \${uri}index.html @app;
        add_header X-Cache HIT;
        add_header Vary Accept-Encoding;
        error_page 404 = @app;
    }

    location @app {
        proxy_pass ${app.protocol}//${upstreamName};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        # Headers frameworks act on but a file cannot vary by: the app must never see a client's.
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Original-URL "";
        proxy_set_header X-Rewrite-URL "";
        proxy_set_header X-HTTP-Method-Override "";
        proxy_set_header X-HTTP-Method "";
        proxy_set_header X-Method-Override "";
        # prerender's crawl mark: sent by a client, it would show the tag headers and leave the page unstored.
        proxy_set_header ${CRAWL_MARK_HEADER} "";
        add_header X-Cache MISS always;
    }
}
`;
}

/**
 * The access log `prerender stats` reads (access-log.ts): JSON lines with the X-Cache header this
 * config sets (HIT from disk, MISS from the app, empty for nginx's own answers). The format's name
 * carries the upstream's hash: two generated blocks in one http { } must not define one name twice.
 */
function accessLogLines(file: string, upstreamName: string): { format: string; directive: string } {
  if (typeof file !== 'string' || file === '') throw new OptionError('accessLog', 'a file name', file);
  const absolute = path.resolve(file);
  if (unquotable.test(absolute)) {
    throw new OptionError('accessLog', 'a file name without characters nginx would read as syntax (" \\ $ ; { } or control)', file);
  }
  const name = upstreamName.replace(/^prerender_/, 'prerender_log_');
  const fields = [
    '"time":"$time_iso8601"', '"method":"$request_method"', '"request_uri":"$request_uri"', '"status":"$status"',
    '"bytes":"$body_bytes_sent"', '"cache":"$sent_http_x_cache"', '"host":"$host"', '"request_time":"$request_time"',
  ];
  return {
    format: `\n# For \`prerender stats --access-log\`: one JSON object a line; "cache" is the X-Cache sent (HIT, MISS).\nlog_format ${name} escape=json '{${fields.join(',')}}';\n`,
    directive: `    access_log "${absolute}" ${name};\n`,
  };
}

function checkRoot(root: string): string {
  if (typeof root !== 'string' || root === '') {
    throw new OptionError('root', 'a non-empty string: the cache directory nginx serves', root);
  }
  const absolute = path.resolve(root);
  if (unquotable.test(absolute)) {
    throw new OptionError('root', 'a path without characters nginx would read as syntax (" \\ $ ; { } or control)', root);
  }
  return absolute;
}
