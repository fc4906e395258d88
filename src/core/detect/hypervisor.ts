// Hardware-level layers (hypervisors, mainframe partitions, UML, WSL) from CPUID, DMI, /proc and /sys facts.
import type { VirtFact } from '../../shared/schemas.js';
import { cpuidFamily } from './cpuid.js';
import type { DmiFields, VirtSnapshot } from './snapshot.js';
import { textOf } from './snapshot.js';

interface DmiMatch {
  family: string;
  evidence: string[];
}

const dmiPath = (f: string) => `/sys/class/dmi/id/${f}`;

// Each rule names a hypervisor by DMI; the first rule with a matching field wins. Vendors that emulate
// other hypervisors' paravirtual CPUID interfaces (VirtualBox, Parallels) come before those interfaces.
const DMI_RULES: { family: string; fields: (keyof DmiFields)[]; test: RegExp }[] = [
  { family: 'virtualbox', fields: ['sys_vendor', 'board_vendor', 'bios_vendor', 'product_name'], test: /innotek GmbH|^VirtualBox$/ },
  { family: 'parallels', fields: ['sys_vendor', 'board_vendor', 'bios_vendor', 'product_name'], test: /Parallels/ },
  { family: 'vmware', fields: ['sys_vendor', 'board_vendor', 'product_name'], test: /VMware/ },
  { family: 'xen', fields: ['sys_vendor', 'product_name'], test: /^Xen$|HVM domU/ },
  { family: 'bhyve', fields: ['sys_vendor', 'bios_vendor', 'product_name'], test: /^BHYVE$/i },
  { family: 'kvm', fields: ['product_name', 'sys_vendor'], test: /^KVM\b/ },
  { family: 'qemu', fields: ['sys_vendor', 'board_vendor', 'bios_vendor'], test: /^QEMU$/ },
];

function dmiMatch(dmi: DmiFields): DmiMatch | undefined {
  // Hyper-V's DMI needs two fields together: Microsoft also makes physical machines (Surface).
  if (dmi.sys_vendor === 'Microsoft Corporation' && dmi.product_name === 'Virtual Machine') {
    return { family: 'hyperv', evidence: [`${dmiPath('sys_vendor')}: Microsoft Corporation`, `${dmiPath('product_name')}: Virtual Machine`] };
  }
  for (const rule of DMI_RULES) {
    const hits = rule.fields.filter((f) => rule.test.test(dmi[f] ?? ''));
    if (hits.length > 0) return { family: rule.family, evidence: hits.map((f) => `${dmiPath(f)}: ${dmi[f]}`) };
  }
  return undefined;
}

function awsEvidence(dmi: DmiFields): string[] {
  return (['sys_vendor', 'bios_vendor', 'chassis_asset_tag'] as const).filter((f) => dmi[f] === 'Amazon EC2').map((f) => `${dmiPath(f)}: Amazon EC2`);
}

// CPUID interfaces that other products implement for their guests' sake: a DMI identity of another
// family is the real product (VirtualBox and Parallels offer KVM and Hyper-V interfaces; Xen offers Hyper-V's).
const PARAVIRT_INTERFACES = new Set(['kvm', 'hyperv']);
const IMITATORS = new Set(['virtualbox', 'parallels', 'xen']);
// DMI families that confirm a CPUID family (QEMU's DMI is the same under KVM and TCG).
const COMPATIBLE: Record<string, string[]> = { kvm: ['kvm', 'qemu'], qemu: ['kvm', 'qemu'] };

const XEN_GUEST_TYPES = new Set(['PV', 'PVH', 'HVM']);

