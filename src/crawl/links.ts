/**
 * Links in a stored HTML page, for `crawl --follow`: `<a href>` and `<area href>`, resolved against the
 * page URL (or its `<base href>`), kept only when they stay on the page's origin and carry no query
 * string (nginx cannot serve those from disk).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

export async function sameOriginLinks(file: string, pageUrl: string): Promise<string[]> {
  // Loaded on first use: the CLI's other commands (and crawls without --follow) start without it.
  const { Parser } = await import('htmlparser2');
  const page = new URL(pageUrl);
  let base = page;
  const links = new Set<string>();
  const parser = new Parser({
    onopentag(name, attributes) {
      const href = attributes.href;
      if (href === undefined) return;
      if (name === 'base') {
        try {
          base = new URL(href, page);
        } catch {
          // An unusable <base> leaves the page URL as the base, as browsers do.
        }
        return;
      }
      if (name !== 'a' && name !== 'area') return;
      let url: URL;
      try {
        url = new URL(href.trim(), base);
      } catch {
        return;
      }
      if (url.origin !== page.origin || url.search !== '' || href.includes('?')) return;
      links.add(url.pathname);
    },
  }, { decodeEntities: true });
  // O_NOFOLLOW: a symlink put in a stored page's place is not read (it would show a file outside the root).
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    for await (const chunk of handle.createReadStream({ encoding: 'utf8', autoClose: false })) parser.write(chunk as string);
  } finally {
    await handle.close();
  }
  parser.end();
  return [...links];
}
