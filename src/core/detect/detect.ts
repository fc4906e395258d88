// Virtualization detection: every layer a machine or root tree runs inside, named as virt-what names them, with evidence.
import type { VirtFact } from '../../shared/schemas.js';
import type { Host } from '../../host/host.js';
import { containerFacts } from './containers.js';
import { hypervisorFacts, systemzFacts, umlFacts, wslFacts } from './hypervisor.js';
import { readSnapshot } from './snapshot.js';
import type { VirtSnapshot } from './snapshot.js';

/** What to inspect. */
export interface DetectOptions {
  /** Root of the tree to inspect: "/" for this machine, /proc/PID/root for a running container, or a fixture directory. */
  root: string;
  /**
   * CPUID hypervisor signature from readCpuidSignature ("KVMKVMKVM", "bhyve bhyve ", ...); null when the CPU
   * reports no hypervisor; undefined when not probed (DMI and /proc then decide alone).
   */
  cpuid?: string | null;
}

/** Facts plus the evidence that was seen but not believed (e.g. a stray /.dockerenv). */
export interface VirtAnalysis {
  facts: VirtFact[];
  notes: string[];
}

/** Decides the layers from a snapshot; pure, so tests and remote hosts can feed it directly. */
export function analyzeSnapshot(s: VirtSnapshot, cpuid: string | null | undefined): VirtAnalysis {
  const notes: string[] = [];
  // Outermost first: mainframe partition, hypervisor, a kernel run as a process (UML) or by Windows (WSL), then OS-level containers.
  const ordered = [...systemzFacts(s), ...hypervisorFacts(s, cpuid, notes), ...umlFacts(s), ...wslFacts(s), ...containerFacts(s, notes)];
  const facts: VirtFact[] = [];
  for (const f of ordered) {
    const prev = facts.find((x) => x.fact === f.fact);
    if (!prev) facts.push({ fact: f.fact, evidence: [...f.evidence] });
    else for (const e of f.evidence) if (!prev.evidence.includes(e)) prev.evidence.push(e);
  }
  return { facts, notes };
}

/** Reads the root and decides its layers, with notes on disbelieved evidence. */
export async function analyzeVirt(host: Host, opts: DetectOptions): Promise<VirtAnalysis> {
  return analyzeSnapshot(await readSnapshot(host, opts.root), opts.cpuid);
}

/** The virtualization layers of a root, outermost first; empty on bare metal. */
export async function detectVirt(host: Host, opts: DetectOptions): Promise<VirtFact[]> {
  return (await analyzeVirt(host, opts)).facts;
}
