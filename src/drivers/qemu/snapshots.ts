// Snapshots of a VM: qcow2 internal snapshots of its root disk, taken live over QMP (with RAM when stateful) or offline with qemu-img.
import { AppError } from '../../shared/errors.js';
import type { InstanceHandle, ObservedState } from '../driver.js';
import * as qemuImg from '../common/qemu-img.js';
import type { QmpClient } from './qmp/client.js';
import { QEMU_NODES } from './render-argv.js';
import type { Vm } from './vm.js';

/** What snapshots need of the VM's lifecycle: its state, and a start (a stateful restore of a stopped VM starts it). */
export interface SnapshotLifecycle {
  state(): Promise<ObservedState>;
  start(): Promise<void>;
}

const isLive = (st: ObservedState) => st.state === 'running' || st.state === 'frozen';

/** Runs one QMP job to its end (matched by its own id, then dismissed). */
async function job(vm: Vm, start: (qmp: QmpClient, id: string) => Promise<void>): Promise<void> {
  const m = await vm.mon();
  const id = `hangar-${vm.record.name}-${Date.now().toString(36)}`;
  await start(m.qmp, id);
  await m.qmp.waitJob(id, { timeoutMs: 600_000 });
}

/** The snapshots of the VM, as its InstanceHandle offers them. */
export function vmSnapshots(vm: Vm, life: SnapshotLifecycle): NonNullable<InstanceHandle['snapshots']> {
  const rootDisk = vm.files.rootDisk;
  return {
    create: async (snap, opts) => {
      const running = isLive(await life.state());
      if (opts.stateful) {
        if (!running) throw new AppError('INVALID_STATE', `Cannot take a stateful snapshot of VM "${vm.record.name}": it is not running`);
        await job(vm, (q, id) => q.snapshotSave(id, snap, QEMU_NODES.root, [QEMU_NODES.root]));
      } else if (running) {
        // This command wants the root of the block graph: the throttle filter, which passes the snapshot down to the qcow2 node.
        await (await vm.mon()).qmp.execute('blockdev-snapshot-internal-sync', { device: QEMU_NODES.top(QEMU_NODES.root), name: snap });
      } else {
        await qemuImg.snapshot(vm.host, rootDisk, 'create', snap);
      }
    },
    restore: async (snap, opts) => {
      const running = isLive(await life.state());
      if (opts.stateful) {
        if (!running) await life.start();
        const m = await vm.mon();
        await job(vm, (q, id) => q.snapshotLoad(id, snap, QEMU_NODES.root, [QEMU_NODES.root]));
        if (!m.running || !(await m.qmp.queryStatus()).running) await m.qmp.cont();
      } else {
        if (running) throw new AppError('INVALID_STATE', `Cannot restore disk snapshot "${snap}" of VM "${vm.record.name}" while it runs`);
        await qemuImg.snapshot(vm.host, rootDisk, 'apply', snap);
      }
    },
    delete: async (snap) => {
      if (isLive(await life.state())) {
        await job(vm, (q, id) => q.snapshotDelete(id, snap, [QEMU_NODES.root]));
      } else {
        await qemuImg.snapshot(vm.host, rootDisk, 'delete', snap);
      }
    },
    list: () => qemuImg.snapshotList(vm.host, rootDisk),
  };
}
