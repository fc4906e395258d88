// The import service: translates a foreign domain's config (an xl.cfg, an OpenVZ CTID.conf) into Hangar's terms, and adopts it as an instance on a host.
import { AppError } from '../../shared/errors.js';
import { LOCAL_HOST } from '../../shared/hosts.js';
import type { ImportInstanceRequest, ImportTranslateRequest, ImportTranslation, Instance, OpenvzImportTranslation, XenImportTranslation } from '../../shared/schemas.js';
import { importVzConfText } from '../../drivers/openvz/import.js';
import { importXlConfigText } from '../../drivers/xen/import.js';
import type { HostDirectory } from '../hosts/context.js';
import type { AdoptPlan, InstanceService } from '../instances/service.js';

/** Dependencies of the import service. */
export interface ImportServiceDeps {
  instances: InstanceService;
  hosts: HostDirectory;
}

/** An import that passed validation: the translation and the adoption it makes. */
export interface ImportPlan {
  translation: XenImportTranslation | OpenvzImportTranslation;
  adopt: AdoptPlan;
}

/** Translates and adopts foreign domains. */
export class ImportService {
  constructor(private readonly d: ImportServiceDeps) {}

  /** The translation of a file's text: pure, needs no Xen or OpenVZ host; bad syntax is INVALID_CONFIG with its position. */
  translate(req: ImportTranslateRequest): ImportTranslation {
    const name = req.name !== undefined ? { name: req.name } : {};
    if (req.kind === 'openvz') return importVzConfText(req.text, { source: req.source ?? 'CTID.conf', ...name, ...(req.ctid !== undefined ? { ctid: req.ctid } : {}) });
    return importXlConfigText(req.text, { source: req.source ?? 'xl.cfg', ...name });
  }

  /** Checks an import without side effects: the translation, the host, its xen driver, the name and the addresses. */
  validate(req: ImportInstanceRequest): ImportPlan {
    const translated = this.translate(req);
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
  private validateOpenvz(t: OpenvzImportTranslation, req: ImportInstanceRequest, host: string): ImportPlan {
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

  /** Adopts the domain: the instance is recorded on its host with the translated config (its disks stay where they are). */
  run(plan: ImportPlan, progress: (m: string) => void = () => undefined): Promise<Instance> {
    return this.d.instances.adopt(plan.adopt, progress);
  }
}
