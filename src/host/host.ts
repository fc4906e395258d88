// The Host interface: the only way drivers and core services touch a machine (local, over SSH, or scripted).
import type { Duplex, Readable, Writable } from 'node:stream';

/** Result of a finished command. */
export interface ExecResult {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Options for Host.exec. */
export interface ExecOptions {
  /** Data written to the command's stdin, then closed. */
  input?: string | Buffer;
  /** Added to the host's base environment (PATH, HOME, LANG); nothing is inherited from hangard's own environment. */
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
  /** When true a non-zero exit is returned instead of thrown. */
  allowFailure?: boolean;
}

/** Options for Host.spawn. */
export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Run in its own session, detached from hangard, with stdio to /dev/null or logFile: it outlives the daemon. */
  detached?: boolean;
  /** With detached: append stdout and stderr here. */
  logFile?: string;
  /**
   * Run it as the leader of a process group of its own: kill() then signals the whole group, so what it started (the
   * command lxc-attach runs, and that command's children) goes with it. Local hosts; SSH sessions are groups already.
   */
  group?: boolean;
  /** Allocate a pseudo-terminal of this size (stdout carries the merged terminal output). */
  pty?: { cols: number; rows: number };
}

/** A process started with Host.spawn. */
export interface HostProcess {
  /** Its pid on the host once known (over SSH that takes a round trip); -1 when it has none (a guest-agent exec). */
  readonly pid: Promise<number>;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** Resolves when the process exits. */
  wait(): Promise<{ code: number | null; signal: string | null }>;
  kill(signal?: NodeJS.Signals): void;
  /** For a command a guest agent runs: its pid in the guest once started (the journal keeps it, so that the next daemon can end it). */
  readonly guestPid?: Promise<number>;
  /** Why kill() cannot deliver a signal to it (a guest agent that cannot signal), or undefined when it can; absent: it can. */
  signalProblem?(): string | undefined;
  /** Resizes the pseudo-terminal (pty processes only). */
  resize?(cols: number, rows: number): void;
}

/** File metadata. */
export interface HostStat {
  size: number;
  mode: number;
  uid: number;
  gid: number;
  isDirectory: boolean;
  isFile: boolean;
  isSymbolicLink: boolean;
  mtimeMs: number;
}

/** File-system access on the host. */
export interface HostFs {
  readFile(path: string): Promise<Buffer>;
  readText(path: string): Promise<string>;
  /** Reads a file, or returns undefined when it does not exist. */
  readTextIfExists(path: string): Promise<string | undefined>;
  /** Writes via a temporary file and rename, so readers never see a partial file. */
  writeAtomic(path: string, data: string | Buffer, mode?: number): Promise<void>;
  appendFile(path: string, data: string | Buffer): Promise<void>;
  mkdir(path: string, opts?: { recursive?: boolean; mode?: number }): Promise<void>;
  rm(path: string, opts?: { recursive?: boolean; force?: boolean }): Promise<void>;
  /** Removes an empty directory (also a cgroup, whose control files rm would try to unlink); fails when it is not empty. */
  rmdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  /** lstat; undefined when the path does not exist. */
  stat(path: string): Promise<HostStat | undefined>;
  readdir(path: string): Promise<string[]>;
  /** Several small files in one go (one round trip on a remote host): each one's text, or undefined where it does not exist. */
  readMany(paths: readonly string[]): Promise<(string | undefined)[]>;
  symlink(target: string, path: string): Promise<void>;
  readlink(path: string): Promise<string>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
}

/** A machine Hangar manages. */
export interface Host {
  /** "local" or the remote's name. */
  readonly name: string;
  /** Runs argv (never a shell string) to completion. Throws HOST_FAILED on a non-zero exit unless allowFailure. */
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts argv and returns at once. */
  spawn(argv: readonly string[], opts?: SpawnOptions): HostProcess;
  /** Opens a unix-socket connection on the host. */
  connectUnix(path: string): Promise<Duplex>;
  /** Sends a signal to a process; false when it does not exist. */
  kill(pid: number, signal?: NodeJS.Signals | 0): Promise<boolean>;
  /**
   * Calls onExit once process pid of this host ends, seen by the kernel (a pidfd), not by a poll; answers the cancel.
   * Over SSH a perl on the host holds the pidfd (one channel per process). Undefined where the host cannot (locally
   * without the fast-exec addon) or pid is no process here: callers then read states as they always did.
   */
  watchExit?(pid: number, onExit: () => void): (() => void) | undefined;
  readonly fs: HostFs;
}
