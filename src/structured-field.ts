/**
 * The Dictionary of RFC 8941 (Structured Field Values), which `CDN-Cache-Control` and prerender's own
 * `Prerender-Cache-Control` use (RFC 9213 §2.1). Parsing is all or nothing, as §4.2 asks: a field that
 * fails to parse is ignored whole, so the cache falls back to the next field rather than acting on half
 * of one. Parameters are parsed (to find where a member ends) and dropped: no cache directive has any.
 */

/** A member's value: bare items as JavaScript values; an inner list as an array of them. */
export type BareItem = number | string | boolean | Uint8Array | Token;
export type MemberValue = BareItem | BareItem[];

/** A Token (`public`, `*foo`), kept apart from a String so a directive can insist on one or the other. */
export class Token {
  constructor(readonly value: string) {}
}

class Parser {
  private at = 0;
  constructor(private readonly text: string) {}

  fail(): never {
    throw new SyntaxError(`not a structured field at ${this.at}`);
  }
  peek(): string {
    return this.text[this.at] ?? '';
  }
  done(): boolean {
    return this.at >= this.text.length;
  }
  skip(pattern: RegExp): void {
    while (!this.done() && pattern.test(this.peek())) this.at++;
  }
  take(pattern: RegExp): string {
    pattern.lastIndex = this.at;
    const match = pattern.exec(this.text);
    if (match === null || match.index !== this.at) this.fail();
    this.at += match[0].length;
    return match[0];
  }
  eat(character: string): boolean {
    if (this.peek() !== character) return false;
    this.at++;
    return true;
  }

  key(): string {
    return this.take(/[a-z*][a-z0-9_\-.*]*/y);
  }

  bareItem(): BareItem {
    const first = this.peek();
    if (first === '-' || /\d/.test(first)) return this.number();
    if (first === '"') return this.string();
    if (first === ':') {
      const body = this.take(/:[A-Za-z0-9+/=]*:/y);
      return Uint8Array.from(Buffer.from(body.slice(1, -1), 'base64'));
    }
    if (first === '?') return this.take(/\?[01]/y) === '?1';
    if (/[A-Za-z*]/.test(first)) return new Token(this.take(/[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/y));
    return this.fail();
  }

  number(): number {
    const text = this.take(/-?\d+(?:\.\d+)?/y);
    const [whole = '', fraction] = text.replace('-', '').split('.');
    if (fraction === undefined ? whole.length > 15 : whole.length > 12 || fraction.length > 3) this.fail();
    return Number(text);
  }

  string(): string {
    this.eat('"');
    let out = '';
    for (;;) {
      if (this.done()) this.fail();
      const character = this.text[this.at++] ?? '';
      if (character === '"') return out;
      if (character === '\\') {
        const escaped = this.text[this.at++] ?? '';
        if (escaped !== '"' && escaped !== '\\') this.fail();
        out += escaped;
      } else if (character < ' ' || character > '~') this.fail();
      else out += character;
    }
  }

  parameters(): void {
    while (this.eat(';')) {
      this.skip(/ /);
      this.key();
      if (this.eat('=')) this.bareItem();
    }
  }

  member(): MemberValue {
    if (!this.eat('(')) {
      const item = this.bareItem();
      this.parameters();
      return item;
    }
    const items: BareItem[] = [];
    for (;;) {
      this.skip(/ /);
      if (this.eat(')')) break;
      items.push(this.bareItem());
      this.parameters();
      if (this.peek() !== ' ' && this.peek() !== ')') this.fail();
    }
    this.parameters();
    return items;
  }
}

/**
 * A Dictionary field value, keys in order (a repeated key keeps its last value, as RFC 8941 says), or
 * null when the text is not a valid Dictionary. A key without `=` is Boolean true.
 */
export function parseDictionary(text: string): Map<string, MemberValue> | null {
  const parser = new Parser(text);
  const members = new Map<string, MemberValue>();
  try {
    parser.skip(/ /);
    while (!parser.done()) {
      const key = parser.key();
      let value: MemberValue = true;
      if (parser.eat('=')) value = parser.member();
      else parser.parameters();
      members.delete(key);
      members.set(key, value);
      parser.skip(/[ \t]/);
      if (parser.done()) break;
      if (!parser.eat(',')) parser.fail();
      parser.skip(/[ \t]/);
      if (parser.done()) parser.fail();
    }
  } catch {
    return null;
  }
  return members;
}
