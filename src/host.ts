/**
 * The host allowlist's one rule (DESIGN.md, Host): a response is stored only when the Host header the
 * app saw, and any X-Forwarded-Host, is exactly an allowlisted entry. Not "the same name once
 * normalised": an app that builds links from Host would write `www.example.com:1337`, `WWW.EXAMPLE.COM`
 * or `www.example.com.` into the page, and every visitor of the real name would be served them. The
 * generated nginx config tests `$http_host` (the header as sent) against the same entries, so nginx
 * serves from disk exactly where the middleware would store.
 */
import type { IncomingHttpHeaders } from 'node:http';

const label = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const hostEntry = new RegExp(`^${label}(?:\\.${label})*(?::([0-9]{1,5}))?$`);

/**
 * True for an allowlist entry: a lowercase DNS name, optionally with a port from 1 to 65535
 * (`www.example.com`, `www.example.com:8080`). No trailing dot, no IP literal.
 */
export function isHostEntry(value: unknown): value is string {
  if (typeof value !== 'string' || value.length > 253 + 6) return false;
  const match = hostEntry.exec(value);
  if (match === null) return false;
  const port = match[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535 || port.startsWith('0'))) return false;
  const name = port === undefined ? value : value.slice(0, -(port.length + 1));
  return name.length <= 253;
}

/**
 * Why a request's Host headers do not name an allowlisted entry exactly, or undefined when they do.
 * Both headers must be single and exact; an X-Forwarded-Host that is present must equal Host too.
 */
export function exactHostRefusal(headers: IncomingHttpHeaders, allowlist: ReadonlySet<string>): string | undefined {
  const host = headers.host;
  if (host === undefined || !allowlist.has(host)) return `host ${JSON.stringify(host ?? '')} is not exactly an allowlisted name`;
  const forwarded = headers['x-forwarded-host'];
  if (forwarded !== undefined && forwarded !== host) return `X-Forwarded-Host ${JSON.stringify(String(forwarded))} is not exactly the Host`;
  return undefined;
}

/** A regular expression (nginx PCRE syntax) matching exactly the entries. */
export function exactHostPattern(hosts: readonly string[]): string {
  return `^(${hosts.map((host) => host.replaceAll('.', '\\.')).join('|')})$`;
}
