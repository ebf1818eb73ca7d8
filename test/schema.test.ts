// The committed SDL in schema/ is what the gateway composes at boot: it must match the code and compose.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSupergraphConfig } from '../lib/graphql/compose.js';
import { composeFromSdls, printSubgraphSdls } from '../lib/graphql/subgraph-sdl.js';
import { repoRoot } from './support/platform.js';

describe('committed schema', () => {
  it('matches the code of every subgraph and composes into the committed supergraph (run `npm run compose` if not)', async () => {
    const entries = await readSupergraphConfig(join(repoRoot, 'supergraph.yaml'));
    const sdls = await printSubgraphSdls();
    for (const entry of entries) {
      const committed = await readFile(entry.schemaFile, 'utf8');
      expect(committed, `schema/${entry.name}.graphql is stale`).toBe(sdls[entry.name as keyof typeof sdls]);
    }
    const supergraph = composeFromSdls(sdls, Object.fromEntries(entries.map((e) => [e.name, e.url])));
    expect(await readFile(join(repoRoot, 'schema', 'supergraph.graphql'), 'utf8'), 'schema/supergraph.graphql is stale').toBe(supergraph);
  });

  it('resolves cross-subgraph references through their owners', async () => {
    const supergraph = await readFile(join(repoRoot, 'schema', 'supergraph.graphql'), 'utf8');
    // Job.modelVersion and TrainingRun.datasetVersion are entities owned elsewhere, joined by key.
    expect(supergraph).toMatch(/type ModelVersion\s*\n?\s*@join__type\(graph: JOBS, key: "id", resolvable: false\)/);
    expect(supergraph).toMatch(/@join__type\(graph: MODELS, key: "id"\)/);
    expect(supergraph).toMatch(/type DatasetVersion[\s\S]*?@join__type\(graph: DATASETS, key: "id"\)/);
  });
});
