import { buildSchema, getIntrospectionQuery, parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import {
  checkOperationLimits,
  countTokens,
  DEFAULT_LIST_SIZE,
  inspectOperation,
  MAX_INTROSPECTION_LISTS,
  operationLimitError,
  type OperationLimits,
} from './operation-limits.js';

const schema = buildSchema(`
  type Query { items(first: Int, after: String): ItemConnection!  item(id: ID!): Item }
  type Mutation { createItem(name: String!): Item  deleteItem(id: ID!): Boolean }
  type ItemConnection { edges: [ItemEdge!]!  totalCount: Int! }
  type ItemEdge { node: Item!  cursor: String! }
  type Item { id: ID!  name: String  parent: Item  children(first: Int): ItemConnection!  tags: [String!]! }
`);

const inspect = (source: string, variables: Record<string, unknown> = {}, operationName?: string) =>
  inspectOperation(schema, parse(source), operationName, variables);
const measure = (source: string, variables: Record<string, unknown> = {}) => inspect(source, variables)!.measure;

const limits: OperationLimits = { tokens: 1000, rootFields: 3, aliases: 4, depth: 5, cost: 500 };

describe('countTokens', () => {
  it('counts lexical tokens without comments, stops past the maximum, and gives up on text that does not lex', () => {
    expect(countTokens('{ a }', 100)).toBe(3);
    expect(countTokens('# a comment\n{ a(first: 10) { b } }', 100)).toBe(11);
    expect(countTokens(`{ ${'a '.repeat(10_000)}}`, 50)).toBe(51);
    expect(countTokens('{ "unterminated }', 100)).toBeNull();
  });
});

describe('inspectOperation', () => {
  it('measures depth, root fields, aliases and list-size cost', () => {
    expect(measure('{ item(id: "1") { id } }')).toEqual({ rootFields: 1, aliases: 0, depth: 2, cost: 2, introspection: 0 });
    // items defaults to a page of 20: each of the 20 edges has a node with an id.
    expect(measure('{ items { edges { node { id } } } }')).toEqual({ rootFields: 1, aliases: 0, depth: 4, cost: DEFAULT_LIST_SIZE * 4, introspection: 0 });
    expect(measure('{ items(first: 5) { edges { node { children(first: 10) { totalCount } } } } }').cost).toBe(5 * (1 + 1 + 1 + 10 * 2));
    expect(measure('query($n: Int) { items(first: $n) { totalCount } }', { n: 50 }).cost).toBe(100);
    expect(measure('query($n: Int = 3) { items(first: $n) { totalCount } }').cost).toBe(6);
    expect(measure('{ a: item(id: "1") { id } b: item(id: "2") { x: name } }')).toEqual({ rootFields: 2, aliases: 3, depth: 2, cost: 4, introspection: 0 });
  });

  it('counts fragments where they are spread, measuring each once', () => {
    const fragments = `
      query { item(id: "1") { ...F parent { ...F } } }
      fragment F on Item { a1: name a2: name parent { id } }`;
    expect(measure(fragments)).toEqual({ rootFields: 1, aliases: 4, depth: 4, cost: 1 + 4 + 1 + 4, introspection: 0 });
  });

  it('measures introspection by how its lists nest, not by depth or cost, and still counts its aliases', () => {
    const standard = measure(getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true, specifiedByUrl: true, oneOf: true }));
    expect(standard).toMatchObject({ depth: 0, cost: 0, introspection: MAX_INTROSPECTION_LISTS });
    expect(checkOperationLimits(standard, limits)).toBeUndefined();
    const endless = '{ __type(name: "Item") { fields { type { fields { type { fields { type { fields { name } } } } } } } } }';
    expect(checkOperationLimits(measure(endless), limits)).toEqual({ limit: 'introspection', max: MAX_INTROSPECTION_LISTS, actual: 4 });
    expect(measure('{ __schema { a: types { name } b: types { name } } items { totalCount } }')).toMatchObject({ aliases: 2, depth: 2, introspection: 1 });
  });

  it('stays fast on a fragment bomb and a fragment cycle', () => {
    let bomb = 'query { item(id: "1") { ...F0 } }\n';
    for (let i = 0; i < 40; i++) bomb += `fragment F${i} on Item { parent { ...F${i + 1} ...F${i + 1} } }\n`;
    bomb += 'fragment F40 on Item { id }';
    const started = performance.now();
    const result = measure(bomb);
    expect(performance.now() - started).toBeLessThan(500);
    expect(result.depth).toBe(42);
    expect(result.cost).toBeGreaterThan(1e12);
    expect(measure('query { item(id: "1") { ...A } } fragment A on Item { parent { ...B } } fragment B on Item { ...A }').depth).toBe(2);
  });

  it('names the operation, its type and its root fields (aliases as response keys), selecting by operationName', () => {
    const source = 'mutation Make { first: createItem(name: "a") { id } deleteItem(id: "1") } query Read { items { totalCount } }';
    const make = inspect(source, {}, 'Make')!;
    expect(make.operationType).toBe('mutation');
    expect(make.operationName).toBe('Make');
    expect(make.rootFields.map((f) => [f.responseKey, f.fieldName])).toEqual([
      ['first', 'createItem'],
      ['deleteItem', 'deleteItem'],
    ]);
    expect(inspect(source, {}, 'Read')!.operationType).toBe('query');
    expect(inspect(source, {})).toBeNull(); // two operations and no name: nothing is selected
    expect(inspect(source, {}, 'Missing')).toBeNull();
  });
});

describe('checkOperationLimits', () => {
  it('passes an operation within every limit and names the first limit exceeded', () => {
    expect(checkOperationLimits(measure('{ item(id: "1") { id } }'), limits)).toBeUndefined();
    expect(checkOperationLimits(measure('{ a: item(id: "1") { id } b: item(id: "1") { id } c: item(id: "1") { id } d: item(id: "1") { id } }'), limits)).toEqual({
      limit: 'rootFields',
      max: 3,
      actual: 4,
    });
    expect(checkOperationLimits(measure('{ item(id: "1") { a: id b: id c: id d: id e: id } }'), limits)).toMatchObject({ limit: 'aliases', actual: 5 });
    expect(checkOperationLimits(measure('{ item(id: "1") { parent { parent { parent { parent { parent { id } } } } } } }'), limits)).toMatchObject({
      limit: 'depth',
      max: 5,
      actual: 7,
    });
    expect(checkOperationLimits(measure('{ items(first: 100) { edges { node { children(first: 100) { totalCount } } } } }'), limits)).toMatchObject({
      limit: 'cost',
      max: 500,
    });
  });

  it('makes an OPERATION_LIMIT error that names the limit and its maximum', () => {
    const error = operationLimitError({ limit: 'depth', max: 5, actual: 7 });
    expect(error.message).toMatch(/nests too deeply: 7 > 5/);
    expect(error.extensions).toMatchObject({ code: 'OPERATION_LIMIT', limit: 'depth', max: 5, actual: 7, http: { status: 400 } });
    expect(operationLimitError({ limit: 'cost', max: 5, actual: Infinity }).extensions.actual).toBe(Number.MAX_SAFE_INTEGER);
  });
});
