// The import service: translates a foreign domain (an xl.cfg, an OpenVZ CTID.conf, a CT already on an OpenVZ 7 node) into Hangar's terms, and adopts it as an instance on a host.
import { AppError } from '../../shared/errors.js';
import { LOCAL_HOST } from '../../shared/hosts.js';
import { nameProblem } from '../../shared/names.js';
import type { ImportInstanceRequest, ImportTranslateRequest, ImportTranslation, Instance, Openvz7ImportTranslation, OpenvzImportTranslation, XenImportTranslation } from '../../shared/schemas.js';
import type { HostDriver } from '../../drivers/driver.js';
import { importVzConfText } from '../../drivers/openvz/import.js';
import { IMPORT_ORIGIN } from '../../drivers/openvz7/driver.js';
import { importXlConfigText } from '../../drivers/xen/import.js';
import type { HostContext, HostDirectory } from '../hosts/context.js';
import type { AdoptPlan, InstanceService } from '../instances/service.js';
import { subnetContains } from '../network/ipam.js';

type Openvz7Request = Extract<ImportTranslateRequest, { kind: 'openvz7' }>;
type FileRequest = Exclude<ImportInstanceRequest, { kind: 'openvz7' }>;

/** Dependencies of the import service. */
export interface ImportServiceDeps {
  instances: InstanceService;
  hosts: HostDirectory;
}

/** An import that passed validation: the translation and the adoption it makes. */
export interface ImportPlan {
  translation: ImportTranslation;
  adopt: AdoptPlan;
}

/** Translates and adopts foreign domains. */
export class ImportService {
  constructor(private readonly d: ImportServiceDeps) {}

  /**
   * The translation: of a file's text pure, needing no Xen or OpenVZ host (bad syntax is INVALID_CONFIG with its
   * position); of an OpenVZ 7 CT read on its node, which must be up with its openvz7 driver available.
   */
  async translate(req: ImportTranslateRequest): Promise<ImportTranslation> {
    if (req.kind === 'openvz7') return (await this.inspectOpenvz7(req)).translation;
    return this.translateFile(req);
  }

  private translateFile(req: FileRequest | Exclude<ImportTranslateRequest, { kind: 'openvz7' }>): XenImportTranslation | OpenvzImportTranslation {
    const name = req.name !== undefined ? { name: req.name } : {};
    if (req.kind === 'openvz') return importVzConfText(req.text, { source: req.source ?? 'CTID.conf', ...name, ...(req.ctid !== undefined ? { ctid: req.ctid } : {}) });
    return importXlConfigText(req.text, { source: req.source ?? 'xl.cfg', ...name });
  }

  /**
   * Checks an import without side effects: the translation, the host, its driver, the name and the addresses. An
   * OpenVZ 7 CT is read on its node first, so the answer waits for it; a refusal comes before any operation is made.
   */
  async validate(req: ImportInstanceRequest): Promise<ImportPlan> {
    if (req.kind === 'openvz7') return this.validateOpenvz7(req);
    return this.validateFile(req);
  }

  private validateFile(req: FileRequest): ImportPlan {
    const translated = this.translateFile(req);
    const host = req.host ?? LOCAL_HOST;
    if (!this.d.hosts.has(host)) throw new AppError('NOT_FOUND', `Host "${host}" not found`, { details: { hint: 'hangar host list' } });
    if (translated.driver === 'openvz') return this.validateOpenvz(translated, req, host);
    const translation: XenImportTranslation = translated;
    const h = this.d.hosts.get(host);
    const xen = h.drivers.all().find((x) => x.driver.name === translation.driver);
    const refuse = (why: string) => new AppError('UNSUPPORTED', `Cannot import domain "${translation.name}" on host ${host}: the xen driver is not available on host ${host}: ${why}`, { details: { host } });
    if (!xen) throw refuse(`it is not enabled there (HANGAR_DRIVERS names ${h.drivers.all().map((x) => x.driver.name).join(', ')})`);
    if (!xen.probe.available) throw refuse(xen.probe.reason ?? 'its probe failed');
    const nic = translation.nics.find((n) => n.use === 'primary');
    const adopt = this.d.instances.validateAdopt({
      name: translation.name, host, driver: translation.driver, config: translation.config,
      ...(nic?.ipv4 !== undefined ? { ipv4: nic.ipv4 } : {}), ...(nic?.mac !== undefined ? { mac: nic.mac } : {}),
      origin: {
        kind: 'xen-import', source: req.source ?? null, guestType: translation.guestType, uuid: translation.uuid ?? null,
        disks: translation.disks, nics: translation.nics, untranslated: translation.untranslated,
      },
    });
    return { translation, adopt };
  }

