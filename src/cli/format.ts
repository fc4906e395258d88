// Output formatters of list and show commands: aligned tables, CSV, JSON and YAML (yaml loaded lazily).
import type { Format } from '../shared/schemas.js';

/** The formats every list command accepts. */
export const FORMATS: readonly Format[] = ['table', 'json', 'yaml', 'csv'];

/** One column of a list: its header and how to get the cell from a row. */
export interface Column<T> {
  header: string;
  value: (row: T) => string | number | boolean | null | undefined;
}

/** Renders an aligned text table: columns separated by two spaces, no trailing blanks, empty cells as "-". */
export function renderTable(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const cells = rows.map((r) => headers.map((_, i) => (r[i] === undefined || r[i] === '' ? '-' : r[i]!)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: readonly string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), ...cells.map(line)].join('\n') + '\n';
}

/** Quotes one CSV field per RFC 4180: fields with a comma, quote, CR/LF or edge blanks are quoted, quotes doubled. */
export function csvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** Renders CSV with a header line; lines end with "\n". */
export function renderCsv(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string>>): string {
  return [headers, ...rows].map((r) => r.map(csvField).join(',')).join('\n') + '\n';
}

/** Renders any value as YAML (the yaml package is imported on first use). */
export async function renderYaml(value: unknown): Promise<string> {
  // yaml is CommonJS under node: a bundled dynamic import exposes it only as `default`.
  const mod = (await import('yaml')) as typeof import('yaml') & { default?: typeof import('yaml') };
  const stringify = mod.stringify ?? mod.default?.stringify;
  if (!stringify) throw new Error('The yaml package has no stringify()');
  return stringify(value);
}

/** Renders a value as pretty JSON with a final newline. */
export function renderJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** Renders a list: table/csv use the columns, json/yaml the full objects. */
export async function renderList<T>(items: readonly T[], format: Format, columns: ReadonlyArray<Column<T>>): Promise<string> {
  if (format === 'json') return renderJson(items);
  if (format === 'yaml') return renderYaml(items);
  const headers = columns.map((c) => c.header);
  const rows = items.map((item) => columns.map((c) => cellText(c.value(item))));
  return format === 'csv' ? renderCsv(headers, rows) : renderTable(headers, rows);
}

/** Renders one object: json/yaml serialise it, table uses the human view, csv the key/value pairs given. */
export async function renderObject(value: unknown, format: Format, human: () => string, pairs?: () => Array<[string, string]>): Promise<string> {
  if (format === 'json') return renderJson(value);
  if (format === 'yaml') return renderYaml(value);
  if (format === 'csv') return renderCsv(['KEY', 'VALUE'], pairs ? pairs() : flatten(value));
  return human();
}

/** Key/value rows of an object, nested keys joined with dots. */
export function flatten(value: unknown, prefix = ''): Array<[string, string]> {
  if (typeof value !== 'object' || value === null) return [[prefix || 'value', cellText(value as string)]];
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(value)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) out.push(...flatten(v, key));
    else out.push([key, Array.isArray(v) ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(' ') : cellText(v as string)]);
  }
  return out;
}

/** Text of one cell: null/undefined become "". */
export function cellText(v: string | number | boolean | null | undefined): string {
  return v === null || v === undefined ? '' : String(v);
}

/** Aligned "Key: value" lines for human views. */
export function keyValues(pairs: ReadonlyArray<readonly [string, string]>, indent = ''): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${indent}${`${k}:`.padEnd(width)}  ${v}`.trimEnd()).join('\n') + (pairs.length ? '\n' : '');
}

/** Formats a nanosecond CPU time as seconds with two decimals ("1.23s"). */
export function formatCpuTime(ns: number): string {
  return `${(ns / 1e9).toFixed(2)}s`;
}
