// Unit tests of the xl vif-spec parser and renderer: settings, rates with units and intervals, refusals and the round trip.
import { describe, expect, it } from 'vitest';
import { isIpAddress, parseVifRate, parseVifSpec, renderVifRate, renderVifSpec, type XlVifSpec } from './vif-spec.js';

describe('parseVifSpec accepts what xl accepts', () => {
  const cases: [string, XlVifSpec][] = [
    ['', {}],
    [' , ,', {}],
    ['bridge=xenbr0', { bridge: 'xenbr0' }],
    ['mac=00:16:3E:12:34:56,bridge=xenbr0', { mac: '00:16:3e:12:34:56', bridge: 'xenbr0' }],
    ['mac=0:16:3e:2:34:5', { mac: '00:16:3e:02:34:05' }],
    ['mac=02-48-47-00-00-07', { mac: '02:48:47:00:00:07' }],
    ['ip=10.0.0.5', { ip: ['10.0.0.5'] }],
    ['ip=10.0.0.5 10.0.0.6/24  fd00::5 ::ffff:10.0.0.7', { ip: ['10.0.0.5', '10.0.0.6/24', 'fd00::5', '::ffff:10.0.0.7'] }],
    ['type=ioemu,model=e1000', { type: 'ioemu', model: 'e1000' }],
    ['type=vif', { type: 'vif' }],
    ['model=rtl8139,vifname=web1-eth0,script=vif-route,backend=netdom', { model: 'rtl8139', vifname: 'web1-eth0', script: 'vif-route', backend: 'netdom' }],
    ['gatewaydev=eth0,forwarddev=eth1', { gatewaydev: 'eth0', forwarddev: 'eth1' }],
    ['netdev=eth0', { gatewaydev: 'eth0' }],
    ['rate=10Mb/s', { rate: { bytesPerSecond: 1_250_000, intervalUs: 50_000 } }],
    ['rate=250KB/s', { rate: { bytesPerSecond: 250_000, intervalUs: 50_000 } }],
    ['rate=1MB/s@20ms', { rate: { bytesPerSecond: 1_000_000, intervalUs: 20_000 } }],
    ['mtu=9000,devid=3', { mtu: 9000, devid: 3 }],
    ['vlan=10', { vlan: '10' }],
    ['vlan=10p/20', { vlan: '10p/20' }],
    ['vlan=10p/100+10x4', { vlan: '10p/100+10x4' }],
    ['vlan=10p/20-30u', { vlan: '10p/20-30u' }],
    ['accel=netfront', { accel: 'netfront' }],
    ['trusted', { trusted: true }],
    ['untrusted,bridge=b', { trusted: false, bridge: 'b' }],
    ['colo_sock_mirror_id=1,colo_checkpoint_port=9001', { colo: { colo_sock_mirror_id: '1', colo_checkpoint_port: '9001' } }],
    // The last setting wins, as in xl.
    ['bridge=a,bridge=b', { bridge: 'b' }],
    [' mac=00:16:3e:00:00:01 , bridge=xenbr0 ', { mac: '00:16:3e:00:00:01', bridge: 'xenbr0' }],
  ];
  for (const [spec, want] of cases) it(JSON.stringify(spec), () => expect(parseVifSpec(spec)).toEqual(want));
});

