// /proc/user_beancounters' text layout for the beancounters the API answers (hangar vz beancounters CTID).
import type { Beancounter } from '../../shared/schemas.js';

/** /proc/user_beancounters' layout for one container: a version line, a header, then one row per resource (unlimited as vzctl's LONG_MAX). */
export function formatUserBeancounters(ctid: number | string, rows: readonly Beancounter[]): string {
  const LONG_MAX = '9223372036854775807';
  const n = (v: number | null) => (v === null ? LONG_MAX : String(v));
  const lines = ['Version: 2.5', '       uid  resource                     held              maxheld              barrier                limit              failcnt'];
  rows.forEach((r, i) => {
    const id = i === 0 ? `${String(ctid).padStart(10)}:` : ' '.repeat(11);
    lines.push(`${id}  ${r.resource.padEnd(24)}${String(r.held).padStart(12)}${(r.maxheld === null ? '-' : String(r.maxheld)).padStart(21)}${n(r.barrier).padStart(21)}${n(r.limit).padStart(21)}${(r.failcnt === null ? '-' : String(r.failcnt)).padStart(21)}`);
  });
  return `${lines.join('\n')}\n`;
}
