// The import service: translates a foreign domain's config (an xl.cfg) into Hangar's terms, and adopts the domain as an instance on a host.
import { AppError } from '../../shared/errors.js';
import { LOCAL_HOST } from '../../shared/hosts.js';
import type { ImportInstanceRequest, ImportTranslateRequest, Instance, XenImportTranslation } from '../../shared/schemas.js';
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
  translation: XenImportTranslation;
  adopt: AdoptPlan;
}

/** Translates and adopts foreign domains. */
export class ImportService {
  constructor(private readonly d: ImportServiceDeps) {}

  /** The translation of a file's text: pure, needs no Xen host; bad syntax is INVALID_CONFIG with file:line:column. */
  translate(req: ImportTranslateRequest): XenImportTranslation {
    return importXlConfigText(req.text, { source: req.source ?? 'xl.cfg', ...(req.name !== undefined ? { name: req.name } : {}) });
  }

  /** Checks an import without side effects: the translation, the host, its xen driver, the name and the addresses. */
  validate(req: ImportInstanceRequest): ImportPlan {
    const translation = this.translate(req);
    const host = req.host ?? LOCAL_HOST;
    if (!this.d.hosts.has(host)) throw new AppError('NOT_FOUND', `Host "${host}" not found`, { details: { hint: 'hangar host list' } });
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

  /** Adopts the domain: the instance is recorded on its host with the translated config (its disks stay where they are). */
  run(plan: ImportPlan, progress: (m: string) => void = () => undefined): Promise<Instance> {
    return this.d.instances.adopt(plan.adopt, progress);
  }
}