describe('parseVifSpec refuses, naming the part', () => {
  const cases: [string, string][] = [
    ['mac=00:16:3e:12:34', 'malformed MAC address: expected six groups of one or two hex digits separated by ":" (or "-"), e.g. 00:16:3e:12:34:56 (at "mac=00:16:3e:12:34")'],
    ['mac=00:16:3e:12:34:567', 'malformed MAC address'],
    ['mac=00:16:3e:12:34:zz', 'malformed MAC address'],
    ['mac=00:16-3e:12:34:56', 'malformed MAC address'],
    ['mac=', 'malformed MAC address'],
    ['ip=', 'ip= needs at least one address (at "ip=")'],
    ['ip=10.0.0.300', '"10.0.0.300" is not an IPv4 or IPv6 address (ip= takes addresses separated by spaces) (at "ip=10.0.0.300")'],
    ['ip=10.0.0.1/33', '"10.0.0.1/33" is not an IPv4 or IPv6 address'],
    ['ip=fd00:::1', '"fd00:::1" is not an IPv4 or IPv6 address'],
    ['ip=host.example', '"host.example" is not an IPv4 or IPv6 address'],
    ['type=virtio', 'unknown type "virtio" (ioemu or vif) (at "type=virtio")'],
    ['rate=10Mbit/s', 'Invalid rate "10Mbit/s": expected a number, an optional G, M or K, then B/s (bytes) or b/s (bits), e.g. 10Mb/s or 250KB/s (at "rate=10Mbit/s")'],
    ['rate=10MB', 'Invalid rate "10MB": expected a number'],
    ['rate=10mB/s', 'Invalid rate "10mB/s": expected a number'],
    ['rate=1.5MB/s', 'Invalid rate "1.5MB/s": expected a number'],
    ['rate=0B/s', 'Invalid rate "0B/s": the rate must be greater than zero'],
    ['rate=08B/s', 'Invalid rate "08B/s": the rate must be greater than zero'],
    ['rate=4294967296B/s', 'Invalid rate "4294967296B/s": the number 4294967296 is above 4294967295 (use a larger unit)'],
    ['rate=7b/s', 'Invalid rate "7b/s": the rate is below one byte per second'],
    ['rate=@20ms', 'Invalid rate "@20ms": no rate before "@"'],
    ['rate=1MB/s@', 'Invalid rate "1MB/s@": invalid replenishment interval ""'],
    ['rate=1MB/s@20min', 'Invalid rate "1MB/s@20min": invalid replenishment interval "20min": expected a number of s (the default unit), ms or us, e.g. 20ms (at "rate=1MB/s@20min")'],
    ['rate=1MB/s@0ms', 'Invalid rate "1MB/s@0ms": the replenishment interval must be greater than zero'],
    ['rate=1MB/s@5000s', 'Invalid rate "1MB/s@5000s": the interval 5000s is above 4294967295 us'],
    ['rate=4294967295GB/s', 'Invalid rate "4294967295GB/s": rate overflow: the credit per interval (bytes per second times the interval) does not fit in 64 bits'],
    ['mtu=0', 'mtu must be a whole number from 68 to 65535, not "0" (at "mtu=0")'],
    ['mtu=70000', 'mtu must be a whole number from 68 to 65535'],
    ['mtu=1500x', 'mtu must be a whole number from 68 to 65535, not "1500x"'],
    ['devid=-1', 'devid must be a whole number (0 or more), not "-1"'],
    ['vlan=0', 'VLAN term "0" names an ID outside 1-4094'],
    ['vlan=4095', 'VLAN term "4095" names an ID outside 1-4094'],
    ['vlan=20-10', 'VLAN range "20-10" ends below its start'],
    ['vlan=10/20', 'one VLAN must be marked as the PVID ("p") when several are given'],
    ['vlan=10p/20p', 'more than one VLAN is marked as the PVID ("p")'],
    ['vlan=10q', 'VLAN term "10q" is not ID[p|u], ID-ID[u] or ID+OFFSETxCOUNT[u]'],
    ['vlan=4000+100x2', 'VLAN term "4000+100x2" names an ID outside 1-4094'],
    ['bridge=', 'bridge= needs a value (at "bridge=")'],
    ['colo_sock_mirror_id=', 'colo_sock_mirror_id= needs a value'],
    ['bandwidth=10Mb/s', 'unknown vif setting "bandwidth" (xl knows mac, ip, bridge, type, model, vifname, script, backend, rate, gatewaydev, netdev, forwarddev, mtu, devid, vlan, accel, trusted, untrusted, colo_*) (at "bandwidth=10Mb/s")'],
    ['colo_unknown=1', 'unknown vif setting "colo_unknown"'],
    ['xenbr0', 'unknown vif setting "xenbr0" (expected key=value;'],
    ['bridge=xenbr0\n,mac=x', 'control character U+000a (a vif spec is one line)'],
  ];
  for (const [spec, message] of cases) {
    it(JSON.stringify(spec), () => {
      const error = { code: 'INVALID_CONFIG', details: expect.objectContaining({ spec }), message: expect.stringContaining(`Invalid vif spec ${JSON.stringify(spec)}: ${message}`) };
      expect(() => parseVifSpec(spec)).toThrow(expect.objectContaining(error));
    });
  }
});

