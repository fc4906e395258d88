// OS-level layers (OpenVZ, Linux-VServer, LXC, Docker, Podman, systemd-nspawn, other OCI runtimes) from /proc and marker files.
import type { VirtFact } from '../../shared/schemas.js';
import { parseMountInfo } from '../../host/mounts.js';
import type { FileRead, VirtSnapshot } from './snapshot.js';
import { textOf } from './snapshot.js';

/*
 * Weighing container evidence.
 *
 * Strong signals are runtime state that an image build cannot leave behind:
 *   - container=… in PID 1's environment (/proc/1/environ is the innermost container's init);
 *   - cgroup paths of PID 1 or of this process naming a runtime (/docker/, libpod, lxc.payload, kubepods, …);
 *   - mountinfo: the root mount, or the /etc/hostname|hosts|resolv.conf bind mounts, coming from a
 *     runtime's storage (/var/lib/docker/…, /var/lib/containers/storage/…), or a /run/.containerenv mount;
 *   - /run/systemd/container and /run/host/container-manager, but only when PID 1's environment cannot be
 *     read (they are written from that environment; otherwise they are mere files that may be stale).
 * Weak signals are files that may be copied into an image: /.dockerenv, /.dockerinit, /run/.containerenv,
 * an overlay root, lxcfs mounts over /proc files, and the /run files above when PID 1's environment is readable.
 * A container fact is reported only with at least one strong signal; weak signals then join its evidence.
 * Weak-only facts become notes. Example: a VM built from a Docker image keeps an empty /.dockerenv, but its
 * PID 1 sits in the root cgroup and its root is a plain disk, so it is not reported as Docker.
 */

interface Signal {
  fact: string;
  evidence: string;
  strong: boolean;
  /** Names the container whose init is PID 1 here, i.e. the innermost one. */
  inner?: boolean;
}

/** Maps a container= / container-manager value to a fact name. */
function containerFact(value: string): string {
  const v = value.trim().toLowerCase();
  if (v.startsWith('lxc')) return 'lxc';
  if (v === 'docker' || v === 'podman' || v === 'systemd-nspawn' || v === 'wsl') return v;
  return /^[a-z0-9][a-z0-9_-]{0,31}$/.test(v) ? v : 'container-other';
}

function environValue(read: FileRead, name: string): string | undefined {
  for (const entry of textOf(read).split('\0')) {
    if (entry.startsWith(`${name}=`)) return entry.slice(name.length + 1);
  }
  return undefined;
}

