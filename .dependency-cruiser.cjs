// Layering rules, checked by `npm test`: cli → client → shared; api → core → drivers → host → shared; nothing imports daemon.
module.exports = {
  forbidden: [
    { name: 'no-daemon-imports', severity: 'error', from: { pathNot: '^src/daemon/' }, to: { path: '^src/daemon/' } },
    { name: 'shared-is-pure', severity: 'error', comment: 'src/shared has no node:* imports and no imports of other layers',
      from: { path: '^src/shared/' }, to: { pathNot: '^(src/shared/|node_modules/zod)' } },
    { name: 'cli-only-client-shared', severity: 'error', from: { path: '^src/cli/' }, to: { path: '^src/(api|core|drivers|daemon)/' } },
    { name: 'client-only-shared', severity: 'error', from: { path: '^src/client/' }, to: { path: '^src/(api|core|drivers|daemon|cli)/' } },
    { name: 'api-not-drivers-directly', severity: 'error', from: { path: '^src/api/' }, to: { path: '^src/(drivers|cli|client)/' } },
    { name: 'core-not-upwards', severity: 'error', from: { path: '^src/core/' }, to: { path: '^src/(api|cli|client)/' } },
    { name: 'drivers-not-upwards', severity: 'error', comment: 'drivers use only src/host (and shared); never core (db, services), the api or clients',
      from: { path: '^src/drivers/' }, to: { path: '^src/(api|cli|client|core)/' } },
    { name: 'host-is-the-bottom', severity: 'error', comment: 'src/host (Host, its implementations, host facts, the reverter) imports nothing above it but shared',
      from: { path: '^src/host/' }, to: { path: '^src/(?!host/|shared/)' } },
    { name: 'drivers-no-direct-machine-access', severity: 'error', comment: 'drivers touch the machine only through Host',
      from: { path: '^src/drivers/' }, to: { dependencyTypes: ['core'], path: '^(node:)?(child_process|fs|fs/promises|net)$' } },
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    exclude: { path: '\\.test\\.ts$' },
  },
};
