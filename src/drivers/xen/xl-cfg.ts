// xl.cfg files (xl.cfg(5)) read and written: a lexer and parser with line:column errors, typed values, and quoting.
//
// The syntax is xl's own, as its libxlutil lexer and grammar define it: `KEY = VALUE` or `KEY += VALUE` settings separated
// by line breaks or ";", keys of lower-case letters, digits and "_", values that are quoted strings ('...' or "...", with
// \" \' \\ \a \b \f \n \r \t \v escapes), bare numbers (decimal, 0x hex, 0 octal; kept as text, as xl keeps them) or
// lists `[ v, v, ]` that may span lines, nest and end with a comma; `#` comments run to the end of the line. The last
// setting of a key wins (`+=` appends to the string or list before it). Anything xl refuses is refused here, with the
// position and what was expected; order and comments are kept on each setting so a translation can show them.
import { AppError } from '../../shared/errors.js';

/** A position in the file: 1-based line and column. */
export interface XlPos {
  line: number;
  column: number;
}

/** A single value: a quoted string or a bare number token, both kept as text (xl converts numbers when it reads a key). */
export interface XlAtom {
  kind: 'atom';
  value: string;
  /** How it was written: "string" for '...' or "...", "number" for a bare token such as 128 or 0x1f. */
  form: 'string' | 'number';
  pos: XlPos;
}

/** A list value; items may be atoms or lists (xl's vnuma nests them). */
export interface XlList {
  kind: 'list';
  items: XlValue[];
  pos: XlPos;
}

/** Any xl.cfg value. */
export type XlValue = XlAtom | XlList;

/** One `KEY = VALUE` (or `KEY += VALUE`) line, in file order, with the comments written above it and after it. */
export interface XlSetting {
  key: string;
  op: '=' | '+=';
  value: XlValue;
  pos: XlPos;
  /** Comment lines directly above the setting (without their "#"). */
  comments: string[];
  /** A comment on the same line, after the value. */
  comment?: string;
}

/** A parsed xl.cfg file: every setting in order, and the value in effect for each key. */
export interface XlConfig {
  /** Where the text came from, used in messages ("FILE.cfg:3:9: ..."). */
  source: string;
  settings: XlSetting[];
  /** The value each key ends up with: the last setting wins, `+=` appends. A Map, so keys such as "constructor" stay plain keys. */
  values: Map<string, XlValue>;
  /** The setting each key's value comes from (the last one; for `+=` chains, the last part). */
  origins: Map<string, XlSetting>;
  /** Comment lines after the last setting. */
  trailingComments: string[];
}

type Tok =
  | { t: 'ident' | 'number' | 'string'; text: string; pos: XlPos }
  | { t: '=' | '+=' | ',' | '[' | ']' | ';' | 'eof'; text: string; pos: XlPos }
  | { t: 'newline'; text: string; pos: XlPos; comment?: string };

const describe = (tok: Tok): string => {
  switch (tok.t) {
    case 'eof': return 'the end of the file';
    case 'newline': return tok.comment !== undefined ? 'a comment' : 'a line break';
    case 'string': return `the string ${JSON.stringify(tok.text)}`;
    case 'number': return `the number ${tok.text}`;
    case 'ident': return `the name ${tok.text}`;
    default: return `"${tok.text}"`;
  }
};

const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', "'": "'", '\\': '\\', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** The INVALID_CONFIG error for a position in an xl.cfg text: "SOURCE:LINE:COLUMN: message" with { source, line, column } as details ("SOURCE: message" without a position). */
export function xlConfigError(source: string, pos: XlPos | undefined, message: string, cause?: unknown): AppError {
  return new AppError('INVALID_CONFIG', pos ? `${source}:${pos.line}:${pos.column}: ${message}` : `${source}: ${message}`, {
    details: pos ? { source, line: pos.line, column: pos.column } : { source },
    ...(cause === undefined ? {} : { cause }),
  });
}