  /** An OpenVZ CT: its translated config, CTID and addresses on the host's openvz driver, its private area made into Hangar's own. */
  private validateOpenvz(t: OpenvzImportTranslation, req: FileRequest, host: string): ImportPlan {
    const h = this.d.hosts.get(host);
    const ov = h.drivers.all().find((x) => x.driver.name === 'openvz');
    const refuse = (why: string) => new AppError('UNSUPPORTED', `Cannot import container ${t.ctid} ("${t.name}") on host ${host}: the openvz driver is not available there: ${why}`, { details: { host } });
    if (!ov) throw refuse(`it is not enabled (HANGAR_DRIVERS names ${h.drivers.all().map((x) => x.driver.name).join(', ')})`);
    if (!ov.probe.available) throw refuse(ov.probe.reason ?? 'its probe failed');
    const priv = req.private ?? t.private;
    if (priv === undefined) throw new AppError('INVALID_ARGUMENT', `Cannot import container ${t.ctid}: its config names no VE_PRIVATE; give the private area with --private DIR`);
    if (!priv.startsWith('/') || priv.split('/').includes('..')) throw new AppError('INVALID_ARGUMENT', `Invalid private area ${JSON.stringify(priv)}: an absolute path without ".." on host ${host}`);
    const [ipv4, ...extra] = t.addresses;
    const config = {
      ...t.config, 'openvz.ctid': String(t.ctid),
      ...(t.hostname !== undefined ? { 'openvz.hostname': t.hostname } : {}),
      ...(t.ostemplate !== undefined ? { 'openvz.ostemplate': t.ostemplate } : {}),
      ...(extra.length ? { 'openvz.ipadd': extra.join(' ') } : {}),
    };
    const adopt = this.d.instances.validateAdopt({
      name: t.name, host, driver: 'openvz', config, ...(ipv4 !== undefined ? { ipv4 } : {}), volume: true,
      origin: { kind: 'openvz-import', source: req.source ?? null, ctid: t.ctid, private: priv, untranslated: t.untranslated },
    });
    return { translation: t, adopt };
  }

  /** The node's openvz7 driver, or UNSUPPORTED naming why it cannot read CTs there. */
  private openvz7On(h: HostContext, ref: string): HostDriver & Required<Pick<HostDriver, 'inspectForeign'>> {
    const vz = h.drivers.all().find((x) => x.driver.name === 'openvz7');
    const refuse = (why: string) => new AppError('UNSUPPORTED', `Cannot import CT "${ref}" on host ${h.name}: the openvz7 driver is not available there: ${why}`, { details: { host: h.name } });
    if (!vz) throw refuse(`it is not enabled (HANGAR_DRIVERS names ${h.drivers.all().map((x) => x.driver.name).join(', ')})`);
    if (!vz.probe.available) throw refuse(vz.probe.reason ?? 'its probe failed');
    if (!vz.inspectForeign) throw refuse('it cannot read CTs it did not make');
    return vz as HostDriver & Required<Pick<HostDriver, 'inspectForeign'>>;
  }

