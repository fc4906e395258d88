// Unit tests of the xl.cfg parser, its value readers and quoting: accepted forms, refusals with their positions.
import { describe, expect, it } from 'vitest';
import { parseXlConfig, parseXlNumber, xlLiteral, xlNumber, xlQuote, xlString, xlStringList, type XlValue } from './xl-cfg.js';

const plain = (v: XlValue | undefined): unknown => (v === undefined ? undefined : v.kind === 'atom' ? v.value : v.items.map(plain));
const values = (text: string) => Object.fromEntries([...parseXlConfig(text).values].map(([k, v]) => [k, plain(v)]));

describe('parseXlConfig accepts xl syntax', () => {
  const cases: [string, string, Record<string, unknown>][] = [
    ['double and single quotes', `name = "vm1"\nkernel='/boot/vmlinuz'\n`, { name: 'vm1', kernel: '/boot/vmlinuz' }],
    ['bare numbers kept as text', 'memory = 128\nmaxmem=0x200\nvcpus = 010\n', { memory: '128', maxmem: '0x200', vcpus: '010' }],
    ['semicolons between settings', 'name="h0"; type="hvm"\n', { name: 'h0', type: 'hvm' }],
    ['no final line break', 'memory = 64', { memory: '64' }],
    ['comments and blank lines', '# a comment\n\nmemory = 64 # trailing\n\n# end\n', { memory: '64' }],
    ['a # inside a string is not a comment', 'extra = "a # b"\n', { extra: 'a # b' }],
    ['escapes', String.raw`cmdline = "a \"q\" \'s\' \\ \t|\n|\r|\a\b\f\v"` + '\n', { cmdline: 'a "q" \'s\' \\ \t|\n|\r|\x07\b\f\v' }],
    ['the other quote needs no escape', `extra = "it's"\nroot = '"x"'\n`, { extra: "it's", root: '"x"' }],
    ['empty list', 'vif = [ ]\ndisk=[]\n', { vif: [], disk: [] }],
    ['list with a trailing comma', "vif = [ 'bridge=xenbr0', ]\n", { vif: ['bridge=xenbr0'] }],
    ['list spanning lines with comments inside', "disk = [\n  'a', # first\n\n  'b'\n  ,\n  'c',\n]\n", { disk: ['a', 'b', 'c'] }],
    ['mixed and nested lists', 'vnuma = [ [ "pnode=0", "size=512" ], [ "pnode=1", 512 ] ]\n', { vnuma: [['pnode=0', 'size=512'], ['pnode=1', '512']] }],
    ['the last setting wins', 'memory = 128\nmemory = 256\n', { memory: '256' }],
    ['+= appends to a string', 'extra = "a"\nextra += " b"\n', { extra: 'a b' }],
    ['+= appends to a list', "disk = [ 'x' ]\ndisk += [ 'y', 'z' ]\n", { disk: ['x', 'y', 'z'] }],
    ['+= without an earlier setting', "disk += [ 'y' ]\n", { disk: ['y'] }],
    ['keys with digits and underscores', 'cpu_weight = 512\nvif2 = []\n', { cpu_weight: '512', vif2: [] }],
    ['tabs', '\tmemory\t=\t64\n', { memory: '64' }],
    ['an empty file', '', {}],
    ['prototype names are plain keys', 'constructor = 1\nvalueof = 2\n', { constructor: '1', valueof: '2' }],
  ];
  for (const [what, text, want] of cases) it(what, () => expect(values(text)).toEqual(want));

  it('keeps order, positions, operators and comments', () => {
    const cfg = parseXlConfig('# guest\n# name\nname = "a"  # the name\nmemory = 1\nmemory += 2\n# tail\n', { source: 'a.cfg' });
    expect(cfg.source).toBe('a.cfg');
    expect(cfg.settings.map((s) => [s.key, s.op, s.pos.line, s.pos.column])).toEqual([['name', '=', 3, 1], ['memory', '=', 4, 1], ['memory', '+=', 5, 1]]);
    expect(cfg.settings[0]!.comments).toEqual([' guest', ' name']);
    expect(cfg.settings[0]!.comment).toBe(' the name');
    expect(cfg.trailingComments).toEqual([' tail']);
    expect(cfg.origins.get('memory')!.pos.line).toBe(5);
    expect(plain(cfg.values.get('memory'))).toBe('12');
    const v = cfg.values.get('name')!;
    expect(v.kind === 'atom' && v.form).toBe('string');
  });
});

