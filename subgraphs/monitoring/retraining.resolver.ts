import { Arg, Ctx, Int, Mutation, Query, Resolver } from 'type-graphql';
import { badInput } from '../../lib/errors.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { SetRetrainingPolicyInput } from './retraining.inputs.js';
import { RetrainingService } from './retraining.service.js';
import { RetrainingDecision, RetrainingPolicy, toRetrainingDecision, toRetrainingPolicy } from './retraining.type.js';

const actor = (ctx: RequestContext) => ({ tenant: ctx.identity.tenant, subject: ctx.identity.subject });

@Resolver(() => RetrainingPolicy)
export class RetrainingResolver {
  constructor(private readonly service: RetrainingService) {}

  @Query(() => RetrainingPolicy, { nullable: true, description: "Your tenant's retraining policy of a model; null when it has none" })
  async retrainingPolicy(@Arg('modelName') modelName: string, @Ctx() ctx: RequestContext) {
    const policy = await this.service.findPolicy(ctx.em, ctx.identity.tenant, modelName);
    return policy ? toRetrainingPolicy(policy, this.service.nextScheduledAt(policy)) : null;
  }

  @Query(() => [RetrainingDecision], { description: "A model's retraining decisions, newest first" })
  async retrainingDecisions(
    @Arg('modelName') modelName: string,
    @Arg('first', () => Int, { nullable: true, description: 'How many, 1–200 (default 50)' }) first: number | null | undefined,
    @Ctx() ctx: RequestContext,
  ) {
    const limit = first ?? 50;
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw badInput('first must be from 1 to 200', 'first');
    return (await this.service.decisions(ctx.em, ctx.identity.tenant, modelName, limit)).map(toRetrainingDecision);
  }

  @Mutation(() => RetrainingPolicy, { description: 'Creates or replaces the retraining policy of one of your models' })
  async setRetrainingPolicy(@Arg('input') input: SetRetrainingPolicyInput, @Ctx() ctx: RequestContext) {
    const policy = await this.service.setPolicy(ctx.em, actor(ctx), input);
    return toRetrainingPolicy(policy, this.service.nextScheduledAt(policy));
  }

  @Mutation(() => RetrainingDecision, {
    description: "Asks the model's policy for a retraining now (MANUAL); the policy's cooldown and daily maximum apply as to every trigger",
  })
  async triggerRetraining(@Arg('modelName') modelName: string, @Arg('reason') reason: string, @Ctx() ctx: RequestContext) {
    return toRetrainingDecision(await this.service.triggerManually(ctx.em, actor(ctx), modelName, reason));
  }
}
