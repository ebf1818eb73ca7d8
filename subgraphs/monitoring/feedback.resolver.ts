import { Arg, Ctx, Mutation, Query, Resolver } from 'type-graphql';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { SubmitFeedbackInput } from './feedback.inputs.js';
import { FeedbackService } from './feedback.service.js';
import { Feedback, ModelVersionPerformance, toFeedback, toModelVersionPerformance } from './feedback.type.js';

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver(() => Feedback)
export class FeedbackResolver {
  constructor(private readonly service: FeedbackService) {}

  @Mutation(() => Feedback, {
    description:
      "Scores a change label against one succeeded result of a job and stores it (model drift). Once per pair: the same label " +
      'upload again returns the stored feedback, another one is refused with CONFLICT. A completed batch of feedback whose IoU or ' +
      "F1 falls more than the margin below the model version's evaluation raises a MODEL_DRIFT alert.",
  })
  async submitFeedback(@Arg('input', () => SubmitFeedbackInput) input: SubmitFeedbackInput, @Ctx() ctx: RequestContext): Promise<Feedback> {
    return toFeedback((await this.service.submit(ctx.em, actor(ctx), input)).feedback);
  }

  @Query(() => [ModelVersionPerformance], {
    description: "IoU and F1 of a model's versions on labelled feedback, batch by batch (oldest first), beside each version's evaluation",
  })
  async modelPerformance(@Arg('modelName') modelName: string, @Ctx() ctx: RequestContext): Promise<ModelVersionPerformance[]> {
    return (await this.service.performance(ctx.em, actor(ctx), modelName)).map(toModelVersionPerformance);
  }
}
