// Unit tests of the output formatters: table alignment, CSV quoting, JSON and YAML.
import { describe, expect, it } from 'vitest';
import { csvField, flatten, keyValues, renderCsv, renderList, renderObject, renderTable, type Column } from './format.js';

interface Row {
  name: string;
  ip: string | null;
}
const COLUMNS: Column<Row>[] = [
  { header: 'NAME', value: (r) => r.name },
  { header: 'IPV4', value: (r) => r.ip },
];
const ROWS: Row[] = [
  { name: 'web1', ip: '10.0.0.2' },
  { name: 'a-much-longer-name', ip: null },
];

describe('csv', () => {
  it('leaves plain fields alone', () => {
    expect(csvField('web1')).toBe('web1');
  });
  it('quotes commas, quotes, newlines and edge blanks, doubling quotes', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField(' pad')).toBe('" pad"');
  });
  it('renders a header line and one line per row', () => {
    expect(renderCsv(['A', 'B'], [['1', 'x,y'], ['2', '']])).toBe('A,B\n1,"x,y"\n2,\n');
  });
});

describe('table', () => {
  it('aligns columns, shows empty cells as "-" and has no trailing blanks', () => {
    const out = renderTable(['NAME', 'IPV4'], [['web1', '10.0.0.2'], ['a-much-longer-name', '']]);
    expect(out).toBe('NAME                IPV4\nweb1                10.0.0.2\na-much-longer-name  -\n');
  });
});

describe('renderList', () => {
  it('csv uses the columns and empty strings for null', async () => {
    expect(await renderList(ROWS, 'csv', COLUMNS)).toBe('NAME,IPV4\nweb1,10.0.0.2\na-much-longer-name,\n');
  });
  it('json is the full objects', async () => {
    expect(JSON.parse(await renderList(ROWS, 'json', COLUMNS))).toEqual(ROWS);
  });
  it('yaml round-trips through the yaml package', async () => {
    const out = await renderList(ROWS, 'yaml', COLUMNS);
    expect(out).toContain('- name: web1');
    const { parse } = await import('yaml');
    expect(parse(out)).toEqual(ROWS);
  });
});

describe('renderObject', () => {
  it('table uses the human view, csv the flattened pairs', async () => {
    const value = { a: 1, nested: { b: 'x' }, list: ['p', 'q'] };
    expect(await renderObject(value, 'table', () => 'human\n')).toBe('human\n');
    expect(await renderObject(value, 'csv', () => '')).toBe('KEY,VALUE\na,1\nnested.b,x\nlist,p q\n');
  });
  it('flatten joins nested keys with dots', () => {
    expect(flatten({ x: { y: { z: true } } })).toEqual([['x.y.z', 'true']]);
  });
});

describe('keyValues', () => {
  it('aligns values after the longest key', () => {
    expect(keyValues([['A', '1'], ['Long', '2']])).toBe('A:     1\nLong:  2\n');
  });
});
