// OpenVZ config files (CTID.conf, ve-*.conf-sample, vz.conf): a faithful reader and writer (comments, order and unknown keys kept) and the value forms vzctl uses.
import { AppError } from '../../shared/errors.js';

/** One line of a config file as it was read; `raw` is written back unchanged unless the entry is set. */
export type VzConfLine =
  | { kind: 'blank' | 'comment'; raw: string }
  | { kind: 'entry'; raw: string; key: string; value: string };

// vzctl's keys are shell variable names; OpenVZ's own are upper case, but a name of any case is kept as read.
const KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Parses one value after `KEY=`: "double quoted", 'single quoted' or bare up to blanks; then only blanks or a # comment. */
function parseValue(rest: string, where: string): string {
  const q = rest[0];
  let value: string;
  let after: string;
  if (q === '"' || q === "'") {
    const end = rest.indexOf(q, 1);
    if (end < 0) throw new AppError('INVALID_CONFIG', `${where}: the value has no closing ${q}`);
    value = rest.slice(1, end);
    after = rest.slice(end + 1);
  } else {
    const m = /^[^\s#"']*/.exec(rest)!;
    value = m[0];
    after = rest.slice(value.length);
  }
  if (!/^\s*(#.*)?$/.test(after)) throw new AppError('INVALID_CONFIG', `${where}: unexpected ${JSON.stringify(after.trim().slice(0, 20))} after the value (quote a value with blanks or quotes in it)`);
  return value;
}

/** A config file: its lines in order; lookups see the last entry of a key, as vzctl's reader does. */
export class VzConf {
  private constructor(private readonly lines: VzConfLine[], private readonly eol: string) {}

  /** Reads a config file's text; a line that is neither blank, a comment nor KEY=VALUE is refused with its line number. */
  static parse(text: string, file = 'config'): VzConf {
    const eol = text.includes('\r\n') ? '\r\n' : '\n';
    const parts = text.split(/\r?\n/);
    // A final newline ends the last line; it does not start another.
    if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
    const lines: VzConfLine[] = parts.map((raw, i) => {
      const where = `${file}:${i + 1}`;
      const t = raw.trim();
      if (t === '') return { kind: 'blank', raw };
      if (t.startsWith('#')) return { kind: 'comment', raw };
      const eq = t.indexOf('=');
      const key = eq < 0 ? t : t.slice(0, eq);
      if (eq < 0 || !KEY_RE.test(key)) {
        throw new AppError('INVALID_CONFIG', `${where}: not a KEY="value" line: ${JSON.stringify(t.slice(0, 40))}`);
      }
      return { kind: 'entry', raw, key, value: parseValue(t.slice(eq + 1), where) };
    });
    return new VzConf(lines, eol);
  }

  /** An empty config. */
  static empty(): VzConf {
    return new VzConf([], '\n');
  }

  /** The value of key (its last entry), or undefined. */
  get(key: string): string | undefined {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) return l.value;
    }
    return undefined;
  }

  /** Every key, in file order, once. */
  keys(): string[] {
    return [...new Set(this.lines.flatMap((l) => (l.kind === 'entry' ? [l.key] : [])))];
  }

  /** Every key with its (last) value, in file order. */
  entries(): Array<[string, string]> {
    return this.keys().map((k) => [k, this.get(k)!]);
  }

  /** Sets key: its last entry is rewritten in place (earlier duplicates go), else a line is appended; as vzctl writes it, KEY="value". */
  set(key: string, value: string): void {
    if (!KEY_RE.test(key)) throw new AppError('INVALID_ARGUMENT', `Invalid config key ${JSON.stringify(key)}`);
    if (/["\r\n]/.test(value)) throw new AppError('INVALID_ARGUMENT', `The value of ${key} must not hold a double quote or a line break`);
    const line: VzConfLine = { kind: 'entry', raw: `${key}="${value}"`, key, value };
    const at = this.lastIndex(key);
    if (at < 0) {
      this.lines.push(line);
      return;
    }
    this.lines[at] = line;
    this.dropEarlier(key, at);
  }

  /** Removes every entry of key; comments stay. */
  delete(key: string): void {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) this.lines.splice(i, 1);
    }
  }

  /** The file's text: lines not set are byte for byte what was read (with its line ends). */
  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.map((l) => l.raw).join(this.eol)}${this.eol}`;
  }

  private lastIndex(key: string): number {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) return i;
    }
    return -1;
  }

  private dropEarlier(key: string, at: number): void {
    for (let i = at - 1; i >= 0; i--) {
      const l = this.lines[i]!;
      if (l.kind === 'entry' && l.key === key) this.lines.splice(i, 1);
    }
  }
}

// The value forms live in shared (the vzctl front end parses them too); re-exported for the readers here.
export {
  formatVzPair, parseVzNumber, parseVzPair, VZ_PAGE_BYTES, VZ_PARAM_UNITS, VZ_UNLIMITED, vzBytes, type VzPair, type VzUnit,
} from '../../shared/vz-values.js';
