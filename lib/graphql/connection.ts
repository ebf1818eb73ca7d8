// Relay-style cursor connections over MikroORM queries: keyset pagination on (createdAt, id), newest first, with
// opaque cursors that are validated (a malformed cursor is a BAD_USER_INPUT naming the argument).
import type { EntityManager, EntityName, FilterQuery } from '@mikro-orm/core';
import { Directive, Field, Int, ObjectType, type ClassType } from 'type-graphql';
import { badInput } from '../errors.js';

@Directive('@shareable')
@ObjectType({ description: 'Relay page information, the same in every subgraph' })
export class PageInfo {
  @Field()
  hasNextPage!: boolean;

  @Field(() => String, { nullable: true })
  endCursor!: string | null;
}

export interface ConnectionShape<T> {
  edges: { node: T; cursor: string }[];
  pageInfo: PageInfo;
  totalCount: number;
}

/** Makes `<Name>Connection` and `<Name>Edge` object types for a node type. */
export function Connection<T extends object>(nodeType: ClassType<T>, name: string) {
  @ObjectType(`${name}Edge`)
  class Edge {
    @Field(() => nodeType)
    node!: T;

    @Field()
    cursor!: string;
  }

  @ObjectType(`${name}Connection`)
  class ConnectionType implements ConnectionShape<T> {
    @Field(() => [Edge])
    edges!: Edge[];

    @Field(() => PageInfo)
    pageInfo!: PageInfo;

    @Field(() => Int, { description: 'Matching items in total, across all pages' })
    totalCount!: number;
  }
  return ConnectionType;
}

export const MAX_PAGE_SIZE = 100;

interface Keyed {
  id: string;
  createdAt: Date;
}

export function encodeCursor(item: Keyed): string {
  return Buffer.from(JSON.stringify([item.createdAt.toISOString(), item.id])).toString('base64url');
}

/** Ids in cursors must look like the ids this API issues, so a forged cursor never reaches a query as a bad cast. */
const CURSOR_ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{64})$/i;

export function decodeCursor(cursor: string, argument = 'after'): { createdAt: Date; id: string } {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && CURSOR_ID.test(value[1])) {
      const createdAt = new Date(value[0]);
      if (!Number.isNaN(createdAt.getTime())) return { createdAt, id: value[1] };
    }
  } catch {
    // falls through to the error below
  }
  throw badInput(`"${argument}" is not a cursor this API issued`, argument);
}

export function checkPageSize(first: number | null | undefined, fallback = 20): number {
  const size = first ?? fallback;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    throw badInput(`"first" must be between 1 and ${MAX_PAGE_SIZE}`, 'first', { max: MAX_PAGE_SIZE });
  }
  return size;
}

/** One page of entities, newest first, mapped to GraphQL types. */
export async function paginate<E extends Keyed, N>(
  em: EntityManager,
  entity: EntityName<E>,
  where: FilterQuery<E>,
  args: { first?: number | null; after?: string | null },
  toNode: (entity: E) => N,
): Promise<ConnectionShape<N>> {
  const limit = checkPageSize(args.first);
  let filter = where;
  if (args.after) {
    const { createdAt, id } = decodeCursor(args.after);
    const idColumn = em.getMetadata().find(entity as never)?.properties['id' as never]?.columnTypes?.[0];
    if (idColumn === 'uuid' && !/^[0-9a-f]{8}-/i.test(id)) throw badInput('"after" is not a cursor this API issued', 'after');
    filter = {
      $and: [where, { $or: [{ createdAt: { $lt: createdAt } }, { createdAt, id: { $lt: id } }] }],
    } as FilterQuery<E>;
  }
  const [rows, totalCount] = await Promise.all([
    em.find(entity, filter, { orderBy: { createdAt: 'desc', id: 'desc' } as never, limit: limit + 1 }),
    em.count(entity, where),
  ]);
  const page = rows.slice(0, limit);
  const edges = page.map((row) => ({ node: toNode(row), cursor: encodeCursor(row) }));
  return {
    edges,
    pageInfo: { hasNextPage: rows.length > limit, endCursor: edges.at(-1)?.cursor ?? null },
    totalCount,
  };
}
