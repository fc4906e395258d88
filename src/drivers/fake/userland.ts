// The fake driver's userland: a small sh and the few programs tests run in fake instances, with what they hold charged against limits.memory.
import { posix } from 'node:path';

/** The instance a fake program runs in: its host name, its files, and how much memory a process may hold there. */
export interface FakeSystem {
  hostname: string;
  /** Regular files by absolute path; a directory exists when it is one of FAKE_DIRS or a file lies below it. */
  files: Map<string, Buffer>;
  /** Bytes one process may hold before the fake OOM killer ends it (limits.memory minus what init holds). */
  memoryAvailable: number;
  /** CPUs the instance sees (nproc). */
  cpus: number;
  /** Called when the OOM killer ends a process. */
  onOomKill(): void;
  /** Called with the most a process held, when it ends. */
  onPeak(bytes: number): void;
}

/** How a fake command is run: its input (read in full before it runs), environment and working directory. */
export interface FakeRunOptions {
  stdin: Buffer;
  env: Record<string, string>;
  cwd: string;
}

/** What a fake command gave: its output and exit status (128 + the signal number when killed). */
export interface FakeResult {
  stdout: Buffer;
  stderr: Buffer;
  code: number;
}

/** Directories every fake instance has. */
export const FAKE_DIRS: readonly string[] = ['/', '/dev', '/etc', '/proc', '/root', '/run', '/tmp'];

/** Exit status of a process ended by SIGKILL (the OOM killer). */
const KILLED = 128 + 9;

class OomKilled extends Error {}

/** Unwinds a script at the `exit` builtin. */
class ExitScript {
  constructor(readonly code: number) {}
}

interface Io {
  /** Unread input: the first program that reads it takes it all. */
  stdin: { data: Buffer };
  out: Buffer[];
  err: Buffer[];
  env: Record<string, string>;
  cwd: string;
  /** Bytes the process holds now (its input pipe and what it produced). */
  held: number;
  peak: number;
}

type Program = (sys: FakeSystem, args: string[], io: Io) => number;

/** Charges n more bytes to the process; the OOM killer ends it when that exceeds what it may hold. */
function hold(sys: FakeSystem, io: Io, n: number): void {
  if (io.held + n > sys.memoryAvailable) {
    sys.onOomKill();
    throw new OomKilled();
  }
  io.held += n;
  io.peak = Math.max(io.peak, io.held);
}

function write(sys: FakeSystem, io: Io, data: Buffer | string, to: 'out' | 'err' = 'out'): void {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  hold(sys, io, b.length);
  io[to].push(b);
}

function takeStdin(io: Io): Buffer {
  const d = io.stdin.data;
  io.stdin.data = Buffer.alloc(0);
  return d;
}

function isDir(sys: FakeSystem, path: string): boolean {
  return FAKE_DIRS.includes(path) || [...sys.files.keys()].some((f) => f.startsWith(`${path}/`));
}

/** Reads a file: undefined when missing, 'endless' for /dev/zero. */
function readFile(sys: FakeSystem, path: string): Buffer | 'endless' | undefined {
  if (path === '/dev/zero') return 'endless';
  if (path === '/dev/null') return Buffer.alloc(0);
  return sys.files.get(path);
}

/** A count with busybox's binary suffixes (k, m, g). */
function parseCount(s: string | undefined): number | undefined {
  const m = /^(\d+)([kmg]?)$/i.exec(s ?? '');
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ['', 'k', 'm', 'g'].indexOf(m[2]!.toLowerCase());
}

/** Splits `-c N` / `-n N` options from file operands. */
function options(args: string[]): { opts: Record<string, string>; rest: string[] } {
  const opts: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = /^-([a-z])(.*)$/.exec(args[i]!);
    if (m) opts[m[1]!] = m[2] || (args[++i] ?? '');
    else rest.push(args[i]!);
  }
  return { opts, rest };
}

/** The input of a filter program: its file operand or stdin. */
function input(sys: FakeSystem, io: Io, name: string, file: string | undefined): Buffer | 'endless' | undefined {
  if (file === undefined) return takeStdin(io);
  const data = readFile(sys, posix.resolve(io.cwd, file));
  if (data === undefined) write(sys, io, `${name}: ${file}: No such file or directory\n`, 'err');
  return data;
}

