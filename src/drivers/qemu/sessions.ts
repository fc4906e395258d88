// The per-VM QMP and guest-agent connections, cached for the daemon's lifetime, and the run state the QMP events keep current.
import type { Host } from '../../host/host.js';
import type { EventType } from '../../shared/schemas.js';
import { QmpClient } from './qmp/client.js';
import { QgaClient } from './qga.js';

const QMP_CONNECT_MS = 5_000;

/** QMP run states the guest cannot leave without a reset (a KVM internal error, a disk error, a panic or power-off held paused): the VM is in error, not frozen. */
export const FAULT_RUN_STATES: ReadonlySet<string> = new Set(['internal-error', 'io-error', 'guest-panicked', 'shutdown']);

/** A fault of a VM: why, and since when. */
export interface VmFault { reason: string; since: string }

/**
 * One QMP connection per VM for the daemon's lifetime: QEMU serves one client at a time, and STOP/RESUME events keep the
 * run state current without a round trip per state() call.
 */
export interface Monitor {
  qmp: QmpClient;
  /** The vCPUs run (false when paused by the user, while migrating, or after a fault). */
  running: boolean;
  /** The QMP run state as learned at connect and after every STOP. */
  status: string;
  /** Settles once the run state after the latest STOP is known (and a fault's reason is read). */
  settled: Promise<void>;
  /** The fault while the VM is in one of FAULT_RUN_STATES. */
  fault: VmFault | null;
  /** Resolves when the VM faults: waits on the guest (its agent) end at once. */
  faulted: Promise<VmFault>;
  /** The last BLOCK_IO_ERROR event's data: why an io-error stop happened. */
  ioError: Record<string, unknown> | null;
  /** The guest agent answered during this QEMU run. */
  agentSeen: boolean;
}

/** What the instance that opens a monitor contributes: lifecycle events, and the reading of a fault. */
export interface MonitorHooks {
  event?: (type: EventType, data: Record<string, unknown>) => void;
  fault: (m: Monitor) => Promise<VmFault>;
}

const monitors = new Map<string, Promise<Monitor>>();
const agents = new Map<string, Promise<QgaClient>>();

// QMP events that become Hangar lifecycle events, seen the moment QEMU sends them.
const QMP_EVENTS: Record<string, EventType> = {
  SHUTDOWN: 'instance-shutdown',
  RESET: 'instance-reset',
  STOP: 'instance-paused',
  RESUME: 'instance-resumed',
  GUEST_PANICKED: 'instance-panicked',
  BALLOON_CHANGE: 'instance-balloon-changed',
};

/** The monitor of the QEMU whose QMP socket is qmpPath: the cached one, or a new connection (retried while QEMU starts). */
export async function openMonitor(host: Host, qmpPath: string, hooks: MonitorHooks): Promise<Monitor> {
  const cached = monitors.get(qmpPath);
  if (cached) return cached;
  const p: Promise<Monitor> = (async () => {
    const qmp = await QmpClient.connect(host, qmpPath, { retryForMs: QMP_CONNECT_MS });
    const st = await qmp.queryStatus();
    let signalFault: (f: VmFault) => void = () => undefined;
    const m: Monitor = {
      qmp, running: st.running, status: st.status, settled: Promise.resolve(), fault: null, ioError: null, agentSeen: false,
      faulted: new Promise<VmFault>((r) => { signalFault = r; }),
    };
    const learnFault = async () => {
      if (!FAULT_RUN_STATES.has(m.status) || m.fault) return;
      m.fault = await hooks.fault(m);
      signalFault(m.fault);
    };
    // A STOP says nothing about why: the run state does (paused by the user, or a fault).
    qmp.on('STOP', () => {
      m.running = false;
      m.settled = qmp.queryStatus().then((s) => { m.status = s.status; m.running = s.running; return learnFault(); }).catch(() => undefined);
    });
    qmp.on('RESUME', () => {
      m.running = true;
      m.status = 'running';
      // Only a system_reset (through the monitor) lets a faulted VM run again.
      if (m.fault) { m.fault = null; m.faulted = new Promise<VmFault>((r) => { signalFault = r; }); }
    });
    qmp.on('BLOCK_IO_ERROR', (e) => { m.ioError = e.data ?? {}; });
    if (hooks.event) {
      const notify = hooks.event;
      for (const [ev, type] of Object.entries(QMP_EVENTS)) qmp.on(ev, (e) => notify(type, { ...e.data, qmpEvent: ev }));
    }
    qmp.on('disconnected', () => { if (monitors.get(qmpPath) === p) monitors.delete(qmpPath); });
    // A VM that faulted while nobody watched (hangard was down) is seen as such at once.
    m.settled = learnFault().catch(() => undefined);
    return m;
  })();
  p.catch(() => { if (monitors.get(qmpPath) === p) monitors.delete(qmpPath); });
  monitors.set(qmpPath, p);
  return p;
}

/** The guest-agent connection of the QEMU whose agent socket is qgaPath: the cached one while it lasts, else a new one. */
export async function openAgent(host: Host, qgaPath: string): Promise<QgaClient> {
  const cached = agents.get(qgaPath);
  if (cached) {
    // A client of an earlier QEMU (the guest powered off and was started again) is replaced.
    const c = await cached.catch(() => undefined);
    if (c?.connected) return c;
    if (agents.get(qgaPath) === cached) agents.delete(qgaPath);
  }
  const p = QgaClient.connect(host, qgaPath, { timeoutMs: 2_000 });
  p.catch(() => { if (agents.get(qgaPath) === p) agents.delete(qgaPath); });
  agents.set(qgaPath, p);
  return p;
}

/** Forgets and closes the guest-agent connection of qgaPath. */
export function dropAgent(qgaPath: string): void {
  const p = agents.get(qgaPath);
  agents.delete(qgaPath);
  void p?.then((a) => a.close(), () => undefined);
}

/** Forgets and closes both connections of a VM (its QEMU is gone or going). */
export function dropSessions(files: { qmp: string; qga: string }): void {
  const p = monitors.get(files.qmp);
  monitors.delete(files.qmp);
  void p?.then((m) => m.qmp.close(), () => undefined);
  dropAgent(files.qga);
}
