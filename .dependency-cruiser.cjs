// Layering rules, checked by `npm test`: cli → client → shared; api → core → drivers → core/host; nothing imports daemon.
module.exports = {
  forbidden: [
    { name: 'no-daemon-imports', severity: 'error', from: { pathNot: '^src/daemon/' }, to: { path: '^src/daemon/' } },
    { name: 'shared-is-pure', severity: 'error', comment: 'src/shared has no node:* imports and no imports of other layers',
      from: { path: '^src/shared/' }, to: { pathNot: '^(src/shared/|node_modules/zod)' } },
    { name: 'cli-only-client-shared', severity: 'error', from: { path: '^src/cli/' }, to: { path: '^src/(api|core|drivers|daemon)/' } },
    { name: 'client-only-shared', severity: 'error', from: { path: '^src/client/' }, to: { path: '^src/(api|core|drivers|daemon|cli)/' } },
    { name: 'api-not-drivers-directly', severity: 'error', from: { path: '^src/api/' }, to: { path: '^src/(drivers|cli|client)/' } },
    { name: 'core-not-upwards', severity: 'error', from: { path: '^src/core/' }, to: { path: '^src/(api|cli|client)/' } },
    { name: 'drivers-not-upwards', severity: 'error', comment: 'drivers use only core/host and core/reverter (and shared); never the db, services or api',
      from: { path: '^src/drivers/' }, to: { path: '^src/(api|cli|client)/|^src/core/(?!host/|reverter\.ts$)' } },
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