describe('parseXlConfig refuses what xl refuses, with line:column', () => {
  const cases: [string, string, string][] = [
    ['unterminated string', 'name = "vm1\n', 'x.cfg:1:8: unterminated string: the closing " is missing on this line (strings cannot span lines)'],
    ['string across lines', "extra = 'a\nb'\n", "x.cfg:1:9: unterminated string"],
    ['unknown escape', 'extra = "a\\qb"\n', 'x.cfg:1:11: invalid escape "\\q" in a quoted string'],
    ['numeric escapes', 'extra = "\\x41"\n', 'x.cfg:1:10: numeric escape "\\x..."'],
    ['octal escapes', 'extra = "\\101"\n', 'x.cfg:1:10: numeric escape "\\1..."'],
    ['a missing "="', 'memory 128\n', 'x.cfg:1:8: expected "=" after "memory", found the number 128'],
    ['a missing value', 'memory =\n', 'x.cfg:1:9: expected a value for "memory" (a quoted string, a number or a [list]), found a line break'],
    ['a missing value at the end', 'memory =', 'x.cfg:1:9: expected a value for "memory" (a quoted string, a number or a [list]), found the end of the file'],
    ['a bare word', 'type = hvm\n', 'x.cfg:1:8: expected a value for "type" (a quoted string, a number or a [list]), found the name hvm'],
    ['two values', 'memory = 128 256\n', 'x.cfg:1:14: expected a line break or ";" after the value of "memory", found the number 256'],
    ['a unit after a number', 'memory = 128M\n', 'x.cfg:1:13: unexpected "M": setting names are lower-case letters'],
    ['a decimal point', 'memory = 1.5\n', 'x.cfg:1:11: unexpected ".": xl.cfg has no expressions'],
    ['a negative number', 'cap = -1\n', 'x.cfg:1:7: unexpected "-"'],
    ['Python', 'memory = 64 + 64\n', 'x.cfg:1:13: unexpected "+"'],
    ['upper-case keys', 'Memory = 64\n', 'x.cfg:1:1: unexpected "M"'],
    ['a value without a key', '"x"\n', 'x.cfg:1:1: expected a setting (KEY = VALUE), found the string "x"'],
    ['a list item without a comma', "disk = [ 'a' 'b' ]\n", 'x.cfg:1:14: expected "," or "]" in the list of "disk", found the string "b"'],
    ['an empty list item', "disk = [ 'a', , 'b' ]\n", 'x.cfg:1:15: expected a value for "disk" (a quoted string, a number or a [list]), found ","'],
    ['an unclosed list', "disk = [ 'a',\n", 'x.cfg:2:1: expected a value for "disk"'],
    ['a leading comma', 'vif = [ , ]\n', 'x.cfg:1:9: expected a value for "vif"'],
    ['a stray "]"', 'x = 1 ]\n', 'x.cfg:1:7: expected a line break or ";" after the value of "x", found "]"'],
    ['+= of a list to a string', 'extra = "a"\nextra += [ "b" ]\n', 'x.cfg:2:7: "extra +=" cannot add a list to a string'],
    ['DOS line endings', 'memory = 64\r\n', 'x.cfg:1:12: carriage return (a DOS line ending)'],
    ['a comment without a final line break', 'memory = 64\n# end', 'x.cfg:2:1: a comment on the last line must end with a line break'],
    ['a key starting with "_"', '_x = 1\n', 'x.cfg:1:1: unexpected character "_"'],
    ['other characters', 'memory = {64}\n', 'x.cfg:1:10: unexpected character "{"'],
    ['errors on later lines', 'name = "a"\n\n  vcpus = = 2\n', 'x.cfg:3:11: expected a value for "vcpus"'],
  ];
  for (const [what, text, message] of cases) {
    it(what, () => {
      const [, line, column] = /^x\.cfg:(\d+):(\d+):/.exec(message)!;
      const details = { source: 'x.cfg', line: Number(line), column: Number(column) };
      expect(() => parseXlConfig(text, { source: 'x.cfg' })).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG', details, message: expect.stringContaining(message) }));
    });
  }
});

