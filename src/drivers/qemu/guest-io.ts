// Talking to a VM's guest: commands through its agent (guest-exec), its serial console and its graphical (VNC) console.
import { PassThrough, type Duplex } from 'node:stream';
import { AppError } from '../../shared/errors.js';
import type { HostProcess } from '../../host/host.js';
import type { ExecSpec } from '../driver.js';
import { withCwd } from './qga.js';
import { dropAgent, openAgent } from './sessions.js';
import type { Vm } from './vm.js';

const AGENT_READY_MS = 30_000;
// Runs the command as the leader of a session (and process group) of its own where the guest has setsid, so that a
// signal to its group reaches what it started too; the agent's child is no group leader, so setsid does not fork.
const SETSID_WRAP = 'command -v setsid >/dev/null 2>&1 && exec setsid "$@"; exec "$@"';
const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Runs spec in the guest through its agent once stdin ends (the agent takes stdin whole); no terminal. kill() sends
 * the signal through a guest `kill` to the command's process group (POSIX guests; the agent has no kill of its own);
 * a kill before the command started means it never starts.
 */
export function execInGuest(vm: Vm, spec: ExecSpec): HostProcess {
  const name = vm.record.name;
  if (spec.tty) throw new AppError('UNSUPPORTED', `Instance "${name}" is a VM: exec runs through the guest agent, which has no terminal (drop -t)`);
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const input: Buffer[] = [];
  let posix: boolean | undefined;
  let guestPid: number | undefined;
  let pending: string | undefined;
  let killedEarly: string | undefined;
  let agent: Awaited<ReturnType<typeof openAgent>> | undefined;
  const signalGuest = (sig: string) => {
    if (agent && guestPid !== undefined && posix) void agent.signal(guestPid, sig).catch(() => undefined);
    else pending = sig;
  };
  let started = false;
  let gotPid!: (pid: number) => void;
  const guestPidKnown = new Promise<number>((r) => { gotPid = r; });
  const done = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    stdin.on('data', (d: Buffer) => input.push(d));
    stdin.on('end', () => {
      started = true;
      void (async () => {
        if (killedEarly) {
          stdout.end();
          stderr.end();
          resolve({ code: null, signal: killedEarly });
          return;
        }
        try {
          const m = await vm.settledMon();
          // A guest that faults (now or while we wait for its agent) ends the wait at once, with the reason.
          const faulted = m.faulted.then((f): never => { throw new AppError('INVALID_STATE', `Cannot run a command in instance "${name}": it is in error (${f.reason})`); });
          if (m.fault) await faulted;
          const qga = await openAgent(vm.host, vm.files.qga);
          await Promise.race([qga.waitReady(AGENT_READY_MS), faulted]);
          m.agentSeen = true;
          posix = await qga.isPosix();
          agent = qga;
          const base = spec.cwd ? withCwd(spec.command, spec.cwd) : spec.command;
          const argv = posix ? ['/bin/sh', '-c', SETSID_WRAP, 'hangar-exec', ...base] : base;
          const onPid = (pid: number) => {
            guestPid = pid;
            gotPid(pid);
            if (pending) signalGuest(pending);
          };
          // The agent replaces the whole environment when one is given: keep a usable PATH.
          const res = await Promise.race([qga.run(argv, { input: Buffer.concat(input), onPid, ...(spec.env ? { env: { PATH: GUEST_PATH, ...spec.env } } : {}) }), faulted]);
          stdout.end(res.stdout);
          stderr.end(res.stderr);
          resolve({ code: res.code, signal: null });
        } catch (err) {
          dropAgent(vm.files.qga);
          stdout.end();
          stderr.end(`hangar: ${err instanceof Error ? err.message : String(err)}\n`);
          resolve({ code: 126, signal: null });
        }
      })();
    });
  });
  const kill = (sig: NodeJS.Signals = 'SIGTERM') => {
    if (!started) {
      killedEarly = sig;
      stdin.end();
      return;
    }
    signalGuest(sig);
  };
  const signalProblem = () => (posix === false ? `the guest agent of VM "${name}" runs it on a guest without a POSIX kill, and cannot signal a process itself` : undefined);
  return { pid: Promise.resolve(-1), guestPid: guestPidKnown, stdin, stdout, stderr, wait: () => done, kill, signalProblem };
}

/** Ends guest process pid if the agent's record of it says it still runs (a pid the agent did not start, or that exited, is left alone); true when it was ended. */
export async function endGuestProcess(vm: Vm, pid: number): Promise<boolean> {
  const qga = await openAgent(vm.host, vm.files.qga);
  await qga.waitReady(5_000);
  const st = await qga.execute<{ exited?: boolean }>('guest-exec-status', { pid }).catch(() => ({ exited: true }));
  if (st.exited !== false || !(await qga.isPosix())) return false;
  await qga.signal(pid, 'SIGKILL');
  return true;
}

/** The serial console: a connection to QEMU's console socket (its output is also logged by QEMU). */
export function attachSerialConsole(vm: Vm): HostProcess {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let closeSock: (() => void) | undefined;
  const done = (async () => {
    const sock = await vm.host.connectUnix(vm.files.console);
    closeSock = () => sock.destroy();
    stdin.pipe(sock);
    sock.pipe(stdout);
    await new Promise<void>((r) => { sock.on('close', () => r()); sock.on('error', () => r()); });
    return { code: 0, signal: null };
  })();
  return { pid: Promise.resolve(-1), stdin, stdout, stderr: null, wait: () => done.catch(() => ({ code: 1, signal: null })), kill: () => closeSock?.() };
}

/** The graphical console: QEMU's VNC server on its unix socket (RFB bytes, for a websocket relay to noVNC). */
export function openVncConsole(vm: Vm): Promise<Duplex> {
  return vm.host.connectUnix(vm.files.vnc);
}
