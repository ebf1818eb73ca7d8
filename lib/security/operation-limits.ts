// Operation limits checked before anything runs: the size of the query text (tokens), how many root fields and
// aliases it has, how deep it nests and what it would cost given its list sizes. Measuring is linear in the document:
// each fragment is measured once, however often it is spread, so a fragment bomb cannot make the check itself slow.
import {
  GraphQLError,
  Kind,
  Lexer,
  Source,
  TokenKind,
  getNamedType,
  isInterfaceType,
  isObjectType,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';

export const OPERATION_LIMIT_NAMES = ['tokens', 'rootFields', 'aliases', 'depth', 'cost', 'introspection', 'batch', 'bodyBytes'] as const;
export type OperationLimitName = (typeof OPERATION_LIMIT_NAMES)[number];

export interface OperationLimits {
  /** Lexical tokens in the query text (comments excluded). */
  tokens: number;
  /** Fields selected at the root of the operation (fragments expanded). */
  rootFields: number;
  /** Aliased fields, counted once per place they end up in the operation. */
  aliases: number;
  /** Nesting of fields; introspection (`__schema`, `__type` and below) is measured on its own. */
  depth: number;
  /** Estimated cost: every field costs 1, times the page sizes (`first`) of the lists it sits in. */
  cost: number;
}

/** Page size assumed for a list field that takes `first` but was not given one (the API's default page). */
export const DEFAULT_LIST_SIZE = 20;

/**
 * Introspection lists nested in one another (`types { fields { args } }` is 3, what GraphiQL and code generators
 * ask). Each level multiplies the answer by the size of the schema, and `type { fields { type { fields … } } }`
 * would do so without end, so deeper nesting is refused whatever the other limits say.
 */
export const MAX_INTROSPECTION_LISTS = 3;
const INTROSPECTION_LISTS = new Set(['types', 'fields', 'inputFields', 'interfaces', 'possibleTypes', 'enumValues', 'args', 'directives']);

export interface OperationMeasure {
  rootFields: number;
  aliases: number;
  depth: number;
  cost: number;
  /** Introspection lists nested in one another (see MAX_INTROSPECTION_LISTS). */
  introspection: number;
}

export interface RootField {
  /** The key in `data`: the alias when there is one. */
  responseKey: string;
  fieldName: string;
  node: FieldNode;
}

export interface InspectedOperation {
  operation: OperationDefinitionNode;
  operationType: 'query' | 'mutation' | 'subscription';
  operationName: string | null;
  rootFields: RootField[];
  measure: OperationMeasure;
}

export interface OperationRefusal {
  limit: OperationLimitName;
  max: number;
  actual: number;
}

/** Counts the lexical tokens of a query text, stopping one past `max`; null when it does not even lex. */
export function countTokens(source: string, max: number): number | null {
  const lexer = new Lexer(new Source(source));
  let count = 0;
  try {
    while (lexer.advance().kind !== TokenKind.EOF) {
      count += 1;
      if (count > max) return count;
    }
  } catch {
    return null; // a syntax error: the GraphQL server reports it as such
  }
  return count;
}

type Subtree = Omit<OperationMeasure, 'rootFields'>;
const ZERO: Subtree = { aliases: 0, depth: 0, cost: 0, introspection: 0 };

/**
 * Measures the operation `operationName` selects in a parsed document (null when it selects none). The schema gives
 * the list fields their default page size; fields the schema does not know (validation refuses them later) count as 1.
 */
export function inspectOperation(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName: string | null | undefined,
  variables: Record<string, unknown> | null | undefined,
): InspectedOperation | null {
  const operations = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations.length === 1 ? operations[0] : undefined;
  if (!operation) return null;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);

  const defaults = new Map<string, unknown>();
  for (const v of operation.variableDefinitions ?? []) {
    if (v.defaultValue) defaults.set(v.variable.name.value, literal(v.defaultValue, new Map()));
  }
  const variableValues = new Map<string, unknown>(defaults);
  for (const [name, value] of Object.entries(variables ?? {})) variableValues.set(name, value);

  const memo = new Map<string, Subtree>();
  const inProgress = new Set<string>();

  // Inside introspection a fragment is measured differently (lists nesting, not depth and cost): memo per mode.
  const measureFragment = (name: string, introspecting: boolean): Subtree => {
    const key = `${introspecting ? 'i' : 'o'}:${name}`;
    const known = memo.get(key);
    if (known) return known;
    const fragment = fragments.get(name);
    // An unknown fragment or a cycle is a validation error; it adds nothing here.
    if (!fragment || inProgress.has(key)) return ZERO;
    inProgress.add(key);
    const result = measureSelections(fragment.selectionSet, schema.getType(fragment.typeCondition.name.value) ?? undefined, introspecting);
    inProgress.delete(key);
    memo.set(key, result);
    return result;
  };

  function measureSelections(set: SelectionSetNode, parent: GraphQLNamedType | undefined, introspecting: boolean): Subtree {
    const total = { ...ZERO };
    const add = (m: Subtree) => {
      total.aliases += m.aliases;
      total.depth = Math.max(total.depth, m.depth);
      total.cost += m.cost;
      total.introspection = Math.max(total.introspection, m.introspection);
    };
    for (const selection of set.selections) {
      switch (selection.kind) {
        case Kind.FIELD:
          add(measureField(selection, parent, introspecting));
          break;
        case Kind.FRAGMENT_SPREAD:
          add(measureFragment(selection.name.value, introspecting));
          break;
        case Kind.INLINE_FRAGMENT: {
          const type = selection.typeCondition ? (schema.getType(selection.typeCondition.name.value) ?? undefined) : parent;
          add(measureSelections(selection.selectionSet, type, introspecting));
          break;
        }
      }
    }
    return total;
  }

  function measureField(node: FieldNode, parent: GraphQLNamedType | undefined, introspecting: boolean): Subtree {
    const name = node.name.value;
    const aliases = node.alias ? 1 : 0;
    if (name === '__typename') return { ...ZERO, aliases };
    // Introspection is answered by the gateway from the schema: its size is bounded by how its lists nest.
    if (introspecting || name === '__schema' || name === '__type') {
      const child = node.selectionSet ? measureSelections(node.selectionSet, undefined, true) : ZERO;
      return { ...ZERO, aliases: aliases + child.aliases, introspection: (INTROSPECTION_LISTS.has(name) ? 1 : 0) + child.introspection };
    }
    const field = parent && (isObjectType(parent) || isInterfaceType(parent)) ? parent.getFields()[name] : undefined;
    const size = listSize(node, field, variableValues);
    const child = node.selectionSet ? measureSelections(node.selectionSet, field ? getNamedType(field.type) : undefined, false) : ZERO;
    return { aliases: aliases + child.aliases, depth: 1 + child.depth, cost: size * (1 + child.cost), introspection: child.introspection };
  }

  const rootType = operation.operation === 'query' ? schema.getQueryType() : operation.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
  const rootFields = collectRootFields(operation.selectionSet, fragments, new Set());
  return {
    operation,
    operationType: operation.operation as InspectedOperation['operationType'],
    operationName: operation.name?.value ?? null,
    rootFields,
    measure: { rootFields: rootFields.length, ...measureSelections(operation.selectionSet, rootType ?? undefined, false) },
  };
}

