/**
 * Links in a stored HTML page, for `crawl --follow`: `<a href>` and `<area href>`, resolved against the
 * page URL (or its `<base href>`), kept only when they stay on the page's origin and carry no query
 * string (nginx cannot serve those from disk).
 */
import { createReadStream } from 'node:fs';
import { Parser } from 'htmlparser2';

export async function sameOriginLinks(file: string, pageUrl: string): Promise<string[]> {
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
  for await (const chunk of createReadStream(file, { encoding: 'utf8' })) parser.write(chunk as string);
  parser.end();
  return [...links];
}
