// The `hangar` command tree (commander); command bodies are imported only when their command runs.
import type { Command as CommandType } from 'commander';
import type { Format } from '../shared/schemas.js';
import { Ctx, printError, type CliIo } from './context.js';
import { runFast } from './fast.js';
import { FORMATS } from './format.js';
import { VERSION } from './version.js';

/** The process surface run() needs. */
export type { CliIo } from './context.js';

/** Collects a repeatable option into an array. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Runs the CLI with argv (without node and script) against io; answers the exit code. */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  // OpenVZ's tools keep their own syntax, parsed where the everyday commands are.
  if (argv[0] === 'vz') return (await runFast(argv, io))!;
  const { Command, Option, CommanderError } = await import('commander');
  const ctx = new Ctx(io);
  let exitCode = 0;

  const formatOption = (): InstanceType<typeof Option> => new Option('--format <format>', 'output format').choices(FORMATS as string[]).default('table');
  /** Wraps an action: awaits it, keeping a returned number as the exit code. */
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number | void>) =>
    async (...args: A): Promise<void> => {
      const code = await fn(...args);
      if (typeof code === 'number') exitCode = code;
    };

  const program: CommandType = new Command('hangar')
    .description('Hangar: manage containers and virtual machines through hangard')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  program.addHelpText('after', '\nThe daemon socket is $HANGAR_SOCKET (default /run/hangar/hangar.sock).\n');

  const host = program.command('host').description('hosts: this one and remote ones over SSH; their facts, drivers and detected virtualization');
  host
    .command('add')
    .description('add a remote host over SSH; prints and pins its host key (a changed key is refused until "host trust")')
    .argument('<name>', 'the name instances refer to it by')
    .argument('<url>', 'ssh://USER@ADDRESS[:PORT]')
    .option('--identity <file>', 'private key to log in with (default ~/.ssh/id_ed25519, id_ecdsa or id_rsa of the daemon\'s user)')
    .option('--fingerprint <sha256>', 'refuse the host unless it presents this key (SHA256:... as ssh-keygen -l prints it)')
    .option('--bridge <name>', 'attach instances to this bridge of the host (a Dom0\'s xenbr0) with static addresses from its subnet, instead of replicating the managed network there')
    .action(act(async (name: string, url: string, o: { identity?: string; fingerprint?: string; bridge?: string }) => (await import('./commands/host.js')).hostAddCommand(ctx, name, url, o)));
  host
    .command('list')
    .description('list hosts: state (why not up), URL, instances, pinned key')
    .addOption(formatOption())
    .action(act(async (o: { format: Format }) => (await import('./commands/host.js')).hostListCommand(ctx, o.format)));
  host
    .command('info')
    .description('show a host\'s facts, drivers, storage and network (default this one); for a named host also its state and pinned key')
    .argument('[name]', 'a host from "host list" (default: this one)')
    .option('--host <name>', 'the same as giving the name')
    .addOption(formatOption())
    .action(act(async (name: string | undefined, o: { host?: string; format: Format }) => (await import('./commands/host.js')).hostInfoCommand(ctx, name ?? o.host, o.format)));
  host
    .command('remove')
    .description('forget a remote host (refused while instances live there)')
    .argument('<name>')
    .action(act(async (name: string) => (await import('./commands/host.js')).hostRemoveCommand(ctx, name)));
  host
    .command('trust')
    .description('pin the host key a remote host presents now (after a reinstall changed it)')
    .argument('<name>')
    .option('--fingerprint <sha256>', 'pin it only if it is this key')
    .action(act(async (name: string, o: { fingerprint?: string }) => (await import('./commands/host.js')).hostTrustCommand(ctx, name, o)));
  host
    .command('detect')
    .description('detect the virtualization layers this host runs in (like virt-what)')
    .option('--root <dir>', 'inspect this root file system instead of /')
    .option('--cpuid <signature>', 'use this hypervisor CPUID signature instead of probing')
    .addOption(formatOption())
    .action(
      act(async (o: { root?: string; cpuid?: string; format: Format }) => {
        const { resolve } = await import('node:path');
        const q = { ...(o.root !== undefined ? { root: resolve(io.cwd, o.root) } : {}), ...(o.cpuid !== undefined ? { cpuid: o.cpuid } : {}) };
        return (await import('./commands/host.js')).hostDetectCommand(ctx, q, o.format);
      }),
    );

  const image = program.command('image').description('manage images');
  image
    .command('list')
    .description('list images')
    .addOption(formatOption())
    .action(act(async (o: { format: Format }) => (await import('./commands/images.js')).imageListCommand(ctx, o.format)));
  image
    .command('build')
    .description('build a built-in image')
    .argument('<kind>', 'busybox or debian')
    .option('--release <release>', 'Debian release (default bookworm)')
    .option('--alias <name>', 'image name (default: the kind)')
    .option('--vm', 'build a virtual-machine image')
    .action(act(async (kind: string, o: { release?: string; alias?: string; vm?: boolean }) => (await import('./commands/images.js')).imageBuildCommand(ctx, kind, o)));
  image
    .command('import')
    .description('import a root file system tarball, or with --vm a qcow2 or raw disk')
    .argument('<file>', 'tarball or disk image path (read by the daemon)')
    .requiredOption('--alias <name>', 'image name')
    .option('--vm', 'import a qcow2 or raw disk image as a virtual-machine image')
    .action(act(async (file: string, o: { alias: string; vm?: boolean }) => (await import('./commands/images.js')).imageImportCommand(ctx, file, o)));
  image
    .command('delete')
    .description('delete an image')
    .argument('<name>')
    .option('--vm', 'delete the VM variant of the image')
    .action(act(async (name: string, opts: { vm?: boolean }) => (await import('./commands/images.js')).imageDeleteCommand(ctx, name, opts)));

  const launchLike = (name: string, start: boolean): void => {
    program
      .command(name)
      .description(start ? 'create and start an instance' : 'create an instance without starting it')
      .argument('<image>', 'image alias or fingerprint')
      .argument('<name>', 'instance name')
      .option('-c, --config <key=value>', 'config key (repeatable)', collect, [])
      .option('--memory <size>', 'memory limit (limits.memory), e.g. 512MiB')
      .option('--cpus <n>', 'CPU count (limits.cpu)')
      .option('--disk <size>', 'root disk size (limits.disk)')
      .option('--ip <address>', 'static IPv4 address')
      .option('--vm', 'create a virtual machine (the default VM driver)')
      .option('--driver <name>', 'the backend (lxc, qemu, xen, ...; host info lists them): default, the first one of the type available on the host')
      .option('--host <name>', 'the host to put it on (host list; default local)')
      .action(
        act(async (img: string, inst: string, o: { config: string[]; memory?: string; cpus?: string; disk?: string; ip?: string; vm?: boolean; driver?: string; host?: string }) =>
          (await import('./commands/instances.js')).launchCommand(ctx, img, inst, o, start),
        ),
      );
  };
  launchLike('launch', true);
  launchLike('create', false);

  for (const action of ['start', 'freeze', 'unfreeze'] as const) {
    program
      .command(action)
      .description(`${action} an instance`)
      .argument('<name>')
      .action(act(async (name: string) => (await import('./commands/instances.js')).stateCommand(ctx, name, action)));
  }
  for (const action of ['stop', 'restart'] as const) {
    program
      .command(action)
      .description(`${action} an instance`)
      .argument('<name>')
      .option('--timeout <seconds>', 'how long to wait for a clean shutdown')
      .option('--force', 'kill instead of shutting down cleanly')
      .option('--stateful', 'stop only: save the RAM so the next start resumes where it was (VMs)')
      .action(act(async (name: string, o: { timeout?: string; force?: boolean; stateful?: boolean }) => (await import('./commands/instances.js')).stateCommand(ctx, name, action, o)));
  }
  program
    .command('delete')
    .description('delete an instance')
    .argument('<name>')
    .option('--force', 'stop it first when running')
    .action(act(async (name: string, o: { force?: boolean }) => (await import('./commands/instances.js')).deleteCommand(ctx, name, o)));
  program
    .command('list')
    .description('list instances of every host (those of a host that is down as UNKNOWN)')
    .option('--host <name>', 'only the instances of this host')
    .addOption(formatOption())
    .action(act(async (o: { host?: string; format: Format }) => (await import('./commands/instances.js')).listCommand(ctx, o.format, o.host !== undefined ? { host: o.host } : {})));
  program
    .command('info')
    .description('show an instance: state, technology, config and usage')
    .argument('<name>')
    .addOption(formatOption())
    .action(act(async (name: string, o: { format: Format }) => (await import('./commands/instances.js')).infoCommand(ctx, name, o.format)));
  program
    .command('copy')
    .description('copy an instance')
    .argument('<source>')
    .argument('<target>')
    .option('--ip <address>', 'static IPv4 address of the copy')
    .action(act(async (src: string, dst: string, o: { ip?: string }) => (await import('./commands/instances.js')).copyCommand(ctx, src, dst, o)));

  program
    .command('move')
    .description('move a container to another host (offline: a running one is stopped, copied and started there)')
    .argument('<name>')
    .requiredOption('--host <host>', 'the host to move it to (hangar host list)')
    .action(act(async (name: string, o: { host: string }) => (await import('./commands/instances.js')).moveCommand(ctx, name, o)));

  program
    .command('exec')
    .description('run a command in an instance; its exit code becomes ours')
    .usage('<name> [options] -- <command...>')
    .argument('<name>')
    .argument('<command...>')
    .option('-t, --tty', 'allocate a terminal (raw mode, resizes forwarded)')
    .option('--env <key=value>', 'environment variable (repeatable)', collect, [])
    .option('--cwd <dir>', 'working directory inside the instance')
    .option('--disconnect-signal <signal>', 'signal for the command (its process group) if this client goes away: SIGKILL (default), SIGTERM, SIGHUP, SIGINT or SIGQUIT; SIGKILL follows after 10 s')
    .action(act(async (name: string, command: string[], o: { tty?: boolean; env: string[]; cwd?: string; disconnectSignal?: string }) => (await import('./commands/exec.js')).execCommand(ctx, name, command, o)));
  program
    .command('execs')
    .description('list the commands running in an instance through exec, with their ids')
    .argument('<name>')
    .addOption(formatOption())
    .action(act(async (name: string, o: { format: Format }) => (await import('./commands/exec.js')).execListCommand(ctx, name, o.format)));
  program
    .command('exec-signal')
    .description('send a signal to a running exec (its process group in a container)')
    .argument('<name>')
    .argument('<id>', 'the exec id (hangar execs NAME)')
    .argument('<signal>', 'SIGTERM, SIGINT, SIGHUP, SIGQUIT or SIGKILL')
    .action(act(async (name: string, id: string, signal: string) => (await import('./commands/exec.js')).execSignalCommand(ctx, name, id, signal)));
  program
    .command('console')
    .description('attach to an instance console (detach with Ctrl-a q)')
    .argument('<name>')
    .option('--show-log', 'print the persistent console log instead of attaching')
    .action(act(async (name: string, o: { showLog?: boolean }) => (await import('./commands/exec.js')).consoleCommand(ctx, name, o)));

  program
    .command('monitor')
    .description("run one command on a VM's QEMU monitor (QMP) and print its JSON result")
    .argument('<name>')
    .argument('<command>', 'QMP command, e.g. query-status')
    .argument('[arguments]', 'its arguments as a JSON object')
    .action(act(async (name: string, command: string, args?: string) => (await import('./commands/monitor.js')).monitorCommand(ctx, name, command, args)));

  const config = program.command('config').description('instance configuration');
  config
    .command('show')
    .description('show config and pending changes')
    .argument('<name>')
    .addOption(formatOption())
    .action(act(async (name: string, o: { format: Format }) => (await import('./commands/config.js')).configShowCommand(ctx, name, o.format)));
  config
    .command('set')
    .description('set config keys (live where possible, otherwise pending until restart)')
    .argument('<name>')
    .argument('<key=value...>')
    .action(act(async (name: string, pairs: string[]) => (await import('./commands/config.js')).configSetCommand(ctx, name, pairs)));
  config
    .command('unset')
    .description('remove config keys')
    .argument('<name>')
    .argument('<key...>')
    .action(act(async (name: string, keys: string[]) => (await import('./commands/config.js')).configUnsetCommand(ctx, name, keys)));

  const device = config.command('device').description('extra devices (disk) of an instance');
  device
    .command('add')
    .description('add a device, e.g. `config device add vm1 data disk size=10GiB` (pending until restart on a running VM)')
    .argument('<name>')
    .argument('<device>')
    .argument('<type>')
    .argument('[key=value...]')
    .action(act(async (name: string, dev: string, type: string, props: string[]) => (await import('./commands/config.js')).deviceAddCommand(ctx, name, dev, type, props ?? [])));
  device
    .command('set')
    .description('grow a disk device (live on a running VM)')
    .argument('<name>')
    .argument('<device>')
    .argument('<props...>', 'size=SIZE')
    .action(act(async (name: string, dev: string, props: string[]) => (await import('./commands/config.js')).deviceSetCommand(ctx, name, dev, props)));
  device
    .command('remove')
    .description('remove a device (its disk file is kept)')
    .argument('<name>')
    .argument('<device>')
    .action(act(async (name: string, dev: string) => (await import('./commands/config.js')).deviceRemoveCommand(ctx, name, dev)));
  device
    .command('list')
    .description('list devices')
    .argument('<name>')
    .addOption(formatOption())
    .action(act(async (name: string, o: { format: Format }) => (await import('./commands/config.js')).deviceListCommand(ctx, name, o.format)));

  const snapshot = program.command('snapshot').description('instance snapshots');
  snapshot
    .command('create')
    .argument('<name>')
    .argument('<snapshot>')
    .option('--stateful', 'also save RAM and device state (VMs)')
    .action(act(async (name: string, snap: string, o: { stateful?: boolean }) => (await import('./commands/config.js')).snapshotCreateCommand(ctx, name, snap, o)));
  snapshot
    .command('list')
    .argument('<name>')
    .addOption(formatOption())
    .action(act(async (name: string, o: { format: Format }) => (await import('./commands/config.js')).snapshotListCommand(ctx, name, o.format)));
  snapshot
    .command('restore')
    .argument('<name>')
    .argument('<snapshot>')
    .action(act(async (name: string, snap: string) => (await import('./commands/config.js')).snapshotRestoreCommand(ctx, name, snap)));
  snapshot
    .command('delete')
    .argument('<name>')
    .argument('<snapshot>')
    .action(act(async (name: string, snap: string) => (await import('./commands/config.js')).snapshotDeleteCommand(ctx, name, snap)));

  const importCmd = program.command('import').description('adopt existing domains of other tools');
  importCmd
    .command('xen')
    .description('adopt a Xen domain from its xl.cfg (read here): its settings become Hangar keys, what cannot be is listed')
    .argument('<file>', 'the domain\'s xl.cfg')
    .option('--host <name>', 'the Xen host (Dom0) the domain lives on (default local)')
    .option('--name <name>', 'the instance name (default: from the domain\'s name)')
    .option('--dry-run', 'only print the translation: disks, NICs, keys and what is not kept (needs no Xen host, changes nothing)')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .action(act(async (file: string, o: { host?: string; name?: string; dryRun?: boolean; format: Format }) => (await import('./commands/import.js')).importXenCommand(ctx, file, o)));
  importCmd
    .command('openvz')
    .description('adopt an OpenVZ container from its CTID.conf (read here) and its private area: vSwap memory, CPU, disk, venet addresses, every beancounter pair; what cannot be kept is listed')
    .argument('<file>', 'the container\'s CTID.conf')
    .option('--host <name>', 'the host to run it on (default local)')
    .option('--name <name>', 'the instance name (default: its NAME, else ctCTID)')
    .option('--private <dir>', 'its private area (a simfs directory) on that host (default: the conf\'s VE_PRIVATE)')
    .option('--dry-run', 'only print the translation (needs no OpenVZ host, changes nothing)')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .action(act(async (file: string, o: { host?: string; name?: string; private?: string; dryRun?: boolean; format: Format }) => (await import('./commands/import.js')).importOpenvzCommand(ctx, file, o)));
  importCmd
    .command('openvz7')
    .description('adopt a CT already on an OpenVZ 7 node (read there with prlctl and vzlist): RAM, swap, guarantee, CPUs, weight, cap, processes, disk, venet addresses, name service, autostart; it is not made again, and what cannot be kept is listed')
    .argument('<ct>', 'the CT\'s CTID, or its name on the node')
    .requiredOption('--host <name>', 'the node (a host added with hangar host add, its openvz7 driver available)')
    .option('--name <name>', 'the instance name (default: the CT\'s name when it is a valid one, else ctCTID)')
    .option('--dry-run', 'only print the translation (reads the CT on the node, changes nothing)')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'))
    .action(act(async (ct: string, o: { host: string; name?: string; dryRun?: boolean; format: Format }) => (await import('./commands/import.js')).importOpenvz7Command(ctx, ct, o)));

  const operation = program.command('operation').description('long-running operations');
  operation
    .command('list')
    .addOption(formatOption())
    .action(act(async (o: { format: Format }) => (await import('./commands/host.js')).operationListCommand(ctx, o.format)));
  operation
    .command('show')
    .argument('<id>')
    .addOption(formatOption())
    .action(act(async (id: string, o: { format: Format }) => (await import('./commands/host.js')).operationShowCommand(ctx, id, o.format)));

  program
    .command('vz')
    .description('OpenVZ\'s tools over hangard: "hangar vz ACTION CTID ..." is vzctl (create, start, stop, set, exec, enter, status, destroy, mount, umount, beancounters), "hangar vz list ..." is vzlist')
    .allowUnknownOption()
    .argument('[args...]');

  const daemon = program.command('daemon').description('the hangard service');
  daemon
    .command('install')
    .description('write a systemd unit for hangard, and link vzctl and vzlist into /usr/local/sbin where no real vzctl is installed')
    .option('--output <file>', 'write the unit here instead of /etc/systemd/system/hangard.service')
    .option('--tools-dir <dir>', 'where vzctl and vzlist are linked (default /usr/local/sbin; "none" skips them)')
    .action(act(async (o: { output?: string; toolsDir?: string }) => (await import('./commands/daemon.js')).daemonInstallCommand(ctx, o)));

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    printError(err, io.stderr);
    return 1;
  } finally {
    ctx.close();
  }
}