const PROGRAMS: Record<string, Program> = {
  true: () => 0,
  false: () => 1,
  exit: (_sys, args) => Number(args[0] ?? 0) & 255,
  echo: (sys, args, io) => {
    const bare = args[0] === '-n';
    write(sys, io, `${(bare ? args.slice(1) : args).join(' ')}${bare ? '' : '\n'}`);
    return 0;
  },
  hostname: (sys, _args, io) => (write(sys, io, `${sys.hostname}\n`), 0),
  pwd: (sys, _args, io) => (write(sys, io, `${io.cwd}\n`), 0),
  nproc: (sys, _args, io) => (write(sys, io, `${sys.cpus}\n`), 0),
  tty: (sys, _args, io) => (write(sys, io, 'not a tty\n'), 1),
  cat: (sys, args, io) => {
    if (args.length === 0) { write(sys, io, takeStdin(io)); return 0; }
    let code = 0;
    for (const f of args) {
      const data = input(sys, io, 'cat', f);
      if (data === 'endless') { write(sys, io, `cat: ${f}: endless in the fake (use head -c)\n`, 'err'); code = 1; } else if (data === undefined) code = 1;
      else write(sys, io, data);
    }
    return code;
  },
  head: (sys, args, io) => {
    const { opts, rest } = options(args);
    const data = input(sys, io, 'head', rest[0]);
    if (data === undefined) return 1;
    const bytes = parseCount(opts.c);
    if (bytes !== undefined) {
      // Held before it is made: a hog is killed without the fake allocating what it asked for.
      if (data === 'endless') { hold(sys, io, bytes); io.out.push(Buffer.alloc(bytes)); return 0; }
      write(sys, io, data.subarray(0, bytes));
      return 0;
    }
    if (data === 'endless') { write(sys, io, 'head: /dev/zero has no lines\n', 'err'); return 1; }
    const n = parseCount(opts.n) ?? 10;
    write(sys, io, data.toString('utf8').split(/(?<=\n)/).slice(0, n).join(''));
    return 0;
  },
  tail: (sys, args, io) => {
    const { opts, rest } = options(args);
    const data = input(sys, io, 'tail', rest[0]);
    if (data === undefined || data === 'endless') return 1;
    const n = parseCount(opts.n) ?? 10;
    // tail keeps the last n lines in memory: one line without a newline is held whole.
    let pos = data.length - (data[data.length - 1] === 0x0a ? 2 : 1);
    for (let seen = 0; pos >= 0; pos--) if (data[pos] === 0x0a && ++seen === n) break;
    write(sys, io, data.subarray(pos + 1));
    return 0;
  },
  wc: (sys, args, io) => {
    const { opts, rest } = options(args);
    const data = input(sys, io, 'wc', rest[0]);
    if (data === undefined || data === 'endless') return 1;
    const lines = data.reduce((c, b) => c + (b === 0x0a ? 1 : 0), 0);
    const words = data.toString('utf8').split(/\s+/).filter(Boolean).length;
    write(sys, io, `${'l' in opts ? lines : 'c' in opts ? data.length : `${lines} ${words} ${data.length}`}\n`);
    return 0;
  },
  sh: (sys, args, io) => {
    if (args[0] !== '-c' || args[1] === undefined) { write(sys, io, 'sh: the fake sh only runs -c SCRIPT\n', 'err'); return 2; }
    return runScript(sys, args[1], io);
  },
};

/** Runs one program in io; 127 when the fake has no such program, 137 when the OOM killer ended it. */
function runProgram(sys: FakeSystem, argv: string[], io: Io): number {
  const [name, ...args] = argv;
  if (name === undefined) return 0;
  const prog = Object.hasOwn(PROGRAMS, name) ? PROGRAMS[name] : undefined;
  if (!prog) {
    io.err.push(Buffer.from(`${name}: not found\n`));
    return 127;
  }
  try {
    return prog(sys, args, io);
  } catch (e) {
    if (e instanceof OomKilled) return KILLED;
    throw e;
  } finally {
    sys.onPeak(io.peak);
  }
}

/** Runs a command line as the instance's init would exec it: argv directly, `sh -c SCRIPT` through the fake sh. */
export function runFake(sys: FakeSystem, argv: string[], opts: FakeRunOptions): FakeResult {
  const io: Io = { stdin: { data: opts.stdin }, out: [], err: [], env: { ...opts.env }, cwd: opts.cwd, held: opts.stdin.length, peak: opts.stdin.length };
  const code = runProgram(sys, argv, io);
  return { stdout: Buffer.concat(io.out), stderr: Buffer.concat(io.err), code };
}