function collectRootFields(set: SelectionSetNode, fragments: Map<string, FragmentDefinitionNode>, seen: Set<string>): RootField[] {
  const fields: RootField[] = [];
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value === '__typename') continue;
      fields.push({ responseKey: selection.alias?.value ?? selection.name.value, fieldName: selection.name.value, node: selection });
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      fields.push(...collectRootFields(selection.selectionSet, fragments, seen));
    } else {
      const fragment = fragments.get(selection.name.value);
      if (!fragment || seen.has(fragment.name.value)) continue;
      seen.add(fragment.name.value);
      fields.push(...collectRootFields(fragment.selectionSet, fragments, seen));
    }
  }
  return fields;
}

function listSize(node: FieldNode, field: GraphQLField<unknown, unknown> | undefined, variables: Map<string, unknown>): number {
  const argument = node.arguments?.find((a) => a.name.value === 'first');
  if (argument) {
    const value = literal(argument.value, variables);
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
    return DEFAULT_LIST_SIZE;
  }
  return field?.args.some((a) => a.name === 'first') ? DEFAULT_LIST_SIZE : 1;
}

/** A numeric literal or a variable's value; anything else is not a list size. */
function literal(node: ValueNode, variables: Map<string, unknown>): unknown {
  if (node.kind === Kind.INT || node.kind === Kind.FLOAT) return Number(node.value);
  if (node.kind === Kind.VARIABLE) return variables.get(node.name.value);
  return undefined;
}

/** The first limit the operation goes beyond, in the order a client can best act on; undefined when within all. */
export function checkOperationLimits(measure: OperationMeasure, limits: OperationLimits): OperationRefusal | undefined {
  const checks: [OperationLimitName, number, number][] = [
    ['rootFields', measure.rootFields, limits.rootFields],
    ['aliases', measure.aliases, limits.aliases],
    ['depth', measure.depth, limits.depth],
    ['cost', measure.cost, limits.cost],
    ['introspection', measure.introspection, MAX_INTROSPECTION_LISTS],
  ];
  for (const [limit, actual, max] of checks) if (actual > max) return { limit, max, actual };
  return undefined;
}

const DESCRIPTIONS: Record<OperationLimitName, string> = {
  tokens: 'The query has too many tokens',
  rootFields: 'The operation selects too many root fields',
  aliases: 'The operation uses too many aliases',
  depth: 'The operation nests too deeply',
  cost: 'The operation would cost too much (lower the page sizes or split it)',
  introspection: 'The introspection query nests its lists too deeply',
  batch: 'Batched requests are not accepted: send one operation per request',
  bodyBytes: 'The request body is too large',
};

/** The API error for a refused operation: `OPERATION_LIMIT`, naming the limit and its maximum (HTTP 400). */
export function operationLimitError(refusal: OperationRefusal): GraphQLError {
  const actual = Number.isFinite(refusal.actual) ? Math.round(refusal.actual) : Number.MAX_SAFE_INTEGER;
  return new GraphQLError(`${DESCRIPTIONS[refusal.limit]}: ${actual} > ${refusal.max} (${refusal.limit})`, {
    extensions: { code: 'OPERATION_LIMIT', limit: refusal.limit, max: refusal.max, actual, http: { status: 400 } },
  });
}

export function operationLimitMessage(limit: OperationLimitName): string {
  return DESCRIPTIONS[limit];
}