// The kind of Xen guest (dom0 is one too, PV or PVH): the kernel names it in /sys/hypervisor/guest_type; without that
// file Xen's own DMI marks an HVM domU (only HVM guests have firmware). Its evidence item leads the dom0/domU fact.
function xenGuestType(s: VirtSnapshot, dom0: boolean, dmi: DmiMatch | undefined): { type: string; evidence: string[] } | undefined {
  const fromSys = textOf(s.guestType).trim();
  if (XEN_GUEST_TYPES.has(fromSys)) return { type: fromSys, evidence: [`guest type ${fromSys} (/sys/hypervisor/guest_type)`] };
  // A dom0's DMI is the machine's, so Xen's DMI there describes an outer Xen, not this domain.
  if (!dom0 && dmi?.family === 'xen') return { type: 'HVM', evidence: ['guest type HVM (/sys/class/dmi/id)', ...dmi.evidence] };
  return undefined;
}

function xenFacts(s: VirtSnapshot, cpuidEvidence: string[], dmi: DmiMatch | undefined): VirtFact[] {
  const out: VirtFact[] = [];
  const caps = textOf(s.xenCapabilities);
  const dom0 = /control_d/.test(caps);
  // Xen hands dom0 the machine's own DMI, so a hypervisor named there sits underneath Xen (nested Xen).
  if (dom0 && dmi && dmi.family !== 'xen') out.push({ fact: dmi.family, evidence: dmi.evidence });
  const evidence = [...cpuidEvidence];
  const hvType = textOf(s.hypervisorType).trim();
  if (hvType === 'xen') evidence.push('/sys/hypervisor/type: xen');
  if (s.procXen) evidence.push('/proc/xen: present');
  if (dmi?.family === 'xen') evidence.push(...dmi.evidence);
  out.push({ fact: 'xen', evidence });
  const guest = xenGuestType(s, dom0, dmi);
  const typeEvidence = guest?.evidence ?? [];
  if (dom0) {
    out.push({ fact: 'xen-dom0', evidence: [...typeEvidence, '/proc/xen/capabilities: control_d'] });
  } else if (guest || s.procXen) {
    // Without control_d every Xen domain is a domU; with neither a guest type nor /proc/xen (only
    // /sys/hypervisor/type or CPUID), dom0 cannot be told from a domU and only "xen" is reported.
    const procEvidence = s.procXen ? [...(guest ? [] : ['/proc/xen: present']), '/proc/xen/capabilities: no control_d'] : [];
    out.push({ fact: 'xen-domU', evidence: [...typeEvidence, ...procEvidence] });
    // virt-what names fully virtualised guests xen-hvm as well.
    if (guest?.type === 'HVM') out.push({ fact: 'xen-hvm', evidence: typeEvidence });
  }
  return out;
}

