// Wire types of the QEMU Machine Protocol (QEMU 7.2) as Hangar's QMP client uses them.

/** The greeting QEMU sends when a client connects. */
export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

/** An asynchronous event (SHUTDOWN, STOP, JOB_STATUS_CHANGE, ...); data is {} when QEMU sent none. */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

/** The error member of a failed command's reply. */
export interface QmpErrorBody {
  class: string;
  desc: string;
}

/** Run states reported by query-status. */
export type QmpRunState =
  | 'debug' | 'inmigrate' | 'internal-error' | 'io-error' | 'paused' | 'postmigrate' | 'prelaunch'
  | 'finish-migrate' | 'restore-vm' | 'running' | 'save-vm' | 'shutdown' | 'suspended' | 'watchdog'
  | 'guest-panicked' | 'colo';

/** Result of query-status. */
export interface QmpStatusInfo {
  status: QmpRunState;
  running: boolean;
  singlestep?: boolean;
}

/** Result of query-kvm. */
export interface QmpKvmInfo {
  enabled: boolean;
  present: boolean;
}

/** Result of query-balloon (actual: guest memory in bytes). */
export interface QmpBalloonInfo {
  actual: number;
}

/** Migration states reported by query-migrate. */
export type QmpMigrationStatus =
  | 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'postcopy-paused'
  | 'postcopy-recover' | 'completed' | 'failed' | 'colo' | 'pre-switchover' | 'device' | 'wait-unplug';

/** Result of query-migrate (the commonly used members; QEMU sends more). */
export interface QmpMigrationInfo {
  status?: QmpMigrationStatus;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  ram?: { transferred: number; remaining: number; total: number; duplicate?: number; normal?: number; 'dirty-pages-rate'?: number; mbps?: number };
  [key: string]: unknown;
}

/** Job states reported by query-jobs and JOB_STATUS_CHANGE. */
export type QmpJobStatus =
  | 'undefined' | 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending' | 'aborting'
  | 'concluded' | 'null';

/** One entry of query-jobs. */
export interface QmpJobInfo {
  id: string;
  type: string;
  status: QmpJobStatus;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

/** Arguments of block_set_io_throttle; rates default to 0 (unlimited) when omitted. */
export interface QmpBlockIoThrottle {
  /** The device's qdev id (or use device, the legacy drive name). */
  id?: string;
  device?: string;
  bps?: number;
  bps_rd?: number;
  bps_wr?: number;
  iops?: number;
  iops_rd?: number;
  iops_wr?: number;
  bps_max?: number;
  bps_rd_max?: number;
  bps_wr_max?: number;
  iops_max?: number;
  iops_rd_max?: number;
  iops_wr_max?: number;
  iops_size?: number;
  group?: string;
}