  /** Reads a CT on its node (NOT_FOUND naming the node when it has none) and translates it; the instance name is the one asked for, else the CT's when valid, else ctCTID. */
  private async inspectOpenvz7(req: Openvz7Request): Promise<{ translation: Openvz7ImportTranslation; h: HostContext }> {
    if (!this.d.hosts.has(req.host)) throw new AppError('NOT_FOUND', `Host "${req.host}" not found`, { details: { hint: 'hangar host list' } });
    const h = this.d.hosts.get(req.host);
    const ct = await this.openvz7On(h, req.ctid).inspectForeign(req.ctid);
    const name = req.name ?? (nameProblem(ct.name) === undefined ? ct.name : `ct${ct.id}`);
    // The CT keeps its own name on the node: prlctl and vzctl still find it by that.
    const translated = ct.translated.map((x) => (x.key === 'Name' && name !== ct.name ? { ...x, note: `the instance is ${name}; the CT keeps its name on the node` } : x));
    const translation: Openvz7ImportTranslation = {
      ctid: ct.id, uuid: ct.uuid, ctName: ct.name, name, host: h.name, type: 'container', driver: 'openvz7', state: ct.state,
      config: ct.config, addresses: ct.addresses, translated, untranslated: ct.untranslated,
    };
    return { translation, h };
  }

  /**
   * A CT already on an OpenVZ 7 node, adopted as it is: not one Hangar manages already, its venet addresses in the
   * host's subnet (Hangar places every instance address there, so a CT of the node's own LAN needs the node added with
   * --bridge of that LAN's bridge), and its config and addresses checked like any other instance's.
   */
  private async validateOpenvz7(req: Openvz7Request): Promise<ImportPlan> {
    const { translation: t, h } = await this.inspectOpenvz7(req);
    const what = `CT ${t.ctid} ("${t.ctName}") on host ${h.name}`;
    // An adopted CT has its CTID in its config; one Hangar made may not (a free CTID was chosen), but is named after its instance.
    const mine = (await this.d.instances.list(h.name)).filter((i) => i.driver === 'openvz7');
    const holder = mine.find((i) => i.config['openvz.ctid'] === t.ctid) ?? mine.find((i) => i.name === t.ctName);
    if (holder) throw new AppError('ALREADY_EXISTS', `Cannot import ${what}: Hangar manages it already, as instance "${holder.name}"`, { details: { instance: holder.name } });
    const subnet = h.network.subnet;
    const [ipv4] = t.addresses;
    if (ipv4 === undefined) {
      throw new AppError('UNSUPPORTED', `Cannot import ${what}: it has no venet IPv4 address, and an instance has one of its host's subnet (${subnet.cidr}); give it one (vzctl set ${t.ctid} --ipadd ADDRESS --save on the node) and import it again`);
    }
    const outside = t.addresses.filter((a) => !subnetContains(subnet, a));
    if (outside.length > 0) {
      throw new AppError('INVALID_ADDRESS', `Cannot import ${what}: its address${outside.length > 1 ? 'es' : ''} ${outside.join(', ')} ${outside.length > 1 ? 'are' : 'is'} outside the subnet ${subnet.cidr} of host ${h.name}, where Hangar places its instances' addresses; add the node with the bridge of the CTs' own network (hangar host add NAME URL --bridge BRIDGE), so that its subnet is theirs`, { details: { host: h.name, subnet: subnet.cidr, addresses: outside } });
    }
    const adopt = this.d.instances.validateAdopt({
      name: t.name, host: h.name, driver: 'openvz7', config: t.config, ipv4,
      origin: { kind: IMPORT_ORIGIN, source: `${h.name}:${t.ctid}`, ctid: t.ctid, uuid: t.uuid, untranslated: t.untranslated },
    });
    return { translation: t, adopt };
  }

  /** Adopts the domain: the instance is recorded on its host with the translated config (its disks stay where they are). */
  run(plan: ImportPlan, progress: (m: string) => void = () => undefined): Promise<Instance> {
    return this.d.instances.adopt(plan.adopt, progress);
  }
}
