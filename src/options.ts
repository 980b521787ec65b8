/**
 * Checks of the options the public functions take. Each failure is an `OptionError`, a `TypeError`
 * naming the option (`option`, as the API spells it, e.g. `maxBodyBytes` or `fleet.redis`), so the
 * CLI can say which flag was wrong instead of which property.
 */
export class OptionError extends TypeError {
  /** The option as the API names it. */
  readonly option: string;
  /** What the option must be ("a whole number from 1 up"), for a message that names it another way (a CLI flag). */
  readonly expectation: string;
  /** The value given, described for a message (quoted and shortened); undefined when not worth showing. */
  readonly given: string | undefined;

  constructor(option: string, expectation: string, value?: unknown) {
    const given = arguments.length >= 3 ? describe(value) : undefined;
    super(`Expected \`${option}\` to be ${expectation}${given === undefined ? '' : `, not ${given}`}`);
    this.name = 'OptionError';
    this.option = option;
    this.expectation = expectation;
    this.given = given;
  }
}

/** `value`, or `fallback` when undefined; a whole number from `minimum` up (`what`: "a whole number of milliseconds"). */
export function wholeNumber(value: unknown, option: string, minimum: number, fallback: number, what = 'a whole number'): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < minimum) {
    throw new OptionError(option, `${what} from ${minimum} up`, value);
  }
  return value;
}

/** `value` when it is a non-empty string (`what` says what it names: "the cache root"). */
export function nonEmptyString(value: unknown, option: string, what: string): string {
  if (typeof value !== 'string' || value === '') throw new OptionError(option, `a non-empty string: ${what}`, value);
  return value;
}

/**
 * `value`, or `fallback` when undefined; an array each of whose items `accepts`. The first item it
 * refuses is named in the error (`expectation` describes the whole array).
 */
export function listOf<T>(value: readonly T[] | undefined, option: string, fallback: readonly T[], accepts: (item: unknown) => boolean, expectation: string): readonly T[] {
  if (value === undefined) return fallback;
  if (!Array.isArray(value)) throw new OptionError(option, expectation, value);
  const refused = value.findIndex((item: unknown) => !accepts(item));
  if (refused !== -1) throw new OptionError(option, expectation, value[refused]);
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  return Array.isArray(value) ? 'an array' : typeof value;
}
