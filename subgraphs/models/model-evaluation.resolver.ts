import { Arg, Ctx, FieldResolver, ID, Mutation, Resolver, Root } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { ModelEvaluationService } from './model-evaluation.service.js';
import { EvaluationDataset, toEvaluationDataset } from './model-evaluation.type.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelVersion, RegisteredModel, toModelVersion, toRegisteredModel } from './model-version.type.js';

@Resolver(() => RegisteredModel)
export class ModelEvaluationResolver {
  constructor(
    private readonly evaluations: ModelEvaluationService,
    private readonly service: ModelRegistryService,
  ) {}

  @Mutation(() => RegisteredModel, {
    description:
      "Freezes the dataset version (its test items, else all its labelled items) the model's versions are evaluated on (ml-engineer); null goes back to the default",
  })
  async setEvaluationDataset(
    @Arg('modelName') modelName: string,
    @Arg('datasetVersionId', () => String, { nullable: true }) datasetVersionId: string | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    return toRegisteredModel(await this.evaluations.setEvaluationDataset(ctx.em, ctx.identity, modelName, datasetVersionId ?? null));
  }

  @Mutation(() => ModelVersion, {
    description:
      'Evaluates a version again on the evaluation dataset (ml-engineer); returns it with evaluation PENDING. An uploaded version in NONE that passes the gate moves to STAGING',
  })
  async evaluateModelVersion(@Arg('id', () => ID) id: string, @Ctx() ctx: RequestContext) {
    return toModelVersion(await this.evaluations.evaluateVersion(ctx.em, ctx.identity, id));
  }

  @FieldResolver(() => EvaluationDataset, { nullable: true, description: 'The dataset version its versions are evaluated on; null when there is none yet' })
  async evaluationDataset(@Root() model: RegisteredModel, @Ctx() ctx: RequestContext) {
    const entity = await this.service.getRegisteredModelById(ctx.em, ctx.identity.tenant, model.id);
    const choice = await this.evaluations.evaluationDatasetOf(ctx.em, entity);
    return choice ? toEvaluationDataset(choice) : null;
  }
}