/** True when a working directory exists in the instance. */
export function fakeDirExists(sys: FakeSystem, path: string): boolean {
  return isDir(sys, path);
}

// ---- the sh: `;`, newlines, `|`, `&&`, `||`, quotes, $VAR, ${VAR}, $?, $(...), >, >>, 2>, >&2, 2>&1, set -o pipefail, exit ----

type Segment = { lit: string } | { param: string } | { subst: string };
type Token = { op: string } | { word: Segment[] };
interface Command { words: Segment[][]; redirects: { op: string; target?: Segment[] }[] }
interface Pipeline { commands: Command[]; /** How it joins the previous one. */ join: ';' | '&&' | '||' }

const OPERATORS = ['2>&1', '>&2', '2>', '>>', '&&', '||', '>', '|', ';', '\n'];

/** The end of a $(...) that starts at i (just after "$("), honouring nested parentheses and quotes. */
function substEnd(s: string, i: number): number {
  let depth = 1;
  for (; i < s.length; i++) {
    const c = s[i];
    if (c === "'") i = s.indexOf("'", i + 1);
    else if (c === '"') { do i = s.indexOf('"', i + 1); while (i > 0 && s[i - 1] === '\\'); }
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
    if (i < 0) break;
  }
  throw new Error('sh: unterminated $(');
}

/** Reads a $-expansion at s[i] === '$'; answers the segment and the index after it, or undefined for a literal "$". */
function dollar(s: string, i: number): [Segment, number] | undefined {
  if (s[i + 1] === '(') { const end = substEnd(s, i + 2); return [{ subst: s.slice(i + 2, end) }, end + 1]; }
  if (s[i + 1] === '{') { const end = s.indexOf('}', i); if (end < 0) throw new Error('sh: unterminated ${'); return [{ param: s.slice(i + 2, end) }, end + 1]; }
  const m = /^(\?|[A-Za-z_][A-Za-z0-9_]*)/.exec(s.slice(i + 1));
  return m ? [{ param: m[1]! }, i + 1 + m[1]!.length] : undefined;
}

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c !== '\n' && /\s/.test(c)) { i++; continue; }
    if (c === '#') { while (i < s.length && s[i] !== '\n') i++; continue; }
    const op = OPERATORS.find((o) => s.startsWith(o, i));
    if (op) { out.push({ op: op === '\n' ? ';' : op }); i += op.length; continue; }
    if (/[;|&>]/.test(c)) throw new Error(`sh: syntax error near "${c}"`);
    const word: Segment[] = [];
    let quoted = false;
    while (i < s.length && !/[\s;|&>]/.test(s[i]!)) {
      const ch = s[i]!;
      if (ch === "'") {
        const end = s.indexOf("'", i + 1);
        if (end < 0) throw new Error('sh: unterminated quote');
        word.push({ lit: s.slice(i + 1, end) });
        i = end + 1;
        quoted = true;
      } else if (ch === '"') {
        i++;
        quoted = true;
        while (i < s.length && s[i] !== '"') {
          const d = s[i] === '$' ? dollar(s, i) : undefined;
          if (d) { word.push(d[0]); i = d[1]; continue; }
          if (s[i] === '\\' && /["\\$`]/.test(s[i + 1] ?? '')) i++;
          word.push({ lit: s[i]! });
          i++;
        }
        if (s[i] !== '"') throw new Error('sh: unterminated quote');
        i++;
      } else if (ch === '$' && dollar(s, i) !== undefined) {
        const [seg, next] = dollar(s, i)!;
        word.push(seg);
        i = next;
      } else {
        if (ch === '\\') i++;
        word.push({ lit: s[i] ?? '' });
        i++;
      }
    }
    if (word.length > 0 || quoted) out.push({ word: quoted && word.length === 0 ? [{ lit: '' }] : word });
  }
  return out;
}