/** Hypervisor layers, outermost first; notes collect evidence that was seen but not believed. */
export function hypervisorFacts(s: VirtSnapshot, cpuid: string | null | undefined, notes: string[]): VirtFact[] {
  const cpuinfo = textOf(s.cpuinfo);
  const hvFlag = /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo);
  const flagEvidence = hvFlag ? ['/proc/cpuinfo: hypervisor flag'] : [];
  const sigFamily = cpuid ? cpuidFamily(cpuid) : undefined;
  const cpuidEvidence = cpuid ? [`cpuid: ${cpuid}`] : [];
  const dmi = dmiMatch(s.dmi);
  const xenSeen = sigFamily === 'xen' || textOf(s.hypervisorType).trim() === 'xen' || s.procXen || dmi?.family === 'xen';

  let out: VirtFact[];
  if (xenSeen && (sigFamily === undefined || sigFamily === 'xen' || sigFamily === 'hyperv')) {
    out = xenFacts(s, cpuidEvidence, dmi);
    out.find((f) => f.fact === 'xen')?.evidence.push(...flagEvidence);
  } else if (sigFamily) {
    if (dmi && PARAVIRT_INTERFACES.has(sigFamily) && IMITATORS.has(dmi.family)) {
      out = [{ fact: dmi.family, evidence: [...dmi.evidence, `${cpuidEvidence[0]!} (paravirtual interface)`, ...flagEvidence] }];
    } else if (sigFamily === 'hyperv' && (dmi?.family === 'qemu' || dmi?.family === 'kvm')) {
      // QEMU only offers Hyper-V enlightenments with KVM acceleration.
      out = [{ fact: 'kvm', evidence: [...cpuidEvidence, ...dmi.evidence, ...flagEvidence] }];
    } else {
      const evidence = [...cpuidEvidence];
      if (dmi && (dmi.family === sigFamily || COMPATIBLE[sigFamily]?.includes(dmi.family))) evidence.push(...dmi.evidence);
      else if (dmi) notes.push(`${dmi.evidence.join(', ')}: DMI names ${dmi.family} but CPUID names ${sigFamily}; CPUID wins`);
      out = [{ fact: sigFamily, evidence: [...evidence, ...flagEvidence] }];
    }
  } else {
    const qemuCpu = /^model name\s*:.*\bQEMU\b/m.exec(cpuinfo);
    if (dmi) out = [{ fact: dmi.family, evidence: [...cpuidEvidence, ...dmi.evidence, ...flagEvidence] }];
    else if (qemuCpu) out = [{ fact: 'qemu', evidence: [`/proc/cpuinfo: ${qemuCpu[0].replace(/\s*:\s*/, ': ')}`, ...flagEvidence] }];
    else if (cpuid === '' || (cpuid && !sigFamily)) {
      out = [{ fact: 'vm-other', evidence: [cpuid ? `cpuid: ${cpuid} (unknown signature)` : 'cpuid: hypervisor bit set, empty signature', ...flagEvidence] }];
    } else if (cpuid === undefined && hvFlag) out = [{ fact: 'vm-other', evidence: flagEvidence }];
    else {
      if (cpuid === null && hvFlag) notes.push('/proc/cpuinfo: hypervisor flag, but the CPUID probe saw no hypervisor bit');
      out = [];
    }
  }
  const aws = awsEvidence(s.dmi);
  if (aws.length > 0) out.push({ fact: 'aws', evidence: aws });
  return out;
}

/** IBM System z: every Linux there runs in an LPAR, z/VM or KVM; virt-what reports the kind. */
export function systemzFacts(s: VirtSnapshot): VirtFact[] {
  const vendor = /^vendor_id\s*:\s*IBM\/S390/m.exec(textOf(s.cpuinfo));
  if (!vendor) return [];
  const out: VirtFact[] = [{ fact: 'ibm_systemz', evidence: ['/proc/cpuinfo: vendor_id: IBM/S390'] }];
  const sysinfo = textOf(s.sysinfo);
  const cp = /^VM\d+ Control Program:\s*(.+)$/m.exec(sysinfo);
  if (cp && /z\/VM/.test(cp[1]!)) out.push({ fact: 'ibm_systemz-zvm', evidence: [`/proc/sysinfo: ${cp[0].trim()}`] });
  else if (cp && /KVM/.test(cp[1]!)) out.push({ fact: 'ibm_systemz-kvm', evidence: [`/proc/sysinfo: ${cp[0].trim()}`] });
  else if (/^LPAR/m.test(sysinfo)) out.push({ fact: 'ibm_systemz-lpar', evidence: ['/proc/sysinfo: LPAR'] });
  else if (s.sysinfo.kind === 'ok') out.push({ fact: 'ibm_systemz-direct', evidence: ['/proc/sysinfo: no LPAR or control program'] });
  return out;
}

/** User Mode Linux: the kernel itself runs as a process on another Linux. */
export function umlFacts(s: VirtSnapshot): VirtFact[] {
  const m = /^(vendor_id\s*:\s*User Mode Linux|model name\s*:\s*UML)\s*$/m.exec(textOf(s.cpuinfo));
  return m ? [{ fact: 'uml', evidence: [`/proc/cpuinfo: ${m[1]!.replace(/\s*:\s*/, ': ')}`] }] : [];
}

/** Windows Subsystem for Linux: Microsoft's kernel names itself in osrelease. */
export function wslFacts(s: VirtSnapshot): VirtFact[] {
  const rel = textOf(s.osrelease).trim();
  return /microsoft|WSL/i.test(rel) ? [{ fact: 'wsl', evidence: [`/proc/sys/kernel/osrelease: ${rel}`] }] : [];
}
