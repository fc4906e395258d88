// Golden test of docs/api.md: it is rendered from the route catalogue; UPDATE_GOLDEN=1 rewrites it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderApiDocs } from '../../../src/api/api-docs.js';
import { ROUTES } from '../../../src/shared/routes.js';
import { EventTypeSchema } from '../../../src/shared/schemas.js';

const file = join(import.meta.dirname, '..', '..', '..', 'docs', 'api.md');

describe('docs/api.md', () => {
  it('is what the catalogue renders', () => {
    const text = renderApiDocs();
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, text);
    expect(readFileSync(file, 'utf8')).toBe(text);
  });

  it('lists every route and every event type', () => {
    const text = renderApiDocs();
    for (const r of Object.values(ROUTES)) expect(text).toContain(`| ${r.path}`);
    for (const t of EventTypeSchema.options) expect(text).toContain(`- \`${t}\`:`);
  });
});
