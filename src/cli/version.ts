// The CLI's version: injected by scripts/build.mjs into the bundle, "0.0.0-dev" when run from source.
declare const __HANGAR_VERSION__: string | undefined;

/** Version printed by `hangar --version`. */
export const VERSION: string = typeof __HANGAR_VERSION__ === 'string' ? __HANGAR_VERSION__ : '0.0.0-dev';
