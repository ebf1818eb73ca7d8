// Composes the supergraph from supergraph.yaml and the committed subgraph SDL with @apollo/composition, the same
// way at build time (npm run compose), in tests (staleness) and when the gateway boots.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const supergraphConfigSchema = z.object({
  federation_version: z.string().optional(),
  subgraphs: z.record(
    z.string().regex(/^[a-z][a-z0-9_-]*$/),
    z.object({ routing_url: z.url(), schema: z.object({ file: z.string() }) }),
  ),
});

export interface SubgraphEntry {
  name: string;
  url: string;
  schemaFile: string;
}

export async function readSupergraphConfig(path: string): Promise<SubgraphEntry[]> {
  const parsed = supergraphConfigSchema.parse(parseYaml(await readFile(path, 'utf8')));
  return Object.entries(parsed.subgraphs).map(([name, entry]) => ({
    name,
    url: entry.routing_url,
    schemaFile: resolve(dirname(path), entry.schema.file),
  }));
}

export class CompositionError extends Error {
  constructor(readonly messages: string[]) {
    super(`Supergraph composition failed:\n${messages.map((m) => `  - ${m}`).join('\n')}`);
    this.name = 'CompositionError';
  }
}

/** Composes SDL strings into a supergraph SDL; throws CompositionError listing every problem. */
export function composeSupergraph(subgraphs: { name: string; url: string; sdl: string }[]): string {
  const result = composeServices(subgraphs.map((s) => ({ name: s.name, url: s.url, typeDefs: parse(s.sdl) })));
  if (result.errors) throw new CompositionError(result.errors.map((e) => e.message));
  return result.supergraphSdl;
}

/** Reads supergraph.yaml and the SDL files it names; `urls` overrides routing URLs (per environment). */
export async function composeFromConfig(path: string, urls: Record<string, string | undefined> = {}): Promise<string> {
  const entries = await readSupergraphConfig(path);
  const subgraphs = await Promise.all(
    entries.map(async (e) => ({ name: e.name, url: urls[e.name] ?? e.url, sdl: await readFile(e.schemaFile, 'utf8') })),
  );
  return composeSupergraph(subgraphs);
}
