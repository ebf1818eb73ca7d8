// Prints each subgraph's SDL from the code and composes them: what `npm run compose` commits and what the
// staleness test compares with the committed files.
import { subgraphSetups, SUBGRAPH_NAMES, type SubgraphName } from '../../subgraphs/index.js';
import { composeSupergraph } from './compose.js';
import { subgraphSdl } from './subgraph.js';

export async function printSubgraphSdls(): Promise<Record<SubgraphName, string>> {
  const setups = subgraphSetups({});
  const out = {} as Record<SubgraphName, string>;
  for (const name of SUBGRAPH_NAMES) {
    // No services: resolvers are only instantiated when a field is resolved, never to print the schema.
    out[name] = subgraphSdl(await setups[name].definition.schema({} as never));
  }
  return out;
}

export function composeFromSdls(sdls: Record<SubgraphName, string>, urls: Record<string, string>): string {
  return composeSupergraph(SUBGRAPH_NAMES.map((name) => ({ name, url: urls[name]!, sdl: sdls[name] })));
}
