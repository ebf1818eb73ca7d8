import { Arg, Ctx, FieldResolver, ID, Mutation, Resolver, Root } from 'type-graphql';
import { hasCapability } from '../../lib/rbac.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { DetectChangesInput, SubmitChangeDetectionJobInput } from './change-detection.inputs.js';
import { ChangeDetectionService } from './change-detection.service.js';
import { ChangeResult, Job, JobPair, toJob } from './job.type.js';

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver()
export class ChangeDetectionResolver {
  constructor(private readonly changes: ChangeDetectionService) {}

  @Mutation(() => ChangeResult, {
    description:
      'Runs the model on one pair and answers within the request. Images larger than the synchronous limit, or that take longer ' +
      'than its timeout, are refused with an error that points to submitChangeDetectionJob. Recorded as a SYNC job.',
  })
  async detectChanges(@Arg('input', () => DetectChangesInput) input: DetectChangesInput, @Ctx() ctx: RequestContext): Promise<ChangeResult> {
    return this.changes.detectChanges(ctx.em, actor(ctx), input);
  }

  @Mutation(() => Job, { description: 'Queues the pairs for the inference workers and returns the job at once; poll job(id) or subscribe to its progress' })
  async submitChangeDetectionJob(@Arg('input', () => SubmitChangeDetectionJobInput) input: SubmitChangeDetectionJobInput, @Ctx() ctx: RequestContext): Promise<Job> {
    return toJob(await this.changes.submit(ctx.em, actor(ctx), input));
  }

  @Mutation(() => Job, { description: 'Cancels a queued or running job: your own, or any job of the tenant for an admin' })
  async cancelJob(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext): Promise<Job> {
    const mayCancelOthers = hasCapability(ctx.identity.roles, 'admin');
    return toJob(await this.changes.cancel(ctx.em, { ...actor(ctx), mayCancelOthers }, id));
  }
}

@Resolver(() => JobPair)
export class JobPairResolver {
  constructor(private readonly changes: ChangeDetectionService) {}

  @FieldResolver(() => ChangeResult, { nullable: true, description: 'The outputs of a succeeded pair, with fresh signed URLs' })
  async result(@Root() pair: JobPair): Promise<ChangeResult | null> {
    if (pair.status !== 'SUCCEEDED') return null;
    return this.changes.changeResult({
      jobId: pair.jobId,
      index: pair.index,
      width: pair.width,
      height: pair.height,
      resultKeys: pair.resultKeys,
      stats: pair.rawStats,
      details: pair.details,
      modelVersionId: pair.modelVersionId,
    });
  }
}
