// Subscription fields are declared in the subgraph that owns their events (so they compose into the supergraph and
// codegen and GraphiQL see them) but are executed by the gateway: called on a subgraph, they refuse.
import { GraphQLError } from 'graphql';

export function servedByGateway(): never {
  throw new GraphQLError('Subscriptions are served by the gateway over WebSocket (graphql-ws), not by a subgraph', {
    extensions: { code: 'BAD_REQUEST' },
  });
}