// The lexer: the tokens of xl's flex scanner, with positions.
function tokenize(text: string, source: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const pos = (at: number): XlPos => ({ line, column: at - lineStart + 1 });
  const fail = (at: number, msg: string): never => { throw xlConfigError(source, pos(at), msg); };
  while (i < text.length) {
    const c = text[i]!;
    const start = i;
    if (c === ' ' || c === '\t') { i++; continue; }
    if (c === '\n' || c === '#') {
      let comment: string | undefined;
      if (c === '#') {
        const end = text.indexOf('\n', i);
        // xl's scanner only knows "#" comments that end with a line break.
        if (end < 0) fail(i, 'a comment on the last line must end with a line break (xl rejects it otherwise)');
        comment = text.slice(i + 1, end);
        i = end;
      }
      out.push({ t: 'newline', text: '\n', pos: pos(start), ...(comment !== undefined ? { comment } : {}) });
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (/[a-z]/.test(c)) {
      const m = /^[a-z][_0-9a-z]*/.exec(text.slice(i))!;
      out.push({ t: 'ident', text: m[0], pos: pos(start) });
      i += m[0].length;
      continue;
    }
    if (/[0-9]/.test(c)) {
      // As in xl, a number token is any run of digits, a-f and x; whether it is a valid number is decided when a key is read.
      const m = /^[0-9][0-9a-fx]*/.exec(text.slice(i))!;
      out.push({ t: 'number', text: m[0], pos: pos(start) });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'") {
      let value = '';
      let j = i + 1;
      for (;;) {
        const d = text[j];
        if (d === undefined || d === '\n') fail(start, `unterminated string: the closing ${c} is missing on this line (strings cannot span lines)`);
        if (d === c) break;
        if (d === '\\') {
          const e = text[j + 1];
          if (e === undefined || e === '\n') fail(j, 'a backslash at the end of a line: strings cannot span lines');
          const simple = SIMPLE_ESCAPES[e!];
          if (simple !== undefined) { value += simple; j += 2; continue; }
          if (e === 'x' || /[0-7]/.test(e!)) fail(j, `numeric escape "\\${e}..." in a quoted string: xl does not decode them (it rejects \\x and drops octal escapes)`);
          fail(j, `invalid escape "\\${e}" in a quoted string (xl knows \\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v)`);
        }
        value += d;
        j++;
      }
      out.push({ t: 'string', text: value, pos: pos(start) });
      i = j + 1;
      continue;
    }
    if (c === '+' && text[i + 1] === '=') { out.push({ t: '+=', text: '+=', pos: pos(start) }); i += 2; continue; }
    if (c === '=' || c === ',' || c === '[' || c === ']' || c === ';') { out.push({ t: c, text: c, pos: pos(start) }); i++; continue; }
    if (c === '\r') fail(i, 'carriage return (a DOS line ending): xl reads only "\\n" line breaks');
    if (/[A-Z]/.test(c)) fail(i, `unexpected "${c}": setting names are lower-case letters, digits and "_", and strings need quotes`);
    // xl's own hint: these characters mean someone wrote Python, which xl.cfg no longer is.
    if ('+-.():'.includes(c)) fail(i, `unexpected "${c}": xl.cfg has no expressions (values are quoted strings, whole numbers or [lists]; this looks like Python, which xl no longer reads)`);
    fail(i, `unexpected character ${JSON.stringify(c)}`);
  }
  out.push({ t: 'eof', text: '', pos: pos(i) });
  return out;
}

/** Parses the text of an xl.cfg file; throws INVALID_CONFIG "SOURCE:LINE:COLUMN: ..." (details { line, column }) on the first error. */
export function parseXlConfig(text: string, opts: { source?: string } = {}): XlConfig {
  const source = opts.source ?? 'xl.cfg';
  const toks = tokenize(text, source);
  let k = 0;
  const peek = (): Tok => toks[k]!;
  const next = (): Tok => toks[k++]!;
  const fail = (tok: Tok, msg: string): never => { throw xlConfigError(source, tok.pos, msg); };
  const skipNewlines = () => { while (peek().t === 'newline') k++; };

  const parseValue = (key: string): XlValue => {
    const tok = next();
    if (tok.t === 'string' || tok.t === 'number') return { kind: 'atom', value: tok.text, form: tok.t, pos: tok.pos };
    if (tok.t !== '[') return fail(tok, `expected a value for "${key}" (a quoted string, a number or a [list]), found ${describe(tok)}`);
    const items: XlValue[] = [];
    skipNewlines();
    for (;;) {
      if (peek().t === ']') { k++; break; }
      items.push(parseValue(key));
      skipNewlines();
      const sep = next();
      if (sep.t === ']') break;
      if (sep.t !== ',') fail(sep, `expected "," or "]" in the list of "${key}", found ${describe(sep)}`);
      skipNewlines();
    }
    return { kind: 'list', items, pos: tok.pos };
  };

  const settings: XlSetting[] = [];
  const values = new Map<string, XlValue>();
  const origins = new Map<string, XlSetting>();
  let pending: string[] = [];
  for (;;) {
    const tok = peek();
    if (tok.t === 'eof') break;
    if (tok.t === 'newline' || tok.t === ';') {
      k++;
      if (tok.t === 'newline' && tok.comment !== undefined) pending.push(tok.comment);
      continue;
    }
    if (tok.t !== 'ident') fail(tok, `expected a setting (KEY = VALUE), found ${describe(tok)}`);
    k++;
    const op = next();
    if (op.t !== '=' && op.t !== '+=') fail(op, `expected "=" after "${tok.text}", found ${describe(op)}`);
    const value = parseValue(tok.text);
    const setting: XlSetting = { key: tok.text, op: op.t as '=' | '+=', value, pos: tok.pos, comments: pending };
    pending = [];
    const end = peek();
    if (end.t === 'newline') {
      k++;
      if (end.comment !== undefined) setting.comment = end.comment;
    } else if (end.t === ';') {
      k++;
    } else if (end.t !== 'eof') {
      fail(end, `expected a line break or ";" after the value of "${tok.text}", found ${describe(end)}`);
    }
    const prev = values.get(tok.text);
    let effective = value;
    if (setting.op === '+=' && prev) {
      if (prev.kind !== value.kind) fail(op, `"${tok.text} +=" cannot add a ${value.kind === 'list' ? 'list' : 'string'} to a ${prev.kind === 'list' ? 'list' : 'string'}`);
      effective = prev.kind === 'atom'
        ? { kind: 'atom', value: prev.value + (value as XlAtom).value, form: 'string', pos: prev.pos }
        : { kind: 'list', items: [...prev.items, ...(value as XlList).items], pos: prev.pos };
    }
    settings.push(setting);
    values.set(tok.text, effective);
    origins.set(tok.text, setting);
  }
  return { source, settings, values, origins, trailingComments: pending };
}

/** Parses a number as xl does (C strtol, base 0): decimal, 0x hexadecimal or 0 octal, an optional sign; undefined if it is not one. */
export function parseXlNumber(text: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const digits = m[2]!;
  const n = /^0[xX]/.test(digits) ? parseInt(digits.slice(2), 16) : digits.length > 1 && digits.startsWith('0') ? parseInt(digits, 8) : Number(digits);
  if (!Number.isSafeInteger(n)) return undefined;
  return m[1] === '-' ? -n : n;
}

const settingError = (cfg: XlConfig, key: string, message: string): AppError =>
  xlConfigError(cfg.source, cfg.origins.get(key)?.pos, message);

/** The string value of key (a quoted string or a bare number), or undefined when it is not set; a list is an error. */
export function xlString(cfg: XlConfig, key: string): string | undefined {
  const v = cfg.values.get(key);
  if (v === undefined) return undefined;
  if (v.kind !== 'atom') throw settingError(cfg, key, `"${key}" is a list but should be a single value`);
  return v.value;
}

/** The numeric value of key read as xl reads it (strtol base 0, from a number or a quoted string), within [min, max]. */
export function xlNumber(cfg: XlConfig, key: string, bounds: { min?: number; max?: number } = {}): number | undefined {
  const s = xlString(cfg, key);
  if (s === undefined) return undefined;
  const n = parseXlNumber(s);
  if (n === undefined) throw settingError(cfg, key, `"${key}" is not a valid number: ${JSON.stringify(s)} (decimal, 0x hex or 0 octal)`);
  if (bounds.min !== undefined && n < bounds.min) throw settingError(cfg, key, `"${key}" = ${s} is below the minimum ${bounds.min}`);
  if (bounds.max !== undefined && n > bounds.max) throw settingError(cfg, key, `"${key}" = ${s} is above the maximum ${bounds.max}`);
  return n;
}

/** The items of key as strings (a list of single values), or undefined when it is not set; a single value or a nested list is an error. */
export function xlStringList(cfg: XlConfig, key: string): string[] | undefined {
  const v = cfg.values.get(key);
  if (v === undefined) return undefined;
  if (v.kind !== 'list') throw settingError(cfg, key, `"${key}" is a single value but should be a list`);
  return v.items.map((item, i) => {
    if (item.kind !== 'atom') throw xlConfigError(cfg.source, item.pos, `item ${i + 1} of "${key}" is a list but should be a single value`);
    return item.value;
  });
}

/** A string as an xl.cfg double-quoted literal; refuses the control characters xl cannot escape (only \a \b \t \n \v \f \r exist). */
export function xlQuote(value: string, what = 'value'): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (code >= 0x07 && code <= 0x0d) out += `\\${'abtnvfr'[code - 0x07]}`;
    else if (code < 0x20 || code === 0x7f) throw new AppError('INVALID_CONFIG', `Invalid ${what} ${JSON.stringify(value)}: control character U+${code.toString(16).padStart(4, '0')} cannot be written in an xl config`);
    else out += ch;
  }
  return `${out}"`;
}

/** A value as xl.cfg text: numbers bare, strings quoted, lists on one line. */
export function xlLiteral(value: string | number | readonly (string | number)[], what = 'value'): string {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new AppError('INVALID_CONFIG', `Invalid ${what} ${value}: xl numbers are whole and not negative`);
    return String(value);
  }
  if (typeof value === 'string') return xlQuote(value, what);
  return value.length === 0 ? '[ ]' : `[ ${value.map((v) => xlLiteral(v, what)).join(', ')} ]`;
}