describe('value readers', () => {
  const cfg = parseXlConfig('memory = 0x100\nmaxmem = "512"\nvcpus = 010\nbad = 1e3\nname = "vm"\nvif = [ "a", "b" ]\nnest = [ [ "a" ] ]\ncap = 400\n');
  it('reads numbers as xl does: hex, octal, quoted', () => {
    expect(xlNumber(cfg, 'memory')).toBe(256);
    expect(xlNumber(cfg, 'maxmem')).toBe(512);
    expect(xlNumber(cfg, 'vcpus')).toBe(8);
    expect(xlNumber(cfg, 'absent')).toBeUndefined();
    expect(() => xlNumber(cfg, 'bad')).toThrow('xl.cfg:4:1: "bad" is not a valid number: "1e3" (decimal, 0x hex or 0 octal)');
    expect(() => xlNumber(cfg, 'cap', { max: 100 })).toThrow('"cap" = 400 is above the maximum 100');
    expect(() => xlNumber(cfg, 'vif')).toThrow('"vif" is a list but should be a single value');
  });
  it('reads strings and string lists', () => {
    expect(xlString(cfg, 'name')).toBe('vm');
    expect(xlString(cfg, 'memory')).toBe('0x100');
    expect(xlStringList(cfg, 'vif')).toEqual(['a', 'b']);
    expect(() => xlStringList(cfg, 'name')).toThrow('"name" is a single value but should be a list');
    expect(() => xlStringList(cfg, 'nest')).toThrow('item 1 of "nest" is a list but should be a single value');
  });
  it('parses C numbers', () => {
    const table: [string, number | undefined][] = [['0', 0], ['42', 42], ['0x1F', 31], ['017', 15], [' 7', 7], ['-3', -3], ['+3', 3], ['08', undefined], ['0x', undefined], ['1e3', undefined], ['', undefined], ['12 ', undefined]];
    for (const [text, want] of table) expect([text, parseXlNumber(text)]).toEqual([text, want]);
  });
});

describe('quoting', () => {
  it('escapes quotes, backslashes and line breaks, and parses back to the same string', () => {
    const nasty = 'a"b\\c\nmemory = 99999\n\'d\'\t\r';
    const text = `name = ${xlQuote(nasty)}\n`;
    expect(text.split('\n')).toHaveLength(2);
    const cfg = parseXlConfig(text);
    expect([...cfg.values.keys()]).toEqual(['name']);
    expect(xlString(cfg, 'name')).toBe(nasty);
  });
  it('refuses control characters xl cannot write', () => {
    expect(() => xlQuote('a\x00b', 'name')).toThrow('Invalid name "a\\u0000b": control character U+0000 cannot be written in an xl config');
    expect(() => xlQuote('a\x1bb')).toThrow('U+001b');
  });
  it('writes numbers bare and lists on one line', () => {
    expect(xlLiteral(128)).toBe('128');
    expect(xlLiteral(['a', 'b"'])).toBe('[ "a", "b\\"" ]');
    expect(xlLiteral([])).toBe('[ ]');
    expect(() => xlLiteral(-1, 'cap')).toThrow('Invalid cap -1');
    expect(() => xlLiteral(1.5)).toThrow();
  });
});
