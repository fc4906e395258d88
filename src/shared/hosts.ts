// Host names and ssh:// URLs of remote hosts, checked the same way by the CLI (before sending) and the daemon.
import { AppError } from './errors.js';
import { nameProblem } from './names.js';

/** The name of the daemon's own machine: implicit, always there, never added or removed. */
export const LOCAL_HOST = 'local';

/** Where a remote host's SSH server is and who Hangar logs in as. */
export interface SshTarget {
  user: string;
  address: string;
  port: number;
}

const USER_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
// A DNS name or dotted quad (labels of letters, digits and "-"), or a bracketed IPv6 address.
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6_RE = /^[0-9A-Fa-f:.]{2,45}$/;

/** Throws INVALID_NAME unless name can name a remote host ("local" is the daemon's own machine). */
export function assertHostName(name: string): string {
  const problem = nameProblem(name);
  if (problem) throw new AppError('INVALID_NAME', `Invalid host name ${JSON.stringify(name)}: ${problem}`);
  if (name === LOCAL_HOST) throw new AppError('INVALID_NAME', `Invalid host name "local": it is the daemon's own machine, which is always there`);
  return name;
}

/** Throws INVALID_NAME unless name can name a host the daemon knows ("local" or a remote host's name): for --host and path arguments. */
export function assertHostRef(name: string): string {
  const problem = nameProblem(name);
  if (problem) throw new AppError('INVALID_NAME', `Invalid host name ${JSON.stringify(name)}: ${problem}`);
  return name;
}

/** Parses ssh://USER@ADDR[:PORT] (IPv6 in brackets); INVALID_ARGUMENT naming what is wrong. */
export function parseSshUrl(url: string): SshTarget {
  const bad = (why: string) => new AppError('INVALID_ARGUMENT', `Invalid host URL ${JSON.stringify(url)}: ${why} (expected ssh://USER@ADDRESS[:PORT])`);
  const m = /^ssh:\/\/([^@/?#]*)@(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?\/?$/.exec(url);
  if (!m) {
    if (!url.startsWith('ssh://')) throw bad('only ssh:// URLs are supported');
    if (!url.slice(6).includes('@')) throw bad('the user is missing');
    throw bad('it has a path, a query or stray characters');
  }
  const [, user = '', rawAddress = '', rawPort] = m;
  if (user.includes(':')) throw bad('a password does not belong in the URL (Hangar logs in with a key)');
  if (!USER_RE.test(user)) throw bad(user === '' ? 'the user is missing' : `${JSON.stringify(user)} is not a user name`);
  const v6 = rawAddress.startsWith('[');
  const address = v6 ? rawAddress.slice(1, -1) : rawAddress;
  if (address === '') throw bad('the address is missing');
  if (v6 ? !IPV6_RE.test(address) || !address.includes(':') : !HOSTNAME_RE.test(address)) throw bad(`${JSON.stringify(address)} is not a host name or IP address`);
  let port = 22;
  if (rawPort !== undefined) {
    if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535) throw bad(`port ${JSON.stringify(rawPort)} is not a number from 1 to 65535`);
    port = Number(rawPort);
  }
  return { user, address, port };
}

/** The URL of a target as the user writes it. */
export function sshUrl(t: SshTarget): string {
  return `ssh://${t.user}@${t.address.includes(':') ? `[${t.address}]` : t.address}${t.port === 22 ? '' : `:${t.port}`}`;
}

/** Answers a Linux interface name a host's own bridge may have (1-15 letters, digits, "_", "." or "-", starting with a letter or digit); throws INVALID_ARGUMENT otherwise. */
export function assertBridgeName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(name)) throw new AppError('INVALID_ARGUMENT', `Invalid bridge name ${JSON.stringify(name)}: 1-15 letters, digits, "_", "." or "-"`);
  return name;
}