describe('rates', () => {
  it('computes bytes per second and the interval as xl does', () => {
    const table: [string, number, number][] = [
      ['1B/s', 1, 50_000], ['8b/s', 1, 50_000], ['12b/s', 1, 50_000], ['1KB/s', 1_000, 50_000], ['1Kb/s', 125, 50_000],
      ['2MB/s', 2_000_000, 50_000], ['100Mb/s', 12_500_000, 50_000], ['1GB/s', 1e9, 50_000], ['1Gb/s', 125_000_000, 50_000],
      ['9000000GB/s@1us', 9e15, 1], ['010B/s', 8, 50_000],
      ['1MB/s@1s', 1e6, 1e6], ['1MB/s@2', 1e6, 2e6], ['1MB/s@20ms', 1e6, 20_000], ['1MB/s@20m', 1e6, 20_000],
      ['1MB/s@250us', 1e6, 250], ['1MB/s@250u', 1e6, 250], ['1MB/s@4294s', 1e6, 4294e6],
    ];
    for (const [text, bps, us] of table) expect([text, parseVifRate(text)]).toEqual([text, { bytesPerSecond: bps, intervalUs: us }]);
  });
  it('renders the shortest exact form and parses it back', () => {
    const table: [number, number, string][] = [
      [1_250_000, 50_000, '1250KB/s'], [1e6, 20_000, '1MB/s@20ms'], [1e9, 1e6, '1GB/s@1s'], [52_428_800, 50_000, '52428800B/s'],
      [7, 250, '7B/s@250us'], [9e15, 1, '9000000GB/s@1us'],
    ];
    for (const [bytesPerSecond, intervalUs, text] of table) {
      expect(renderVifRate({ bytesPerSecond, intervalUs })).toBe(text);
      expect(parseVifRate(text)).toEqual({ bytesPerSecond, intervalUs });
    }
    expect(() => renderVifRate({ bytesPerSecond: 4294967297, intervalUs: 50_000 })).toThrow('4294967297B/s is above 4294967295B/s');
    expect(() => renderVifRate({ bytesPerSecond: 0, intervalUs: 50_000 })).toThrow('must be a whole number above zero');
    expect(() => renderVifRate({ bytesPerSecond: 1, intervalUs: 0 })).toThrow('must be between 1 and 4294967295');
  });
});

describe('isIpAddress', () => {
  it('knows IPv4, IPv6 and prefixes', () => {
    for (const ok of ['10.0.0.1', '0.0.0.0', '255.255.255.255/32', '::', '::1', 'fe80::1/64', '2001:db8:0:0:0:0:0:1', '2001:db8::', '::ffff:192.0.2.1']) expect([ok, isIpAddress(ok)]).toEqual([ok, true]);
    for (const bad of [':1::', '1::2:', '10.0.0', '01.0.0.1', '10.0.0.1/', '1::2::3', '2001:db8:0:0:0:0:0:0:1', '12345::', 'g::1', '10.0.0.1/x', '::/129', '']) expect([bad, isIpAddress(bad)]).toEqual([bad, false]);
  });
});

