// Guest faults of a VM: their reason in QEMU's words, the record that survives a daemon restart, the instance-error event, and KVM's fallback to software emulation.
import { qemuMessage } from './parse.js';
import { livePid } from './process.js';
import type { Monitor, VmFault } from './sessions.js';
import { readJson, writeJson, type RunRecord, type Vm } from './vm.js';

/** The guest printed on its serial console or answered its agent since this run started. */
async function guestRan(vm: Vm, m: Monitor, run: RunRecord): Promise<boolean> {
  if (m.agentSeen) return true;
  return ((await vm.host.fs.stat(vm.files.consoleLog))?.size ?? 0) > run.consoleBytes;
}

/** Why the VM stopped, in QEMU's words where it has them. */
async function faultReason(vm: Vm, m: Monitor): Promise<string> {
  switch (m.status) {
    case 'internal-error': {
      const said = qemuMessage((await vm.host.fs.readTextIfExists(vm.files.log)) ?? '');
      return said || 'QEMU stopped the VM with an internal error (run state internal-error)';
    }
    case 'io-error': {
      const e = m.ioError;
      if (!e) return 'a disk I/O error stopped the VM (run state io-error)';
      const disk = String(e['node-name'] ?? e.device ?? 'a disk');
      return `a disk I/O error stopped the VM: ${String(e.operation ?? 'access')} on ${disk} failed${e.nospace === true ? ' (no space left on the host)' : ''}${e.reason ? `: ${String(e.reason)}` : ''}`;
    }
    case 'guest-panicked': {
      const log = (await vm.host.fs.readTextIfExists(vm.files.consoleLog)) ?? '';
      const line = log.split('\n').reverse().find((l) => /Kernel panic/.test(l))?.trim();
      return `the guest kernel panicked${line ? `: ${line.replace(/^\[[\s\d.]+\]\s*/, '')}` : ''}`;
    }
    default:
      return `the guest stopped and QEMU holds it (run state ${m.status})`;
  }
}

/**
 * A fault: its reason from QEMU's run state and its own words, kept in fault.json (so a restarted hangard reports the
 * same time), an instance-error event, and, when KVM broke before the guest ever ran, KVM marked broken and a restart
 * with software emulation.
 */
export async function onFault(vm: Vm, m: Monitor): Promise<VmFault> {
  const pid = await livePid(vm);
  const known = await readJson<VmFault & { pid: number | null }>(vm.host, vm.files.fault);
  if (known && known.pid === pid) return { reason: known.reason, since: known.since };
  const fault: VmFault = { reason: await faultReason(vm, m), since: new Date().toISOString() };
  await writeJson(vm.host, vm.files.fault, { ...fault, pid, runState: m.status });
  const notify = vm.q.env.onBackendEvent;
  const name = vm.record.name;
  notify?.(name, { type: 'instance-error', message: `Instance "${name}" faulted: ${fault.reason}`, data: { reason: fault.reason, runState: m.status, since: fault.since } });
  const run = await readJson<RunRecord>(vm.host, vm.files.run);
  const accel = vm.q.accel;
  if (accel && run?.choice.accel === 'kvm' && m.status === 'internal-error' && /KVM internal error/i.test(fault.reason) && !(await guestRan(vm, m, run))) {
    await accel.markBroken({ instance: name, reason: fault.reason, at: fault.since });
    if (run.choice.requested === 'auto') {
      await writeJson(vm.host, vm.files.fallback, { reason: fault.reason, at: fault.since });
      notify?.(name, {
        type: 'instance-accel-fallback',
        message: `Instance "${name}" faulted under KVM before its guest started (${fault.reason}); KVM is marked broken on this host and the VM restarts with software emulation (TCG)`,
        data: { from: 'kvm', to: 'tcg', reason: fault.reason },
        action: 'restart',
      });
    }
  }
  return fault;
}