const CGROUP_RULES: { fact: string; test: RegExp }[] = [
  { fact: 'docker', test: /\/docker[/-]|\/docker$/ },
  { fact: 'podman', test: /libpod/ },
  { fact: 'lxc', test: /\/lxc\.payload|^\/lxc\// },
  // Not containerd.service itself (the daemon's own cgroup on a host), only its containers' cgroups.
  { fact: 'container-other', test: /kubepods|cri-containerd-|\/containerd\/|\/crio-/ },
];

function cgroupSignals(path: string, read: FileRead): Signal[] {
  const out: Signal[] = [];
  const seen = new Set<string>();
  for (const line of textOf(read).split('\n')) {
    const cg = line.split(':').slice(2).join(':');
    for (const rule of CGROUP_RULES) {
      if (!seen.has(rule.fact) && rule.test.test(cg)) {
        seen.add(rule.fact);
        out.push({ fact: rule.fact, evidence: `${path}: ${line.trim()}`, strong: true });
      }
    }
  }
  return out;
}

const RUNTIME_STORAGE: { fact: string; test: RegExp }[] = [
  { fact: 'docker', test: /\/docker\// },
  { fact: 'podman', test: /\/containers\/storage\/|\/libpod/ },
];
const CONTAINER_FILES = new Set(['/etc/hostname', '/etc/hosts', '/etc/resolv.conf']);

function mountSignals(path: string, read: FileRead): Signal[] {
  const out: Signal[] = [];
  const seen = new Set<string>();
  const add = (s: Signal) => {
    if (!seen.has(`${s.fact}:${s.strong}`)) {
      seen.add(`${s.fact}:${s.strong}`);
      out.push(s);
    }
  };
  // Only the root mount and the per-container files count: a container host also lists its containers' mounts.
  for (const m of parseMountInfo(textOf(read))) {
    const where = m.mountPoint === '/' ? `${m.root} ${m.source} ${m.superOptions}` : CONTAINER_FILES.has(m.mountPoint) ? m.root : undefined;
    if (where !== undefined) {
      for (const rule of RUNTIME_STORAGE) if (rule.test.test(where)) add({ fact: rule.fact, evidence: `${path}: ${m.line.trim()}`, strong: true });
    }
    if (m.mountPoint === '/run/.containerenv') add({ fact: 'podman', evidence: `${path}: ${m.line.trim()}`, strong: true });
    if (m.mountPoint === '/' && m.fsType === 'overlay') {
      for (const fact of ['docker', 'podman']) add({ fact, evidence: `${path}: overlay root`, strong: false });
    }
    if (m.fsType === 'fuse.lxcfs' && m.mountPoint.startsWith('/proc/')) add({ fact: 'lxc', evidence: `${path}: lxcfs mounted on ${m.mountPoint}`, strong: false });
  }
  return out;
}

function openvzFacts(s: VirtSnapshot, notes: string[]): VirtFact[] {
  // /proc/vz exists on every OpenVZ kernel; /proc/bc only on the hardware node.
  if (!s.procVz) return [];
  if (s.procBc) {
    notes.push('/proc/vz and /proc/bc: present (OpenVZ hardware node, not a container)');
    return [];
  }
  const evidence = ['/proc/vz: present', '/proc/bc: absent'];
  if (s.userBeancounters) evidence.push('/proc/user_beancounters: present');
  const envId = /^envID:\s*(\d+)/m.exec(textOf(s.status.read));
  if (envId) evidence.push(`${s.status.path}: envID: ${envId[1]}`);
  return [{ fact: 'openvz', evidence }];
}

function vserverFacts(s: VirtSnapshot, notes: string[]): VirtFact[] {
  const m = /^(VxID|s_context):\s*(\d+)/m.exec(textOf(s.status.read));
  if (!m) return [];
  if (Number(m[2]) === 0) {
    notes.push(`${s.status.path}: ${m[1]}: 0 (Linux-VServer host context, not a guest)`);
    return [];
  }
  return [{ fact: 'linux_vserver', evidence: [`${s.status.path}: ${m[1]}: ${m[2]}`] }];
}

/** OS-level container layers, outer first (the container whose init is PID 1 last); notes collect disbelieved evidence. */
export function containerFacts(s: VirtSnapshot, notes: string[]): VirtFact[] {
  const signals: Signal[] = [];
  const envReadable = s.environ1.kind === 'ok';
  const env = environValue(s.environ1, 'container');
  if (env) signals.push({ fact: containerFact(env), evidence: `/proc/1/environ: container=${env}`, strong: true, inner: true });
  for (const [path, read] of [['/run/systemd/container', s.runSystemdContainer], ['/run/host/container-manager', s.runHostContainerManager]] as const) {
    const v = textOf(read).trim();
    if (v) signals.push({ fact: containerFact(v), evidence: `${path}: ${v}`, strong: !envReadable, inner: true });
  }
  if (s.dockerenv) signals.push({ fact: 'docker', evidence: '/.dockerenv: present', strong: false });
  if (s.dockerinit) signals.push({ fact: 'docker', evidence: '/.dockerinit: present', strong: false });
  if (s.containerenv.kind !== 'absent') {
    const engine = /^engine="([^"]*)"/m.exec(textOf(s.containerenv));
    signals.push({ fact: 'podman', evidence: `/run/.containerenv: ${engine ? `engine="${engine[1]}"` : 'present'}`, strong: false });
  }
  signals.push(...cgroupSignals('/proc/1/cgroup', s.cgroup1), ...cgroupSignals('/proc/self/cgroup', s.cgroupSelf));
  signals.push(...mountSignals(s.mountinfo.path, s.mountinfo.read));

  const order: string[] = [];
  for (const sig of signals) if (!order.includes(sig.fact)) order.push(sig.fact);
  const accepted = order.filter((f) => signals.some((x) => x.fact === f && x.strong));
  // Kubernetes cgroup paths also appear under Docker and Podman; then they are evidence of those, not another layer.
  const named = accepted.includes('docker') ? 'docker' : accepted.includes('podman') ? 'podman' : undefined;
  const facts: { fact: string; evidence: string[]; inner: boolean }[] = [];
  for (const fact of accepted) {
    if (fact === 'container-other' && named) continue;
    const mine = signals.filter((x) => x.fact === fact || (fact === named && x.fact === 'container-other'));
    facts.push({
      fact,
      // Strong signals first: they are the reason for the fact.
      evidence: [...mine.filter((x) => x.strong), ...mine.filter((x) => !x.strong)].map((x) => x.evidence),
      inner: mine.some((x) => x.inner && x.strong),
    });
  }
  for (const fact of order) {
    if (accepted.includes(fact)) continue;
    const weak = signals.filter((x) => x.fact === fact).map((x) => x.evidence);
    // An overlay root alone is common (live systems) and not worth a note.
    if (weak.every((e) => e.endsWith('overlay root'))) continue;
    notes.push(`${weak.join(', ')}: no runtime signal (PID 1 environment, cgroup path, runtime mounts) confirms ${fact}; ignored`);
  }
  facts.sort((a, b) => Number(a.inner) - Number(b.inner));
  return [
    ...openvzFacts(s, notes),
    ...vserverFacts(s, notes),
    ...facts.map(({ fact, evidence }) => ({ fact, evidence })),
  ];
}