describe('renderVifSpec', () => {
  const samples: XlVifSpec[] = [
    {},
    { mac: '02:48:47:00:00:07', bridge: 'hgrbr0', ip: ['10.123.0.7'], vifname: 'hgr0a1b2c3d', rate: { bytesPerSecond: 1_250_000, intervalUs: 20_000 } },
    { type: 'ioemu', model: 'e1000', script: 'vif-route', backend: 'netdom', gatewaydev: 'eth0', forwarddev: 'eth1', mtu: 9000, devid: 2, vlan: '10p/20', accel: 'x', trusted: false },
    { ip: ['10.0.0.1', 'fd00::1/64'], colo: { colo_sock_mirror_port: '1', colo_checkpoint_host: 'h' } },
  ];
  it('renders in a fixed order', () => {
    expect(renderVifSpec(samples[1]!)).toBe('mac=02:48:47:00:00:07,bridge=hgrbr0,ip=10.123.0.7,vifname=hgr0a1b2c3d,rate=1250KB/s@20ms');
    expect(renderVifSpec({})).toBe('');
  });
  it('round-trips: parse(render(x)) equals x', () => {
    for (const v of samples) expect(parseVifSpec(renderVifSpec(v))).toEqual(v);
  });
  it('refuses what it could not write faithfully', () => {
    expect(() => renderVifSpec({ bridge: 'a,mac=00:00:00:00:00:00' })).toThrow('bridge "a,mac=00:00:00:00:00:00" is empty or contains a comma');
    expect(() => renderVifSpec({ vifname: 'a\nb' })).toThrow('contains a comma, a control character');
    expect(() => renderVifSpec({ script: ' x' })).toThrow('surrounding white space');
    expect(() => renderVifSpec({ mac: '02:48:47:00:00:7' })).toThrow('is not in canonical form');
    expect(() => renderVifSpec({ mac: 'nope' })).toThrow('malformed MAC address');
    expect(() => renderVifSpec({ ip: [] })).toThrow('ip is an empty list');
    expect(() => renderVifSpec({ ip: ['10.0.0.1 10.0.0.2'] })).toThrow('an ip address contains white space');
    expect(() => renderVifSpec({ mtu: 10 })).toThrow('mtu must be a whole number from 68 to 65535');
    expect(() => renderVifSpec({ colo: { colo_nope: '1' } })).toThrow('unknown COLO setting "colo_nope"');
  });
});

describe('renderVifSpec round trip on generated NICs', () => {
  let seed = 777;
  const rand = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)]!;
  const word = () => Array.from({ length: 1 + rand(10) }, () => pick([...'abcxyz0189-_.:/@'])).join('');
  const hex = () => rand(256).toString(16).padStart(2, '0');
  it('parses 500 generated NICs back to themselves', () => {
    for (let i = 0; i < 500; i++) {
      const v: XlVifSpec = {};
      if (rand(2)) v.mac = Array.from({ length: 6 }, hex).join(':');
      if (rand(2)) v.ip = Array.from({ length: 1 + rand(3) }, () => pick(['10.0.0.1', '192.0.2.77/24', 'fd00::1', '::1', '2001:db8::5/64']));
      for (const key of ['bridge', 'model', 'vifname', 'script', 'backend', 'gatewaydev', 'forwarddev', 'accel'] as const) if (rand(3) === 0) v[key] = word();
      if (rand(3) === 0) v.type = pick(['ioemu', 'vif'] as const);
      if (rand(2)) v.rate = { bytesPerSecond: 1 + rand(4_000_000_000), intervalUs: pick([50_000, 1, 999, 20_000, 2_000_000]) };
      if (rand(3) === 0) v.mtu = 68 + rand(65535 - 68);
      if (rand(3) === 0) v.devid = rand(100);
      if (rand(3) === 0) v.vlan = pick(['10', '10p/20', '100+10x4', '5p/6-9u']);
      if (rand(3) === 0) v.trusted = rand(2) === 0;
      if (rand(4) === 0) v.colo = { colo_sock_mirror_id: word(), colo_checkpoint_port: String(rand(65535)) };
      expect(parseVifSpec(renderVifSpec(v))).toEqual(v);
    }
  });
});
