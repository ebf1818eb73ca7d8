import { Arg, Args, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { ModelEvaluationService } from './model-evaluation.service.js';
import { ModelLifecycleService } from './model-lifecycle.service.js';
import { PageArgs, RegisterModelVersionInput } from './model-registry.inputs.js';
import { ModelStage } from './models.contracts.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import {
  ModelAlias,
  ModelVersion,
  ModelVersionConnection,
  RegisteredModel,
  RegisteredModelConnection,
  StageChange,
  toModelAlias,
  toModelVersion,
  toRegisteredModel,
  toStageChange,
} from './model-version.type.js';
import { toTrainingRun, TrainingRun } from './training-run.type.js';

@Resolver(() => RegisteredModel)
export class RegisteredModelResolver {
  constructor(
    private readonly service: ModelRegistryService,
    private readonly repository: ModelRegistryRepository,
    private readonly lifecycle: ModelLifecycleService,
  ) {}

  @Query(() => RegisteredModelConnection, { description: "Your tenant's models and the platform-wide ones, newest first" })
  async registeredModels(@Args() page: PageArgs, @Ctx() ctx: RequestContext) {
    return this.repository.pageRegisteredModels(ctx.em, ctx.identity.tenant, page, toRegisteredModel);
  }

  @Query(() => RegisteredModel, { description: "By name: your tenant's model, else the platform-wide one" })
  async registeredModel(@Arg('name') name: string, @Ctx() ctx: RequestContext) {
    return toRegisteredModel(await this.service.getRegisteredModel(ctx.em, ctx.identity.tenant, name));
  }

  @FieldResolver(() => ModelVersionConnection, { description: 'Newest first' })
  async versions(@Root() model: RegisteredModel, @Args() page: PageArgs, @Ctx() ctx: RequestContext) {
    return this.repository.pageVersions(ctx.em, ctx.identity.tenant, model.id, page, toModelVersion);
  }

  @FieldResolver(() => ModelVersion, { nullable: true })
  async latestVersion(@Root() model: RegisteredModel, @Ctx() ctx: RequestContext) {
    const latest = await this.repository.latestVersion(ctx.em, ctx.identity.tenant, model.id);
    return latest ? toModelVersion(latest) : null;
  }

  @FieldResolver(() => ModelVersion, { nullable: true, description: 'The version in PRODUCTION, if any' })
  async productionVersion(@Root() model: RegisteredModel, @Ctx() ctx: RequestContext) {
    const production = await this.repository.productionVersion(ctx.em, ctx.identity.tenant, model.id);
    return production ? toModelVersion(production) : null;
  }

  @FieldResolver(() => [StageChange], { description: 'Stage and alias changes of its versions, newest first (at most 100); the root stageHistory lists all, oldest first' })
  async stageHistory(@Root() model: RegisteredModel, @Ctx() ctx: RequestContext) {
    return (await this.repository.stageHistory(ctx.em, ctx.identity.tenant, model.id)).map(toStageChange);
  }

  @FieldResolver(() => [ModelAlias], { description: 'Its aliases (champion, challenger, …) and the version each names' })
  async aliases(@Root() model: RegisteredModel, @Ctx() ctx: RequestContext) {
    return (await this.repository.aliases(ctx.em, ctx.identity.tenant, model.id)).map(toModelAlias);
  }

  @Mutation(() => ModelVersion, {
    description: 'Restores the version that was in Production before the current one and archives the current one (approver role); returns it',
  })
  async rollbackModel(
    @Arg('modelName') modelName: string,
    @Arg('reason', () => String, { nullable: true, description: 'Kept in the history' }) reason: string | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    return toModelVersion(await this.lifecycle.rollback(ctx.em, ctx.identity, modelName, reason));
  }
}

@Resolver(() => ModelVersion)
export class ModelVersionResolver {
  constructor(
    private readonly service: ModelRegistryService,
    private readonly repository: ModelRegistryRepository,
    private readonly lifecycle: ModelLifecycleService,
    private readonly evaluations: ModelEvaluationService,
  ) {}

  @Query(() => ModelVersion)
  async modelVersion(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toModelVersion(await this.service.getModelVersion(ctx.em, ctx.identity.tenant, id));
  }

  @Mutation(() => ModelVersion, {
    description:
      "Registers your own ONNX file (uploaded with createUpload) as a new version, stage NONE, and has it evaluated on the model's evaluation dataset (evaluation PENDING); it moves to STAGING when it passes the gate. Refused with BAD_USER_INPUT when it breaks the model-file contract",
  })
  async registerModelVersion(@Arg('input') input: RegisterModelVersionInput, @Ctx() ctx: RequestContext) {
    const version = await this.lifecycle.registerUploaded(ctx.em, ctx.identity, input);
    return toModelVersion(await this.evaluations.evaluateRegistered(ctx.em, ctx.identity, version));
  }

  @Mutation(() => ModelVersion, {
    description:
      'Moves a version to NONE, STAGING or ARCHIVED (ml-engineer; taking the Production version out needs the approver role). PRODUCTION is refused: use requestPromotion',
  })
  async transitionModelVersion(
    @Arg('id', () => ID) id: string,
    @Arg('stage', () => ModelStage) stage: ModelStage,
    @Arg('reason', () => String, { nullable: true, description: 'Kept in the stage history' }) reason: string | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    return toModelVersion(await this.lifecycle.transition(ctx.em, ctx.identity, id, stage, reason));
  }

  @FieldResolver(() => RegisteredModel)
  async registeredModel(@Root() version: ModelVersion, @Ctx() ctx: RequestContext) {
    return toRegisteredModel(await this.service.getRegisteredModelById(ctx.em, ctx.identity.tenant, version.registeredModelId));
  }

  @FieldResolver(() => TrainingRun, { nullable: true, description: 'The run that trained it; null when uploaded, or when the run is not yours' })
  async trainingRun(@Root() version: ModelVersion, @Ctx() ctx: RequestContext) {
    if (!version.trainingRunId) return null;
    const run = await this.repository.findRun(ctx.em, ctx.identity.tenant, version.trainingRunId);
    return run ? toTrainingRun(run) : null;
  }
}
