import { Arg, Args, ArgsType, Ctx, Field, FieldResolver, ID, Int, Query, Resolver, Root } from 'type-graphql';
import { badInput } from '../../lib/errors.js';
import { checkPageSize, PageInfo } from '../../lib/graphql/connection.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { JobFilter } from './job.inputs.js';
import { JobRepository } from './job.repository.js';
import { JobService } from './job.service.js';
import { Job, JobConnection, JobPairConnection, toJob, toJobPair } from './job.type.js';

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true, description: 'Page size, 1–100 (default 20)' })
  first?: number | null;

  @Field(() => String, { nullable: true, description: 'Cursor of the last item of the previous page' })
  after?: string | null;
}

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver(() => Job)
export class JobResolver {
  constructor(
    private readonly service: JobService,
    private readonly repository: JobRepository,
  ) {}

  @Query(() => JobConnection, { description: 'Jobs of your tenant, newest first' })
  async jobs(
    @Arg('filter', () => JobFilter, { nullable: true }) filter: JobFilter | null,
    @Args() page: PageArgs,
    @Ctx() ctx: RequestContext,
  ) {
    return this.repository.pageJobs(ctx.em, ctx.identity.tenant, filter ?? {}, page, toJob);
  }

  @Query(() => Job)
  async job(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toJob(await this.service.getJob(ctx.em, actor(ctx), id));
  }

  @FieldResolver(() => JobPairConnection, { description: 'Pairs in index order' })
  async pairs(@Root() job: Job, @Args() page: PageArgs, @Ctx() ctx: RequestContext) {
    const first = checkPageSize(page.first);
    const afterIndex = page.after ? decodeIndexCursor(page.after) : -1;
    const { pairs, hasNextPage } = await this.repository.pagePairs(ctx.em, ctx.identity.tenant, job.id, { first, afterIndex });
    const edges = pairs.map((pair) => ({ node: toJobPair(pair, job.id), cursor: encodeIndexCursor(pair.index) }));
    const pageInfo = Object.assign(new PageInfo(), { hasNextPage, endCursor: edges.at(-1)?.cursor ?? null });
    return { edges, pageInfo, totalCount: job.pairCount };
  }
}

function encodeIndexCursor(index: number): string {
  return Buffer.from(`pair:${index}`).toString('base64url');
}

function decodeIndexCursor(cursor: string): number {
  const match = /^pair:(\d{1,9})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!match) throw badInput('"after" is not a cursor this API issued', 'after');
  return Number(match[1]);
}
