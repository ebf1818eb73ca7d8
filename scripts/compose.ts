// `npm run compose`: rewrites schema/<subgraph>.graphql from the code and schema/supergraph.graphql from them.
import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readSupergraphConfig } from '../lib/graphql/compose.js';
import { composeFromSdls, printSubgraphSdls } from '../lib/graphql/subgraph-sdl.js';

const entries = await readSupergraphConfig('supergraph.yaml');
const sdls = await printSubgraphSdls();
for (const entry of entries) {
  await writeFile(entry.schemaFile, sdls[entry.name as keyof typeof sdls]);
}
const supergraph = composeFromSdls(sdls, Object.fromEntries(entries.map((e) => [e.name, e.url])));
await writeFile(join('schema', 'supergraph.graphql'), supergraph);
process.stdout.write(`compose: wrote ${entries.length} subgraph schemas and schema/supergraph.graphql\n`);
