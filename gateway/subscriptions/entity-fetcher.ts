// Fetches the entity fields of a subscription event through the federated graph, as the subscriber (so the same
// rules as HTTP queries apply), with the subscriber's own selection, aliases, fragments and variables. The same
// event, selection and access level is fetched once however many subscribers ask within a short window.
import {
  Kind,
  print,
  visit,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLResolveInfo,
  type OperationDefinitionNode,
  type VariableDefinitionNode,
} from 'graphql';
import type { Identity } from '../../lib/auth.js';
import type { EntityRef } from './fields.js';

export interface FetchResult {
  data: Record<string, unknown> | null;
  errors?: readonly { message: string; extensions?: Record<string, unknown> }[];
}

export type ExecuteAs = (identity: Identity, query: string, variables: Record<string, unknown>) => Promise<FetchResult>;

function collectUsed(node: FieldNode, fragments: Record<string, FragmentDefinitionNode>) {
  const variables = new Set<string>();
  const used = new Map<string, FragmentDefinitionNode>();
  const walk = (n: unknown) =>
    visit(n as FieldNode, {
      Variable(v) {
        variables.add(v.name.value);
      },
      FragmentSpread(spread) {
        const name = spread.name.value;
        if (!used.has(name) && fragments[name]) {
          used.set(name, fragments[name]!);
          walk(fragments[name]);
        }
      },
    });
  walk(node.selectionSet);
  return { variables, fragments: [...used.values()] };
}

/** The query that fetches `ref` with the field's selection: `query($__a0: ID!, …) { __entity: job(id: $__a0) { … } }`. */
export function entityQuery(ref: EntityRef, info: Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments' | 'operation' | 'variableValues'>) {
  const field = info.fieldNodes[0]!;
  const used = collectUsed(field, info.fragments);
  const argDefs: VariableDefinitionNode[] = [];
  const variables: Record<string, unknown> = {};
  const args = Object.entries(ref.args).map(([name, [type, value]], i) => {
    const variable = `__a${i}`;
    variables[variable] = value;
    argDefs.push({
      kind: Kind.VARIABLE_DEFINITION,
      variable: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: variable } },
      type: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: type.replace(/!$/, '') } },
    } as VariableDefinitionNode);
    if (type.endsWith('!')) {
      const def = argDefs[argDefs.length - 1]!;
      (def as { type: unknown }).type = { kind: Kind.NON_NULL_TYPE, type: def.type };
    }
    return { kind: Kind.ARGUMENT, name: { kind: Kind.NAME, value: name }, value: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: variable } } };
  });
  const userDefs = (info.operation.variableDefinitions ?? []).filter((d) => used.variables.has(d.variable.name.value));
  for (const def of userDefs) variables[def.variable.name.value] = info.variableValues[def.variable.name.value];
  const operation: OperationDefinitionNode = {
    kind: Kind.OPERATION_DEFINITION,
    operation: 'query' as OperationDefinitionNode['operation'],
    name: { kind: Kind.NAME, value: 'SubscriptionEvent' },
    variableDefinitions: [...argDefs, ...userDefs],
    selectionSet: {
      kind: Kind.SELECTION_SET,
      selections: [
        {
          kind: Kind.FIELD,
          alias: { kind: Kind.NAME, value: '__entity' },
          name: { kind: Kind.NAME, value: ref.query },
          arguments: args,
          selectionSet: field.selectionSet,
        } as FieldNode,
      ],
    },
  };
  const document: DocumentNode = { kind: Kind.DOCUMENT, definitions: [operation, ...used.fragments] };
  return { query: print(document), variables };
}

/** Shares one fetch between subscribers that would get the same answer (same query, variables and access). */
export class EntityFetcher {
  private readonly inflight = new Map<string, { at: number; result: Promise<FetchResult> }>();
  fetches = 0;

  constructor(
    private readonly executeAs: ExecuteAs,
    private readonly ttlMs = 5_000,
  ) {}

  fetch(identity: Identity, eventKey: string, query: string, variables: Record<string, unknown>): Promise<FetchResult> {
    const access = `${identity.tenant}|${[...identity.roles].sort().join(',')}`;
    const key = `${eventKey}|${access}|${query}|${JSON.stringify(variables)}`;
    const now = Date.now();
    const hit = this.inflight.get(key);
    if (hit && now - hit.at < this.ttlMs) return hit.result;
    if (this.inflight.size > 10_000) {
      for (const [k, v] of this.inflight) if (now - v.at >= this.ttlMs) this.inflight.delete(k);
    }
    this.fetches += 1;
    const result = this.executeAs(identity, query, variables);
    this.inflight.set(key, { at: now, result });
    return result;
  }
}
