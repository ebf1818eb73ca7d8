import { Arg, Args, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { StartTrainingInput, TrainingRunsArgs } from './model-registry.inputs.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelVersion, toModelVersion } from './model-version.type.js';
import { TrainingRunService } from './training-run.service.js';
import { DatasetVersionRef, Metric, toMetric, toTrainingRun, TrainingRun, TrainingRunConnection } from './training-run.type.js';

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver(() => TrainingRun)
export class TrainingRunResolver {
  constructor(
    private readonly service: ModelRegistryService,
    private readonly repository: ModelRegistryRepository,
    private readonly runs: TrainingRunService,
  ) {}

  @Query(() => TrainingRunConnection, { description: 'Training runs of your tenant, newest first' })
  async trainingRuns(@Args() args: TrainingRunsArgs, @Ctx() ctx: RequestContext) {
    return this.repository.pageRuns(ctx.em, ctx.identity.tenant, args, toTrainingRun);
  }

  @Query(() => TrainingRun)
  async trainingRun(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toTrainingRun(await this.service.getTrainingRun(ctx.em, ctx.identity.tenant, id));
  }

  @Mutation(() => TrainingRun, {
    description: 'Queues a training run (QUEUED); the training service runs it, then registers the trained version and applies the evaluation gate',
  })
  async startTraining(@Arg('input') input: StartTrainingInput, @Ctx() ctx: RequestContext) {
    return toTrainingRun(await this.runs.startTraining(ctx.em, actor(ctx), input));
  }

  @Mutation(() => TrainingRun, { description: 'A queued run is cancelled at once; a running one once its trainer has stopped' })
  async cancelTraining(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toTrainingRun(await this.runs.cancelTraining(ctx.em, actor(ctx), id));
  }

  @FieldResolver(() => [Metric], { description: 'Metric values by name, then step' })
  async metrics(
    @Root() run: TrainingRun,
    @Arg('name', () => String, { nullable: true, description: 'Only this metric' }) name: string | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    return (await this.repository.metrics(ctx.em, run.id, name)).map(toMetric);
  }

  @FieldResolver(() => DatasetVersionRef, { nullable: true, description: 'The dataset version trained on (owned by the datasets subgraph)' })
  datasetVersion(@Root() run: TrainingRun): DatasetVersionRef {
    return Object.assign(new DatasetVersionRef(), { id: run.datasetVersionId });
  }

  @FieldResolver(() => ModelVersion, { nullable: true, description: 'The version this run registered, once it has' })
  async modelVersion(@Root() run: TrainingRun, @Ctx() ctx: RequestContext) {
    if (!run.modelVersionId) return null;
    const version = await this.repository.findVersion(ctx.em, ctx.identity.tenant, run.modelVersionId);
    return version ? toModelVersion(version) : null;
  }
}