function parse(tokens: Token[]): Pipeline[] {
  const out: Pipeline[] = [];
  let join: Pipeline['join'] = ';';
  let pipeline: Command[] = [];
  let cmd: Command = { words: [], redirects: [] };
  const endCommand = () => {
    if (cmd.words.length > 0 || cmd.redirects.length > 0) pipeline.push(cmd);
    cmd = { words: [], redirects: [] };
  };
  const endPipeline = (next: Pipeline['join']) => {
    endCommand();
    if (pipeline.length > 0) out.push({ commands: pipeline, join });
    else if (next !== ';') throw new Error(`sh: syntax error near "${next}"`);
    pipeline = [];
    join = next;
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if ('word' in t) { cmd.words.push(t.word); continue; }
    if (t.op === '|') { endCommand(); continue; }
    if (t.op === ';' || t.op === '&&' || t.op === '||') { endPipeline(t.op); continue; }
    if (t.op === '>&2' || t.op === '2>&1') { cmd.redirects.push({ op: t.op }); continue; }
    const target = tokens[i + 1];
    if (!target || !('word' in target)) throw new Error(`sh: syntax error: ${t.op} needs a file`);
    cmd.redirects.push({ op: t.op, target: target.word });
    i++;
  }
  endPipeline(';');
  return out;
}

interface Shell { sys: FakeSystem; io: Io; status: number; pipefail: boolean }

function expand(sh: Shell, word: Segment[]): string {
  return word.map((seg) => {
    if ('lit' in seg) return seg.lit;
    if ('param' in seg) return seg.param === '?' ? String(sh.status) : (sh.io.env[seg.param] ?? '');
    const sub: Io = { ...sh.io, stdin: { data: Buffer.alloc(0) }, out: [], held: 0, peak: 0 };
    sh.status = runScript(sh.sys, seg.subst, sub);
    return Buffer.concat(sub.out).toString('utf8').replace(/\n+$/, '');
  }).join('');
}

/** Runs one command of a pipeline with its redirections; input is the previous command's output (or the script's stdin). */
function runCommand(sh: Shell, cmd: Command, stdin: { data: Buffer }, alone: boolean): { code: number; out: Buffer } {
  const argv = cmd.words.map((w) => expand(sh, w));
  const io: Io = { ...sh.io, stdin, out: [], err: [], held: stdin.data.length, peak: stdin.data.length };
  let code: number;
  if (argv[0] === 'exit' && alone) throw new ExitScript(Number(argv[1] ?? sh.status) & 255);
  if (argv[0] === 'set') {
    if (argv[1] === '-o' && argv[2] === 'pipefail') sh.pipefail = true;
    code = 0;
  } else {
    code = runProgram(sh.sys, argv, io);
    if (code === KILLED) sh.io.err.push(Buffer.from('Killed\n'));
  }
  let out = Buffer.concat(io.out);
  let err = Buffer.concat(io.err);
  for (const r of cmd.redirects) {
    if (r.op === '>&2') { err = Buffer.concat([err, out]); out = Buffer.alloc(0); continue; }
    if (r.op === '2>&1') { out = Buffer.concat([out, err]); err = Buffer.alloc(0); continue; }
    const path = posix.resolve(sh.io.cwd, expand(sh, r.target!));
    const data = r.op === '2>' ? err : out;
    if (r.op === '2>') err = Buffer.alloc(0); else out = Buffer.alloc(0);
    if (path === '/dev/null') continue;
    if (path.startsWith('/proc/') || path.startsWith('/dev/') || isDir(sh.sys, path)) {
      err = Buffer.concat([err, Buffer.from(`sh: can't create ${path}: Permission denied\n`)]);
      code = 1;
      continue;
    }
    sh.sys.files.set(path, r.op === '>>' ? Buffer.concat([sh.sys.files.get(path) ?? Buffer.alloc(0), data]) : data);
  }
  sh.io.err.push(err);
  return { code, out };
}

/** Runs a script in io; answers its exit status. */
function runScript(sys: FakeSystem, script: string, io: Io): number {
  const sh: Shell = { sys, io, status: 0, pipefail: false };
  let pipelines: Pipeline[];
  try {
    pipelines = parse(tokenize(script));
  } catch (e) {
    io.err.push(Buffer.from(`${e instanceof Error ? e.message : String(e)}\n`));
    return 2;
  }
  try {
    for (const p of pipelines) {
      if ((p.join === '&&' && sh.status !== 0) || (p.join === '||' && sh.status === 0)) continue;
      let stdin = io.stdin;
      let failed = 0;
      for (const [i, cmd] of p.commands.entries()) {
        const r = runCommand(sh, cmd, stdin, p.commands.length === 1);
        if (r.code !== 0) failed = r.code;
        if (i === p.commands.length - 1) {
          sh.status = sh.pipefail && failed !== 0 ? failed : r.code;
          io.out.push(r.out);
        }
        stdin = { data: r.out };
      }
    }
  } catch (e) {
    if (e instanceof ExitScript) return e.code;
    throw e;
  }
  return sh.status;
}
